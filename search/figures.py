"""The figures of a run's plots, each from its ``results.json`` (and trials), for
:mod:`search.plot` to save: one function per figure, named after its file."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from crossbar.durations import readable
from crossbar.metrics import METRICS, metric_label

from .methods import METHODS, color, label, search_methods
from .report import sweep_groups, sweep_time, sweep_values
from .space import TRAINING


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: Path) -> Path:
    """Write ``fig`` to ``path`` with nothing drawn cut off, and close it."""
    fig.savefig(path, dpi=120, bbox_inches="tight", pad_inches=0.15)  # nothing drawn is cut off
    _plt().close(fig)
    return path


def _rows(results: dict, method: str, preset: str) -> list[dict]:
    rows = [r for r in results["results"] if r["method"] == method and r["preset"] == preset]
    return sorted(rows, key=lambda r: r["t_inference"])


def _label(results: dict, method: str) -> str:
    return results["methods"][method].get("label", method)


def _metric(results: dict) -> str:
    """How the plots name the chips' score: accuracy, or a detector's mAP@0.5."""
    return results.get("metric_label") or metric_label(results.get("metric", "accuracy"))


def higher_is_better(results: dict) -> bool:
    """Whether the run's metric is better higher (results.json says; else the table)."""
    if "higher_is_better" in results:
        return bool(results["higher_is_better"])
    metric = METRICS.get(results.get("metric", "accuracy"))
    return metric.higher_is_better if metric is not None else True


def _chance(results: dict) -> "float | None":
    """The metric's chance level, as results.json records it (else from the table)."""
    if "chance" in results:
        return results["chance"]
    metric, n_classes = METRICS.get(results.get("metric", "accuracy")), results.get("n_classes")
    return metric.chance(n_classes) if metric is not None and metric.chance is not None and n_classes else None


def _over_seeds(results: dict) -> bool:
    """A summary over seeds (search.summary): its band is the mean's interval over seeds,
    its clean accuracy the mean over seeds."""
    return results.get("band") == "ci"


def _band(results: dict) -> tuple[str, str]:
    """The keys of a row's band: the 10th and 90th percentile chip, or the interval over seeds."""
    return ("ci_low", "ci_high") if _over_seeds(results) else ("p10", "p90")


def _clean_key(results: dict) -> str:
    return "test_clean_mean" if _over_seeds(results) else "test_clean"


def _same_numbers(results: dict) -> dict[str, str]:
    """Methods with identical test numbers everywhere (BayesFT settling on no dropout
    trains the ERM network again) would draw one line exactly over another: the methods
    to draw, in order, each with a label naming the ones it stands for."""
    first: dict[tuple, str] = {}
    labels: dict[str, str] = {}
    for method in results["methods"]:
        low, high = _band(results)
        rows = sorted((r["preset"], r["t_inference"], r["mean"], r[low], r[high])
                      for r in results["results"] if r["method"] == method)
        key = tuple(rows)
        if rows and key in first:
            labels[first[key]] += f" = {_label(results, method)}"
        else:
            first.setdefault(key, method)
            labels[method] = _label(results, method)
    return labels


