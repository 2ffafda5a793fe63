"""The co-design search (``mode: codesign``) in one run folder: optuna proposes points of
the training and hardware space for several objectives, random search and the hand grid
are its baselines, and each method's Pareto front is measured again on test.

Trials come in groups of ``codesign.hardware_per_training``: the first of a group is
proposed in every dimension, the rest in the hardware ones only (optuna's
``PartialFixedSampler`` holds the group's training point), and they wait for the first
to finish, so that they load its network instead of training one. Each proposal comes
from a sampler made for it, seeded by the run's seed and the trial's number, over the
trials finished before it: a resumed run, which adds its recorded trials back to the
study in order, proposes what the interrupted one would have. Records go to
``trials.jsonl`` as they finish; the fronts' test measurements to ``test.jsonl``.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from tqdm.auto import tqdm

from crossbar.common import Stream, derive_seed

from .codesign import Choices
from .codesign_trial import TRAINING_POINT
from .executors import Executor, Sequential
from .experiment import schedule
from .folder import RunFolder
from .pareto import non_dominated
from .records import TrialRecord, TrialSpec
from .schema import Scenario
from .trial import failed_record

HW = "hw."  # the prefix of a hardware dimension's parameter name in the study
DIGITAL = "hw.digital:"  # ... and of a layer's placement (True: digital)
METHODS = ("codesign", "random", "grid")
LABELS = {"codesign": "co-design search", "random": "random search", "grid": "hand grid"}


def distributions(scenario: Scenario) -> dict[str, Any]:
    """The study's space: the training dimensions, then the hardware ones (``hw.<name>``)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    space: dict[str, Any] = {d.name: FloatDistribution(d.low, d.high) for d in scenario.dimensions()}
    for name, value in scenario.codesign.space.items():
        if isinstance(value, Choices):
            space[HW + name] = CategoricalDistribution(value.choices)
        elif name == "device":
            space[HW + name] = CategoricalDistribution(value)
        elif all(isinstance(v, int) for v in value):
            space[HW + name] = IntDistribution(int(value[0]), int(value[1]))
        else:
            space[HW + name] = FloatDistribution(float(value[0]), float(value[1]))
    for layer in scenario.codesign.digital:
        space[DIGITAL + layer] = CategoricalDistribution([False, True])
    return space


def spec_of(scenario: Scenario, trial_id: str, method: str, params: dict[str, Any]) -> TrialSpec:
    """A trial spec of the study's parameters (as a search trial's, plus ``hardware``)."""
    spec: TrialSpec = {"id": trial_id, "method": method, "rates": []}
    for d in scenario.dimensions():
        if d.dropout:
            spec["rates"].append(float(params[d.name]))
        else:
            spec[d.name] = float(params[d.name])
    spec["hardware"] = {k[len(HW):]: _plain(v) for k, v in params.items()
                        if k.startswith(HW) and not k.startswith(DIGITAL)}
    if scenario.codesign.digital:
        spec["hardware"]["digital"] = [n for n in scenario.codesign.digital if params[DIGITAL + n]]
    return spec


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def params_of(scenario: Scenario, record: dict) -> dict[str, Any]:
    """The study's parameters of a trial spec or record."""
    rates = iter(record["rates"])
    params = {d.name: (next(rates) if d.dropout else record[d.name]) for d in scenario.dimensions()}
    hardware = dict(record.get("hardware", {}))
    placed = hardware.pop("digital", [])
    params.update({HW + k: v for k, v in hardware.items()})
    params.update({DIGITAL + n: n in placed for n in scenario.codesign.digital})
    return params


def number(trial_id: str) -> int:
    return int(trial_id.rsplit("-", 1)[1])


@dataclass
class Plan:
    """The trials of a co-design run, in the order they are proposed."""

    ids: list[str]
    slots: list[str]
    grid: list[str] = field(default_factory=list)

    @property
    def n_trials(self) -> int:
        return len(self.ids) + len(self.grid)


def make_plan(scenario: Scenario) -> Plan:
    n = scenario.search.n_trials
    ids = [f"codesign-{i:03d}" for i in range(1, n + 1)]
    if scenario.baselines.random:
        ids += [f"random-{i:03d}" for i in range(1, n + 1)]
    grid = []
    if scenario.codesign.grid:
        grid = [f"grid-{name}" for name in scenario.codesign.devices() or [scenario.presets[0]["name"]]]
    return Plan(ids, scenario.slots(), grid)


