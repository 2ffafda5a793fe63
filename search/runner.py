"""The experiment loop: trials, the Bayesian optimiser, baselines, the final test numbers,
and the run folder that makes all of it resumable.

The optimiser only proposes (``Optimizer.ask``) and learns (``Optimizer.tell``); this
module owns the loop, and every finished trial is appended to ``trials.jsonl`` at once.
``--resume`` replays the recorded trials into a fresh optimiser (same proposals, the
recorded results) and runs only what is missing.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

import yaml
from skopt import Optimizer
from skopt.space import Real, Space
from tqdm.auto import tqdm

from .config import Scenario, ScenarioError, readable

try:  # POSIX; elsewhere a folder is not locked
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

ROOT = Path(__file__).resolve().parents[1]
RUN_FILES = ("scenario.yaml", "resolved.yaml", "environment.json", "trials.jsonl", "final.jsonl", "results.json")
PLOT_FILES = ("accuracy_vs_time.png", "technologies.png", "convergence.png", "dropout_rates.png")  # search.plot's
METHODS = ("bayesft", "erm", "uniform", "random", "hardware_aware")
METHOD_LABELS = {
    "bayesft": "BayesFT (dropout search)",
    "erm": "no dropout (ERM)",
    "uniform": "best uniform dropout",
    "random": "random search",
    "hardware_aware": "hardware-aware training",
}
# resolved-scenario keys that may change between a run and its resume
VOLATILE = ("output", "device")


# ------------------------------------------------------------------------- run folder


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
                    raise ScenarioError(f"{path}: line {len(records) + 1} is not JSON; the run folder is damaged") from None
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


def environment(scenario: Scenario, device: str) -> dict:
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
        "argv": sys.argv,
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


def best_of_each_method(records: Iterable[dict]) -> dict[str, dict]:
    """The best finished trial of each method by its validation objective (the first, on a tie)."""
    best: dict[str, dict] = {}
    for record in records:
        if record.get("status") != "ok":
            continue
        method = record["method"]
        if method not in best or record["objective"] > best[method]["objective"]:
            best[method] = record
    return best


# ------------------------------------------------------------------------- the plan


@dataclass
class Plan:
    """What a run does, in order; each item is a trial spec (plain data)."""

    scenario: Scenario
    slots: list[str]
    fixed: list[dict] = field(default_factory=list)  # erm, uniform grid, hardware-aware
    random: list[dict] = field(default_factory=list)

    @property
    def n_search(self) -> int:
        """Trials of the Bayesian search (none in study mode)."""
        return self.scenario.search.n_trials if self.scenario.mode == "search" else 0

    @property
    def n_trials(self) -> int:
        return len(self.fixed) + self.n_search + len(self.random)


def bayesft_id(index: int) -> str:
    """The id of the search's ``index``-th trial (from 1), in the order it was proposed."""
    return f"bayesft-{index:03d}"


def make_plan(scenario: Scenario) -> Plan:
    slots = scenario.slots()
    plan = Plan(scenario, slots)
    if scenario.mode == "study":
        return plan
    zero = [0.0] * len(slots)
    if scenario.baselines.erm:
        plan.fixed.append({"id": "erm", "method": "erm", "rates": zero})
    for rate in scenario.baselines.uniform:
        plan.fixed.append({"id": f"uniform-{rate:g}", "method": "uniform", "rates": [float(rate)] * len(slots)})
    if scenario.hardware_aware_config() is not None:
        plan.fixed.append({"id": "hardware_aware", "method": "hardware_aware", "rates": zero, "hardware_aware": True})
    if scenario.baselines.random:
        lo, hi = scenario.search.bounds
        points = Space([Real(lo, hi) for _ in slots]).rvs(scenario.search.n_trials, random_state=scenario.seed + 1)
        plan.random = [
            {"id": f"random-{i + 1:03d}", "method": "random", "rates": [float(v) for v in x]} for i, x in enumerate(points)
        ]
    return plan


def make_optimizer(scenario: Scenario, n_slots: int) -> Optimizer:
    lo, hi = scenario.search.bounds
    return Optimizer(
        [Real(lo, hi) for _ in range(n_slots)],
        base_estimator="GP",
        acq_func=scenario.search.acq_func,
        n_initial_points=scenario.search.n_initial,
        initial_point_generator="random",
        random_state=scenario.seed,
    )


def loss_of(record: dict) -> float:
    """skopt minimises: the negated objective; a failed trial counts as the worst (0)."""
    return -(record["objective"] if record.get("status") == "ok" and record.get("objective") is not None else 0.0)


# ------------------------------------------------------------------------- running


