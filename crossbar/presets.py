"""Device presets: which physics, which conductance range, which faults, which periphery.

A :class:`Preset` is plain, validated data (pydantic); ``preset.noise_model`` builds the
aihwkit noise model that the simulator calls. Presets are looked up by name with
:func:`get_preset`, which takes overrides, or built from a plain mapping with
:func:`make_preset` (the form a scenario's YAML block takes). The physics kinds and
their parameters come from :data:`crossbar.physics.PHYSICS`.

Units follow aihwkit: conductances in microsiemens, times in seconds since programming
ended (readable durations such as ``"1d"`` are accepted too).
"""

from __future__ import annotations

import math
from typing import Any, Literal, Mapping, Optional, Union

import torch
from aihwkit.inference.compensation.drift import GlobalDriftCompensation
from aihwkit.inference.converter.conductance import (
    DualPairConductanceConverter,
    NPairConductanceConverter,
    SingleDeviceConductanceConverter,
    SinglePairConductanceConverter,
)
from aihwkit.inference.noise.base import BaseNoiseModel
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, create_model, model_validator

from .common import did_you_mean, error_text
from .durations import in_words, parse_duration
from .physics import ALL_PARAMS, PHYSICS, Physics

ConverterKind = Literal["single_pair", "dual_pair", "n_pair", "single_device"]
_CONVERTERS = {
    "single_pair": SinglePairConductanceConverter,
    "single_device": SingleDeviceConductanceConverter,
    "dual_pair": DualPairConductanceConverter,
    "n_pair": NPairConductanceConverter,
}

#: Stuck-at fault profiles from the defect literature, usable with any preset
#: (``get_preset("pcm", faults="chen2015")``).
FAULT_PROFILES: dict[str, dict[str, Any]] = {
    "chen2015": {
        "p_sa0": 0.0904,
        "p_sa1": 0.0175,
        "reference": "Chen et al., IEEE Trans. Computers 64(1), 2015: "
        "measured ReRAM defects, 9.04 % stuck-at-0 (at g_min) and 1.75 % stuck-at-1 (at g_max)",
    },
}

#: aihwkit's default wire-to-device conductance ratio of its IR-drop model
#: (``IOParameters.ir_drop_g_ratio``: 0.35 Ohm wire segments, 5 mS set state).
IR_DROP_G_RATIO = 1.0 / 0.35 / 5e-6

#: The array effects (all off by default) and, for each, the parameters that only mean
#: something when it is on: what :meth:`Preset.full_spec` records when an effect is on.
ARRAY_EFFECTS: dict[str, tuple[str, ...]] = {
    "levels": (),
    "g_max_variation": (),
    "g_min_variation": (),
    "p_row_fault": ("fault_sa1_share",),
    "p_col_fault": ("fault_sa1_share",),
    "p_cluster": ("cluster_radius", "fault_sa1_share"),
    "ir_drop": ("ir_drop_g_ratio",),
    "w_noise": ("w_noise_type",),
    "out_nonlinearity": ("out_nonlinearity_std", "slope_calibration"),
}

#: Standard deviations a device may lie off its nominal conductance range for the
#: variation check: a preset whose device this far out has g_min >= g_max is refused.
PLAUSIBLE_SIGMAS = 3.0

#: aihwkit's default ``IOParameters`` values for the periphery (7-bit DAC, 9-bit ADC,
#: output noise 0.06, input bound 1, output bound 12). Off by default in every preset;
#: ``get_preset("pcm", **AIHWKIT_PERIPHERY)`` switches them on.
AIHWKIT_PERIPHERY: dict[str, float] = {
    "inp_res": 1 / (2**7 - 2),
    "out_res": 1 / (2**9 - 2),
    "out_noise": 0.06,
    "inp_bound": 1.0,
    "out_bound": 12.0,
}


