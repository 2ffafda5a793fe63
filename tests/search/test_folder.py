"""The run folder: it keeps the history of a run's starts; damaged records are set aside,
said and run again; a resume without its record, a disk that fills up and a read-only
folder are one line, and no finished record is lost."""

import errno
import json
import math
import os
import re
import shutil
import subprocess

import pytest
import yaml
from run_helpers import SMALL, copy_run, lines

import search.run


def stable(record: dict) -> dict:
    return {k: v for k, v in record.items() if not k.endswith("seconds") and k != "worker"}


def test_a_resume_keeps_the_first_start_and_adds_its_own(tiny, tmp_path):
    path = tiny(search={"n_trials": 1, "n_initial": 1},
                baselines={"uniform": [], "random": False, "hardware_aware": False})
    out = tmp_path / "run"
    assert search.run.main([str(path), "--out", str(out), "--quiet"]) == 0
    first = json.loads((out / "environment.json").read_text())
    assert "resumes" not in first
    for n in (1, 2):
        assert search.run.main([str(path), "--out", str(out), "--quiet", "--resume"]) == 0
        env = json.loads((out / "environment.json").read_text())
        assert {k: v for k, v in env.items() if k != "resumes"} == first  # the first start, as it was
        assert len(env["resumes"]) == n and env["resumes"][-1]["argv"][-1] == "--resume"
        assert set(env["resumes"][-1]) == set(first)  # each resume: the same facts
    assert search.run.main([str(path), "--out", str(out), "--quiet", "--force"]) == 0
    assert "resumes" not in json.loads((out / "environment.json").read_text())  # started over


