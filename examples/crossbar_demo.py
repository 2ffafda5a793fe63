"""End-to-end demo of the crossbar simulator alone (`make demo`), without a search.

Trains LeNet-5 on scikit-learn's bundled handwritten digits (no download), then
programs it onto simulated chips of every device preset and measures test accuracy
from 1 s to 1 year after programming, and against the rate of stuck-at faults.

    .venv/bin/python examples/crossbar_demo.py [--out runs/demo] [--chips 25] [--seed 0]

Writes ``results.json`` and ``accuracy_vs_time.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import crossbar
import models
from crossbar import readable

ROOT = Path(__file__).resolve().parents[1]

DAY = 86400.0
TIMES = [1.0, 60.0, 3600.0, DAY, 2 * DAY, 30 * DAY, 365 * DAY]
PRESETS = ["ideal", "pcm", "reram_wan2022", "reram_cmo", "lognormal"]
FAULT_SCALES = [0.0, 0.25, 0.5, 1.0, 2.0]  # multiples of the chen2015 profile
LABELS = {
    "reram_wan2022": "reram_wan2022 (defined at 1 s, 1 d, 2 d)",
    "lognormal": "lognormal, sigma = 0.5 (time-independent)",
}


def plot(results: dict, digital: float, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_f) = plt.subplots(1, 2, figsize=(13, 5.6), gridspec_kw={"width_ratios": [1.6, 1]})
    for name, rows in results["time"].items():
        t = np.array([r["t_inference"] for r in rows])
        mean = np.array([r["mean"] for r in rows])
        lo = np.array([r["p10"] for r in rows])
        hi = np.array([r["p90"] for r in rows])
        label = LABELS.get(name, name)
        if crossbar.get_preset(name).times is not None:  # defined at a few times only: no line between
            ax_t.errorbar(t, mean, yerr=[mean - lo, hi - mean], fmt="s", capsize=4, label=label)
            continue
        line, = ax_t.plot(t, mean, marker="o", label=label)
        ax_t.fill_between(t, lo, hi, color=line.get_color(), alpha=0.15)
    ax_t.axhline(digital, color="black", linestyle="--", linewidth=1, label="digital")
    ax_t.set_xscale("log")
    ax_t.set_xticks(TIMES, [readable(t) for t in TIMES])
    ax_t.minorticks_off()
    ax_t.set_xlabel("time since programming")
    ax_t.set_ylabel("test accuracy")
    ax_t.set_title(f"Accuracy over time ({results['n_chips']} chips: mean, 10th-90th percentile)")
    ax_t.grid(True, alpha=0.3)
    ax_t.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, fontsize=9, frameon=False)  # off the bands

    for name, rows in results["faults"].items():
        p = np.array([100 * (r["p_sa0"] + r["p_sa1"]) for r in rows])
        mean = np.array([r["mean"] for r in rows])
        line, = ax_f.plot(p, mean, marker="o", label=name)
        ax_f.fill_between(p, [r["p10"] for r in rows], [r["p90"] for r in rows], color=line.get_color(), alpha=0.15)
    chen = crossbar.FAULT_PROFILES["chen2015"]
    ax_f.axvline(100 * (chen["p_sa0"] + chen["p_sa1"]), color="grey", linestyle=":", label="Chen et al. 2015")
    ax_f.axhline(digital, color="black", linestyle="--", linewidth=1)
    ax_f.set_xlabel("stuck devices, % (SA0:SA1 = 9.04:1.75)")
    ax_f.set_ylabel("test accuracy")
    ax_f.set_title("Stuck-at faults at t = 1 day")
    ax_f.grid(True, alpha=0.3)
    ax_f.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize=9, frameon=False)
    fig.tight_layout()
    path = out / "accuracy_vs_time.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def summarise(acc: np.ndarray) -> dict:
    return {
        "mean": float(acc.mean()),
        "std": float(acc.std()),
        "p10": float(np.percentile(acc, 10)),
        "p90": float(np.percentile(acc, 90)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "demo", help="output folder (default runs/demo)")
    parser.add_argument("--chips", type=int, default=25, help="simulated chips per preset and time (default 25)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args()
    if args.chips < 1:
        parser.error(f"--chips must be >= 1, got {args.chips}")
    if args.seed < 0:
        parser.error(f"--seed must be >= 0, got {args.seed}")
    args.out.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    splits = models.load_dataset("digits", seed=args.seed)
    net = models.build("lenet5", splits.in_shape, splits.n_classes, seed=args.seed)
    model = models.train(net, splits, models.TrainConfig(epochs=30), seed=args.seed, progress=not args.quiet).model
    x_test, y_test = splits.test
    digital = models.accuracy(model, splits.test)
    sizes = splits.sizes()
    print(f"trained LeNet-5 on digits ({sizes['train']} train / {sizes['val']} validation / {sizes['test']} test): "
          f"digital test accuracy {digital:.4f} ({time.perf_counter() - start:.1f} s)")

    results = {"digital": digital, "n_chips": args.chips, "seed": args.seed, "time": {}, "faults": {}}
    for name in PRESETS:
        preset = crossbar.get_preset(name)
        times = [t for t in TIMES if preset.times is None or t in preset.times]
        acc = crossbar.evaluate(
            model, (x_test, y_test), preset, times, args.chips, seed=args.seed, progress=not args.quiet
        )
        results["time"][name] = [{"t_inference": t, **summarise(a)} for t, a in zip(times, acc)]

    chen = crossbar.FAULT_PROFILES["chen2015"]
    for name in ("ideal", "reram_cmo"):
        rows = []
        for scale in FAULT_SCALES:
            p0, p1 = scale * chen["p_sa0"], scale * chen["p_sa1"]
            preset = crossbar.get_preset(name, p_sa0=p0, p_sa1=p1)
            acc = crossbar.evaluate(
                model, (x_test, y_test), preset, [DAY], args.chips, seed=args.seed, progress=not args.quiet
            )
            rows.append({"p_sa0": p0, "p_sa1": p1, **summarise(acc[0])})
        results["faults"][f"{name} + faults"] = rows

    header = f"{'preset':15s}" + "".join(f"{readable(t):>14s}" for t in TIMES)
    print(f"\ntest accuracy, mean +- std over {args.chips} chips (digital: {digital:.4f})")
    print(header)
    for name, rows in results["time"].items():
        cells = {r["t_inference"]: f"{r['mean']:.3f}+-{r['std']:.3f}" for r in rows}
        print(f"{name:15s}" + "".join(f"{cells.get(t, '-'):>14s}" for t in TIMES))
    print("\nstuck-at faults at 1 day (x chen2015 profile):")
    for name, rows in results["faults"].items():
        print(f"{name:18s}" + "".join(f"  x{s:g}: {r['mean']:.3f}" for s, r in zip(FAULT_SCALES, rows)))

    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    path = plot(results, digital, args.out)
    print(f"\nwrote {args.out / 'results.json'} and {path} ({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
