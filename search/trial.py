"""One trial: a pure function of plain data (the resolved scenario, the dropout rates,
the seed) to a plain result record. That is what makes resume and distribution simple:
any process with the package and the data computes the same record.

- :func:`trial_record`: train with the rates, then score on the *validation* split over
  ``n_chips`` simulated chips at the scenario's times and presets -> the objective.
  Chips are scored by the scenario's metric (:attr:`Scenario.metric`, by default its
  task's: accuracy, or a detector's mAP@0.5); rows say which in ``metric``.
- :func:`final_record`: train the same way, then measure on the *test* split at the
  report times with ``report.n_chips`` chips -> the numbers a paper reports.
- :func:`record_of`: what an executor runs, either of the two by the spec's ``stage``.
"""

from __future__ import annotations

import functools
import json
import time
from typing import Optional

import numpy as np
import torch

import crossbar
import models
from crossbar.common import Stream, derive_seed, resolve_device

from .records import FinalRecord, ScoreRow, TrialRecord, TrialSpec, worst
from .schema import Scenario

VAL_CHIPS, TEST_CHIPS = 1, 2  # under Stream.EVALUATION_CHIPS: the validation and the test chips


class TrialFailed(Exception):
    """A trial that could not finish (training diverged, any error): ``reason`` is one line."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@functools.lru_cache(maxsize=4)
def _scenario(plain_json: str) -> Scenario:
    return Scenario.model_validate(json.loads(plain_json))


def scenario_of(plain: dict) -> Scenario:
    return _scenario(json.dumps(plain, sort_keys=True))


@functools.lru_cache(maxsize=2)
def _splits(dataset_json: str, seed: int) -> models.Splits:
    arguments = json.loads(dataset_json)
    return models.load_dataset(arguments.pop("name"), seed=seed, **arguments)


def splits_of(scenario: Scenario) -> models.Splits:
    """The scenario's data, loaded once per process."""
    return _splits(json.dumps(scenario.dataset.loader_arguments(), sort_keys=True), scenario.seed)


def chip_seed(scenario: Scenario, split: str) -> int:
    """Every trial is scored on the same chips (common random numbers): differences
    between trials come from the networks, not from luckier chips."""
    return derive_seed(scenario.seed, Stream.EVALUATION_CHIPS, VAL_CHIPS if split == "val" else TEST_CHIPS, 0) % (2**62)


def trial_device(scenario: Scenario, device: Optional[str] = None) -> torch.device:
    """The device trials run on: ``device`` if given, else the scenario's (auto: CUDA if available)."""
    choice = device or scenario.device
    return resolve_device(None if choice == "auto" else choice)


def train_network(scenario: Scenario, spec: TrialSpec, *, device=None, progress: bool = False) -> models.TrainResult:
    """Build and train the scenario's network with ``spec`` (rates, hardware_aware flag,
    model option overrides), from the scenario's seed."""
    splits = splits_of(scenario)
    name, options = scenario.network(spec.get("model"))
    net = models.build(name, splits.in_shape, splits.n_classes, dropout=spec["rates"], seed=scenario.seed, **options)
    config = scenario.training
    if spec.get("hardware_aware"):
        noise = scenario.hardware_aware_config()
        if noise is None:  # validation refuses this; a record must never say hardware-aware of a plain network
            raise ValueError(f"trial {spec['id']}: hardware-aware, but the scenario has no hardware-aware noise")
        config = config.model_copy(update={"hardware_aware": noise})
    elif spec.get("hwa_scale"):  # a point of a search space with the noise strength as a dimension
        config = config.model_copy(update={"hardware_aware": scenario.trained_with(spec["hwa_scale"])})
    return models.train(net, splits, config, seed=scenario.seed, device=trial_device(scenario, device),
                        progress=progress, desc=f"train {spec.get('id', '')}".strip(),
                        threads=scenario.execution.threads_per_trial, metric=scenario.metric)


def trained_result(scenario: Scenario, device=None) -> models.TrainResult:
    """mode evaluate: the trained network of ``model.checkpoint`` as a training's result
    (no epochs), its clean validation score measured."""
    start = time.perf_counter()
    net = scenario.trained_network(trial_device(scenario, device))
    score = models.clean_score(net, splits_of(scenario).val, scenario.metric)
    return models.TrainResult(net, True, None, 0, 0, score, time.perf_counter() - start)


def aggregate(acc: np.ndarray, scenario: Scenario) -> float:
    """One number from scores of shape (presets, times, chips): the mean over chips,
    or a low quantile over chips, averaged over presets and times."""
    if scenario.objective.aggregate == "quantile":
        per_cell = np.quantile(acc, scenario.objective.quantile, axis=-1)
    else:
        per_cell = acc.mean(axis=-1)
    return float(per_cell.mean())