@dataclass
class CodesignRun:
    """The trials and test measurements of a co-design scenario in one run folder (the
    interface of :class:`search.experiment.Experiment`)."""

    scenario: Scenario
    folder: RunFolder
    device: Optional[str] = None
    quiet: bool = False
    log: Callable[[str], None] = print

    def __post_init__(self) -> None:
        self.plain = self.scenario.plain()
        self.plan = make_plan(self.scenario)
        self.done: dict[str, TrialRecord] = {}
        self.finals: dict[str, TrialRecord] = {}  # test measurements of the fronts, by trial id
        self.space = distributions(self.scenario)

    # -- bookkeeping

    def forget_finals(self) -> None:
        self.finals.clear()
        for name in ("test.jsonl", "results.json"):
            (self.folder.path / name).unlink(missing_ok=True)

    def _problem(self, record: Any) -> Optional[str]:
        if not isinstance(record, dict) or not isinstance(record.get("id"), str):
            return "not a trial record"
        if record["id"] not in self.plan.ids and record["id"] not in self.plan.grid:
            return f"trial {record['id']!r} is not one of this scenario's"
        if record.get("status") == "ok" and set(record.get("values", {})) != set(self.scenario.codesign.names()):
            return "its objectives are not this scenario's"
        if record["id"] in self.plan.ids:
            try:
                params = params_of(self.scenario, record)
            except (KeyError, TypeError, AttributeError, StopIteration):
                params = {}  # no rates, too few, or a training dimension missing
            for name, dist in self.space.items():
                if name not in params or not _inside(dist, params[name]):
                    return f"{name} {params.get(name)!r} outside the search space"
        return None

    def load_previous(self) -> None:
        """The records of an earlier start; a line that is not one of this run's is moved
        aside (``<file>.damaged``) and its trial runs again."""
        for name, into in (("trials.jsonl", self.done), ("test.jsonl", self.finals)):
            records, damaged = self.folder.read_records(name, self._problem, repair=True, unique=True)
            for entry in damaged:
                self.log(f"{self.folder.path / name}: line {entry.line}: {entry.problem}; moved to "
                         f"{name}.damaged, it runs again")
            into.update({r["id"]: r for r in records})

    def final_order(self) -> list[str]:
        return list(self.finals)

    def trainings(self) -> dict[str, int]:
        """How many trials trained a network and how many loaded one."""
        ok = [r for r in self.done.values() if r.get("status") == "ok"]
        trained = sum(1 for r in ok if r.get("trained"))
        return {"trials": len(ok), "trained": trained, "saved": len(ok) - trained}

    # -- the search

    def execute(self, executor: Optional[Executor] = None) -> float:
        executor = executor or Sequential(self.plain, device=self.device, progress=not self.quiet)
        start = time.perf_counter()
        try:
            self._trials(executor)
            self._tests(executor)
        finally:
            executor.close()
        return time.perf_counter() - start

    def _study(self):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.ERROR)  # its fallbacks (a failed kernel fit) are its own
        names = self.scenario.codesign.names()
        maximise = self.scenario.codesign.maximise()
        return optuna.create_study(directions=["maximize" if m else "minimize" for m in maximise],
                                   study_name="-".join(names))

    def _sampler(self, method: str, index: int, fixed: Optional[dict]):
        import optuna

        seed = derive_seed(self.scenario.seed, Stream.CODESIGN, METHODS.index(method), index) % (2**31)
        search = self.scenario.search
        if method == "random":
            base = optuna.samplers.RandomSampler(seed=seed)
        elif self.scenario.codesign.sampler == "gp":
            base = optuna.samplers.GPSampler(seed=seed, n_startup_trials=search.n_initial,
                                             constraints_func=_constraints, deterministic_objective=False)
        else:
            base = optuna.samplers.TPESampler(seed=seed, n_startup_trials=search.n_initial, multivariate=True,
                                              constraints_func=_constraints)
        return optuna.samplers.PartialFixedSampler(fixed, base) if fixed else base

    def _add(self, study, record: TrialRecord) -> None:
        """A finished trial into its method's study (failed ones as failed)."""
        import optuna

        params = params_of(self.scenario, record)
        if record.get("status") == "ok":
            goals = self.scenario.codesign.objectives
            study.add_trial(optuna.trial.create_trial(
                params=params, distributions=self.space, values=[record["values"][g.name] for g in goals],
                system_attrs={"constraints": [record.get("violation", 0.0)]}))
        else:
            study.add_trial(optuna.trial.create_trial(params=params, distributions=self.space,
                                                      state=optuna.trial.TrialState.FAIL))

    def _propose(self, study, method: str, trial_id: str) -> TrialSpec:
        import optuna

        leader = self._leader(trial_id)
        fixed = None
        if leader is not None:  # the group's training point
            fixed = {n: v for n, v in params_of(self.scenario, self._specs[leader]).items() if not n.startswith(HW)}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # optuna's experimental and deprecation notes
            study.sampler = self._sampler(method, number(trial_id), fixed)
            asked = study.ask(self.space)
        # samplers learn from finished trials only: the asked one is closed, and its record
        # added when it finishes (as a resumed run adds it)
        study.tell(asked, state=optuna.trial.TrialState.FAIL)
        return spec_of(self.scenario, trial_id, method, asked.params)

    def _leader(self, trial_id: str) -> Optional[str]:
        """The first trial of a later trial's group (None for a group's first and the grid)."""
        if trial_id.startswith("grid-"):
            return None
        index, k = number(trial_id), self.scenario.codesign.hardware_per_training
        first = index - (index - 1) % k
        return None if first == index else f"{trial_id.rsplit('-', 1)[0]}-{first:03d}"

    def _ready(self, trial_id: str) -> bool:
        """A trial may start: it leads its group, or its group's leader has finished;
        the grid once every co-design trial has."""
        if trial_id.startswith("grid-"):
            return all(i in self.done for i in self.plan.ids if i.startswith("codesign-"))
        leader = self._leader(trial_id)
        return leader is None or leader in self.done

    def _trials(self, executor: Executor) -> None:
        studies = {m: self._study() for m in ("codesign", "random")}
        self._specs: dict[str, TrialSpec] = {}
        queue = [i for i in self.plan.ids + self.plan.grid]
        resumed = sum(1 for i in queue if i in self.done)
        bar = tqdm(total=len(queue), initial=resumed, desc="trials", unit="trial", disable=self.quiet)
        networks = str(self.folder.path / "networks")

        def take(trial_id: str) -> Optional[TrialSpec]:
            method = trial_id.split("-", 1)[0]
            if trial_id in self.done:
                if method in studies:
                    self._specs[trial_id] = self.done[trial_id]
                    self._add(studies[method], self.done[trial_id])
                return None
            if method == "grid":
                spec = self._grid_spec(trial_id)
            else:
                spec = self._propose(studies[method], method, trial_id)
            self._specs[trial_id] = spec
            leader = self._leader(trial_id)
            if leader is not None and self.done[leader]["status"] != "ok":  # its network never came to be
                finished(failed_record(spec, f"the network of its training point ({leader}) failed: "
                                             f"{self.done[leader]['reason']}"))
                return None
            return {**spec, "stage": "codesign", "networks": networks}

        def finished(record: TrialRecord) -> None:
            record = {k: v for k, v in record.items() if k != "stage"}
            self.folder.append("trials.jsonl", record)
            self.done[record["id"]] = record
            method = record["method"]
            if method in studies:
                self._add(studies[method], record)
            bar.update(1)
            if record["status"] != "ok":
                tqdm.write(f"trial {record['id']} failed: {record['reason']}")

        try:
            while queue or executor.pending():
                while executor.pending() < executor.capacity:
                    ready = next((i for i in queue if i in self.done or self._ready(i)), None)
                    if ready is None:
                        break
                    queue.remove(ready)
                    spec = take(ready)
                    if spec is not None:
                        executor.submit(spec)
                if executor.pending():
                    finished(executor.next_finished())
                elif queue:
                    raise RuntimeError(f"trials {queue[:3]} wait for trials that never ran")
        finally:
            bar.close()

    def best_training_point(self) -> Optional[TrialRecord]:
        """The co-design trial of the best validation score among the feasible (the hand
        grid's training point)."""
        ok = [r for r in self.done.values() if r["method"] == "codesign" and r["status"] == "ok"]
        feasible = [r for r in ok if r.get("feasible")] or ok
        higher = self.scenario.score.higher_is_better
        return max(feasible, key=lambda r: r["values"]["score"] if higher else -r["values"]["score"], default=None)

    def _grid_spec(self, trial_id: str) -> TrialSpec:
        best = self.best_training_point()
        point = {"rates": [0.0] * len(self.plan.slots)} if best is None else {
            k: best[k] for k in TRAINING_POINT if k in best}
        hardware = {"device": trial_id[len("grid-"):]} if "device" in self.scenario.codesign.space else {}
        return {"id": trial_id, "method": "grid", **point, "hardware": hardware}

    # -- the fronts on test

    def fronts(self) -> dict[str, list[str]]:
        """Each method's Pareto front on validation: the ids of its feasible trials no
        other feasible trial of it dominates."""
        names, maximise = self.scenario.codesign.names(), self.scenario.codesign.maximise()
        out = {}
        for method in METHODS:
            ok = [r for r in self.done.values() if r["method"] == method and r["status"] == "ok" and r["feasible"]]
            points = [[r["values"][n] for n in names] for r in ok]
            out[method] = [ok[i]["id"] for i in non_dominated(points, maximise)]
        return out

    def _tests(self, executor: Executor) -> None:
        ids = list(dict.fromkeys(i for front in self.fronts().values() for i in front))
        todo = [i for i in ids if i not in self.finals]
        bar = tqdm(total=len(ids), initial=len(ids) - len(todo), desc="test", unit="design", disable=self.quiet)
        networks = str(self.folder.path / "networks")
        specs = [{**{k: v for k, v in self.done[i].items() if k in ("id", "method", "hardware", *TRAINING_POINT)},
                  "stage": "codesign-test", "networks": networks} for i in todo]
        try:
            schedule(executor, specs, lambda spec: spec, lambda record: self._tested(record, bar))
        finally:
            bar.close()

    def _tested(self, record: TrialRecord, bar) -> None:
        record = {k: v for k, v in record.items() if k != "stage"}
        self.folder.append("test.jsonl", record)
        self.finals[record["id"]] = record
        bar.update(1)
        if record["status"] != "ok":
            tqdm.write(f"test of {record['id']} failed: {record['reason']}")


def _inside(dist, value: Any) -> bool:
    if hasattr(dist, "choices"):
        return value in dist.choices
    return isinstance(value, (int, float)) and not isinstance(value, bool) and dist.low <= value <= dist.high


def _constraints(trial) -> list[float]:
    return list(trial.system_attrs.get("constraints", [0.0]))
