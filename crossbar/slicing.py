"""Weights sliced over cells and inputs streamed in bits, as ISAAC, PRIME and CrossSim's
bit-sliced core run them: the simulation of a preset whose architecture sets
``bits_per_cell`` below ``weight_bits`` or ``bits_per_input_cycle`` below
``input_bits``.

Weights. Each tile's weights are scaled by its largest |weight| ``w_max`` and rounded
to integer codes of ``weight_bits`` bits: with one device a weight (``single_device``)
an offset code ``q = round((w / w_max + 1) / 2 * (2^W - 1))`` (ISAAC's unsigned cells,
the offset removed digitally); with a pair, ``q+`` and ``q-`` of ``|w|`` on the device
of the weight's sign (0 on the other). The code's ``S = weight_bits / bits_per_cell``
digits of ``b`` bits each go to ``S`` cells side by side in the tile's columns, digit
``d`` programmed at ``g_min + d / (2^b - 1) (g_max - g_min)``; each cell then gets the
physics' programming noise, drift, read noise and the stuck-at faults of any device.

Inputs. Each vector is scaled by its largest |value| ``m`` (aihwkit's noise
management) and rounded to signed codes of ``input_bits`` bits; positive and negative
parts are streamed one after the other, ``bits_per_input_cycle`` bits a cycle through
DACs of as many bits, so ``Q = input_bits / bits_per_input_cycle`` cycles (twice that
for a vector with both signs).

Read-out. For each cycle and cell column the current, less a reference column at
``g_min`` (one device) or the pair's other device, is the column's sum
``z = sum_r plane_r (G_r - g_min) / (g_max - g_min) (2^b - 1)`` in units of one digit
times one input step. Output noise of standard deviation ``out_noise`` times the full
scale ``FS = rows (2^b - 1) (2^p - 1)`` is added, then the ADC: ``adc_bits`` bits with a
least significant step of ``2^s`` units, ``s`` the fewest dropped bits that cover the
full scale (``s = 0``, exact, when ``2^adc_bits > FS``; one sign more for pairs),
clipped at its range. Shift-add: ``sum over cycles and slices 2^(p c) 2^(b k) ADC``,
then the codes back to values (``w_max m / ((2^W - 1)(2^I - 1))``, the offset
``sum_r a_r`` subtracted exactly for one device a weight).

With exact devices, no output noise and ADCs of ``adc_bits > log2(FS)``, a tile's
output is the integer product of the weight and input codes, exactly
(:func:`tile_codes_product`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import Tensor

from .arrays import ProgrammedArray, tile_grid
from .rng import NoiseStream

__all__ = ["Slicing", "cell_targets", "input_codes", "program_sliced", "sliced_matmul", "sliced_weights",
           "tile_codes_product", "weight_codes"]


@dataclass(frozen=True)
class Slicing:
    """The numbers of a sliced preset's architecture."""

    weight_bits: int
    bits_per_cell: int
    input_bits: int
    bits_per_input_cycle: int
    adc_bits: int
    devices: int  # 1: one device a weight (offset codes); 2: a pair
    g_min: float
    g_max: float
    out_noise: float = 0.0

    @classmethod
    def of(cls, preset) -> "Slicing":
        arch = preset.architecture
        w = arch.weight_bits or 1
        i = arch.input_bits or 1
        return cls(w, arch.bits_per_cell or w, i, arch.bits_per_input_cycle or i, arch.adc_bits or 0,
                   1 if preset.resolved_converter == "single_device" else 2,
                   preset.resolved_g_min, preset.resolved_g_max, preset.out_noise)

    @property
    def slices(self) -> int:
        return self.weight_bits // self.bits_per_cell

    @property
    def cycles(self) -> int:
        return self.input_bits // self.bits_per_input_cycle

    @property
    def cell_max(self) -> int:
        return 2**self.bits_per_cell - 1

    @property
    def plane_max(self) -> int:
        return 2**self.bits_per_input_cycle - 1

    def full_scale(self, rows: int) -> int:
        """The largest column sum of one cycle: every row at its largest plane value and digit."""
        return rows * self.cell_max * self.plane_max

    def adc_step(self, rows: int) -> int:
        """The ADC's least significant step in units: a power of two, so that the
        shift-add stays in integers; 1 (exact) when the ADC's codes cover the full scale."""
        span = self.full_scale(rows) * (2 if self.devices == 2 else 1) + 1
        shift = 0
        while span > 2 ** (self.adc_bits + shift):
            shift += 1
        return 2**shift


