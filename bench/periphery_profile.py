"""Where the Monte Carlo's time goes with the periphery on: wall time by kind of work.

    .venv/bin/python bench/periphery_profile.py

The same set-up as ``bench/mc_eval.py`` (the same LeNet-5, 2,000 MNIST test images or
random ones, ``pcm`` at 1 day with aihwkit's default DAC/ADC/output noise, batch 256), on
one thread, with a wall-clock timer around each stage of the periphery (the compiled
stages are not torch operators, so torch's profiler cannot see them):

- output noise and ADC: :func:`crossbar.kernels.noisy_adc`, one Gaussian per output of
  every layer, per image and chip (aihwkit's ``out_noise``), added to the products,
  rounded to ADC codes and checked against the ADC's bound, in one compiled pass;
- analog products: the matrix products of DAC codes with each chip's weights (MKL,
  through torch);
- DAC codes: noise management and quantisation of every input vector, for
  convolutions one vector per patch, 25x a 5x5 convolution's input (compiled passes,
  :mod:`crossbar.kernels`);
- max-pool windows, and everything else (ReLU, scaling, bias, programming and drift of
  the chips, drift compensation's read-outs, Python).

It also times the clean digital passes over the same images on one thread, so each
stage can be read as a fraction of them.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

import mc_eval
import torch

import crossbar
import crossbar.kernels
import crossbar.periphery
import crossbar.pooling

ROOT = Path(__file__).resolve().parents[1]

NOISE, PRODUCTS, CODES, POOL, OTHER = (
    "output noise and ADC (compiled)", "analog products (MKL)", "DAC codes (compiled)", "max-pool windows",
    "everything else",
)


class Stages:
    """Wall-clock timers around the periphery's functions; time inside a timed call
    that a nested timed call took is counted once, for the inner one."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.draws = 0
        self._stack: list[list[float]] = []
        self._wrapped: list[tuple[object, str, object]] = []

    def wrap(self, owner, name: str, stage: str, count_draws: bool = False) -> None:
        inner = getattr(owner, name)
        self._wrapped.append((owner, name, inner))

        def timed(*args, **kwargs):
            self._stack.append([time.perf_counter(), 0.0])
            try:
                return inner(*args, **kwargs)
            finally:
                start, nested = self._stack.pop()
                spent = time.perf_counter() - start
                self.seconds[stage] += spent - nested
                if self._stack:
                    self._stack[-1][1] += spent
                if count_draws and args[1] is not None and args[2] > 0:  # noisy_adc(z, key, std, ...)
                    self.draws += args[0].numel()

        setattr(owner, name, timed)

    def restore(self) -> None:
        for owner, name, inner in reversed(self._wrapped):
            setattr(owner, name, inner)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chips", type=int, default=16, help="chips to profile (default 16, as in mc_eval.py)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs; the fastest is shown")
    args = parser.parse_args()
    torch.set_num_threads(1)

    x_all, y_all, source = mc_eval.load_data()
    x, y = x_all[: mc_eval.N_IMAGES], y_all[: mc_eval.N_IMAGES]
    model = mc_eval.bench_model(x_all, y_all, source)
    preset = crossbar.get_preset("pcm", **crossbar.AIHWKIT_PERIPHERY)

    def run():
        return crossbar.evaluate(
            model, (x, y), preset, [mc_eval.T_DAY], args.chips, batch_size=mc_eval.BATCH, threads=1
        )

    run()  # warm-up: compiled code, allocator
    best = None
    for _ in range(args.repeats):
        stages = Stages()
        stages.wrap(crossbar.periphery, "noisy_adc", NOISE, count_draws=True)
        stages.wrap(crossbar.periphery.Periphery, "_adc_products", PRODUCTS)
        stages.wrap(crossbar.kernels, "patch_codes", CODES)
        stages.wrap(crossbar.kernels, "row_codes", CODES)
        stages.wrap(crossbar.pooling.WindowMaxPool2d, "forward", POOL)
        try:
            start = time.perf_counter()
            run()
            total = time.perf_counter() - start
        finally:
            stages.restore()
        if best is None or total < best[0]:
            best = (total, stages)
    total, stages = best
    seconds = dict(stages.seconds)
    seconds[OTHER] = total - sum(seconds.values())

    clean = mc_eval.best_of({"clean": lambda: mc_eval.clean_passes(model, x, y, args.chips)}, args.repeats)["clean"][0]
    print(f"data: {source}; {len(y)} images, LeNet-5, pcm at 1 day with aihwkit's default periphery, "
          f"{args.chips} chips, batch {mc_eval.BATCH}, one thread, torch {torch.__version__}")
    print(f"clean digital passes over the same images ({args.chips} of them, one thread): {clean:.3f} s\n")
    print(f"  {'kind of work (wall time, one thread)':44s} {'seconds':>8s} {'share':>6s} {'x clean':>8s}")
    for stage in (NOISE, PRODUCTS, CODES, POOL, OTHER):
        print(f"  {stage:44s} {seconds[stage]:8.3f} {seconds[stage] / total:6.0%} {seconds[stage] / clean:8.2f}")
    print(f"  {'total: crossbar.evaluate':44s} {total:8.3f} {1:6.0%} {total / clean:8.2f}")
    rate = stages.draws / seconds[NOISE] if seconds[NOISE] else float("nan")
    print(f"\n{stages.draws / 1e6:.1f} M output-noise draws ({stages.draws / (args.chips * len(y)):.0f} per image "
          f"and chip), {1e9 / rate:.2f} ns each with the ADC pass")


if __name__ == "__main__":
    main()
