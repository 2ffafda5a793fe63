"""Monte-Carlo evaluation speed and memory: crossbar.evaluate against clean passes and aihwkit.

    .venv/bin/python bench/mc_eval.py            # or: make bench

LeNet-5 on 2,000 MNIST test images (../shared/data/mnist-t10k when present, trained
for a few seconds on the other 8,000; otherwise random images of the same shape and an
untrained net), 16 chips, pcm at t = 1 day. Everything is measured in this one run:

  (a) 16 clean digital forward passes over the 2,000 images,
  (a') the same 16 digital passes along crossbar's execution path: the model converted
      with the ideal preset (exact weights), forward passes only. It runs the same
      exact shortcuts as (b): max-pools as a running maximum of strided views, one
      thread per pass, passes side by side. (b) against (a') is the cost of the
      simulation itself; (b) against (a) is what the issue's targets compare.
  (b) crossbar.evaluate (default strategy, and the folded one for reference),
  (c) aihwkit's per-chip loop: convert_to_analog once, then per chip
      program_analog_weights, drift_analog_weights and the forward passes, with
      InferenceRPUConfig (C++ tiles) and TorchInferenceRPUConfig (torch tiles).

First with a perfect periphery (forward.is_perfect = True on aihwkit's side), then with
aihwkit's default DAC/ADC/output-noise values on both sides (aihwkit: its default
IOParameters and weight_scaling_omega = 1, the normalisation crossbar uses), then the
array effects on top of that periphery, measured side by side with it: IR drop alone
(aihwkit's default wire ratio, ir_drop 1) and every effect at once (ARRAY_EFFECTS).
Peak memory for 100 chips is measured in fresh subprocesses. Timings are the best of several
interleaved repeats (aihwkit's loops too); ratios compare figures from this run only,
against the best clean figure of both blocks (the clean passes do not change with the
periphery).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

import crossbar
import models

ROOT = Path(__file__).resolve().parents[1]

MNIST = ROOT.parent / "shared" / "data" / "mnist-t10k"
N_IMAGES, N_CHIPS, T_DAY, BATCH = 2000, 16, 86400.0, 256

#: Every array effect at once, at the strengths of scenarios/array_effects.yaml.
ARRAY_EFFECTS = dict(
    ir_drop=1.0, w_noise=0.02, w_noise_type="pcm_read", out_nonlinearity=0.5, levels=16, g_max_variation=0.05,
    p_row_fault=0.01, p_col_fault=0.01, p_cluster=0.001,
)
EFFECT_ROWS = {
    "periphery on": {}, "periphery on + IR drop": dict(ir_drop=1.0), "periphery on + every effect": ARRAY_EFFECTS,
}


def load_data() -> tuple[torch.Tensor, torch.Tensor, str]:
    images, labels = MNIST / "t10k-images-idx3-ubyte.gz", MNIST / "t10k-labels-idx1-ubyte.gz"
    if images.exists() and labels.exists():
        x = np.frombuffer(gzip.open(images).read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)
        y = np.frombuffer(gzip.open(labels).read(), np.uint8, offset=8)
        x = (torch.tensor(x, dtype=torch.float32) / 255.0 - 0.1307) / 0.3081
        return x, torch.tensor(y, dtype=torch.long), f"MNIST test set from {MNIST}"
    gen = torch.Generator().manual_seed(0)
    return (
        torch.randn(10000, 1, 28, 28, generator=gen),
        torch.randint(0, 10, (10000,), generator=gen),
        "random images (MNIST not found)",
    )


def best_of(fns: dict, repeats: int) -> dict:
    """Run the functions interleaved ``repeats`` times; keep each one's best time."""
    best = {k: float("inf") for k in fns}
    results = {}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            results[name] = fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return {k: (best[k], results[k]) for k in fns}


def bench_model(x_all, y_all, source: str) -> torch.nn.Module:
    """LeNet-5, trained for a few seconds on the 8,000 images not evaluated when the
    data is MNIST (untrained on random images), in eval mode."""
    model = models.build("lenet5", (1, 28, 28), 10, seed=0)
    if source.startswith("MNIST"):
        model = models.train(
            model, (x_all[N_IMAGES:], y_all[N_IMAGES:]), models.TrainConfig(epochs=3, lr=2e-3), seed=0
        ).model
    return model.eval()


def accuracy(model, x, y) -> float:
    """Share of right predictions over batches; a converted model predicts once per chip."""
    correct = total = 0
    with torch.no_grad():
        for i in range(0, len(y), BATCH):
            pred = model(x[i:i + BATCH]).argmax(-1)
            correct += int((pred == y[i:i + BATCH]).sum())
            total += pred.numel()
    return correct / total


