"""The run folder: its files, the lock that keeps it to one writer, and the checks that
make ``--resume`` safe (the same scenario, a folder that holds a run and nothing else).

JSON lines are appended and flushed one record at a time, so an interruption loses at
most the record being written; a last line cut short is ignored (and removed on resume).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import subprocess
import sys
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Optional

import yaml
from pydantic import ValidationError

import crossbar
from crossbar.common import error_text

from .errors import ScenarioError
from .schema import Scenario

try:  # POSIX; elsewhere a folder is not locked
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

ROOT = Path(__file__).resolve().parents[1]
SCENARIO_FILES = ("scenario.yaml", "resolved.yaml", "environment.json")  # what a run writes first
RUN_FILES = (*SCENARIO_FILES, "trials.jsonl", "final.jsonl", "results.json",
             "trials.jsonl.damaged", "final.jsonl.damaged", "test.jsonl", "test.jsonl.damaged")
NETWORKS = "networks"  # a co-design run's trained networks, one file per training point
PLOT_FILES = ("accuracy_vs_time.png", "technologies.png", "convergence.png", "dropout_rates.png")  # search.plot's
CODESIGN_PLOTS = ("pareto_front.png",)  # search.plot's of a co-design run
SWEEP_PLOTS = "sweep_*.png"  # search.plot's too: one per swept parameter (report.sweep)


def scores_plot(metric: str) -> str:
    """The file of the test scores against time: ``accuracy_vs_time.png``, ``map50_vs_time.png``."""
    return f"{metric}_vs_time.png"
# resolved-scenario keys that may change between a run and its resume
VOLATILE = ("output", "device")


@dataclass(frozen=True)
class Damaged:
    """A line of a run file that is not a record the run can use."""

    line: int
    problem: str
    text: str


class RunFolder:
    """The files of one run; JSON lines are appended and flushed one record at a time."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock_fd: Optional[int] = None
        self._made_lock = False  # this process created the .lock file (removed if its start fails)

    def lock(self) -> None:
        """Hold the folder for this process (an exclusive lock on its hidden ``.lock``
        file, released by :meth:`unlock` or when the process ends, a kill included):
        a second ``search.run`` on the same folder, e.g. ``make run`` in two terminals,
        would append the same trials twice. The folder must exist."""
        if fcntl is None or self._lock_fd is not None:
            return
        path = self.path / ".lock"
        made = not path.exists()
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise ScenarioError(f"cannot write the output folder {self.path}: {e.strerror or e}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = path.read_text().strip() or "?"
            raise ScenarioError(
                f"{self.path} is being written by another search.run (process {holder}); "
                "wait for it to finish, or use another --out"
            ) from None
        try:
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
        except OSError:
            pass  # the holder's pid is only for the message a second run prints; the lock holds
        self._lock_fd, self._made_lock = fd, made

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def holds_run(self) -> bool:
        """It holds a run's records (its own, or a repeat's in a ``seed-<n>/`` sub-folder)."""
        marks = ("trials.jsonl", "final.jsonl", "results.json")
        return any((self.path / name).exists() for name in marks) or any(
            RunFolder(sub).holds_run() for sub in self.repeats())

    def repeats(self) -> list[Path]:
        """The ``seed-<n>/`` sub-folders of a run repeated over seeds."""
        return sorted(p for p in self.path.glob("seed-*") if p.is_dir()) if self.path.is_dir() else []

    def sweep_plots(self) -> list[Path]:
        return sorted(self.path.glob(SWEEP_PLOTS)) if self.path.is_dir() else []

    def plots(self) -> list[Path]:
        """The plots search.plot drew here: its named ones, the scores against time of any
        known metric (map50_vs_time.png), one per swept parameter."""
        if not self.path.is_dir():
            return []
        names = [*PLOT_FILES, *CODESIGN_PLOTS, *(scores_plot(metric) for metric in crossbar.METRICS)]
        return sorted({p for name in names if (p := self.path / name).exists()} | set(self.sweep_plots()))

    def clear(self) -> None:
        names = RUN_FILES + tuple(p.name for p in self.plots())
        for name in names:  # only what a run writes: other files are the user's
            try:
                (self.path / name).unlink(missing_ok=True)
            except OSError as e:
                raise ScenarioError(f"cannot start over in {self.path}: {name}: {e.strerror or e}") from None
        networks = self.path / NETWORKS
        if networks.is_dir():
            for path in [*networks.glob("*.pt"), *networks.glob("*.tmp")]:
                path.unlink(missing_ok=True)
            if not any(networks.iterdir()):
                networks.rmdir()
        for sub in self.repeats():
            RunFolder(sub).clear()
            if not any(sub.iterdir()):
                sub.rmdir()

    def foreign_files(self) -> list[str]:
        """Names in the folder that a run does not write (hidden files aside)."""
        if not self.path.is_dir():
            return []
        ours = set(RUN_FILES) | {p.name for p in self.plots()} | {NETWORKS}
        repeats = set(self.repeats())
        return sorted(p.name for p in self.path.iterdir()
                      if p.name not in ours and not p.name.startswith(".") and p not in repeats)

    def read_records(
        self, name: str, problem: Optional[Callable[[Any], Optional[str]]] = None, repair: bool = False,
        unique: bool = False,
    ) -> tuple[list[dict], list[Damaged]]:
        """The records of a JSON-lines file, and the lines that are not records it can use.

        A line is damaged when it is not JSON, when ``problem(record)`` says what is wrong
        with it, or (``unique``) when it repeats an earlier record's id. A last line cut
        short (the process was killed while writing it) is no record and no damage. With
        ``repair`` the file keeps only its good lines (rewritten whole, atomically) and the
        damaged ones are appended to ``<name>.damaged``, never simply dropped.
        """
        path = self.path / name
        if not path.exists():
            return [], []
        try:
            data = path.read_bytes()
        except IsADirectoryError:
            raise ScenarioError(f"{path} is a folder, not a file: the run folder is damaged; move it aside, "
                                "or start the run in another folder (--out)") from None
        except OSError as e:
            raise ScenarioError(f"{path}: cannot be read ({e.strerror or e})") from None
        records, damaged, kept, seen, end = [], [], [], set(), 0
        for number, line in enumerate(data.splitlines(keepends=True), 1):
            if not line.endswith(b"\n"):
                break
            end += len(line)
            text = line.strip()
            if not text:
                continue
            try:
                record = json.loads(text)
            except (json.JSONDecodeError, UnicodeDecodeError):
                why: Optional[str] = "not JSON"
            else:
                why = problem(record) if problem else None
                if why is None and unique:
                    why = f"a second record of {record['id']!r}" if record["id"] in seen else None
                    seen.add(record["id"])
            if why:
                damaged.append(Damaged(number, why, text.decode("utf-8", errors="replace")))
            else:
                records.append(record)
                kept.append(line)
        if repair and damaged:
            for entry in damaged:
                self.append(f"{name}.damaged", {"file": name, **asdict(entry)})
            self._replace(name, b"".join(kept))
        elif repair and end < len(data):
            try:
                with open(path, "r+b") as f:
                    f.truncate(end)
            except OSError as e:
                raise ScenarioError(f"cannot repair {path}: {e.strerror or e}") from None
        return records, damaged

    def append(self, name: str, record: dict) -> None:
        """Append one record and flush it to the disk (a cut line is repaired on resume)."""
        try:
            with open(self.path / name, "a") as f:
                f.write(json.dumps(record) + "\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise ScenarioError(f"cannot write {self.path / name}: {e.strerror or e}") from None

    def write_json(self, name: str, data: Any) -> None:
        """Write a JSON file whole: a temporary file renamed into place, removed on failure."""
        self._replace(name, (json.dumps(data, indent=2) + "\n").encode())

    def _replace(self, name: str, content: bytes) -> None:
        try:
            self.write_whole(name, content)
        except OSError as e:
            raise ScenarioError(f"cannot write {self.path / name}: {e.strerror or e}") from None

    def write_whole(self, name: str, content: bytes) -> None:
        """A temporary file renamed into place: the file is the old one or the new one,
        never cut short; an OSError leaves no temporary file."""
        tmp = self.path / f".{name}.tmp"
        try:
            with open(tmp, "wb") as f:
                f.write(content)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path / name)
        except BaseException:  # a full disk, Ctrl-C
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise


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
    environment.json, each written whole (:meth:`RunFolder.write_whole`; an OSError
    names the file). A resumed run keeps the first start's environment and adds its
    own under ``resumes``: where and how each part of the run was computed."""
    now = environment(scenario, device, argv)
    first = _first_environment(folder)
    if first is not None:
        first.setdefault("resumes", []).append(now)
        now = first
    for name, text in (("scenario.yaml", yaml.safe_dump(raw, sort_keys=False)),
                       ("resolved.yaml", yaml.safe_dump(scenario.plain(), sort_keys=False)),
                       ("environment.json", json.dumps(now, indent=2) + "\n")):
        try:
            folder.write_whole(name, text.encode())
        except OSError as e:
            raise OSError(e.errno, f"{name}: {e.strerror or e}") from None


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


def _stored(folder: RunFolder, name: str) -> tuple[Optional[dict], str]:
    """The scenario a run file records, as this version resolves it, or None and why not."""
    path = folder.path / name
    if not path.exists():
        return None, "is missing"
    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        return None, f"is damaged ({type(e).__name__})"
    if data is None:
        return None, "is empty (what a disk that filled up leaves)"
    if not isinstance(data, dict):
        return None, "is damaged (not a mapping)"
    try:
        return Scenario.model_validate(data).plain(), ""
    except ValidationError as e:
        return None, f"does not hold a valid scenario ({error_text(e.errors()[0])})"


def check_resumable(folder: RunFolder, scenario: Scenario, log: Callable[[str], None] = print) -> bool:
    """A resumed run must be the same experiment: compare with the scenario the run
    recorded, resolved.yaml, or where that is missing or damaged, scenario.yaml (the
    scenario as given, with its --set values). Only ``report`` may change (the trials do
    not depend on it): returns True when it did, and the final networks are then
    measured again. Without either record the trials cannot be trusted to fit: refused."""
    if not folder.holds_run():
        return False
    before, why = _stored(folder, "resolved.yaml")
    if before is None:
        before, why_given = _stored(folder, "scenario.yaml")
        if before is None:
            raise ScenarioError(
                f"{folder.path} holds trials, but its resolved.yaml {why} and its scenario.yaml {why_given}, so "
                "nothing tells which scenario they ran: put back either file, or leave this folder as it is and "
                "run in another one (--out)"
            )
        log(f"{folder.path / 'resolved.yaml'} {why}: the scenario is checked against scenario.yaml instead")
    now = scenario.plain()
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


def open_run_folder(path: Path, scenario: Scenario, resume: bool, force: bool,
                    log: Callable[[str], None] = print) -> tuple[RunFolder, bool]:
    """The run folder of a run or of one repeat, ready to run in: checked that it may be
    written (:func:`prepare_folder`, locked when it exists) and, with ``resume``, that it
    holds the same experiment (:func:`check_resumable`). Returns it and whether the
    report changed (the final networks are then tested again). Nothing is written yet:
    :func:`start_run_folder` does that once the run can start."""
    folder = RunFolder(path)
    try:
        prepare_folder(folder, resume, force)
        return folder, resume and check_resumable(folder, scenario, log)
    except BaseException:
        folder.unlock()  # refused: not held
        raise


def start_run_folder(folder: RunFolder, raw: dict, scenario: Scenario, device: str,
                     argv: Optional[list[str]] = None) -> None:
    """Make the folder, lock it for this process and write its scenario files, all or
    nothing: a folder that cannot be written (a full disk) is a :class:`ScenarioError`
    of one line, and what this start made (folders, files, the lock) is removed again;
    what was there before stays as it was."""
    made = [p for p in (folder.path, *folder.path.parents) if not p.exists()]  # the folders mkdir makes
    before = {name for name in SCENARIO_FILES if (folder.path / name).exists()}
    try:
        folder.path.mkdir(parents=True, exist_ok=True)
        folder.lock()
        write_scenario_files(folder, raw, scenario, device, argv)
    except BaseException as e:  # a full disk, a folder another process holds, Ctrl-C
        if folder._lock_fd is not None:  # what another process holds is its own
            for name in [*(n for n in SCENARIO_FILES if n not in before), *[".lock"] * folder._made_lock]:
                with contextlib.suppress(OSError):
                    (folder.path / name).unlink(missing_ok=True)
        folder.unlock()
        for path in made:  # innermost first; one that is not empty (another process's) stays
            with contextlib.suppress(OSError):
                path.rmdir()
        if not isinstance(e, OSError):
            raise
        raise ScenarioError(f"cannot write the output folder {folder.path}: {e.strerror or e}") from None


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
