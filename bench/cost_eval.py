"""What pricing an inference costs next to simulating it: crossbar.cost against crossbar.evaluate.

    .venv/bin/python bench/cost_eval.py

LeNet-5 on 2,000 images of MNIST's shape (random images and an untrained net: the
times do not depend on the weights), 16 chips of pcm one day after programming, with
aihwkit's periphery and an architecture to price (100 ns reads at 0.2 V, 32 nm, 128 x
128 tiles, 8 columns per ADC). Measured side by side, best of 3 interleaved repeats:

  (a) crossbar.evaluate over the 16 chips, the accuracy of each;
  (b) crossbar.cost over the same 16 chips and images: energy, latency and area per
      inference (the component figures cached after the first call, as in a run);
  (c) crossbar.macro_cost of the chip alone.

The issue's target: (b) at most 10 % of (a).

Then the simulation of sliced weights (crossbar/slicing.py): crossbar.evaluate of 4
chips on 500 of the images with 8-bit weights on 1 cell and on 8 cells of 1 bit (8-bit
inputs in 2 cycles of 4 bits, 12-bit ADCs, exact devices), against the unsliced
preset with aihwkit's periphery: what slicing costs, and 8 slices over 1.
"""

from __future__ import annotations

import argparse
import time

import torch

import crossbar
import models

N_IMAGES, N_CHIPS, T_DAY = 2000, 16, "1d"


def best(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats (default 3)")
    args = parser.parse_args()
    torch.manual_seed(0)
    net = models.build("lenet5", (1, 28, 28), 10).eval()
    images, labels = torch.rand(N_IMAGES, 1, 28, 28), torch.randint(0, 10, (N_IMAGES,))
    chip = crossbar.preset("pcm", read_time=100e-9, read_voltage=0.2, tech_node=32, max_in=128, max_out=128,
                           cols_per_adc=8, **crossbar.AIHWKIT_PERIPHERY)
    crossbar.macro_cost(chip, 1)  # the component models, once
    runs = {"evaluate": [], "cost": [], "macro_cost": []}
    priced = None
    for _ in range(args.repeats):
        runs["evaluate"] += best(lambda: crossbar.evaluate(net, (images, labels), chip, T_DAY, N_CHIPS), 1)
        start = time.perf_counter()
        priced = crossbar.cost(net, chip, images, T_DAY, N_CHIPS)
        runs["cost"].append(time.perf_counter() - start)
        runs["macro_cost"] += best(lambda: crossbar.macro_cost(chip, 16), 1)
    ev = min(runs["evaluate"])
    print(f"LeNet-5, {N_IMAGES} images, {N_CHIPS} pcm chips at 1 day, torch threads {torch.get_num_threads()}; "
          f"best of {args.repeats}:")
    print(f"  (a) crossbar.evaluate      {ev:7.3f} s")
    c = min(runs["cost"])
    print(f"  (b) crossbar.cost          {c:7.3f} s   {c / ev:6.1%} of evaluate (target <= 10 %: "
          f"{'met' if c <= 0.1 * ev else 'NOT met'})")
    m = min(runs["macro_cost"])
    print(f"  (c) crossbar.macro_cost    {m:7.4f} s")
    sliced = dict(physics="ideal", max_in=128, max_out=128, weight_bits=8, input_bits=8, bits_per_input_cycle=4,
                  adc_bits=12)
    presets = {"unsliced, aihwkit's periphery": crossbar.preset("ideal", max_in=128, max_out=128,
                                                                **crossbar.AIHWKIT_PERIPHERY),
               "1 slice, 2 input cycles": crossbar.make_preset({**sliced, "bits_per_cell": 8}),
               "8 slices, 2 input cycles": crossbar.make_preset({**sliced, "bits_per_cell": 1})}
    times = {name: [] for name in presets}
    for _ in range(args.repeats):
        for name, preset in presets.items():
            times[name] += best(lambda: crossbar.evaluate(net, (images[:500], labels[:500]), preset, T_DAY, 4), 1)
    base = min(times["1 slice, 2 input cycles"])
    print(f"\ncrossbar.evaluate, 4 chips, 500 images, sliced weights (best of {args.repeats}):")
    for name, values in times.items():
        print(f"  {name:<38} {min(values):7.3f} s   x{min(values) / base:.2f} of 1 slice")
    assert priced is not None
    print(f"\nper inference: {priced.energy_j * 1e9:.1f} nJ (chips {priced.chip_energy_j.min() * 1e9:.2f}-"
          f"{priced.chip_energy_j.max() * 1e9:.2f}), {priced.latency_s * 1e6:.2f} us, {priced.area_mm2:.3f} mm2, "
          f"{priced.tops_per_w:.3g} TOPS/W")


if __name__ == "__main__":
    main()
