"""Parallel trials: local processes and a real Dask LocalCluster on loopback, worker
deaths, and chunked Monte Carlo."""

import json
import os
import signal
import subprocess
import sys
import sysconfig
import threading
import time
from pathlib import Path

import psutil
import pytest
from run_helpers import wait_for_trials

import search.run
from search.config import load_scenario
from search.executors import DaskExecutor, Processes
from search.experiment import Experiment
from search.folder import RunFolder
from search.trial import final_record, trial_record

pytestmark = pytest.mark.slow  # processes, clusters, subprocesses: minutes in all

ROOT = Path(__file__).resolve().parents[2]


def trials(folder):
    return [json.loads(line) for line in (folder / "trials.jsonl").read_text().splitlines()]


def same_as_sequential(plain, records):
    """Each trial equals the one this process computes for the same rates and seed."""
    for record in records:
        spec = {k: record[k] for k in ("id", "method", "rates") if k in record}
        if record.get("hardware_aware"):
            spec["hardware_aware"] = True
        here = trial_record(plain, spec)
        assert record["status"] == here["status"] == "ok"
        assert record["objective"] == here["objective"], record["id"]
        assert record["scores"] == here["scores"]


@pytest.fixture
def small(tiny):
    return tiny(search={"n_trials": 4, "n_initial": 2},
                baselines={"uniform": [0.2], "random": True, "hardware_aware": False})


def test_dask_local_cluster_runs_the_search(small, tmp_path):
    out = tmp_path / "dask"
    assert search.run.main([str(small), "--out", str(out), "--quiet", "--dask", "local", "--workers", "2"]) == 0
    records = trials(out)
    ids = sorted(r["id"] for r in records)
    assert ids == sorted(["erm", "uniform-0.2", "bayesft-001", "bayesft-002", "bayesft-003", "bayesft-004",
                          "random-001", "random-002", "random-003", "random-004"])
    assert len({r["worker"] for r in records}) == 2  # both workers took trials
    scenario, _ = load_scenario(small, [f"output={out}"])
    same_as_sequential(scenario.plain(), records)
    results = json.loads((out / "results.json").read_text())
    assert results["best_dropout"] is not None and results["results"]


def test_local_processes_run_the_search(small, tmp_path):
    out = tmp_path / "procs"
    assert search.run.main([str(small), "--out", str(out), "--quiet", "--workers", "2"]) == 0
    records = trials(out)
    assert len(records) == 10 and len({r["worker"] for r in records}) == 2
    scenario, _ = load_scenario(small)
    same_as_sequential(scenario.plain(), [r for r in records if r["method"] != "bayesft"][:3])
    # the final networks are trained and tested on the workers too, with the same numbers
    finals = [json.loads(line) for line in (out / "final.jsonl").read_text().splitlines()]
    assert len(finals) == 4 and len({r["worker"] for r in finals}) == 2
    record = finals[0]
    here = final_record(scenario.plain(), {k: v for k, v in record.items() if k in ("id", "method", "rates", "trial")})
    assert record["rows"] == here["rows"] and record["test_clean"] == here["test_clean"]


def kill_a_worker_once_trials_run(folder, pids_of, after=2):
    """In the background: once ``after`` trials are recorded and more are running, SIGKILL a worker."""
    killed = []

    def watch():
        deadline = time.time() + 120
        log = folder / "trials.jsonl"
        while time.time() < deadline:
            if log.exists() and len(log.read_text().splitlines()) >= after:
                time.sleep(0.2)
                pid = pids_of()[0]
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.02)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread, killed


@pytest.mark.parametrize("kind", ["dask", "processes"])
def test_a_worker_killed_mid_trial_loses_nothing(tiny, tmp_path, kind):
    path = tiny(training={"epochs": 8, "lr": 0.01}, search={"n_trials": 4, "n_initial": 2},
                baselines={"uniform": [0.2], "random": False, "hardware_aware": False})
    scenario, _ = load_scenario(path, [f"output={tmp_path / 'run'}"])
    folder = RunFolder(tmp_path / "run")
    folder.path.mkdir()
    experiment = Experiment(scenario, folder, quiet=True)
    if kind == "dask":
        executor = DaskExecutor(experiment.plain, "local", workers=2)
        pids_of = lambda: sorted(executor.client.run(os.getpid).values())  # noqa: E731
    else:
        executor = Processes(experiment.plain, 2)
        pids_of = lambda: sorted(p.pid for p in executor.pool._processes.values())  # noqa: E731
    thread, killed = kill_a_worker_once_trials_run(folder.path, pids_of)
    experiment.execute(executor)
    thread.join()
    assert killed, "no worker was killed"
    records = trials(folder.path)
    ids = [r["id"] for r in records]
    assert sorted(ids) == sorted(["erm", "uniform-0.2", "bayesft-001", "bayesft-002", "bayesft-003", "bayesft-004"])
    assert all(r["status"] == "ok" for r in records)  # the lost trials were retried
    assert len(experiment.done) == 6 and len(experiment.finals) == 3  # each method's final network
    same_as_sequential(experiment.plain, records[-2:])


