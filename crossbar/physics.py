"""The device physics a preset can simulate: one record per kind, in one table.

A :class:`Physics` names the aihwkit noise model that simulates the devices, the
parameters a preset may set for it (with their bounds; they become fields of
:class:`crossbar.Preset`), its default conductance mapping (aihwkit's own defaults),
the times it is defined at, and where and in which precision it runs. A new kind is
one call, :func:`register_physics`; presets, validation, resolved parameter sets and
the simulator read everything they need from the table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from aihwkit.inference.converter.base import BaseConductanceConverter
from aihwkit.inference.noise.base import BaseNoiseModel
from aihwkit.inference.noise.pcm import PCMLikeNoiseModel
from aihwkit.inference.noise.reram import ReRamCMONoiseModel, ReRamWan2022NoiseModel

from .noise import IdealNoiseModel, LogNormalDriftNoiseModel


@dataclass(frozen=True)
class Param:
    """A physics parameter of a preset: a float with a lower bound, or one of ``choices``."""

    description: str
    gt: Optional[float] = None
    ge: Optional[float] = None
    choices: Optional[tuple[float, ...]] = None


@dataclass(frozen=True)
class Physics:
    """One kind of device physics.

    Attributes:
        name: the preset's ``noise`` value.
        make: ``make(converter, g_max, g_min, **params)`` -> the aihwkit noise model;
            ``params`` holds only the parameters the preset sets (the model's own
            defaults stand for the others).
        params: the parameters a preset may set (aihwkit's constructor arguments);
            after construction the model holds each under the same attribute name.
        converter, g_max, g_min: the default mapping (converter kind, uS).
        exact: simulate in float64, so that noiseless devices read their weights back
            bit for bit; the stochastic models run in float32 (their noise dwarfs its
            rounding, and float64 draws cost about 5x on a CPU).
        cpu_only: the model's arithmetic needs CPU tensors.
        times: the inference times the model is defined at, or None for any time >= 0.
        read_time: the model's first defined time after 0 (times in between are not).
    """

    name: str
    description: str
    make: Callable[..., BaseNoiseModel]
    params: dict[str, Param] = field(default_factory=dict)
    converter: str = "single_pair"
    g_max: float = 25.0
    g_min: float = 0.0
    exact: bool = False
    cpu_only: bool = False
    times: Callable[[BaseNoiseModel], Optional[tuple[float, ...]]] = lambda model: None
    read_time: Callable[[BaseNoiseModel], float] = lambda model: 0.0

    def resolved_params(self, model: BaseNoiseModel) -> dict[str, Any]:
        """Every parameter's value as the model uses it (the preset's or aihwkit's default)."""
        return {name: getattr(model, name) for name in self.params}


def _cmo(converter: BaseConductanceConverter, g_max: float, g_min: float, **params) -> BaseNoiseModel:
    # aihwkit's CMO model always builds its own single-device converter; swap in the
    # preset's one (its physics acts per conductance, whatever the mapping).
    model = ReRamCMONoiseModel(g_max=g_max, g_min=g_min, **params)
    model.g_converter = converter
    return model


_SCALE = "multiplies the model's {} (1: as fitted)"

#: The kinds by name; :func:`register_physics` adds one.
PHYSICS: dict[str, Physics] = {}

#: Every kind's parameters by name: one name has one meaning and one bound everywhere.
ALL_PARAMS: dict[str, Param] = {}


def register_physics(physics: Physics) -> Physics:
    """Add a kind of device physics: presets then take ``physics: <its name>`` and its
    parameters (flat, like every preset parameter), and the simulator runs its noise model."""
    if not isinstance(physics, Physics):
        raise ValueError(f"register_physics takes a crossbar.physics.Physics, got {type(physics).__name__}")
    for name, param in physics.params.items():
        other = ALL_PARAMS.get(name)
        if other is not None and (other.gt, other.ge, other.choices) != (param.gt, param.ge, param.choices):
            raise ValueError(f"physics {physics.name!r}: parameter {name!r} has other bounds than in another kind; "
                             "one name has one meaning and one bound everywhere")
    PHYSICS[physics.name] = physics
    for name, param in physics.params.items():
        ALL_PARAMS.setdefault(name, param)
    return physics


for _physics in (
    Physics(
        "ideal", "exact conductances: the digital reference",
        make=lambda converter, g_max, g_min: IdealNoiseModel(g_converter=converter),
        exact=True,
    ),
    Physics(
        "pcm", "aihwkit PCMLikeNoiseModel (Nandakumar et al. 2019): programming noise, 1/f read noise, "
        "power-law drift with per-device exponents",
        make=lambda converter, g_max, g_min, **params: PCMLikeNoiseModel(g_converter=converter, **params),
        params={
            "prog_noise_scale": Param(_SCALE.format("programming noise"), ge=0),
            "read_noise_scale": Param(_SCALE.format("read noise"), ge=0),
            "drift_scale": Param(_SCALE.format("drift"), ge=0),
            "t_0": Param("time of the first read after programming, s", gt=0),
            "t_read": Param("duration of one read, s (the 1/f noise's bandwidth)", gt=0),
        },
    ),
    Physics(
        "reram_wan2022", "aihwkit ReRamWan2022NoiseModel, fitted to Wan et al., Nature 2022",
        make=lambda converter, g_max, g_min, **params: ReRamWan2022NoiseModel(g_converter=converter, **params),
        params={"noise_scale": Param(_SCALE.format("noise"), ge=0)},
        times=lambda model: tuple(sorted(model.coeff_dic)),
    ),
    Physics(
        "reram_cmo", "aihwkit ReRamCMONoiseModel: CMO/HfOx ReRAM, programming noise, log-time relaxation, "
        "read noise",
        make=_cmo,
        params={
            "prog_noise_scale": Param(_SCALE.format("programming noise"), ge=0),
            "read_noise_scale": Param(_SCALE.format("read noise"), ge=0),
            "drift_scale": Param(_SCALE.format("relaxation"), ge=0),
            "acceptance_range": Param("programming acceptance range, uS (aihwkit's fits)", choices=(0.2, 2.0)),
        },
        converter="single_device", g_max=88.199997, g_min=9.0,
        cpu_only=True,  # it applies numpy's log10 to conductance tensors
        read_time=lambda model: model.read_dict["t_read"],
    ),
    Physics(
        "lognormal", "BayesFT drift w' = w exp(theta), theta ~ N(0, sigma^2) (Ye et al., DAC 2021)",
        make=lambda converter, g_max, g_min, **params: LogNormalDriftNoiseModel(g_converter=converter, **params),
        params={"sigma": Param("standard deviation of the log drift factor theta", ge=0)},
        exact=True,
    ),
):
    register_physics(_physics)
