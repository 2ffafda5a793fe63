"""The co-design search's section of a scenario (``mode: codesign``): hardware dimensions
beside the training ones, several objectives, the optimiser and the hypervolume's
reference point.

A hardware dimension is a field of the devices' presets (``adc_bits: [4, 8]``, an
integer range; ``g_max: [10.0, 40.0]``, a real one; ``max_in: {choices: [64, 128,
256]}``, a choice) or ``device``, a choice among the scenario's ``devices`` by name. A
trial's device is the chosen one (the first without a ``device`` dimension) with the
chosen fields. The training dimensions are the search's (``search.bounds``,
``search.space``): a trial that changes only hardware reuses the network trained for its
training point.
"""

from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import Field, ValidationError, field_validator

import crossbar
from crossbar.common import did_you_mean

from .errors import error_text
from .sections import Strict

#: The objectives a trial measures: the chips' score (the scenario's ``objective``:
#: mean or quantile over chips at ``t_inference``, on validation) and the chip's cost
#: per inference (:func:`crossbar.cost`, at the first ``t_inference``).
MEASURES = {
    "score": "the chips' score on validation (objective.aggregate over chips, at t_inference)",
    "energy_j": "energy per inference, J",
    "latency_s": "latency per inference, s",
    "area_mm2": "chip area, mm2",
}
COSTS = ("energy_j", "latency_s", "area_mm2")


#: A converter's bits and the simulated resolution that must agree with them (aihwkit's
#: 1 / (2**bits - 2)): a dimension of bits moves the resolution with it.
RESOLUTION = {"adc_bits": "out_res", "input_bits": "inp_res"}