def _measure(scenario: Scenario, model, data, split: str, times_of, n_chips: int, device,
             progress: bool, presets=None, digital=()) -> list[ScoreRow]:
    rows = []
    for preset in presets if presets is not None else scenario.resolved_presets():
        times = times_of(preset)
        # a calibrating chip reads a few training inputs, never the data it is scored on
        calibration = splits_of(scenario).train if preset.calibrations.calibrates else None
        acc = crossbar.evaluate(
            model, data, preset, times, n_chips, seed=chip_seed(scenario, split), batch_size=scenario.batch_size,
            device=trial_device(scenario, device), chunk_size=scenario.chunk_size, progress=progress,
            metric=scenario.metric, digital=digital, calibration_data=calibration,
        )
        for t, chips in zip(times, acc):
            rows.append({
                "preset": preset.name, "t_inference": t, "metric": scenario.metric,
                "mean": float(chips.mean()), "std": float(chips.std()),
                "p10": float(np.percentile(chips, 10)), "p90": float(np.percentile(chips, 90)),
                "quantile": float(np.quantile(chips, scenario.objective.quantile)), "n_chips": n_chips,
                "chips": [round(float(a), 6) for a in chips],
            })
    return rows


def failed_record(spec: TrialSpec, reason: str, seconds: float = 0.0) -> TrialRecord:
    """The record of a trial that could not finish: the spec, why, no objective."""
    return {**spec, "status": "failed", "reason": reason, "objective": None, "seconds": seconds}


def error_reason(e: BaseException, limit: int = 300) -> str:
    """One line naming an exception: its type and its message's first paragraph (a
    sentence wrapped over lines stays whole), at most ``limit`` characters."""
    text = " ".join(str(e).strip().split("\n\n")[0].split())
    if len(text) > limit:
        text = text[: limit - 3].rstrip() + "..."
    return f"{type(e).__name__}: {text}"


#: A trained network whose clean validation score is at most this many times chance
#: (a metric's chance level: 1 / classes for accuracy) did not learn: its trial fails
#: rather than scoring as a network.
CHANCE_FACTOR = 1.5


def _check_learnt(scenario: Scenario, result: models.TrainResult) -> None:
    # A metric without a chance level (a detector's mAP) leaves the network to its chips'
    # scores: one trained with hardware-aware noise may score little on clean weights yet
    # well on chips (its box offsets learn the drift's).
    metric = scenario.score
    if result.val_score is None or metric.chance is None or not metric.higher_is_better:
        return
    n_classes = scenario.data_shape()[1]
    chance = metric.chance(n_classes)
    if result.val_score <= CHANCE_FACTOR * chance and scenario.mode == "evaluate":
        raise TrialFailed(f"the trained network scores {metric.label} {result.val_score:.3f} on the clean validation "
                          f"split, chance {chance:.3f}: are the inputs what it was trained on (dataset.normalize, "
                          "size, channels) and the checkpoint the right one?")
    if result.val_score <= CHANCE_FACTOR * chance:
        raise TrialFailed(f"training did not learn: clean validation {metric.label} {result.val_score:.3f}, chance "
                          f"{chance:.3f} ({n_classes} classes)")


def _train_and_measure(plain: dict, spec: TrialSpec, split: str, device,
                       progress: bool) -> tuple[Scenario, models.TrainResult, list[ScoreRow], float]:
    """Train with ``spec``, then measure on ``split`` ("val": the objective's times and
    chips; "test": the report's). Returns the scenario, the training's result, the
    rows and the seconds spent training; raises :class:`TrialFailed`."""
    start = time.perf_counter()
    scenario = scenario_of(plain)
    threads = torch.get_num_threads()
    # A fixed thread count: training's float sums depend on it, and a trial's result must
    # not depend on which executor or how many workers ran it.
    torch.set_num_threads(scenario.execution.threads_per_trial)
    try:
        if scenario.mode == "evaluate":
            result = trained_result(scenario, device)
        else:
            result = train_network(scenario, spec, device=device, progress=progress)
        if not result.ok:
            raise TrialFailed(result.reason or "training failed")
        _check_learnt(scenario, result)
        trained = time.perf_counter() - start
        splits = splits_of(scenario)
        if split == "val":
            rows = _measure(scenario, result.model, splits.val, "val", lambda p: scenario.t_inference, scenario.n_chips,
                            device, progress)
        else:
            rows = _measure(scenario, result.model, splits.test, "test", scenario.report_times,
                            scenario.report.n_chips, device, progress)
            rows += _sweep(scenario, result.model, splits.test, device, progress)
    except TrialFailed:
        raise
    except Exception as e:  # noqa: BLE001 - a trial's failure must not end the search
        raise TrialFailed(error_reason(e)) from e
    finally:
        torch.set_num_threads(threads)
    return scenario, result, rows, trained


