"""Single-device CMO ReRAM and batch normalisation: our simulator against aihwkit's own
pipeline, the physics that takes the network near chance within an hour.

    .venv/bin/python bench/cmo_batchnorm.py              # 24 chips each, about 5 minutes
    .venv/bin/python bench/cmo_batchnorm.py --chips 6

The small ResNet with batch normalisation of bench/calibration.py (digits upsampled to
16x16), trained once, then on fault-free ``reram_cmo`` (perfect periphery, no drift
compensation, no calibration) at 1 s, 1 h and 1 day: (a) ``crossbar.evaluate``; (b)
aihwkit's ``convert_to_analog`` with an ``InferenceRPUConfig`` set as the preset is (its
``ReRamCMONoiseModel`` with our single-device converter, 88.2 / 9 uS, perfect forward,
no drift compensation, digital bias, the same tiles), each chip
``program_analog_weights`` then ``drift_analog_weights(t)``; (c) aihwkit again with the
model's mean relaxation set to zero (8 chips): what remains without the shift that
moves every device of a column alike.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import numpy as np
import torch

import crossbar

sys.path.insert(0, str(Path(__file__).resolve().parent))
from calibration import digits16, train_resnet  # noqa: E402  the same network and data

TIMES = [1.0, 3600.0, 86400.0]


def aihwkit_accuracy(net, x, y, n_chips: int, zero_mean: bool = False) -> np.ndarray:
    from aihwkit.nn.conversion import convert_to_analog
    from aihwkit.simulator.configs import InferenceRPUConfig

    preset = crossbar.get_preset("reram_cmo")
    rpu = InferenceRPUConfig()
    rpu.noise_model = copy.deepcopy(preset.noise_model)
    if zero_mean:
        rpu.noise_model.decay_dict = {"mean": [0.0], "std": list(rpu.noise_model.decay_dict["std"])}
    rpu.forward.is_perfect = True
    rpu.drift_compensation = None
    rpu.mapping.digital_bias = True
    rpu.mapping.weight_scaling_omega = 1.0
    rpu.mapping.max_input_size, rpu.mapping.max_output_size = preset.max_in, preset.max_out
    analog = convert_to_analog(copy.deepcopy(net), rpu).eval()
    acc = np.zeros((len(TIMES), n_chips))
    with torch.no_grad():
        for chip in range(n_chips):
            torch.manual_seed(100 + chip)
            analog.program_analog_weights()
            for i, t in enumerate(TIMES):
                analog.drift_analog_weights(t)
                acc[i, chip] = float((analog(x).argmax(-1) == y).double().mean())
    return acc


def line(name: str, acc: np.ndarray) -> str:
    cells = [f"{a.mean():.3f} +- {a.std(ddof=1):.3f}" for a in acc]
    return f"| {name} | {acc.shape[1]} | " + " | ".join(cells) + " |"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chips", type=int, default=24, help="chips of each pipeline (default 24)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    train, test = digits16()
    net = train_resnet(train)
    x, y = test
    with torch.no_grad():
        clean = float((net(x).argmax(1) == y).double().mean())
    print(f"clean test accuracy {clean:.3f}; chance 0.100, largest class {torch.bincount(y).max() / len(y):.3f}")
    print("| pipeline | chips | 1 s | 1 h | 1 day |\n| --- | --- | --- | --- | --- |")
    ours = crossbar.evaluate(net, test, "reram_cmo", TIMES, n_chips=args.chips, seed=0, device="cpu", threads=1)
    print(line("ours", ours), flush=True)
    print(line("aihwkit", aihwkit_accuracy(net, x, y, args.chips)), flush=True)
    print(line("aihwkit, mean relaxation 0", aihwkit_accuracy(net, x, y, min(8, args.chips), zero_mean=True)))


if __name__ == "__main__":
    main()
