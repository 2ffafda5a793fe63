"""The methods a search run compares: one :class:`Method` record each, in one table.

A method says how its trials are planned, its key and value in the scenario's
``baselines`` (:class:`Option`; the scenario's ``baselines`` section is built from the
table), and what the rest of the run needs to know of it: whether the optimiser
proposes its trials, whether they are points of the search space (checked on resume,
drawn in the convergence plot, learnt from by a warm start), whether its clean score
is the plots' digital reference, and how tables and plots show it. A new baseline is
one call, ``register_method(Method(...))``: planning, trials, resume, the final
networks, ``results.json``, the tables and the plots all read this table.

A final network trains again with every key of its best trial that shapes training
(:data:`search.records.TRAINING_KEYS`): a method cannot forget one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Callable, Optional, Union

from pydantic import AfterValidator, Field, field_validator

import models

from .records import TrialSpec
from .sections import PresetSpec, Strict, Time, full_preset
from .space import spec_of

if TYPE_CHECKING:
    from .schema import Scenario

#: ``(id, spec)`` of each planned trial; a spec of None is the optimiser's next proposal.
Planned = list[tuple[str, Optional[TrialSpec]]]


@dataclass(frozen=True)
class Option:
    """A method's key under the scenario's ``baselines``: its type (pydantic), default
    and description. A value that is false or empty switches the method off."""

    type: Any
    default: Any
    description: str


@dataclass(frozen=True)
class Method:
    """One method of a search run.

    Attributes:
        id: its key in trial records, ``results.json``, the plots and ``baselines``.
        label: how tables and legends name it.
        color: its colour in every plot.
        plan: ``plan(scenario, slots)`` -> its trials, in the order they run; empty
            when the scenario switches it off.
        option: its key in the scenario's ``baselines``; None: it has none (the search).
        order: when its trials run: lower first (then in table order).
        optimiser: the Bayesian optimiser proposes its trials (one method at most).
        search: its trials are points of the search space drawn by a search: checked
            against the space on resume, drawn in convergence.png.
        warm_start: its trials are points of the search space the optimiser learns from
            with ``search.warm_start`` (at ``hwa_scale`` 0, or 1 for hardware-aware noise).
        digital_reference: the plots draw its clean score as the digital network's.
        tasks: the tasks it applies to (None: every task).
        shows_rates: dropout_rates.png draws the rates it chose.
        reference: the line style of its validation objective in convergence.png, or
            None for no line.
        short: its name in the lines of paired differences (default: its label).
    """

    id: str
    label: str
    color: str
    plan: Callable[["Scenario", list[str]], Planned]
    option: Optional[Option] = None
    order: int = 0
    optimiser: bool = False
    search: bool = False
    warm_start: bool = False
    digital_reference: bool = False
    tasks: Optional[tuple[str, ...]] = None
    shows_rates: bool = False
    reference: Optional[str] = None
    short: Optional[str] = None


def trial_id(method: str, index: int) -> str:
    """The id of a method's ``index``-th trial (from 1) of several: ``bayesft-003``."""
    return f"{method}-{index:03d}"


def bayesft_id(index: int) -> str:
    """The id of the search's ``index``-th trial (from 1), in the order it was proposed."""
    return trial_id("bayesft", index)


def _bayesft(scenario: "Scenario", slots: list[str]) -> Planned:
    n = scenario.search.n_trials if scenario.mode == "search" else 0
    return [(bayesft_id(i + 1), None) for i in range(n)]


def _erm(scenario: "Scenario", slots: list[str]) -> Planned:
    return [("erm", {"id": "erm", "method": "erm", "rates": [0.0] * len(slots)})] if scenario.baselines.erm else []


def _uniform(scenario: "Scenario", slots: list[str]) -> Planned:
    planned: Planned = []
    for rate in scenario.baselines.uniform:
        trial = f"uniform-{rate:g}"
        planned.append((trial, {"id": trial, "method": "uniform", "rates": [float(rate)] * len(slots)}))
    return planned


def _random(scenario: "Scenario", slots: list[str]) -> Planned:
    if not scenario.baselines.random:
        return []
    from skopt.space import Real, Space  # scikit-optimize loads scipy and scikit-learn: only when planning

    dims = scenario.dimensions()
    points = Space([Real(d.low, d.high) for d in dims]).rvs(scenario.search.n_trials, random_state=scenario.seed + 1)
    return [(trial_id("random", i + 1), {"id": trial_id("random", i + 1), "method": "random", **spec_of(dims, x)})
            for i, x in enumerate(points)]


