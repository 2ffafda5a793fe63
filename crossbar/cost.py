"""What the chip costs: the power and area of a macro (:func:`macro_cost`).

A macro is ``n_arrays`` crossbar arrays of the preset's tile size (``max_in`` rows,
``max_out`` outputs, each output ``slices`` columns of ``devices_per_weight`` devices)
with their periphery: a DAC per row, a sample-and-hold per read column, ADCs shared by
``cols_per_adc`` columns, shift-add units where weights are sliced or inputs streamed
in bits, an input and an output register. The figures of each component come from the
``hwcomponents`` models (ISAAC's ADC, DAC and shift-add and BRAHMS's DAC from
``hwcomponents-library``, the ADC survey's model from ``hwcomponents-adc``, CACTI's SRAM from
``hwcomponents-cacti`` for the registers), scaled to the preset's ``tech_node`` by the
library's own scaling; the array's read energy is physics, ``V^2 G t`` a cell; the
sample-and-hold is ISAAC's published figure (no library has one). docs/cost.md gives
the model, its sources and what it leaves out.

Power is at full utilisation: every DAC, column, ADC and register busy every cycle,
every input at full scale, every cell at the mean of its conductance range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Mapping

from .groups import bits_of

__all__ = ["MacroCost", "Part", "macro_cost"]

#: ISAAC's sample-and-hold (Shafiee et al., ISCA 2016, Table I): 0.01 mW and 0.00004 mm²
#: for the 1,024 of an IMA at 32 nm, sampled once a 100 ns cycle.
ISAAC_SAMPLE_HOLD = {"energy_j": 0.01e-3 / 1024 * 100e-9, "area_m2": 0.00004e-6 / 1024, "tech_node_m": 32e-9}


@dataclass(frozen=True)
class Part:
    """One kind of component of a macro: how many, where its figures come from, and
    what they come to at full utilisation."""

    component: str
    model: str
    count: int
    energy_per_action_j: float
    actions_per_cycle: float
    area_m2_each: float
    leak_w_each: float = 0.0

    def power_w(self, cycle_s: float) -> float:
        return self.energy_per_action_j * self.actions_per_cycle / cycle_s + self.leak_w_each * self.count

    @property
    def area_mm2(self) -> float:
        return self.area_m2_each * self.count * 1e6


@dataclass(frozen=True)
class MacroCost:
    """The power at full utilisation and the area of one macro, by component."""

    preset: str
    n_arrays: int
    cycle_s: float
    parts: tuple[Part, ...]
    layout: Mapping[str, Any] = field(default_factory=dict)

    @property
    def power_w(self) -> float:
        return sum(p.power_w(self.cycle_s) for p in self.parts)

    @property
    def area_mm2(self) -> float:
        return sum(p.area_mm2 for p in self.parts)

    def part(self, component: str) -> Part:
        for p in self.parts:
            if p.component == component:
                return p
        raise KeyError(f"no component {component!r}; this macro has: {', '.join(p.component for p in self.parts)}")

    def as_dict(self) -> dict[str, Any]:
        """Plain data: the totals, the layout and one row per component."""
        return {
            "preset": self.preset, "n_arrays": self.n_arrays, "cycle_s": self.cycle_s,
            "power_w": self.power_w, "area_mm2": self.area_mm2, "layout": dict(self.layout),
            "parts": [{"component": p.component, "model": p.model, "count": p.count,
                       "energy_per_action_j": p.energy_per_action_j, "actions_per_cycle": p.actions_per_cycle,
                       "power_w": p.power_w(self.cycle_s), "area_mm2": p.area_mm2} for p in self.parts],
        }

    def table(self) -> str:
        """The breakdown as text: one line per component, then the totals."""
        power, area = self.power_w, self.area_mm2
        lines = [f"{self.preset}: {self.n_arrays} array(s), one cycle {self.cycle_s * 1e9:.4g} ns",
                 f"{'component':<16} {'count':>7} {'power mW':>10} {'share':>6} {'area mm2':>10} {'share':>6}  model"]
        for p in self.parts:
            pw = p.power_w(self.cycle_s)
            lines.append(f"{p.component:<16} {p.count:>7} {pw * 1e3:>10.4g} {pw / power:>6.1%} "
                         f"{p.area_mm2:>10.4g} {p.area_mm2 / area:>6.1%}  {p.model}")
        lines.append(f"{'total':<16} {'':>7} {power * 1e3:>10.4g} {'':>6} {area:>10.4g}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def _needs(preset: Any, name: str, value: Any, allowed: str) -> Any:
    if value is None:
        raise ValueError(f"cost of preset {preset.name!r} needs {name}; allowed: {allowed}")
    return value


def _adc_bits(preset: Any) -> int:
    arch = preset.architecture
    if arch.adc_bits is not None:
        return arch.adc_bits
    if preset.out_res > 0:
        return round(bits_of(preset.out_res))
    raise ValueError(f"cost of preset {preset.name!r} needs the ADC's bits: set adc_bits (an integer, 4 to 16 for the "
                     f"survey's model) or out_res with out_bound")


def _dac_bits(preset: Any) -> int:
    arch = preset.architecture
    if arch.bits_per_input_cycle is not None:
        return arch.bits_per_input_cycle
    if arch.input_bits is not None:
        return arch.input_bits
    if preset.inp_res > 0:
        return round(bits_of(preset.inp_res))
    raise ValueError(f"cost of preset {preset.name!r} needs the DAC's bits: set input_bits (and bits_per_input_cycle "
                     f"for bit-serial inputs) or inp_res with inp_bound")


@lru_cache(maxsize=256)
def _adc(components: str, bits: int, tech_node_m: float, throughput: float) -> tuple[str, float, float, float, float]:
    """(model, energy per conversion J, area m2, leak W, throughput /s) of one ADC."""
    if components == "isaac":
        from hwcomponents_library import IsaacADC

        adc = IsaacADC(tech_node=tech_node_m, resolution=bits)
        cost = adc.convert()
        return "hwcomponents-library IsaacADC", cost.energy, adc.area, adc.leak_power, cost.throughput
    from hwcomponents_adc import ADC

    if bits < 4:
        raise ValueError(f"adc_bits = {bits}: the ADC survey's model (hwcomponents-adc) covers 4 bits and more; "
                         f"allowed: 4 to 16, or components: isaac")
    adc = ADC(n_bits=bits, tech_node=tech_node_m, throughput=throughput)
    return "hwcomponents-adc ADC (Murmann survey)", adc.convert().energy, adc.area, adc.leak_power, throughput


@lru_cache(maxsize=256)
def _dac(components: str, bits: int, tech_node_m: float) -> tuple[str, float, float]:
    """(model, energy per conversion J, area m2) of one DAC: ISAAC's 1-bit DAC, or the
    8-bit DAC measured by BRAHMS's authors (2^bits scaling of the library either way)."""
    if components == "isaac":
        from hwcomponents_library import IsaacDAC

        dac = IsaacDAC(tech_node=tech_node_m, resolution=bits)
        return "hwcomponents-library IsaacDAC", dac.convert().energy, dac.area
    from hwcomponents_library import BrahmsDAC

    dac = BrahmsDAC(tech_node=tech_node_m, resolution=bits)
    return "hwcomponents-library BrahmsDAC", dac.convert().energy, dac.area


