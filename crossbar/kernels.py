"""Compiled CPU loops (numba): every loop of the periphery, in this one file.

numba's on-disk cache checks only the file of a compiled function, not the files of
the functions it inlines; keeping all of them here keeps that cache right.

Output noise (used by :class:`crossbar.rng.NoiseStream`):

- **Bits**: Philox4x32-10 (Salmon, Moraes, Dror and Shaw, "Parallel random numbers: as
  easy as 1, 2, 3", SC 2011), the counter-based generator of cuRAND, JAX and torch's
  CUDA kernels: a 64-bit key and a 128-bit counter give four independent 32-bit words.
  The tests check it against Random123's published known answers.
- **Gaussians**: Box-Muller, two per pair of words ``(w1, w2)``: radius
  ``sqrt(-2 ln u)`` with ``u = (w1 // 2**8 + 1) / 2**24`` in (0, 1] (24 bits, as torch's
  CPU generator; the largest value is 5.77), angle uniform on the circle from ``w2``
  (quadrant from its top 2 bits, the position within the quadrant from the next 24).
  ``ln``, ``sin`` and ``cos`` are Cephes' single-precision polynomials; the values agree
  with a float64 Box-Muller of the same bits to float32 rounding (tested).
- :func:`noisy_adc`: a chip's noise added to its products, rounded to ADC codes and
  counted against the ADC's bound, in one pass.

DAC codes:

- :func:`patch_codes`: the DAC codes of every input patch of a convolution, written
  from the (padded) image straight into the unfolded layout, each patch scaled by its
  own unit and rounded in the same pass. torch does this as a multiplication over a
  7-d strided view and a second pass that rounds; one loop whose innermost step runs
  along an image row does both, faster on a CPU (``bench/periphery_profile.py``).
- :func:`row_codes`: noise management and DAC of row vectors (linear layers), the
  largest |value|, the unit and the codes in one pass instead of five.

The DAC arithmetic is torch's (a multiplication by the unit's reciprocal in the input's
dtype, round half to even, clip), so the codes are identical to torch's (tested).
"""

from __future__ import annotations

import functools
from typing import Optional

import numpy as np
from numba import float32, int32, njit, types, uint32, uint64
from numba.extending import intrinsic
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


# ------------------------------------------------------------------ output noise


@intrinsic
def _f32_bits(typingctx, x):
    """The bit pattern of a float32 (an LLVM bitcast, free and vectorisable)."""
    from llvmlite import ir

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return types.uint32(types.float32), codegen


@intrinsic
def _bits_f32(typingctx, x):
    from llvmlite import ir

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.uint32), codegen


_M0, _M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)  # Philox4x32 multipliers
_W0, _W1 = np.uint32(0x9E3779B9), np.uint32(0xBB67AE85)  # Weyl key increments
_LO32 = np.uint64(0xFFFFFFFF)
_SHIFT32 = np.uint64(32)


@njit(inline="always")
def _philox(c0, c1, c2, c3, k0, k1):
    for _ in range(10):
        p0 = uint64(c0) * _M0
        p1 = uint64(c2) * _M1
        h0, l0 = uint32(p0 >> _SHIFT32), uint32(p0 & _LO32)
        h1, l1 = uint32(p1 >> _SHIFT32), uint32(p1 & _LO32)
        c0, c1, c2, c3 = h1 ^ c1 ^ k0, l1, h0 ^ c3 ^ k1, l0
        k0 = uint32(k0 + _W0)
        k1 = uint32(k1 + _W1)
    return c0, c1, c2, c3


@compiled
def philox_words(c0, c1, c2, c3, k0, k1):
    return _philox(uint32(c0), uint32(c1), uint32(c2), uint32(c3), uint32(k0), uint32(k1))


_SQRT_HALF = np.float32(0.70710677)
_LN2_HI, _LN2_LO = np.float32(0.693359375), np.float32(-2.12194440e-4)
_TWO_M24 = np.float32(2.0**-24)
_QUARTER_TURN_STEP = np.float32(np.pi / 2 * 2.0**-24)
_EIGHTH_TURN = np.float32(np.pi / 4)


