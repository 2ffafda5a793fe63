"""Crossbar layers and the chip-batched model that runs many simulated chips at once.

:func:`convert` copies any ``torch.nn.Module`` and replaces each ``nn.Linear`` and
``nn.Conv2d`` by a crossbar layer. The result, a :class:`CrossbarModel`, follows
aihwkit's life cycle for a whole batch of chips::

    xmodel = crossbar.convert(model, "pcm")
    xmodel.program(n_chips=16, seed=0)   # programming noise, drift parameters, faults
    xmodel.drift(86400.0)                # every chip as it is one day later
    logits = xmodel(x)                   # (16, batch, classes)

Each layer holds the weights of all its chips as one ``(n_chips, ...)`` tensor. Two
ways to run the network over them give identical results:

- ``"fold"``: chips are folded into the batch dimension (chip-major, one forward pass
  for all chips): fully-connected layers are one batched matmul, the periphery is
  batched over chips, convolutions are dispatched per chip slice into one output.
- ``"loop"``: the network runs once per chip over the same pre-sampled weights, so
  each chip's activations stay cache-sized. On a CPU, chips run side by side on
  ``threads`` threads (default: torch's thread count), each chip on one thread. On a
  CPU this measured faster (see ``bench/mc_eval.py``); ``"auto"`` picks ``loop`` on
  CPU and ``fold`` on CUDA.

Biases stay digital (aihwkit's default ``digital_bias``). The copy's ``nn.MaxPool2d``
modules become :class:`WindowMaxPool2d`: the same numbers, computed faster on a CPU.
"""

from __future__ import annotations

import concurrent.futures
import copy
import os
import sys
import threading
import warnings
import weakref
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .devices import (
    BASELINE,
    FORWARD,
    READOUT,
    ProgrammedArray,
    check_int,
    check_n_chips,
    check_seed,
    check_weight,
    derive_seed,
    devices_per_weight,
    physics_dtype,
    time_key,
)
from .periphery import CodeBlocks, Periphery
from .presets import Preset, resolve_preset
from .rng import NoiseStream

STRATEGIES = ("auto", "fold", "loop")

# Batch rows of convolution DAC codes made at a time on a CPU: about this many bytes,
# so that the codes are still in cache when the products read them. Measured on a
# 2-core CPU (32 MiB L3, 512 KiB L2 a core): 1-4 MiB are alike; whole batches of
# ResNet-20's first layer (150 MB of codes) took 2.4x as long.
CODE_BLOCK_BYTES = 2 << 20


def check_strategy(strategy: str) -> str:
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    return strategy


_conv_out = torch.ops.aten.convolution.out


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def window_max(x: Tensor, kernel_size, stride=None, dilation=1) -> Tensor:
    """Max over 2-d windows of the last two dimensions (no padding, floor mode).

    The same numbers as ``F.max_pool2d`` (NaN propagates), computed as a running
    ``torch.maximum`` over the strided views of each window offset, rows first, then
    columns. On a CPU torch's max-pool kernel (which also computes indices) measured
    5-13x slower than this for the 2x2 pools of LeNet/VGG (see ``bench/mc_eval.py``).
    """
    kernel, dilation = _pair(kernel_size), _pair(dilation)
    stride = kernel if stride is None or stride == () or stride == [] else _pair(stride)
    for dim, k, s, d in ((-2, kernel[0], stride[0], dilation[0]), (-1, kernel[1], stride[1], dilation[1])):
        size = x.shape[dim]
        n_out = (size - d * (k - 1) - 1) // s + 1
        if n_out < 1:
            raise ValueError(f"max-pool window {kernel} does not fit an input of {tuple(x.shape[-2:])}")
        views = [x.narrow(dim, i * d, (n_out - 1) * s + 1) for i in range(k)]
        if s > 1:
            views = [v[..., ::s, :] if dim == -2 else v[..., ::s] for v in views]
        if k == 1:
            x = views[0]
            continue
        m = torch.maximum(views[0], views[1])
        for v in views[2:]:
            torch.maximum(m, v, out=m)
        x = m
    return x


