"""Repeats of one experiment over seeds, and what they say with statistics.

``seeds: [0, 1, 2, 3, 4]`` (or ``--seeds 0-4``) runs the whole experiment once per seed,
each into its own sub-folder ``seed-<n>/`` of the run: every seed its own split, initial
weights, optimiser and chips, so the repeats are independent replicates. The summary
(:func:`summarise`) gives, for each method, preset and report time, the mean test
accuracy over seeds with a 95 % confidence interval (Student's t), and the paired
difference of the search against each baseline (the same seed's two numbers), with its
interval and how many seeds the search won.
"""

from __future__ import annotations

import math
from typing import Iterable, Optional, Sequence

from scipy import stats

from crossbar.durations import readable

from .methods import METHODS, label, optimiser_method
from .report import score_table

CONFIDENCE = 0.95


def interval(values: Sequence[float]) -> tuple[float, float, float]:
    """``(mean, low, high)``: the mean and its two-sided 95 % interval (Student's t);
    the interval is the mean itself for a single value."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, mean, mean
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def summarise(per_seed: dict[int, dict], search: Optional[str] = None) -> dict:
    """The summary of each seed's ``results.json`` (``per_seed``: seed -> its content);
    ``search``: the method paired against each other one (default: the optimiser's)."""
    seeds = sorted(per_seed)
    first = per_seed[seeds[0]]
    if search is None:
        search = optimiser_method().id if optimiser_method() else ""
    sign = 1.0 if first.get("higher_is_better", True) else -1.0
    cells = _by_seed(per_seed, "results", ROW_KEYS)
    rows = [{**row, "per_seed": [cells[key].get(s) for s in seeds]}
            for key, row in zip(cells, _over_seeds(cells, seeds, ROW_KEYS))]
    sweep = _over_seeds(_by_seed(per_seed, "sweep", SWEEP_KEYS), seeds, SWEEP_KEYS)
    if first["mode"] in ("study", "evaluate"):  # each variant against the first (the baseline variant)
        reference = next(iter(first["methods"]), None)
        paired = [p for method in first["methods"] if method != reference
                  for p in _pairs(cells, seeds, method, reference, sign)]
    else:
        paired = [p for method in dict.fromkeys(m for m, _, _ in cells) if method != search
                  for p in _pairs(cells, seeds, search, method, sign)]
    methods = {}
    for seed in seeds:
        for method, info in per_seed[seed]["methods"].items():
            methods.setdefault(method, {"label": info.get("label", label(method)), "status": [], "test_clean": []})
            methods[method]["status"].append(info.get("status"))
            methods[method]["test_clean"].append(info.get("test_clean"))
    for info in methods.values():
        clean = [c for c in info["test_clean"] if c is not None]
        info["test_clean_mean"] = sum(clean) / len(clean) if clean else None
        info["status"] = "ok" if any(s == "ok" for s in info["status"]) else "failed"
    return {
        "scenario": first["scenario"], "mode": first["mode"], "seeds": seeds, "presets": first["presets"],
        "objective_times": first["objective_times"], "objective": first["objective"],
        "n_classes": first.get("n_classes"), "task": first.get("task", "classification"),
        "metric": first.get("metric", "accuracy"),
        **{key: first[key] for key in ("metric_label", "higher_is_better", "chance") if key in first},
        "methods": methods, "results": rows, "sweep": sweep,
        "paired": paired, "confidence": CONFIDENCE, "band": "ci",
    }


#: What identifies a row of ``results`` and of ``sweep`` in a seed's results.json.
ROW_KEYS = ("method", "preset", "t_inference")
SWEEP_KEYS = (*ROW_KEYS, "parameter", "value")


def _by_seed(per_seed: dict[int, dict], part: str, keys: Sequence[str]) -> dict[tuple, dict[int, float]]:
    """The rows of ``part`` ("results" or "sweep") of each seed's results: for each key
    (``keys``' values), each seed's mean accuracy."""
    cells: dict[tuple, dict[int, float]] = {}
    for seed in sorted(per_seed):
        for row in per_seed[seed].get(part) or []:
            cells.setdefault(tuple(row[k] for k in keys), {})[seed] = row["mean"]
    return cells


def _over_seeds(cells: dict[tuple, dict[int, float]], seeds: list[int], keys: Sequence[str]) -> list[dict]:
    """One row per key: the mean over the seeds that have it, and its 95 % interval."""
    rows = []
    for key, by_seed in cells.items():
        mean, low, high = interval([by_seed[s] for s in seeds if s in by_seed])
        rows.append({**dict(zip(keys, key)), "mean": mean, "ci_low": low, "ci_high": high, "n_seeds": len(by_seed)})
    return rows


def _pairs(cells: dict, seeds: list[int], method: str, baseline: str, sign: float = 1.0) -> list[dict]:
    """``method`` minus ``baseline`` paired by seed, per preset and time: the mean
    difference, its 95 % interval, and on how many seeds ``method`` was ahead (higher,
    or with ``sign`` -1, for a metric where lower is better, lower)."""
    rows = []
    for (m, preset, t), theirs in cells.items():
        if m != baseline or (method, preset, t) not in cells:
            continue
        ours = cells[(method, preset, t)]
        common = [s for s in seeds if s in ours and s in theirs]
        if not common:
            continue
        diffs = [ours[s] - theirs[s] for s in common]
        mean, low, high = interval(diffs)
        rows.append({"method": method, "baseline": baseline, "preset": preset, "t_inference": t, "mean_diff": mean,
                     "ci_low": low, "ci_high": high, "wins": sum(sign * d > 0 for d in diffs),
                     "ties": sum(d == 0 for d in diffs), "n_seeds": len(common)})
    return rows


def verdict(low: float, high: float, expect: str, n_seeds: int) -> str:
    """What a paired difference's 95 % interval says of a claim that the accuracy is
    ``expect`` ("higher", "lower" or "same") than the baseline's."""
    if n_seeds < 2:
        return "not significant"  # one seed: no interval
    if expect == "same":
        return "agrees" if low <= 0 <= high else "disagrees"
    above, below = low > 0, high < 0
    if expect == "higher":
        return "agrees" if above else "disagrees" if below else "not significant"
    return "agrees" if below else "disagrees" if above else "not significant"


def judge(per_seed: dict[int, dict], findings: list, times: Iterable[float]) -> list[dict]:
    """Each finding of a study (:class:`search.schema.Finding`) judged from the seeds'
    results: per variant and device at the objective's first time, the paired
    difference to the baseline variant with its interval and verdict; the finding
    agrees when every comparison does, disagrees when any does, else not significant."""
    seeds = sorted(per_seed)
    cells = _by_seed(per_seed, "results", ROW_KEYS)
    first = per_seed[seeds[0]]
    reference = next(iter(first["methods"]), None)
    t = next(iter(times))
    judged = []
    for finding in findings:
        baseline = finding.baseline or reference
        comparisons = []
        for variant in finding.variants:
            for pair in _pairs(cells, seeds, variant, baseline):
                if pair["t_inference"] == t:
                    pair["verdict"] = verdict(pair["ci_low"], pair["ci_high"], finding.expect, pair["n_seeds"])
                    comparisons.append(pair)
        verdicts = {c["verdict"] for c in comparisons}
        overall = ("agrees" if verdicts == {"agrees"} else "disagrees" if "disagrees" in verdicts
                   else "not significant")
        judged.append({"claim": finding.claim, "expect": finding.expect, "baseline": baseline, "verdict": overall,
                       "t_inference": t, "comparisons": comparisons})
    return judged


def finding_lines(judged: list[dict]) -> list[str]:
    """The judged findings as text: the verdict, then each comparison's numbers."""
    lines = []
    for finding in judged:
        lines.append(f"{finding['verdict']}: {finding['claim']} (against {finding['baseline']}, "
                     f"at {readable(finding['t_inference'])})")
        for c in finding["comparisons"]:
            spread = (f" [{c['ci_low']:+.3f}, {c['ci_high']:+.3f}] over {c['n_seeds']} seeds" if c["n_seeds"] > 1
                      else " (one seed)")
            lines.append(f"    {c['preset']}: {c['method']}: {c['mean_diff']:+.3f}{spread}, {c['verdict']}")
    return lines


def seeds_table(summary: dict) -> str:
    """Mean test score over seeds, +- the half-width of its 95 % interval."""
    return score_table(summary, lambda r: f"{r['mean']:.3f}+-{(r['ci_high'] - r['ci_low']) / 2:.3f}",
                       "test_clean_mean")


def paired_lines(summary: dict, times: Optional[Iterable[float]] = None) -> list[str]:
    """One line per baseline: the search's paired difference at the objective's times (a
    study's: each variant's against the first variant)."""
    wanted = set(times if times is not None else summary["objective_times"])
    lines = []
    for row in summary["paired"]:
        if row["t_inference"] not in wanted:
            continue
        name = summary["methods"].get(row["baseline"], {}).get("label", row["baseline"])
        method = METHODS.get(row["method"])
        ours = (method.short or method.label) if method is not None else row["method"]
        lines.append(f"{row['preset']}, {readable(row['t_inference'])}: {ours} - {name}: "
                     f"{row['mean_diff']:+.3f} [{row['ci_low']:+.3f}, {row['ci_high']:+.3f}], "
                     f"wins {row['wins']} of {row['n_seeds']}")
    return lines
