"""End to end: a tiny search, its run folder, plots, reproducibility, overwrite
protection, a failing trial, and resume after SIGKILL."""

import errno
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from run_helpers import SMALL, wait_for_trials

import search.plot
import search.run
from search.config import load_scenario
from search.folder import PLOT_FILES, RunFolder
from search.trial import error_reason, trial_record

ROOT = Path(__file__).resolve().parents[2]
PLOTS = set(PLOT_FILES)  # every plot search.plot draws; --force removes these and no other PNG


def trials(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "trials.jsonl").read_text().splitlines()]


def stable(record: dict) -> dict:
    """A trial without its timings."""
    return {k: v for k, v in record.items() if not k.endswith("seconds")}


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_data):
    """One finished tiny run, shared by the tests that only read it."""
    import yaml

    folder = tmp_path_factory.mktemp("finished")
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_data))
    assert search.run.main([str(path), "--out", str(folder / "run"), "--quiet"]) == 0
    return path, folder / "run"


def test_tiny_search_end_to_end(finished, capsys):
    _, run = finished
    for name in ("scenario.yaml", "resolved.yaml", "environment.json", "trials.jsonl", "final.jsonl", "results.json"):
        assert (run / name).is_file(), name
    assert PLOTS <= {p.name for p in run.glob("*.png")}
    records = trials(run)
    ids = [r["id"] for r in records]
    assert ids == ["erm", "uniform-0.2", "hardware_aware", "bayesft-001", "bayesft-002", "bayesft-003", "bayesft-004",
                   "random-001", "random-002", "random-003", "random-004"]
    for r in records:
        assert r["status"] == "ok" and 0 <= r["objective"] <= 1 and len(r["rates"]) == 2
        assert {(a["preset"], a["t_inference"]) for a in r["scores"]} == {
            ("lognormal", 86400.0), ("cmo_faulty", 86400.0)
        }
        assert all(0 <= rate <= 0.8 for rate in r["rates"])
    results = json.loads((run / "results.json").read_text())
    assert set(results["best_dropout"]) == {"fc1", "fc2"}
    best = max((r for r in records if r["method"] == "bayesft"), key=lambda r: r["objective"])
    assert list(results["best_dropout"].values()) == best["rates"] and results["best_objective"] == best["objective"]
    assert set(results["methods"]) == {"bayesft", "erm", "uniform", "random", "hardware_aware"}
    rows = results["results"]
    assert {r["method"] for r in rows} == set(results["methods"])
    for row in rows:
        assert {"method", "preset", "t_inference", "mean", "std", "n_chips"} <= set(row) and row["n_chips"] == 4
        assert row["t_inference"] in (1.0, 86400.0, 365 * 86400.0) and 0 <= row["mean"] <= 1
    # the lognormal model does not depend on time: identical chips give identical accuracy
    logn = [r["mean"] for r in rows if r["method"] == "erm" and r["preset"] == "lognormal"]
    assert len(set(logn)) == 1
    env = json.loads((run / "environment.json").read_text())
    pinned = dict(line.split("==") for line in (ROOT / "requirements.txt").read_text().splitlines()
                  if "==" in line and not line.startswith("#"))
    assert env["packages"]["aihwkit"] == pinned["aihwkit"] and env["packages"]["torch"].startswith(pinned["torch"])
    assert (env["seed"] == 3
            and env["device"] == ("cuda" if torch.cuda.is_available() else "cpu"))


def test_plots_redraw_from_the_files_alone(finished, tmp_path):
    _, run = finished
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("results.json", "trials.jsonl"):
        (copy / name).write_bytes((run / name).read_bytes())
    assert search.plot.main([str(copy)]) == 0
    assert {p.name for p in copy.glob("*.png")} == PLOTS
    assert search.plot.main([str(tmp_path / "nothing")]) == 2


