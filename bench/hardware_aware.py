"""Hardware-aware training under every shipped preset: does it train, and is it robust?

    .venv/bin/python bench/hardware_aware.py [--seeds 3] [--schedules default] [--scales 1.0]

LeNet-5 on scikit-learn's digits, the default TrainConfig (30 epochs). For each preset
(the five built-in ones, the default scenario's CMO ReRAM with stuck devices, and the
BayesFT log-normal drift at sigma 1.0 and 1.5), plain training against hardware-aware
training with each schedule: the clean validation accuracy, and the mean validation
accuracy over 20 chips at the time the noise was injected for (1 day; the log-normal
model has no time). Mean over seeds. Target (issue 21): clean within 5 points of plain
training's and chips at least plain training's; the last column says which is missed.
"""

from __future__ import annotations

import argparse
import statistics
import time

import crossbar
import models

PRESETS = {
    "ideal": "ideal",
    "pcm": "pcm",
    "reram_wan2022": "reram_wan2022",
    "reram_cmo": "reram_cmo",
    "reram_cmo_faults": {"name": "reram_cmo_faults", "base": "reram_cmo", "p_sa0": 0.02, "p_sa1": 0.005},
    "lognormal 0.5": "lognormal",
    "lognormal 1.0": {"name": "lognormal 1.0", "base": "lognormal", "sigma": 1.0},
    "lognormal 1.5": {"name": "lognormal 1.5", "base": "lognormal", "sigma": 1.5},
}
SCHEDULES = {
    "default": {},  # models.WARMUP, models.RAMP: half the epochs plain, then full strength
    "from the start": {"warmup": 0.0, "ramp": 0.0},
    "warmup 0.3, ramp 0.3": {"warmup": 0.3, "ramp": 0.3},
    "warmup 0.8": {"warmup": 0.8, "ramp": 0.0},
}
T_DAY = 86400.0


def measure(splits, config, preset, seed: int) -> tuple[float, float, float]:
    net = models.build("lenet5", splits.in_shape, splits.n_classes, seed=seed)
    start = time.perf_counter()
    result = models.train(net, splits, config, seed=seed)
    seconds = time.perf_counter() - start
    chips = crossbar.evaluate(result.model, splits.val, preset, [T_DAY], 20, seed=1000 + seed)
    return result.val_score or 0.0, float(chips.mean()), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--schedules", nargs="*", default=["default"], help=f"of {list(SCHEDULES)}")
    parser.add_argument("--scales", nargs="*", type=float, default=[1.0], help="noise strengths (HardwareAware.scale)")
    parser.add_argument("--presets", nargs="*", default=list(PRESETS), help=f"of {list(PRESETS)}")
    args = parser.parse_args()
    splits = models.load_dataset("digits", seed=0)
    print(f"LeNet-5 on digits, 30 epochs, seeds 0..{args.seeds - 1}; clean = clean validation accuracy, "
          "chips = mean validation accuracy of 20 chips at 1 day")
    print(f"\n{'preset':18s} {'training':30s} {'clean':>6s} {'chips':>6s} {'s/run':>6s}  target")
    for label in args.presets:
        spec = PRESETS[label]
        preset = crossbar.preset(spec)
        rows = {"plain": models.TrainConfig()}
        for name in args.schedules:
            for scale in args.scales:
                rows[f"HWA {name}, scale {scale:g}"] = models.TrainConfig(
                    hardware_aware={"preset": spec, "t_inference": T_DAY, "scale": scale, **SCHEDULES[name]})
        plain = None
        for what, config in rows.items():
            runs = [measure(splits, config, preset, seed) for seed in range(args.seeds)]
            clean, chips, seconds = (statistics.mean(r[i] for r in runs) for i in range(3))
            if plain is None:
                plain, verdict = (clean, chips), ""
            else:
                missed = [f"clean {clean - plain[0]:+.3f}"] * (clean < plain[0] - 0.05)
                missed += [f"chips {chips - plain[1]:+.3f}"] * (chips < plain[1])
                verdict = "missed: " + ", ".join(missed) if missed else "met"
            print(f"{label:18s} {what:30s} {clean:6.3f} {chips:6.3f} {seconds:6.1f}  {verdict}", flush=True)

if __name__ == "__main__":
    main()
