"""One co-design trial: a training point and a hardware point to a record of every
objective (the chips' score, the chip's cost), as plain data like any trial.

The network of a training point is trained once per run and kept in the run folder's
``networks/`` (a state dict, read back with ``weights_only=True``): a trial that changes
only hardware dimensions loads it and costs an evaluation, not a training; its record
says ``trained: false``. Spec: ``{"id", "method", "rates", "hwa_scale"?, "hardware":
{"device"?, field: value, ...}, "stage": "codesign" | "codesign-test", "networks": folder}``.
``codesign-test`` measures on the test split with ``report.n_chips`` chips, the
objective's times plus the report's.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

import crossbar
import models

from . import trial
from .codesign import with_hardware
from .records import TrialRecord, TrialSpec
from .schema import Scenario

STAGES = ("codesign", "codesign-test")
#: The keys of a spec that make its training point (what a network is trained from).
TRAINING_POINT = ("rates", "hwa_scale", "hardware_aware", "model")


def device_spec(scenario: Scenario, hardware: dict[str, Any]) -> dict[str, Any]:
    """The device of a hardware point: the chosen device (the first without a ``device``
    dimension) with the chosen fields, named by its device and what changed."""
    name = hardware.get("device", scenario.presets[0]["name"])
    base = next(spec for spec in scenario.presets if spec["name"] == name)
    changes = {k: v for k, v in hardware.items() if k not in ("device", "digital")}
    shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(changes.items()))
    label = name + (f" ({shown})" if changes else "")
    return {**with_hardware(base, changes), "name": label}


def training_key(scenario: Scenario, spec: TrialSpec) -> str:
    """A name for a training point's network, the same in every process and run."""
    point = {k: spec.get(k) for k in TRAINING_POINT}
    text = json.dumps({"point": point, "seed": scenario.seed, "training": scenario.training.model_dump(mode="json"),
                       "model": scenario.model.model_dump(mode="json"),
                       "dataset": scenario.dataset.model_dump(mode="json")}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def network_for(scenario: Scenario, spec: TrialSpec, device, progress: bool) -> tuple[torch.nn.Module, float, bool]:
    """``(network, clean validation score, trained)``: the training point's network from
    ``spec["networks"]`` when an earlier trial trained it, else trained now and saved there."""
    folder = Path(spec["networks"]) if spec.get("networks") else None
    path = folder / f"{training_key(scenario, spec)}.pt" if folder is not None else None
    splits = trial.splits_of(scenario)
    name, options = scenario.network(spec.get("model"))
    if path is not None and path.is_file():
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            net = models.build(name, splits.in_shape, splits.n_classes, dropout=spec["rates"], **options)
            net.load_state_dict(saved["state"])
            return net.eval(), float(saved["val_clean"]), False
        except Exception:  # noqa: BLE001 - a damaged file: train again and replace it
            pass
    result = trial.train_network(scenario, spec, device=device, progress=progress)
    if not result.ok:
        raise trial.TrialFailed(result.reason or "training failed")
    trial._check_learnt(scenario, result)
    net = result.model.cpu().eval()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        torch.save({"state": net.state_dict(), "val_clean": float(result.val_score)}, tmp)
        os.replace(tmp, path)  # whole or absent, whatever process reads it
    return net, float(result.val_score), True


def measure(scenario: Scenario, net, spec: TrialSpec, split: str, device, progress: bool) -> dict[str, Any]:
    """The objectives of ``net`` on the trial's device: the score (the scenario's
    aggregate over chips at ``t_inference``) and, where a cost objective asks, the cost."""
    preset = crossbar.make_preset(device_spec(scenario, spec.get("hardware", {})))
    splits = trial.splits_of(scenario)
    data = splits.val if split == "val" else splits.test
    n_chips = scenario.n_chips if split == "val" else scenario.report.n_chips
    times = list(scenario.t_inference)
    if split == "test":
        times += [t for t in scenario.report_times(preset) if t not in times]
    digital = spec.get("hardware", {}).get("digital", [])
    rows = trial._measure(scenario, net, data, split, lambda p: times, n_chips, device, progress, presets=[preset],
                          digital=digital)
    at = [r for r in rows if r["t_inference"] in scenario.t_inference]
    values: dict[str, float] = {"score": trial.aggregate(np.array([[r["chips"] for r in at]]), scenario)}
    cost = None
    if scenario.codesign.needs_cost():
        priced = crossbar.cost(net, preset, data, scenario.t_inference[0], n_chips,
                               seed=trial.chip_seed(scenario, split), digital=digital)
        values.update(energy_j=priced.energy_j, latency_s=priced.latency_s, area_mm2=priced.area_mm2)
        cost = {"energy_j": priced.energy_j, "energy_j_p10": float(np.percentile(priced.chip_energy_j, 10)),
                "energy_j_p90": float(np.percentile(priced.chip_energy_j, 90)), "latency_s": priced.latency_s,
                "area_mm2": priced.area_mm2, "tops_per_w": priced.tops_per_w, "components": priced.by_component()}
    if split == "val":
        for row in rows:
            row.pop("chips")
    name = preset.name + (f" + digital {', '.join(digital)}" if digital else "")
    return {"preset": name, "values": values, "scores": rows, "cost": cost}


def codesign_record(plain: dict, spec: TrialSpec, *, device: Optional[str] = None,
                    progress: bool = False) -> TrialRecord:
    """Train (or load) the spec's network and measure its objectives: ``values`` (one per
    objective, by name), ``feasible`` (every constraint kept), ``trained``."""
    start = time.perf_counter()
    record_spec = {k: v for k, v in spec.items() if k != "networks"}
    scenario = trial.scenario_of(plain)
    threads = torch.get_num_threads()
    torch.set_num_threads(scenario.execution.threads_per_trial)
    try:
        net, val_clean, trained = network_for(scenario, spec, device, progress)
        split = "test" if spec.get("stage") == "codesign-test" else "val"
        measured = measure(scenario, net, spec, split, device, progress)
    except trial.TrialFailed as e:
        return trial.failed_record(record_spec, e.reason, time.perf_counter() - start)
    except Exception as e:  # noqa: BLE001 - a trial's failure must not end the search
        return trial.failed_record(record_spec, trial.error_reason(e), time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    goals = scenario.codesign.objectives
    values = measured["values"]
    violation = max((g.violation(values[g.name]) for g in goals), default=0.0)
    return {**record_spec, "status": "ok", "reason": None, "device": measured["preset"],
            "values": {g.name: values[g.name] for g in goals}, "objective": values["score"],
            "feasible": violation == 0.0, "violation": violation, "val_clean": val_clean, "trained": trained,
            "scores": measured["scores"], "cost": measured["cost"], "seconds": time.perf_counter() - start}


def record_of(plain: dict, spec: TrialSpec, *, device: Optional[str] = None, progress: bool = False) -> TrialRecord:
    """What an executor runs: a co-design trial or its test measurement
    (:func:`codesign_record`), else a search trial or final network (:func:`search.trial.record_of`)."""
    if spec.get("stage") in STAGES:
        return codesign_record(plain, spec, device=device, progress=progress)
    return trial.record_of(plain, spec, device=device, progress=progress)
