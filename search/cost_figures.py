"""The plot of ``report.cost``: test score against energy per inference."""

from __future__ import annotations

from crossbar.durations import readable

from .figures import _band, _label, _legend_columns, _metric, _plt, _references
from .methods import color

#: One marker per device, in the order of the run's presets.
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")


def score_vs_energy(results: dict):
    """One panel per report time: each method (colour) on each device (marker) at its
    energy per inference (log axis; the bar spans the 10th-90th percentile chip's
    energy) and its test score (the bar: the 10th-90th percentile chip)."""
    plt = _plt()
    cost = results["cost"]
    times = sorted({r["t_inference"] for r in cost})
    presets = results["presets"]
    methods = list(results["methods"])
    cols = min(len(times), 3)
    rows = -(-len(times) // cols)
    width = max(7.0, 4.8 * cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width, 4.2 * rows + 1.6), squeeze=False, sharey=True,
                             layout="constrained")
    low_key, high_key = _band(results)
    for ax, t in zip(axes.flat, times):
        for p, preset in enumerate(presets):
            for m, method in enumerate(methods):
                priced = next((r for r in cost if r["method"] == method and r["preset"] == preset
                               and r["t_inference"] == t), None)
                score = next((r for r in results["results"] if r["method"] == method and r["preset"] == preset
                              and r["t_inference"] == t), None)
                if priced is None or score is None:
                    continue
                x = priced["energy_j"] * 1e9
                # the chips' energies can be equal to the last bits: no bar below zero length
                xerr = [[max(0.0, x - priced.get("energy_j_p10", priced["energy_j"]) * 1e9)],
                        [max(0.0, priced.get("energy_j_p90", priced["energy_j"]) * 1e9 - x)]]
                y = score["mean"]
                yerr = [[max(0.0, y - score[low_key])], [max(0.0, score[high_key] - y)]]
                ax.errorbar([x], [y], xerr=xerr, yerr=yerr,
                            fmt=MARKERS[p % len(MARKERS)], color=color(method, m), capsize=3, markersize=7)
        ax.set_xscale("log")
        ax.set_xlabel("energy per inference, nJ (log scale)")
        ax.set_title(f"{readable(t)} after programming")
        ax.grid(True, alpha=0.3)
        _references(ax, results, "test_clean")
    for ax in axes.flat[len(times):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel(f"test {_metric(results)} (bar: 10th-90th percentile chip)")
    handles = [plt.Line2D([], [], color=color(m, i), marker="o", linestyle="", label=_label(results, m))
               for i, m in enumerate(methods)]
    handles += [plt.Line2D([], [], color="0.3", marker=MARKERS[p % len(MARKERS)], linestyle="", label=preset)
                for p, preset in enumerate(presets)]
    labels = [h.get_label() for h in handles]
    fig.legend(handles=handles, loc="outside lower center", frameon=False, fontsize=9,
               ncol=_legend_columns(width - 0.5, labels, fontsize=9))
    fig.suptitle(f"{results['scenario']}: test {_metric(results)} against energy per inference\n"
                 f"colour: method; marker: device; {cost[0].get('ops', 0):.3g} ops per inference (1 MAC = 2 ops)")
    return fig

