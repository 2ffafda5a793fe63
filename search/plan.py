"""What a run does, in order: every method's trials, the optimiser, the final networks.

Everything here reads the method table (:mod:`search.methods`): which trials each
method plans, which of them warm-start the optimiser, which final networks are tested.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from skopt import Optimizer
from skopt.space import Real

from .methods import METHODS, Planned
from .records import TRAINING_KEYS, TrialRecord, TrialSpec, best_of_each_method, worst
from .schema import Scenario
from .space import point_of


@dataclass
class Plan:
    """The trials of a run in the order they are started: each method's, by its
    :attr:`~search.methods.Method.order` (a spec of None is the optimiser's next
    proposal); none in study and evaluate modes."""

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
    if scenario.mode in ("study", "evaluate"):
        return plan
    for method in sorted(METHODS.values(), key=lambda m: m.order):  # stable: table order within an order
        plan.trials += method.plan(scenario, slots)
    return plan


def warm_points(scenario: Scenario, plan: Plan) -> dict[str, list[float]]:
    """The trials of the methods marked ``warm_start`` that are points of the search
    space, by trial id (empty without ``search.warm_start``): with the training
    dimensions at 0 (no dropout, each uniform rate), or for a trial trained with the
    hardware-aware baseline's noise at ``hwa_scale`` 1 (when that noise is the one
    ``hwa_scale`` injects); those within the space's bounds, with the scenario's network.
    The optimiser learns from them as from its own trials, besides its ``n_initial``
    random ones: they are trained anyway, and they tell it early where the space is poor."""
    if not scenario.search.warm_start or scenario.mode in ("study", "evaluate"):
        return {}
    dims = scenario.dimensions()
    names = [d.name for d in dims if not d.dropout]
    hwa = scenario.hardware_aware_config()
    hwa_is_a_point = "hwa_scale" in names and hwa is not None and hwa == scenario.trained_with(1.0)
    points = {}
    for trial_id, spec in plan.trials:
        method = METHODS.get(spec["method"]) if spec is not None else None
        if method is None or not method.warm_start or spec.get("model"):  # another network is no point of it
            continue
        if spec.get("hardware_aware") and not hwa_is_a_point:
            continue
        training = {name: 0.0 for name in names}
        if spec.get("hardware_aware"):
            training["hwa_scale"] = 1.0
        point = point_of(dims, {**spec, **training})
        if all(d.low <= v <= d.high for d, v in zip(dims, point)):
            points[trial_id] = point
    return points


def make_optimizer(scenario: Scenario, n_warm: int = 0) -> Optimizer:
    """The Bayesian optimiser over the scenario's search space; ``n_warm`` points of
    :func:`warm_points` will be told besides its own ``n_initial`` random ones."""
    return Optimizer(
        [Real(d.low, d.high, name=d.name) for d in scenario.dimensions()],
        base_estimator="GP",
        acq_func=scenario.search.acq_func,
        n_initial_points=scenario.search.n_initial + n_warm,
        acq_func_kwargs={"xi": scenario.search.xi, "kappa": scenario.search.kappa},
        initial_point_generator="random",
        random_state=scenario.seed,
    )


def loss_of(record: TrialRecord, higher_is_better: bool = True) -> float:
    """skopt minimises: the objective, negated when higher is better; a failed trial
    counts as the worst (:func:`search.records.worst`)."""
    ok = record.get("status") == "ok" and record.get("objective") is not None
    value = record["objective"] if ok else worst(higher_is_better)
    return -value if higher_is_better else value


def final_specs(scenario: Scenario, trials: dict[str, TrialRecord]) -> tuple[list[TrialSpec], list[str]]:
    """The final networks to train again and test: study mode's variants, evaluate mode's
    trained network, else each method's best trial, in the method table's order. Returns them and the methods
    every trial of which failed (they have no test numbers)."""
    if scenario.mode == "study":
        return [
            {"id": f"final-{v.label}", "method": v.label, "rates": v.dropout, "model": v.model,
             "hardware_aware": v.hardware_aware}
            for v in scenario.variants
        ], []
    if scenario.mode == "evaluate":
        return [{"id": f"final-{scenario.model.label}", "method": scenario.model.label, "rates": []}], []
    specs: list[TrialSpec] = []
    failed = []
    best = best_of_each_method(trials.values(), scenario.score.higher_is_better)
    for method in METHODS:
        if method in best:
            trial = best[method]
            spec: TrialSpec = {"id": f"final-{method}", "method": method, "rates": trial["rates"], "trial": trial["id"]}
            spec.update({key: trial[key] for key in TRAINING_KEYS if key in trial})  # trained as it was
            specs.append(spec)
        elif any(r["method"] == method for r in trials.values()):
            failed.append(method)
    return specs, failed

