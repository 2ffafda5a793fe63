"""tools/find-python and the Makefile: a fresh machine's Python 3.12 or 3.13 is found by
itself (on PATH if it runs, else pyenv's), anything else gets one line naming what works,
and a .venv of another Python version is rebuilt, not mixed.

The interpreters here are small shell scripts that answer the version question the finder
asks (``python -c ...`` printing "3.12"), so that the test does not depend on which
Pythons this machine has."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FINDER = ROOT / "tools" / "find-python"
TOOLS = ("sh", "ls", "sort", "rm", "touch", "cat", "make", "echo", "env")


def fake_python(path: Path, version: str | None) -> Path:
    """A script that behaves like Python ``version`` for the finder; None: one that does
    not run, like pyenv's shim for a version that is not selected."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = f'echo {version}' if version else 'echo "pyenv: $(basename $0): command not found" >&2; exit 127'
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def machine(tmp_path):
    """An empty PATH (but the tools the finder and make use) and an empty pyenv root."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        if found:
            (bin_ / tool).symlink_to(found)
    env = {"PATH": str(bin_), "PYENV_ROOT": str(tmp_path / "pyenv"), "HOME": str(tmp_path)}
    return tmp_path, bin_, env


def find(env, *args):
    return subprocess.run(["/bin/sh", str(FINDER), *args], env=env, capture_output=True, text=True, timeout=60)


def test_a_python_on_path_that_runs_comes_first(machine):
    tmp, bin_, env = machine
    on_path = fake_python(bin_ / "python3.12", "3.12")
    fake_python(tmp / "pyenv/versions/3.12.1/bin/python3.12", "3.12")
    out = find(env)
    assert out.returncode == 0 and out.stdout.strip() == str(on_path)


def test_a_shim_that_does_not_run_is_passed_over_for_pyenvs_newest(machine):
    tmp, bin_, env = machine
    fake_python(bin_ / "python3.12", None)
    for patch in (9, 10):  # listed as 3.12.10, 3.12.11, 3.12.9: only a version sort finds 3.12.11
        fake_python(tmp / f"pyenv/versions/3.12.{patch}/bin/python3.12", "3.12")
    newest = fake_python(tmp / "pyenv/versions/3.12.11/bin/python3.12", "3.12")
    fake_python(tmp / "pyenv/versions/3.13.0/bin/python3.13", "3.13")
    out = find(env)
    assert out.returncode == 0 and out.stdout.strip() == str(newest)


def test_3_13_is_taken_when_there_is_no_3_12(machine):
    tmp, _, env = machine
    only = fake_python(tmp / "pyenv/versions/3.13.0/bin/python3.13", "3.13")
    assert find(env).stdout.strip() == str(only)
    assert find(env, "--check", str(only)).returncode == 0


def test_only_python_3_11_gets_one_line_naming_what_works(machine):
    tmp, bin_, env = machine
    old = fake_python(bin_ / "python3", "3.11")
    fake_python(bin_ / "python3.12", None)
    out = find(env)
    assert out.returncode == 1 and out.stdout == ""
    out = find(env, "--check", "")
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 1 and len(lines) == 1
    assert f"{old} is 3.11" in lines[0] and "3.12 or 3.13" in lines[0] and "PYTHON=" in lines[0]
    out = find(env, "--check", str(old))
    assert out.returncode == 1 and f"PYTHON={old} is Python 3.11" in out.stderr


def make_copy(tmp: Path) -> Path:
    """The Makefile, the finder and the files the stamp depends on, in a folder of their own."""
    work = tmp / "checkout"
    (work / "tools").mkdir(parents=True)
    for name in ("Makefile", "requirements.txt", "requirements-dev.txt", "constraints.txt", "pyproject.toml"):
        shutil.copy(ROOT / name, work / name)
    shutil.copy(FINDER, work / "tools" / "find-python")
    return work


def test_make_stops_before_any_work_without_a_python_it_can_use(machine):
    tmp, bin_, env = machine
    fake_python(bin_ / "python3", "3.11")
    work = make_copy(tmp)
    out = subprocess.run(["make", "venv"], cwd=work, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "needs Python 3.12 or 3.13" in out.stderr
    assert not (work / ".venv").exists()
    # the variable the line names is honoured, and checked the same way
    out = subprocess.run(["make", "venv", f"PYTHON={bin_ / 'python3'}"], cwd=work, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "is Python 3.11" in out.stderr and not (work / ".venv").exists()


def test_a_venv_of_the_python_3_11_stack_is_rebuilt_not_mixed(machine):
    tmp, bin_, env = machine
    new = fake_python(bin_ / "python3.12", "3.12")
    work = make_copy(tmp)
    fake_python(work / ".venv/bin/python", "3.11")
    stamp = work / ".venv/.installed"
    stamp.touch()
    os.utime(stamp, (2e9, 2e9))  # newer than every requirement file: only the version is stale
    out = subprocess.run(["make", "-n", "venv"], cwd=work, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert not stamp.exists() and "pip install" in out.stdout and f"{new} -m venv" in out.stdout
    # a .venv of the right version with a fresh stamp is left alone
    (work / ".venv/bin/python").write_text("#!/bin/sh\necho 3.12\n")
    stamp.touch()
    os.utime(stamp, (2e9, 2e9))
    out = subprocess.run(["make", "-n", "venv"], cwd=work, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and stamp.exists() and "pip install" not in out.stdout
