"""Device presets: which physics, which conductance range, which faults, which periphery.

A :class:`Preset` is plain, validated data (pydantic): the ``physics`` (a kind of
:data:`crossbar.physics.PHYSICS`, whose parameters are fields of the preset), and one
group of settings each for the mapping, stuck-at faults, tiles, the periphery and the
array effects (:mod:`crossbar.groups`). Given and read flat: ``preset.g_max``,
``get_preset("pcm", g_max=20)``, a scenario's ``{base: pcm, g_max: 20}``.
``preset.noise_model`` builds the aihwkit noise model that the simulator calls.

:func:`preset` is the one way in: a name (with overrides), a mapping (the form a
scenario's YAML block takes: ``base: NAME`` plus overrides, or ``physics: KIND`` plus
parameters) or a :class:`Preset`. :func:`register_preset` and :func:`list_presets`
keep the table of named presets.

Units follow aihwkit: conductances in microsiemens, times in seconds since programming
ended (readable durations such as ``"1d"`` are accepted too).
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, Mapping, Optional

import torch
from aihwkit.inference.compensation.drift import GlobalDriftCompensation, PerColumnDriftCompensation
from aihwkit.inference.converter.conductance import (
    DualPairConductanceConverter,
    NPairConductanceConverter,
    SingleDeviceConductanceConverter,
    SinglePairConductanceConverter,
)
from aihwkit.inference.noise.base import BaseNoiseModel
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    create_model,
    model_validator,
)

from .common import did_you_mean, error_text
from .durations import in_words, parse_duration
from .groups import (
    AIHWKIT_PERIPHERY,
    ARRAY_EFFECTS,
    ARRAY_FIELDS,
    FAULT_PROFILES,
    GROUP_OF,
    GROUPS,
    IR_DROP_G_RATIO,
    NUMERIC_ARRAY_FIELDS,
    Architecture,
    ArrayEffects,
    Calibration,
    ConductanceMapping,
    PeripherySettings,
    StuckAt,
    Tiles,
    check_architecture,
    nest,
)
from .physics import ALL_PARAMS, PHYSICS, Physics

__all__ = ["AIHWKIT_PERIPHERY", "ARRAY_EFFECTS", "FAULT_PROFILES", "IR_DROP_G_RATIO", "NUMERIC_ARRAY_FIELDS", "Preset"]

_CONVERTERS = {
    "single_pair": SinglePairConductanceConverter,
    "single_device": SingleDeviceConductanceConverter,
    "dual_pair": DualPairConductanceConverter,
    "n_pair": NPairConductanceConverter,
}

#: Standard deviations a device may lie off its nominal conductance range for the
#: variation check: a preset whose device this far out has g_min >= g_max is refused.
PLAUSIBLE_SIGMAS = 3.0


_PARAMS: dict[tuple, type[BaseModel]] = {}


def _params_model() -> type[BaseModel]:
    """The physics parameters of every registered kind as one model (made again once a
    kind is registered): a float with its bounds, or one of its choices; None is unset."""
    key = tuple(ALL_PARAMS)
    if key not in _PARAMS:
        fields: dict[str, Any] = {}
        for name, param in ALL_PARAMS.items():
            if param.choices is not None:
                fields[name] = (Optional[Literal[param.choices]], Field(None, description=param.description))
            else:
                fields[name] = (Optional[float], Field(None, gt=param.gt, ge=param.ge, description=param.description))
        config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
        _PARAMS[key] = create_model("PhysicsParameters", __config__=config, **fields)
    return _PARAMS[key]


def _params(values: Any) -> dict[str, Any]:
    return _params_model().model_validate(values or {}).model_dump(exclude_unset=True)


def _kind(name: Any) -> str:
    if name not in PHYSICS:
        raise ValueError(f"unknown physics {name!r}{did_you_mean(name, PHYSICS)}; valid: {', '.join(PHYSICS)}")
    return name


class Preset(BaseModel):
    """A memristor technology and the crossbar around it.

    Fields: ``name``, ``description``, ``physics`` (a kind of :data:`crossbar.physics.PHYSICS`),
    ``params`` (its parameters that are set; they read flat: ``preset.sigma``), and the
    groups ``mapping``, ``stuck_at``, ``tiles``, ``periphery``, ``effects`` and ``architecture``
    (:mod:`crossbar.groups`), whose fields read flat too (``preset.g_max`` is
    ``preset.mapping.g_max``). Unset physics parameters take the aihwkit noise model's
    own default; :meth:`full_spec` lists the values used.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str = "custom"
    description: str = ""
    physics: Annotated[str, AfterValidator(_kind)] = Field(description="which device physics (noise model) to use")
    params: Annotated[dict[str, Any], BeforeValidator(_params)] = Field(
        default_factory=dict, description="the physics' parameters that are set (the others: the model's defaults)")
    mapping: ConductanceMapping = Field(default_factory=ConductanceMapping)
    stuck_at: StuckAt = Field(default_factory=StuckAt)
    tiles: Tiles = Field(default_factory=Tiles)
    periphery: PeripherySettings = Field(default_factory=PeripherySettings)
    effects: ArrayEffects = Field(default_factory=ArrayEffects)
    architecture: Architecture = Field(default_factory=Architecture)
    calibrations: Calibration = Field(default_factory=Calibration)

    _noise_model: Optional[BaseNoiseModel] = PrivateAttr(None)

    @model_validator(mode="before")
    @classmethod
    def _flat_in(cls, data: Any) -> Any:
        """Flat settings into their groups and the physics' parameters into ``params``;
        ``noise`` (the old name of ``physics``) and a fault profile (``faults: chen2015``,
        its two probabilities) resolved."""
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        given = {k: data.pop(k) for k in list(data) if k in ALL_PARAMS}
        if given:
            data["params"] = {**(data.get("params") or {}), **given}
        if "noise" in data:
            noise = data.pop("noise")
            if data.setdefault("physics", noise) != noise:
                raise ValueError(f"give physics (or its old name noise) once, not physics={data['physics']!r} "
                                 f"and noise={noise!r}")
        stuck = data.get("stuck_at") if isinstance(data.get("stuck_at"), Mapping) else data
        if stuck.get("faults") is not None:
            profile = stuck["faults"]
            if profile not in FAULT_PROFILES:
                raise ValueError(
                    f"faults: unknown fault profile {profile!r}{did_you_mean(profile, FAULT_PROFILES)}; "
                    f"known: {', '.join(FAULT_PROFILES)}"
                )
            if "p_sa0" in stuck or "p_sa1" in stuck:
                raise ValueError("give either faults (a profile) or p_sa0/p_sa1, not both")
            stuck = dict(stuck, p_sa0=FAULT_PROFILES[profile]["p_sa0"], p_sa1=FAULT_PROFILES[profile]["p_sa1"])
            if "stuck_at" in data and isinstance(data["stuck_at"], Mapping):
                data["stuck_at"] = stuck
            else:
                data = stuck
        return nest(data)

    @model_validator(mode="after")
    def _check_consistency(self) -> "Preset":
        allowed = self.kind.params
        for param, value in self.params.items():
            if value is not None and param not in allowed:
                raise ValueError(
                    f"{param} does not apply to physics={self.physics!r}; its parameters are: "
                    f"{', '.join(allowed) or 'none'}"
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
        self._check_array_effects()
        check_architecture(self.architecture, self.periphery, self.levels, self.drift_compensation, self.calibrations)
        if self.input_range_percentile is not None and not (self.inp_res > 0 or self.inp_bound > 0):
            raise ValueError(f"input_range_percentile = {self.input_range_percentile:g} sets the DAC's input range, "
                             "but this preset has no DAC (inp_res and inp_bound are 0); allowed: set inp_res and "
                             "inp_bound (e.g. crossbar.AIHWKIT_PERIPHERY), or leave input_range_percentile unset")
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
    def kind(self) -> Physics:
        """The record of the preset's physics (:data:`crossbar.physics.PHYSICS`)."""
        return PHYSICS[self.physics]

    @property
    def noise(self) -> str:
        """The old name of :attr:`physics`."""
        return self.physics

    @property
    def resolved_converter(self) -> str:
        return self.g_converter or self.kind.converter

    @property
    def resolved_g_max(self) -> float:
        return self.g_max if self.g_max is not None else self.kind.g_max

    @property
    def resolved_g_min(self) -> float:
        return self.g_min if self.g_min is not None else self.kind.g_min

    @property
    def devices_per_weight(self) -> int:
        kind = self.resolved_converter
        if kind == "single_device":
            return 1
        return 2 * len(self.f_lst) if kind in ("dual_pair", "n_pair") else 2

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the device physics (see :attr:`crossbar.physics.Physics.exact`)."""
        return torch.float64 if self.kind.exact else torch.float32

    def physics_device(self, device: torch.device) -> torch.device:
        """Where the device physics runs: with the weights, or on the CPU for a CPU-only model."""
        return torch.device("cpu") if self.kind.cpu_only else device

    @property
    def times(self) -> Optional[tuple[float, ...]]:
        """The inference times the physics is defined at, or None for any time >= 0."""
        return self.kind.times(self.noise_model)

    @property
    def noise_model(self) -> BaseNoiseModel:
        """The aihwkit noise model instance this preset simulates with."""
        if self._noise_model is None:
            converter_cls = _CONVERTERS[self.resolved_converter]
            g_max, g_min = self.resolved_g_max, self.resolved_g_min
            extra = {"f_lst": list(self.f_lst)} if self.f_lst is not None else {}
            converter = converter_cls(g_max=g_max, g_min=g_min, **extra)
            params = {k: v for k, v in self.params.items() if v is not None}
            self._noise_model = self.kind.make(converter, g_max, g_min, **params)
        return self._noise_model

    @property
    def drift_compensation_model(self) -> "GlobalDriftCompensation | PerColumnDriftCompensation | None":
        """aihwkit's compensation the preset's ``drift_compensation`` names, or None."""
        kinds = {"global": GlobalDriftCompensation, "per_column": PerColumnDriftCompensation}
        kind = kinds.get(self.mapping.drift_compensation_kind)
        return None if kind is None else kind()

    def flat(self, exclude_unset: bool = False) -> dict[str, Any]:
        """The fields as one flat mapping (the form YAML and overrides take), the
        groups' fields in their order; ``exclude_unset``: only those given."""
        top = self.model_dump(exclude={"params", *GROUPS}, exclude_unset=exclude_unset)
        data = {k: top[k] for k in ("name", "description", "physics") if k in top}
        for group in GROUPS:
            data.update(getattr(self, group).model_dump(exclude_unset=exclude_unset))
        data.update(self.params if exclude_unset else {k: self.params.get(k) for k in self.kind.params})
        return data

    def full_spec(self) -> dict[str, Any]:
        """Every parameter as plain data, defaults resolved (the conductance range, the
        physics' own parameter values, the fault rates of a profile): what a run
        records, and ``make_preset(spec)`` simulates the same devices. ``noise`` repeats
        ``physics`` under its old name, for readers of earlier records."""
        data = {k: v for k, v in self.flat().items() if k not in ("faults", *self.kind.params, *ARRAY_FIELDS)}
        data = {"name": data.pop("name"), "description": data.pop("description"), "physics": data.pop("physics"),
                "noise": self.physics, **data}
        data.update(g_max=self.resolved_g_max, g_min=self.resolved_g_min, g_converter=self.resolved_converter)
        if data["f_lst"] is None:
            del data["f_lst"]
        data.update(self.kind.resolved_params(self.noise_model))
        data.update(self.array_effects)  # only those switched on: off, a device is as it always was
        for name, info in Architecture.model_fields.items():  # likewise the architecture: only what is set
            if data.get(name) == info.default:
                del data[name]
        if not self.calibrations.calibrates:  # off, a chip calibrates nothing and its record is as it always was
            for name, info in Calibration.model_fields.items():
                if data.get(name) == info.default:
                    del data[name]
        return data

    def changes_from(self, base: "Preset") -> dict[str, Any]:
        """The parameters whose values differ from ``base``'s, as :meth:`full_spec`
        records them (an array effect's companion at its default is no change)."""
        full, reference = self.full_spec(), base.full_spec()
        defaults = {**{f: info.default for model in GROUPS.values() for f, info in model.model_fields.items()},
                    **{f: info.default for f, info in type(self).model_fields.items()}}
        return {k: v for k, v in full.items() if k not in ("name", "description", "noise")
                and v != reference.get(k, defaults.get(k))}

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
        label = repr(self.name) if self.name == self.physics else f"{self.name!r} ({self.physics})"
        if allowed is not None and t not in allowed:
            raise ValueError(
                f"preset {label} is only defined at t_inference = {', '.join(in_words(a) for a in allowed)}; "
                f"got {t:g} s"
            )
        read_time = self.kind.read_time(self.noise_model)
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
        if "noise" in overrides and "physics" not in overrides:  # the old name, as an override: the physics
            overrides = {("physics" if k == "noise" else k): v for k, v in overrides.items()}
        if ("p_sa0" in overrides or "p_sa1" in overrides) and "faults" not in overrides:
            data.pop("faults", None)  # explicit probabilities replace a fault profile
        return validated_preset(overrides.get("name", self.name), {**data, **overrides})

    def _set_fields(self) -> dict[str, Any]:
        data = self.flat(exclude_unset=True)
        if data.get("faults") is not None:
            data.pop("p_sa0", None)
            data.pop("p_sa1", None)
        return data


def _flat_property(group: str, name: str) -> property:
    return property(lambda self: getattr(getattr(self, group), name), doc=f"``{group}.{name}``")


for _name, _group in GROUP_OF.items():  # preset.g_max reads preset.mapping.g_max
    setattr(Preset, _name, _flat_property(_group, _name))



def _param_attribute(self: Preset, name: str) -> Any:
    """``preset.sigma``: a physics parameter reads flat too (None where unset)."""
    if name in ALL_PARAMS:
        return self.params.get(name)
    return BaseModel.__getattr__(self, name)


Preset.__getattr__ = _param_attribute  # type: ignore[method-assign]


def flat_fields() -> list[str]:
    """The parameters a preset takes flat: the groups' fields and every kind's parameters."""
    return ["physics", *GROUP_OF, *ALL_PARAMS]


def _friendly(name: str, err: ValidationError) -> ValueError:
    parts = []
    for e in err.errors():
        at = e["loc"][1:] if e["loc"] and e["loc"][0] in ("params", *GROUPS) else e["loc"]  # flat, as given
        loc = ".".join(str(x) for x in at)
        msg = error_text(e)
        if e["type"] == "extra_forbidden":
            fields = flat_fields()
            parts.append(f"unknown parameter {loc!r}{did_you_mean(loc, fields)}; allowed: {', '.join(fields)}")
        elif loc and e["type"] != "value_error":
            parts.append(f"{loc}: {msg} (got {e.get('input')!r})")
        elif loc:
            parts.append(f"{loc}: {msg}")
        else:
            parts.append(msg)
    return ValueError(f"preset {name!r}: " + "; ".join(parts))


def validated_preset(name: str, data: Mapping[str, Any]) -> Preset:
    try:
        return Preset.model_validate(dict(data))
    except ValidationError as err:
        raise _friendly(name, err) from None