def test_a_run_not_yet_finished_gets_its_convergence_so_far(finished, tmp_path, capsys):
    _, run = finished
    lines = (run / "trials.jsonl").read_text().splitlines()
    searched = [i for i, line in enumerate(lines) if '"bayesft"' in line]
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "resolved.yaml").write_bytes((run / "resolved.yaml").read_bytes())
    (partial / "trials.jsonl").write_text("\n".join(lines[: searched[0] + 1]) + '\n{"id": "cut sh')  # as if interrupted
    assert search.plot.main([str(partial)]) == 0
    assert {p.name for p in partial.glob("*.png")} == {"convergence.png"}
    so_far = search.plot._results_so_far(partial, search.plot._read_trials(partial))
    assert so_far["scenario"].endswith("(not finished, 1 search trial so far)")  # the baselines before it not counted
    # a bad line before the last is damaged: left out of the plot, in one line that names it
    (partial / "trials.jsonl").write_text(lines[0] + "\n{oops\n" + lines[searched[0]] + "\n")
    assert search.plot.main([str(partial)]) == 0
    assert "trials.jsonl: line 2: not JSON; left out of the plots" in capsys.readouterr().err
    (partial / "trials.jsonl").write_text("\n".join(lines[: searched[0] + 1]) + "\n")
    (partial / "results.json").write_text('{"results": []}')  # not one search.run writes
    assert search.plot.main([str(partial)]) == 2
    assert capsys.readouterr().err.strip() == (f"error: {partial}: its files lack 'methods'; were they written by "
                                               "python -m search.run (of this version)?")
    (partial / "results.json").unlink()
    (partial / "trials.jsonl").write_text("\n".join(lines[: searched[0]]) + "\n")  # baselines only, no search yet
    (partial / "convergence.png").unlink()
    assert search.plot.main([str(partial)]) == 2
    assert "no results.json and no search trials yet" in capsys.readouterr().err and not list(partial.glob("*.png"))
    assert search.plot.main([str(partial / "typo")]) == 2
    assert capsys.readouterr().err.strip() == (f"error: {partial / 'typo'}: no such folder; "
                                               "give a run folder, e.g. runs/drift_1day")


def test_same_seed_same_trials(finished, tmp_path):
    path, run = finished
    again = tmp_path / "again"
    assert search.run.main([str(path), "--out", str(again), "--quiet", "--set", "search.n_trials=2",
                            "--set", "baselines.random=false"]) == 0
    first = {r["id"]: stable(r) for r in trials(run)}
    for record in trials(again):
        assert stable(record) == first[record["id"]]


def test_a_finished_run_is_not_overwritten(finished, capsys):
    path, run = finished
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    assert search.run.main([str(path), "--out", str(run), "--quiet"]) == 2
    assert "already holds a run; use --resume to continue it, --force to start over" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    # resuming a finished run redoes nothing
    assert search.run.main([str(path), "--out", str(run), "--quiet", "--resume"]) == 0
    assert [stable(r) for r in trials(run)] == [
        stable(json.loads(line)) for line in before["trials.jsonl"].decode().splitlines()
    ]
    # resuming with a changed scenario is refused
    assert search.run.main([str(path), "--out", str(run), "--quiet", "--resume", "--set", "n_chips=5"]) == 2
    assert "holds a run of a different scenario (changed: n_chips)" in capsys.readouterr().err


def test_resume_with_a_new_report_tests_the_finals_again(finished, tmp_path, capsys):
    # the search trials do not depend on report: --resume keeps them and only the final
    # networks are tested again, here at one more time
    import shutil

    path, finished_run = finished
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    before = json.loads((run / "results.json").read_text())
    assert search.run.main([str(path), "--out", str(run), "--quiet", "--resume",
                            "--set", "report.t_inference=[1s, 1d, 1y, 10y]"]) == 0
    assert "report changed: the final networks are tested again" in capsys.readouterr().out
    assert [stable(r) for r in trials(run)] == [stable(r) for r in trials(finished_run)]
    after = json.loads((run / "results.json").read_text())
    assert after["best_dropout"] == before["best_dropout"]
    rows = lambda results: {(r["preset"], r["method"], r["t_inference"]): r["mean"] for r in results["results"]}  # noqa: E731
    old, new = rows(before), rows(after)
    assert {t for *_, t in new} == {1.0, 86400.0, 365 * 86400.0, 3650 * 86400.0}
    assert {k: new[k] for k in old} == old  # the same chips at the times measured before
    assert yaml.safe_load((run / "resolved.yaml").read_text())["report"]["t_inference"][-1] == 3650 * 86400.0
    # a second resume with that report redoes nothing; anything else changed is still refused
    assert search.run.main([str(path), "--out", str(run), "--quiet", "--resume",
                            "--set", "report.t_inference=[1s, 1d, 1y, 10y]"]) == 0
    assert "report changed" not in capsys.readouterr().out
    again = (run / "results.json").read_text()
    assert search.run.main([str(path), "--out", str(run), "--quiet", "--resume", "--set", "n_chips=5",
                            "--set", "report.t_inference=[1s, 1d, 1y, 10y]"]) == 2
    assert ("(changed: n_chips); resume it with the scenario it started with (only report may change)"
            in capsys.readouterr().err)
    assert (run / "results.json").read_text() == again  # a refused resume touches nothing