@lru_cache(maxsize=256)
def _shift_add(width: int, tech_node_m: float) -> tuple[str, float, float]:
    from hwcomponents_library import IsaacShiftAdd

    unit = IsaacShiftAdd(tech_node=tech_node_m, width=width)
    return "hwcomponents-library IsaacShiftAdd", unit.shift_add().energy, unit.area


@lru_cache(maxsize=256)
def _sram(size_bits: int, width_bits: int, tech_node_m: float) -> tuple[str, float, float, float, float]:
    """(model, read J, write J, area m2, leak W) of a CACTI SRAM of ``size_bits``
    accessed ``width_bits`` at a time (CACTI needs 22-180 nm: the nearest end, then the
    library's scaling)."""
    from hwcomponents.scaling import tech_node_area, tech_node_energy, tech_node_leak
    from hwcomponents_cacti import SRAM

    native = min(max(tech_node_m, 22e-9), 180e-9)
    sram = SRAM(tech_node=native, width=width_bits, size=size_bits)
    area, energy, leak = (f(tech_node_m, native) for f in (tech_node_area, tech_node_energy, tech_node_leak))
    return ("hwcomponents-cacti SRAM", sram.read().energy * energy, sram.write().energy * energy,
            sram.area * area, sram.leak_power * leak)


def _sample_hold(tech_node_m: float) -> tuple[str, float, float]:
    from hwcomponents.scaling import tech_node_area, tech_node_energy

    ref = ISAAC_SAMPLE_HOLD
    return ("ISAAC's Table I (no library model)", ref["energy_j"] * tech_node_energy(tech_node_m, ref["tech_node_m"]),
            ref["area_m2"] * tech_node_area(tech_node_m, ref["tech_node_m"]))


