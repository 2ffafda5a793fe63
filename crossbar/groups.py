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

import math
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
    drift_compensation: Union[bool, Literal["none", "global", "per_column"]] = Field(
        False, description="aihwkit's drift compensation: none, global (one scale a tile) or per_column "
        "(one scale a column); true and false mean global and none")

    @property
    def drift_compensation_kind(self) -> str:
        """``none``, ``global`` or ``per_column`` (``True`` is ``global``, ``False`` ``none``)."""
        value = self.drift_compensation
        return value if isinstance(value, str) else ("global" if value else "none")


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


class Calibration(Group):
    """What the chip calibrates from a few inputs it reads (off by default;
    :mod:`crossbar.calibration`, docs/simulator.md): each column's gain and offset,
    corrected digitally after the ADC (``calibration``), and each layer's input range
    from a percentile of its inputs (``input_range_percentile``, instead of each input
    vector scaled by its own largest value)."""

    calibration: Literal["none", "at_programming", "at_inference"] = Field(
        "none", description="fit each column's gain and offset after programming, or again at each inference time")
    calibration_input_sum: bool = Field(
        True, description="the column fit also weighs each input split's sum (the reference column of a mapping "
        "with an offset): undoes a shift common to a column's devices")
    calibration_samples: int = Field(
        32, ge=1, description="calibration inputs the chip reads (its reference reads) for each calibration")
    input_range_percentile: Optional[float] = Field(
        None, gt=0, le=100, description="each layer's DAC range: this percentile of its inputs' |values|")
    calibration_period: float = Field(
        1e4, ge=1, description="inferences between two calibrations (the cost of their reads is shared by them)")

    @property
    def calibrates(self) -> bool:
        """Whether the chip reads calibration inputs (a fit or an input range)."""
        return self.calibration != "none" or self.input_range_percentile is not None


#: The technology nodes (nm) the component library scales between
#: (``hwcomponents.scaling``'s table, checked by the tests against the installed library).
TECH_NODE_RANGE_NM = (7.0, 130.0)

#: Which component models price the periphery: ``generic`` (the ADC survey's model,
#: BRAHMS's measured DAC) or ``isaac`` (ISAAC's ADC and DAC as ``hwcomponents-library``
#: packages them); registers (CACTI) and the shift-add (ISAAC's) are the same in both.
#: See docs/cost.md.
COMPONENT_SETS = ("generic", "isaac")


def bits_of(res: float) -> float:
    """The bits of a converter with aihwkit's resolution ``res`` = 1 / (2**bits - 2)."""
    return math.log2(1.0 / res + 2.0)


class Architecture(Group):
    """How the chip frames the analog product digitally, and what a cost needs to know of
    it: weights sliced over cells, inputs streamed in bits, the ADCs, the read cycle,
    the technology node. Unset (the default), a weight is one analog device (pair) and
    an input one conversion of the DAC of ``inp_res``, as in aihwkit, and the simulation
    is today's."""

    weight_bits: Optional[int] = Field(None, ge=1, le=32, description="bits a weight is stored with over its cells")
    bits_per_cell: Optional[int] = Field(None, ge=1, le=8, description="bits a cell holds (weights sliced)")
    input_bits: Optional[int] = Field(None, ge=1, le=32, description="bits of an input (sign excluded)")
    bits_per_input_cycle: Optional[int] = Field(None, ge=1, le=32, description="bits a DAC converts a cycle")
    adc_bits: Optional[int] = Field(None, ge=1, le=16, description="bits of an ADC; unset: from out_res")
    cols_per_adc: int = Field(1, ge=1, description="columns that share one ADC, read one after the other")
    read_time: Optional[float] = Field(None, gt=0, description="seconds an array is read per cycle")
    read_voltage: Optional[float] = Field(None, gt=0, description="volts across a cell whose input is at full scale")
    tech_node: Optional[float] = Field(None, description="technology node of the periphery, nm")
    cell_area: Optional[float] = Field(None, gt=0, description="um^2 of one device; unset: 4 F^2 at tech_node")
    components: Literal["generic", "isaac"] = Field("generic", description="which component models price the periphery")

    @model_validator(mode="after")
    def _divides(self) -> "Architecture":
        pairs = (("weight_bits", "bits_per_cell", "cells"), ("input_bits", "bits_per_input_cycle", "cycles"))
        for bits, per, what in pairs:
            total, part = getattr(self, bits), getattr(self, per)
            if part is not None and total is None:
                raise ValueError(f"{per} needs {bits} (the {what} are {bits} / {per})")
            if part is not None and total % part:
                raise ValueError(f"{bits} = {total} is not a multiple of {per} = {part}; allowed: a divisor of "
                                 f"{total} ({', '.join(str(d) for d in range(1, total + 1) if total % d == 0)})")
        if self.tech_node is not None and not TECH_NODE_RANGE_NM[0] <= self.tech_node <= TECH_NODE_RANGE_NM[1]:
            raise ValueError(f"tech_node = {self.tech_node:g} nm lies outside the component library's range; "
                             f"allowed: {TECH_NODE_RANGE_NM[0]:g} to {TECH_NODE_RANGE_NM[1]:g} nm")
        return self

    @property
    def sliced(self) -> bool:
        """Weights on more than one cell, or inputs in more than one cycle: what the
        simulator does not run yet."""
        return self.slices > 1 or self.input_cycles > 1

    @property
    def slices(self) -> int:
        """Cells (columns) of one weight."""
        return self.weight_bits // self.bits_per_cell if self.bits_per_cell else 1

    @property
    def input_cycles(self) -> int:
        """Read cycles of one input vector."""
        return self.input_bits // self.bits_per_input_cycle if self.bits_per_input_cycle else 1


