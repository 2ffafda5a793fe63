"""Compiled CPU loops (numba) for the periphery's element-wise work.

- :func:`patch_codes`: the DAC codes of every input patch of a convolution, written
  from the (padded) image straight into the unfolded layout, each patch scaled by its
  own unit and rounded in the same pass. torch does this as a multiplication over a
  7-d strided view and a second pass that rounds; one loop whose innermost step runs
  along an image row does both, about 2x faster on a CPU.
- :func:`row_codes`: noise management and DAC of row vectors (linear layers), the
  largest |value|, the unit and the codes in one pass instead of five.

The arithmetic is torch's (a multiplication by the unit's reciprocal in the input's
dtype, round half to even, clip), so the codes are identical to torch's (tested).
:func:`compiled` is the decorator of these loops and of :mod:`crossbar.rng`'s.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import njit, uint64
from torch import Tensor


def compiled(fn):
    """``numba.njit`` for the periphery's loops: without the GIL (chips run on threads
    side by side) and cached on disk, where numba finds a writable place for its cache
    (``__pycache__`` beside the source, else its user cache); where it finds none, the
    loops are compiled in every process instead of making the package unimportable."""
    try:
        return njit(nogil=True, cache=True)(fn)
    except RuntimeError:  # numba: "cannot cache function ...: no locator available"
        return njit(nogil=True)(fn)


@njit(inline="always")
def _dac(v, rnd, clip, bound):
    if rnd:
        v = np.rint(v)
    if clip:  # as torch.clamp: NaN stays NaN
        if v > bound:
            v = bound
        elif v < -bound:
            v = -bound
    return v


# Indices are computed as unsigned integers: numba wraps negative indices around, and
# that check, on an index it cannot prove >= 0 (run-time strides), kept the loops from
# vectorising (3x slower).


@functools.lru_cache(maxsize=None)
def _patch_codes_kernel(rnd: bool, clip: bool):
    """The patch loop compiled for one DAC (rounding or not, clipping or not): the
    choice is a constant of the compiled code, not a test in its innermost loop, which
    measured 1.3x faster."""

    @compiled
    def kernel(x, recip, kh, kw, sh, sw, dh, dw, bound, out):
        """``out[n, c, ki, kj, i, j] = dac(x[n, c, i sh + ki dh, j sw + kj dw] * recip[n, i, j])``."""
        n_img, n_ch = x.shape[0], x.shape[1]
        oh, ow = recip.shape[1], recip.shape[2]
        for n in range(n_img):
            for c in range(n_ch):
                for ki in range(kh):
                    for kj in range(kw):
                        for i in range(oh):
                            row, col = uint64(i * sh + ki * dh), uint64(kj * dw)
                            for j in range(ow):
                                v = x[n, c, row, col + uint64(j) * uint64(sw)] * recip[n, i, j]
                                out[n, c, ki, kj, i, j] = _dac(v, rnd, clip, bound)

    return kernel


def patch_codes(
    x: Tensor, recip: Tensor, kernel, stride, dilation, rnd: bool, bound: float, out: Tensor
) -> Tensor:
    """DAC codes of every patch of ``x`` (N, C, H, W), padded already, into ``out``
    (N, C, kh, kw, oh, ow): each value times its patch's ``recip`` (N, oh, ow), the
    reciprocal of the input value of one code, rounded if ``rnd``, clipped to
    ``+-bound`` when that is finite. CPU tensors of one floating dtype."""
    xs = x.detach().contiguous().numpy()
    rs = recip.detach().contiguous().numpy()
    os_ = out.numpy()
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    clip = bool(np.isfinite(bound))
    kernel = _patch_codes_kernel(bool(rnd), clip)
    kernel(xs, rs, kh, kw, sh, sw, dh, dw, xs.dtype.type(bound if clip else 0.0), os_)
    return out


@compiled
def _row_codes(x, one, in_unit, rnd, clip, bound, codes, unit):
    """Noise management and DAC of each row of ``x`` (n, k): ``unit[r]`` is the row's
    largest |value| (1 if that is 0; 1 as well for a row holding NaN, as torch's
    ``where(amax > 0, amax, 1)`` gives) times ``in_unit``; ``codes = dac(x / unit)``,
    with the division as a multiplication by the reciprocal, as torch does it.
    ``one``, ``in_unit`` and ``bound`` come in ``x``'s dtype, so that the arithmetic
    stays in it."""
    for r in range(x.shape[0]):
        row = x[r]
        largest = one - one  # a zero of x's dtype
        nan = False
        for j in range(row.shape[0]):
            a = abs(row[j])
            if a > largest:
                largest = a
            if a != a:
                nan = True
        u = (one if nan or not largest > 0 else largest) * in_unit
        recip = one / u
        unit[r] = u
        out = codes[r]
        for j in range(row.shape[0]):
            out[j] = _dac(row[j] * recip, rnd, clip, bound)


def row_codes(x: Tensor, in_unit: float, rnd: bool, bound: float, out: Tensor, unit: Tensor) -> None:
    """:func:`_row_codes` on CPU tensors: ``x`` (n, k) with unit-stride rows (a column
    slice of a matrix is fine), ``out`` (n, k) and ``unit`` (n,) contiguous, one dtype."""
    xs = x.detach().numpy()
    clip = bool(np.isfinite(bound))
    dtype = xs.dtype.type
    _row_codes(xs, dtype(1.0), dtype(in_unit), bool(rnd), clip, dtype(bound if clip else 0.0), out.numpy(), unit.numpy())
