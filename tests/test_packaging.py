"""The project is installed (make does pip install -e .): it imports, and its commands
run, from any folder, not only from the repository root."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # processes, clusters, subprocesses: minutes in all

ROOT = Path(__file__).resolve().parents[1]


def _outside(tmp_path, *args):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def test_the_packages_import_from_outside_the_checkout(tmp_path):
    out = _outside(tmp_path, "-c", "import crossbar, models, search.run; print(crossbar.__file__)")
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()).resolve().is_relative_to(ROOT)  # this checkout, installed in editable mode


def test_the_command_runs_from_another_folder(tmp_path):
    out = _outside(tmp_path, "-m", "search.run", "--help")
    assert out.returncode == 0 and "python -m search.run" in out.stdout, out.stderr
    scenario = tmp_path / "bad.yaml"
    scenario.write_text("n_chips: 0\n")
    out = _outside(tmp_path, "-m", "search.run", str(scenario))
    assert out.returncode == 2 and out.stderr.strip() == (
        f"error: {scenario}: n_chips: Input should be greater than or equal to 1 (got 0)")
    assert not (tmp_path / "runs").exists()