def clean_passes(model, x, y, passes: int = N_CHIPS):
    return sum(accuracy(model, x, y) for _ in range(passes)) / passes


def digital_passes_crossbar_path(xideal, x, y):
    """(a'): forward passes of the model converted with the ideal preset (programmed
    beforehand: exact weights, no noise), i.e. digital passes along evaluate's path."""
    return accuracy(xideal, x, y)


def aihwkit_loop(model, x, y, torch_tile: bool, perfect: bool):
    from aihwkit.inference.noise.pcm import PCMLikeNoiseModel
    from aihwkit.nn.conversion import convert_to_analog
    from aihwkit.simulator.configs import InferenceRPUConfig, TorchInferenceRPUConfig

    rpu = TorchInferenceRPUConfig() if torch_tile else InferenceRPUConfig()
    rpu.noise_model = PCMLikeNoiseModel()
    rpu.forward.is_perfect = perfect
    rpu.mapping.weight_scaling_omega = 1.0
    analog = convert_to_analog(model, rpu).eval()
    accs = []
    with torch.no_grad():
        for chip in range(N_CHIPS):
            torch.manual_seed(chip)
            analog.program_analog_weights()
            analog.drift_analog_weights(T_DAY)
            correct = 0
            for i in range(0, len(y), BATCH):
                correct += int((analog(x[i:i + BATCH]).argmax(-1) == y[i:i + BATCH]).sum())
            accs.append(correct / len(y))
    return float(np.mean(accs))