def weight_codes(block: Tensor, s: Slicing) -> tuple[Tensor, float]:
    """``(codes (D, out, in), w_max)``: one tile's integer weight codes (float64)."""
    w_max = float(block.abs().max()) or 1.0
    top = 2**s.weight_bits - 1
    unit = block.to(torch.float64) / w_max
    if s.devices == 1:
        return torch.round((unit + 1.0) / 2.0 * top).unsqueeze(0), w_max
    return torch.stack([torch.round(unit.clamp(min=0) * top), torch.round((-unit).clamp(min=0) * top)]), w_max


def cell_targets(codes: Tensor, s: Slicing) -> Tensor:
    """``(D, out * S, in)`` target conductances (uS) of the codes' digits, a weight's
    ``S`` cells side by side (column ``o * S + k`` holds digit ``k``, least significant
    first)."""
    d, out, n_in = codes.shape
    q = codes.to(torch.int64)
    digits = torch.stack([(q >> (k * s.bits_per_cell)) & s.cell_max for k in range(s.slices)], dim=2)
    g = s.g_min + digits.to(torch.float64) / s.cell_max * (s.g_max - s.g_min)  # (D, out, S, in)
    return g.reshape(d, out * s.slices, n_in)


def cell_digits(conductances: Tensor, s: Slicing) -> Tensor:
    """``(C, out * S, in)``: what each cell column adds per unit of input, in digits,
    from ``(C, D, out * S, in)`` conductances (less the reference at g_min, or the
    pair's other device)."""
    digits = (conductances.to(torch.float64) - s.g_min) / (s.g_max - s.g_min) * s.cell_max
    return digits[:, 0] if s.devices == 1 else digits[:, 0] - digits[:, 1]


def input_codes(x: Tensor, s: Slicing) -> tuple[Tensor, Tensor]:
    """``(codes, m)``: signed integer codes of ``input_bits`` of vectors ``x (n, k)``
    scaled by their largest |value| ``m (n, 1)``, in ``x``'s float dtype (float32 holds
    every code of up to 24 bits exactly)."""
    m = x.abs().amax(dim=-1, keepdim=True)
    m = torch.where(m > 0, m, torch.ones_like(m))
    return torch.round(x * ((2**s.input_bits - 1) / m)), m


def _planes(codes: Tensor, s: Slicing) -> list[tuple[float, Tensor]]:
    """The read cycles of the codes: ``(weight, magnitude codes)`` of the positive, then
    the negative parts (each cycle's plane is cut from them as it is read), with the
    plane's weight in the shift-add ``+-2^(p c)``."""
    cycles = []
    for sign, part in ((1.0, codes.clamp(min=0)), (-1.0, (-codes).clamp(min=0))):
        if not bool(part.any()):
            continue
        q = part.to(torch.int32)
        for c in range(s.cycles):
            shift = c * s.bits_per_input_cycle
            cycles.append((sign * 2.0**shift, (q >> shift) & s.plane_max))
    return cycles


