"""Every method of the default scenario over seeds, with intervals: does the search win?

    .venv/bin/python bench/methods_over_seeds.py [--seeds 0-4] [--scenario scenarios/drift_1day.yaml]
                                                 [--out runs/methods_over_seeds] [--set KEY=VALUE ...]

Runs ``python -m search.run SCENARIO --seeds SEEDS`` (resumable: an interrupted bench
continues where it stopped), then prints, at the objective's times, each method's mean
test accuracy over seeds with its 95 % interval and the search's paired difference to
each baseline with "wins k of n". Targets (issue 21): the search's mean at least every
baseline's, and a win on at least 3 of 5 seeds against each.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from crossbar.durations import readable
from search import run as search_run
from search.summary import paired_lines

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", type=Path, default=ROOT / "scenarios" / "drift_1day.yaml")
    parser.add_argument("--seeds", default="0-4")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "methods_over_seeds")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()

    argv = [str(args.scenario), "--out", str(args.out), "--seeds", args.seeds, "--quiet"]
    for item in args.overrides:
        argv += ["--set", item]
    if (args.out / "resolved.yaml").exists():
        argv.append("--resume")
    start = time.perf_counter()
    code = search_run.main(argv)
    if code != 0:
        return code
    seconds = time.perf_counter() - start
    summary = json.loads((args.out / "results.json").read_text())
    n = len(summary["seeds"])
    print(f"\n{summary['scenario']} over seeds {summary['seeds']} ({seconds / 60:.1f} min here)")
    ok = True
    for t in summary["objective_times"]:
        for preset in summary["presets"]:
            rows = [r for r in summary["results"] if r["t_inference"] == t and r["preset"] == preset]
            ours = next((r for r in rows if r["method"] == "bayesft"), None)
            print(f"\n{preset}, test accuracy at {readable(t)}: mean [95 % interval] over {n} seeds")
            for r in sorted(rows, key=lambda r: -r["mean"]):
                name = summary["methods"][r["method"]]["label"]
                print(f"  {name:34s} {r['mean']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]")
            for r in rows:
                if ours is not None and r is not ours and r["mean"] > ours["mean"]:
                    ok = False
    print("\npaired by seed:")
    print("\n".join(paired_lines(summary)))
    wins_needed = (3 * n + 4) // 5  # 3 of 5
    wins_ok = all(p["wins"] >= wins_needed for p in summary["paired"] if p["t_inference"] in summary["objective_times"])
    print(f"\ntarget: the search's mean at least every baseline's: {'met' if ok else 'NOT met'}; "
          f"wins on at least {wins_needed} of {n} seeds against each: {'met' if wins_ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
