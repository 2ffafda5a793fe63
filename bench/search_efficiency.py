"""Search efficiency: the Bayesian search after 15 trials against random search after 30.

    .venv/bin/python bench/search_efficiency.py [--seeds 5] [--scenario scenarios/drift_1day.yaml]

For each seed, on the default scenario (same data split, training and validation chips
for both methods): the best validation objective of skopt's Gaussian-process search
after --bo-trials trials (which, as in a run, also learns from the baselines' trials
that are points of its space; --set search.warm_start=false turns that off), and of
random search (uniform in the same space) after --random-trials. Target: the Bayesian
search at least as good as random search in median over seeds. Trials run through
search.trial.trial_record, as in a real run.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from search.config import load_scenario
from search.methods import METHODS, bayesft_id
from search.plan import loss_of, make_optimizer, make_plan, warm_points
from search.space import spec_of
from search.trial import trial_record

ROOT = Path(__file__).resolve().parents[1]


def best_of_search(plain: dict, scenario, n_trials: int) -> list[float]:
    """The search's best validation objective after each of its trials; as in a run, it
    first learns from the baselines' trials that are points of its space (search.warm_start)."""
    plan = make_plan(scenario)
    warm = warm_points(scenario, plan)
    optimizer = make_optimizer(scenario, len(warm))
    for trial_id, spec in plan.trials:
        if trial_id in warm:
            optimizer.tell(warm[trial_id], loss_of(trial_record(plain, spec)))
    dims = scenario.dimensions()
    best, curve = 0.0, []
    for i in range(n_trials):
        x = [float(v) for v in optimizer.ask()]
        record = trial_record(plain, {"id": bayesft_id(i + 1), "method": "bayesft", **spec_of(dims, x)})
        optimizer.tell(x, loss_of(record))
        best = max(best, -loss_of(record))
        curve.append(best)
    return curve


def best_of_random(plain: dict, scenario, n_trials: int) -> list[float]:
    best, curve = 0.0, []
    for _, spec in METHODS["random"].plan(scenario, scenario.slots())[:n_trials]:
        best = max(best, -loss_of(trial_record(plain, spec)))
        curve.append(best)
    return curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", type=Path, default=ROOT / "scenarios" / "drift_1day.yaml")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--bo-trials", type=int, default=15)
    parser.add_argument("--random-trials", type=int, default=30)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--skip-random", action="store_true",
                        help="the Bayesian search only (random search does not depend on its settings)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="scenario overrides, as for search.run (e.g. search.acq_func=EI)")
    args = parser.parse_args()

    rows = []
    start = time.perf_counter()
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        overrides = [*args.overrides, f"seed={seed}", f"search.n_trials={args.random_trials}"]
        scenario, _ = load_scenario(args.scenario, overrides)
        plain = scenario.plain()
        t0 = time.perf_counter()
        bo = best_of_search(plain, scenario, args.bo_trials)
        t1 = time.perf_counter()
        rnd = [float("nan")] * args.random_trials if args.skip_random else best_of_random(plain, scenario,
                                                                                          args.random_trials)
        t2 = time.perf_counter()
        rows.append((seed, bo, rnd, t1 - t0, t2 - t1))
        print(f"seed {seed}: BayesFT best after {args.bo_trials} = {bo[-1]:.4f} ({t1 - t0:.0f} s); random best after "
              f"{args.random_trials} = {rnd[-1]:.4f} (after {args.bo_trials}: {rnd[args.bo_trials - 1]:.4f}; "
              f"{t2 - t1:.0f} s)",
              flush=True)
    bo_med = statistics.median(r[1][-1] for r in rows)
    rnd_med = statistics.median(r[2][-1] for r in rows)
    rnd_same = statistics.median(r[2][args.bo_trials - 1] for r in rows)
    wins = sum(r[1][-1] >= r[2][-1] for r in rows)
    print(f"\n{scenario.name}, objective: {scenario.objective.aggregate} validation accuracy over "
          f"{scenario.n_chips} chips at {', '.join(str(t) for t in scenario.t_inference)} s; {args.seeds} seeds, "
          f"{time.perf_counter() - start:.0f} s")
    print(f"  median best, BayesFT after {args.bo_trials} trials:   {bo_med:.4f}")
    print(f"  median best, random after {args.random_trials} trials:    {rnd_med:.4f}")
    print(f"  median best, random after {args.bo_trials} trials:    {rnd_same:.4f}")
    print(f"  BayesFT({args.bo_trials}) >= random({args.random_trials}) on {wins} of {args.seeds} seeds; target "
          f"(median at least as good): {'met' if bo_med >= rnd_med else 'NOT met'}")
    per_trial = statistics.mean((r[3] + r[4]) / (args.bo_trials + args.random_trials) for r in rows)
    print(f"  mean seconds per trial: {per_trial:.1f}")


if __name__ == "__main__":
    main()