def test_min_clean_score_scores_weak_networks_0_and_says_so(tiny, tmp_path, capsys):
    path = tiny(search={"n_trials": 3, "n_initial": 2},
                baselines={"uniform": [0.5], "random": True, "hardware_aware": False})
    # out of reach: every trial scores 0, and the run says its "best" rates mean nothing
    assert search.run.main([str(path), "--out", str(tmp_path / "a"), "--quiet",
                            "--set", "objective.min_clean_score=0.999"]) == 0
    out = capsys.readouterr().out
    records = trials(tmp_path / "a")
    assert all(r["feasible"] is False and r["objective"] == 0.0 for r in records)
    best = max(r["val_clean"] for r in records)
    assert (f"no trial reached objective.min_clean_score = 0.999 (the best clean validation accuracy was {best:.3f})"
            in out)
    assert json.loads((tmp_path / "a" / "results.json").read_text())["infeasible_trials"] == len(records) == 8
    # between the trials' accuracies: those below score 0, the others their accuracy on chips
    floor = sorted(r["val_clean"] for r in records)[len(records) // 2]
    assert search.run.main([str(path), "--out", str(tmp_path / "b"), "--quiet",
                            "--set", f"objective.min_clean_accuracy={floor}"]) == 0
    records = trials(tmp_path / "b")
    low = [r for r in records if r["val_clean"] < floor]
    assert low and len(low) < len(records)
    for r in records:
        assert r["feasible"] is (r["val_clean"] >= floor) and (r["objective"] == 0.0) is (r["val_clean"] < floor)
    assert f"{len(low)} of {len(records)} trials had a clean validation accuracy below" in capsys.readouterr().out


def test_force_starts_over(tiny, tmp_path):
    path = tiny(search={"n_trials": 1, "n_initial": 1}, baselines={"erm": True, "uniform": [], "random": False,
                                                                  "hardware_aware": False})
    out = tmp_path / "run"
    assert search.run.main([str(path), "--out", str(out), "--quiet"]) == 0
    (out / "trials.jsonl").write_text(
        '{"id": "stale", "method": "erm", "rates": [0, 0], "status": "ok", "objective": 1}\n'
    )
    (out / "my_figure.png").write_bytes(b"the user's own")  # not a file the run writes
    (out / "convergence.png").write_bytes(b"stale")
    (out / "sweep_g_max.png").write_bytes(b"stale")  # a run's sweep plot, of a sweep this run no longer has
    assert search.run.main([str(path), "--out", str(out), "--quiet", "--force"]) == 0
    assert not (out / "sweep_g_max.png").exists()
    assert [r["id"] for r in trials(out)] == ["erm", "bayesft-001"]
    assert (out / "my_figure.png").read_bytes() == b"the user's own"
    assert (out / "convergence.png").read_bytes() != b"stale"


@pytest.mark.parametrize("flags", [[], ["--force"], ["--resume"]])
def test_a_folder_of_other_files_is_not_written_into(finished, tmp_path, capsys, flags):
    # e.g. --out . from the repository root, or --out ~/paper
    path, _ = finished
    for name in ("notes.txt", "results.csv", "fig1.png", "fig2.png"):
        (tmp_path / name).write_text(name)
    (tmp_path / ".hidden").write_text("")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert search.run.main([str(path), "--out", str(tmp_path), "--quiet", *flags]) == 2
    err = capsys.readouterr().err
    assert f"output {tmp_path} holds other files (fig1.png, fig2.png, notes.txt and 1 more) and no run" in err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    # a folder holding only hidden files is as good as empty
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / ".gitkeep").write_text("")
    assert RunFolder(empty).foreign_files() == []


