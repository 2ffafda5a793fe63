"""The groups of a preset's settings, one sub-model each: how weights map onto
conductances, stuck-at faults, tiles, the periphery, and the array effects applied at
programming.

A :class:`crossbar.Preset` holds one of each (``preset.mapping``, ``preset.stuck_at``,
``preset.tiles``, ``preset.periphery``, ``preset.effects``), while YAML, overrides and
attribute access stay flat: ``get_preset("pcm", g_max=20)``, ``preset.g_max``. A field's
name is the same in its group and flat, and unique across groups (:data:`GROUP_OF`).
The periphery group is what the simulator's :class:`crossbar.periphery.Periphery` runs with.

Units follow aihwkit: conductances in microsiemens; the periphery's fields have the
meaning of aihwkit's ``IOParameters`` (0 means off or unbounded).
"""

from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

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

#: The array effects (all off by default) and, for each, the parameters that only mean
#: something when it is on: what :meth:`crossbar.Preset.full_spec` records when an
#: effect is on. The periphery's (IR drop, weight noise, the output non-linearity) are
#: fields of :class:`PeripherySettings`; the others of :class:`ArrayEffects`.
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


class Group(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ConductanceMapping(Group):
    """Weights onto conductances (uS); None takes the physics' default."""

    g_max: Optional[float] = Field(None, gt=0, description="maximal conductance, uS")
    g_min: Optional[float] = Field(None, ge=0, description="minimal conductance, uS")
    g_converter: Optional[Literal["single_pair", "dual_pair", "n_pair", "single_device"]] = None
    f_lst: Optional[list[float]] = Field(None, description="significance factors of the pairs (dual_pair, n_pair)")
    drift_compensation: bool = False


class StuckAt(Group):
    """Stuck-at faults, on top of the physics: a profile, or the two probabilities."""

    faults: Optional[str] = None
    p_sa0: float = Field(0.0, ge=0, le=1, description="probability a device is stuck at g_min")
    p_sa1: float = Field(0.0, ge=0, le=1, description="probability a device is stuck at g_max")

    @model_validator(mode="after")
    def _at_most_one_way(self) -> "StuckAt":
        if self.p_sa0 + self.p_sa1 > 1:
            raise ValueError(
                f"p_sa0 + p_sa1 = {self.p_sa0 + self.p_sa1:g} exceeds 1; each device is stuck at most one way"
            )
        return self


class Tiles(Group):
    """Tiles (aihwkit ``MappingParameter`` semantics; 0 means no limit)."""

    max_in: int = Field(512, ge=0)
    max_out: int = Field(512, ge=0)


class PeripherySettings(Group):
    """DAC, ADC, output noise and bounds (aihwkit ``IOParameters`` semantics; 0 means off
    or unbounded), and the non-idealities of aihwkit's C++ tiles between the product and
    the ADC (IR drop, output-referred weight noise, output non-linearity)."""

    inp_res: float = Field(0.0, ge=0)
    out_res: float = Field(0.0, ge=0)
    out_noise: float = Field(0.0, ge=0)
    inp_bound: float = Field(0.0, ge=0)
    out_bound: float = Field(0.0, ge=0)
    bound_management: Literal["iterative", "none"] = "iterative"
    ir_drop: float = Field(0.0, ge=0, description="scale of aihwkit's steady-state IR drop along the inputs")
    ir_drop_g_ratio: float = Field(IR_DROP_G_RATIO, gt=0, description="wire conductance over a device's g_max")
    w_noise: float = Field(0.0, ge=0, description="output-referred weight noise (aihwkit's w_noise)")
    w_noise_type: Literal["none", "additive_constant", "pcm_read"] = "none"
    out_nonlinearity: float = Field(0.0, ge=0, description="S-shaped output non-linearity y / (1 + n_i |y|)")
    out_nonlinearity_std: float = Field(0.0, ge=0, description="output-to-output variation of n_i")
    slope_calibration: float = Field(0.0, ge=0, description="y / out_bound where the non-linearity's slope is 1")

    @model_validator(mode="after")
    def _consistent(self) -> "PeripherySettings":
        for res, bound in (("inp_res", "inp_bound"), ("out_res", "out_bound")):
            if getattr(self, res) > 0 and getattr(self, bound) <= 0:
                raise ValueError(f"{res} > 0 needs {bound} > 0 (quantisation is relative to the bound)")
        if self.w_noise > 0 and self.w_noise_type == "none":
            raise ValueError("w_noise > 0 needs w_noise_type: additive_constant or pcm_read (aihwkit's "
                             "WeightNoiseType); with 'none' aihwkit adds no weight noise")
        if self.out_nonlinearity == 0 and (self.out_nonlinearity_std > 0 or self.slope_calibration > 0):
            raise ValueError("out_nonlinearity_std and slope_calibration shape the output non-linearity: "
                             "set out_nonlinearity > 0 too")
        return self

    @property
    def weight_noise(self) -> bool:
        return self.w_noise > 0 and self.w_noise_type != "none"

    @property
    def lines(self) -> bool:
        """Whether any of the C++ tiles' non-idealities between product and ADC is on."""
        return self.ir_drop > 0 or self.weight_noise or self.out_nonlinearity > 0

    @property
    def perfect(self) -> bool:
        """No stage of the periphery acts: the product is exact."""
        return not any((self.inp_res, self.out_res, self.out_noise, self.inp_bound, self.out_bound)) and not self.lines


class ArrayEffects(Group):
    """Array effects applied at programming (off by default): conductance levels,
    device-to-device variation of the range, and spatially correlated faults per tile:
    word lines (rows: one input, all its devices), bit lines (columns: one device of one
    output), clusters around seed cells."""

    levels: Optional[Union[int, list[float]]] = Field(
        None, description="programmable conductance levels: N equally spaced on [g_min, g_max], or a list in uS"
    )
    g_max_variation: float = Field(0.0, ge=0, description="relative standard deviation of each device's g_max")
    g_min_variation: float = Field(0.0, ge=0, description="relative standard deviation of each device's g_min")
    p_row_fault: float = Field(0.0, ge=0, le=1, description="probability a tile's row (word line) is stuck")
    p_col_fault: float = Field(0.0, ge=0, le=1, description="probability a tile's column (bit line) is stuck")
    p_cluster: float = Field(0.0, ge=0, le=1, description="probability a cell seeds a cluster of stuck cells")
    cluster_radius: float = Field(1.0, ge=0, description="radius of a fault cluster, in cells")
    fault_sa1_share: float = Field(
        0.0, ge=0, le=1, description="share of failed rows, columns and clusters stuck at g_max (the rest at g_min)"
    )


#: The groups of a preset, by attribute name, in the order of a flat listing.
GROUPS: dict[str, type[Group]] = {
    "mapping": ConductanceMapping,
    "stuck_at": StuckAt,
    "tiles": Tiles,
    "periphery": PeripherySettings,
    "effects": ArrayEffects,
}

#: Each flat field's group.
GROUP_OF: dict[str, str] = {field: group for group, model in GROUPS.items() for field in model.model_fields}

#: The array effects' fields, their companions included.
ARRAY_FIELDS = frozenset([*ARRAY_EFFECTS, *(c for companions in ARRAY_EFFECTS.values() for c in companions)])

#: The array effects' numeric parameters: any device can sweep them, though a device
#: records them only when they are on.
NUMERIC_ARRAY_FIELDS = tuple(sorted(f for f in ARRAY_FIELDS if f != "w_noise_type"))


def nest(data: dict[str, Any]) -> dict[str, Any]:
    """Flat settings (``{"g_max": 20, "max_in": 64}``) sorted into their groups
    (``{"mapping": {"g_max": 20}, "tiles": {"max_in": 64}}``); groups given as mappings
    are kept, a field given both ways is refused. Keys of no group stay where they are."""
    out: dict[str, Any] = {}
    groups: dict[str, dict[str, Any]] = {}
    for key, value in data.items():
        if key in GROUPS and isinstance(value, dict):
            groups.setdefault(key, {}).update(value)
        elif key not in GROUP_OF:
            out[key] = value
    for key, value in data.items():
        group = GROUP_OF.get(key)
        if group is not None:
            if key in groups.get(group, {}):
                raise ValueError(f"{key} is given twice, flat and in {group}")
            groups.setdefault(group, {})[key] = value
    out.update(groups)
    return out
