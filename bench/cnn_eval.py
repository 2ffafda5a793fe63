"""Monte-Carlo speed on CIFAR-sized networks: ResNet-20 and VGG-11 against clean passes.

    .venv/bin/python bench/cnn_eval.py

``bench/mc_eval.py`` measures LeNet-5, whose convolutions are small. Here: ResNet-20
and VGG-11 (batch norm) on 512 random 32x32 colour images (untrained networks; speed
does not depend on the weights), 4 chips, ``pcm`` at 1 day, batch 256, all measured in
this one run, best of interleaved repeats:

  (a) 4 clean digital passes over the images,
  (b) crossbar.evaluate with a perfect periphery,
  (c) crossbar.evaluate with aihwkit's default DAC/ADC/output noise,
  (c0) the same as (c) with the two periphery shortcuts switched off: convolution DAC
       codes made for the whole batch at once instead of in cache-sized blocks
       (``CODE_BLOCK_BYTES``), and outputs with few positions per image computed
       image by image instead of as one product (``FEW_COLUMNS``). (c0) against (c)
       is what the shortcuts give on this machine.

(c) and (c0) agree: with the blocks alone the numbers are identical (tested); the one
product sums in another order, which can move a value next to an ADC step by one step.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

import crossbar
import crossbar.inputs
import crossbar.periphery
import models

ROOT = Path(__file__).resolve().parents[1]

N_IMAGES, N_CHIPS, T_DAY, BATCH = 512, 4, 86400.0, 256


def clean_passes(net, x) -> None:
    with torch.no_grad():
        for _ in range(N_CHIPS):
            for i in range(0, len(x), BATCH):
                net(x[i:i + BATCH])


def evaluate(net, x, y, preset, shortcuts: bool = True) -> float:
    saved = crossbar.inputs.CODE_BLOCK_BYTES, crossbar.periphery.FEW_COLUMNS
    if not shortcuts:
        crossbar.inputs.CODE_BLOCK_BYTES, crossbar.periphery.FEW_COLUMNS = 1 << 62, 0
    try:
        return float(crossbar.evaluate(net, (x, y), preset, [T_DAY], N_CHIPS, batch_size=BATCH).mean())
    finally:
        crossbar.inputs.CODE_BLOCK_BYTES, crossbar.periphery.FEW_COLUMNS = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2, help="interleaved repeats")
    parser.add_argument("--models", nargs="+", default=["resnet20", "vgg11"], choices=["resnet20", "vgg11"])
    args = parser.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(N_IMAGES, 3, 32, 32, generator=gen)
    y = torch.randint(0, 10, (N_IMAGES,), generator=gen)
    perfect = crossbar.get_preset("pcm")
    periphery = crossbar.get_preset("pcm", **crossbar.AIHWKIT_PERIPHERY)
    print(f"{N_IMAGES} random 32x32 images, {N_CHIPS} chips, pcm at t = 1 day, batch {BATCH}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    for name in args.models:
        net = models.build(name, (3, 32, 32), 10, seed=0).eval()
        runs = {
            "(a) 4 clean digital passes": lambda: clean_passes(net, x),
            "(b) evaluate, perfect periphery": lambda: evaluate(net, x, y, perfect),
            "(c) evaluate, periphery on": lambda: evaluate(net, x, y, periphery),
            "(c0) periphery on, shortcuts off": lambda: evaluate(net, x, y, periphery, shortcuts=False),
        }
        best = {k: float("inf") for k in runs}
        for _ in range(args.repeats):
            for key, fn in runs.items():
                start = time.perf_counter()
                fn()
                best[key] = min(best[key], time.perf_counter() - start)
        clean = best["(a) 4 clean digital passes"]
        params = sum(p.numel() for p in net.parameters()) / 1e6
        print(f"\n{name} ({params:.2f} M weights):")
        print(f"  {'measurement':36s} {'seconds':>8s} {'x (a)':>7s}")
        for key, sec in best.items():
            print(f"  {key:36s} {sec:8.2f} {sec / clean:7.2f}")
        speedup = best["(c0) periphery on, shortcuts off"] / best["(c) evaluate, periphery on"]
        print(f"  the shortcuts make the periphery {speedup:.2f}x faster")


if __name__ == "__main__":
    main()
