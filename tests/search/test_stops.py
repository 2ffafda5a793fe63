"""Runs that stop early: SIGTERM as Ctrl-C, and a run folder whose first write fails."""

import errno
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from run_helpers import SMALL, lines, wait_for_trials

import search.run

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_sigterm_stops_the_run_like_ctrl_c_and_names_the_command_that_resumes_it(tiny, tmp_path):
    # kill PID, a batch system's time limit: one line, exit 143, a folder that resumes
    path = tiny(training={"epochs": 6, "lr": 0.01}, search={"n_trials": 4, "n_initial": 2})
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, "-m", "search.run", str(path), "--out", str(out), "--quiet"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    log = out / "trials.jsonl"
    wait_for_trials(out, 2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    hint = err.strip()
    assert hint.startswith(f"terminated (SIGTERM); finished trials are in {log}. Continue with: python -m search.run ")
    assert hint.endswith(" --resume")
    before = len(lines(out))
    assert 2 <= before < 11
    resume = shlex.split(hint.split("Continue with: ")[1])[3:]
    assert search.run.main(resume) == 0  # the folder is not held (lock released) and resumes to its end
    assert len(lines(out)) == 11


def test_a_run_folder_whose_first_write_fails_is_left_as_it_was(tiny, tmp_path, monkeypatch, capsys):
    path = tiny(**SMALL)
    real_fsync = os.fsync

    def full(fd):  # the disk is full from the first write on
        raise OSError(errno.ENOSPC, "No space left on device")

    # a new folder (and its parent): neither is left behind
    monkeypatch.setattr(os, "fsync", full)
    out = tmp_path / "new" / "run"
    assert search.run.main([str(path), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: cannot write the output folder {out}: scenario.yaml: No space left on device"
    assert not (tmp_path / "new").exists()
    monkeypatch.setattr(os, "fsync", real_fsync)
    # a folder that exists, where resolved.yaml cannot be written (a folder of that name):
    # what the run wrote is removed (the lock file too), what was there stays
    out = tmp_path / "there"
    (out / "resolved.yaml").mkdir(parents=True)
    (out / ".keep").write_text("mine")
    assert search.run.main([str(path), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: cannot write the output folder {out}: resolved.yaml: Is a directory"
    assert sorted(p.name for p in out.iterdir()) == [".keep", "resolved.yaml"]
    assert (out / ".keep").read_text() == "mine" and not any((out / "resolved.yaml").iterdir())
    # once it can be written, the same command runs
    (out / "resolved.yaml").rmdir()
    assert search.run.main([str(path), "--out", str(out), "--quiet"]) == 0
