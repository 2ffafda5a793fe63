"""What goes wrong, as a hostile but realistic user makes it go wrong: each gets one line
(or is refused before any work), finished records are never lost, nothing is silent."""

import errno
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
import yaml

import crossbar
import models
import search.plot
import search.run
from search.config import ScenarioError, load_scenario

ROOT = Path(__file__).resolve().parents[2]
SMALL = {"search": {"n_trials": 2, "n_initial": 1},
         "baselines": {"uniform": [], "random": False, "hardware_aware": False}}


def lines(folder: Path, name: str = "trials.jsonl") -> list[dict]:
    return [json.loads(line) for line in (folder / name).read_text().splitlines()]


def stable(record: dict) -> dict:
    return {k: v for k, v in record.items() if not k.endswith("seconds") and k != "worker"}


# ------------------------------------------------------------------ numbers and names


@pytest.mark.parametrize("change, where", [
    ({"devices": [{"name": "x", "base": "pcm", "g_max": math.inf}]}, "devices[0].g_max: inf is not a finite number"),
    ({"devices": [{"name": "x", "base": "lognormal", "sigma": math.inf}]}, "devices[0].sigma: inf"),
    ({"devices": [{"name": "x", "base": "pcm", "read_noise_scale": math.nan}]}, "devices[0].read_noise_scale: nan"),
    ({"training": {"lr": math.inf}}, "training.lr: inf is not a finite number"),
    ({"training": {"weight_decay": math.inf}}, "training.weight_decay: inf"),
    ({"model": {"name": "mlp", "options": {"width": math.inf}}}, "model.options.width: inf"),
    ({"n_chips": 1e10}, "n_chips: Input should be less than or equal to 100000"),
    ({"training": {"epochs": 100_000_000}}, "training.epochs: Input should be less than or equal to 10000"),
    ({"t_inference": 1e300}, "t_inference: 1e+300 is more than 1,000 years"),
    ({"seed": 2**32}, "seed: Input should be less than 4294967296"),
    ({"name": "../../escaped"}, "name: '../../escaped' cannot name a run folder"),
    ({"name": "/tmp/absolute"}, "name: '/tmp/absolute' cannot name a run folder"),
    ({"name": ""}, "name: '' cannot name a run folder"),
    ({"name": ".."}, "name: '..' cannot name a run folder"),
])
def test_a_number_or_name_no_run_can_use_is_one_line(change, where):
    with pytest.raises(ScenarioError) as err:
        load_scenario(data=change)
    assert where in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_the_api_refuses_non_finite_parameters_and_a_set_cannot_sneak_one_in():
    for kw in ({"g_max": math.inf}, {"sigma": math.inf}, {"p_sa0": math.nan}):
        with pytest.raises(ValueError, match="Input should be a finite number"):
            crossbar.get_preset("lognormal", **kw)
    with pytest.raises(ValueError, match="Input should be a finite number"):
        models.TrainConfig(lr=math.inf)
    with pytest.raises(ScenarioError, match=r"devices\[0\].sigma: inf is not a finite number"):
        load_scenario(data={"devices": ["lognormal"]}, overrides=["devices.0.sigma=.inf"])


def test_a_yaml_alias_bomb_is_refused_within_a_second(tmp_path):
    lines_ = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines_.append(f"{'abcdefghij'[i]}: &{'abcdefghij'[i]} [" + ", ".join([f"*{'abcdefghij'[i - 1]}"] * 10) + "]")
    lines_.append("description: *i")  # 10^9 strings once expanded
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines_) + "\n")
    start = time.perf_counter()
    with pytest.raises(ScenarioError, match=r"expands to more than 100,000 values \(YAML anchors and aliases"):
        load_scenario(path)
    assert time.perf_counter() - start < 1.0
    ok = tmp_path / "merge.yaml"  # anchors and merges as people use them stay fine
    ok.write_text("defaults: &d {epochs: 3, lr: 0.01}\ntraining: {<<: *d, epochs: 4}\n".replace("defaults", "x-d"))
    with pytest.raises(ScenarioError, match="x-d: unknown key"):
        load_scenario(ok)


def test_a_scenario_that_is_not_utf8_text_is_one_line(tmp_path):
    for name, content in (("binary.yaml", bytes(range(256))), ("utf16.yaml", "seed: 1\n".encode("utf-16"))):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(ScenarioError, match=r"not UTF-8 text \(byte \d+: .*\); save the scenario as UTF-8"):
            load_scenario(path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_scenario_is_one_line(tmp_path):
    path = tmp_path / "secret.yaml"
    path.write_text("seed: 1\n")
    path.chmod(0)
    with pytest.raises(ScenarioError, match=r"cannot be read \(Permission denied\)"):
        load_scenario(path)


def test_a_seed_numpy_cannot_take_writes_nothing(tiny, tmp_path, capsys):
    out = tmp_path / "run"
    assert search.run.main([str(tiny()), "--out", str(out), "--set", f"seed={2**32}"]) == 2
    assert "seed: Input should be less than 4294967296" in capsys.readouterr().err and not out.exists()


def test_a_model_on_the_meta_device_and_non_finite_inputs_are_one_line():
    with torch.device("meta"):
        model = torch.nn.Linear(4, 3)
    with pytest.raises(ValueError, match="weight is on the meta device: it has a shape but no values"):
        crossbar.convert(model, "ideal")
    model = torch.nn.Linear(4, 3)
    x = torch.randn(8, 4)
    x[2, 1] = math.nan
    with pytest.raises(ValueError, match=r"data: the inputs hold 1 NaN or infinite value\(s\) of 32"):
        crossbar.evaluate(model, (x, torch.zeros(8, dtype=torch.long)), "ideal", [1.0], 2)


# ------------------------------------------------------------------ damaged run folders


@pytest.fixture(scope="module")
def done(tmp_path_factory, tiny_data):
    """A finished small run, copied by the tests that damage it."""
    folder = tmp_path_factory.mktemp("done")
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump({**tiny_data, **SMALL}))
    assert search.run.main([str(path), "--out", str(folder / "run"), "--quiet"]) == 0
    return path, folder / "run"


def copy_run(done, tmp_path) -> Path:
    _, run = done
    shutil.copytree(run, tmp_path / "run")
    return tmp_path / "run"


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

    def fsync(fd):  # the third record appended finds the disk full
        calls.append(fd)
        if len(calls) == 3:
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


def test_a_plot_that_fails_hides_neither_the_table_nor_the_results(tiny, tmp_path, monkeypatch, capsys):
    def fail(run_dir):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(search.plot, "plot_run", fail)
    out = tmp_path / "run"
    assert search.run.main([str(tiny(**SMALL)), "--out", str(out), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "BayesFT (Bayesian search)" in captured.out and (out / "results.json").is_file()
    assert "warning: the plots were not drawn (OSError: [Errno 30] Read-only file system)" in captured.err


def test_a_closed_stdout_stops_nothing(tiny, tmp_path):
    out = tmp_path / "run"
    command = f"{sys.executable} -m search.run {tiny(**SMALL)} --out {out} --quiet | head -1"
    proc = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("tiny: ") and len(proc.stdout.splitlines()) == 1
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr
    assert (out / "results.json").is_file()


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
