"""Run a scenario: the BayesFT dropout search, its baselines, test numbers and plots.

    python -m search.run scenarios/drift_1day.yaml
    python -m search.run scenarios/drift_1day.yaml --set search.n_trials=5 --set n_chips=10
    python -m search.run scenarios/drift_1day.yaml --resume      # after an interruption

The run folder (default runs/<scenario name>, or --out) receives the scenario as given
and as resolved, environment.json, trials.jsonl (one line per finished trial),
final.jsonl, results.json and the plots. Exit codes: 0 done, 1 no results (every trial
or final network failed; the reasons are counted), 2 bad input or a folder that cannot
be written (nothing run, nothing lost), 130 interrupted (Ctrl-C), 143 terminated (SIGTERM);
after either, continue with --resume.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import warnings
from pathlib import Path


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m search.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("scenario", type=Path, help="a scenario YAML file (see scenarios/)")
    parser.add_argument("--out", type=Path, help="run folder (default: the scenario's output, else runs/<name>)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in the folder; finished trials are kept")
    parser.add_argument("--force", action="store_true", help="start over in a folder that already holds a run")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a scenario value, e.g. --set search.n_trials=10 (repeatable; YAML values)")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: the scenario's, auto = cuda if available)")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="run N trials at once in local processes (with --dask local: N LocalCluster workers)")
    parser.add_argument("--dask", metavar="ADDRESS",
                        help="run trials on Dask: 'local' starts a LocalCluster, tcp://HOST:PORT joins a scheduler")
    parser.add_argument("--seeds", metavar="SEEDS",
                        help="repeat the experiment once per seed (0-4, or 0,2,5), each in a sub-folder, and "
                             "summarise over seeds with confidence intervals")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def resume_command(args: argparse.Namespace, out: Path) -> str:
    """The command that continues this run: the same scenario, --set overrides (without
    them --resume would refuse a changed scenario) and options, with --resume."""
    parts = [str(args.scenario), "--out", str(out)]
    for item in args.overrides:
        parts += ["--set", item]
    for flag, value in (("--device", args.device), ("--workers", args.workers), ("--dask", args.dask),
                        ("--seeds", args.seeds)):
        if value is not None:
            parts += [flag, str(value)]
    return "python -m search.run " + shlex.join(parts + ["--quiet"] * args.quiet + ["--resume"])


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}{'s' * (n != 1)}"


def plan_line(scenario, plan) -> str:
    """What the run will do, for its first line: the search's trials, or study mode's variants."""
    if scenario.mode == "codesign":
        cs = scenario.codesign
        n = scenario.search.n_trials
        return (f"co-design of {scenario.model.name} on {scenario.dataset.name} for {', '.join(cs.names())}: "
                f"{_count(n, 'trial')} of optuna's {cs.sampler.upper()} sampler"
                f"{f', {n} of random search' if scenario.baselines.random else ''}, "
                f"{_count(len(plan.grid), 'hand-grid design')}, {_count(scenario.n_chips, 'chip')} per trial, "
                f"{cs.hardware_per_training} trials per training point")
    if scenario.mode == "evaluate":
        return (f"evaluate {scenario.model.label} ({Path(scenario.model.checkpoint).name}) on {scenario.dataset.name}, "
                f"{_count(scenario.report.n_chips, 'chip')} per test point")
    if scenario.mode == "study":
        labels = ", ".join(v.label for v in scenario.variants)
        return (f"study of {_count(len(scenario.variants), 'variant')} ({labels}) on {scenario.dataset.name}, "
                f"{_count(scenario.report.n_chips, 'chip')} per test point")
    return (f"{scenario.model.name} on {scenario.dataset.name}, {_count(len(plan.slots), 'dropout slot')} "
            f"({', '.join(plan.slots)}), {_count(scenario.n_chips, 'chip')} per trial, "
            f"{_count(plan.n_trials, 'trial')}")


class _Stdout:
    """sys.stdout that outlives its reader: ``search.run ... | head -1`` closes the pipe
    after one line, and the run must go on (its files are what matters), quietly."""

    def __init__(self, stream):
        self.stream, self.gone = stream, False

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                return self.stream.write(text)
            except BrokenPipeError:
                self._gone()
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self.stream.flush()
            except BrokenPipeError:
                self._gone()

    def _gone(self) -> None:
        self.gone = True
        try:  # what Python's own exit would flush to the closed pipe goes nowhere instead
            os.dup2(os.open(os.devnull, os.O_WRONLY), self.stream.fileno())
        except (OSError, ValueError):
            pass

    def __getattr__(self, name):
        return getattr(self.stream, name)


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill PID``, a batch system's time limit): the run stops as at Ctrl-C,
    its folder resumable, its workers ended, and exits 143 (128 + SIGTERM)."""

    code, what = 128 + signal.SIGTERM, "terminated (SIGTERM)"