class _PresetBase(BaseModel):
    """The fields every preset has; the physics parameters are added from PHYSICS below."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str = "custom"
    description: str = ""
    noise: Literal[tuple(PHYSICS)] = Field(description="which device physics (noise model) to use")  # type: ignore[valid-type]

    # Conductance mapping (uS).
    g_max: Optional[float] = Field(None, gt=0, description="maximal conductance, uS")
    g_min: Optional[float] = Field(None, ge=0, description="minimal conductance, uS")
    g_converter: Optional[ConverterKind] = None
    f_lst: Optional[list[float]] = Field(None, description="significance factors of the pairs (dual_pair, n_pair)")

    drift_compensation: bool = False

    # Stuck-at faults, on top of the physics.
    faults: Optional[str] = None
    p_sa0: float = Field(0.0, ge=0, le=1, description="probability a device is stuck at g_min")
    p_sa1: float = Field(0.0, ge=0, le=1, description="probability a device is stuck at g_max")

    # Tiles (aihwkit MappingParameter semantics; 0 means no limit).
    max_in: int = Field(512, ge=0)
    max_out: int = Field(512, ge=0)

    # Periphery (aihwkit IOParameters semantics; 0 means off / unbounded).
    inp_res: float = Field(0.0, ge=0)
    out_res: float = Field(0.0, ge=0)
    out_noise: float = Field(0.0, ge=0)
    inp_bound: float = Field(0.0, ge=0)
    out_bound: float = Field(0.0, ge=0)
    bound_management: Literal["iterative", "none"] = "iterative"

    # Array effects (off by default). Conductance levels and device-to-device variation
    # of the range, applied at programming:
    levels: Optional[Union[int, list[float]]] = Field(
        None, description="programmable conductance levels: N equally spaced on [g_min, g_max], or a list in uS"
    )
    g_max_variation: float = Field(0.0, ge=0, description="relative standard deviation of each device's g_max")
    g_min_variation: float = Field(0.0, ge=0, description="relative standard deviation of each device's g_min")
    # Spatially correlated faults, per tile: word lines (rows: one input, all its
    # devices), bit lines (columns: one device of one output), clusters around seed cells.
    p_row_fault: float = Field(0.0, ge=0, le=1, description="probability a tile's row (word line) is stuck")
    p_col_fault: float = Field(0.0, ge=0, le=1, description="probability a tile's column (bit line) is stuck")
    p_cluster: float = Field(0.0, ge=0, le=1, description="probability a cell seeds a cluster of stuck cells")
    cluster_radius: float = Field(1.0, ge=0, description="radius of a fault cluster, in cells")
    fault_sa1_share: float = Field(
        0.0, ge=0, le=1, description="share of failed rows, columns and clusters stuck at g_max (the rest at g_min)"
    )
    # Periphery non-idealities of aihwkit's C++ tiles (IOParameters meaning).
    ir_drop: float = Field(0.0, ge=0, description="scale of aihwkit's steady-state IR drop along the inputs")
    ir_drop_g_ratio: float = Field(IR_DROP_G_RATIO, gt=0, description="wire conductance over a device's g_max")
    w_noise: float = Field(0.0, ge=0, description="output-referred weight noise (aihwkit's w_noise)")
    w_noise_type: Literal["none", "additive_constant", "pcm_read"] = "none"
    out_nonlinearity: float = Field(0.0, ge=0, description="S-shaped output non-linearity y / (1 + n_i |y|)")
    out_nonlinearity_std: float = Field(0.0, ge=0, description="output-to-output variation of n_i")
    slope_calibration: float = Field(0.0, ge=0, description="y / out_bound where the non-linearity's slope is 1")

    _noise_model: Optional[BaseNoiseModel] = PrivateAttr(None)

    @model_validator(mode="before")
    @classmethod
    def _expand_fault_profile(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and data.get("faults") is not None:
            profile = data["faults"]
            if profile not in FAULT_PROFILES:
                raise ValueError(
                    f"faults: unknown fault profile {profile!r}{did_you_mean(profile, FAULT_PROFILES)}; "
                    f"known: {', '.join(FAULT_PROFILES)}"
                )
            if "p_sa0" in data or "p_sa1" in data:
                raise ValueError("give either faults (a profile) or p_sa0/p_sa1, not both")
            data = dict(data)
            data["p_sa0"] = FAULT_PROFILES[profile]["p_sa0"]
            data["p_sa1"] = FAULT_PROFILES[profile]["p_sa1"]
        return data

    @model_validator(mode="after")
    def _check_consistency(self) -> "_PresetBase":
        allowed = self.physics.params
        for param in ALL_PARAMS:
            if getattr(self, param) is not None and param not in allowed:
                raise ValueError(
                    f"{param} does not apply to noise={self.noise!r}; its parameters are: "
                    f"{', '.join(allowed) or 'none'}"
                )
        if self.p_sa0 + self.p_sa1 > 1:
            raise ValueError(
                f"p_sa0 + p_sa1 = {self.p_sa0 + self.p_sa1:g} exceeds 1; each device is stuck at most one way"
            )
        if self.resolved_g_min >= self.resolved_g_max:
            raise ValueError(
                f"g_min ({self.resolved_g_min:g} uS) must be smaller than g_max ({self.resolved_g_max:g} uS)"
            )
        kind = self.resolved_converter
        if kind in ("dual_pair", "n_pair"):
            if not self.f_lst or any(f <= 0 for f in self.f_lst):
                raise ValueError(f"g_converter={kind!r} needs f_lst, a list of positive factors")
            if kind == "dual_pair" and len(self.f_lst) != 2:
                raise ValueError("g_converter='dual_pair' needs exactly two factors in f_lst")
        elif self.f_lst is not None:
            raise ValueError("f_lst only applies to g_converter 'dual_pair' or 'n_pair'")
        for res, bound in (("inp_res", "inp_bound"), ("out_res", "out_bound")):
            if getattr(self, res) > 0 and getattr(self, bound) <= 0:
                raise ValueError(f"{res} > 0 needs {bound} > 0 (quantisation is relative to the bound)")
        self._check_array_effects()
        return self

    def _check_array_effects(self) -> None:
        g_min, g_max = self.resolved_g_min, self.resolved_g_max
        levels = self.levels
        if isinstance(levels, bool) or (isinstance(levels, int) and levels < 2):
            raise ValueError(f"levels must be an integer >= 2 or a list of at least 2 conductances, got {levels!r}")
        if isinstance(levels, list):
            if len(levels) < 2 or len(set(levels)) < len(levels):
                raise ValueError(f"levels: a list needs at least 2 different conductances, got {levels!r}")
            outside = [v for v in levels if not g_min <= v <= g_max]
            if outside:
                raise ValueError(f"levels: {outside[0]:g} uS lies outside [g_min, g_max] = [{g_min:g}, {g_max:g}] uS")
            if g_min not in levels or g_max not in levels:
                raise ValueError(f"levels: the list must hold g_min ({g_min:g} uS) and g_max ({g_max:g} uS), the "
                                 "conductances of a zero and of the largest weight")
        if self.g_min_variation > 0 and g_min == 0:
            raise ValueError("g_min_variation is relative to g_min, which is 0 uS for this preset; "
                             "set g_min > 0 or leave g_min_variation at 0")
        if self.g_max_variation > 0 or self.g_min_variation > 0:
            lo = g_max * (1 - PLAUSIBLE_SIGMAS * self.g_max_variation)
            hi = g_min * (1 + PLAUSIBLE_SIGMAS * self.g_min_variation)
            if lo <= hi:
                raise ValueError(
                    f"g_max_variation {self.g_max_variation:g} and g_min_variation {self.g_min_variation:g} give "
                    f"a device {PLAUSIBLE_SIGMAS:g} standard deviations out g_max {lo:.3g} uS <= g_min {hi:.3g} uS; "
                    f"allowed: g_max (1 - {PLAUSIBLE_SIGMAS:g} g_max_variation) > g_min (1 + "
                    f"{PLAUSIBLE_SIGMAS:g} g_min_variation)"
                )
        if self.w_noise > 0 and self.w_noise_type == "none":
            raise ValueError("w_noise > 0 needs w_noise_type: additive_constant or pcm_read (aihwkit's "
                             "WeightNoiseType); with 'none' aihwkit adds no weight noise")
        if self.out_nonlinearity == 0 and (self.out_nonlinearity_std > 0 or self.slope_calibration > 0):
            raise ValueError("out_nonlinearity_std and slope_calibration shape the output non-linearity: "
                             "set out_nonlinearity > 0 too")

    @property
    def array_effects(self) -> dict[str, Any]:
        """The array effects switched on, with the parameters that shape them."""
        on: dict[str, Any] = {}
        for name, companions in ARRAY_EFFECTS.items():
            value = getattr(self, name)
            if value is not None and value != 0:
                on[name] = value
                on.update({c: getattr(self, c) for c in companions})
        return on

    # --- resolved values ---------------------------------------------------------

    @property
    def physics(self) -> Physics:
        return PHYSICS[self.noise]

    @property
    def resolved_converter(self) -> str:
        return self.g_converter or self.physics.converter

    @property
    def resolved_g_max(self) -> float:
        return self.g_max if self.g_max is not None else self.physics.g_max

    @property
    def resolved_g_min(self) -> float:
        return self.g_min if self.g_min is not None else self.physics.g_min

    @property
    def devices_per_weight(self) -> int:
        kind = self.resolved_converter
        if kind == "single_device":
            return 1
        return 2 * len(self.f_lst) if kind in ("dual_pair", "n_pair") else 2

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the device physics (see :attr:`crossbar.physics.Physics.exact`)."""
        return torch.float64 if self.physics.exact else torch.float32

    def physics_device(self, device: torch.device) -> torch.device:
        """Where the device physics runs: with the weights, or on the CPU for a CPU-only model."""
        return torch.device("cpu") if self.physics.cpu_only else device

    @property
    def times(self) -> Optional[tuple[float, ...]]:
        """The inference times the physics is defined at, or None for any time >= 0."""
        return self.physics.times(self.noise_model)

    @property
    def noise_model(self) -> BaseNoiseModel:
        """The aihwkit noise model instance this preset simulates with."""
        if self._noise_model is None:
            converter_cls = _CONVERTERS[self.resolved_converter]
            g_max, g_min = self.resolved_g_max, self.resolved_g_min
            extra = {"f_lst": list(self.f_lst)} if self.f_lst is not None else {}
            converter = converter_cls(g_max=g_max, g_min=g_min, **extra)
            params = {k: getattr(self, k) for k in self.physics.params if getattr(self, k) is not None}
            self._noise_model = self.physics.make(converter, g_max, g_min, **params)
        return self._noise_model

    @property
    def drift_compensation_model(self) -> Optional[GlobalDriftCompensation]:
        return GlobalDriftCompensation() if self.drift_compensation else None

    def full_spec(self) -> dict[str, Any]:
        """Every parameter as plain data, defaults resolved (the conductance range, the
        physics' own parameter values, the fault rates of a profile): what a run
        records, and ``make_preset(spec)`` simulates the same devices."""
        data = self.model_dump(exclude={"faults", *ALL_PARAMS, *_ARRAY_FIELDS})
        data.update(g_max=self.resolved_g_max, g_min=self.resolved_g_min, g_converter=self.resolved_converter)
        if data["f_lst"] is None:
            del data["f_lst"]
        data.update(self.physics.resolved_params(self.noise_model))
        data.update(self.array_effects)  # only those switched on: off, a device is as it always was
        return data

    def check_time(self, t_inference: Any) -> float:
        """``t_inference`` in seconds (a number, or a duration such as ``"1d"``), or a
        ValueError if this preset cannot simulate it."""
        if isinstance(t_inference, str):
            try:
                t = parse_duration(t_inference)
            except ValueError as e:
                raise ValueError(f"t_inference: {e}") from None
        else:
            try:
                t = float(t_inference)
            except (TypeError, ValueError):
                raise ValueError(f"t_inference must be a number of seconds or a duration such as '1d', "
                                 f"got {t_inference!r}") from None
        if not math.isfinite(t) or t < 0:
            raise ValueError(
                f"t_inference must be a finite time >= 0 s (seconds since programming), got {t_inference!r}"
            )
        allowed = self.times
        label = repr(self.name) if self.name == self.noise else f"{self.name!r} ({self.noise})"
        if allowed is not None and t not in allowed:
            raise ValueError(
                f"preset {label} is only defined at t_inference = {', '.join(in_words(a) for a in allowed)}; "
                f"got {t:g} s"
            )
        read_time = self.physics.read_time(self.noise_model)
        if 0 < t < read_time:
            # e.g. aihwkit's CMO read noise there is sqrt(log(x)) of an x < 1: NaN conductances
            raise ValueError(
                f"preset {label} is defined at t_inference = 0 s (programming only) and from its read time "
                f"t_read = {read_time:g} s on, not in between; got {t:g} s"
            )
        return t

    def with_overrides(self, **overrides: Any) -> "Preset":
        """A copy with some fields changed, validated again."""
        data = self._set_fields()
        if ("p_sa0" in overrides or "p_sa1" in overrides) and "faults" not in overrides:
            data.pop("faults", None)  # explicit probabilities replace a fault profile
        return _validated(overrides.get("name", self.name), {**data, **overrides})

    def _set_fields(self) -> dict[str, Any]:
        data = self.model_dump(exclude_unset=True)
        if "faults" in data and data["faults"] is not None:
            data.pop("p_sa0", None)
            data.pop("p_sa1", None)
        return data


