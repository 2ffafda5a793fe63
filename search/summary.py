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
import re
from typing import Any, Iterable, Optional, Sequence

from scipy import stats

from crossbar.durations import readable

CONFIDENCE = 0.95


def parse_seeds(text: Any) -> list[int]:
    """Seeds from ``"0-4"``, ``"0,2,5"``, ``"3"``, an int or a list of ints."""
    if isinstance(text, bool):
        raise ValueError(f"{text!r} is not a list of seeds")
    if isinstance(text, int):
        values = [text]
    elif isinstance(text, (list, tuple)):
        values = list(text)
    elif isinstance(text, str):
        values = []
        for part in text.replace(" ", "").split(","):
            match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
            if not match:
                raise ValueError(f"{text!r} is not a list or range of seeds; e.g. 0-4 or 0,2,5")
            lo, hi = int(match.group(1)), int(match.group(2) or match.group(1))
            if hi < lo:
                raise ValueError(f"{part!r}: a range of seeds goes up, e.g. 0-4")
            values += list(range(lo, hi + 1))
    else:
        raise ValueError(f"{text!r} is not a list or range of seeds; e.g. 0-4 or 0,2,5")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 2**32:
            raise ValueError(f"a seed is an integer in [0, 2^32), not {v!r}")
    if len(set(values)) != len(values):
        raise ValueError(f"each seed once; {values} repeats one")
    if not values:
        raise ValueError("list at least one seed")
    return values


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


def summarise(per_seed: dict[int, dict], search: str = "bayesft") -> dict:
    """The summary of each seed's ``results.json`` (``per_seed``: seed -> its content)."""
    from .methods import label  # the method table imports the schema, which imports parse_seeds from here

    seeds = sorted(per_seed)
    first = per_seed[seeds[0]]
    cells: dict[tuple, dict[int, float]] = {}
    for seed in seeds:
        for row in per_seed[seed]["results"]:
            cells.setdefault((row["method"], row["preset"], row["t_inference"]), {})[seed] = row["mean"]
    rows = []
    for (method, preset, t), by_seed in cells.items():
        mean, low, high = interval([by_seed[s] for s in seeds if s in by_seed])
        rows.append({"method": method, "preset": preset, "t_inference": t, "mean": mean, "ci_low": low,
                     "ci_high": high, "n_seeds": len(by_seed), "per_seed": [by_seed.get(s) for s in seeds]})
    sweep_cells: dict[tuple, dict[int, float]] = {}
    for seed in seeds:
        for row in per_seed[seed].get("sweep") or []:
            key = (row["method"], row["preset"], row["t_inference"], row["parameter"], row["value"])
            sweep_cells.setdefault(key, {})[seed] = row["mean"]
    sweep = []
    for (method, preset, t, parameter, value), by_seed in sweep_cells.items():
        mean, low, high = interval([by_seed[s] for s in seeds if s in by_seed])
        sweep.append({"method": method, "preset": preset, "t_inference": t, "parameter": parameter, "value": value,
                      "mean": mean, "ci_low": low, "ci_high": high, "n_seeds": len(by_seed)})
    paired = []
    for (method, preset, t), by_seed in cells.items():
        if method == search or (search, preset, t) not in cells:
            continue
        ours = cells[(search, preset, t)]
        common = [s for s in seeds if s in ours and s in by_seed]
        if not common:
            continue
        diffs = [ours[s] - by_seed[s] for s in common]
        mean, low, high = interval(diffs)
        paired.append({"method": search, "baseline": method, "preset": preset, "t_inference": t, "mean_diff": mean,
                       "ci_low": low, "ci_high": high, "wins": sum(d > 0 for d in diffs),
                       "ties": sum(d == 0 for d in diffs), "n_seeds": len(common)})
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
        "n_classes": first.get("n_classes"), "methods": methods, "results": rows, "sweep": sweep, "paired": paired,
        "confidence": CONFIDENCE, "band": "ci",
    }


def summary_table(summary: dict) -> str:
    """Mean test accuracy over seeds, +- the half-width of its 95 % interval."""
    times = sorted({r["t_inference"] for r in summary["results"]})
    width = max([16, *(len(p) for p in summary["presets"])])
    lines = [f"{'preset':{width}s} {'method':28s} {'clean':>6s}" + "".join(f"{readable(t):>14s}" for t in times)]
    for preset in summary["presets"]:
        for method, info in summary["methods"].items():
            cells = {r["t_inference"]: f"{r['mean']:.3f}+-{(r['ci_high'] - r['ci_low']) / 2:.3f}"
                     for r in summary["results"] if r["method"] == method and r["preset"] == preset}
            clean = f"{info['test_clean_mean']:.3f}" if info.get("test_clean_mean") is not None else "-"
            lines.append(f"{preset:{width}s} {info['label'][:28]:28s} {clean:>6s}"
                         + "".join(f"{cells.get(t, '-'):>14s}" for t in times))
    return "\n".join(lines)


def paired_lines(summary: dict, times: Optional[Iterable[float]] = None) -> list[str]:
    """One line per baseline: the search's paired difference at the objective's times."""
    wanted = set(times if times is not None else summary["objective_times"])
    lines = []
    for row in summary["paired"]:
        if row["t_inference"] not in wanted:
            continue
        name = summary["methods"].get(row["baseline"], {}).get("label", row["baseline"])
        lines.append(f"{row['preset']}, {readable(row['t_inference'])}: BayesFT - {name}: "
                     f"{row['mean_diff']:+.3f} [{row['ci_low']:+.3f}, {row['ci_high']:+.3f}], "
                     f"wins {row['wins']} of {row['n_seeds']}")
    return lines