def _terminate(signum, frame) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    raise Terminated()


def _stopped(e: KeyboardInterrupt) -> tuple[str, int]:
    """What an interruption is called and its exit code: Ctrl-C's, or SIGTERM's."""
    return (e.what, e.code) if isinstance(e, Terminated) else ("interrupted", 130)


def main(argv=None) -> int:
    if not isinstance(sys.stdout, _Stdout) and sys.stdout is not None:
        sys.stdout = _Stdout(sys.stdout)
    args = parse_args(argv)
    args.argv = ["python", "-m", "search.run", *(sys.argv[1:] if argv is None else argv)]  # as run, for the record
    held: list = []  # the run folder, locked while this command writes it
    try:  # only the main thread may handle signals (a test may call main from another)
        before = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:
        before = None
    shown = warnings.formatwarning  # _main sets the run's own
    try:
        return _main(args, held)
    except KeyboardInterrupt as e:  # before the trials (while torch loads, say), or between a seed's parts
        what, code = _stopped(e)
        resume = f"; continue with: {resume_command(args, held[0].path)}" if held else ""
        print(f"\n{what}{resume}", file=sys.stderr)
        return code
    finally:
        warnings.formatwarning = shown
        if before is not None:
            signal.signal(signal.SIGTERM, before)
        for folder in held:
            folder.unlock()


def _main(args: argparse.Namespace, held: list) -> int:
    from .config import ScenarioError, load_scenario  # imports torch: after --help, inside Ctrl-C's handling
    from .executors import warning_line

    warnings.formatwarning = warning_line  # main restores Python's

    if args.resume and args.force:
        print("error: --resume continues a run and --force starts over; choose one", file=sys.stderr)
        return 2
    overrides = list(args.overrides)
    for flag, key in ((args.device, "device"), (args.workers, "execution.workers"), (args.dask, "execution.dask"),
                      (args.seeds, "seeds")):
        if flag is not None:
            overrides.append(f"{key}={flag}")
    try:
        scenario, raw = load_scenario(args.scenario, overrides)
        if args.out is not None:
            scenario = scenario.model_copy(update={"output": str(args.out)})
        folder, new_report = _open(args, scenario, held)
        if scenario.seeds is not None:
            return _repeats(args, scenario, raw, folder, held)
        experiment = _experiment(args, scenario, folder)
    except ScenarioError as e:
        print(f"error: {e}".replace("\n", "\nerror: "), file=sys.stderr)
        return 2
    code, results = _execute(args, scenario, raw, folder, experiment, new_report)
    if results is None:
        return code
    _report(scenario, experiment, results, folder, _plot(folder))
    if not results["results"]:  # nothing was measured: not a success, whatever was written
        print(f"error: no results: {failure_summary(experiment)}", file=sys.stderr)
        return 1
    return 0


def _open(args: argparse.Namespace, scenario, held: list):
    """The run folder of a run or of one of its repeats, held (locked) by this command:
    ``(folder, whether the report changed)``; nothing written yet."""
    from .folder import open_run_folder  # heavy imports (skopt) only once the scenario is valid

    folder, new_report = open_run_folder(scenario.output_dir(), scenario, args.resume, args.force)
    held.append(folder)
    return folder, new_report


def _experiment(args: argparse.Namespace, scenario, folder):
    """The experiment of one run folder, with what an earlier start finished."""
    from .codesign_run import CodesignRun
    from .experiment import Experiment

    kind = CodesignRun if scenario.mode == "codesign" else Experiment
    experiment = kind(scenario, folder, device=None, quiet=args.quiet)
    if args.resume and folder.holds_run():
        experiment.load_previous()
        print(f"resuming {folder.path}: {len(experiment.done)} finished trial(s) kept")
    return experiment