def with_hardware(spec: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A device with a hardware point's fields: a converter's bits also set the simulated
    resolution of a device that simulates that converter (its resolution is not 0), and
    bits per cell on a device of one cell a weight set its conductance levels."""
    out = {**spec, **changes}
    for bits, res in RESOLUTION.items():
        if bits in changes and spec.get(res) and changes[bits] > 1:
            out[res] = 1.0 / (2 ** int(changes[bits]) - 2)
    if "bits_per_cell" in changes and not spec.get("weight_bits"):  # one cell a weight: its levels
        out.update(weight_bits=int(changes["bits_per_cell"]), levels=2 ** int(changes["bits_per_cell"]))
    return out


class Goal(Strict):
    """One objective: what is measured, maximised or minimised, and optionally a bound
    every feasible trial keeps."""

    name: Literal["score", "energy_j", "latency_s", "area_mm2"] = Field(
        description="score (the chips' score) or energy_j, latency_s, area_mm2 (crossbar.cost)")
    goal: Optional[Literal["max", "min"]] = Field(None, description="default: max for score, min for the costs")
    at_least: Optional[float] = Field(None, description="a constraint: trials below it are infeasible")
    at_most: Optional[float] = Field(None, description="a constraint: trials above it are infeasible")

    @property
    def maximise(self) -> bool:
        return (self.goal or ("max" if self.name == "score" else "min")) == "max"

    def violation(self, value: float) -> float:
        """How far ``value`` is outside the bounds (0 inside): optuna's constraint."""
        over = 0.0
        if self.at_least is not None:
            over = max(over, self.at_least - value)
        if self.at_most is not None:
            over = max(over, value - self.at_most)
        return over


class Choices(Strict):
    choices: list[Union[int, float, str, bool]] = Field(min_length=1)


class Codesign(Strict):
    """``codesign:``: the hardware dimensions, the objectives, the optimiser."""

    space: dict[str, Union[list[Union[int, float, str]], Choices]] = Field(
        default_factory=dict, description="hardware dimensions: device: [names], a field: [low, high] or "
                                          "{choices: [...]}")
    digital: list[str] = Field(default_factory=list, description="layers that may be placed digital (exact, priced "
                                                                 "as digital MACs): one yes/no dimension each")
    objectives: list[Goal] = Field(min_length=1, description="what each trial is measured by")
    reference: Optional[list[float]] = Field(
        None, description="the hypervolume's reference point, one value per objective (default: 0 for a "
                          "maximised score; each cost objective needs one)")
    sampler: Literal["gp", "tpe"] = Field(
        "gp", description="gp: optuna's Gaussian-process sampler (log expected hypervolume improvement); tpe: "
                          "optuna's multi-objective TPE")
    hardware_per_training: int = Field(
        3, ge=1, le=100, description="trials per training point: the first proposes every dimension, the rest "
                                     "only hardware ones and reuse its network")
    grid: bool = Field(True, description="the hand grid: each device at its own periphery with the best training "
                                         "point found")

    @field_validator("objectives")
    @classmethod
    def _unique(cls, goals: list[Goal]) -> list[Goal]:
        names = [g.name for g in goals]
        if len(set(names)) != len(names):
            repeated = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"each objective at most once; repeated: {', '.join(repeated)}")
        return goals

    def check_layers(self, layers: list[str]) -> None:
        """Raise ValueError unless every name of ``digital`` is a mapped layer."""
        for name in self.digital:
            if name not in layers:
                raise ValueError(f"codesign.digital: {name!r} is not a layer of the network that is mapped onto "
                                 f"crossbars{did_you_mean(name, layers)}; its layers: {', '.join(layers)}")
        if len(set(self.digital)) != len(self.digital):
            raise ValueError("codesign.digital: each layer at most once")

    def devices(self) -> Optional[list]:
        """The device names the ``device`` dimension chooses among (None: no such dimension)."""
        value = self.space.get("device")
        if value is None:
            return None
        return list(value.choices if isinstance(value, Choices) else value)

    def names(self) -> list[str]:
        return [g.name for g in self.objectives]

    def maximise(self) -> list[bool]:
        return [g.maximise for g in self.objectives]

    def needs_cost(self) -> bool:
        return any(g.name in COSTS for g in self.objectives)

    def reference_point(self) -> Optional[list[float]]:
        """The stated reference, else 0 for a single maximised score; None when a cost
        objective has no stated reference."""
        if self.reference is not None:
            return list(self.reference)
        if all(g.name == "score" and g.maximise for g in self.objectives):
            return [0.0]
        return None

    def check(self, devices: list[dict[str, Any]], score_range: tuple[float, float]) -> None:
        """Raise ValueError (one line) for a dimension, range or reference the devices or
        objectives cannot take."""
        names = [d["name"] for d in devices]
        for key, value in self.space.items():
            where = f"codesign.space.{key}"
            if key == "device":
                chosen = self.devices() or []
                unknown = [n for n in chosen if n not in names]
                if unknown or len(chosen) < 2:
                    raise ValueError(f"{where}: must list at least two of the scenario's devices ({', '.join(names)})"
                                     + (f"; unknown: {unknown[0]!r}{did_you_mean(str(unknown[0]), names)}"
                                        if unknown else ""))
                continue
            fields = [f for f in crossbar.presets.flat_fields() if f != "physics"]
            if key not in fields:
                known = fields
                raise ValueError(f"{where}: no device has a field {key!r}{did_you_mean(key, known)}; a dimension is "
                                 "device or a preset field (adc_bits, max_in, bits_per_cell, g_max, ...)")
            if isinstance(value, Choices):
                values = value.choices
            else:
                if len(value) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value) \
                        or not value[0] < value[1]:
                    raise ValueError(f"{where}: a range is [low, high] with low < high (numbers), or give "
                                     f"{{choices: [...]}}; got {value}")
                values = list(value)
            for spec in devices:
                for v in values:
                    try:
                        crossbar.make_preset(with_hardware(spec, {key: v}))
                    except (ValueError, TypeError, ValidationError) as e:
                        text = error_text(e.errors()[0]) if isinstance(e, ValidationError) else str(e)
                        raise ValueError(f"{where}: device {spec['name']!r} with {key} = {v}: {text}") from None
        if self.needs_cost():
            for spec in devices:
                try:
                    crossbar.macro_cost(crossbar.make_preset(spec), 1)
                except ValueError as e:
                    costs = ", ".join(n for n in self.names() if n in COSTS)
                    raise ValueError(f"codesign.objectives: {costs} need the chip's cost, and device "
                                     f"{spec['name']!r} cannot be priced: {e}") from None
        ref = self.reference_point()
        if ref is None:
            raise ValueError("codesign.reference: the hypervolume's reference point, one value per objective "
                             f"({', '.join(self.names())}), e.g. the worst score and the largest cost worth a chip")
        if len(ref) != len(self.objectives):
            raise ValueError(f"codesign.reference: one value per objective ({', '.join(self.names())}), got {len(ref)}")
        low, high = score_range
        for goal, r in zip(self.objectives, ref):
            inside = low <= r < high if goal.maximise else low < r <= high
            if goal.name == "score" and not inside:
                raise ValueError(f"codesign.reference: the score's reference {r:g} leaves no score "
                                 f"{'above' if goal.maximise else 'below'} it in [{low:g}, {high:g}]: no trial "
                                 "could dominate it")
            if goal.name in COSTS and (r <= 0 if not goal.maximise else False):
                raise ValueError(f"codesign.reference: {goal.name}'s reference {r:g} must be positive: no chip costs "
                                 "less than nothing, so no trial could dominate it")