_ARRAY_FIELDS = frozenset(
    [*ARRAY_EFFECTS, *(c for companions in ARRAY_EFFECTS.values() for c in companions)]
)


#: The array effects' numeric parameters: any device can sweep them, though a device
#: records them only when they are on.
NUMERIC_ARRAY_FIELDS = tuple(sorted(f for f in _ARRAY_FIELDS if f != "w_noise_type"))


def _physics_fields() -> dict[str, Any]:
    fields = {}
    for name, param in ALL_PARAMS.items():
        if param.choices is not None:
            fields[name] = (Optional[Literal[param.choices]], Field(None, description=param.description))
        else:
            fields[name] = (Optional[float], Field(None, gt=param.gt, ge=param.ge, description=param.description))
    return fields


Preset = create_model(
    "Preset",
    __base__=_PresetBase,
    __module__=__name__,
    __doc__="""A memristor technology and the crossbar around it.

    Unset (``None``) physics parameters take the aihwkit noise model's own default;
    :meth:`full_spec` lists the values used.
    """,
    **_physics_fields(),
)


_PRESETS: dict[str, Preset] = {}


def register_preset(preset: Preset) -> Preset:
    """Make ``preset`` available to :func:`get_preset` under ``preset.name``."""
    _PRESETS[preset.name] = preset
    return preset


