"""Training speed: how long models.train takes to reach its accuracy, on this machine.

    .venv/bin/python bench/train_speed.py [--seeds 3]

Trains on scikit-learn's bundled digits (and, when ../shared/data/mnist-t10k exists,
on that 10,000-image MNIST set split 68/12/20) with the default TrainConfig (Adam,
lr 3e-3, cosine schedule, 30 epochs, batch 64) and train's default thread count, plain
and hardware-aware, and prints the seconds per run and the test accuracy (mean and range
over seeds).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

import models
from models.training import SMALL_STEP

ROOT = Path(__file__).resolve().parents[1]

MNIST = ROOT.parent / "shared" / "data" / "mnist-t10k"


def run(splits: models.Splits, name: str, config: models.TrainConfig, seeds: int, dropout=None, **options) -> dict:
    seconds, accs, epochs = [], [], []
    for seed in range(seeds):
        net = models.build(name, splits.in_shape, splits.n_classes, dropout=dropout, seed=seed, **options)
        start = time.perf_counter()
        result = models.train(net, splits, config, seed=seed)
        seconds.append(time.perf_counter() - start)
        accs.append(models.accuracy(result.model, splits.test))
        epochs.append(result.epochs_run)
    return {"seconds": float(np.mean(seconds)), "acc": float(np.mean(accs)), "lo": min(accs), "hi": max(accs),
            "epochs": float(np.mean(epochs))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3, help="runs per row (seeds 0..N-1)")
    args = parser.parse_args()
    print(f"models.train's default threads (one for steps under {SMALL_STEP:,} multiply-adds, else "
          f"torch's {torch.get_num_threads()}), torch {torch.__version__}; mean over seeds 0..{args.seeds - 1}")

    default = models.TrainConfig()
    hwa = models.TrainConfig(hardware_aware={"preset": "lognormal"})
    hwa_pcm = models.TrainConfig(hardware_aware={"preset": {"base": "pcm", "faults": "chen2015"}})
    digits = models.load_dataset("digits", seed=0)
    rows = [
        ("digits", "lenet5", "plain", run(digits, "lenet5", default, args.seeds)),
        ("digits", "lenet5", "plain, dropout 0.1", run(digits, "lenet5", default, args.seeds, dropout=0.1)),
        ("digits", "lenet5", "hardware-aware (lognormal)", run(digits, "lenet5", hwa, args.seeds)),
        ("digits", "lenet5", "hardware-aware (pcm + faults)", run(digits, "lenet5", hwa_pcm, args.seeds)),
        ("digits", "mlp", "plain (2 x 256)", run(digits, "mlp", default, args.seeds)),
    ]
    if MNIST.is_dir():
        mnist = models.load_dataset("idx", root=MNIST, seed=0)
        rows.append(("mnist-t10k", "lenet5", "plain, 10 epochs",
                     run(mnist, "lenet5", models.TrainConfig(epochs=10), args.seeds)))
    print(f"\n{'data':11s} {'network':8s} {'training':30s} {'s/run':>6s} {'epochs':>6s} {'test acc':>9s}  range")
    for data, net, what, r in rows:
        print(f"{data:11s} {net:8s} {what:30s} {r['seconds']:6.1f} {r['epochs']:6.0f} {r['acc']:9.4f}  "
              f"{r['lo']:.4f}-{r['hi']:.4f}")


if __name__ == "__main__":
    main()
