"""Crossbar layers: ``nn.Linear`` and ``nn.Conv2d`` on tiles of devices, for many chips at once.

Each layer holds the weights of all its chips as one ``(n_chips, ...)`` tensor:
programmed once (:class:`crossbar.arrays.ProgrammedArray`), then read at an inference
time (:meth:`CrossbarLayer.drift`). With a perfect periphery a layer multiplies by the
chips' effective weights directly; otherwise its inputs go through the periphery (DAC,
tiles, output noise, ADC, bounds: :meth:`crossbar.periphery.Periphery.matmul`).

A :class:`crossbar.model.CrossbarModel` runs the layers either with every chip folded
into the batch (``fold``: a layer sees ``n_chips * batch`` rows, or ``batch`` rows all
chips share) or once per chip on a thread of its own (``loop``: a layer sees one chip's
batch); the :class:`ChipContext` it shares with its layers says which. Biases stay
digital (aihwkit's default ``digital_bias``).
"""

from __future__ import annotations

import threading
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .arrays import ProgrammedArray
from .calibration import ColumnCorrection, patch_sums
from .common import Stream, derive_seed, time_key
from .compensation import drift_factors, drift_readouts, scale_tiles
from .inputs import CodeCache, ConvGeometry, PatchInputs, RowInputs
from .lines import LineState, line_nonlinearity
from .periphery import Periphery
from .presets import Preset
from .rng import NoiseStream
from .slicing import Slicing, cell_digits, program_sliced, sliced_matmul

_conv_out = torch.ops.aten.convolution.out