for _spec in (
    dict(
        name="ideal",
        noise="ideal",
        description="exact conductances: the digital reference (add faults to study them alone)",
    ),
    dict(
        name="pcm",
        noise="pcm",
        drift_compensation=True,
        description="phase-change memory, aihwkit PCMLikeNoiseModel (Nandakumar et al. 2019): "
        "programming noise, 1/f read noise, power-law drift; global drift compensation on",
    ),
    dict(
        name="reram_wan2022",
        noise="reram_wan2022",
        description="ReRAM fitted to Wan et al., Nature 2022 (aihwkit ReRamWan2022NoiseModel); "
        "defined at 1 s, 1 day and 2 days only",
    ),
    dict(
        name="reram_cmo",
        noise="reram_cmo",
        description="CMO/HfOx ReRAM (aihwkit ReRamCMONoiseModel): programming noise, "
        "log-time conductance relaxation, read noise; one device per weight",
    ),
    dict(
        name="lognormal",
        noise="lognormal",
        sigma=0.5,
        description="BayesFT weight drift w' = w exp(theta), theta ~ N(0, sigma^2) "
        "(Ye et al., DAC 2021); time-independent",
    ),
):
    register_preset(Preset(**_spec))


def list_presets() -> list[str]:
    """Names accepted by :func:`get_preset`."""
    return sorted(_PRESETS)