def _sweep(scenario: Scenario, model, data, device, progress: bool) -> list[ScoreRow]:
    """The test rows of ``report.sweep``: each device with its parameter at each value, at
    the report times, on the same chips as the other rows; each row says its parameter
    and value."""
    sweep = scenario.report.sweep
    if sweep is None:
        return []
    rows, measured = [], {}
    for spec in scenario.presets:
        for value in sweep.values:
            # devices that differ only in the swept parameter (sigma 1.0 and 1.5) are the same device at each
            # value, on the same chips: measured once
            same = json.dumps({**{k: v for k, v in spec.items() if k != "name"}, sweep.parameter: value},
                              sort_keys=True, default=str)
            if same not in measured:
                preset = crossbar.make_preset({**spec, sweep.parameter: value})
                measured[same] = _measure(scenario, model, data, "test", scenario.report_times,
                                          scenario.report.n_chips, device, progress, presets=[preset])
            for row in measured[same]:
                rows.append({**{k: v for k, v in row.items() if k != "chips"}, "preset": spec["name"],
                             "parameter": sweep.parameter, "value": value})
    return rows


def trial_record(plain: dict, spec: TrialSpec, *, device: Optional[str] = None, progress: bool = False) -> TrialRecord:
    """Train with ``spec["rates"]`` and score on the validation chips.

    ``spec``: ``{"id", "method", "rates", "hardware_aware"?, "model"?}`` (plain data).
    Returns ``spec`` plus ``status`` ("ok" or "failed"), ``reason``, ``objective``,
    ``val_clean``, ``scores`` (one row per preset and time; also under their old name
    ``accuracy``) and timings. A failure
    (diverged training, out of memory, any error) is a record, not an exception.
    """
    start = time.perf_counter()
    try:
        scenario, result, rows, trained = _train_and_measure(plain, spec, "val", device, progress)
    except TrialFailed as e:
        return failed_record(spec, e.reason, time.perf_counter() - start)
    acc = np.array([row["chips"] for row in rows]).reshape(len(scenario.presets), len(scenario.t_inference), -1)
    objective = aggregate(acc, scenario)
    floor = scenario.objective.min_clean_score
    feasible = floor is None or (result.val_score >= floor if scenario.score.higher_is_better
                                 else result.val_score <= floor)
    for row in rows:
        row.pop("chips")
    return {
        **spec,
        "status": "ok",
        "reason": None,
        "objective": objective if feasible else worst(scenario.score.higher_is_better),
        "feasible": feasible,
        "val_clean": result.val_score,
        "epochs": result.epochs_run,
        "accuracy": rows,
        "scores": rows,
        "train_seconds": trained,
        "seconds": time.perf_counter() - start,
    }


def final_record(plain: dict, spec: TrialSpec, *, device: Optional[str] = None, progress: bool = False) -> FinalRecord:
    """Train with ``spec`` (as :func:`trial_record` does) and measure on the test split at
    the report times with ``report.n_chips`` chips per preset and time."""
    start = time.perf_counter()
    try:
        scenario, result, rows, _ = _train_and_measure(plain, spec, "test", device, progress)
    except TrialFailed as e:
        return failed_record(spec, e.reason, time.perf_counter() - start)
    record = {
        **spec,
        "status": "ok",
        "reason": None,
        "test_clean": models.clean_score(result.model, splits_of(scenario).test, scenario.metric),
        "val_clean": result.val_score,
        "rows": rows,
    }
    if scenario.report.cost:
        record["cost"] = _cost_rows(scenario, result.model, splits_of(scenario).test)
    return {**record, "seconds": time.perf_counter() - start}


def _cost_rows(scenario: Scenario, model, data) -> list[dict]:
    """``report.cost``: the energy, latency and area of one inference of ``model`` on
    each device at each report time (:func:`crossbar.cost`: the test inputs, the same
    chips as the test rows)."""
    rows = []
    for preset in scenario.resolved_presets():
        for t in scenario.report_times(preset):
            priced = crossbar.cost(model, preset, data, t, scenario.report.n_chips, seed=chip_seed(scenario, "test"))
            rows.append({"preset": preset.name, "t_inference": t, "energy_j": priced.energy_j,
                         "energy_j_p10": float(np.percentile(priced.chip_energy_j, 10)),
                         "energy_j_p90": float(np.percentile(priced.chip_energy_j, 90)),
                         "latency_s": priced.latency_s, "area_mm2": priced.area_mm2, "ops": priced.ops,
                         "tops_per_w": priced.tops_per_w, "tops_per_mm2": priced.tops_per_mm2,
                         "components": priced.by_component()})
    return rows


def record_of(plain: dict, spec: TrialSpec, *, device: Optional[str] = None,
              progress: bool = False) -> "TrialRecord | FinalRecord":
    """What an executor runs: a search trial (:func:`trial_record`), or with
    ``spec["stage"] == "final"`` a final network's test measurement (:func:`final_record`)."""
    measure = final_record if spec.get("stage") == "final" else trial_record
    return measure(plain, spec, device=device, progress=progress)

