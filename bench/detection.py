"""Object detection: what evaluating a detector on simulated chips costs, and what the
detection scenario gives.

    .venv/bin/python bench/detection.py                    # (a) only, about a minute
    .venv/bin/python bench/detection.py --scenario         # (a), then (b): scenarios/detection_1day.yaml
    .venv/bin/python bench/detection.py --scenario --seeds 0-4

(a) The FCOS detector of scenarios/detection_1day.yaml (trained here for its 15 epochs,
    no dropout) on the 400 test scenes of digit_scenes, 16 chips of the scenario's first
    device (CMO ReRAM with stuck-at faults) one day after programming:
    ``crossbar.evaluate(..., metric="map50")`` against 16 clean passes (the digital
    network's forward pass, its post-processing and torchmetrics' mAP, 16 times), best of
    3 interleaved repeats; also the share of the evaluation spent in the post-processing
    and mAP, which no simulator speed-up touches.
(b) The scenario itself, in a fresh folder: its wall time, and mAP@0.5 at 1 day for each
    method and device (with ``--seeds``, the mean over seeds with its 95 % interval).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

import crossbar
import models

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "detection_1day.yaml"
N_CHIPS, T_DAY, REPEATS = 16, 86400.0, 3


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def evaluation_cost() -> None:
    raw = yaml.safe_load(SCENARIO.read_text())
    splits = models.load_dataset(raw["dataset"]["name"], seed=raw["seed"])
    net = models.build(raw["model"]["name"], splits.in_shape, splits.n_classes, seed=raw["seed"])
    config = models.TrainConfig(**raw["training"])
    start = time.perf_counter()
    result = models.train(net, splits, config, seed=raw["seed"])
    print(f"trained {raw['model']['name']} for {result.epochs_run} epochs in {time.perf_counter() - start:.1f} s; "
          f"clean test mAP@0.5 {models.clean_score(net, splits.test):.3f}")
    device = raw["devices"][0]
    x, y = splits.test
    timings = {"clean": [], "evaluate": [], "post": []}
    with torch.no_grad():
        raw_out = net(x)
    for _ in range(REPEATS):  # interleaved: each repeat measures all three
        timings["clean"].append(_seconds(lambda: [models.mean_average_precision(net, (x, y), ("map50",))
                                                  for _ in range(N_CHIPS)]))
        timings["evaluate"].append(_seconds(lambda: crossbar.evaluate(net, (x, y), device, [T_DAY], N_CHIPS,
                                                                      metric="map50")))
        timings["post"].append(_seconds(lambda: [_post_only(net, raw_out, y) for _ in range(N_CHIPS)]))
    clean, evaluate, post = (min(timings[k]) for k in ("clean", "evaluate", "post"))
    print(f"\n{len(x)} test scenes, {N_CHIPS} chips of {device['name']} at 1 day, best of {REPEATS} "
          f"(torch threads: {torch.get_num_threads()}):")
    print(f"  {N_CHIPS} clean passes (forward, post-processing, mAP)  {clean:7.2f} s")
    print(f"  crossbar.evaluate, metric='map50'                   {evaluate:7.2f} s   {evaluate / clean:5.2f}x clean")
    print(f"  of which post-processing and mAP ({N_CHIPS} chips)       {post:7.2f} s   "
          f"{post / evaluate:5.1%} of evaluate")


def _post_only(net, raw_out, y) -> None:
    from models.tasks import new_average_precision, target_dicts

    scores = new_average_precision()
    for i in range(0, len(raw_out), 256):
        scores.update(net.detect(raw_out[i:i + 256]), target_dicts(y[i:i + 256]))
    scores.compute()


def scenario(seeds: str | None) -> None:
    out = Path(tempfile.mkdtemp(prefix="detection_1day-"))
    command = [sys.executable, "-m", "search.run", str(SCENARIO), "--out", str(out), "--quiet"]
    if seeds:
        command += ["--seeds", seeds]
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT)
    wall = time.perf_counter() - start
    print(f"\n{SCENARIO.name}{f' --seeds {seeds}' if seeds else ''}: {wall / 60:.1f} min wall time, in {out}")
    results = json.loads((out / "results.json").read_text())  # over seeds: the summary
    rows = [r for r in results["results"] if r["t_inference"] == T_DAY]
    print(f"mAP@0.5 at 1 day ({'mean over seeds, 95 % interval' if seeds else 'mean +- std over chips'}):")
    for preset in results["presets"]:
        for r in rows:
            if r["preset"] == preset:
                spread = (f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}]" if seeds else f"+- {r['std']:.3f}")
                print(f"  {preset:18s} {results['methods'][r['method']]['label'][:28]:28s} {r['mean']:.3f} {spread}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", action="store_true", help="also run scenarios/detection_1day.yaml")
    parser.add_argument("--seeds", help="with --scenario: repeat it over these seeds, e.g. 0-4")
    args = parser.parse_args(argv)
    evaluation_cost()
    if args.scenario:
        scenario(args.seeds)


if __name__ == "__main__":
    main()
