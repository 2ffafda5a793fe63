"""Monte-Carlo evaluation speed on a CUDA GPU: crossbar.evaluate against clean passes.

    .venv/bin/python bench/gpu_eval.py            # needs a CUDA GPU; says so otherwise

The set-up of ``bench/mc_eval.py`` (LeNet-5, 2,000 MNIST test images or random ones,
``pcm`` at t = 1 day), on the GPU: (a) clean digital forward passes, one per chip, and
(b) ``crossbar.evaluate`` with a perfect periphery and with aihwkit's default
DAC/ADC/output noise, for several chip counts and batch sizes. The images are on the GPU
beforehand for both. Times are the best of interleaved repeats, each ending in a
synchronising read of the accuracies. aihwkit's own loop is not timed here: its PyPI
wheel has no CUDA tiles.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import mc_eval
import torch

import crossbar

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chips", type=int, nargs="+", default=[16, 100], help="chip counts (default 16 100)")
    parser.add_argument("--batches", type=int, nargs="+", default=[256, 2000], help="batch sizes (default 256 2000)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats; the best counts (default 3)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("bench/gpu_eval.py: no CUDA GPU here; nothing to measure (bench/mc_eval.py measures the CPU)")
        return
    dev = torch.device("cuda")
    x_all, y_all, source = mc_eval.load_data()
    model = mc_eval.bench_model(x_all, y_all, source).to(dev)
    x, y = x_all[: mc_eval.N_IMAGES].to(dev), y_all[: mc_eval.N_IMAGES].to(dev)
    presets = {
        "perfect": crossbar.get_preset("pcm"),
        "periphery": crossbar.get_preset("pcm", **crossbar.AIHWKIT_PERIPHERY),
    }
    print(f"data: {source}; {len(y)} images, LeNet-5, pcm at 1 day; "
          f"{torch.cuda.get_device_name(dev)}, torch {torch.__version__}")

    def clean(chips: int, batch: int):
        def run():
            correct = 0
            with torch.no_grad():
                for _ in range(chips):
                    for i in range(0, len(y), batch):
                        correct += (model(x[i:i + batch]).argmax(-1) == y[i:i + batch]).sum()
            return int(correct) / (chips * len(y))
        return run

    def crossbar_eval(name: str, chips: int, batch: int):
        return lambda: float(
            crossbar.evaluate(model, (x, y), presets[name], [mc_eval.T_DAY], chips, batch_size=batch, device=dev).mean()
        )

    print(f"\n  {'chips':>5s} {'batch':>5s} {'clean s':>8s} {'perfect s':>9s} {'x clean':>7s} "
          f"{'periph. s':>9s} {'x clean':>7s} {'chips/s (periph.)':>17s}")
    for chips in args.chips:
        for batch in args.batches:
            fns = {"clean": clean(chips, batch), "perfect": crossbar_eval("perfect", chips, batch),
                   "periphery": crossbar_eval("periphery", chips, batch)}
            for fn in fns.values():  # warm-up: kernels, allocator, cuBLAS handles
                fn()
            torch.cuda.synchronize()
            r = mc_eval.best_of(fns, args.repeats)
            c, p, q = r["clean"][0], r["perfect"][0], r["periphery"][0]
            print(f"  {chips:5d} {batch:5d} {c:8.3f} {p:9.3f} {p / c:7.2f} {q:9.3f} {q / c:7.2f} {chips / q:17.1f}",
                  flush=True)
            print(f"        accuracy: clean {r['clean'][1]:.4f}, perfect {r['perfect'][1]:.4f}, "
                  f"periphery {r['periphery'][1]:.4f}")
    print(f"\npeak GPU memory allocated: {torch.cuda.max_memory_allocated(dev) / 2**20:.0f} MiB")


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"({time.perf_counter() - start:.0f} s in all)")
