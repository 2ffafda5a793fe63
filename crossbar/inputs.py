"""What a crossbar layer feeds its periphery: input vectors and their DAC codes.

A layer wraps its input as :class:`RowInputs` (linear layers: one vector per row) or
:class:`PatchInputs` (convolutions: one vector per output position, in columns) and
hands it to :meth:`crossbar.periphery.Periphery.matmul`. The periphery asks the inputs
for the DAC codes of each tile's slice of the vectors; how they are made is decided
here:

- convolution patches on a CPU: one compiled pass from the image rows
  (:func:`crossbar.kernels.patch_codes`), and, when one tile uses the codes once and no
  other chip thread brings the same input, a few images at a time
  (:data:`CODE_BLOCK_BYTES`) as the products consume them, so that they are still in
  cache when read;
- elsewhere torch's arithmetic over a strided view of the image, or over the vectors.

The codes of an input tensor do not depend on the chip or the time, so a layer's
:class:`CodeCache` keeps those of the last tensor it saw: the model's input reaches the
first layer once per chip thread in loop mode (and, when the data is one batch, again
at every inference time).
"""

from __future__ import annotations

import concurrent.futures
import threading
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .pooling import window_max

# Batch rows of convolution DAC codes made at a time on a CPU: about this many bytes,
# so that the codes are still in cache when the products read them. Measured on a
# 2-core CPU (32 MiB L3, 512 KiB L2 a core): 1-4 MiB are alike; whole batches of
# ResNet-20's first layer (150 MB of codes) took 2.4x as long.
CODE_BLOCK_BYTES = 2 << 20


@dataclass(frozen=True)
class CodeBlocks:
    """DAC codes ``(Cx, B, k, L)`` (vectors in columns) made ``block`` batch rows at a
    time by ``make(b0, b1, out)``, which writes rows ``b0:b1`` into ``out``: the
    same numbers as making them all at once, without holding them all."""

    shape: tuple[int, int, int, int]
    block: int
    make: Callable[[int, int, Tensor], Tensor]
    buffer: Tensor  # flat, room for one block

    def __iter__(self):
        cx, b, k, length = self.shape
        for b0 in range(0, b, self.block):
            b1 = min(b, b0 + self.block)
            out = self.buffer[: cx * (b1 - b0) * k * length].view(cx, b1 - b0, k, length)
            yield b0, b1, self.make(b0, b1, out)


class CodeCache:
    """The DAC codes of the last input tensor a layer saw, per slice of the vectors.

    Computed once, by the first chip thread that needs them; the others wait for them.
    Keyed by the tensor's identity and version (an in-place change makes new codes).
    """

    def __init__(self) -> None:
        self._entry: tuple = (None, -1, {})
        self._lock = threading.Lock()

    def get(self, key: Tensor, name: Any, build: Callable[[], Any]) -> Any:
        with self._lock:
            ref, version, cache = self._entry
            if ref is None or ref() is not key or version != key._version:
                cache = {}
                self._entry = (weakref.ref(key), key._version, cache)
            entry = cache.get(name)
            owner = entry is None
            if owner:
                entry = cache[name] = concurrent.futures.Future()
        if owner:
            try:
                entry.set_result(build())
            except BaseException as exc:
                entry.set_exception(exc)
                with self._lock:
                    cache.pop(name, None)
                raise
        return entry.result()

    def __getstate__(self) -> dict:  # a copy starts empty
        return {}

    def __setstate__(self, state: dict) -> None:
        self.__init__()


class RowInputs:
    """Input vectors in rows, ``(Cx, n, in)``: ``Cx`` is 1 when every chip reads the same
    vectors, else the number of chips."""

    columns = False

    def __init__(self, vecs: Tensor, key: Optional[Tensor] = None, cache: Optional[CodeCache] = None,
                 scale: Optional[float] = None):
        """``scale``: the DAC's full scale (a calibrated input range; inputs already clipped
        to it), instead of each vector's largest |value|."""
        self.vecs, self.key, self.cache, self.scale = vecs, key, cache, scale
        self.memo: dict = {}

    def vectors(self) -> Tensor:
        return self.vecs

    def signed(self) -> bool:
        """Whether any input is negative (IR drop's currents then need |x|)."""
        return _signed(self, self.vecs)

    def codes(self, periphery, i0: int, i1: int, once: bool = False) -> tuple[Tensor, Tensor]:
        """DAC codes and units of the vectors' elements ``i0:i1`` (``once``: no other tile
        uses them; rows are made whole anyway)."""
        def build():
            part = self.vecs[:, :, i0:i1]
            return periphery.prepare_input(part, dim=2, scale=_full_scale(part, self.scale))

        return _cached(self, (i0, i1), build)


def _full_scale(vectors: Tensor, scale: Optional[float]) -> Optional[Tensor]:
    """A fixed full scale as the per-vector scale ``prepare_input`` takes (vectors along dim 2)."""
    if scale is None:
        return None
    shape = list(vectors.shape)
    shape[2] = 1
    return vectors.new_full((1,) * len(shape), scale).expand(shape)


def _signed(inputs, x: Tensor) -> bool:
    if "signed" not in inputs.memo:
        inputs.memo["signed"] = bool(x.min() < 0) if x.numel() else False
    return inputs.memo["signed"]


def _cached(inputs, name, build):
    """The codes ``name`` of these inputs: made once per inputs object (the unfolded
    patches are turned into codes in place, so never twice), and shared through the
    layer's cache with later inputs of the same tensor."""
    memo = inputs.memo
    if name not in memo:
        if inputs.cache is None or inputs.key is None:
            memo[name] = build()
        else:
            memo[name] = inputs.cache.get(inputs.key, name, build)
    return memo[name]


