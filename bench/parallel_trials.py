"""Parallel trials and memory-bounded Monte Carlo.

    .venv/bin/python bench/parallel_trials.py [--trials 20] [--skip-memory]

1. Trials per hour of the default scenario (scenarios/drift_1day.yaml: LeNet-5 on
   digits, 20 chips at 1 day): the same --trials random-search trials run one at a
   time in this process, on 2 local worker processes (--workers 2) and on a 2-worker
   Dask LocalCluster (--dask local), measured side by side in this run, start-up of
   the workers included. Target: 2 workers at least 1.6x one.
2. Peak memory of crossbar.evaluate for ResNet-20 (CIFAR-10 shape, 256 images) with
   100 pcm chips, all chips at once against chunks of 10 (fresh processes).
3. With a CUDA GPU: Monte-Carlo throughput (chip-images per second) on GPU and CPU.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from search.config import load_scenario
from search.executors import DaskExecutor, Processes, Sequential
from search.methods import METHODS

ROOT = Path(__file__).resolve().parents[1]


def throughput(executor, specs: list[dict]) -> tuple[float, list[dict]]:
    start = time.perf_counter()
    queue, records = list(specs), []
    while queue or executor.pending():
        while queue and executor.pending() < executor.capacity:
            executor.submit(queue.pop(0))
        records.append(executor.next_finished())
    seconds = time.perf_counter() - start
    executor.close()
    return seconds, records


def trials_per_hour(n_trials: int) -> None:
    scenario, _ = load_scenario(ROOT / "scenarios" / "drift_1day.yaml", [f"search.n_trials={n_trials}"])
    plain = scenario.plain()
    specs = [spec for _, spec in METHODS["random"].plan(scenario, scenario.slots())][:n_trials]
    rows = []
    for label, make in (("1 worker (sequential, this process)", lambda: Sequential(plain, progress=False)),
                        ("2 local processes (--workers 2)", lambda: Processes(plain, 2)),
                        ("2-worker Dask LocalCluster (--dask local)", lambda: DaskExecutor(plain, "local", workers=2))):
        start = time.perf_counter()
        executor = make()
        startup = time.perf_counter() - start
        seconds, records = throughput(executor, specs)
        ok = sum(r["status"] == "ok" for r in records)
        rows.append((label, startup + seconds, startup, ok, sorted((r["id"], r["objective"]) for r in records)))
    base = rows[0][1]
    print(f"trials per hour, default scenario, {n_trials} trials each (start-up included):")
    for label, seconds, startup, ok, _ in rows:
        print(f"  {label:42s} {3600 * n_trials / seconds:7.0f} trials/h  ({seconds:5.1f} s, start-up {startup:4.1f} s, "
              f"{ok} ok)  x{base / seconds:.2f}")
    same = all(r[4] == rows[0][4] for r in rows)
    print(f"  same objectives for the same trials on every executor: {same}")
    speedup = base / rows[1][1]
    print(f"  2 workers vs 1: x{speedup:.2f} (target >= 1.6: {'met' if speedup >= 1.6 else 'NOT met'})")


def peak_memory(chunk_size) -> dict:
    code = f"""
import json, sys, torch, psutil
import crossbar, models

def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
net = models.build("resnet20", (3, 32, 32), 10, seed=0).eval()
g = torch.Generator().manual_seed(0)
x, y = torch.randn(256, 3, 32, 32, generator=g), torch.randint(0, 10, (256,), generator=g)
before = psutil.Process().memory_info().rss
t = __import__("time").perf_counter()
crossbar.evaluate(net, (x, y), "pcm", [86400.0], 100, batch_size=256, chunk_size={chunk_size!r}, device="cpu")
print(json.dumps(dict(before=before, peak=hwm(), seconds=__import__("time").perf_counter() - t)))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parent)  # imports the benchmarks beside it
    return json.loads(out.stdout.strip().splitlines()[-1])


def gpu_throughput() -> None:
    import torch

    if not torch.cuda.is_available():
        print("\nno CUDA GPU here: GPU throughput not measured")
        return
    import crossbar
    import models

    net = models.build("resnet20", (3, 32, 32), 10, seed=0).eval()
    x, y = torch.randn(1000, 3, 32, 32), torch.randint(0, 10, (1000,))
    print(f"\nMonte-Carlo throughput, ResNet-20, 1,000 images, pcm at 1 day ({torch.cuda.get_device_name()}):")
    for device, chips in (("cpu", 4), ("cuda", 100)):
        crossbar.evaluate(net, (x, y), "pcm", [86400.0], 2, batch_size=500, device=device)  # warm-up
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        crossbar.evaluate(net, (x, y), "pcm", [86400.0], chips, batch_size=500, device=device)
        if device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        print(f"  {device:4s} {chips:3d} chips: {chips * len(y) / seconds:10.0f} chip-images/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20, help="trials per executor (the default search budget)")
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()
    trials_per_hour(args.trials)
    if not args.skip_memory:
        print("\npeak memory, crossbar.evaluate, ResNet-20, 100 pcm chips (fresh process; RSS before -> peak):")
        for chunk in (100, 10, None):
            m = peak_memory(chunk)
            label = {100: "all 100 chips at once (chunk_size=100)", None: "default (sized to free memory)"}.get(
                chunk, f"chunks of {chunk} (chunk_size={chunk})")
            print(f"  {label:36s} {m['before'] / 2**20:6.0f} MiB -> {m['peak'] / 2**20:6.0f} MiB "
                  f"(+{(m['peak'] - m['before']) / 2**20:.0f} MiB, {m['seconds']:.1f} s)")
    gpu_throughput()


if __name__ == "__main__":
    main()