class ChipContext:
    """State shared by the layers of one CrossbarModel during a forward pass.

    ``chip`` is per thread: in loop mode several threads run different chips through
    the same layers at once.
    """

    def __init__(self) -> None:
        self.n_chips = 0
        self.batch = 0  # fold: batch size of the model input
        self.streams: Optional[list[NoiseStream]] = None  # output noise, one per chip
        self.w_streams: Optional[list[NoiseStream]] = None  # output-referred weight noise, one per chip
        self.model_input: Optional[Tensor] = None  # loop: the input every chip thread runs
        self.fitting = False  # a calibration pass: each layer fits its columns' gain and offset
        self.digital: Optional[dict] = None  # a digital pass: each layer's inputs, by layer
        self._local = threading.local()

    @property
    def chip(self) -> Optional[int]:
        """loop: the chip this thread is running; fold: None."""
        return getattr(self._local, "chip", None)

    @chip.setter
    def chip(self, value: Optional[int]) -> None:
        self._local.chip = value

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        del state["_local"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._local = threading.local()


class CrossbarLayer(nn.Module):
    """Common part of the crossbar layers: programming, drift, tiles, periphery."""

    def __init__(self, weight: Tensor, bias: Optional[Tensor], preset: Preset, index: int):
        super().__init__()
        self.register_buffer("weight", weight.detach().clone())
        self.register_buffer("bias", None if bias is None else bias.detach().clone())
        self.preset = preset
        self.index = index
        self.periphery = Periphery(preset.periphery)
        self.array: Optional[ProgrammedArray] = None
        self._ctx = ChipContext()
        self._w: Optional[Tensor] = None  # (C, *weight.shape) effective weights, perfect periphery
        self._wn: Optional[Tensor] = None  # (C, out, in) tile weights in DAC->ADC codes, periphery on
        self._tile_scale: Optional[Tensor] = None  # (C, n_tiles, 1 or columns) abs-max x compensation
        self._baseline: Optional[Tensor] = None  # (C, n_tiles, 1 or columns) drift compensation's first read-out
        self._nonlinearity: Optional[tuple[list[Tensor], list[Tensor]]] = None  # per tile: (C, out) n_i, (C,) f
        self._codes = CodeCache()
        self.slicing = Slicing.of(preset) if preset.architecture.sliced else None
        self._w_max: list[float] = []  # sliced: each weight tile's largest |weight|
        self.correction: Optional[ColumnCorrection] = None  # each chip's calibrated columns, after the ADC
        self.input_range: Optional[float] = None  # the DAC's calibrated full scale, or None: each vector's abs max
        self.ran = False  # set by every forward: the model's first pass checks that each crossbar ran

    # --- programming and time -------------------------------------------------

    def program(self, n_chips: int, seed: int, first_chip: int) -> None:
        if self.slicing is not None:
            self._program_sliced(n_chips, seed, first_chip)
            return
        self.array = ProgrammedArray(self.weight, self.preset, n_chips, seed, first_chip, self.index)
        self._w = self._wn = self._tile_scale = None
        self.correction = None
        self._baseline = None
        self._nonlinearity = self._draw_nonlinearity() if self.preset.out_nonlinearity > 0 else None
        comp = self.preset.drift_compensation_model
        if comp is not None:
            tiles = ((k, w.to(self.weight.device)) for k, w in self.array.tile_weights(None))  # a tile at a time
            self._baseline = drift_readouts(self.array, comp, tiles, self._readout_product(Stream.BASELINE, None))

    def _program_sliced(self, n_chips: int, seed: int, first_chip: int) -> None:
        """The cells of sliced weights (:mod:`crossbar.slicing`)."""
        self.array, self._weight_tiles, self._w_max = program_sliced(self.weight, self.preset, n_chips, seed,
                                                                      first_chip, self.index)
        self._w = self._wn = self._tile_scale = self._baseline = self._nonlinearity = None

    def _draw_nonlinearity(self) -> tuple[list[Tensor], list[Tensor]]:
        """Every chip's output-line non-linearity, per tile: fixed from programming on."""
        array = self.array
        assert array is not None
        n_i = [torch.empty((array.n_chips, o1 - o0), dtype=torch.float64) for o0, o1, _, _ in array.tiles]
        factor = [torch.empty(array.n_chips, dtype=torch.float64) for _ in array.tiles]
        for c, chip in enumerate(array.chips):
            gen = torch.Generator().manual_seed(derive_seed(array.seed, Stream.LINES, self.index, chip))
            for k, (o0, o1, _, _) in enumerate(array.tiles):
                n_i[k][c], factor[k][c] = line_nonlinearity(self.periphery.settings, o1 - o0, gen)
        device = self.weight.device
        return [n.to(device) for n in n_i], factor

    def _lines(self, w_streams: Optional[list[NoiseStream]], chips: slice = slice(None)) -> Optional[LineState]:
        """The array effects' state for the chips ``chips`` (None without effects)."""
        if not self.periphery.lines:
            return None
        n_i, factor = self._nonlinearity if self._nonlinearity is not None else (None, None)
        return LineState(w_streams, n_i, factor).chips(chips)

    def _readout_product(self, stream: Stream, t: Optional[float]):
        """Drift compensation's read-out of a tile through the periphery (None: exact).
        The output noise comes from each chip's own read-out stream."""
        if self.periphery.perfect:
            return None
        array = self.array
        assert array is not None
        extra = () if t is None else (time_key(t),)

        def product(block: Tensor, k: int) -> Tensor:
            streams = [NoiseStream(derive_seed(array.seed, stream, self.index, chip, *extra), block.device)
                       for chip in array.chips]
            lines = None
            if self.periphery.lines:
                w_streams = [NoiseStream(derive_seed(array.seed, stream, self.index, chip, *extra,
                                                     Stream.WEIGHT_NOISE), block.device) for chip in array.chips]
                lines = self._lines(w_streams).only_tile(k)
            eye = torch.eye(block.shape[2], dtype=block.dtype, device=block.device).unsqueeze(0)
            whole = [(0, block.shape[1], 0, block.shape[2])]
            return self.periphery.matmul(RowInputs(eye), self.periphery.code_weights(block), whole, None, streams,
                                         lines)

        return product

    def drift(self, t_inference: Optional[float]) -> None:
        """Read every chip at ``t_inference`` (None: right after programming)."""
        if self.array is None:
            raise RuntimeError("program() the model before drift()")
        self._w = self._wn = self._tile_scale = None  # the last read's weights go before the next are read
        if self.slicing is not None:  # each cell column's digits per unit of input
            digits = cell_digits(self.array.conductances(t_inference), self.slicing)
            self._wn = digits.to(device=self.weight.device, dtype=torch.float32)
            return
        weights = self.array.weights(t_inference).to(self.weight.device)  # (C, out, in)
        alpha = weights.new_ones((weights.shape[0], len(self.array.tiles), 1))
        if self._baseline is not None:
            comp = self.preset.drift_compensation_model
            alpha = drift_factors(self.array, comp, self._baseline, weights,
                                  self._readout_product(Stream.READOUT, t_inference))
        dtype = self.weight.dtype
        if self.periphery.perfect:
            if self._baseline is not None:
                scale_tiles(weights, self.array.tiles, alpha)
            self._w = weights.to(dtype).reshape(weights.shape[0], *self.weight.shape)
        else:
            abs_max = weights.new_tensor([m or 1.0 for m in self.array.tile_abs_max]).unsqueeze(1)
            for k, (o0, o1, i0, i1) in enumerate(self.array.tiles):  # each tile's largest target |weight| is 1
                weights[:, o0:o1, i0:i1] /= abs_max[k, 0]
            self._wn = self.periphery.code_weights(weights).to(dtype)
            self._tile_scale = (alpha * abs_max).to(dtype)

    # --- forward helpers ------------------------------------------------------

    def _ready(self) -> None:
        self.ran = True
        if self._w is None and self._wn is None:
            raise RuntimeError("crossbar layer has no chips: call program() and drift() first")

    # --- calibration (crossbar.calibration) ------------------------------------

    def _digital(self, x: Tensor) -> Tensor:
        """A digital pass: the exact layer, its input kept for the input range."""
        self._ctx.digital.setdefault(self, []).append(x.detach())
        return self._exact(x, self.bias)

    def start_fit(self) -> None:
        """Before a calibration pass: every chip's columns uncorrected (gain 1, offset 0)."""
        assert self.array is not None
        n_sums = len(self._splits()) if self.preset.calibration_input_sum else 0
        self.correction = ColumnCorrection(self.array.n_chips, self.weight.shape[0], n_sums, self.weight)

    def _clip(self, x: Tensor) -> Tensor:
        """Inputs beyond the calibrated input range clip at the DAC."""
        return x if self.input_range is None else x.clamp(-self.input_range, self.input_range)

    def _splits(self) -> list[tuple[int, int]]:
        """The input splits of the layer's tiles (each its own input sum)."""
        assert self.array is not None
        return sorted({(i0, i1) for _, _, i0, i1 in self.array.tiles})

    def _correct(self, y: Tensor, ideal, chips: slice, sums: Optional[Tensor]) -> Tensor:
        """The columns' calibrated correction and the bias (:class:`ColumnCorrection`)."""
        assert self.correction is not None
        return self.correction.apply(y, chips, sums, self.bias, ideal if self._ctx.fitting else None)

    def _analog(self, inputs: "RowInputs | PatchInputs") -> Tensor:
        """The periphery's products of ``inputs`` with the chips this thread runs."""
        assert self.array is not None and self._wn is not None
        ctx = self._ctx
        streams = ctx.streams
        if ctx.chip is None:
            chips = slice(None)
        else:
            chips = slice(ctx.chip, ctx.chip + 1)
            streams = None if streams is None else [streams[ctx.chip]]
        if self.slicing is not None:
            vectors = inputs.vectors()
            if inputs.columns:  # (Cx, B, k, L) patches -> rows
                cx, batch, k, length = vectors.shape
                rows = vectors.permute(0, 1, 3, 2).reshape(cx, batch * length, k)
            else:
                rows = vectors
            y = sliced_matmul(rows, self._wn[chips], self._weight_tiles, self._w_max, self.slicing, streams)
            y = y.to(vectors.dtype)
            if inputs.columns:
                y = y.view(y.shape[0], batch, length, -1).permute(0, 1, 3, 2).contiguous()
            return y
        assert self._tile_scale is not None
        lines = self._lines(ctx.w_streams, chips)
        return self.periphery.matmul(inputs, self._wn[chips], self.array.tiles, self._tile_scale[chips], streams,
                                     lines)

    def _shared(self, x: Tensor) -> bool:
        """loop: other chip threads bring this same tensor (the model's input)."""
        return self._ctx.chip is not None and x is self._ctx.model_input

    def _layout(self, x: Tensor) -> bool:
        """Fold mode: True if ``x`` is folded (C*B rows), False if shared by all chips."""
        ctx = self._ctx
        if x.shape[0] == ctx.n_chips * ctx.batch:
            return True
        if x.shape[0] == ctx.batch:
            return False
        raise RuntimeError(
            f"{type(self).__name__}: input batch {x.shape[0]} is neither the model's batch "
            f"({ctx.batch}) nor chips x batch ({ctx.n_chips * ctx.batch}); "
            "use strategy='loop' for models that reshape the batch dimension"
        )

    def extra_repr(self) -> str:
        n = 0 if self.array is None else self.array.n_chips
        return f"preset={self.preset.name!r}, index={self.index}, n_chips={n}"


class CrossbarLinear(CrossbarLayer):
    """``nn.Linear`` on crossbar tiles, for many chips at once."""

    def _exact(self, x: Tensor, bias: Optional[Tensor]) -> Tensor:
        return F.linear(x, self.weight, bias)

    def _forward_calibrated(self, raw: Tensor, x: Tensor) -> Tensor:
        """The forward pass with each column's gain and offset (fitted first in a calibration pass)."""
        ctx = self._ctx
        n_in = self.weight.shape[1]
        if ctx.chip is not None:
            chips, vecs, shape = slice(ctx.chip, ctx.chip + 1), x.reshape(1, -1, n_in), (*x.shape[:-1], -1)
        else:
            folded = self._layout(x)
            chips, vecs = slice(None), x.reshape(ctx.n_chips if folded else 1, -1, n_in)
            shape = (ctx.n_chips * (x.shape[0] // ctx.n_chips if folded else x.shape[0]), *x.shape[1:-1], -1)
        if self._w is not None:
            y = torch.matmul(vecs, self._w[chips].transpose(1, 2))
        else:
            y = self._analog(RowInputs(vecs, x, self._codes, self.input_range))
        sums = torch.stack([vecs[..., i0:i1].sum(-1) for i0, i1 in self._splits()], -1).unsqueeze(2) \
            if self.preset.calibration_input_sum else None
        y = self._correct(y, lambda: torch.matmul(raw.reshape(vecs.shape), self.weight.T), chips, sums)
        return y.reshape(shape)

    def forward(self, x: Tensor) -> Tensor:
        if self._ctx.digital is not None:
            return self._digital(x)
        self._ready()
        if self.correction is not None:
            return self._forward_calibrated(x, self._clip(x))
        x = self._clip(x)
        ctx = self._ctx
        n_in = self.weight.shape[1]
        if ctx.chip is not None:  # loop: one chip, ordinary batch
            if self._w is not None:
                return F.linear(x, self._w[ctx.chip], self.bias)
            y = self._analog(RowInputs(x.reshape(1, -1, n_in), x, self._codes, self.input_range))[0]
            y = y.view(*x.shape[:-1], -1)
            return y if self.bias is None else y.add_(self.bias)  # y is fresh
        folded = self._layout(x)
        n_chips = ctx.n_chips
        rows = x.shape[0] // n_chips if folded else x.shape[0]
        vecs = x.reshape(n_chips if folded else 1, -1, n_in)
        if self._w is not None:
            if folded:
                y = torch.bmm(vecs, self._w.transpose(1, 2))
            else:
                y = x.new_empty((n_chips, vecs.shape[1], self._w.shape[1]))
                for c in range(n_chips):
                    torch.mm(vecs[0], self._w[c].T, out=y[c])
        else:
            y = self._analog(RowInputs(vecs, x, self._codes, self.input_range))
        if self.bias is not None:
            y += self.bias
        return y.view(n_chips * rows, *x.shape[1:-1], -1)


class CrossbarConv2d(CrossbarLayer):
    """``nn.Conv2d`` on crossbar tiles, for many chips at once.

    With a perfect periphery every chip's convolution stays a convolution; with the
    periphery on, inputs are unfolded into the vectors the tiles see (as aihwkit does).
    """

    def __init__(self, conv: nn.Conv2d, preset: Preset, index: int):
        super().__init__(conv.weight, conv.bias, preset, index)
        self.stride, self.dilation, self.groups = conv.stride, conv.dilation, conv.groups
        self.kernel_size = conv.kernel_size
        # String padding ('same') and non-zero padding modes become an explicit pad.
        if isinstance(conv.padding, str) or conv.padding_mode != "zeros":
            self.pre_pad = tuple(conv._reversed_padding_repeated_twice)
            self.pad_mode = "constant" if conv.padding_mode == "zeros" else conv.padding_mode
            self.padding = (0, 0)
        else:
            self.pre_pad, self.pad_mode, self.padding = None, "constant", conv.padding
        self.geometry = ConvGeometry(self.kernel_size, self.stride, self.padding, self.dilation)
        if self.groups != 1 and (not self.periphery.perfect or self.slicing is not None):
            raise ValueError(f"Conv2d with groups={self.groups}: with a periphery each group is a layer of its own; "
                             "crossbar.grouped.GroupedConv2d (what crossbar.convert makes) runs them")

    def _out_hw(self, h: int, w: int) -> tuple[int, int]:
        return tuple(
            (size + 2 * p - d * (k - 1) - 1) // s + 1
            for size, p, d, k, s in zip((h, w), self.padding, self.dilation, self.kernel_size, self.stride)
        )

    def _conv(self, x: Tensor, w: Tensor, out: Optional[Tensor] = None) -> Tensor:
        if out is None:
            return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)
        return _conv_out(x, w, self.bias, self.stride, self.padding, self.dilation, False, [0, 0], self.groups, out=out)

    def _exact(self, x: Tensor, bias: Optional[Tensor]) -> Tensor:
        if self.pre_pad is not None:
            x = F.pad(x, self.pre_pad, mode=self.pad_mode)
        return F.conv2d(x, self.weight, bias, self.stride, self.padding, self.dilation, self.groups)

    def _forward_calibrated(self, raw: Tensor, x: Tensor) -> Tensor:
        """The forward pass with each column's gain and offset (fitted first in a calibration pass)."""
        ctx = self._ctx
        key = x
        if self.pre_pad is not None:
            x = F.pad(x, self.pre_pad, mode=self.pad_mode)
        h_out, w_out = self._out_hw(x.shape[-2], x.shape[-1])
        n_out = self.weight.shape[0]
        if ctx.chip is not None:
            chips, n_x, n_c, batch = slice(ctx.chip, ctx.chip + 1), 1, 1, x.shape[0]
        else:
            folded = self._layout(x)
            chips, n_x, n_c, batch = slice(None), ctx.n_chips if folded else 1, ctx.n_chips, ctx.batch
        if self._w is not None:
            y = x.new_empty((n_c, batch, n_out, h_out * w_out))
            w = self._w[chips]
            for c in range(n_c):
                xc = x[c * batch:(c + 1) * batch] if n_x > 1 else x
                y[c] = F.conv2d(xc, w[c], None, self.stride, self.padding, self.dilation, self.groups).flatten(2)
        else:
            inputs = PatchInputs(x, n_x, self.geometry, key, self._codes, shared=self._shared(key),
                                 scale=self.input_range)
            y = self._analog(inputs)  # (C, B, out, L)
        sums = patch_sums(x, n_x, self.weight.shape, self.kernel_size, self.stride, self.padding, self.dilation,
                          self.groups, self._splits()) if self.preset.calibration_input_sum else None
        y = self._correct(y, lambda: self._exact(raw, None).view(n_x, -1, n_out, h_out * w_out), chips, sums)
        return y.view(n_c * batch, n_out, h_out, w_out)

    def forward(self, x: Tensor) -> Tensor:
        if self._ctx.digital is not None:
            return self._digital(x)
        self._ready()
        if self.correction is not None:
            return self._forward_calibrated(x, self._clip(x))
        x = self._clip(x)
        key = x
        if self.pre_pad is not None:
            x = F.pad(x, self.pre_pad, mode=self.pad_mode)
        ctx = self._ctx
        h_out, w_out = self._out_hw(x.shape[-2], x.shape[-1])
        n_out = self.weight.shape[0]
        if ctx.chip is not None:  # loop: one chip, ordinary batch
            if self._w is not None:
                return self._conv(x, self._w[ctx.chip])
            inputs = PatchInputs(x, 1, self.geometry, key, self._codes, shared=self._shared(key),
                                 scale=self.input_range)
            y = self._analog(inputs)[0].view(x.shape[0], n_out, h_out, w_out)
            return y if self.bias is None else y.add_(self.bias.view(1, -1, 1, 1))
        folded = self._layout(x)
        n_chips, batch = ctx.n_chips, ctx.batch
        if self._w is not None:
            out = x.new_empty((n_chips * batch, n_out, h_out, w_out))
            for c in range(n_chips):
                xc = x[c * batch:(c + 1) * batch] if folded else x
                self._conv(xc, self._w[c], out=out[c * batch:(c + 1) * batch])
            return out
        inputs = PatchInputs(x, n_chips if folded else 1, self.geometry, key, self._codes, scale=self.input_range)
        y = self._analog(inputs).view(n_chips * batch, n_out, h_out, w_out)  # from (C, B, out, L)
        return y if self.bias is None else y.add_(self.bias.view(1, -1, 1, 1))
