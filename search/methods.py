"""The methods a search run compares: one entry each, read by planning, reports and plots.

A :class:`Method` says how its trials are planned, whether they form a search (the
convergence plot draws those), whether its networks train with hardware-aware noise,
and how reports and plots show it. A new baseline is one entry in :data:`METHODS` plus
its field in the scenario's ``baselines`` (:class:`search.schema.Baselines`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from skopt.space import Real, Space

from .records import TrialSpec
from .schema import Scenario
from .space import spec_of

#: ``(id, spec)`` of each planned trial; a spec of None is the optimiser's next proposal.
Planned = list[tuple[str, Optional[TrialSpec]]]


@dataclass(frozen=True)
class Method:
    """One method of a search run.

    Attributes:
        id: its key in trial records, ``results.json`` and the plots.
        label: how tables and legends name it.
        color: its colour in every plot.
        plan: ``plan(scenario, slots)`` -> its trials, in the order they run; empty
            when the scenario switches it off.
        order: when its trials run: lower first (then in table order).
        search: its trials are a search, each after the last (convergence.png).
        shows_rates: dropout_rates.png draws the rates it chose.
        reference: the line style of its validation objective in convergence.png, or
            None for no line.
    """

    id: str
    label: str
    color: str
    plan: Callable[[Scenario, list[str]], Planned]
    order: int = 0
    search: bool = False
    shows_rates: bool = False
    reference: Optional[str] = None


def bayesft_id(index: int) -> str:
    """The id of the search's ``index``-th trial (from 1), in the order it was proposed."""
    return f"bayesft-{index:03d}"


def _bayesft(scenario: Scenario, slots: list[str]) -> Planned:
    n = scenario.search.n_trials if scenario.mode == "search" else 0
    return [(bayesft_id(i + 1), None) for i in range(n)]


def _erm(scenario: Scenario, slots: list[str]) -> Planned:
    return [("erm", {"id": "erm", "method": "erm", "rates": [0.0] * len(slots)})] if scenario.baselines.erm else []


def _uniform(scenario: Scenario, slots: list[str]) -> Planned:
    planned: Planned = []
    for rate in scenario.baselines.uniform:
        trial_id = f"uniform-{rate:g}"
        planned.append((trial_id, {"id": trial_id, "method": "uniform", "rates": [float(rate)] * len(slots)}))
    return planned


def _random(scenario: Scenario, slots: list[str]) -> Planned:
    if not scenario.baselines.random:
        return []
    dims = scenario.dimensions()
    points = Space([Real(d.low, d.high) for d in dims]).rvs(scenario.search.n_trials, random_state=scenario.seed + 1)
    return [(f"random-{i + 1:03d}", {"id": f"random-{i + 1:03d}", "method": "random", **spec_of(dims, x)})
            for i, x in enumerate(points)]


def _hardware_aware(scenario: Scenario, slots: list[str]) -> Planned:
    if scenario.hardware_aware_config() is None:
        return []
    spec: TrialSpec = {"id": "hardware_aware", "method": "hardware_aware", "rates": [0.0] * len(slots),
                       "hardware_aware": True}
    return [("hardware_aware", spec)]


def _ecoc(scenario: Scenario, slots: list[str]) -> Planned:
    if not scenario.baselines.ecoc:
        return []
    spec: TrialSpec = {"id": "ecoc", "method": "ecoc", "rates": [0.0] * len(slots), "model": {"head": "ecoc"}}
    return [("ecoc", spec)]


METHODS: dict[str, Method] = {
    m.id: m
    for m in (
        Method("bayesft", "BayesFT (Bayesian search)", "tab:red", _bayesft, order=1, search=True, shows_rates=True),
        Method("erm", "no dropout (ERM)", "tab:gray", _erm, reference="--"),
        Method("uniform", "best uniform dropout", "tab:blue", _uniform, shows_rates=True, reference=":"),
        Method("random", "random search", "tab:green", _random, order=2, search=True, shows_rates=True),
        Method("hardware_aware", "hardware-aware training", "tab:purple", _hardware_aware, reference="--"),
        Method("ecoc", "ECOC output codes (FTNA)", "tab:orange", _ecoc, reference="-."),
    )
}

SEARCH_METHODS = tuple(m.id for m in METHODS.values() if m.search)


def label(method: str) -> str:
    """The label of a method (a study variant's is its own)."""
    return METHODS[method].label if method in METHODS else method


def color(method: str, index: int) -> str:
    """A method's colour; a study variant gets the ``index``-th of matplotlib's cycle."""
    return METHODS[method].color if method in METHODS else f"C{index % 10}"