class WindowMaxPool2d(nn.MaxPool2d):
    """``nn.MaxPool2d`` computed with :func:`window_max` where that gives the same
    result (no padding, no indices, floor mode); :func:`convert` puts it in place of
    the model's max-pools."""

    @classmethod
    def from_module(cls, pool: nn.MaxPool2d) -> "WindowMaxPool2d":
        new = cls(pool.kernel_size, pool.stride, pool.padding, pool.dilation, pool.return_indices, pool.ceil_mode)
        new.train(pool.training)
        return new

    def forward(self, x: Tensor) -> Tensor:
        (kh, kw), (dh, dw) = _pair(self.kernel_size), _pair(self.dilation)
        if (
            self.return_indices or self.ceil_mode or _pair(self.padding) != (0, 0) or x.dim() not in (3, 4)
            or x.shape[-2] < dh * (kh - 1) + 1 or x.shape[-1] < dw * (kw - 1) + 1  # torch's error
        ):
            return super().forward(x)
        return window_max(x, self.kernel_size, self.stride, self.dilation)


class _ChipContext:
    """State shared by the layers of one CrossbarModel during a forward pass.

    ``chip`` is per thread: in loop mode several threads run different chips through
    the same layers at once.
    """

    def __init__(self) -> None:
        self.n_chips = 0
        self.batch = 0  # fold: batch size of the model input
        self.streams: Optional[list[NoiseStream]] = None  # output noise, one per chip
        self.model_input: Optional[Tensor] = None  # loop: the input every chip thread runs
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


_POOLS: dict[tuple[int, int], concurrent.futures.ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def _chip_pool(threads: int) -> concurrent.futures.ThreadPoolExecutor:
    """A process-wide pool of ``threads`` threads for running chips side by side."""
    key = (os.getpid(), threads)  # a forked child must not use its parent's threads
    with _POOLS_LOCK:
        pool = _POOLS.get(key)
        if pool is None:
            pool = _POOLS[key] = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="crossbar-chip")
        return pool


def check_threads(threads) -> Optional[int]:
    return None if threads is None else check_int(threads, "threads", 1, " or None (torch's thread count)")


