"""Plots of a run, drawn from its files alone (results.json, trials.jsonl).

    python -m search.plot runs/drift_1day     # also while it runs: the convergence so far

- <metric>_vs_time.png (accuracy_vs_time.png, a detector's map50_vs_time.png): the test
  score against time since programming, one panel per preset, one line per method
  (mean over chips, band: 10th-90th percentile chip), with the digital score and
  chance marked.
- technologies.png: the presets side by side at the objective's time, per method (a
  run of several presets only).
- convergence.png: the search's best validation objective so far against random search,
  the baselines' objectives, the digital validation score and chance.
- sweep_<parameter>.png: the test score against a device parameter (report.sweep), one
  panel per preset, one line per method.
- dropout_rates.png: the point each method chose: the dropout rate of each layer, and
  each training dimension of the space (hwa_scale) in a panel of its own.

The figures themselves are in :mod:`search.figures`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

import models

from . import figures
from .folder import RunFolder, scores_plot
from .methods import METHODS, label, search_methods
from .records import best_of_each_method, trial_problem


def plot_scores_vs_time(results: dict, out: Path) -> Path:
    return figures.save(figures.scores_vs_time(results), out / scores_plot(results.get("metric", "accuracy")))


def plot_technologies(results: dict, out: Path) -> Path:
    return figures.save(figures.technologies(results), out / "technologies.png")


def plot_sweep(results: dict, out: Path) -> Path:
    parameter = results["sweep"][0]["parameter"]
    return figures.save(figures.sweep(results), out / f"sweep_{parameter}.png")


def plot_convergence(results: dict, trials: list[dict], out: Path) -> Path:
    return figures.save(figures.convergence(results, trials), out / "convergence.png")


def plot_dropout_rates(results: dict, out: Path) -> Path:
    return figures.save(figures.dropout_rates(results), out / "dropout_rates.png")


def _read_trials(run_dir: Path) -> list[dict]:
    """The run's trials, checked as search.run checks them on --resume: a last line cut
    short by an interruption is left out, and so is a damaged line (said in one line)."""
    trials, damaged = RunFolder(run_dir).read_records("trials.jsonl", trial_problem)
    for entry in damaged:  # search.run --resume sets them aside; a plot only leaves them out
        print(f"warning: {run_dir / 'trials.jsonl'}: line {entry.line}: {entry.problem}; left out of the plots",
              file=sys.stderr)
    return trials


def _results_so_far(run_dir: Path, trials: list[dict]) -> dict:
    """What the convergence plot needs, from resolved.yaml and the trials recorded so far
    (a run still going, or stopped before its test measurements)."""
    resolved = yaml.safe_load((run_dir / "resolved.yaml").read_text()) or {}
    metric = resolved.get("metric") or models.TASKS[resolved.get("task", "classification")].metric
    higher = figures.higher_is_better({"metric": metric})
    best = best_of_each_method(trials, higher)
    methods = {
        method: {"label": label(method), "val_objective": best.get(method, {}).get("objective"),
                 "val_clean": best.get(method, {}).get("val_clean")}
        for method in METHODS
        if any(t["method"] == method for t in trials)
    }
    n_search = sum(t["method"] in search_methods() for t in trials)
    name = f"{resolved.get('name', run_dir.name)} (not finished, {n_search} search trial{'s' * (n_search != 1)} so far)"
    return {"scenario": name, "objective": resolved.get("objective", {"aggregate": "mean"}),
            "objective_times": resolved.get("t_inference", []), "methods": methods, "metric": metric,
            "higher_is_better": higher}


def plot_run(run_dir: Path) -> list[Path]:
    """Draw every plot the run's files allow; returns the paths written.

    A finished run gets every plot. A run still going (or stopped before its test
    measurements) has no results.json yet: it gets the convergence plot of the trials so far.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such folder; give a run folder, e.g. runs/drift_1day")
    results_path = run_dir / "results.json"
    trials = _read_trials(run_dir)
    if not results_path.is_file():
        if (run_dir / "resolved.yaml").is_file() and any(t["method"] in search_methods() for t in trials):
            return [plot_convergence(_results_so_far(run_dir, trials), trials, run_dir)]
        raise FileNotFoundError(f"{run_dir} holds no results.json and no search trials yet: "
                                "is it a folder written by python -m search.run?")
    try:
        results = json.loads(results_path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{results_path}: not valid JSON ({e}); the run folder is damaged") from None
    paths = []
    if results.get("sweep"):
        paths.append(plot_sweep(results, run_dir))
    _remove_stale_sweeps(run_dir, paths)
    if "seeds" in results:  # a summary over seeds: each seed's folder has the rest
        return paths + ([plot_scores_vs_time(results, run_dir)] if results["results"] else [])
    if results["results"]:
        paths.append(plot_scores_vs_time(results, run_dir))
        if len(results["presets"]) > 1:
            paths.append(plot_technologies(results, run_dir))
        else:  # one preset: the scores against time say it all (and a side-by-side plot left from before would lie)
            (run_dir / "technologies.png").unlink(missing_ok=True)
    if any(t["method"] in search_methods() for t in trials):
        paths.append(plot_convergence(results, trials, run_dir))
    if any(m.shows_rates and m.id in results["methods"] for m in METHODS.values()) and results.get("mode") != "study":
        paths.append(plot_dropout_rates(results, run_dir))
    return paths


def _remove_stale_sweeps(run_dir: Path, drawn: list[Path]) -> None:
    """A sweep plot of a parameter the run no longer sweeps would lie: removed."""
    for path in RunFolder(run_dir).sweep_plots():
        if path not in drawn:
            path.unlink(missing_ok=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m search.plot", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a run folder written by python -m search.run")
    args = parser.parse_args(argv)
    try:
        paths = plot_run(args.run_dir)
    except (FileNotFoundError, ValueError) as e:  # ScenarioError (a damaged trials.jsonl) is a ValueError
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a read-only or full disk
        print(f"error: cannot write the plots into {args.run_dir}: {e.strerror or e}", file=sys.stderr)
        return 2
    except KeyError as e:
        print(f"error: {args.run_dir}: its files lack {e}; were they written by python -m search.run "
              "(of this version)?", file=sys.stderr)
        return 2
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