@dataclass
class Runner:
    scenario: Scenario
    folder: RunFolder
    device: Optional[str] = None
    quiet: bool = False
    log: Callable[[str], None] = print

    def __post_init__(self) -> None:
        self.plain = self.scenario.plain()
        self.plan = make_plan(self.scenario)
        self.done: dict[str, dict] = {}
        self.finals: dict[str, dict] = {}

    # -- bookkeeping

    def forget_finals(self) -> None:
        """The report changed: the final networks' test numbers (and the results made of
        them) are measured again; the search trials stay."""
        self.finals.clear()
        for name in ("final.jsonl", "results.json"):
            (self.folder.path / name).unlink(missing_ok=True)

    def load_previous(self) -> None:
        for record in self.folder.read_jsonl("trials.jsonl", repair=True):
            self.done[record["id"]] = record
        for record in self.folder.read_jsonl("final.jsonl", repair=True):
            self.finals[record["id"]] = record

    def _record(self, record: dict, bar) -> None:
        self.folder.append("trials.jsonl", record)
        self.done[record["id"]] = record
        bar.update(1)
        best = self.best_trials()
        if best:  # each method's best validation objective so far
            bar.set_postfix({m[:8]: f"{r['objective']:.3f}" for m, r in best.items()})
        if record["status"] != "ok":
            tqdm.write(f"trial {record['id']} failed: {record['reason']}")

    # -- the search

    def run(self, executor=None) -> dict:
        """Run every trial not yet done, then the test measurements; write results.json.

        With an executor of capacity > 1, trials run in parallel: the optimiser proposes
        a point whenever a worker is free, treating the trials still running as if they
        had scored the best value seen so far (skopt's constant liar, ``cl_min``), and
        learns each result as soon as it arrives. One at a time, the proposals are exactly
        those of the plain ask/tell loop, and a resumed run repeats them.
        """
        from .executors import Sequential

        executor = executor or Sequential(self.plain, device=self.device, progress=not self.quiet)
        start = time.perf_counter()
        resumed = sum(1 for s in self._all_ids() if s in self.done)
        bar = tqdm(total=self.plan.n_trials, initial=resumed, desc="trials", unit="trial", disable=self.quiet)
        optimizer = make_optimizer(self.scenario, len(self.plan.slots))
        in_flight: dict[str, list[float]] = {}  # bayesft trials running: id -> rates
        queue = list(self.plan.fixed) + [None] * self.plan.n_search + list(self.plan.random)
        bo_index = 0
        try:
            while queue or executor.pending():
                while queue and executor.pending() < executor.capacity:
                    spec = queue.pop(0)
                    if spec is None:  # the optimiser's next proposal
                        bo_index += 1
                        spec = self._propose(optimizer, bayesft_id(bo_index), in_flight)
                        if spec is None:
                            continue  # already done; learnt from its record
                    elif spec["id"] in self.done:
                        continue
                    executor.submit(spec)
                if not executor.pending():
                    continue
                record = executor.next_finished()
                self._record(record, bar)
                if record["method"] == "bayesft":
                    in_flight.pop(record["id"], None)
                    optimizer.tell(record["rates"], loss_of(record))
            bar.close()
            self._finals(executor)
        finally:
            executor.close()
            bar.close()
        results = self.results(time.perf_counter() - start)
        self.folder.write_json("results.json", results)
        return results

    def _propose(self, optimizer: Optimizer, trial_id: str, in_flight: dict[str, list[float]]) -> Optional[dict]:
        if in_flight:
            lie = min(optimizer.yi) if optimizer.yi else 0.0
            liar = optimizer.copy(random_state=optimizer.rng.randint(0, 2**31 - 1))
            liar.tell(list(in_flight.values()), [lie] * len(in_flight))
            x = [float(v) for v in liar.ask()]
        else:
            x = [float(v) for v in optimizer.ask()]
        previous = self.done.get(trial_id)
        if previous is not None:  # resumed: what was run is what the optimiser learns from
            optimizer.tell(previous["rates"], loss_of(previous))
            return None
        in_flight[trial_id] = x
        return {"id": trial_id, "method": "bayesft", "rates": x}

    def _all_ids(self) -> Iterator[str]:
        yield from (s["id"] for s in self.plan.fixed)
        yield from (bayesft_id(i + 1) for i in range(self.plan.n_search))
        yield from (s["id"] for s in self.plan.random)

    def best_trials(self) -> dict[str, dict]:
        """The best trial of each method by its validation objective."""
        return best_of_each_method(self.done.values())

    def final_specs(self) -> list[dict]:
        if self.scenario.mode == "study":
            return [
                {"id": f"final-{v.label}", "method": v.label,
                 "rates": v.dropout, "model": v.model, "hardware_aware": v.hardware_aware}
                for v in self.scenario.variants
            ]
        specs = []
        best = self.best_trials()
        for method in METHODS:
            if method in best:
                trial = best[method]
                spec = {"id": f"final-{method}", "method": method, "rates": trial["rates"], "trial": trial["id"]}
                if trial.get("hardware_aware"):
                    spec["hardware_aware"] = True
                specs.append(spec)
            elif any(r["method"] == method for r in self.done.values()):
                self.log(f"every {method} trial failed; it has no test numbers")
        return specs

    def _finals(self, executor) -> None:
        """Train and test the final networks (each method's best, or study mode's
        variants) on the executor, in parallel where it has room."""
        specs = self.final_specs()
        todo = [s for s in specs if s["id"] not in self.finals or self.finals[s["id"]].get("rates") != s["rates"]]
        bar = tqdm(total=len(specs), initial=len(specs) - len(todo), desc="test", unit="network", disable=self.quiet)
        queue = [{**spec, "stage": "final"} for spec in todo]
        while queue or executor.pending():
            while queue and executor.pending() < executor.capacity:
                executor.submit(queue.pop(0))
            record = executor.next_finished()
            self.folder.append("final.jsonl", record)
            self.finals[record["id"]] = record
            bar.update(1)
            if record["status"] != "ok":
                tqdm.write(f"{record['id']} failed: {record['reason']}")
        bar.close()
        self.final_order = [s["id"] for s in specs]

    # -- results

    def results(self, seconds: float) -> dict:
        slots = self.plan.slots
        methods: dict[str, dict] = {}
        rows = []
        for final_id in self.final_order:
            record = self.finals[final_id]
            method = record["method"]
            rates = record["rates"]
            rate_map = dict(zip(slots, rates)) if isinstance(rates, list) else rates
            val = self.done.get(record.get("trial", ""), {})
            methods[method] = {
                "label": METHOD_LABELS.get(method, method),
                "status": record["status"],
                "reason": record.get("reason"),
                "rates": rate_map,
                "hardware_aware": bool(record.get("hardware_aware")),
                "trial": record.get("trial"),
                "val_objective": val.get("objective"),
                "test_clean": record.get("test_clean"),
            }
            for row in record.get("rows", []):
                rows.append({"method": method, **row})
        trials = list(self.done.values())
        best = self.best_trials().get("bayesft")
        return {
            "scenario": self.scenario.name,
            "mode": self.scenario.mode,
            "slots": slots,
            "best_dropout": dict(zip(slots, best["rates"])) if best else None,
            "best_objective": best["objective"] if best else None,
            "objective": self.scenario.objective.model_dump(),
            "objective_times": self.scenario.t_inference,
            "presets": [p.name for p in self.scenario.presets()],
            "methods": methods,
            "results": rows,
            "n_trials": len(trials),
            "failed_trials": sum(1 for t in trials if t.get("status") != "ok"),
            "infeasible_trials": len(_below_floor(trials)),
            "seconds": seconds,
        }

    def feasibility_note(self) -> Optional[str]:
        """A line when trials fell below ``objective.min_clean_accuracy`` (they score 0),
        above all when every one did: the "best" rates are then an arbitrary pick."""
        floor = self.scenario.objective.min_clean_accuracy
        ok = [t for t in self.done.values() if t.get("status") == "ok"]
        low = _below_floor(ok)
        if floor is None or not low:
            return None
        if len(low) < len(ok):
            return f"{len(low)} of {len(ok)} trials had a clean validation accuracy below objective.min_clean_accuracy = {floor:g} and scored 0"
        best = max(t["val_clean"] for t in ok)
        return (f"no trial reached objective.min_clean_accuracy = {floor:g} (the best clean validation accuracy was "
                f"{best:.3f}): every objective is 0 and the rates above are an arbitrary pick; lower it, or train longer")


