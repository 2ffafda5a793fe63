"""What several test modules of search/ share (pytest puts this folder on sys.path)."""

import json
import shutil
import time
from pathlib import Path

#: Two search trials and no baseline but no dropout: a run of a few seconds.
SMALL = {"search": {"n_trials": 2, "n_initial": 1},
         "baselines": {"uniform": [], "random": False, "hardware_aware": False}}


def copy_run(done, tmp_path) -> Path:
    _, run = done
    shutil.copytree(run, tmp_path / "run")
    return tmp_path / "run"


def lines(folder: Path, name: str = "trials.jsonl") -> list[dict]:
    return [json.loads(line) for line in (folder / name).read_text().splitlines()]


def wait_for_trials(folder: Path, n: int, timeout: float = 120.0) -> None:
    """Wait (a running search.run's folder) until ``n`` trials are recorded, or ``timeout`` seconds."""
    log = folder / "trials.jsonl"
    deadline = time.time() + timeout
    while time.time() < deadline and (not log.exists() or len(log.read_text().splitlines()) < n):
        time.sleep(0.05)
