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
- <metric>_vs_energy.png (report.cost): the test score against energy per inference,
  one panel per report time, a colour per method and a marker per device.
- dropout_rates.png: the point each method chose: the dropout rate of each layer, and
  each training dimension of the space (hwa_scale) in a panel of its own.

The figures themselves are in :mod:`search.figures`.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any, Optional

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


def plot_energy(results: dict, out: Path) -> Path:
    from .cost_figures import score_vs_energy

    return figures.save(score_vs_energy(results), out / f"{results.get('metric', 'accuracy')}_vs_energy.png")


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


def _mode(resolved: Path) -> Optional[str]:
    try:
        data = yaml.safe_load(resolved.read_text())
    except yaml.YAMLError:
        return None
    return data.get("mode") if isinstance(data, dict) else None


def plot_run(run_dir: Path) -> list[Path]:
    """Draw every plot the run's files allow; returns the paths written.

    A finished run gets every plot. A run still going (or stopped before its test
    measurements) has no results.json yet: it gets the convergence plot of the trials so far.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such folder; give a run folder, e.g. runs/drift_1day")
    results_path = run_dir / "results.json"
    if not results_path.is_file() and RunFolder(run_dir).repeats():
        return _plot_repeats(run_dir)
    resolved = run_dir / "resolved.yaml"
    if not results_path.is_file() and resolved.is_file() and _mode(resolved) == "codesign":
        raise FileNotFoundError(f"{run_dir}: a co-design run still going (no results.json yet); its "
                                "pareto_front.png is drawn once its fronts are measured on test")
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
    if isinstance(results, dict) and results.get("mode") == "codesign":  # over seeds: no plot
        from .codesign_report import plot_front

        path = None if "seeds" in results else plot_front(results, run_dir)
        return [path] if path is not None else []
    problem = results_problem(results)
    if problem:
        raise ValueError(f"{results_path}: {problem}; is it a results.json written by python -m search.run?")
    paths = []
    if results.get("sweep"):
        paths.append(plot_sweep(results, run_dir))
    _remove_stale_sweeps(run_dir, paths)
    if "seeds" in results:  # a summary over seeds: each seed's folder has the rest
        return paths + ([plot_scores_vs_time(results, run_dir)] if results["results"] else [])
    if results["results"]:
        paths.append(plot_scores_vs_time(results, run_dir))
        if results.get("cost"):
            paths.append(plot_energy(results, run_dir))
        if len(results["presets"]) > 1:
            paths.append(plot_technologies(results, run_dir))
        else:  # one preset: the scores against time say it all (and a side-by-side plot left from before would lie)
            (run_dir / "technologies.png").unlink(missing_ok=True)
    if any(t["method"] in search_methods() for t in trials):
        paths.append(plot_convergence(results, trials, run_dir))
    searched = results.get("mode") not in ("study", "evaluate")  # methods of the table, not a study's labels
    if searched and any(m.shows_rates and m.id in results["methods"] for m in METHODS.values()):
        paths.append(plot_dropout_rates(results, run_dir))
    return paths


def _plot_repeats(run_dir: Path) -> list[Path]:
    """A run over seeds stopped before its summary: the plots of each seed that finished,
    and one line that says which did not."""
    folders = {p.name: p for p in RunFolder(run_dir).repeats()}
    try:
        seeds = (yaml.safe_load((run_dir / "resolved.yaml").read_text()) or {}).get("seeds")
    except (OSError, UnicodeDecodeError, yaml.YAMLError, AttributeError):
        seeds = None
    if isinstance(seeds, list) and all(isinstance(s, int) for s in seeds):
        names = list(dict.fromkeys([*(f"seed-{s}" for s in seeds), *folders]))
    else:
        names = sorted(folders, key=lambda n: (len(n), n))  # seed-2 before seed-10
    finished = [n for n in names if n in folders and (folders[n] / "results.json").is_file()]
    missing = ", ".join(f"{n} {'unfinished' if n in folders else 'not started'}" for n in names if n not in finished)
    state = f"the run over seeds has not finished ({missing or 'no summary over seeds yet'})"
    if not finished:
        raise FileNotFoundError(f"{run_dir}: {state}: no seed has plots yet; finish it with {_resume(run_dir)}")
    paths = [path for name in finished for path in plot_run(folders[name])]
    print(f"note: {run_dir}: {state}: drew the plots of {', '.join(finished)}; the summary over seeds is drawn "
          f"once the run is finished: {_resume(run_dir)}", file=sys.stderr)
    return paths


def _resume(run_dir: Path) -> str:
    """The command that finishes a run: its own (environment.json), with --resume."""
    try:
        argv = json.loads((run_dir / "environment.json").read_text())["argv"]
    except (OSError, ValueError, KeyError, TypeError):
        argv = None
    if not (isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)):
        return f"python -m search.run SCENARIO --out {shlex.quote(str(run_dir))} --seeds SEEDS --resume"
    return shlex.join([a for a in argv if a != "--force"] + ["--resume"] * ("--resume" not in argv))


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    names = {str: "a string", int: "a number", float: "a number", list: "a list", dict: "an object"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


#: What the plots read of results.json: the type of each part, and of each row's fields.
_PARTS = {"results": (list, "a list"), "sweep": (list, "a list"), "seeds": (list, "a list"),
          "methods": (dict, "an object"), "objective": (dict, "an object"), "space": (dict, "an object"),
          "presets": (list, "a list of names"), "slots": (list, "a list of names"),
          "objective_times": (list, "a list of numbers"), "bounds": (list, "a list of numbers")}
_OPTIONAL = ("sweep", "space", "bounds")  # may be null
_ROW = {"method": str, "preset": str, "parameter": str, "t_inference": float, "mean": float, "value": "name",
        "std": float, "p10": float, "p90": float, "ci_low": float, "ci_high": float, "n_chips": float}
#: Fields that are a number or null: of the results, of its objective, of each method (over seeds: its mean).
_NUMBERS = {"": ("chance", "n_classes"), "objective": ("quantile", "min_clean_score", "min_clean_accuracy"),
            "method": ("val_objective", "val_clean", "test_clean"), "method over seeds": ("test_clean_mean",)}


def results_problem(results: Any) -> Optional[str]:
    """What is wrong with the content of a results.json, as far as the plots read it
    (a part or a field of the wrong type, an empty list of presets or times), or None;
    a missing part is a KeyError later."""
    if not isinstance(results, dict):
        return f"it holds {_kind(results)}, not an object"
    return _parts_problem(results) or _rows_problem(results) or _methods_problem(results)


def _parts_problem(results: dict) -> Optional[str]:
    for key, (kind, what) in _PARTS.items():
        value = results.get(key)
        if key not in results or (value is None and key in _OPTIONAL):
            continue
        if not isinstance(value, kind):
            return f"{key!r} is {_kind(value)}, not {what}"
        if " of " in what:
            wrong = [item for item in value if not (isinstance(item, str) if what.endswith("names") else _number(item))]
            if wrong:
                return f"{key!r} holds {_kind(wrong[0])}, not only {what.split(' of ')[1]}"
    for key, size in (("presets", "at least one"), ("objective_times", "at least one"), ("bounds", "two")):
        if isinstance(results.get(key), list) and (len(results[key]) != 2 if size == "two" else not results[key]):
            return f"{key!r} holds {len(results[key])} values, not {size}"
    if "seeds" in results and "confidence" in results and not _number(results["confidence"]):  # of the intervals
        return f"'confidence' is {_kind(results['confidence'])}, not a number"
    objective = results.get("objective") or {}  # an object, if there (checked above)
    return _numbers_problem(results, "", "") or _numbers_problem(objective, "objective", "objective")


def _rows_problem(results: dict) -> Optional[str]:
    for key in ("results", "sweep"):
        for i, row in enumerate(results.get(key) or []):
            if not isinstance(row, dict):
                return f"{key}[{i}] is {_kind(row)}, not an object"
            for field, kind in _ROW.items():  # "name": a number or a name (a sweep of names)
                value = row.get(field)
                if field in row and not (isinstance(value, str) if kind is str else
                                         _number(value) or (kind == "name" and isinstance(value, str))):
                    wanted = "a string" if kind is str else "a number or a name" if kind == "name" else "a number"
                    return f"{key}[{i}]'s {field!r} is {_kind(value)}, not {wanted}"
    return None


def _methods_problem(results: dict) -> Optional[str]:
    over_seeds = "seeds" in results
    rates_drawn = not over_seeds and results.get("mode") not in ("study", "evaluate")  # the dropout_rates plot
    for method, info in (results.get("methods") or {}).items():
        where = f"methods[{method!r}]"
        if not isinstance(info, dict):
            return f"{where} is {_kind(info)}, not an object"
        if not isinstance(info.get("label", ""), str):
            return f"{where}'s 'label' is {_kind(info['label'])}, not a string"
        rates = info.get("rates")
        if rates_drawn and method in METHODS and METHODS[method].shows_rates and not (
                isinstance(rates, dict) and all(_number(rates.get(slot)) for slot in results.get("slots") or [])):
            return f"{where}'s 'rates' is {_kind(rates)}, not a number for each slot"
        problem = _numbers_problem(info, where, "method over seeds" if over_seeds else "method")
        if problem:
            return problem
    return None


def _numbers_problem(data: dict, where: str, kind: str) -> Optional[str]:
    """A field of ``data`` (``where`` in the results) that should be a number or null and is not."""
    for key in _NUMBERS[kind]:
        if data.get(key) is not None and not _number(data[key]):
            owner = f"{where}'s " if where else ""
            return f"{owner}{key!r} is {_kind(data[key])}, not a number"
    return None


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