@pytest.mark.slow
def test_a_folder_another_run_is_writing_is_refused(finished, tmp_path, capsys):
    # e.g. `make run` (which resumes) in a second terminal while the first still runs
    path, run = finished
    copy = tmp_path / "run"
    copy.mkdir()
    for f in run.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from search.folder import RunFolder; "
         "RunFolder(sys.argv[1]).lock(); print('locked', flush=True); time.sleep(60)", str(copy)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = {p.name: p.read_bytes() for p in copy.iterdir()}
        for flags in ([], ["--resume"], ["--force"]):
            assert search.run.main([str(path), "--out", str(copy), "--quiet", *flags]) == 2
            assert f"{copy} is being written by another search.run (process {holder.pid})" in capsys.readouterr().err
        assert {p.name: p.read_bytes() for p in copy.iterdir()} == before
    finally:
        holder.kill()
        holder.wait()
    # the lock goes with its process, however it ended
    assert search.run.main([str(path), "--out", str(copy), "--quiet", "--resume"]) == 0


@pytest.mark.slow
def test_ctrl_c_stops_the_run_and_names_the_command_that_resumes_it(tiny, tmp_path):
    path = tiny(training={"epochs": 6, "lr": 0.01}, search={"n_trials": 4, "n_initial": 2})
    out = tmp_path / "my run"
    options = ["--set", "n_chips=3", "--set", "devices=[pcm, {name: pcm2, base: pcm, p_sa0: 0.05}]", "--quiet"]
    cmd = [sys.executable, "-m", "search.run", str(path), "--out", str(out), *options]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    # SIGINT as a terminal's Ctrl-C sends it (a background job of a script would ignore it)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    wait_for_trials(out, 2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    hint = err.strip().splitlines()[-1]
    assert hint.startswith("interrupted; finished trials are in") and "Continue with: python -m search.run " in hint
    # the command it names, as a shell would split it, resumes the run to its end
    resume = shlex.split(hint.split("Continue with: ")[1])[3:]
    assert resume == [str(path), "--out", str(out), *options, "--resume"]
    assert search.run.main(resume) == 0
    assert len(trials(out)) == 11


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="watches /proc/PID/maps (Linux)")
def test_ctrl_c_while_torch_loads_is_one_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "search.run", "scenarios/drift_1day.yaml", "--out", str(out)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    maps = Path(f"/proc/{proc.pid}/maps")
    deadline = time.time() + 60
    while time.time() < deadline and "torch" not in maps.read_text():  # in the middle of importing torch
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err.strip() == "interrupted", err
    assert not out.exists()


