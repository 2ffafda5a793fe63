"""What each calibration buys, and what it costs the Monte Carlo.

    .venv/bin/python bench/calibration.py                 # (a) and (c), about 3 minutes
    .venv/bin/python bench/calibration.py --detection     # also (b), about 6 minutes more
    .venv/bin/python bench/calibration.py --detection --plot docs/calibration_vs_time.png

"Column calibration" is each column's gain, offset and input-sum coefficient
(``calibration_input_sum``, the default); "gain+offset only" leaves the sum out.

(a) A small ResNet with batch normalisation (three residual stages, 16-64 channels),
    trained on scikit-learn's digits upsampled to 16x16 (1,400 train / 397 test), on
    fault-free CMO ReRAM (``reram_cmo``), 8 chips, at 1 s, 1 h, 1 d, 30 d and 1 y:
    accuracy with no calibration, each calibration alone and together.
(b) The FCOS detector of scenarios/detection_1day.yaml (no dropout, its 15 epochs) on
    fault-free ``reram_cmo``, 4 chips, mAP@0.5 at the same times, the same rows.
(c) ``crossbar.evaluate``'s time with column calibration at each inference time against
    without it (the ResNet, 8 chips, 1 day, best of 3 interleaved repeats), on the 397
    test images and on them five times over (1,985): the calibration pass is the same
    for both, a fixed cost per chip and time.

Rows marked "periphery" run on aihwkit's default periphery (7-bit DAC, 9-bit ADC, output
noise 0.06), which the input range needs (it sets the DAC's full scale); the others on a
perfect one. Calibration inputs are training samples (32 by default), never test ones.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from sklearn.datasets import load_digits
from torch import nn

import crossbar
import models

TIMES = ["1s", "1h", "1d", "30d", "1y"]
ROWS = {
    "none": {},
    "drift compensation, global": dict(drift_compensation="global"),
    "drift compensation, per column": dict(drift_compensation="per_column"),
    "column calibration at programming": dict(calibration="at_programming"),
    "column gain+offset only, at inference": dict(calibration="at_inference", calibration_input_sum=False),
    "column calibration at inference": dict(calibration="at_inference"),
    "per column + column calibration": dict(drift_compensation="per_column", calibration="at_inference"),
    "periphery: none": dict(crossbar.AIHWKIT_PERIPHERY),
    "periphery: input range 99.99 %": dict(crossbar.AIHWKIT_PERIPHERY, input_range_percentile=99.99),
    "periphery: column calibration at inference": dict(crossbar.AIHWKIT_PERIPHERY, calibration="at_inference"),
    "periphery: all three": dict(crossbar.AIHWKIT_PERIPHERY, drift_compensation="per_column",
                                 calibration="at_inference", input_range_percentile=99.99),
}
#: One colour per calibration, the same with either periphery.
COLOURS = {"none": "grey", "drift compensation, global": "C1", "drift compensation, per column": "C2",
           "column calibration at programming": "C3", "column gain+offset only, at inference": "C4",
           "column calibration at inference": "C0", "per column + column calibration": "C9",
           "input range 99.99 %": "C8", "all three": "black"}


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.c2, self.b2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.short = None if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.b2(self.c2(F.relu(self.b1(self.c1(x)))))
        return F.relu(y + (x if self.short is None else self.short(x)))


class SmallResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.stages = nn.Sequential(Block(16, 16, 1), Block(16, 32, 2), Block(32, 64, 2))
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        return self.fc(self.stages(self.stem(x)).mean((2, 3)))


def digits16() -> tuple:
    data = load_digits()
    x = F.interpolate(torch.tensor(data.data, dtype=torch.float32).view(-1, 1, 8, 8) / 16, size=(16, 16),
                      mode="bilinear", align_corners=False)
    y = torch.tensor(data.target)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    x, y = x[perm], y[perm]
    return (x[:1400], y[:1400]), (x[1400:], y[1400:])


def train_resnet(train) -> SmallResNet:
    x, y = train
    torch.manual_seed(0)
    net = SmallResNet()
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    for _ in range(15):
        net.train()
        order = torch.randperm(len(y))
        for i in range(0, len(y), 64):
            b = order[i:i + 64]
            opt.zero_grad()
            F.cross_entropy(net(x[b]), y[b]).backward()
            opt.step()
    return net.eval()


def table(title: str, net, test, train_x, n_chips: int, metric: str) -> dict[str, list[float]]:
    print(f"\n{title} ({n_chips} chips, mean {metric} over chips)")
    print(f"{'':44}" + "".join(f"{t:>7}" for t in TIMES) + "   seconds")
    means = {}
    for label, overrides in ROWS.items():
        start = time.perf_counter()
        scores = crossbar.evaluate(net, test, crossbar.get_preset("reram_cmo", **overrides), TIMES, n_chips,
                                   metric=metric, calibration_data=train_x)
        means[label] = scores.mean(1).tolist()
        cells = "".join(f"{m:7.3f}" for m in means[label])
        print(f"{label:44}{cells}   {time.perf_counter() - start:7.1f}", flush=True)
    return means


def plot(panels: list[tuple[str, str, float, dict]], path: str) -> None:
    """One panel per network: the score against time since programming, one line per
    calibration (perfect periphery solid, aihwkit's periphery dashed), the digital score dotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 5.2), squeeze=False, layout="constrained")
    x = range(len(TIMES))
    for ax, (title, metric, clean, means) in zip(axes[0], panels):
        for label, values in means.items():
            colour = COLOURS[label.split(": ")[-1]]
            ax.plot(x, values, marker="o", markersize=3, linestyle="--" if label.startswith("periphery") else "-",
                    color=colour, label=label)
        ax.axhline(clean, color="black", linestyle=":", linewidth=1, label="digital network")
        ax.set_xticks(list(x), TIMES)
        ax.set_xlabel("time since programming")
        ax.set_ylabel(metric)
        ax.set_title(title, fontsize=10)
        ax.set_ylim(0, 1.02 if metric == "accuracy" else max(0.55, clean + 0.05))
        ax.grid(True, alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle("fault-free CMO ReRAM (reram_cmo): what each calibration buys (lines at the top overlap)\n"
                 "solid: perfect periphery; dashed: aihwkit's periphery (7-bit DAC, 9-bit ADC, output noise)")
    fig.savefig(path, dpi=110)
    print(f"\nwrote {path}")


def overhead(net, test, train_x) -> None:
    """evaluate with column calibration at each inference time against without, on the
    test set and on it five times over (the calibration pass costs the same for both)."""
    plain = crossbar.get_preset("reram_cmo", **crossbar.AIHWKIT_PERIPHERY)
    calibrated = plain.with_overrides(calibration="at_inference")
    for repeat in (1, 5):
        data = (test[0].repeat(repeat, 1, 1, 1), test[1].repeat(repeat))
        best = {"off": [], "on": []}
        for _ in range(3):
            for key, preset in (("off", plain), ("on", calibrated)):
                start = time.perf_counter()
                crossbar.evaluate(net, data, preset, ["1d"], 8, calibration_data=train_x)
                best[key].append(time.perf_counter() - start)
        off, on = min(best["off"]), min(best["on"])
        print(f"(c) evaluate, 8 chips at 1 day on {len(data[1])} images, aihwkit's periphery: off {off:.2f} s, "
              f"column calibration at inference {on:.2f} s: {on / off:.2f}x (target <= 1.2x)", flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--detection", action="store_true", help="also (b), the FCOS detector")
    parser.add_argument("--plot", help="write the tables as a figure (PNG) here")
    args = parser.parse_args(argv)
    train, test = digits16()
    net = train_resnet(train)
    clean = float((net(test[0]).argmax(1) == test[1]).double().mean())
    means = table(f"(a) small ResNet with batch norm, digits 16x16, clean accuracy {clean:.3f}", net, test, train[0],
                  8, "accuracy")
    panels = [("small ResNet with batch norm, digits 16x16 (8 chips)", "accuracy", clean, means)]
    print()
    overhead(net, test, train[0])
    if args.detection:
        raw = yaml.safe_load((Path(__file__).resolve().parents[1] / "scenarios" / "detection_1day.yaml").read_text())
        splits = models.load_dataset(raw["dataset"]["name"], seed=raw["seed"])
        det = models.build(raw["model"]["name"], splits.in_shape, splits.n_classes, seed=raw["seed"])
        models.train(det, splits, models.TrainConfig(**raw["training"]), seed=raw["seed"])
        clean = models.clean_score(det, splits.test)
        means = table(f"(b) FCOS detector, no dropout, clean mAP@0.5 {clean:.3f}", det, splits.test,
                      splits.train[0], 4, "map50")
        panels.append(("FCOS detector on digit scenes, no dropout (4 chips)", "mAP@0.5", clean, means))
    if args.plot:
        plot(panels, args.plot)


if __name__ == "__main__":
    main()