@dataclass(frozen=True)
class ConvGeometry:
    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]


class PatchInputs:
    """A convolution's input patches as vectors in columns, ``(Cx, B, in, L)``, made from
    its input ``x`` (``(Cx * B, C, H, W)``, explicit padding already applied; ``Cx`` as
    for rows). ``shared``: other chip threads bring the same tensor (its codes are then
    made whole, once, for all of them)."""

    columns = True

    def __init__(self, x: Tensor, n_x: int, geometry: ConvGeometry, key: Optional[Tensor] = None,
                 cache: Optional[CodeCache] = None, shared: bool = False, scale: Optional[float] = None):
        self.x, self.n_x, self.geometry = x, n_x, geometry
        self.key, self.cache, self.shared, self.scale = key, cache, shared, scale
        self.memo: dict = {}

    def vectors(self) -> Tensor:
        """The patches, unfolded afresh (a tensor the caller may change)."""
        g = self.geometry
        unfolded = F.unfold(self.x, g.kernel_size, g.dilation, g.padding, g.stride)
        return unfolded.view(self.n_x, self.x.shape[0] // self.n_x, unfolded.shape[1], unfolded.shape[2])

    def signed(self) -> bool:
        """Whether any input is negative (IR drop's currents then need |x|)."""
        return _signed(self, self.x)

    @property
    def size(self) -> int:
        kh, kw = self.geometry.kernel_size
        return self.x.shape[1] * kh * kw

    def codes(self, periphery, i0: int, i1: int, once: bool = False) -> tuple["Tensor | CodeBlocks", Tensor]:
        """DAC codes and units of the patches' elements ``i0:i1``. ``once``: only one tile
        uses them, so on a CPU they may come as :class:`CodeBlocks` made as consumed."""
        whole = (i0, i1) == (0, self.size)
        if whole and once and not self.shared and self.x.device.type == "cpu":
            return self._patch_codes(periphery, CODE_BLOCK_BYTES)
        if whole:
            return _cached(self, (i0, i1), lambda: self._patch_codes(periphery, None))

        def build():
            unfolded = _cached(self, "unfolded", self.vectors)  # one unfold for every slice, each made codes in place
            part = unfolded[:, :, i0:i1]
            return periphery.prepare_input(part, dim=2, inplace=True, scale=_full_scale(part, self.scale))

        return _cached(self, (i0, i1), build)

    def _patch_codes(self, periphery, block_bytes: Optional[int]) -> tuple["Tensor | CodeBlocks", Tensor]:
        """DAC codes ``(n_x, B, in, L)`` and units ``(n_x, B, 1, L)`` of every patch, the
        same numbers as :meth:`Periphery.prepare_input` on the unfolded patches.

        Each patch's largest |value| is a window max of the image's channel-wise max,
        and the codes are written straight from a strided view of the (padded) image
        into their unfolded layout, one pass instead of unfolding and then scaling.
        With ``block_bytes`` (CPU only), codes that take more than that come as
        ``CodeBlocks`` of about that size, made as they are used.
        """
        g, x, n_x = self.geometry, self.x, self.n_x
        ph, pw = g.padding
        if ph or pw:
            x = F.pad(x, (pw, pw, ph, ph))
        scale = window_max(x.abs().amax(1, keepdim=True), g.kernel_size, g.stride, g.dilation)  # (N, 1, oh, ow)
        if self.scale is not None:  # a calibrated input range: one full scale for every patch
            scale = torch.full_like(scale, self.scale)
        (kh, kw), (dh, dw), (sh, sw) = g.kernel_size, g.dilation, g.stride
        n, c, oh, ow = x.shape[0], x.shape[1], scale.shape[-2], scale.shape[-1]
        b = n // n_x
        shape = (n_x, b, c * kh * kw, oh * ow)
        if x.device.type != "cpu":  # torch's arithmetic over a strided view of the image
            s_n, s_c, s_h, s_w = x.stride()
            patches = x.as_strided(
                (n_x, b, c, kh, kw, oh, ow), (b * s_n, s_n, s_c, dh * s_h, dw * s_w, sh * s_h, sw * s_w),
                x.storage_offset(),
            )
            codes, unit = periphery.prepare_input(
                patches, scale=scale.view(n_x, b, 1, 1, 1, oh, ow), out=x.new_empty(patches.shape)
            )
            return codes.view(shape), unit.view(n_x, b, 1, oh * ow)
        x = x.contiguous()  # one compiled pass from the image rows (crossbar.kernels)
        unit = periphery.input_unit(scale)
        x_g, recip = x.view(n_x, b, *x.shape[1:]), unit.reciprocal().view(n_x, b, oh, ow)

        def make(b0: int, b1: int, out: Tensor) -> Tensor:
            out_g = out.view(n_x, b1 - b0, c, kh, kw, oh, ow)
            for i in range(n_x):
                periphery.patch_codes(x_g[i, b0:b1], recip[i, b0:b1], g.kernel_size, g.stride, g.dilation, out_g[i])
            return out

        unit = unit.view(n_x, b, 1, oh * ow)
        row_bytes = n_x * c * kh * kw * oh * ow * x.element_size()
        rows = b if block_bytes is None else max(1, block_bytes // row_bytes)
        if rows < b:
            return CodeBlocks(shape, rows, make, x.new_empty(rows * row_bytes // x.element_size())), unit
        return make(0, b, x.new_empty(shape)), unit