def builtin_preset(name: str) -> Optional[Preset]:
    """The registered preset called ``name``, or None."""
    return _PRESETS.get(name)


def _friendly(name: str, err: ValidationError) -> ValueError:
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"])
        msg = error_text(e)
        if e["type"] == "extra_forbidden":
            fields = [f for f in Preset.model_fields if f not in ("name", "description")]
            parts.append(f"unknown parameter {loc!r}{did_you_mean(loc, fields)}; allowed: {', '.join(fields)}")
        elif loc:
            parts.append(f"{loc}: {msg} (got {e.get('input')!r})")
        else:
            parts.append(msg)
    return ValueError(f"preset {name!r}: " + "; ".join(parts))


def _validated(name: str, data: Mapping[str, Any]) -> Preset:
    try:
        return Preset.model_validate(dict(data))
    except ValidationError as err:
        raise _friendly(name, err) from None


def get_preset(name: "str | Preset", /, **overrides: Any) -> Preset:
    """The preset called ``name`` (see :func:`list_presets`), with ``overrides`` applied.

    ``get_preset("pcm", g_max=20.0, faults="chen2015", drift_compensation=False)``
    """
    if isinstance(name, Preset):
        return name.with_overrides(**overrides) if overrides else name
    if name not in _PRESETS:
        raise ValueError(f"unknown preset {name!r}{did_you_mean(name, list_presets())}; "
                         f"valid presets: {', '.join(list_presets())}")
    base = _PRESETS[name]
    if not overrides:
        return base
    return base.with_overrides(**overrides)


