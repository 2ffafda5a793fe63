"""The search space: named dimensions, the dropout rate of each slot and training settings.

A scenario's space is one dimension per dropout slot of its network (``search.bounds``,
or the slot's own range in ``search.space``) followed by the training dimensions that
``search.space`` names (:data:`TRAINING`), e.g. ``hwa_scale``, the strength of the
hardware-aware noise. The Bayesian search and random search draw points of this space;
a trial spec holds a point as ``rates`` (one per slot) plus one key per training
dimension, so that records stay readable and keep their form without training ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

from crossbar.common import did_you_mean


@dataclass(frozen=True)
class Training:
    """A training setting a search can tune: what it means and the values it may take."""

    description: str
    low: float
    high: float


#: The training dimensions a search space may name, beside the dropout slots.
TRAINING: dict[str, Training] = {
    "hwa_scale": Training("hardware-aware noise strength: the injected deviation times this (0 plain training, "
                          "1 the device's own), with the objective's first device and time", 0.0, 10.0),
}


@dataclass(frozen=True)
class Dimension:
    name: str
    low: float
    high: float
    dropout: bool  # a slot's dropout rate; else a training setting (TRAINING)


def dimensions(slots: Sequence[str], bounds: tuple[float, float],
               space: Mapping[str, Sequence[float]]) -> list[Dimension]:
    """The dimensions of a space: each slot (its range in ``space``, else ``bounds``),
    then the training dimensions ``space`` names, in :data:`TRAINING`'s order."""
    dims = [Dimension(slot, *tuple(space.get(slot, bounds)), dropout=True) for slot in slots]
    dims += [Dimension(name, *tuple(space[name]), dropout=False) for name in TRAINING if name in space]
    return dims


def check_space(space: Mapping[str, Any], slots: Sequence[str]) -> Optional[str]:
    """What is wrong with ``search.space`` for a network with ``slots``, or None."""
    known = [*slots, *TRAINING]
    for name, value in space.items():
        if name not in known:
            return (f"unknown dimension {name!r}{did_you_mean(name, known)}; the dimensions are the dropout slots "
                    f"({', '.join(slots)}) and {', '.join(TRAINING)}")
        lo, hi = value
        if name in TRAINING:
            allowed = TRAINING[name]
            if not allowed.low <= lo < hi <= allowed.high:
                return (f"{name}: must be [low, high] with {allowed.low:g} <= low < high <= {allowed.high:g}, "
                        f"got {list(value)}")
        elif not 0.0 <= lo < hi < 1.0:
            return f"{name}: a dropout rate's range must be [low, high] with 0 <= low < high < 1, got {list(value)}"
    return None


def spec_of(dims: Sequence[Dimension], point: Sequence[float]) -> dict[str, Any]:
    """A point's part of a trial spec: ``rates`` and one key per training dimension."""
    spec: dict[str, Any] = {"rates": [float(v) for d, v in zip(dims, point) if d.dropout]}
    spec.update({d.name: float(v) for d, v in zip(dims, point) if not d.dropout})
    return spec


def point_of(dims: Sequence[Dimension], record: Mapping[str, Any]) -> list[float]:
    """The point of the space a trial spec or record stands for."""
    rates = iter(record["rates"])
    return [float(next(rates)) if d.dropout else float(record[d.name]) for d in dims]


def in_space(dims: Sequence[Dimension], record: Mapping[str, Any]) -> Optional[str]:
    """What keeps a search trial's record from being a point of the space, or None."""
    for d in dims:
        if not d.dropout and not isinstance(record.get(d.name), (int, float)):
            return f"no {d.name}, a dimension of the search space"
    point = point_of(dims, record)
    outside = [f"{d.name} {v:g}" for d, v in zip(dims, point) if not d.low <= v <= d.high]
    if outside:
        return f"{', '.join(outside)} outside the search space"
    return None
