"""One experiment in one run folder: its trials, the Bayesian optimiser, the final
test measurements.

The optimiser only proposes (``Optimizer.ask``) and learns (``Optimizer.tell``); the
:class:`Experiment` owns the loop, and every finished trial is appended to
``trials.jsonl`` at once. ``--resume`` replays the recorded trials into a fresh
optimiser (same proposals, the recorded results) and runs only what is missing. What
the records add up to (``results.json``, tables, plots) is the presentation's
(:mod:`search.report`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Optional

from skopt import Optimizer
from tqdm.auto import tqdm

from .executors import Executor, Sequential
from .folder import RunFolder
from .methods import optimiser_method, search_methods
from .plan import final_specs, loss_of, make_optimizer, make_plan, warm_points
from .records import FinalRecord, TrialRecord, TrialSpec, best_of_each_method, final_problem, trial_problem
from .schema import Scenario
from .space import Dimension, point_of, spec_of


def schedule(executor: Executor, queue: list, take: Callable[[object], Optional[TrialSpec]],
             finished: Callable[[dict], None]) -> None:
    """The one scheduling loop, for trials and final networks alike: while work is left,
    fill the executor's free places with ``take(item)`` of the next queued items (None:
    nothing to run for it) and hand each finished record to ``finished``."""
    while queue or executor.pending():
        while queue and executor.pending() < executor.capacity:
            spec = take(queue.pop(0))
            if spec is not None:
                executor.submit(spec)
        if executor.pending():
            finished(executor.next_finished())


@dataclass
class Experiment:
    """The trials and final networks of one scenario in one run folder.

    :meth:`load_previous` takes what an earlier start finished; :meth:`execute` runs
    the rest on an executor and leaves every record in :attr:`done` (trials, by id)
    and :attr:`finals` (final networks, by id), each appended to the folder's files as
    it finishes.
    """

    scenario: Scenario
    folder: RunFolder
    device: Optional[str] = None
    quiet: bool = False
    log: Callable[[str], None] = print

    def __post_init__(self) -> None:
        self.plain = self.scenario.plain()
        self.plan = make_plan(self.scenario)
        self.done: dict[str, TrialRecord] = {}
        self.finals: dict[str, FinalRecord] = {}

    # -- bookkeeping

    def forget_finals(self) -> None:
        """The report changed: the final networks' test numbers (and the results made of
        them) are measured again; the search trials stay."""
        self.finals.clear()
        for name in ("final.jsonl", "results.json"):
            (self.folder.path / name).unlink(missing_ok=True)

    def load_previous(self) -> None:
        """The records of an earlier start. Each is checked: a line that is not a record of
        this scenario (damaged, edited, repeated) is moved to ``<file>.damaged`` and said,
        and its trial or final network runs again."""
        ids, slots, dims = set(self.plan.ids), len(self.plan.slots), self.scenario.dimensions()
        searched = search_methods()
        trials, damaged = self.folder.read_records(
            "trials.jsonl", lambda r: trial_problem(r, slots, ids, dims, searched), repair=True, unique=True,
        )
        for entry in damaged:
            self.log(f"{self.folder.path / 'trials.jsonl'}: line {entry.line}: {entry.problem}; "
                     "moved to trials.jsonl.damaged, the trial runs again")
        self.done = {record["id"]: record for record in trials}
        finals, damaged = self.folder.read_records("final.jsonl", final_problem, repair=True)
        for entry in damaged:
            self.log(f"{self.folder.path / 'final.jsonl'}: line {entry.line}: {entry.problem}; "
                     "moved to final.jsonl.damaged, the final network is tested again")
        self.finals = {record["id"]: record for record in finals}

    def best_trials(self) -> dict[str, TrialRecord]:
        """The best trial of each method by its validation objective."""
        return best_of_each_method(self.done.values(), self.scenario.score.higher_is_better)

    # -- the search

    def execute(self, executor: Optional[Executor] = None) -> float:
        """Run every trial not yet done, then the test measurements; returns the seconds
        it took.

        With an executor of capacity > 1, trials run in parallel: the optimiser proposes
        a point whenever a worker is free, treating the trials still running as if they
        had scored the best value seen so far (skopt's constant liar, ``cl_min``), and
        learns each result as soon as it arrives. One at a time, the proposals are exactly
        those of the plain ask/tell loop, and a resumed run repeats them.
        """
        executor = executor or Sequential(self.plain, device=self.device, progress=not self.quiet)
        start = time.perf_counter()
        try:
            self._trials(executor)
            self._finals(executor)
        finally:
            executor.close()
        return time.perf_counter() - start

    def _trials(self, executor: Executor) -> None:
        resumed = sum(1 for trial_id in self.plan.ids if trial_id in self.done)
        bar = tqdm(total=self.plan.n_trials, initial=resumed, desc="trials", unit="trial",
                   disable=self.quiet or not self.plan.trials)  # study and evaluate: no search
        warm = warm_points(self.scenario, self.plan)  # baselines the optimiser learns from, as they finish
        optimizer = make_optimizer(self.scenario, len(warm))
        dims = self.scenario.dimensions()
        higher = self.scenario.score.higher_is_better
        proposed = optimiser_method()
        in_flight: dict[str, list[float]] = {}  # the optimiser's trials running: id -> point

        def take(item) -> Optional[TrialSpec]:
            trial_id, spec = item
            if spec is None:  # the optimiser's next proposal
                return self._propose(optimizer, dims, trial_id, in_flight)
            if trial_id in self.done:  # resumed: learnt where a fresh run learnt it
                if trial_id in warm:
                    optimizer.tell(warm[trial_id], loss_of(self.done[trial_id], higher))
                return None
            return spec

        def finished(record: TrialRecord) -> None:
            self._record(record, bar)
            if proposed is not None and record["method"] == proposed.id:
                in_flight.pop(record["id"], None)
                optimizer.tell(point_of(dims, record), loss_of(record, higher))
            elif record["id"] in warm:
                optimizer.tell(warm[record["id"]], loss_of(record, higher))

        try:
            schedule(executor, list(self.plan.trials), take, finished)
        finally:
            bar.close()

    def _record(self, record: TrialRecord, bar) -> None:
        self.folder.append("trials.jsonl", record)
        self.done[record["id"]] = record
        bar.update(1)
        best = self.best_trials()
        if best:  # each method's best validation objective so far
            bar.set_postfix({m[:8]: f"{r['objective']:.3f}" for m, r in best.items()})
        if record["status"] != "ok":
            tqdm.write(f"trial {record['id']} failed: {record['reason']}")

    def _propose(self, optimizer: Optimizer, dims: list[Dimension], trial_id: str,
                 in_flight: dict[str, list[float]]) -> Optional[TrialSpec]:
        if in_flight:
            lie = min(optimizer.yi) if optimizer.yi else 0.0
            liar = optimizer.copy(random_state=optimizer.rng.randint(0, 2**31 - 1))
            liar.tell(list(in_flight.values()), [lie] * len(in_flight))
            x = [float(v) for v in liar.ask()]
        else:
            x = [float(v) for v in optimizer.ask()]
        previous = self.done.get(trial_id)
        if previous is not None:  # resumed: what was run is what the optimiser learns from
            optimizer.tell(point_of(dims, previous), loss_of(previous, self.scenario.score.higher_is_better))
            return None
        in_flight[trial_id] = x
        return {"id": trial_id, "method": optimiser_method().id, **spec_of(dims, x)}

    # -- the final networks

    def final_specs(self) -> list[TrialSpec]:
        specs, failed = final_specs(self.scenario, self.done)
        for method in failed:
            self.log(f"every {method} trial failed; it has no test numbers")
        return specs

    def final_order(self) -> list[str]:
        """The final networks' ids in report order."""
        return [s["id"] for s in final_specs(self.scenario, self.done)[0]]

    def _finals(self, executor: Executor) -> None:
        """Train and test the final networks (each method's best, or study mode's
        variants) on the executor, in parallel where it has room."""
        specs = self.final_specs()
        todo = [s for s in specs if s["id"] not in self.finals or self.finals[s["id"]].get("rates") != s["rates"]]
        bar = tqdm(total=len(specs), initial=len(specs) - len(todo), desc="test", unit="network", disable=self.quiet)

        def finished(record: FinalRecord) -> None:
            self.folder.append("final.jsonl", record)
            self.finals[record["id"]] = record
            bar.update(1)
            if record["status"] != "ok":
                tqdm.write(f"{record['id']} failed: {record['reason']}")

        try:
            schedule(executor, [{**spec, "stage": "final"} for spec in todo], lambda spec: spec, finished)
        finally:
            bar.close()