def make_preset(spec: Mapping[str, Any]) -> Preset:
    """Build a preset from a plain mapping (e.g. a YAML block).

    Either ``base: <preset name>`` plus overrides, or ``noise: <physics>`` plus
    parameters; a mapping with neither, named after a built-in preset, is that preset
    with overrides. ``name`` defaults to ``"custom"``.
    """
    if not isinstance(spec, Mapping):
        raise ValueError(f"a preset must be a mapping, got {type(spec).__name__}")
    data = dict(spec)
    base = data.pop("base", None)
    if base is None and "noise" not in data and data.get("name") in _PRESETS:
        base = data["name"]  # {name: pcm, p_sa0: 0.02}: the built-in preset, changed
    name = data.get("name", base or "custom")
    if base is not None:
        if "noise" in data:
            raise ValueError(f"preset {name!r}: give either base or noise, not both")
        return get_preset(base, **{"name": name, **data})
    if "noise" not in data and set(data) == {"name"}:  # {name: pcmm}: a misspelt preset name
        get_preset(name)
    if "noise" not in data:
        raise ValueError(
            f"preset {name!r}: needs 'base' (one of {', '.join(list_presets())}) or 'noise' "
            f"(one of {', '.join(PHYSICS)})"
        )
    return _validated(name, data)


def resolve_preset(preset: "str | Preset | Mapping[str, Any]") -> Preset:
    """Accept a preset, a preset name or a mapping."""
    if isinstance(preset, Preset):
        return preset
    if isinstance(preset, str):
        return get_preset(preset)
    if isinstance(preset, Mapping):
        return make_preset(preset)
    raise ValueError(f"preset must be a name, a Preset or a mapping, got {type(preset).__name__}")