@njit(inline="always")
def _radius(w):
    """``sqrt(-2 ln u)``, ``u = (w >> 8 + 1) 2^-24`` in (0, 1]: Cephes' logf."""
    x = float32((w >> uint32(8)) + uint32(1)) * _TWO_M24
    bits = _f32_bits(x)
    e = float32(int32(bits >> uint32(23)) - int32(126))
    m = _bits_f32((bits & uint32(0x7FFFFF)) | uint32(0x3F000000))  # x = m 2^e, m in [0.5, 1)
    low = m < _SQRT_HALF
    e = e - float32(1.0) if low else e
    m = (m + m - float32(1.0)) if low else (m - float32(1.0))  # ln x = e ln 2 + ln(1 + m)
    z = m * m
    y = float32(7.0376836292e-2)
    y = y * m - float32(1.1514610310e-1)
    y = y * m + float32(1.1676998740e-1)
    y = y * m - float32(1.2420140846e-1)
    y = y * m + float32(1.4249322787e-1)
    y = y * m - float32(1.6668057665e-1)
    y = y * m + float32(2.0000714765e-1)
    y = y * m - float32(2.4999993993e-1)
    y = y * m + float32(3.3333331174e-1)
    y = y * m * z + e * _LN2_LO - float32(0.5) * z
    ln_x = m + y + e * _LN2_HI
    return np.sqrt(float32(-2.0) * ln_x)


@njit(inline="always")
def _unit_vector(w):
    """``(cos a, sin a)`` of an angle uniform on the circle: quadrant ``w >> 30``, offset
    in (-pi/4, pi/4) from the next 24 bits; Cephes' sinf/cosf on that range."""
    q = w >> uint32(30)
    x = (float32((w >> uint32(6)) & uint32(0xFFFFFF)) + float32(0.5)) * _QUARTER_TURN_STEP - _EIGHTH_TURN
    z = x * x
    s = ((float32(-1.9515295891e-4) * z + float32(8.3321608736e-3)) * z - float32(1.6666654611e-1)) * z * x + x
    c = (
        ((float32(2.443315711809948e-5) * z - float32(1.388731625493765e-3)) * z + float32(4.166664568298827e-2))
        * z * z
        - float32(0.5) * z + float32(1.0)
    )
    # rotate (c, s) by q quarter turns, with bit operations so that the loop vectorises
    sb, cb = _f32_bits(s), _f32_bits(c)
    swap = uint32(0) - (q & uint32(1))
    cos_bits = ((cb & ~swap) | (sb & swap)) ^ (((q ^ (q >> uint32(1))) & uint32(1)) << uint32(31))
    sin_bits = ((sb & ~swap) | (cb & swap)) ^ ((q >> uint32(1)) << uint32(31))
    return _bits_f32(cos_bits), _bits_f32(sin_bits)


@njit(inline="always")
def _fill_counters(first, count, k0, k1, buf):
    """Standard normals of counters ``first .. first + count - 1`` into ``buf[:4 count]``."""
    for j in range(count):
        c = uint64(first + j)
        w0, w1, w2, w3 = _philox(uint32(c & _LO32), uint32(c >> _SHIFT32), uint32(0), uint32(0), k0, k1)
        r0, r1 = _radius(w0), _radius(w2)
        c0, s0 = _unit_vector(w1)
        c1, s1 = _unit_vector(w3)
        buf[4 * j] = r0 * c0
        buf[4 * j + 1] = r0 * s0
        buf[4 * j + 2] = r1 * c1
        buf[4 * j + 3] = r1 * s1


_CHUNK = 1024  # values made at a time into a scratch buffer that stays in L1


