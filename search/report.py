"""What a run reports: ``results.json`` and the tables printed at its end."""

from __future__ import annotations

from typing import Callable, Iterable, Optional

from crossbar.durations import readable
from crossbar.metrics import metric_label

from .methods import label, optimiser_method
from .records import FinalRecord, TrialRecord, best_of_each_method, worst
from .schema import Scenario
from .space import TRAINING, point_of


def results(scenario: Scenario, slots: list[str], trials: dict[str, TrialRecord], finals: dict[str, FinalRecord],
            order: list[str], seconds: float) -> dict:
    """The content of ``results.json``: the search's best rates, each method's final
    network (rates, validation objective, clean test score) and its test score by the
    scenario's metric per preset and time (rows ``{method, preset, t_inference, metric,
    mean, std, n_chips, p10, p90}``); with ``report.sweep``, ``sweep`` rows carry the
    ``parameter`` and its ``value`` too."""
    methods: dict[str, dict] = {}
    rows, sweep, cost = [], [], []
    for final_id in order:
        record = finals[final_id]
        method = record["method"]
        rates = record["rates"]
        rate_map = dict(zip(slots, rates)) if isinstance(rates, list) else rates
        val = trials.get(record.get("trial", ""), {})
        methods[method] = {
            "label": label(method),
            "status": record["status"],
            "reason": record.get("reason"),
            "rates": rate_map,
            **{name: record[name] for name in TRAINING if name in record},
            "hardware_aware": bool(record.get("hardware_aware")),
            "trial": record.get("trial"),
            "val_objective": val.get("objective"),
            "val_clean": val.get("val_clean"),
            "test_clean": record.get("test_clean"),
        }
        for row in record.get("rows", []):
            (sweep if "parameter" in row else rows).append({"method": method, "metric": scenario.metric, **row})
        cost += [{"method": method, **row} for row in record.get("cost", [])]
    done = list(trials.values())
    metric = scenario.score
    searched = optimiser_method()
    best = best_of_each_method(done, metric.higher_is_better).get(searched.id) if searched else None
    dims = scenario.dimensions() if scenario.mode == "search" else []
    _, n_classes = scenario.data_shape()
    return {
        "scenario": scenario.name,
        "mode": scenario.mode,
        "task": scenario.task,
        "metric": scenario.metric,
        "metric_label": metric.label,
        "higher_is_better": metric.higher_is_better,
        "chance": metric.chance(n_classes) if metric.chance is not None else None,
        "slots": slots,
        "bounds": list(scenario.search.bounds),
        "n_classes": n_classes,
        "best_dropout": dict(zip(slots, best["rates"])) if best else None,
        "best_point": ({d.name: v for d, v in zip(dims, point_of(dims, best))} if best else None),
        "best_objective": best["objective"] if best else None,
        "space": {d.name: [d.low, d.high] for d in dims},
        "objective": scenario.objective.model_dump(),
        "objective_times": scenario.t_inference,
        "presets": [p["name"] for p in scenario.presets],
        "devices": scenario.presets,
        "methods": methods,
        "results": rows,
        "sweep": sweep,
        **({"cost": cost} if scenario.report.cost else {}),
        "n_trials": len(done),
        "failed_trials": sum(1 for t in done if t.get("status") != "ok"),
        "infeasible_trials": len(below_floor(done)),
        "seconds": seconds,
    }


def below_floor(trials: Iterable[TrialRecord]) -> list[TrialRecord]:
    """Finished trials whose clean validation score missed ``objective.min_clean_score`` (scored the worst)."""
    return [t for t in trials if t.get("status") == "ok" and t.get("feasible") is False]


def feasibility_note(scenario: Scenario, trials: Iterable[TrialRecord]) -> Optional[str]:
    """A line when trials missed ``objective.min_clean_score`` (they score the worst),
    above all when every one did: the "best" rates are then an arbitrary pick."""
    floor = scenario.objective.min_clean_score
    ok = [t for t in trials if t.get("status") == "ok"]
    low = below_floor(ok)
    if floor is None or not low:
        return None
    metric = scenario.score
    below = "below" if metric.higher_is_better else "above"
    if len(low) < len(ok):
        return (f"{len(low)} of {len(ok)} trials had a clean validation {metric.label} {below} "
                f"objective.min_clean_score = {floor:g} and scored {worst(metric.higher_is_better):g}")
    best = (max if metric.higher_is_better else min)(t["val_clean"] for t in ok)
    return (f"no trial reached objective.min_clean_score = {floor:g} (the best clean validation {metric.label} was "
            f"{best:.3f}): every objective is {worst(metric.higher_is_better):g} and the rates above are an "
            "arbitrary pick; lower it, or train longer")


def run_table(results: dict) -> str:
    """A run's test scores (mean +- std over chips) per preset, method and time, as text."""
    table = score_table(results, lambda r: f"{r['mean']:.3f}+-{r['std']:.3f}", "test_clean", failed=True)
    return f"test {_label(results)}, mean+-std over chips:\n{table}"