#: What a sliced preset's simulation (crossbar.slicing) does not run, and why.
SLICED_EXCLUDES = {
    "inp_res": "inputs are quantised by input_bits", "out_res": "the ADC is adc_bits",
    "inp_bound": "inputs are scaled by their largest value", "out_bound": "the ADC's range is its bits",
    "drift_compensation": "not simulated for sliced weights yet",
    "calibration": "not simulated for sliced weights yet",
    "input_range_percentile": "inputs are scaled by their largest value",
    "levels": "a cell's levels are 2**bits_per_cell",
    "ir_drop": "not simulated for sliced weights yet", "w_noise": "not simulated for sliced weights yet",
    "out_nonlinearity": "not simulated for sliced weights yet",
}


def check_architecture(arch: Architecture, periphery: PeripherySettings, levels: Any,
                       drift_compensation: Any = False, calibration: Optional[Calibration] = None) -> None:
    """A converter's bits given twice (the architecture's and the periphery's
    resolution) must agree, so that a cost never describes another chip than the
    simulation; a sliced preset names its ADC and none of what its simulation does not run."""
    if arch.sliced:
        if arch.adc_bits is None:
            raise ValueError("a sliced preset (bits_per_cell or bits_per_input_cycle set) needs adc_bits, the bits "
                             "of the ADC that reads each slice and cycle")
        calibration = calibration or Calibration()
        compensation = False if drift_compensation in ("none", False) else drift_compensation
        given = {"levels": levels, "drift_compensation": compensation,
                 "calibration": False if calibration.calibration == "none" else calibration.calibration,
                 "input_range_percentile": calibration.input_range_percentile,
                 **{k: getattr(periphery, k) for k in SLICED_EXCLUDES if hasattr(periphery, k)}}
        for name, value in given.items():
            if value not in (None, 0, 0.0, False):
                raise ValueError(f"{name} = {value!r} does not apply to a sliced preset ({SLICED_EXCLUDES[name]}); "
                                 f"leave it unset, or unset bits_per_cell and bits_per_input_cycle")
    if arch.weight_bits is not None and arch.bits_per_cell is None:
        raise ValueError(f"weight_bits = {arch.weight_bits} needs bits_per_cell (the bits a cell holds; "
                         f"{arch.weight_bits} for one cell a weight)")
    if not arch.sliced and arch.bits_per_cell is not None and levels != 2**arch.bits_per_cell:
        raise ValueError(f"bits_per_cell = {arch.bits_per_cell} on one cell a weight describes "
                         f"{2**arch.bits_per_cell} conductance levels the simulation does not have; set levels = "
                         f"{2**arch.bits_per_cell}, or leave weight_bits and bits_per_cell unset")
    for bits, res, bound, unsliced in (
        ("input_bits", "inp_res", "inp_bound", not arch.sliced),
        ("adc_bits", "out_res", "out_bound", not arch.sliced),
    ):
        given = getattr(arch, bits)
        if given is None or not unsliced:
            continue
        resolution = getattr(periphery, res)
        wanted = 1.0 / (2**given - 2) if given > 1 else None
        if resolution == 0:
            hint = (f"set {res} = 1/(2**{given} - 2) = {wanted:.6g} and {bound} > 0" if wanted
                    else f"a 1-bit converter has no {res}; use 2 bits or more")
            raise ValueError(f"{bits} = {given} describes a converter the simulation does not have ({res} is 0, "
                             f"exact); {hint}, or leave {bits} unset")
        if wanted is None or not math.isclose(resolution, wanted, rel_tol=1e-6):
            raise ValueError(f"{bits} = {given} disagrees with {res} = {resolution:g} (a "
                             f"{bits_of(resolution):.3g}-bit converter in aihwkit's terms, 1/(2**bits - 2)); "
                             f"allowed: {res} = "
                             f"{wanted if wanted else 'none'}, or leave {bits} unset")



#: The groups of a preset, by attribute name, in the order of a flat listing.
GROUPS: dict[str, type[Group]] = {
    "mapping": ConductanceMapping,
    "stuck_at": StuckAt,
    "tiles": Tiles,
    "periphery": PeripherySettings,
    "effects": ArrayEffects,
    "architecture": Architecture,
    "calibrations": Calibration,
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
