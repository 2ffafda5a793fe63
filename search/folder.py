"""The run folder: its files, the lock that keeps it to one writer, and the checks that
make ``--resume`` safe (the same scenario, a folder that holds a run and nothing else).

JSON lines are appended and flushed one record at a time, so an interruption loses at
most the record being written; a last line cut short is ignored (and removed on resume).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Optional

import yaml
from pydantic import ValidationError

from .errors import ScenarioError
from .schema import Scenario

try:  # POSIX; elsewhere a folder is not locked
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

ROOT = Path(__file__).resolve().parents[1]
RUN_FILES = ("scenario.yaml", "resolved.yaml", "environment.json", "trials.jsonl", "final.jsonl", "results.json")
PLOT_FILES = ("accuracy_vs_time.png", "technologies.png", "convergence.png", "dropout_rates.png")  # search.plot's
# resolved-scenario keys that may change between a run and its resume
VOLATILE = ("output", "device")


class RunFolder:
    """The files of one run; JSON lines are appended and flushed one record at a time."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock_fd: Optional[int] = None

    def lock(self) -> None:
        """Hold the folder for this process (an exclusive lock on its hidden ``.lock``
        file, released by :meth:`unlock` or when the process ends, a kill included):
        a second ``search.run`` on the same folder, e.g. ``make run`` in two terminals,
        would append the same trials twice. The folder must exist."""
        if fcntl is None or self._lock_fd is not None:
            return
        path = self.path / ".lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = path.read_text().strip() or "?"
            raise ScenarioError(
                f"{self.path} is being written by another search.run (process {holder}); "
                "wait for it to finish, or use another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def holds_run(self) -> bool:
        return any((self.path / name).exists() for name in ("trials.jsonl", "final.jsonl", "results.json"))

    def clear(self) -> None:
        for name in RUN_FILES + PLOT_FILES:  # only what a run writes: other files are the user's
            (self.path / name).unlink(missing_ok=True)

    def foreign_files(self) -> list[str]:
        """Names in the folder that a run does not write (hidden files aside)."""
        if not self.path.is_dir():
            return []
        ours = set(RUN_FILES + PLOT_FILES)
        return sorted(p.name for p in self.path.iterdir() if p.name not in ours and not p.name.startswith("."))

    def read_jsonl(self, name: str, repair: bool = False) -> list[dict]:
        """Records of a JSON-lines file. A last line cut short (the process was killed
        while writing it) is ignored, and with ``repair`` removed from the file."""
        path = self.path / name
        if not path.exists():
            return []
        data = path.read_bytes()
        records, good_end = [], 0
        for line in data.splitlines(keepends=True):
            if not line.endswith(b"\n"):
                break
            text = line.strip()
            if text:
                try:
                    records.append(json.loads(text))
                except json.JSONDecodeError:
                    raise ScenarioError(
                        f"{path}: line {len(records) + 1} is not JSON; the run folder is damaged"
                    ) from None
            good_end += len(line)
        if repair and good_end < len(data):
            with open(path, "r+b") as f:
                f.truncate(good_end)
        return records

    def append(self, name: str, record: dict) -> None:
        with open(self.path / name, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def write_json(self, name: str, data: Any) -> None:
        tmp = self.path / f".{name}.tmp"
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, self.path / name)


def environment(scenario: Scenario, device: str, argv: Optional[list[str]] = None) -> dict:
    """Where and how a run was computed: versions, machine, device, seed, revision, command."""

    def version(pkg: str) -> Optional[str]:
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return None

    def git(*args: str) -> Optional[str]:
        try:
            out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
            return out.stdout.strip() if out.returncode == 0 else None
        except (OSError, subprocess.SubprocessError):
            return None

    return {
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "argv": list(argv) if argv is not None else sys.argv,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "device": device,
        "seed": scenario.seed,
        "git_revision": git("rev-parse", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "packages": {p: version(p) for p in ("torch", "torchvision", "aihwkit", "scikit-optimize", "scikit-learn",
                                              "numpy", "numba", "pydantic", "matplotlib")},
    }


def write_scenario_files(folder: RunFolder, raw: dict, scenario: Scenario, device: str,
                         argv: Optional[list[str]] = None) -> None:
    """scenario.yaml (as given), resolved.yaml (every default filled in) and
    environment.json. A resumed run keeps the first start's environment and adds its
    own under ``resumes``: where and how each part of the run was computed."""
    folder.path.mkdir(parents=True, exist_ok=True)
    (folder.path / "scenario.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    (folder.path / "resolved.yaml").write_text(yaml.safe_dump(scenario.plain(), sort_keys=False))
    now = environment(scenario, device, argv)
    first = _first_environment(folder)
    if first is not None:
        first.setdefault("resumes", []).append(now)
        now = first
    folder.write_json("environment.json", now)


def _first_environment(folder: RunFolder) -> Optional[dict]:
    """The environment.json of a run in this folder, if there is one and it is readable."""
    path = folder.path / "environment.json"
    if not folder.holds_run() or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def check_resumable(folder: RunFolder, scenario: Scenario) -> bool:
    """A resumed run must be the same experiment: compare with the stored resolved
    scenario. Only ``report`` may change (the trials do not depend on it): returns
    True when it did, and the final networks are then measured again."""
    path = folder.path / "resolved.yaml"
    if not path.exists():
        return False
    before, now = yaml.safe_load(path.read_text()) or {}, scenario.plain()
    try:  # as this version resolves it: a folder written before devices were recorded in full stays resumable
        before = Scenario.model_validate(before).plain()
    except ValidationError:
        pass  # not a scenario this version reads: compared as it is, and so refused
    for data in (before, now):  # where trials run may change; what they compute may not
        for key in VOLATILE:
            data.pop(key, None)
        for key in ("workers", "dask"):
            data.get("execution", {}).pop(key, None)
    changed = [k for k in sorted(set(before) | set(now)) if before.get(k) != now.get(k)]
    if set(changed) - {"report"}:
        raise ScenarioError(
            f"{folder.path} holds a run of a different scenario (changed: {', '.join(changed)}); "
            "resume it with the scenario it started with (only report may change), "
            "or use --force or another --out to start over"
        )
    return bool(changed)


def prepare_folder(folder: RunFolder, resume: bool, force: bool) -> None:
    """Refuse to overwrite a run unless told to, or to write among other files, or into a
    folder another search.run holds (the folder stays locked for this process); with
    --force, remove the run's files."""
    if folder.path.exists() and not folder.path.is_dir():
        raise ScenarioError(f"output {folder.path} exists and is not a folder")
    foreign = folder.foreign_files()
    if foreign and not folder.holds_run():
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise ScenarioError(
            f"output {folder.path} holds other files ({shown}) and no run; a run writes its files and plots "
            "there, so choose a new or empty folder with --out"
        )
    if folder.path.is_dir():
        folder.lock()  # before anything here is read or removed
    if folder.holds_run() and not (resume or force):
        raise ScenarioError(
            f"{folder.path} already holds a run; use --resume to continue it, --force to start over "
            "(its files are replaced), or --out for another folder"
        )
    if force and not resume and folder.path.is_dir():
        folder.clear()