@compiled
def standard_normal_into(out, start, k0, k1):
    n = out.size
    buf = np.empty(_CHUNK + 4, np.float32)
    for i0 in range(0, n, _CHUNK):
        m = min(_CHUNK, n - i0)
        _fill_counters(start + i0 // 4, (m + 3) // 4, uint32(k0), uint32(k1), buf)
        for i in range(m):
            out[i0 + i] = buf[i]


@compiled
def _noisy_adc(z, first, start, k0, k1, std, noisy, rnd, bound):
    """``z += std * N(0, 1)`` (values ``first ..`` of the draw at counter ``start``), then
    rounded to integers if ``rnd``; returns how many results exceed ``bound`` in size
    (NaN never does, as with ``torch.aminmax``)."""
    n = z.size
    buf = np.empty(_CHUNK + 8, np.float32)
    over = 0
    for i0 in range(0, n, _CHUNK):
        m = min(_CHUNK, n - i0)
        chunk = z[i0:i0 + m]
        if noisy:
            e0 = first + i0
            lead = e0 % 4
            _fill_counters(start + e0 // 4, (lead + m + 3) // 4, uint32(k0), uint32(k1), buf)
            noise = buf[lead:lead + m]
            for i in range(m):
                v = chunk[i] + std * noise[i]
                if rnd:
                    v = np.rint(v)
                chunk[i] = v
                over += abs(v) > bound
        else:
            for i in range(m):
                v = chunk[i]
                if rnd:
                    v = np.rint(v)
                chunk[i] = v
                over += abs(v) > bound
    return over


@compiled
def _ir_drop(z, main, drop, current, a_scale, ir_drop):
    """aihwkit's steady-state IR drop, in one pass over 3-D arrays of any strides:
    ``z = main - ir_drop c(a) drop`` with ``a = a_scale current`` and
    ``c(a) = a (a (0.05 a - 0.2) + 0.5)``."""
    dtype = z.dtype.type
    k005, k02, k05 = dtype(0.05), dtype(0.2), dtype(0.5)
    for b in range(z.shape[0]):
        for o in range(z.shape[1]):
            for i in range(z.shape[2]):
                a = current[b, o, i] * a_scale
                z[b, o, i] = main[b, o, i] - ir_drop * (a * (a * (k005 * a - k02) + k05)) * drop[b, o, i]


def ir_drop(z: Tensor, main: Tensor, drop: Tensor, current: Tensor, a_scale: float, strength: float) -> None:
    """``z = main - strength c(a_scale current) drop`` element-wise, for CPU tensors of
    one 3-D shape (views of any strides; ``z`` may be ``main``)."""
    arrays = [t.detach().numpy() for t in (z, main, drop, current)]
    dtype = arrays[0].dtype.type
    _ir_drop(*arrays, dtype(a_scale), dtype(strength))


@compiled
def _lines(z, noise, std, noisy, root, std_scale, n_i, factor, nonlinear):
    """Weight noise ``z += std_scale std noise`` (``sqrt(std)`` with ``root``), then the
    output non-linearity ``z = factor z / (1 + |n_i z|)`` (``n_i`` per output, the
    middle axis), in one pass over 3-D arrays of any strides (``std`` may be a
    broadcast view)."""
    dtype = z.dtype.type
    one = dtype(1.0)
    for b in range(z.shape[0]):
        for o in range(z.shape[1]):
            n = n_i[o] if nonlinear else dtype(0.0)
            for i in range(z.shape[2]):
                v = z[b, o, i]
                if noisy:
                    s = np.sqrt(std[b, o, i]) if root else std[b, o, i]
                    v = v + std_scale * s * noise[b, o, i]
                if nonlinear:
                    v = factor * v / (one + abs(n * v))
                z[b, o, i] = v


def lines(z: Tensor, noise: Optional[Tensor], std: Optional[Tensor], n_i: Optional[Tensor], factor: float,
          root: bool = False, std_scale: float = 1.0) -> None:
    """The weight noise (``std_scale * std * noise``, ``sqrt(std)`` with ``root``; both
    broadcastable to ``z``) and the output non-linearity (``n_i`` along ``z``'s middle
    axis, ``factor``) on 3-D CPU ``z``, in place."""
    zn = z.detach().numpy()
    dtype = zn.dtype.type
    empty = np.zeros((1, 1, 1), zn.dtype)
    noise_n = empty if noise is None else noise.detach().numpy()
    std_n = empty if std is None else std.expand_as(z).detach().numpy()
    n_n = np.zeros(1, zn.dtype) if n_i is None else n_i.detach().to(z.dtype).numpy()
    _lines(zn, noise_n, std_n, noise is not None, root, dtype(std_scale), n_n, dtype(factor), n_i is not None)


def flat_numpy(t: Tensor) -> np.ndarray:
    if t.device.type != "cpu" or not t.is_contiguous():
        raise ValueError("the compiled loops take contiguous CPU tensors only")
    return t.detach().view(-1).numpy()


def noisy_adc(
    z: Tensor, key: Optional[tuple[int, int]], std: float, rnd: bool, bound: float = float("inf"), first: int = 0,
    start: int = 0,
) -> int:
    """Add output noise to the products ``z`` in place and round them to ADC codes.

    ``z`` holds values ``first .. first + z.numel() - 1`` of a draw of the Philox stream
    with ``key`` (:attr:`crossbar.rng.NoiseStream.key`) whose counters begin at ``start``
    (from ``NoiseStream.take``): a caller that fills one output in pieces passes each
    piece's offset, and gets the numbers of one whole draw. Without ``key`` no noise is
    added. Returns how many codes exceed ``bound`` in size (the ADC's clip check).
    """
    flat = flat_numpy(z)
    noisy = key is not None and std > 0
    k0, k1 = key if key is not None else (0, 0)
    dtype = flat.dtype.type
    return int(_noisy_adc(flat, first, start, k0, k1, dtype(std), noisy, bool(rnd), dtype(bound)))


# ------------------------------------------------------------------ DAC codes


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
    choice is a constant of the compiled code, not a test in its innermost loop (faster)."""

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
    _row_codes(
        xs, dtype(1.0), dtype(in_unit), bool(rnd), clip, dtype(bound if clip else 0.0), out.numpy(), unit.numpy()
    )
