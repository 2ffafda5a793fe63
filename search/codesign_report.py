"""What a co-design run adds up to: each method's Pareto front on validation, measured
again on test, its hypervolume against the scenario's reference point, the table of the
front, ``pareto_front.png``, and over seeds each method's hypervolume with an interval
and the paired difference to random search and the hand grid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from crossbar.durations import readable

from .codesign_run import LABELS, METHODS, CodesignRun
from .pareto import hypervolume
from .schema import Scenario
from .summary import interval

UNITS = {"score": (1.0, ""), "energy_j": (1e9, "nJ"), "latency_s": (1e6, "us"), "area_mm2": (1.0, "mm2")}
COLORS = {"codesign": "tab:red", "random": "tab:green", "grid": "black"}


def _row(record: dict, test: dict | None) -> dict[str, Any]:
    row = {k: record.get(k) for k in ("id", "method", "device", "rates", "hwa_scale", "hardware", "trained")}
    row["val"] = record["values"]
    row["test"] = test["values"] if test and test.get("status") == "ok" else None
    if test and test.get("status") == "ok":
        row["test_scores"] = [{k: r[k] for k in ("t_inference", "mean", "std", "p10", "p90", "quantile", "n_chips")}
                              for r in test["scores"]]
        row["test_cost"] = test.get("cost")
    return row


def reference_box(names: list[str], maximise: list[bool], ref: list[float]) -> float:
    """The volume between the ideal point (a score of 1, or 0 where it is minimised; a
    cost of 0) and the reference: hypervolumes are stated as a share of it (1 for a
    design of perfect score at no cost). 1 where an objective has no ideal (a cost
    maximised)."""
    volume = 1.0
    for name, up, r in zip(names, maximise, ref):
        if name == "score":
            volume *= abs((1.0 if up else 0.0) - r)
        elif not up:
            volume *= abs(r)
        else:
            return 1.0
    return volume or 1.0


def results_of(scenario: Scenario, run: CodesignRun, seconds: float) -> dict[str, Any]:
    """``results.json`` of a co-design run."""
    cs = scenario.codesign
    names, maximise, ref = cs.names(), cs.maximise(), cs.reference_point()
    box = reference_box(names, maximise, ref)

    def hv(points):  # the share of the box between the ideal point and the reference
        return hypervolume(points, ref, maximise) / box
    fronts = run.fronts()
    methods, rows = {}, {}
    for method in METHODS:
        trials = [r for r in run.done.values() if r["method"] == method]
        if not trials:
            continue
        front = [_row(run.done[i], run.finals.get(i)) for i in fronts[method]]
        rows[method] = front
        tested = [[r["test"][n] for n in names] for r in front if r["test"] is not None]
        methods[method] = {
            "label": LABELS[method], "trials": len(trials),
            "failed": sum(r["status"] != "ok" for r in trials),
            "infeasible": sum(r["status"] == "ok" and not r["feasible"] for r in trials),
            "front": fronts[method],
            "hypervolume_val": hv([[x["val"][n] for n in names] for x in front]),
            "hypervolume": hv(tested) if tested else None,
        }
    trials = [{"id": r["id"], "method": r["method"], "device": r.get("device"), "status": r["status"],
               "values": r.get("values"), "feasible": r.get("feasible"), "trained": r.get("trained")}
              for r in run.done.values()]
    return {
        "mode": "codesign", "scenario": scenario.name, "seed": scenario.seed, "metric": scenario.metric,
        "objectives": [g.model_dump() | {"maximise": g.maximise} for g in cs.objectives], "reference": ref,
        "t_inference": list(scenario.t_inference), "objective": scenario.objective.model_dump(),
        "n_chips": scenario.n_chips, "test_chips": scenario.report.n_chips,
        "trainings": run.trainings(), "methods": methods,
        "hypervolume": {m: v["hypervolume"] for m, v in methods.items()},
        "front": rows.get("codesign", []), "fronts": rows, "trials": trials,
        "results": rows.get("codesign", []),  # non-empty when the run measured something
        "failed_trials": sum(r["status"] != "ok" for r in run.done.values()), "seconds": seconds,
    }


def _fmt(name: str, value: float | None) -> str:
    if value is None:
        return "-"
    scale, unit = UNITS[name]
    return f"{value * scale:.4g}{(' ' + unit) if unit else ''}"


def front_table(results: dict) -> str:
    """The co-design method's front (test values; validation in brackets), best score first."""
    names = [o["name"] for o in results["objectives"]]
    width = max([len(str(r["device"])) for r in results["front"]] + [6])
    lines = [f"{'design':<14} {'device':<{width}} " + " ".join(f"{n + ' test (val)':>24}" for n in names)]
    front = sorted(results["front"], key=lambda r: -(r["test"] or r["val"])["score"])
    for r in front:
        cells = [f"{_fmt(n, (r['test'] or {}).get(n)):>12} ({_fmt(n, r['val'][n])})" for n in names]
        lines.append(f"{r['id']:<14} {str(r['device']):<{width}} " + " ".join(f"{c:>24}" for c in cells))
    lines.append("")
    for method, m in results["methods"].items():
        hv = "-" if m["hypervolume"] is None else f"{m['hypervolume']:.4g}"
        lines.append(f"{m['label']:<18} {m['trials']:>3} trials, front of {len(m['front'])}: hypervolume on test {hv} "
                     f"(validation {m['hypervolume_val']:.4g})")
    t = results["trainings"]
    lines.append(f"trainings: {t['trained']} of {t['trials']} trials trained a network; {t['saved']} reused one")
    lines.append(f"hypervolume: the share of the box between the ideal point and the reference point "
                 f"{results['reference']} ({', '.join(names)}) that a front dominates; larger is better")
    return "\n".join(lines)