def test_a_folder_that_recorded_its_devices_as_written_resumes(tiny, tmp_path):
    """Runs recorded their devices as written ({name, base, p_sa0, ...}) before they were
    recorded with every parameter; the same scenario still resumes them, and a changed
    one is still refused."""
    import yaml

    path = tiny(search={"n_trials": 1, "n_initial": 1},
                baselines={"uniform": [], "random": False, "hardware_aware": False})
    out = tmp_path / "run"
    assert search.run.main([str(path), "--out", str(out), "--quiet"]) == 0
    resolved = yaml.safe_load((out / "resolved.yaml").read_text())
    resolved["devices"] = yaml.safe_load(path.read_text())["devices"]  # as written in the scenario
    (out / "resolved.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))
    assert search.run.main([str(path), "--out", str(out), "--quiet", "--resume"]) == 0
    (out / "resolved.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))
    assert search.run.main([str(path), "--out", str(out), "--quiet", "--resume", "--set", "devices.0.sigma=0.9"]) == 2


# ------------------------------------------------------------------ damaged run folders


def _edit(index, **changes):
    """A damage: record ``index`` of the file's lines with some fields changed."""
    def damage(rows):
        rows[index] = json.dumps({**json.loads(rows[index]), **changes})
    return damage


def _drop_id(rows):
    rows[0] = json.dumps({k: v for k, v in json.loads(rows[0]).items() if k != "id"})


@pytest.mark.parametrize("damage, problem", [
    (lambda rs: rs.insert(1, "this is not json"), "not JSON"),
    (lambda rs: rs.insert(1, "[1, 2, 3]"), "a list, not a record"),
    (_drop_id, "no id"),
    (_edit(0, objective="0.9"), "not '0.9'"),
    (_edit(0, objective=None), "objective should be a finite"),
    (_edit(0, objective=math.nan), "objective should be"),
    (lambda rs: rs.__setitem__(0, re.sub(r'"objective": [0-9.e-]+', '"objective": 1e309', rs[0])), "not inf"),
    (_edit(1, rates=[0.1]), "rates should be a list of 2"),
    (_edit(1, rates=[0.1, 0.95]), "outside the search space"),
    (lambda rs: rs.insert(2, rs[1]), "a second record of 'bayesft-001'"),
    (lambda rs: rs.insert(0, json.dumps({**json.loads(rs[0]), "id": "stale"})), "'stale' is not a trial of this"),
])
def test_a_damaged_trial_record_is_set_aside_said_and_run_again(done, tmp_path, capsys, damage, problem):
    path, _ = done
    run = copy_run(done, tmp_path)
    clean = [stable(r) for r in lines(run)]
    records = (run / "trials.jsonl").read_text().splitlines()
    damage(records)
    (run / "trials.jsonl").write_text("\n".join(records) + "\n")
    capsys.readouterr()
    assert search.run.main([str(path), "--out", str(run), "--quiet", "--resume"]) == 0
    out = capsys.readouterr().out
    assert f"{run / 'trials.jsonl'}: line " in out and problem in out, out
    assert "moved to trials.jsonl.damaged, the trial runs again" in out
    set_aside = lines(run, "trials.jsonl.damaged")
    assert len(set_aside) == 1 and problem in set_aside[0]["problem"] and set_aside[0]["text"]
    assert sorted(map(str, (stable(r) for r in lines(run)))) == sorted(map(str, clean))  # run again: the same


def test_a_damaged_final_record_is_tested_again(done, tmp_path, capsys):
    path, _ = done
    run = copy_run(done, tmp_path)
    finals = (run / "final.jsonl").read_text().splitlines()
    finals[0] = json.dumps({**json.loads(finals[0]), "test_clean": "high"})
    (run / "final.jsonl").write_text("\n".join(finals) + "\n")
    before = json.loads((run / "results.json").read_text())
    capsys.readouterr()
    assert search.run.main([str(path), "--out", str(run), "--quiet", "--resume"]) == 0
    assert "final.jsonl: line 1: test_clean should be a finite number, not 'high'" in capsys.readouterr().out
    after = json.loads((run / "results.json").read_text())
    assert after["results"] == before["results"] and after["methods"] == before["methods"]


def test_a_run_file_that_is_a_folder_is_one_line(done, tmp_path, capsys):
    path, _ = done
    run = copy_run(done, tmp_path)
    (run / "trials.jsonl").unlink()
    (run / "trials.jsonl").mkdir()
    assert search.run.main([str(path), "--out", str(run), "--quiet", "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {run / 'trials.jsonl'} is a folder, not a file: the run folder is damaged; move it aside, " \
                  "or start the run in another folder (--out)"
    assert search.plot.main([str(run)]) == 2
    assert "is a folder, not a file" in capsys.readouterr().err


def test_search_plot_leaves_a_damaged_line_out_and_says_so(done, tmp_path, capsys):
    run = copy_run(done, tmp_path)
    with open(run / "trials.jsonl", "a") as f:
        f.write("{broken\n")
    assert search.plot.main([str(run)]) == 0
    assert f"warning: {run / 'trials.jsonl'}: line 4: not JSON; left out of the plots" in capsys.readouterr().err
    assert (run / "trials.jsonl").read_text().endswith("{broken\n")  # a plot changes no run file


# ------------------------------------------------------------------ resume without its record


def test_a_resume_without_resolved_yaml_checks_scenario_yaml(done, tmp_path, capsys):
    path, _ = done
    for damage in ("delete", "empty"):
        run = copy_run(done, tmp_path / damage)
        if damage == "delete":
            (run / "resolved.yaml").unlink()
        else:
            (run / "resolved.yaml").write_text("")
        capsys.readouterr()
        assert search.run.main([str(path), "--out", str(run), "--quiet", "--resume", "--set", "n_chips=7"]) == 2
        err = capsys.readouterr()
        assert "(changed: n_chips)" in err.err
        assert ("is missing" if damage == "delete" else "is empty") in err.out
        assert search.run.main([str(path), "--out", str(run), "--quiet", "--resume"]) == 0
        assert yaml.safe_load((run / "resolved.yaml").read_text())["n_chips"] == 3  # recorded again, as it ran


def test_a_resume_with_neither_record_is_refused_without_advice_that_deletes(done, tmp_path, capsys):
    path, _ = done
    run = copy_run(done, tmp_path)
    (run / "resolved.yaml").write_text("")
    (run / "scenario.yaml").unlink()
    before = (run / "trials.jsonl").read_text()
    assert search.run.main([str(path), "--out", str(run), "--quiet", "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert "its resolved.yaml is empty (what a disk that filled up leaves) and its scenario.yaml is missing" in err
    assert "--force" not in err and "put back either file" in err
    assert (run / "trials.jsonl").read_text() == before


# ------------------------------------------------------------------ disks, pipes, plots


def test_a_disk_that_fills_up_mid_run_keeps_every_finished_trial(tiny, tmp_path, monkeypatch, capsys):
    path = tiny(**SMALL)
    out = tmp_path / "run"
    real_fsync, calls = os.fsync, []

    def fsync(fd):  # after the three scenario files (each written whole), the second record finds the disk full
        calls.append(fd)
        if len(calls) == 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    assert search.run.main([str(path), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"error: cannot write {out / 'trials.jsonl'}: No space left on device; the finished")
    assert "Once it can be written, continue with: python -m search.run" in err
    assert not list(out.glob(".*.tmp"))
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert search.run.main([str(path), "--out", str(out), "--quiet", "--resume"]) == 0
    again = tmp_path / "again"
    assert search.run.main([str(path), "--out", str(again), "--quiet"]) == 0
    assert [stable(r) for r in lines(out)] == [stable(r) for r in lines(again)]


def test_a_real_full_filesystem(tiny, tmp_path, capsys):
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a small filesystem here")
    try:
        (mount / "filler").write_bytes(b"x" * 15000)
        assert search.run.main([str(tiny(**SMALL)), "--out", str(mount / "run"), "--quiet"]) == 2
        assert "No space left on device" in capsys.readouterr().err
    finally:
        subprocess.run(["umount", str(mount)])


def test_a_read_only_folder_is_one_line_for_the_run_and_for_the_plots(done, tmp_path, capsys):
    path, run = done
    mount = tmp_path / "ro"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a filesystem here")
    try:
        shutil.copytree(run, mount / "run")
        (mount / "run" / "accuracy_vs_time.png").unlink()
        assert subprocess.run(["mount", "-o", "remount,ro", str(mount)], capture_output=True).returncode == 0
        capsys.readouterr()
        assert search.run.main([str(path), "--out", str(mount / "new"), "--quiet"]) == 2
        assert capsys.readouterr().err.strip().endswith("Read-only file system")
        assert search.run.main([str(path), "--out", str(mount / "run"), "--quiet", "--resume"]) == 2
        assert capsys.readouterr().err.strip() == (
            f"error: cannot write the output folder {mount / 'run'}: Read-only file system")
        assert search.plot.main([str(mount / "run")]) == 2
        assert capsys.readouterr().err.strip() == (
            f"error: cannot write the plots into {mount / 'run'}: Read-only file system")
    finally:
        subprocess.run(["umount", str(mount)])