def _hardware_aware(scenario: "Scenario", slots: list[str]) -> Planned:
    if scenario.hardware_aware_config() is None:
        return []
    spec: TrialSpec = {"id": "hardware_aware", "method": "hardware_aware", "rates": [0.0] * len(slots),
                       "hardware_aware": True}
    return [("hardware_aware", spec)]


def _ecoc(scenario: "Scenario", slots: list[str]) -> Planned:
    if not scenario.baselines.ecoc:
        return []
    spec: TrialSpec = {"id": "ecoc", "method": "ecoc", "rates": [0.0] * len(slots), "model": {"head": "ecoc"}}
    return [("ecoc", spec)]


def _rates(rates: list[float]) -> list[float]:
    for r in rates:
        if not 0 <= r < 1:
            raise ValueError(f"every rate must lie in [0, 1), got {r:g}")
    return rates


class HardwareAwareBaseline(Strict):
    """The hardware-aware baseline's noise, where the defaults do not do."""

    preset: Optional[PresetSpec] = Field(None, description="default: the first device")
    t_inference: Optional[Time] = Field(None, description="default: the first objective time")
    scale: float = Field(1.0, ge=0.0, le=10.0, description="noise strength: 1 the device's own")
    warmup: float = Field(models.WARMUP, ge=0.0, lt=1.0, description="share of the epochs trained plainly first")
    ramp: float = Field(models.RAMP, ge=0.0, lt=1.0, description="share of the epochs over which the noise rises")

    @field_validator("preset")
    @classmethod
    def _full(cls, spec: Optional[PresetSpec]) -> Optional[dict[str, Any]]:
        return None if spec is None else full_preset(spec)  # recorded with every parameter, like the devices


#: The methods by id, in the order reports and plots list them; :func:`register_method` adds one.
METHODS: dict[str, Method] = {}


def register_method(method: Method) -> Method:
    """Add ``method`` to the table (or replace the one of its id): scenarios then take its
    option under ``baselines``, and a run plans, runs, resumes, reports and plots it."""
    if not isinstance(method, Method):
        raise ValueError(f"register_method takes a search.methods.Method, got {type(method).__name__}")
    others = [m.id for m in METHODS.values() if m.optimiser and m.id != method.id]
    if method.optimiser and others:
        raise ValueError(f"method {method.id!r}: the optimiser already proposes the trials of {others[0]!r}; "
                         "one method at most has optimiser=True")
    METHODS[method.id] = method
    return method


for _method in (
    Method("bayesft", "BayesFT (Bayesian search)", "tab:red", _bayesft, order=1, optimiser=True, search=True,
           shows_rates=True, short="BayesFT"),
    Method("erm", "no dropout (ERM)", "tab:gray", _erm, Option(bool, True, "no dropout"), warm_start=True,
           digital_reference=True, reference="--"),
    Method("uniform", "best uniform dropout", "tab:blue", _uniform,
           Option(Annotated[list[float], AfterValidator(_rates)], [0.1, 0.2, 0.3, 0.5],
                  "one rate for every slot; the best on validation wins"),
           warm_start=True, shows_rates=True, reference=":"),
    Method("random", "random search", "tab:green", _random,
           Option(bool, True, "random search with the same trial budget"), order=2, search=True, shows_rates=True),
    Method("hardware_aware", "hardware-aware training", "tab:purple", _hardware_aware,
           Option(Union[bool, HardwareAwareBaseline], True, "hardware-aware training, no dropout"), warm_start=True,
           reference="--"),
    Method("ecoc", "ECOC output codes (FTNA)", "tab:orange", _ecoc,
           Option(bool, False, "error-correcting output codes (FTNA, the network's head: ecoc), no dropout"),
           tasks=("classification",), reference="-."),
):
    register_method(_method)


def optimiser_method() -> Optional[Method]:
    """The method whose trials the optimiser proposes, if any."""
    return next((m for m in METHODS.values() if m.optimiser), None)


def search_methods() -> list[str]:
    """The ids of the methods whose trials are points drawn by a search."""
    return [m.id for m in METHODS.values() if m.search]


def label(method: str) -> str:
    """The label of a method (a study variant's is its own)."""
    return METHODS[method].label if method in METHODS else method


def color(method: str, index: int) -> str:
    """A method's colour; a study variant gets the ``index``-th of matplotlib's cycle."""
    return METHODS[method].color if method in METHODS else f"C{index % 10}"