def _label(results: dict) -> str:
    return results.get("metric_label") or metric_label(results.get("metric", "accuracy"))


def score_table(results: dict, cell: Callable[[dict], str], clean: str, failed: bool = False) -> str:
    """The text table of ``results`` rows: per preset and method, the clean score
    (``methods[...][clean]``) and ``cell(row)`` at each time; with ``failed``, a method
    that failed says so instead."""
    times = sorted({r["t_inference"] for r in results["results"]})
    width = max([16, *(len(p) for p in results["presets"])])
    lines = [f"{'preset':{width}s} {'method':28s} {'clean':>6s}" + "".join(f"{readable(t):>14s}" for t in times)]
    for preset in results["presets"]:
        for method, info in results["methods"].items():
            cells = {r["t_inference"]: cell(r) for r in results["results"]
                     if r["method"] == method and r["preset"] == preset}
            text = f"{info[clean]:.3f}" if info.get(clean) is not None else "-"
            if failed and info["status"] != "ok":
                text, cells = "failed", {}
            lines.append(f"{preset:{width}s} {info['label'][:28]:28s} {text:>6s}"
                         + "".join(f"{cells.get(t, '-'):>14s}" for t in times))
    return "\n".join(lines)


def cost_table(results: dict) -> str:
    """``report.cost``: per preset and method, the energy, latency and area of one
    inference and TOPS/W, at the first objective time (the energy of later times in
    results.json)."""
    rows = results.get("cost") or []
    if not rows:
        return ""
    times = sorted({r["t_inference"] for r in rows})
    wanted = [t for t in results.get("objective_times", []) if t in times]
    t = wanted[0] if wanted else times[0]
    width = max([16, *(len(p) for p in results["presets"])])
    lines = [f"cost per inference at {readable(t)} (mean over chips; 1 MAC = 2 ops):",
             f"{'preset':{width}s} {'method':28s} {'energy nJ':>10s} {'latency us':>11s} {'area mm2':>9s} "
             f"{'TOPS/W':>8s}"]
    for preset in results["presets"]:
        for method, info in results["methods"].items():
            for r in rows:
                if r["method"] == method and r["preset"] == preset and r["t_inference"] == t:
                    lines.append(f"{preset:{width}s} {info['label'][:28]:28s} {r['energy_j'] * 1e9:>10.4g} "
                                 f"{r['latency_s'] * 1e6:>11.4g} {r['area_mm2']:>9.4g} {r['tops_per_w']:>8.3g}")
    return "\n".join(lines)


def sweep_time(results: dict, preset: Optional[str] = None) -> float:
    """The time a sweep is shown at: the first objective time it measured (of
    ``preset``'s rows), else its first time."""
    times = sorted({r["t_inference"] for r in results["sweep"] if preset is None or r["preset"] == preset})
    wanted = [t for t in results.get("objective_times", []) if t in times]
    return wanted[0] if wanted else times[0]


def sweep_table(results: dict, time: Optional[float] = None) -> str:
    """Test scores against the swept parameter's values (mean over chips; over seeds
    for a summary), per preset and method, at ``time`` (default: the first objective time
    the sweep measured)."""
    rows = results.get("sweep") or []
    if not rows:
        return ""
    parameter = rows[0]["parameter"]
    t = time if time is not None else sweep_time(results)
    values = sweep_values(rows)
    groups = sweep_groups(results)
    width = max([16, *(len(", ".join(g)) for g in groups)])
    column = max([8, *(len(str(v)) + 1 for v in values if isinstance(v, str))])
    lines = [f"test {_label(results)} against {parameter} at {readable(t)}:",
             f"{'preset':{width}s} {'method':28s}" + "".join(f"{value_text(v):>{column}s}" for v in values)]
    for group in groups:
        for method, info in results["methods"].items():
            cells = {r["value"]: f"{r['mean']:.3f}" for r in rows
                     if r["method"] == method and r["preset"] == group[0] and r["t_inference"] == t}
            if cells:
                lines.append(f"{', '.join(group):{width}s} {info['label'][:28]:28s}"
                             + "".join(f"{cells.get(v, '-'):>{column}s}" for v in values))
    return "\n".join(lines)


def sweep_values(rows: list[dict]) -> list:
    """A sweep's values in order: numbers ascending, names as the scenario gave them."""
    values = list(dict.fromkeys(r["value"] for r in rows))
    return values if any(isinstance(v, str) for v in values) else sorted(values)


def value_text(value) -> str:
    return value if isinstance(value, str) else format(value, ".3g")


def sweep_groups(results: dict) -> list[list[str]]:
    """The presets of a sweep, those with the same numbers at every value together (two
    devices that differ only in the swept parameter become the same device)."""
    groups: dict[tuple, list[str]] = {}
    for preset in results["presets"]:
        mine = sorted((r["method"], r["t_inference"], r["value"], r["mean"]) for r in results.get("sweep") or []
                      if r["preset"] == preset)
        if mine:
            groups.setdefault(tuple(mine), []).append(preset)
    return list(groups.values())
