"""Where the Monte Carlo's time goes with the periphery on: a profile by kind of work.

    .venv/bin/python bench/periphery_profile.py

The same set-up as ``bench/mc_eval.py`` (the same LeNet-5, 2,000 MNIST test images or
random ones, ``pcm`` at 1 day with aihwkit's default DAC/ADC/output noise, batch 256), but on
one thread and under torch's profiler, so each operator's own time is counted once.
The operators are grouped by the work they do:

- Gaussian draws: ``aten::normal_``, almost all of them output noise, one draw per
  output of every layer, per image and chip (aihwkit's ``out_noise``); about 3 % are
  the devices' programming and drift noise;
- analog products: the matrix products of DAC codes with each chip's weights
  (``baddbmm_``/``addmm_``/``bmm``/``mm``);
- DAC codes of convolution patches: scaling each input patch by its own largest value
  and rounding it (element-wise work on the 7-d patch view, 25x a 5x5 conv's input);
- max-pool windows and everything else (ReLU, ADC rounding, bias, bounds checks...).

It also times the clean digital passes over the same images on one thread, so each
group can be read as a fraction of them. This is the evidence for the README's claim
that the periphery's remaining cost is its physics (the draws and the per-patch
products), not overhead.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import crossbar  # noqa: E402
import mc_eval  # noqa: E402

PRODUCTS = {"aten::baddbmm_", "aten::addmm_", "aten::bmm", "aten::mm", "aten::addmm", "aten::baddbmm"}
DAC_OPS = {"aten::mul", "aten::round_", "aten::clamp_"}
GROUPS = ("Gaussian draws (normal_)", "analog products", "DAC codes of conv patches", "max-pool windows", "everything else")


def group_of(name: str, shapes) -> str:
    if name == "aten::normal_":
        return GROUPS[0]
    if name in PRODUCTS:
        return GROUPS[1]
    if name in DAC_OPS and shapes and len(shapes[0]) == 7:
        return GROUPS[2]
    if name == "aten::maximum":
        return GROUPS[3]
    return GROUPS[4]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chips", type=int, default=16, help="chips to profile (default 16, as in mc_eval.py)")
    args = parser.parse_args()
    torch.set_num_threads(1)

    x_all, y_all, source = mc_eval.load_data()
    x, y = x_all[: mc_eval.N_IMAGES], y_all[: mc_eval.N_IMAGES]
    model = mc_eval.bench_model(x_all, y_all, source)
    preset = crossbar.get_preset("pcm", **crossbar.AIHWKIT_PERIPHERY)

    def run():
        return crossbar.evaluate(model, (x, y), preset, [mc_eval.T_DAY], args.chips, batch_size=mc_eval.BATCH, threads=1)

    run()  # warm-up: allocator, thread pool
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        run()
    seconds: dict[str, float] = defaultdict(float)
    other: dict[str, float] = defaultdict(float)
    draws = 0
    for event in prof.key_averages(group_by_input_shape=True):
        group = group_of(event.key, event.input_shapes)
        seconds[group] += event.self_cpu_time_total / 1e6
        if group == GROUPS[4]:
            other[event.key] += event.self_cpu_time_total / 1e6
        if group == GROUPS[0] and event.input_shapes and event.input_shapes[0]:
            draws += event.count * int(torch.Size(event.input_shapes[0]).numel())

    clean = mc_eval.best_of({"clean": lambda: mc_eval.clean_passes(model, x, y, args.chips)}, 3)["clean"][0]

    total = sum(seconds.values())
    print(f"data: {source}; {len(y)} images, LeNet-5, pcm at 1 day with aihwkit's default periphery, "
          f"{args.chips} chips, batch {mc_eval.BATCH}, one thread, torch {torch.__version__}")
    print(f"clean digital passes over the same images ({args.chips} of them, one thread): {clean:.3f} s\n")
    print(f"  {'kind of work (self CPU time under the profiler)':50s} {'seconds':>8s} {'share':>6s} {'x clean':>8s}")
    for group in GROUPS:
        print(f"  {group:50s} {seconds[group]:8.3f} {seconds[group] / total:6.0%} {seconds[group] / clean:8.2f}")
    print(f"  {'total':50s} {total:8.3f} {1:6.0%} {total / clean:8.2f}")
    largest = sorted(other.items(), key=lambda kv: -kv[1])[:5]
    print("  everything else, largest: " + ", ".join(f"{name.removeprefix('aten::')} {sec:.3f} s" for name, sec in largest))
    rate = draws / seconds[GROUPS[0]] if seconds[GROUPS[0]] else float("nan")
    print(f"\n{draws / 1e6:.1f} M Gaussian draws ({draws / (args.chips * len(y)):.0f} per image "
          f"and chip) at {rate / 1e6:.0f} M draws/s on one core")
    floor = seconds[GROUPS[0]] + seconds[GROUPS[1]] + seconds[GROUPS[2]]
    print(f"draws + analog products + patch DAC codes alone: {floor:.3f} s = {floor / clean:.2f}x the clean passes")


if __name__ == "__main__":
    main()