def tile_codes_product(
    codes: Tensor, digits: Tensor, s: Slicing, streams: Optional[Sequence[Optional[NoiseStream]]] = None
) -> Tensor:
    """``(C, n, out)`` float64: each chip's shift-added ADC read-outs of input ``codes
    (n, k)`` against cell columns ``digits (C, out * S, k)``, in units of one weight code
    times one input code (the integer product ``q @ a`` when exact). One cycle's plane
    at a time, all of a weight's slices in one product; the column sums in float32
    (integers below 2^24 stay exact)."""
    n_chips, columns, rows = digits.shape
    step = float(s.adc_step(rows))
    full = s.full_scale(rows)
    lo = -(2 ** (s.adc_bits - 1)) * step if s.devices == 2 else 0.0
    hi = (2 ** (s.adc_bits - 1) - 1) * step if s.devices == 2 else (2**s.adc_bits - 1) * step
    weights = digits.to(torch.float32)
    slice_weight = torch.tensor([2.0 ** (k * s.bits_per_cell) for k in range(s.slices)], dtype=torch.float32,
                                device=digits.device)
    out = torch.zeros((n_chips, codes.shape[-2], columns // s.slices), dtype=torch.float64, device=digits.device)
    z = None
    for weight, plane in _planes(codes, s):
        x = plane.to(torch.float32)
        for c in range(n_chips):
            z = torch.matmul(x, weights[c].T, out=z if z is not None and z.shape == (x.shape[0], columns) else None)
            stream = None if streams is None else streams[c]
            if stream is not None and s.out_noise > 0:
                z += stream.normal_(torch.empty_like(z), s.out_noise * full)
            if step != 1.0:
                z.div_(step)
            z.round_().clamp_(lo / step, hi / step)  # the ADC, in steps
            shifted = torch.matmul(z.view(z.shape[0], -1, s.slices), slice_weight)  # shift-add of the slices
            out[c].add_(shifted, alpha=weight * step)
    return out


def sliced_matmul(
    vectors: Tensor,
    digits: Tensor,
    tiles: Sequence[tuple[int, int, int, int]],
    w_max: Sequence[float],
    s: Slicing,
    streams: Optional[Sequence[Optional[NoiseStream]]] = None,
) -> Tensor:
    """Every chip's outputs ``(C, n, out)`` for ``vectors (Cx, n, in)`` through the
    sliced tiles (weight tiles ``tiles``, their scales ``w_max``; ``digits (C, out * S,
    in)`` from :func:`cell_digits`), tiles that share outputs summed."""
    n_chips = digits.shape[0]
    n_out = digits.shape[1] // s.slices
    y = digits.new_zeros((n_chips, vectors.shape[1], n_out))
    top_w, top_x = 2**s.weight_bits - 1, 2**s.input_bits - 1
    for (o0, o1, i0, i1), scale in zip(tiles, w_max):
        codes, m = input_codes(vectors[:, :, i0:i1] if vectors.shape[0] > 1 else vectors[0, :, i0:i1], s)
        block = digits[:, o0 * s.slices:o1 * s.slices, i0:i1]
        if vectors.shape[0] > 1:
            prod = torch.stack([tile_codes_product(codes[c], block[c:c + 1], s,
                                                   None if streams is None else [streams[c]])[0]
                                for c in range(n_chips)])
        else:
            prod = tile_codes_product(codes, block, s, streams)
        if s.devices == 1:  # offset codes: w = (2 q / top - 1) w_max
            prod = 2.0 * prod / top_w - codes.sum(-1, keepdim=True)
        else:
            prod = prod / top_w
        y[:, :, o0:o1] += prod * (m * (scale / top_x))
    return y


def program_sliced(weight: Tensor, preset, n_chips: int, seed: int, first_chip: int = 0, layer: int = 0
                   ) -> tuple[ProgrammedArray, list[tuple[int, int, int, int]], list[float]]:
    """``(array, tiles, w_max)``: the cells of ``weight``'s sliced codes programmed on
    ``n_chips`` chips (a :class:`crossbar.ProgrammedArray` of ``(D, out * S, in)``
    cells), the weight tiles and each one's largest |weight|."""
    s = Slicing.of(preset)
    matrix = weight.detach().reshape(weight.shape[0], -1).to(torch.float64).cpu()
    tiles = tile_grid(matrix.shape[0], matrix.shape[1], preset.max_out, preset.max_in)
    codes = matrix.new_empty((s.devices, *matrix.shape))
    w_max = []
    for o0, o1, i0, i1 in tiles:
        codes[:, o0:o1, i0:i1], top = weight_codes(matrix[o0:o1, i0:i1], s)
        w_max.append(top)
    cells = [(o0 * s.slices, o1 * s.slices, i0, i1) for o0, o1, i0, i1 in tiles]
    array = ProgrammedArray(weight, preset, n_chips, seed, first_chip, layer, targets=(cell_targets(codes, s), cells))
    return array, tiles, w_max


def sliced_weights(weight: Tensor, preset, t_inference: float, n_chips: int, seed: int = 0) -> Tensor:
    """``(n_chips, out, in)`` float64: the weights the sliced cells of ``n_chips`` chips
    hold at ``t_inference`` (every slice read back and shift-added, no converter)."""
    s = Slicing.of(preset)
    array, tiles, w_max = program_sliced(weight, preset, n_chips, seed)
    digits = cell_digits(array.conductances(t_inference), s)
    n_out = digits.shape[1] // s.slices
    significance = digits.new_tensor([2.0 ** (k * s.bits_per_cell) for k in range(s.slices)])
    codes = torch.einsum("cokn,k->con", digits.view(digits.shape[0], n_out, s.slices, -1), significance)
    top = 2**s.weight_bits - 1
    out = torch.empty_like(codes)
    for (o0, o1, i0, i1), scale in zip(tiles, w_max):
        block = codes[:, o0:o1, i0:i1]
        if s.devices == 1:  # offset codes; the reference column removed g_min, the offset is digital
            out[:, o0:o1, i0:i1] = (2.0 * block / top - 1.0) * scale
        else:
            out[:, o0:o1, i0:i1] = block / top * scale
    return out