def plot_front(results: dict, out: Path) -> Path | None:
    """``pareto_front.png``: the score against the first cost objective, every trial faded
    (validation), each method's front on test with its chips' 10th-90th percentile band,
    the hand grid marked. None for a run with no cost objective."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [o["name"] for o in results["objectives"]]
    costs = [n for n in names if n != "score"]
    if "score" not in names or not costs:
        return None
    x_name = costs[0]
    scale, unit = UNITS[x_name]
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for method in results["methods"]:
        pts = [t for t in results["trials"] if t["method"] == method and t["status"] == "ok"]
        if pts and method != "grid":
            ax.scatter([t["values"][x_name] * scale for t in pts], [t["values"]["score"] for t in pts], s=14,
                       color=COLORS[method], alpha=0.25, label=f"{LABELS[method]}: every trial (validation)")
    t0 = results["t_inference"][0]
    for method, rows in results["fronts"].items():
        tested = sorted([r for r in rows if r["test"] is not None], key=lambda r: r["test"][x_name])
        if not tested:
            continue
        xs = np.array([r["test"][x_name] * scale for r in tested])
        ys = np.array([r["test"]["score"] for r in tested])
        band = [next((s for s in r["test_scores"] if s["t_inference"] == t0), None) for r in tested]
        lo = np.array([ys[i] - b["p10"] if b else 0.0 for i, b in enumerate(band)])
        hi = np.array([b["p90"] - ys[i] if b else 0.0 for i, b in enumerate(band)])
        marker = "X" if method == "grid" else "o"
        ax.errorbar(xs, ys, yerr=[np.clip(lo, 0, None), np.clip(hi, 0, None)], fmt=marker, ms=8 if method == "grid"
                    else 6, color=COLORS[method], capsize=3, label=f"{LABELS[method]}: front, test (chips p10-p90)")
        if method != "grid":
            ax.step(xs, ys, where="post", color=COLORS[method], alpha=0.6)
        else:
            for x, y, r in zip(xs, ys, tested):
                ax.annotate(str(r["device"]).split(" (")[0], (x, y), textcoords="offset points", xytext=(6, -10),
                            fontsize=8)
    objective = results["objective"]
    what = (f"{objective['quantile']:.0%} quantile chip" if objective["aggregate"] == "quantile" else "mean chip")
    metric = results["metric"]
    ax.set_xlabel({"energy_j": f"energy per inference ({unit})", "latency_s": f"latency per inference ({unit})",
                   "area_mm2": "chip area (mm2)"}[x_name])
    ax.set_ylabel(f"{metric}, {what}, {readable(t0)} after programming")
    xs_all = [t["values"][x_name] for t in results["trials"] if t["status"] == "ok"]
    if xs_all and max(xs_all) > 10 * min(xs_all) > 0:
        ax.set_xscale("log")
    ax.set_title(f"{results['scenario']}, seed {results['seed']}: better is up and left\nhypervolume on test: "
                 + ", ".join(f"{LABELS[m]} {v:.3f}" for m, v in results["hypervolume"].items() if v is not None),
                 fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    path = Path(out) / "pareto_front.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def summarise(per_seed: dict[int, dict]) -> dict[str, Any]:
    """Over seeds: each method's test hypervolume (mean and 95 % interval) and the
    co-design search's paired difference to each baseline."""
    seeds = sorted(per_seed)
    first = per_seed[seeds[0]]
    methods = sorted({m for r in per_seed.values() for m in r["hypervolume"]}, key=METHODS.index)
    hv = {m: {s: per_seed[s]["hypervolume"].get(m) for s in seeds} for m in methods}
    table = {}
    for m in methods:
        values = [v for v in hv[m].values() if v is not None]
        if values:
            mean, low, high = interval(values)
            table[m] = {"label": LABELS[m], "mean": mean, "low": low, "high": high, "n_seeds": len(values),
                        "per_seed": hv[m]}
    paired = {}
    for base in ("random", "grid"):
        both = [s for s in seeds if hv.get("codesign", {}).get(s) is not None and hv.get(base, {}).get(s) is not None]
        if both:
            diffs = [hv["codesign"][s] - hv[base][s] for s in both]
            mean, low, high = interval(diffs)
            paired[base] = {"mean": mean, "low": low, "high": high, "wins": sum(d > 0 for d in diffs),
                            "n_seeds": len(both)}
    saved = sum(per_seed[s]["trainings"]["saved"] for s in seeds)
    total = sum(per_seed[s]["trainings"]["trials"] for s in seeds)
    return {"mode": "codesign", "scenario": first["scenario"], "seeds": seeds, "objectives": first["objectives"],
            "reference": first["reference"], "hypervolume": table, "paired": paired,
            "trainings": {"trials": total, "saved": saved}, "results": table}


def seeds_lines(summary: dict) -> list[str]:
    lines = [f"test hypervolume over seeds {', '.join(map(str, summary['seeds']))} (mean [95 % interval]):"]
    for m, v in summary["hypervolume"].items():
        lines.append(f"  {v['label']:<18} {v['mean']:.4g} [{v['low']:.4g}, {v['high']:.4g}]")
    for base, d in summary["paired"].items():
        lines.append(f"  co-design - {LABELS[base]:<14} {d['mean']:+.4g} [{d['low']:+.4g}, {d['high']:+.4g}], "
                     f"ahead on {d['wins']} of {d['n_seeds']} seeds")
    t = summary["trainings"]
    lines.append(f"trainings reused: {t['saved']} of {t['trials']} trials")
    return lines
