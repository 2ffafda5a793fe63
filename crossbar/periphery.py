"""The crossbar periphery: DAC, ADC, output noise and bounds, with aihwkit's meaning.

Follows aihwkit's ``IOParameters`` and its torch tile (``AnalogMVM``) for a one-pass
analog matrix-vector product:

1. noise management ``ABS_MAX``: every input vector is divided by its largest |value|;
2. DAC: uniform quantisation with step ``inp_res * 2 * inp_bound``, clipped to
   ``+-inp_bound``;
3. the product with the tile's weights, normalised so that the tile's largest target
   |weight| is 1 (one full conductance range; aihwkit's ``weight_scaling_omega = 1``);
4. Gaussian output noise of std ``out_noise``, ADC quantisation with step
   ``out_res * 2 * out_bound``, clipping to ``+-out_bound``;
5. iterative bound management: a vector whose output clipped is computed again with
   its input halved, up to the limit aihwkit uses (``max_bm_factor`` = 1000, and
   ``max_bm_res`` = 0.25 of the DAC step). Done per vector, as aihwkit's C++ tiles do,
   so a result does not depend on what else is in the batch.

``res > 1`` means a number of steps, as in aihwkit; 0 switches a stage off.

Between the product and the ADC act the non-idealities of aihwkit's C++ tiles (IR
drop, weight noise, output non-linearity: :mod:`crossbar.lines`).

For speed the arithmetic runs in converter units: inputs as DAC codes (integers when
the DAC quantises), outputs as ADC codes, with both step sizes folded into the weights
once per drift (:meth:`Periphery.code_weights`). Up to float rounding this is the same
computation; a value within an ulp of a rounding boundary may land one step away from
aihwkit's (tests allow for that).

A layer makes one call, :meth:`Periphery.matmul`, with its inputs wrapped as
:class:`~crossbar.inputs.RowInputs` or :class:`~crossbar.inputs.PatchInputs` (which
make the DAC codes of each tile's slice, see :mod:`crossbar.inputs`) and every chip's
tiled weights. On a CPU the element-wise stages are compiled loops (numba,
:mod:`crossbar.kernels`): the DAC codes of rows and of convolution patches, and the
output noise, drawn from one counter-based stream per chip (:mod:`crossbar.rng`) and
added in the pass that rounds to ADC codes. The products stay torch's (MKL). On CUDA
all of it is torch's.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Optional, Sequence, Union

import torch
from torch import Tensor

from . import kernels
from .groups import PeripherySettings
from .inputs import CodeBlocks, PatchInputs, RowInputs
from .kernels import noisy_adc
from .lines import LineState, TileLines, apply_lines, ir_products
from .rng import NoiseStream

Inputs = Union[RowInputs, PatchInputs]

_MAX_BM_FACTOR = 1000.0
_MAX_BM_RES = 0.25


def _step(res: float, bound: float) -> float:
    res = 1.0 / res if res > 1.0 else res
    return res * 2.0 * bound


# Convolution outputs with at most this many positions per image (VGG's last layers on
# 32x32 images: 2x2) are computed as one product of all the batch's columns: a CPU's
# GEMM runs B products of (out, k) x (k, 4) 6-13x slower than one of (B * 4, k) x (k, out).
FEW_COLUMNS = 8


def _column_products(z: Tensor, weight: Tensor, x: Tensor, accumulate: bool) -> None:
    """``z (B, out, L) (+)= weight (out, k) @ x (B, k, L)``, image by image."""
    batch, k, length = x.shape
    if length <= FEW_COLUMNS and x.device.type == "cpu":
        rows = x.transpose(1, 2).reshape(batch * length, k)
        prod = torch.mm(rows, weight.T).view(batch, length, -1).transpose(1, 2)
        if accumulate:
            z.add_(prod)
        else:
            z.copy_(prod)
    elif accumulate:
        z.baddbmm_(weight.expand(batch, -1, -1), x)
    else:
        torch.bmm(weight.expand(batch, -1, -1), x, out=z)


class Periphery:
    """The periphery of a preset's tiles at work: DAC codes of the inputs, the analog
    products of every chip's tiles, output noise, ADC, bounds and the array effects
    between product and ADC, with the settings of :class:`crossbar.groups.PeripherySettings`
    (the preset's ``periphery`` group: ``Periphery(preset.periphery)``)."""

    def __init__(self, settings: PeripherySettings):
        self.settings = settings

    @classmethod
    def of(cls, **settings) -> "Periphery":
        """A periphery of these settings (the fields of :class:`PeripherySettings`)."""
        return cls(PeripherySettings(**settings))

    @property
    def perfect(self) -> bool:
        return self.settings.perfect

    @property
    def lines(self) -> bool:
        """Whether any of the C++ tiles' non-idealities between product and ADC is on."""
        return self.settings.lines

    @property
    def in_unit(self) -> float:
        """Normalised input value of one DAC code (1 without a DAC)."""
        return _step(self.settings.inp_res, self.settings.inp_bound) if self.settings.inp_res > 0 else 1.0

    @property
    def out_unit(self) -> float:
        """Normalised output value of one ADC code (1 without an ADC)."""
        return _step(self.settings.out_res, self.settings.out_bound) if self.settings.out_res > 0 else 1.0

    @property
    def bm_limit(self) -> float:
        """Largest input reduction that bound management tries (aihwkit's stop rule)."""
        if self.settings.out_bound <= 0 or self.settings.bound_management == "none":
            return 0.0
        limit = _MAX_BM_FACTOR
        if self.settings.inp_res > 0:
            limit = min(limit, _MAX_BM_RES / self.in_unit)
        return limit

    def code_weights(self, normalised: Tensor) -> Tensor:
        """Tile weights (largest |target| = 1) scaled so that DAC codes give ADC codes."""
        return normalised * (self.in_unit / self.out_unit)

    # --- input side -----------------------------------------------------------

    def prepare_input(
        self,
        x: Tensor,
        dim: int = -1,
        scale: Optional[Tensor] = None,
        inplace: bool = False,
        out: Optional[Tensor] = None,
    ) -> tuple[Tensor, Tensor]:
        """Noise management and DAC of input vectors along ``dim``.

        Args:
            scale: the largest |value| of each vector when the caller knows it cheaper
                (convolutions: a max-pool of the image); computed otherwise.
            inplace: turn ``x`` itself into the codes (the caller owns it).
            out: write the codes here (e.g. a contiguous layout of a strided ``x``).

        Returns ``(codes, unit)``: the DAC codes and, per vector, the input value of
        one code (``abs max x in_unit``).
        """
        if scale is None and x.device.type == "cpu" and x.dim() >= 2 and dim in (-1, x.dim() - 1) and x.stride(-1) == 1:
            # rows on a CPU: the largest |value|, the unit and the codes in one compiled pass
            rows = x.reshape(-1, x.shape[-1])  # a view for the layouts the layers pass
            codes = x.new_empty(rows.shape) if out is None else out.view(rows.shape)
            unit = x.new_empty((rows.shape[0],))
            kernels.row_codes(rows, self.in_unit, self.settings.inp_res > 0, self._dac_bound, codes, unit)
            return codes.view(x.shape), unit.view(*x.shape[:-1], 1)
        if scale is None:
            # abs().amax() measured faster on a CPU than aminmax (2.5x) and vector_norm(inf) (7x)
            scale = x.abs().amax(dim=dim, keepdim=True)
        unit = self.input_unit(scale)
        if inplace:
            codes = x.mul_(unit.reciprocal())
        elif out is not None:
            codes = torch.mul(x, unit.reciprocal(), out=out)
        else:
            codes = x * unit.reciprocal()
        return self._dac(codes), unit

    def input_unit(self, scale: Tensor) -> Tensor:
        """Input value of one DAC code for vectors whose largest |value| is ``scale``."""
        return torch.where(scale > 0, scale, torch.ones_like(scale)).mul_(self.in_unit)

    def patch_codes(self, x: Tensor, recip: Tensor, kernel, stride, dilation, out: Tensor) -> Tensor:
        """CPU: the DAC codes of every patch of a convolution's padded input ``x``
        (N, C, H, W) into ``out`` (N, C, kh, kw, oh, ow), given each patch's ``recip``
        (N, oh, ow), the reciprocal of its unit from :meth:`input_unit`: the numbers of
        :meth:`prepare_input` on the patches, in one compiled pass."""
        return kernels.patch_codes(x, recip, kernel, stride, dilation, self.settings.inp_res > 0, self._dac_bound, out)

    @property
    def _dac_clips(self) -> bool:
        """Whether the DAC's clipping can act: codes of noise-managed inputs are at most
        round(1 / in_unit) in size, so a bound at or beyond that never clips."""
        if self.settings.inp_bound <= 0:
            return False
        if self.settings.inp_res <= 0:
            return True
        return self.settings.inp_bound / self.in_unit < math.floor(1.0 / self.in_unit + 0.5)

    @property
    def _dac_bound(self) -> float:
        """The DAC's clipping bound in codes; infinite where it cannot act."""
        return self.settings.inp_bound / self.in_unit if self._dac_clips else math.inf

    def _dac(self, codes: Tensor) -> Tensor:
        if self.settings.inp_res > 0:
            codes = codes.round_()
        if self._dac_clips:
            codes = codes.clamp_(-self._dac_bound, self._dac_bound)
        return codes

    # --- output side ----------------------------------------------------------

    def _adc_products(
        self,
        codes: "Tensor | CodeBlocks",
        code_weight: Tensor,
        streams: Optional[Sequence[NoiseStream]],
        columns: bool,
        lines: Optional[TileLines] = None,
    ) -> tuple[Tensor, Optional[bool]]:
        """Each chip's products of the codes with its weights, plus its output noise,
        through the ADC: ``(z, clips)``, the ADC codes and whether any exceeds the ADC's
        bound (``None`` where that was not counted on the way: CUDA).

        On a CPU the products come first and one compiled pass per chip (and block) adds
        the chip's noise from its stream, rounds and counts the codes beyond the bound
        (:func:`crossbar.kernels.noisy_adc`). A chip's draw is reserved whole before its
        first block, and each block takes its own values of it, so the numbers do not
        depend on the blocks. On CUDA each chip's noise is drawn first from its
        generator and the products are accumulated onto it. ``CodeBlocks`` are consumed
        block by block, each block by every chip. The array effects (``lines``) act on
        each block's products before the ADC; their weight noise is drawn whole per chip
        like the output noise.
        """
        n_chips, n_out = code_weight.shape[0], code_weight.shape[1]
        noisy = self.settings.out_noise > 0
        assert not noisy or (streams is not None and len(streams) == n_chips)
        std = self.settings.out_noise / self.out_unit
        cuda = code_weight.device.type != "cpu"
        if cuda and not self.lines:
            return self._adc_products_accumulated(codes, code_weight, streams if noisy else None, columns, std), None
        lines = (lines or TileLines()) if self.lines else None
        bound = self.settings.out_bound / self.out_unit if self.settings.out_bound > 0 else math.inf
        rnd = self.settings.out_res > 0
        adc = noisy or rnd or self.settings.out_bound > 0
        chip_streams = list(streams) if noisy else [None] * n_chips
        over = 0
        if columns:  # codes (Cx, B, k, L) -> (C, B, out, L), in blocks of batch rows
            cx, batch, _, length = codes.shape
            z = code_weight.new_empty((n_chips, batch, n_out, length))
        else:  # codes (Cx, n, k) -> (C, n, out)
            cx = codes.shape[0]
            z = code_weight.new_empty((n_chips, codes.shape[1], n_out))
        per_row = z[0, 0].numel()
        if cuda:
            starts = [0] * n_chips
            out_noise = [s.normal_(torch.empty_like(z[c]), std) if s is not None else None
                         for c, s in enumerate(chip_streams)]
        else:
            starts = [s.take(z[c].numel()) if s is not None else 0 for c, s in enumerate(chip_streams)]
        w_noise = None
        if lines is not None and self.settings.weight_noise:
            if lines.w_streams is None or len(lines.w_streams) != n_chips:
                raise ValueError("the periphery's weight noise needs one stream per chip (TileLines.w_streams)")
            w_noise = [s.normal_(torch.empty_like(z[c])) for c, s in enumerate(lines.w_streams)]

        def finish(c: int, b0: int, b1: int, x: Tensor) -> int:
            zb = z[c, b0:b1]
            if lines is not None:
                apply_lines(self, zb, x, code_weight[c], lines, c, None if w_noise is None else w_noise[c][b0:b1])
            if not adc:
                return 0
            if not cuda:
                stream = chip_streams[c]
                return noisy_adc(zb, None if stream is None else stream.key, std, rnd, bound, b0 * per_row, starts[c])
            if out_noise[c] is not None:
                zb.add_(out_noise[c][b0:b1])
            if rnd:
                zb.round_()
            return 0

        if not columns:
            for c in range(n_chips):
                x = codes[c if cx > 1 else 0]
                if self.settings.ir_drop > 0:
                    ir_products(self, z[c], x, code_weight[c], lines.signed)
                else:
                    torch.mm(x, code_weight[c].T, out=z[c])
                over += finish(c, 0, z.shape[1], x)
            return z, None if cuda else over > 0
        for b0, b1, block in codes if isinstance(codes, CodeBlocks) else [(0, batch, codes)]:
            for c in range(n_chips):
                x = block[c if cx > 1 else 0]
                if self.settings.ir_drop > 0:
                    ir_products(self, z[c, b0:b1], x, code_weight[c], lines.signed)
                else:
                    _column_products(z[c, b0:b1], code_weight[c], x, False)
                over += finish(c, b0, b1, x)
        return z, None if cuda else over > 0

    def _adc_products_accumulated(self, codes, code_weight, streams, columns, std) -> Tensor:
        """CUDA: each chip's noise drawn first, the products accumulated onto it."""
        n_chips, n_out = code_weight.shape[0], code_weight.shape[1]
        if not columns:
            if streams is None:
                z = torch.matmul(codes, code_weight.transpose(-1, -2))
            else:
                z = codes.new_empty((n_chips, codes.shape[1], n_out))
                for c, stream in enumerate(streams):
                    stream.normal_(z[c], std).addmm_(codes[c if codes.shape[0] > 1 else 0], code_weight[c].T)
        elif streams is None and isinstance(codes, Tensor):
            z = torch.matmul(code_weight.unsqueeze(1), codes)  # one launch for all chips
        else:
            cx, batch, _, length = codes.shape
            z = code_weight.new_empty((n_chips, batch, n_out, length))
            for b0, b1, block in codes if isinstance(codes, CodeBlocks) else [(0, batch, codes)]:
                for c in range(n_chips):
                    if streams is not None and b0 == 0:  # the chip's noise, whole, before its first products
                        streams[c].normal_(z[c], std)
                    _column_products(z[c, b0:b1], code_weight[c], block[c if cx > 1 else 0], streams is not None)
        return z.round_() if self.settings.out_res > 0 else z

    def matmul(
        self,
        inputs: Inputs,
        weights: Tensor,
        tiles: Sequence[tuple[int, int, int, int]],
        tile_scale: Optional[Tensor],
        streams: Optional[Sequence[NoiseStream]],
        lines: Optional[LineState] = None,
    ) -> Tensor:
        """Every chip's analog products of ``inputs`` with its tiles, in input units.

        Args:
            inputs: the vectors, ``(Cx, n, in)`` rows or ``(Cx, B, in, L)`` columns.
            weights: ``(C, out, in)`` tile weights from :meth:`code_weights`.
            tiles: the ``(o0, o1, i0, i1)`` block of each tile.
            tile_scale: ``(C, n_tiles)`` or ``(C, n_tiles, T)``, each tile's output scale
                (its largest target |weight|, times drift compensation's factor; with
                ``T`` > 1 one for each of the tile's columns), or None for 1.
            streams: one :class:`~crossbar.rng.NoiseStream` per chip for the output noise.
            lines: what the array effects need (weight-noise streams, each tile's
                non-linearity), when the periphery has them.

        Returns ``(C, n, out)`` or ``(C, B, out, L)``; tiles that share outputs are summed.
        """
        uses: dict[tuple[int, int], int] = {}
        for _, _, i0, i1 in tiles:
            uses[(i0, i1)] = uses.get((i0, i1), 0) + 1
        y: Optional[Tensor] = None
        for k, (o0, o1, i0, i1) in enumerate(tiles):
            codes, unit = inputs.codes(self, i0, i1, once=uses[(i0, i1)] == 1)
            z, factor = self.mvm(
                codes, unit, lambda i0=i0, i1=i1: inputs.vectors()[:, :, i0:i1], weights[:, o0:o1, i0:i1], streams,
                inputs.columns, None if lines is None else self._tile_lines(lines, k, inputs),
            )
            column_scale = None
            if tile_scale is not None:
                if tile_scale.dim() == 3 and tile_scale.shape[2] > 1:  # one scale per column (and chip)
                    column_scale = tile_scale[:, k, :o1 - o0].view(tile_scale.shape[0], 1, o1 - o0,
                                                                   *([1] * inputs.columns))
                else:
                    scale = tile_scale[:, k] if tile_scale.dim() == 2 else tile_scale[:, k, 0]
                    factor = factor * scale.view(-1, *([1] * (factor.dim() - 1)))
            if column_scale is not None:
                z.mul_(column_scale)
            if len(tiles) == 1:
                return z.mul_(factor)
            if y is None:
                shape = list(z.shape)
                shape[2] = weights.shape[1]
                y = z.new_zeros(shape)
            y[:, :, o0:o1].addcmul_(z, factor)
        assert y is not None
        return y

    def _tile_lines(self, lines: LineState, k: int, inputs: Inputs) -> TileLines:
        tile = lines.tile(k)
        return dataclasses.replace(tile, signed=inputs.signed()) if self.settings.ir_drop > 0 else tile

    def mvm(
        self,
        codes: "Tensor | CodeBlocks",
        unit: Tensor,
        x_raw: "Tensor | Callable[[], Tensor]",
        code_weight: Tensor,
        streams: Optional[Sequence[NoiseStream]],
        columns: bool = False,
        lines: Optional[TileLines] = None,
    ) -> tuple[Tensor, Tensor]:
        """Analog products of DAC codes with one tile's weights, for every chip.

        Args:
            codes, unit: from :meth:`prepare_input`; ``(Cx, n, k)`` vectors in rows, or
                with ``columns`` ``(Cx, B, k, L)`` vectors in columns (convolutions);
                ``Cx`` is 1 when all chips share the input, else ``C``. Columns may
                also come as :class:`CodeBlocks`.
            x_raw: the unscaled inputs, same layout, or a function that rebuilds them;
                needed only when an output clips and bound management is on.
            code_weight: ``(C, out, k)`` from :meth:`code_weights`, one matrix per chip.
            streams: one :class:`~crossbar.rng.NoiseStream` per chip for the output noise.
            lines: the tile's :class:`TileLines` (weight-noise streams, non-linearity).

        Returns:
            ``(z, factor)``: ADC codes ``(C, n, out)`` (or ``(C, B, out, L)``) and the
            per-vector factor that turns them into outputs in input units.
        """
        z, clips = self._adc_products(codes, code_weight, streams, columns, lines)
        factor = unit * (self.out_unit / self.in_unit)  # codes -> normalised -> input units
        if self.settings.out_bound > 0:
            bound = self.settings.out_bound / self.out_unit
            if clips is None:
                # One cheap reduction settles the common case where nothing clips
                # (aminmax: one pass, measured 1.9x faster than max() and min()).
                lo, hi = torch.aminmax(z)
                clips = bool(hi > bound) or bool(lo < -bound)
            if clips:
                if self.bm_limit > 0:
                    raw = x_raw() if callable(x_raw) else x_raw
                    factor = self._manage_bounds(z, factor, raw, unit, code_weight, streams, columns, bound, lines)
                z = z.clamp_(-bound, bound)
        return z, factor

    def _manage_bounds(self, z, factor, x_raw, unit, code_weight, streams, columns, bound, lines=None):
        """Recompute clipped vectors with halved inputs until they fit (aihwkit ITERATIVE)."""
        vec = -2 if columns else -1  # where a vector's elements lie
        z_v = z.movedim(vec, -1)
        clipped = z_v.abs().amax(-1) > bound
        if not bool(clipped.any()):
            return factor
        factor = factor.expand(z.shape[0], *factor.shape[1:]).clone()
        f_v, x_v, u_v = factor.movedim(vec, -1), x_raw.movedim(vec, -1), unit.movedim(vec, -1)
        reduction = 1.0
        while reduction <= self.bm_limit and bool(clipped.any()):
            reduction *= 2.0
            for c in range(z.shape[0]):
                mask = clipped[c]
                if not bool(mask.any()):
                    continue
                cx = c if x_raw.shape[0] > 1 else 0
                u_sel = u_v[cx][mask] * reduction
                codes_sel = self._dac(x_v[cx][mask] * u_sel.reciprocal()).unsqueeze(0)
                chip_stream = None if streams is None else [streams[c]]
                chip_lines = None if lines is None else lines.chip(c)
                y_sel = self._adc_products(codes_sel, code_weight[c:c + 1], chip_stream, False, chip_lines)[0][0]
                z_v[c][mask] = y_sel
                f_v[c][mask] = u_sel * (self.out_unit / self.in_unit)
                clipped[c][mask.clone()] = y_sel.abs().amax(-1) > bound
        return factor