@pytest.mark.parametrize("how", [["--workers", "2"], ["--dask", "local", "--workers", "2"]], ids=["processes", "dask"])
def test_ctrl_c_stops_the_workers_quietly(tiny, tmp_path, how):
    """A terminal's Ctrl-C goes to the whole process group, workers included: the run
    ends with the resume hint alone (no worker's traceback, no leaked-semaphore
    warning, no Dask error on closing twice) and leaves no process behind."""
    path = tiny(training={"epochs": 60, "lr": 0.01}, search={"n_trials": 12, "n_initial": 2})
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, "-m", "search.run", str(path), "--out", str(out), "--quiet", *how],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True,  # its own group, as a terminal's foreground job
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    wait_for_trials(out, 2)
    os.killpg(proc.pid, signal.SIGINT)  # while both workers are in a trial
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1].startswith("interrupted; finished trials are in"), err
    assert "Traceback" not in err and "leaked" not in err and "KeyboardInterrupt" not in err, err
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("a worker outlived the interrupted run")


def _dask_command(project_importable: bool) -> list[str]:
    """``python -m dask``, or, for a machine without this project, the same Python with
    its site-packages but without processing their .pth files: the project's editable
    install (make's) is such a file, the rest of the stack needs none."""
    if project_importable:
        return [sys.executable, "-m", "dask"]
    code = (f"import runpy, sys; sys.path.append({sysconfig.get_paths()['purelib']!r}); "
            "sys.argv[0] = 'dask'; runpy.run_module('dask', run_name='__main__', alter_sys=True)")
    return [sys.executable, "-S", "-c", code]