def test_an_output_folder_that_cannot_be_made_is_one_line(finished, tmp_path, capsys):
    path, _ = finished
    (tmp_path / "a_file").write_text("")
    assert search.run.main([str(path), "--out", str(tmp_path / "a_file" / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: cannot write the output folder {tmp_path / 'a_file' / 'run'}: Not a directory"


def test_a_failing_trial_is_recorded_and_the_search_goes_on(tiny, tmp_path, capsys):
    # SGD at this learning rate diverges: every trial fails, the run still finishes, and
    # says that it produced nothing (exit 1, the reasons counted)
    path = tiny(training={"epochs": 2, "optimizer": "sgd", "lr": 1.0e6, "schedule": "constant"},
                search={"n_trials": 2, "n_initial": 1},
                baselines={"uniform": [], "random": False, "hardware_aware": False})
    out = tmp_path / "run"
    assert search.run.main([str(path), "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: no results: 3 of 3 trials and final networks failed (3 x loss became nan in epoch")
    records = trials(out)
    assert [r["id"] for r in records] == ["erm", "bayesft-001", "bayesft-002"]
    for r in records:
        assert r["status"] == "failed" and "diverged" in r["reason"] and r["objective"] is None
    results = json.loads((out / "results.json").read_text())
    assert results["failed_trials"] == 3 and results["best_dropout"] is None and results["results"] == []


def test_an_error_inside_a_trial_becomes_a_failed_record():
    scenario, _ = load_scenario(data={"dataset": {"name": "digits", "max_train": 50}, "model": {"name": "mlp"},
                                      "training": {"epochs": 1}})
    record = trial_record(scenario.plain(), {"id": "x", "method": "bayesft", "rates": [0.1, 0.2, 0.3]})  # 2 slots
    assert record["status"] == "failed" and "dropout: 3 rate(s) given for 2 slot(s)" in record["reason"]


def test_a_failure_reason_is_one_line_with_its_first_paragraph_whole():
    # as Dask words it: a sentence wrapped over lines, then advice after a blank line
    error = RuntimeError("\nError during deserialization of the task graph. This frequently\n"
                         "occurs if the Scheduler and Client have different environments.\n\nFor more information, see")
    assert error_reason(error) == ("RuntimeError: Error during deserialization of the task graph. This frequently "
                                   "occurs if the Scheduler and Client have different environments.")
    long = error_reason(ValueError("x" * 1000))
    assert len(long) == len("ValueError: ") + 300 and long.endswith("...")
    assert error_reason(KeyError()) == "KeyError: "


@pytest.mark.slow
def test_resume_after_sigkill_loses_and_repeats_nothing(tiny, tmp_path):
    path = tiny(training={"epochs": 6, "lr": 0.01}, search={"n_trials": 4, "n_initial": 2})
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "search.run", str(path), "--out", str(out), "--quiet"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    log = out / "trials.jsonl"
    wait_for_trials(out, 5)
    time.sleep(0.3)  # into the middle of the next trial
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = trials(out)
    assert 5 <= len(before) < 11, "the run was killed before it finished"
    with open(log, "a") as f:  # as if the kill had struck while a line was being written
        f.write('{"id": "bayesft-00')
    resumed = subprocess.run(cmd + ["--resume"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    after = trials(out)
    ids = [r["id"] for r in after]
    assert len(ids) == len(set(ids)) == 11  # nothing repeated, nothing lost
    assert after[:len(before)] == before  # finished trials kept as they were
    # and the resumed search is the one an uninterrupted run makes
    straight = tmp_path / "straight"
    assert search.run.main([str(path), "--out", str(straight), "--quiet"]) == 0
    assert [stable(r) for r in after] == [stable(r) for r in trials(straight)]
    assert json.loads((out / "results.json").read_text())["best_dropout"] == \
        json.loads((straight / "results.json").read_text())["best_dropout"]


def test_study_mode_compares_variants_without_a_search(tiny, tmp_path, capsys):
    # a variant changes options of the scenario's network, or names another network
    labels = ["plain", "tanh, dropout", "lenet5"]
    path = tiny(mode="study", variants=[{"label": "plain"}, {"label": "tanh, dropout", "model": {"activation": "tanh"},
                                                             "dropout": 0.3},
                                        {"label": "lenet5", "model": {"name": "lenet5"}, "dropout": [0, 0, 0.1, 0.1]}])
    out = tmp_path / "study"
    assert search.run.main([str(path), "--out", str(out), "--quiet"]) == 0
    # its first line says what it runs: the variants, not the search mode's trials and slots
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("tiny: study of 3 variants (plain, tanh, dropout, lenet5) on digits, "
                            "4 chips per test point")
    assert not (out / "trials.jsonl").exists()  # no search trials
    results = json.loads((out / "results.json").read_text())
    assert list(results["methods"]) == labels and results["best_dropout"] is None
    assert {r["method"] for r in results["results"]} == set(labels)
    # each is the network it names: lenet5's test accuracy is not the mlp's
    clean = {m: info["test_clean"] for m, info in results["methods"].items()}
    assert len(set(clean.values())) == 3, clean
    assert {p.name for p in out.glob("*.png")} == {"accuracy_vs_time.png", "technologies.png"}


def test_a_plot_that_fails_hides_neither_the_table_nor_the_results(tiny, tmp_path, monkeypatch, capsys):
    def fail(run_dir):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(search.plot, "plot_run", fail)
    out = tmp_path / "run"
    assert search.run.main([str(tiny(**SMALL)), "--out", str(out), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "BayesFT (Bayesian search)" in captured.out and (out / "results.json").is_file()
    assert "warning: the plots were not drawn (OSError: [Errno 30] Read-only file system)" in captured.err


@pytest.mark.slow
def test_a_closed_stdout_stops_nothing(tiny, tmp_path):
    out = tmp_path / "run"
    command = f"{sys.executable} -m search.run {tiny(**SMALL)} --out {out} --quiet | head -1"
    proc = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("tiny: ") and len(proc.stdout.splitlines()) == 1
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr
    assert (out / "results.json").is_file()