def _below_floor(trials: Iterable[dict]) -> list[dict]:
    """Finished trials whose clean validation accuracy fell below ``objective.min_clean_accuracy`` (scored 0)."""
    return [t for t in trials if t.get("status") == "ok" and t.get("feasible") is False]


def summary_table(results: dict) -> str:
    """Test accuracy (mean +- std over chips) per preset, method and time, as text."""
    times = sorted({r["t_inference"] for r in results["results"]})
    width = max([16, *(len(p) for p in results["presets"])])
    lines = [f"{'preset':{width}s} {'method':28s} {'clean':>6s}" + "".join(f"{readable(t):>14s}" for t in times)]
    for preset in results["presets"]:
        for method, info in results["methods"].items():
            cells = {r["t_inference"]: f"{r['mean']:.3f}+-{r['std']:.3f}" for r in results["results"]
                     if r["method"] == method and r["preset"] == preset}
            clean = f"{info['test_clean']:.3f}" if info.get("test_clean") is not None else "-"
            if info["status"] != "ok":
                clean, cells = "failed", {}
            lines.append(f"{preset:{width}s} {info['label'][:28]:28s} {clean:>6s}"
                         + "".join(f"{cells.get(t, '-'):>14s}" for t in times))
    return "\n".join(lines)


def write_scenario_files(folder: RunFolder, raw: dict, scenario: Scenario, device: str) -> None:
    folder.path.mkdir(parents=True, exist_ok=True)
    (folder.path / "scenario.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    (folder.path / "resolved.yaml").write_text(yaml.safe_dump(scenario.plain(), sort_keys=False))
    folder.write_json("environment.json", environment(scenario, device))


def check_resumable(folder: RunFolder, scenario: Scenario) -> bool:
    """A resumed run must be the same experiment: compare with the stored resolved
    scenario. Only ``report`` may change (the trials do not depend on it): returns
    True when it did, and the final networks are then measured again."""
    path = folder.path / "resolved.yaml"
    if not path.exists():
        return False
    before, now = yaml.safe_load(path.read_text()) or {}, scenario.plain()
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