def macro_cost(preset: Any, n_arrays: int = 1) -> MacroCost:
    """The power at full utilisation and the area of ``n_arrays`` arrays of ``preset``'s
    tile size with their periphery, by component (:class:`MacroCost`; ``print`` it for
    the table). ``preset``: a name, mapping or :class:`crossbar.Preset` whose
    architecture names the read time, read voltage, technology node and converters.

    ``crossbar.macro_cost("isaac", n_arrays=8)`` is one ISAAC IMA (docs/cost.md).
    """
    from .catalog import resolve_preset

    preset = resolve_preset(preset)
    if isinstance(n_arrays, bool) or not isinstance(n_arrays, int) or n_arrays < 1:
        raise ValueError(f"n_arrays must be a positive integer, got {n_arrays!r}")
    arch = preset.architecture
    rows, outputs = preset.max_in, preset.max_out
    if rows <= 0 or outputs <= 0:
        raise ValueError(f"cost of preset {preset.name!r} needs an array's size: max_in and max_out > 0 "
                         f"(got {rows} and {outputs}; 0 means unbounded tiles)")
    read_time = _needs(preset, "read_time", arch.read_time, "seconds per read cycle, e.g. 100e-9")
    voltage = _needs(preset, "read_voltage", arch.read_voltage, "volts across a cell at full input, e.g. 0.1")
    node_nm = _needs(preset, "tech_node", arch.tech_node, "a node in nm, 7 to 130")
    node = node_nm * 1e-9
    adc_bits, dac_bits = _adc_bits(preset), _dac_bits(preset)

    slices, cycles = arch.slices, arch.input_cycles
    columns = outputs * slices * preset.devices_per_weight
    conversions = outputs * slices  # per array and cycle: a weight's devices of one slice are read as one current
    adcs = math.ceil(conversions / arch.cols_per_adc)
    adc_model, adc_energy, adc_area, adc_leak, adc_rate = _adc(arch.components, adc_bits, node,
                                                               arch.cols_per_adc / read_time)
    cycle = max(read_time, arch.cols_per_adc / adc_rate)

    input_bits = arch.input_bits or dac_bits
    output_bits = max(arch.weight_bits or adc_bits, input_bits, adc_bits)
    parts = []
    adc_conversions = n_arrays * conversions
    parts.append(Part("ADC", adc_model, n_arrays * adcs, adc_energy, adc_conversions, adc_area, adc_leak))
    model, energy, area = _dac(arch.components, dac_bits, node)
    parts.append(Part("DAC", model, n_arrays * rows, energy, n_arrays * rows, area))
    model, energy, area = _sample_hold(node)
    parts.append(Part("sample-and-hold", model, n_arrays * conversions, energy, adc_conversions, area))
    cells = rows * columns
    g_mean = (preset.resolved_g_min + preset.resolved_g_max) / 2 * 1e-6  # S
    cell_area = arch.cell_area * 1e-12 if arch.cell_area is not None else 4 * node**2
    parts.append(Part("crossbar", f"physics: V^2 G t, G = {g_mean * 1e6:.3g} uS mean, "
                      + (f"{arch.cell_area:g} um^2 a cell" if arch.cell_area is not None else "4 F^2 a cell"),
                      n_arrays * cells, voltage**2 * g_mean * read_time, n_arrays * cells, cell_area))
    if slices > 1 or cycles > 1:
        model, energy, area = _shift_add(output_bits, node)
        parts.append(Part("shift-add", model, n_arrays * adcs, energy, adc_conversions, area))
    words_in = n_arrays * rows
    model, read, write, area, leak = _sram(words_in * input_bits, input_bits, node)
    parts.append(Part("input register", f"{model}, {words_in * input_bits // 8} B", 1,
                      (read + write) / 2, 2 * words_in / cycles, area, leak))
    words_out = n_arrays * outputs
    model, read, write, area, leak = _sram(words_out * output_bits, output_bits, node)
    parts.append(Part("output register", f"{model}, {words_out * output_bits // 8} B", 1,
                      (read + write) / 2, 2 * words_out / cycles, area, leak))
    layout = {"rows": rows, "columns": columns, "outputs": outputs, "slices": slices, "input_cycles": cycles,
              "adc_bits": adc_bits, "dac_bits": dac_bits, "adcs_per_array": adcs, "input_bits": input_bits,
              "output_bits": output_bits, "tech_node_nm": node_nm, "read_time_s": read_time}
    return MacroCost(preset.name, n_arrays, cycle, tuple(parts), layout)