class CrossbarLayer(nn.Module):
    """Common part of the crossbar layers: programming, drift, tiles, periphery."""

    def __init__(self, weight: Tensor, bias: Optional[Tensor], preset: Preset, index: int):
        super().__init__()
        self.register_buffer("weight", weight.detach().clone())
        self.register_buffer("bias", None if bias is None else bias.detach().clone())
        self.preset = preset
        self.index = index
        self.periphery = Periphery.from_preset(preset)
        self.array: Optional[ProgrammedArray] = None
        self._ctx = _ChipContext()
        self._w: Optional[Tensor] = None  # (C, *weight.shape) effective weights, perfect periphery
        self._wn: Optional[Tensor] = None  # (C, out, in) tile weights in DAC->ADC codes, periphery on
        self._tile_scale: Optional[Tensor] = None  # (C, n_tiles) abs-max x compensation
        self._baseline: Optional[Tensor] = None
        self._input_cache: tuple = (None, -1, {})
        self._cache_lock = threading.Lock()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        del state["_cache_lock"]
        state["_input_cache"] = (None, -1, {})
        return state

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self._cache_lock = threading.Lock()

    # --- programming and time -------------------------------------------------

    def program(self, n_chips: int, seed: int, first_chip: int) -> None:
        self.array = ProgrammedArray(self.weight, self.preset, n_chips, seed, first_chip, self.index)
        self._w = self._wn = self._tile_scale = None
        self._baseline = None
        if self.preset.drift_compensation:
            self._baseline = self._readout(self.array.weights(None).to(self.weight.device), BASELINE, None)

    def _readout(self, weights: Tensor, stage: int, t: Optional[float]) -> Tensor:
        """aihwkit's GlobalDriftCompensation read-out, per chip and tile: mean |W^T eye|."""
        comp = self.preset.drift_compensation_model
        assert self.array is not None and comp is not None
        values = weights.new_empty((weights.shape[0], len(self.array.tiles)))
        for k, ((o0, o1, i0, i1), abs_max) in enumerate(zip(self.array.tiles, self.array.tile_abs_max)):
            block = weights[:, o0:o1, i0:i1] / (abs_max or 1.0)
            if self.periphery.perfect:
                out = block.transpose(1, 2)
            else:
                extra = () if t is None else (time_key(t),)
                streams = [
                    NoiseStream(derive_seed(self.array.seed, stage, self.index, chip, *extra), block.device)
                    for chip in self.array.chips
                ]
                eye = torch.eye(i1 - i0, dtype=block.dtype, device=block.device).unsqueeze(0)
                codes, unit = self.periphery.prepare_input(eye)
                z, factor = self.periphery.mvm(codes, unit, eye, self.periphery.code_weights(block), streams)
                out = z * factor
            for c in range(weights.shape[0]):
                values[c, k] = comp.readout(out[c])
        return values

    def drift(self, t_inference: float) -> None:
        if self.array is None:
            raise RuntimeError("program() the model before drift()")
        weights = self.array.weights(t_inference).to(self.weight.device)  # (C, out, in)
        n_tiles = len(self.array.tiles)
        alpha = weights.new_ones((weights.shape[0], n_tiles))
        if self._baseline is not None:
            alpha = self._baseline / self._readout(weights, READOUT, t_inference)
        dtype = self.weight.dtype
        if self.periphery.perfect:
            if self._baseline is not None:
                for k, (o0, o1, i0, i1) in enumerate(self.array.tiles):
                    weights[:, o0:o1, i0:i1] *= alpha[:, k, None, None]
            self._w = weights.to(dtype).reshape(weights.shape[0], *self.weight.shape)
        else:
            abs_max = weights.new_tensor([m or 1.0 for m in self.array.tile_abs_max])
            for k, (o0, o1, i0, i1) in enumerate(self.array.tiles):
                weights[:, o0:o1, i0:i1] /= abs_max[k]
            self._wn = self.periphery.code_weights(weights).to(dtype)
            self._tile_scale = (alpha * abs_max).to(dtype)

    # --- forward helpers ------------------------------------------------------

    def _ready(self) -> None:
        if self._w is None and self._wn is None:
            raise RuntimeError("crossbar layer has no chips: call program() and drift() first")

    def _chips(self) -> tuple[slice, Optional[list[NoiseStream]]]:
        ctx = self._ctx
        streams = ctx.streams
        if ctx.chip is None:
            return slice(None), streams
        return slice(ctx.chip, ctx.chip + 1), None if streams is None else [streams[ctx.chip]]

    def _cached(self, key: Tensor, name, build):
        """Per-input cache: the same input tensor reaches a layer once per chip in loop
        mode (the first layer), and what the periphery derives from it (DAC codes) does
        not depend on the chip, so it is computed once, by the first chip thread that
        needs it; the others wait for it."""
        with self._cache_lock:
            ref, version, cache = self._input_cache
            if ref is None or ref() is not key or version != key._version:
                cache = {}
                self._input_cache = (weakref.ref(key), key._version, cache)
            entry = cache.get(name)
            owner = entry is None
            if owner:
                entry = cache[name] = concurrent.futures.Future()
        if owner:
            try:
                entry.set_result(build())
            except BaseException as exc:
                entry.set_exception(exc)
                with self._cache_lock:
                    cache.pop(name, None)
                raise
        return entry.result()

    def _analog(
        self,
        key: Tensor,
        make_vecs: Callable[[], Tensor],
        chips: slice,
        streams,
        columns: bool = False,
        owned: bool = False,
        whole_dac: Optional[Callable[[Optional[int]], tuple["Tensor | CodeBlocks", Tensor]]] = None,
    ) -> Tensor:
        """Tile-by-tile analog products of input vectors for every chip.

        ``make_vecs()`` builds the vectors, ``(Cx, n, in)`` (rows) or ``(Cx, B, in, L)``
        (columns, convolutions); ``owned`` when it returns a fresh tensor that may be
        turned into DAC codes in place. ``whole_dac(block_bytes)``, when one tile spans
        the whole vectors, gives their DAC codes and units directly (convolutions:
        without unfolding the raw inputs first), as ``CodeBlocks`` of about
        ``block_bytes`` when that is not None. Returns ``(C, n, out)`` or ``(C, B, out, L)``.
        """
        assert self.array is not None and self._wn is not None and self._tile_scale is not None
        weights, tile_scale = self._wn[chips], self._tile_scale[chips]
        tiles = self.array.tiles
        ctx = self._ctx
        if (
            whole_dac is not None and len(tiles) == 1 and key.device.type == "cpu"
            and not (ctx.chip is not None and key is ctx.model_input)
        ):
            # One tile and an input no other chip thread will bring: the codes are made
            # in cache-sized blocks as the products consume them (CODE_BLOCK_BYTES).
            _, _, i0, i1 = tiles[0]
            inputs = {(i0, i1): whole_dac(CODE_BLOCK_BYTES)}
        else:
            inputs = self._cached(key, "dac", lambda: self._dac_inputs(make_vecs, owned, whole_dac))
        y: Optional[Tensor] = None
        for k, (o0, o1, i0, i1) in enumerate(tiles):
            codes, unit = inputs[(i0, i1)]
            z, factor = self.periphery.mvm(
                codes, unit, lambda i0=i0, i1=i1: make_vecs()[:, :, i0:i1], weights[:, o0:o1, i0:i1], streams, columns
            )
            factor = factor * tile_scale[:, k].view(-1, *([1] * (factor.dim() - 1)))
            if len(tiles) == 1:
                return z.mul_(factor)
            if y is None:
                shape = list(z.shape)
                shape[2] = weights.shape[1]
                y = z.new_zeros(shape)
            y[:, :, o0:o1].addcmul_(z, factor)
        assert y is not None
        return y

    def _dac_inputs(self, make_vecs, owned: bool, whole_dac) -> dict:
        """DAC codes and units of each tile's slice of the input vectors."""
        assert self.array is not None
        ranges = sorted({(i0, i1) for _, _, i0, i1 in self.array.tiles})
        if len(ranges) == 1 and whole_dac is not None:
            return {ranges[0]: whole_dac(None)}
        vecs = make_vecs()
        return {
            (i0, i1): self.periphery.prepare_input(vecs[:, :, i0:i1], dim=2, inplace=owned) for i0, i1 in ranges
        }

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

    def forward(self, x: Tensor) -> Tensor:
        self._ready()
        ctx = self._ctx
        chips, streams = self._chips()
        n_in = self.weight.shape[1]
        if ctx.chip is not None:  # loop: one chip, ordinary batch
            if self._w is not None:
                return F.linear(x, self._w[ctx.chip], self.bias)
            y = self._analog(x, lambda: x.reshape(1, -1, n_in), chips, streams)[0]
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
            y = self._analog(x, lambda: vecs, chips, streams)
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
        if self.groups != 1 and not self.periphery.perfect:
            raise ValueError(
                f"Conv2d with groups={self.groups}: the DAC/ADC periphery is simulated for "
                "groups=1 only; use a preset with a perfect periphery for grouped convolutions"
            )

    def _out_hw(self, h: int, w: int) -> tuple[int, int]:
        return tuple(
            (size + 2 * p - d * (k - 1) - 1) // s + 1
            for size, p, d, k, s in zip((h, w), self.padding, self.dilation, self.kernel_size, self.stride)
        )

    def _conv(self, x: Tensor, w: Tensor, out: Optional[Tensor] = None) -> Tensor:
        if out is None:
            return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)
        return _conv_out(x, w, self.bias, self.stride, self.padding, self.dilation, False, [0, 0], self.groups, out=out)

    def _unfold(self, x: Tensor) -> Tensor:
        """(N, in, L): each column is the input vector of one output position."""
        return F.unfold(x, self.kernel_size, self.dilation, self.padding, self.stride)

    def _patch_dac(self, x: Tensor, n_x: int, block_bytes: Optional[int] = None) -> tuple["Tensor | CodeBlocks", Tensor]:
        """DAC codes ``(n_x, B, in, L)`` and units ``(n_x, B, 1, L)`` of every input patch,
        the same numbers as :meth:`Periphery.prepare_input` on the unfolded patches.

        Each patch's largest |value| is a window max of the image's channel-wise max,
        and the codes are written straight from a strided view of the (padded) image
        into their unfolded layout, one pass instead of unfolding and then scaling.
        With ``block_bytes``, codes that take more than that come as ``CodeBlocks`` of
        about that size, made as they are used.
        """
        ph, pw = self.padding
        if ph or pw:
            x = F.pad(x, (pw, pw, ph, ph))
        a = x.abs().amax(1, keepdim=True)
        scale = window_max(a, self.kernel_size, self.stride, self.dilation)  # (N, 1, oh, ow)
        (kh, kw), (dh, dw), (sh, sw) = self.kernel_size, self.dilation, self.stride
        n, c, oh, ow = x.shape[0], x.shape[1], scale.shape[-2], scale.shape[-1]
        b = n // n_x
        shape = (n_x, b, c * kh * kw, oh * ow)
        row_bytes = n_x * c * kh * kw * oh * ow * x.element_size()
        rows = b if block_bytes is None else max(1, block_bytes // row_bytes)
        if x.device.type == "cpu":  # one compiled pass from the image rows (crossbar.kernels)
            x = x.contiguous()
            unit = self.periphery.input_unit(scale)
            x_g, recip = x.view(n_x, b, *x.shape[1:]), unit.reciprocal().view(n_x, b, oh, ow)

            def make_cpu(b0: int, b1: int, out: Tensor) -> Tensor:
                out_g = out.view(n_x, b1 - b0, c, kh, kw, oh, ow)
                for g in range(n_x):
                    self.periphery.patch_codes(
                        x_g[g, b0:b1], recip[g, b0:b1], self.kernel_size, self.stride, self.dilation, out_g[g]
                    )
                return out

            unit = unit.view(n_x, b, 1, oh * ow)
            if rows < b:
                return CodeBlocks(shape, rows, make_cpu, x.new_empty(rows * row_bytes // x.element_size())), unit
            return make_cpu(0, b, x.new_empty(shape)), unit
        s_n, s_c, s_h, s_w = x.stride()
        patches = x.as_strided(
            (n_x, b, c, kh, kw, oh, ow),
            (b * s_n, s_n, s_c, dh * s_h, dw * s_w, sh * s_h, sw * s_w),
            x.storage_offset(),
        )
        scale = scale.view(n_x, b, 1, 1, 1, oh, ow)
        if rows < b:
            def make(b0: int, b1: int, out: Tensor) -> Tensor:
                codes, _ = self.periphery.prepare_input(
                    patches[:, b0:b1], scale=scale[:, b0:b1], out=out.view(patches[:, b0:b1].shape)
                )
                return codes.view(out.shape)

            blocks = CodeBlocks(shape, rows, make, x.new_empty(rows * row_bytes // x.element_size()))
            return blocks, self.periphery.input_unit(scale).view(n_x, b, 1, oh * ow)
        codes, unit = self.periphery.prepare_input(patches, scale=scale, out=x.new_empty(patches.shape))
        return codes.view(shape), unit.view(n_x, b, 1, oh * ow)

    def forward(self, x: Tensor) -> Tensor:
        self._ready()
        key = x
        if self.pre_pad is not None:
            x = F.pad(x, self.pre_pad, mode=self.pad_mode)
        ctx = self._ctx
        chips, streams = self._chips()
        h_out, w_out = self._out_hw(x.shape[-2], x.shape[-1])
        n_out = self.weight.shape[0]
        if ctx.chip is not None:  # loop: one chip, ordinary batch
            if self._w is not None:
                return self._conv(x, self._w[ctx.chip])
            y = self._analog(
                key, lambda: self._unfold(x).unsqueeze(0), chips, streams, columns=True, owned=True,
                whole_dac=lambda block_bytes: self._patch_dac(x, 1, block_bytes),
            )[0]
            y = y.view(x.shape[0], n_out, h_out, w_out)
            return y if self.bias is None else y.add_(self.bias.view(1, -1, 1, 1))
        folded = self._layout(x)
        n_chips, batch = ctx.n_chips, ctx.batch
        if self._w is not None:
            out = x.new_empty((n_chips * batch, n_out, h_out, w_out))
            for c in range(n_chips):
                xc = x[c * batch:(c + 1) * batch] if folded else x
                self._conv(xc, self._w[c], out=out[c * batch:(c + 1) * batch])
            return out
        n_x = n_chips if folded else 1
        y = self._analog(
            key, lambda: self._unfold(x).view(n_x, batch, -1, h_out * w_out), chips, streams, columns=True,
            owned=True, whole_dac=lambda block_bytes: self._patch_dac(x, n_x, block_bytes),
        )  # (C, B, out, L)
        y = y.view(n_chips * batch, n_out, h_out, w_out)
        return y if self.bias is None else y.add_(self.bias.view(1, -1, 1, 1))


class CrossbarModel(nn.Module):
    """A network whose ``Linear``/``Conv2d`` layers run on ``n_chips`` simulated chips.

    ``forward(x)`` returns the outputs of every chip stacked: ``(n_chips, batch, ...)``.
    """

    def __init__(self, module: nn.Module, preset: Preset, strategy: str = "auto", threads: Optional[int] = None):
        super().__init__()
        self.module = module
        self.preset = preset
        self.strategy = check_strategy(strategy)
        self.threads = check_threads(threads)
        self.crossbar_layers = [m for m in module.modules() if isinstance(m, CrossbarLayer)]
        self._ctx = _ChipContext()
        for layer in self.crossbar_layers:
            layer._ctx = self._ctx
        self.seed = 0
        self.first_chip = 0
        self.t_inference: Optional[float] = None

    @property
    def n_chips(self) -> int:
        return self._ctx.n_chips

    @property
    def device(self) -> torch.device:
        for t in self.module.buffers():
            return t.device
        for t in self.module.parameters():
            return t.device
        return torch.device("cpu")

    def resolved_strategy(self) -> str:
        if self.strategy != "auto":
            return self.strategy
        return "fold" if self.device.type == "cuda" else "loop"

    @torch.no_grad()
    def program(self, n_chips: int, seed: int = 0, first_chip: int = 0) -> "CrossbarModel":
        """Program chips ``first_chip .. first_chip + n_chips - 1`` of the run ``seed``."""
        n_chips = check_n_chips(n_chips)
        self.seed = check_seed(seed)
        self.first_chip = int(first_chip)
        for layer in self.crossbar_layers:
            layer.program(n_chips, self.seed, self.first_chip)
        self._ctx.n_chips = n_chips
        self.t_inference = None
        return self

    @torch.no_grad()
    def drift(self, t_inference: float) -> "CrossbarModel":
        """Set every programmed chip to its state ``t_inference`` s after programming."""
        if self.n_chips == 0:
            raise RuntimeError("program() the model before drift()")
        t = self.preset.check_time(t_inference)
        for layer in self.crossbar_layers:
            layer.drift(t)
        self._ctx.streams = None
        if self.preset.out_noise > 0:
            device = self.device
            self._ctx.streams = [
                NoiseStream(derive_seed(self.seed, FORWARD, 0, chip, time_key(t)), device)
                for chip in range(self.first_chip, self.first_chip + self.n_chips)
            ]
        self.t_inference = t
        return self

    def forward(self, x: Tensor) -> Tensor:
        if self.t_inference is None:
            raise RuntimeError("call program(n_chips, seed) and drift(t_inference) before running the model")
        ctx = self._ctx
        if self.resolved_strategy() == "loop":
            return torch.stack(self._loop(x))
        ctx.batch = x.shape[0]
        y = self.module(x)
        if y.shape[0] == ctx.n_chips * ctx.batch:
            return y.view(ctx.n_chips, ctx.batch, *y.shape[1:])
        if y.shape[0] == ctx.batch:  # no crossbar layer on the output path
            return y.unsqueeze(0).expand(ctx.n_chips, *y.shape)
        raise RuntimeError(f"model output batch {y.shape[0]} does not match the input batch {ctx.batch}")

    def chip_threads(self) -> int:
        """Chips run side by side in loop mode: ``threads``, default torch's thread count
        (1 on CUDA, whose kernels are asynchronous anyway)."""
        if self.device.type != "cpu":
            return 1
        return max(1, min(self.threads or torch.get_num_threads(), self.n_chips))

    def _run_chip(self, chip: int, x: Tensor) -> Tensor:
        ctx = self._ctx
        ctx.chip = chip
        try:
            return self.module(x)
        finally:
            ctx.chip = None

    def _loop(self, x: Tensor) -> list[Tensor]:
        """Every chip's forward pass, each on one CPU thread, up to ``chip_threads()``
        chips at a time. One thread per chip keeps a chip's numbers the same whatever
        the machine's core count, and uses the cores better than splitting each
        (small) operation: the periphery's compiled loops, for one, run on a single
        thread (and release the GIL, so chips run side by side)."""
        n_chips, threads = self._ctx.n_chips, self.chip_threads()
        if self.device.type != "cpu":
            return [self._run_chip(c, x) for c in range(n_chips)]
        grad = torch.is_grad_enabled()  # thread-local, like no_grad

        def run(chip: int) -> Tensor:  # in a pool thread
            if torch.get_num_threads() != 1:  # a per-thread setting (OpenMP)
                torch.set_num_threads(1)
            with torch.set_grad_enabled(grad):
                return self._run_chip(chip, x)

        previous = torch.get_num_threads()
        self._ctx.model_input = x
        try:
            if threads > 1:
                return list(_chip_pool(threads).map(run, range(n_chips)))
            torch.set_num_threads(1)
            return [self._run_chip(c, x) for c in range(n_chips)]
        finally:
            self._ctx.model_input = None
            # also resets the process-wide default that a worker's set_num_threads(1)
            # changed, which new threads start with
            torch.set_num_threads(previous)

    def weight_bytes_per_chip(self) -> int:
        """Memory one chip's programmed state needs (devices, drift parameters, weights)."""
        total = 0
        for layer in self.crossbar_layers:
            size = torch.finfo(physics_dtype(layer.preset)).bits // 8
            # programmed conductance, drift parameter and fault code per device; two
            # working copies in the physics dtype and the float32 result per weight.
            per_weight = devices_per_weight(layer.preset) * (2 * size + 1) + 2 * size + 4
            total += layer.weight.numel() * per_weight
        return total


def mapped_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, layer)`` of every ``nn.Linear`` and ``nn.Conv2d`` that :func:`convert` maps.

    In ``model.modules()`` order (name ``""`` when ``model`` itself is one). A layer
    registered under two names (weight tying) is listed under both; ``convert`` maps it
    once, and both names use the same crossbar. ``nn.MultiheadAttention`` is skipped
    whole: its forward reads ``out_proj.weight`` directly, so a crossbar there would be
    programmed and never run.
    """
    found: list[tuple[str, nn.Module]] = []
    digital: list[str] = []  # name prefixes of attention blocks: nothing under them is mapped
    for name, module in model.named_modules(remove_duplicate=False):
        if any(name.startswith(prefix) for prefix in digital):
            continue
        if isinstance(module, nn.MultiheadAttention):
            digital.append(f"{name}." if name else "")  # "": the model itself, all of it
        elif isinstance(module, (nn.Linear, nn.Conv2d)):
            found.append((name, module))
    return found


# layers that multiply by a weight matrix, which a crossbar would hold, but convert
# leaves digital: a user simulating them would otherwise be told nothing
_UNMAPPED_MATMULS = (nn.modules.conv._ConvNd, nn.RNNBase, nn.MultiheadAttention, nn.Bilinear)


def unmapped_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, layer)`` of layers with weight matrices that :func:`convert` leaves
    digital: convolutions other than ``nn.Conv2d`` (1-d, 3-d, transposed), recurrent
    layers, attention, ``nn.Bilinear``. Normalisation layers and embeddings are not listed."""
    found: list[tuple[str, nn.Module]] = []
    for name, module in model.named_modules():
        if any(name.startswith(f"{outer}.") or outer == "" for outer, _ in found):
            continue  # inside a block already listed (attention's out_proj)
        if isinstance(module, _UNMAPPED_MATMULS) and not isinstance(module, nn.Conv2d):
            found.append((name, module))
    return found


def _user_frame() -> int:
    """The ``stacklevel`` of the first caller outside this package (and torch's
    decorators), for a warning raised in :func:`convert` whether the user called it or
    ``crossbar.evaluate`` did."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith(("crossbar.", "torch.")):
        frame, level = frame.f_back, level + 1
    return level


def convert(
    model: nn.Module, preset: "str | Preset", *, strategy: str = "auto", threads: Optional[int] = None
) -> CrossbarModel:
    """Map every ``nn.Linear`` and ``nn.Conv2d`` of ``model`` onto crossbar layers.

    ``model`` is not changed: the result holds a copy. Layers are numbered in
    ``model.modules()`` order; a chip's random draws for a layer depend on that number.
    """
    preset = resolve_preset(preset)
    check_strategy(strategy)
    check_threads(threads)
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(model, CrossbarModel):
        raise ValueError("model is already converted; convert the digital model instead")
    module = copy.deepcopy(model)
    layers = mapped_layers(module)
    if not layers:
        attention = any(isinstance(m, nn.MultiheadAttention) for m in model.modules())
        raise ValueError(
            f"model ({type(model).__name__}) has no nn.Linear or nn.Conv2d layer to map onto crossbars"
            + (" (nn.MultiheadAttention reads its weights directly and stays digital)" if attention else "")
        )
    digital = unmapped_layers(model)
    if digital:
        listed = ", ".join(f"{name or 'the model'} ({type(layer).__name__})" for name, layer in digital)
        warnings.warn(f"crossbar.convert: layer{'s' * (len(digital) > 1)} {listed} "
                      f"{'stay' if len(digital) > 1 else 'stays'} digital, with exact weights: only nn.Linear "
                      "and nn.Conv2d are mapped onto crossbars", UserWarning, stacklevel=_user_frame())
    for name, layer in layers:
        check_weight(layer.weight, f"layer {name or type(model).__name__!r} ({type(layer).__name__}): weight")
    crossbars: dict[int, nn.Module] = {}  # one per distinct layer, numbered in order
    for name, layer in layers:
        if id(layer) not in crossbars:
            index = len(crossbars)
            crossbars[id(layer)] = (
                CrossbarLinear(layer.weight, layer.bias, preset, index) if isinstance(layer, nn.Linear)
                else CrossbarConv2d(layer, preset, index)
            )
        mapped = crossbars[id(layer)]
        if name:
            module.set_submodule(name, mapped)
        else:  # the whole model is a single Linear or Conv2d
            module = mapped
    for name, pool in list(module.named_modules(remove_duplicate=False)):
        if type(pool) is nn.MaxPool2d:  # digital, same numbers, faster (see window_max)
            module.set_submodule(name, WindowMaxPool2d.from_module(pool))
    return CrossbarModel(module, preset, strategy, threads).eval()