def _legend_columns(width_inches: float, labels: list[str], fontsize: float = 10.0) -> int:
    """As many legend columns as fit side by side in ``width_inches`` (the widest label decides)."""
    widest = max((len(label) for label in labels), default=1)
    per_column = 0.6 + widest * fontsize * 0.55 / 72  # marker and gap, then the text at about 0.55 em a character
    return max(1, min(len(labels), int(width_inches // per_column)))


def _dodge(n_methods: int) -> np.ndarray:
    """Factors that spread ``n_methods`` points at one time side by side on a log axis."""
    return 1.35 ** (np.arange(n_methods) - (n_methods - 1) / 2)


def _log_position(times: list[float]) -> Callable[[float], float]:
    """Where a time goes on a log axis: itself, or t = 0 a decade before the first other time."""
    positive = [t for t in times if t > 0]
    zero = min(positive) / 10 if positive else 1.0
    return lambda t: t if t > 0 else zero


def _time_axis(ax, times: list[float]) -> None:
    at = _log_position(times)
    ax.set_xscale("log")
    ax.set_xticks([at(t) for t in times], [readable(t) for t in times])  # t = 0 is labelled 0s
    ax.minorticks_off()
    ax.set_xlabel("time since programming (log scale)")


def _digital(results: dict, key: str) -> "tuple[float, str] | None":
    """The clean (digital) score to draw as a reference: that of the method marked
    ``digital_reference`` (no dropout), else the first method's; ``key`` ``test_clean``
    or ``val_clean``."""
    methods = results["methods"]
    for method in [*(m.id for m in METHODS.values() if m.digital_reference), *methods]:
        value = methods.get(method, {}).get(key)
        if value is not None:
            return value, methods[method].get("label", method)
    return None


def _references(ax, results: dict, key: str) -> None:
    """Dotted lines at the digital score and at chance (the metric's, e.g. 1 / classes for
    accuracy; a detector's mAP has none), each named at its right end. Chance far below
    every chip is named at the bottom of the axis instead, so that the differences
    between the methods stay readable."""
    digital = _digital(results, key)
    n_classes = results.get("n_classes")
    low = ax.dataLim.y0  # the lowest point drawn
    lines = [(digital[0], f"digital {_metric(results)}, {digital[1]}: {digital[0]:.3f}")] if digital else []
    far = None
    chance = _chance(results)
    if chance is not None:
        guess = n_classes and abs(chance - 1.0 / n_classes) < 1e-12  # a classifier's: one class of n
        text = f"chance (1 of {n_classes} classes): {chance:.2f}" if guess else f"chance: {chance:.2f}"
        if chance >= low - 0.25:
            lines.append((chance, text))
        else:
            far = text
    for value, text in lines:
        ax.axhline(value, color="black", linestyle=":", linewidth=1)
        ax.annotate(text, (1.0, value), xycoords=("axes fraction", "data"), xytext=(-4, 3),
                    textcoords="offset points", ha="right", va="bottom", fontsize=8)
    if far:
        ax.annotate(f"{far}, below this axis", (1.0, 0.0), xycoords="axes fraction", xytext=(-4, 3),
                    textcoords="offset points", ha="right", va="bottom", fontsize=8, color="0.35")


def scores_vs_time(results: dict):
    """The test score against time since programming, one panel per preset."""
    plt = _plt()
    presets = results["presets"]
    n = len(presets)
    cols = min(n, 3)
    rows = -(-n // cols)
    width = max(9.0, 5.2 * cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width, 4.2 * rows + 1.2), squeeze=False, sharey=True,
                             layout="constrained")
    labels = _same_numbers(results)
    methods = list(labels)
    single = multi = False
    over_seeds, band_keys = _over_seeds(results), _band(results)
    for ax, preset in zip(axes.flat, presets):
        times = sorted({r["t_inference"] for r in results["results"] if r["preset"] == preset})
        at = _log_position(times)
        # one time only: the methods' points side by side around it, not on top of each other
        dodge = _dodge(len(methods)) if len(times) == 1 else np.ones(len(methods))
        for i, method in enumerate(methods):
            data = _rows(results, method, preset)
            if not data:
                continue
            t = np.array([at(r["t_inference"]) for r in data])
            mean = np.array([r["mean"] for r in data])
            lo, hi = (np.array([r[k] for r in data]) for k in band_keys)
            color_ = color(method, list(results["methods"]).index(method))  # as in the other plots
            if len(t) == 1:
                single = True
                ax.errorbar(t * dodge[i], mean, yerr=[mean - lo, hi - mean], fmt="o", color=color_, capsize=4,
                            label=labels[method])
            else:
                multi = True
                ax.plot(t, mean, marker="o", color=color_, label=labels[method])
                ax.fill_between(t, lo, hi, color=color_, alpha=0.12)
        _time_axis(ax, times)
        if len(times) == 1:
            ax.set_xlim(at(times[0]) / (2 * dodge[-1]), at(times[0]) * 2 * dodge[-1])
        ax.set_title(preset)
        ax.grid(True, alpha=0.3)
        ax.set_ylabel(f"test {_metric(results)}")
        _references(ax, results, _clean_key(results))
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    shown = {(True, False): "line = mean, band", (False, True): "point = mean, bar"}.get(
        (multi, single), "line or point = mean, band or bar")
    if over_seeds:
        n = len(results["seeds"])
        what = f"{n} seeds per point: {shown} = {results['confidence']:.0%} interval of the mean over seeds"
    else:
        n_chips = results["results"][0]["n_chips"] if results["results"] else 0
        what = f"{n_chips} chips per point: {shown} = 10th to 90th percentile chip"
    fig.suptitle(f"{results['scenario']}: test {_metric(results)} against time since programming\n{what}")
    fig.legend(handles, labels, loc="outside lower center", ncol=_legend_columns(width, labels), frameon=False)
    return fig


def _focus_time(results: dict, preset: str) -> float:
    """The report time closest (in log time) to the objective's first time."""
    target = max(results["objective_times"][0], 1e-3)
    times = sorted({r["t_inference"] for r in results["results"] if r["preset"] == preset})
    return min(times, key=lambda t: abs(np.log(max(t, 1e-3)) - np.log(target)))


def technologies(results: dict):
    """The presets side by side at the objective's time, per method."""
    plt = _plt()
    presets = results["presets"]
    methods = list(results["methods"])
    fig_width = max(6.0, 1.2 + 1.1 * len(presets) * max(1, len(methods)) / 2.5)
    fig, ax = plt.subplots(figsize=(fig_width, 4.5))
    width = 0.8 / max(1, len(methods))
    for i, method in enumerate(methods):
        means, errs, labels = [], [], []
        for preset in presets:
            t = _focus_time(results, preset) if _rows(results, method, preset) else None
            row = next((r for r in _rows(results, method, preset) if r["t_inference"] == t), None)
            means.append(row["mean"] if row else np.nan)
            errs.append(row["std"] if row else 0.0)
        x = np.arange(len(presets)) + (i - (len(methods) - 1) / 2) * width
        ax.bar(x, means, width, yerr=errs, capsize=3, color=color(method, i), label=_label(results, method))
    labels = [f"{p}\n(t = {readable(_focus_time(results, p))})" for p in presets]
    ax.set_xticks(np.arange(len(presets)), labels)
    finite = [r["mean"] - r["std"] for r in results["results"]]
    ax.set_ylim(max(0.0, min(finite, default=0.0) - 0.05), 1.0)
    ax.set_ylabel(f"test {_metric(results)} (mean +- std over chips)")
    ax.set_title(f"{results['scenario']}: device presets side by side")
    ax.grid(True, axis="y", alpha=0.3)
    legend_labels = [_label(results, m) for m in methods]
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False,
              ncol=_legend_columns(fig_width - 1.0, legend_labels, fontsize=8))
    fig.tight_layout()
    return fig


def sweep(results: dict):
    """The test score against the swept device parameter at the objective's time, one
    panel per preset, one line per method (band: 10th-90th percentile chip, or the
    interval over seeds for a summary)."""
    plt = _plt()
    rows = results["sweep"]
    parameter = rows[0]["parameter"]
    groups = sweep_groups(results)
    order = sweep_values(rows)
    presets = [group[0] for group in groups]
    cols = min(len(presets), 3)  # panels in rows of three, as the scores against time
    n_rows = -(-len(presets) // cols)
    width = max(7.5, 5.2 * cols)
    fig, axes = plt.subplots(n_rows, cols, figsize=(width, 4.2 * n_rows + 1.2), squeeze=False, sharey=True,
                             layout="constrained")
    for ax in axes.flat[len(presets):]:
        ax.set_visible(False)
    low, high = _band(results)
    for ax, preset, group in zip(axes.flat, presets, groups):
        t = sweep_time(results, preset)
        for index, method in enumerate(results["methods"]):
            mine = sorted((r for r in rows if r["method"] == method and r["preset"] == preset
                           and r["t_inference"] == t), key=lambda r: order.index(r["value"]))
            if not mine:
                continue
            x = [r["value"] for r in mine]
            colour = color(method, index)
            ax.plot(x, [r["mean"] for r in mine], marker="o", markersize=3, color=colour,
                    label=_label(results, method))
            ax.fill_between(x, [r[low] for r in mine], [r[high] for r in mine], color=colour, alpha=0.15, linewidth=0)
        _references(ax, results, _clean_key(results))
        same = f"\n(the same device once {parameter} is set)" if len(group) > 1 else ""
        ax.set_title(f"{', '.join(group)}; t = {readable(t)}{same}", fontsize=10)
        ax.set_xlabel(parameter)
        ax.grid(True, alpha=0.3)
    for row in axes:
        row[0].set_ylabel(f"test {_metric(results)}")
    band = "95% interval of the mean over seeds" if _over_seeds(results) else "10th-90th percentile chip"
    fig.suptitle(f"{results['scenario']}: test {_metric(results)} against {parameter}\nline = mean, band = {band}")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=9, loc="outside lower center",
               ncol=_legend_columns(width, labels, 9), frameon=False)
    return fig


def convergence(results: dict, trials: list[dict]):
    """The searches' best validation objective so far, trial by trial, against the baselines'."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9.5, 4.5))
    higher = higher_is_better(results)
    for method in search_methods():
        records = [t for t in trials if t["method"] == method]
        if not records:
            continue
        records.sort(key=lambda t: t["id"])
        values = np.array([t["objective"] if t.get("status") == "ok" else np.nan for t in records], dtype=float)
        best = (np.fmax if higher else np.fmin).accumulate(np.nan_to_num(values, nan=0.0 if higher else 1.0))
        x = np.arange(1, len(values) + 1)
        name = _label(results, method) if method in results["methods"] else label(method)
        # the best so far changes only at a trial: a step, not a slope between trials
        ax.plot(x, best, color=color(method, 0), linewidth=2, drawstyle="steps-post", label=f"{name}: best so far")
        ax.scatter(x, values, color=color(method, 0), s=14, alpha=0.5, label=f"{name}: each trial")
    for method in METHODS.values():
        info = results["methods"].get(method.id)
        if method.reference and info and info.get("val_objective") is not None:
            ax.axhline(info["val_objective"], color=method.color, linestyle=method.reference, linewidth=1,
                       label=info["label"])
    agg = results["objective"]
    what = "mean" if agg["aggregate"] == "mean" else f"{agg['quantile']:.0%} quantile"
    times = ", ".join(readable(t) for t in results["objective_times"])
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel(f"validation objective ({what} {_metric(results)} over chips)")
    floor = agg.get("min_clean_score", agg.get("min_clean_accuracy"))
    below = (f"; {0 if higher else 1} = clean {_metric(results)} {'below' if higher else 'above'} {floor:g}"
             if floor is not None else "")
    ax.set_title(f"{results['scenario']}: search convergence (objective at {times}{below})")
    ax.grid(True, alpha=0.3)
    _references(ax, results, "val_clean")
    # beside the points, never on them
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    fig.tight_layout()
    return fig


def dropout_rates(results: dict):
    """The point each method chose: its dropout rate per slot, against the search bounds,
    and beside them each training dimension of the space (hwa_scale, ...) on its own axis."""
    plt = _plt()
    slots = results["slots"]
    shown = [m.id for m in METHODS.values() if m.shows_rates and m.id in results["methods"]]
    space = results.get("space") or {}
    training = [name for name in TRAINING if name in space]
    widths = [max(5.5, 0.9 * len(slots) + 2)] + [1.2 + 0.5 * len(shown)] * len(training)
    fig, axes = plt.subplots(1, 1 + len(training), figsize=(sum(widths), 4.2), squeeze=False,
                             gridspec_kw={"width_ratios": widths}, layout="constrained")
    ax = axes[0, 0]
    width = 0.8 / max(1, len(shown))
    for i, method in enumerate(shown):
        rates = results["methods"][method]["rates"]
        x = np.arange(len(slots)) + (i - (len(shown) - 1) / 2) * width
        heights = [rates[s] for s in slots]
        ax.bar(x, heights, width, color=color(method, 0), label=results["methods"][method]["label"])
        for xi, rate in zip(x, heights):
            if rate < 0.005:  # a bar of height 0 is invisible: it would read as missing
                ax.text(xi, 0.01, "0", ha="center", va="bottom", fontsize=7, color=color(method, 0))
    ax.set_xticks(np.arange(len(slots)), slots, rotation=30 if len(slots) > 6 else 0)
    ax.set_xlabel("dropout slot (network order)")
    ax.set_ylabel("dropout rate")
    bounds = results.get("bounds")
    highest = max([0.0, *(results["methods"][m]["rates"][s] for m in shown for s in slots)])
    top = max(highest, bounds[1] if bounds else 0.0)
    ax.set_ylim(0, min(1.0, 1.15 * top) if top > 0 else 1.0)
    if bounds:  # the range the searches drew from: a rate at a bound may want a wider range
        for bound in bounds:
            if bound > 0:
                ax.axhline(bound, color="black", linestyle="--", linewidth=1)
        ax.annotate(f"search bounds: {bounds[0]:g} to {bounds[1]:g}", (0.0, bounds[1]),
                    xycoords=("axes fraction", "data"), xytext=(4, 3), textcoords="offset points", fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    for ax_t, name in zip(axes[0, 1:], training):
        lo, hi = space[name]
        values = [results["methods"][m].get(name, 0.0) for m in shown]
        ax_t.bar(np.arange(len(shown)), values, 0.7, color=[color(m, 0) for m in shown])
        for xi, (method, value) in enumerate(zip(shown, values)):  # the value, and a bar of 0 made visible
            ax_t.text(xi, value + 0.01 * hi, f"{value:.2f}", ha="center", va="bottom", fontsize=7,
                      color=color(method, 0))
        ax_t.set_xticks([])
        ax_t.set_ylim(0, 1.15 * hi)
        ax_t.axhline(hi, color="black", linestyle="--", linewidth=1)
        ax_t.set_title(name, fontsize=10)
        ax_t.set_xlabel(f"searched in [{lo:g}, {hi:g}]")
        ax_t.grid(True, axis="y", alpha=0.3)
    what = "point of the search space" if training else "dropout rate per layer"
    fig.suptitle(f"{results['scenario']}: chosen {what}")
    fig.legend(*ax.get_legend_handles_labels(), fontsize=8, loc="outside lower center", ncol=len(shown), frameon=False)
    return fig