def measure_peak(strategy: str, periphery: bool, max_memory: int | None, effects: dict | None = None) -> dict:
    """Peak RSS of evaluating 100 chips, in a fresh process (so earlier work does not count)."""
    options = f"batch_size={BATCH}, strategy={strategy!r}, max_memory={max_memory}"
    code = f"""
import json, resource, sys, torch, psutil
import crossbar, mc_eval, models

x, y, _ = mc_eval.load_data()
model = models.build("lenet5", (1, 28, 28), 10, seed=0).eval()
x, y = x[:{N_IMAGES}], y[:{N_IMAGES}]
preset = crossbar.get_preset("pcm", **(crossbar.AIHWKIT_PERIPHERY if {periphery} else {{}}), **{effects or {}!r})
def hwm():  # VmHWM is reset at exec, unlike ru_maxrss, which a child inherits
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
before, before_peak = psutil.Process().memory_info().rss, hwm()
acc = crossbar.evaluate(model, (x, y), preset, [{T_DAY}], 100, {options})
print(json.dumps(dict(before=before, before_peak=before_peak, peak=hwm())))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parent)  # imports the benchmarks beside it
    return json.loads(out.stdout.strip().splitlines()[-1])


def speed_blocks(model, x, y, args) -> None:
    """(a)-(c) with a perfect periphery and with aihwkit's default one."""
    xideal = crossbar.convert(model, "ideal").program(N_CHIPS).drift(1.0)
    blocks = {}
    for periphery in (False, True):
        preset = crossbar.get_preset("pcm", **(crossbar.AIHWKIT_PERIPHERY if periphery else {}))
        fast = {
            "(a) 16 clean digital passes": lambda: clean_passes(model, x, y),
            "(a') 16 digital passes, crossbar's path": lambda: digital_passes_crossbar_path(xideal, x, y),
            "(b) crossbar.evaluate": lambda: float(
                crossbar.evaluate(model, (x, y), preset, [T_DAY], N_CHIPS, batch_size=BATCH).mean()
            ),
            "(b) crossbar.evaluate, strategy=fold": lambda: float(
                crossbar.evaluate(model, (x, y), preset, [T_DAY], N_CHIPS, batch_size=BATCH, strategy="fold").mean()
            ),
        }
        slow = {
            "(c) aihwkit loop, InferenceRPUConfig": lambda: aihwkit_loop(model, x, y, False, not periphery),
            "(c) aihwkit loop, TorchInferenceRPUConfig": lambda: aihwkit_loop(model, x, y, True, not periphery),
        }
        blocks[periphery] = best_of(fast, args.repeats)
        blocks[periphery].update(best_of(slow, args.slow_repeats))

    # (a) and (a') do not depend on the periphery: the best of both blocks is the
    # reference for both, so one slow stretch of the machine cannot flatter a ratio.
    clean = min(times["(a) 16 clean digital passes"][0] for times in blocks.values())
    path = min(times["(a') 16 digital passes, crossbar's path"][0] for times in blocks.values())
    print(f"\nreference: (a) {clean:.2f} s and (a') {path:.2f} s, the best of both blocks")
    for periphery, times in blocks.items():
        ours = times["(b) crossbar.evaluate"][0]
        aihw = min(sec for name, (sec, _) in times.items() if name.startswith("(c)"))
        print(f"\n{'aihwkit default DAC/ADC/output noise' if periphery else 'perfect periphery'}:")
        print(f"  {'measurement':44s} {'seconds':>8s} {'x (a)':>7s} {'mean acc':>9s}")
        for name, (sec, acc) in times.items():
            print(f"  {name:44s} {sec:8.2f} {sec / clean:7.2f} {acc:9.4f}")
        max_ratio, min_speedup = (1.5, 5.0) if periphery else (1.2, 4.0)
        verdict = lambda ok: "met" if ok else "NOT met"  # noqa: E731
        print(f"  crossbar.evaluate costs {ours / clean:.2f}x the clean passes (target <= {max_ratio}x: "
              f"{verdict(ours / clean <= max_ratio)}) and is {aihw / ours:.1f}x faster than the faster aihwkit "
              f"loop (target >= {min_speedup}x: {verdict(aihw / ours >= min_speedup)}); {ours / path:.2f}x the "
              "digital passes along crossbar's path (a')")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats of the fast measurements")
    parser.add_argument("--slow-repeats", type=int, default=2, help="interleaved repeats of the aihwkit loops")
    parser.add_argument("--skip-memory", action="store_true", help="skip the 100-chip memory runs")
    parser.add_argument("--effects-only", action="store_true", help="only the array effects' rows and memory")
    args = parser.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))

    x_all, y_all, source = load_data()
    x, y = x_all[:N_IMAGES], y_all[:N_IMAGES]
    model = bench_model(x_all, y_all, source)
    print(f"data: {source}; {N_IMAGES} images, LeNet-5, {N_CHIPS} chips, pcm at t = 1 day, batch {BATCH}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")

    if not args.effects_only:
        speed_blocks(model, x, y, args)

    # The array effects, each row measured side by side with the periphery-on row.
    effect_times = best_of({
        name: (lambda extra=extra: float(crossbar.evaluate(
            model, (x, y), crossbar.get_preset("pcm", **crossbar.AIHWKIT_PERIPHERY, **extra), [T_DAY], N_CHIPS,
            batch_size=BATCH).mean()))
        for name, extra in EFFECT_ROWS.items()
    }, args.repeats)
    base = effect_times["periphery on"][0]
    print(f"\narray effects on aihwkit's default periphery (crossbar.evaluate, {N_CHIPS} chips):")
    print(f"  {'measurement':44s} {'seconds':>8s} {'x periphery on':>14s} {'mean acc':>9s}")
    for name, (sec, acc) in effect_times.items():
        print(f"  {name:44s} {sec:8.2f} {sec / base:14.2f} {acc:9.4f}")
    for name, target in (("periphery on + IR drop", 2.0), ("periphery on + every effect", 2.5)):
        ratio = effect_times[name][0] / base
        print(f"  {name}: {ratio:.2f}x the periphery-on row (target <= {target}x: "
              f"{'met' if ratio <= target else 'NOT met'})")

    if not args.skip_memory:
        print("\npeak memory, 100 chips (fresh process; RSS before evaluate -> peak):")
        runs = (("loop", False, None), ("fold", False, None), ("fold", False, 256 << 20),
                ("loop", True, None), ("fold", True, None), ("fold", True, 512 << 20))
        for strategy, periphery, budget in runs if not args.effects_only else ():
            m = measure_peak(strategy, periphery, budget)
            budget_txt = "default budget" if budget is None else f"max_memory={budget >> 20} MiB"
            per = "periphery on" if periphery else "perfect"
            print(f"  {strategy:4s} {per:13s} {budget_txt:22s} {m['before'] / 2**20:6.0f} MiB -> "
                  f"{m['peak'] / 2**20:6.0f} MiB (+{(m['peak'] - m['before']) / 2**20:.0f} MiB)")
        for strategy in ("loop", "fold"):
            m = measure_peak(strategy, True, None, ARRAY_EFFECTS)
            print(f"  {strategy:4s} {'every effect':13s} {'default budget':22s} {m['before'] / 2**20:6.0f} MiB -> "
                  f"{m['peak'] / 2**20:6.0f} MiB (+{(m['peak'] - m['before']) / 2**20:.0f} MiB)")

if __name__ == "__main__":
    main()
