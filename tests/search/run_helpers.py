"""What several test modules of search/ share (pytest puts this folder on sys.path)."""

import json
import shutil
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