def _execute(args: argparse.Namespace, scenario, raw: dict, folder, experiment, new_report: bool,
             header: bool = True):
    """Write the folder's scenario files, run its trials and final networks and write
    results.json: ``(exit code, results)``, results None when the run did not finish."""
    from . import executors
    from .config import ScenarioError
    from .folder import start_run_folder
    from .report import results as results_of
    from .trial import trial_device

    device = str(trial_device(scenario))
    execution = scenario.execution
    try:  # before anything is written: an unreachable scheduler is bad input too
        executor = executors.make_executor(experiment.plain, execution.workers, execution.dask,
                                           progress=not args.quiet)
    except (ConnectionError, OSError, TimeoutError, executors.ClusterError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2, None
    try:
        start_run_folder(folder, raw, scenario, device, args.argv)
        if new_report:
            experiment.forget_finals()
            print("report changed: the final networks are tested again at its times; the search trials stay")
    except ScenarioError as e:  # another process made and locked the folder meanwhile, or it cannot be written
        executor.close()
        print(f"error: {e}", file=sys.stderr)
        return 2, None
    except BaseException:  # Ctrl-C or SIGTERM: the workers end too
        executor.close()
        raise
    if header:
        print(f"{scenario.name}: {plan_line(scenario, experiment.plan)}, "
              f"devices {', '.join(p['name'] for p in scenario.presets)}, device {device}; writing to {folder.path}")
        for note in scenario.notes():
            print(f"note: {note}")
    if executor.name != "sequential":
        print(f"trials run on {executor.name}: {executor.capacity} at a time")
    top = folder.path.parent if scenario.seed_of_repeat is not None else folder.path
    try:
        seconds = experiment.execute(executor)
        if scenario.mode == "codesign":
            from .codesign_report import results_of as codesign_results

            results = codesign_results(scenario, experiment, seconds)
        else:
            results = results_of(scenario, experiment.plan.slots, experiment.done, experiment.finals,
                                 experiment.final_order(), seconds)
        folder.write_json("results.json", results)
        return 0, results
    except KeyboardInterrupt as e:
        executor.close()
        what, code = _stopped(e)
        print(f"\n{what}; finished trials are in {folder.path / 'trials.jsonl'}. "
              f"Continue with: {resume_command(args, top)}", file=sys.stderr)
        return code, None
    except ScenarioError as e:  # the folder stopped taking records: a full or read-only disk
        print(f"\nerror: {e}; the finished trials are in {folder.path / 'trials.jsonl'}. "
              f"Once it can be written, continue with: {resume_command(args, top)}", file=sys.stderr)
        return 2, None


def _plot(folder) -> list:
    from . import plot

    try:
        return plot.plot_run(folder.path)
    except Exception as e:  # noqa: BLE001 - results.json is complete; a plot must not hide the table
        print(f"warning: the plots were not drawn ({type(e).__name__}: {e}); draw them later with "
              f"python -m search.plot {shlex.quote(str(folder.path))}", file=sys.stderr)
        return []


def _report(scenario, experiment, results: dict, folder, paths: list) -> None:
    from .report import cost_table, feasibility_note, run_table, sweep_table

    print()
    if scenario.mode == "codesign":
        from .codesign_report import front_table

        print(front_table(results))
        print(f"wrote {folder.path / 'results.json'}{' and ' if paths else ''}{', '.join(p.name for p in paths)} "
              f"({results['seconds']:.0f} s)")
        return
    print(run_table(results))
    if results.get("sweep"):
        print()
        print(sweep_table(results))
    if results.get("cost"):
        print()
        print(cost_table(results))
    if results["best_point"] is not None:
        point = ", ".join(f"{k} {v:.2f}" for k, v in results["best_point"].items())
        what = "dropout rates" if results["best_point"].keys() == results["best_dropout"].keys() else "point"
        print(f"\nbest {what} (validation objective {results['best_objective']:.4f}): {point}")
    if scenario.findings:
        from .summary import finding_lines, judge

        print("\nthe study's findings from one seed (no interval: run with --seeds 0-4 for verdicts):")
        print("\n".join(finding_lines(judge({scenario.seed: results}, scenario.findings, scenario.t_inference))))
    note = feasibility_note(scenario, experiment.done.values())
    if note:
        print(note)
    if results["failed_trials"]:
        print(f"{results['failed_trials']} trial(s) failed; see 'reason' in trials.jsonl")
    print(f"wrote {folder.path / 'results.json'}{' and ' if paths else ''}{', '.join(p.name for p in paths)} "
          f"({results['seconds']:.0f} s)")


def _repeats(args: argparse.Namespace, scenario, raw: dict, folder, held: list) -> int:
    """The experiment once per seed, each in ``seed-<n>/``, then the summary over seeds."""
    from .codesign_run import make_plan as codesign_plan
    from .config import ScenarioError
    from .folder import start_run_folder
    from .plan import make_plan
    from .report import sweep_table
    from .summary import finding_lines, judge, paired_lines, seeds_table, summarise
    from .trial import trial_device

    seeds = scenario.seeds
    plan_of = codesign_plan if scenario.mode == "codesign" else make_plan
    try:
        start_run_folder(folder, raw, scenario, str(trial_device(scenario)), args.argv)
    except ScenarioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{scenario.name}: {len(seeds)} repeats (seeds {', '.join(map(str, seeds))}) of: "
          f"{plan_line(scenario, None if scenario.mode == 'study' else plan_of(scenario))}, devices "
          f"{', '.join(p['name'] for p in scenario.presets)}; writing to {folder.path}")
    for note in scenario.notes():
        print(f"note: {note}")
    per_seed = {}
    for seed in seeds:
        replicate = scenario.replicate(seed, folder.path)
        try:
            sub, new_report = _open(args, replicate, held)
            experiment = _experiment(args, replicate, sub)
        except ScenarioError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"seed {seed}: {sub.path}")
        code, results = _execute(args, replicate, {**raw, "seed": seed, "seeds": None}, sub, experiment, new_report,
                                 header=False)
        if results is None:
            return code
        _plot(sub)
        per_seed[seed] = results
    if scenario.mode == "codesign":
        return _codesign_summary(per_seed, folder)
    summary = summarise(per_seed)
    if scenario.findings:
        summary["findings"] = judge(per_seed, scenario.findings, scenario.t_inference)
    try:
        folder.write_json("results.json", summary)
    except ScenarioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    paths = _plot(folder)
    print()
    metric = summary.get("metric_label", summary.get("metric", "accuracy"))
    print(f"test {metric} over {len(seeds)} seeds: mean +- half-width of its {summary['confidence']:.0%} interval")
    print(seeds_table(summary))
    if summary["sweep"]:
        print()
        print(sweep_table(summary))
    lines = paired_lines(summary)
    if lines:
        what = "each variant against the first" if scenario.mode == "study" else "the search against each baseline"
        print(f"\n{what}, paired by seed (mean difference [95 % interval]):")
        print("\n".join(lines))
    if scenario.findings:
        print("\nthe study's findings, from the paired differences over seeds:")
        print("\n".join(finding_lines(summary["findings"])))
    print(f"wrote {folder.path / 'results.json'}{' and ' if paths else ''}{', '.join(p.name for p in paths)}")
    if not summary["results"]:
        print("error: no results: no seed produced test numbers", file=sys.stderr)
        return 1
    return 0


def _codesign_summary(per_seed: dict, folder) -> int:
    from .codesign_report import seeds_lines, summarise
    from .config import ScenarioError

    summary = summarise(per_seed)
    try:
        folder.write_json("results.json", summary)
    except ScenarioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print()
    print("\n".join(seeds_lines(summary)))
    print(f"wrote {folder.path / 'results.json'}")
    return 0 if summary["results"] else 1


def failure_summary(experiment) -> str:
    """Why a run has no test numbers: its failed trials and final networks, by reason."""
    failed = [r for r in [*experiment.done.values(), *experiment.finals.values()] if r.get("status") != "ok"]
    counts: dict[str, int] = {}
    for record in failed:
        counts[str(record.get("reason"))] = counts.get(str(record.get("reason")), 0) + 1
    reasons = "; ".join(f"{n} x {reason}" for reason, n in sorted(counts.items(), key=lambda kv: -kv[1])[:3])
    total = len(experiment.done) + len(experiment.finals)
    return f"{len(failed)} of {total} trials and final networks failed ({reasons or 'no reason recorded'})"


if __name__ == "__main__":
    sys.exit(main())
