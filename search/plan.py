"""What a run does, in order: every method's trials, the optimiser, the final networks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from skopt import Optimizer
from skopt.space import Real

from .methods import METHODS, Planned
from .records import TrialRecord, TrialSpec
from .schema import Scenario


@dataclass
class Plan:
    """The trials of a run in the order they are started: each method's, by its
    :attr:`~search.methods.Method.order` (a spec of None is the optimiser's next
    proposal); none in study mode."""

    scenario: Scenario
    slots: list[str]
    trials: Planned = field(default_factory=list)

    @property
    def n_trials(self) -> int:
        return len(self.trials)

    @property
    def ids(self) -> list[str]:
        return [trial_id for trial_id, _ in self.trials]


def make_plan(scenario: Scenario) -> Plan:
    slots = scenario.slots()
    plan = Plan(scenario, slots)
    if scenario.mode == "study":
        return plan
    for method in sorted(METHODS.values(), key=lambda m: m.order):  # stable: table order within an order
        plan.trials += method.plan(scenario, slots)
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


def loss_of(record: TrialRecord) -> float:
    """skopt minimises: the negated objective; a failed trial counts as the worst (0)."""
    return -(record["objective"] if record.get("status") == "ok" and record.get("objective") is not None else 0.0)


def best_of_each_method(records: Iterable[TrialRecord]) -> dict[str, TrialRecord]:
    """The best finished trial of each method by its validation objective (the first, on a tie)."""
    best: dict[str, TrialRecord] = {}
    for record in records:
        if record.get("status") != "ok":
            continue
        method = record["method"]
        if method not in best or record["objective"] > best[method]["objective"]:
            best[method] = record
    return best


def final_specs(scenario: Scenario, trials: dict[str, TrialRecord]) -> tuple[list[TrialSpec], list[str]]:
    """The final networks to train again and test: study mode's variants, else each
    method's best trial, in the method table's order. Returns them and the methods
    every trial of which failed (they have no test numbers)."""
    if scenario.mode == "study":
        return [
            {"id": f"final-{v.label}", "method": v.label, "rates": v.dropout, "model": v.model,
             "hardware_aware": v.hardware_aware}
            for v in scenario.variants
        ], []
    specs: list[TrialSpec] = []
    failed = []
    best = best_of_each_method(trials.values())
    for method in METHODS:
        if method in best:
            trial = best[method]
            spec: TrialSpec = {"id": f"final-{method}", "method": method, "rates": trial["rates"], "trial": trial["id"]}
            if trial.get("hardware_aware"):
                spec["hardware_aware"] = True
            specs.append(spec)
        elif any(r["method"] == method for r in trials.values()):
            failed.append(method)
    return specs, failed