@pytest.fixture
def dask_cluster(tmp_path):
    """A real scheduler and worker on loopback, as `dask scheduler` / `dask worker` start
    them on a cluster, in a folder outside the repository: ``start(project_on_path)``
    returns the scheduler's address; without the project on the path they cannot
    import it."""
    procs = []

    def start(project_on_path: bool) -> str:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        if project_on_path:
            env["PYTHONPATH"] = str(ROOT)
        info = tmp_path / "scheduler.json"
        common = dict(cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        dask = _dask_command(project_on_path)
        procs.append(subprocess.Popen([*dask, "scheduler", "--host", "127.0.0.1", "--port", "0",
                                       "--no-dashboard", "--scheduler-file", str(info)], **common))
        procs.append(subprocess.Popen([*dask, "worker", "--scheduler-file", str(info),
                                       "--nthreads", "1", "--no-dashboard"], **common))
        deadline = time.time() + 60
        while time.time() < deadline and not info.exists():
            time.sleep(0.1)
        time.sleep(0.2)  # the file is written whole, but give it a moment
        return json.loads(info.read_text())["address"]

    yield start
    for proc in procs:
        proc.kill()  # a graceful stop costs seconds; these hold nothing
    for proc in procs:
        proc.wait(timeout=30)


def test_an_existing_cluster_that_cannot_import_the_project_is_refused_before_any_trial(tiny, tmp_path, capsys,
                                                                                      dask_cluster):
    address = dask_cluster(project_on_path=False)
    out = tmp_path / "run"
    assert search.run.main([str(tiny()), "--out", str(out), "--quiet", "--dask", address]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: the Dask cluster at {address} cannot run trials: the scheduler and 1 of 1 workers cannot import "
        "this project (ModuleNotFoundError: No module named 'search'); install it where they run (make venv, or pip "
        "install -e . in a checkout of the same commit) or start them with the repository root on PYTHONPATH")
    assert not out.exists()


def test_an_existing_cluster_runs_the_same_trials(tiny, tmp_path, dask_cluster):
    address = dask_cluster(project_on_path=True)
    path = tiny(search={"n_trials": 1, "n_initial": 1},
                baselines={"uniform": [], "random": False, "hardware_aware": False})
    out = tmp_path / "run"
    assert search.run.main([str(path), "--out", str(out), "--quiet", "--dask", address]) == 0
    records = trials(out)
    assert [r["id"] for r in records] == ["erm", "bayesft-001"]
    scenario, _ = load_scenario(path)
    same_as_sequential(scenario.plain(), records)


def test_chunked_monte_carlo_gives_the_same_trial(tiny):
    scenario, _ = load_scenario(tiny())
    whole = trial_record(scenario.plain(), {"id": "a", "method": "erm", "rates": [0.1, 0.1]})
    chunked, _ = load_scenario(tiny(chunk_size=1))
    one_by_one = trial_record(chunked.plain(), {"id": "a", "method": "erm", "rates": [0.1, 0.1]})
    assert whole["scores"] == one_by_one["scores"] and whole["objective"] == one_by_one["objective"]


def test_bad_execution_settings_are_caught(tiny, capsys, tmp_path):
    with pytest.raises(Exception, match="execution.dask: must be 'local' or a scheduler address"):
        load_scenario(tiny(), ["execution.dask=nowhere"])
    out = tmp_path / "never"
    code = search.run.main([str(tiny()), "--out", str(out), "--quiet", "--dask", "tcp://127.0.0.1:1"])
    assert code == 2 and "cannot reach the Dask scheduler at tcp://127.0.0.1:1" in capsys.readouterr().err
    assert not out.exists()


def test_a_trial_does_not_depend_on_the_callers_thread_count(tiny):
    # convolution gradients sum in a thread-count-dependent order; trials fix the count
    import torch

    scenario, _ = load_scenario(tiny(model={"name": "lenet5"}, training={"epochs": 4, "lr": 0.01}))
    spec = {"id": "t", "method": "erm", "rates": [0.1, 0.1, 0.1, 0.1]}
    before = torch.get_num_threads()
    records = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        records.append(trial_record(scenario.plain(), spec))
        assert torch.get_num_threads() == threads  # restored
    torch.set_num_threads(before)
    assert records[0]["status"] == "ok"
    assert records[0]["scores"] == records[1]["scores"] and records[0]["val_clean"] == records[1]["val_clean"]


# ------------------------------------------------------------------ workers


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_workers_end_when_their_driver_is_killed(tiny, tmp_path, how):
    path = tiny(training={"epochs": 40}, search={"n_trials": 8, "n_initial": 2})
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "search.run", str(path), "--out", str(out), "--quiet",
                             "--workers", "2"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    driver = psutil.Process(proc.pid)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "trials.jsonl").exists():
        time.sleep(0.2)
    children = driver.children(recursive=True)
    assert len(children) >= 2, "the workers never started"
    proc.send_signal(how)
    proc.wait(timeout=30)
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, f"{len(alive)} worker(s) outlived their driver by 10 s"


def test_closing_the_process_pool_ends_its_workers_before_it_returns(tiny):
    """The pool is shut down whole, in order, while the driver still runs: trials in
    flight (Ctrl-C, SIGTERM) have their workers ended, not waited for; idle workers
    (a run that finished) exit. Nothing of the pool is left for the interpreter's exit,
    where a resource tracker that died meanwhile would be relaunched and print a KeyError
    for each of the pool's semaphores."""
    scenario, _ = load_scenario(tiny(training={"epochs": 300, "lr": 0.01}))
    executor = Processes(scenario.plain(), 2)
    for trial_id in ("erm", "uniform-0.2"):  # a minute each
        executor.submit({"id": trial_id, "method": "erm", "rates": [0.2, 0.2]})
    workers = list(executor.pool._processes.values())
    assert len(workers) == 2
    busy = [psutil.Process(p.pid) for p in workers]
    deadline = time.time() + 60
    while time.time() < deadline and sum(p.cpu_times().user for p in busy) < 4:  # both imported and training
        time.sleep(0.2)
    start = time.time()
    executor.close()
    assert time.time() - start < 10 and not any(p.is_alive() for p in workers)
    assert executor.pool._executor_manager_thread is None or not executor.pool._executor_manager_thread.is_alive()
    executor.close()  # the experiment's finally, then the interruption's handler: twice is fine
    # a pool whose work is done
    quick, _ = load_scenario(tiny(training={"epochs": 1, "lr": 0.01}))
    executor = Processes(quick.plain(), 2)
    executor.submit({"id": "erm", "method": "erm", "rates": [0.0, 0.0]})
    assert executor.next_finished()["status"] == "ok"
    workers = list(executor.pool._processes.values())
    assert workers and all(p.is_alive() for p in workers)
    executor.close()
    assert not any(p.is_alive() for p in workers)
