"""The compiled DAC pass over convolution patches against the same arithmetic in torch."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from crossbar.kernels import patch_codes


def _torch_codes(x, recip, kernel, stride, dilation, rnd, bound):
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    n, c = x.shape[:2]
    oh, ow = recip.shape[1:]
    s_n, s_c, s_h, s_w = x.stride()
    patches = x.as_strided((n, c, kh, kw, oh, ow), (s_n, s_c, dh * s_h, dw * s_w, sh * s_h, sw * s_w))
    codes = patches * recip.view(n, 1, 1, 1, oh, ow)
    if rnd:
        codes = codes.round()
    if math.isfinite(bound):
        codes = codes.clamp(-bound, bound)
    return codes


@settings(max_examples=60, deadline=None)
@given(
    kernel=st.tuples(st.integers(1, 5), st.integers(1, 5)),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    extra=st.tuples(st.integers(0, 6), st.integers(0, 6)),
    channels=st.integers(1, 4),
    rnd=st.booleans(),
    clip=st.booleans(),
    double=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_patch_codes_equal_torchs_multiply_round_and_clip(
    kernel, stride, dilation, extra, channels, rnd, clip, double, seed
):
    gen = torch.Generator().manual_seed(seed)
    dtype = torch.float64 if double else torch.float32
    size = [d * (k - 1) + 1 + e for k, d, e in zip(kernel, dilation, extra)]
    x = torch.randn(3, channels, *size, generator=gen, dtype=dtype) * 3
    oh, ow = [(s - d * (k - 1) - 1) // st_ + 1 for s, d, k, st_ in zip(size, dilation, kernel, stride)]
    recip = torch.rand(3, oh, ow, generator=gen, dtype=dtype) * 40 + 0.5
    bound = 63.0 if clip else math.inf
    out = torch.empty(3, channels, *kernel, oh, ow, dtype=dtype)
    patch_codes(x, recip, kernel, stride, dilation, rnd, bound, out)
    assert torch.equal(out, _torch_codes(x, recip, kernel, stride, dilation, rnd, bound))


def test_nan_inputs_stay_nan_through_the_clip():
    x = torch.tensor([[[[float("nan"), 1.0, -9.0]]]])
    recip = torch.full((1, 1, 3), 10.0)
    out = torch.empty(1, 1, 1, 1, 1, 3)
    patch_codes(x, recip, (1, 1), (1, 1), (1, 1), True, 63.0, out)
    assert torch.isnan(out[..., 0]).all() and out[..., 1].item() == 10.0 and out[..., 2].item() == -63.0


@pytest.mark.parametrize("layout", ["channels_last", "sliced"])
def test_inputs_that_are_not_contiguous_give_the_same_codes(layout):
    gen = torch.Generator().manual_seed(3)
    base = torch.randn(2, 3, 9, 9, generator=gen)
    x = (
        base.to(memory_format=torch.channels_last) if layout == "channels_last"
        else torch.randn(2, 3, 9, 12, generator=gen)[..., 1:10]
    )
    recip = torch.rand(2, 5, 5, generator=gen) * 20 + 1
    out = torch.empty(2, 3, 5, 5, 5, 5)
    patch_codes(x, recip, (5, 5), (1, 1), (1, 1), True, math.inf, out)
    assert torch.equal(out, _torch_codes(x.contiguous(), recip, (5, 5), (1, 1), (1, 1), True, math.inf))


@pytest.mark.parametrize("rnd, bound", [(True, math.inf), (True, 50.0), (False, 50.0), (False, math.inf)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_row_codes_equal_torchs_noise_management_and_dac(rnd, bound, dtype):
    from crossbar.kernels import row_codes

    gen = torch.Generator().manual_seed(4)
    x = torch.randn(40, 30, generator=gen, dtype=dtype) * torch.rand(40, 1, generator=gen, dtype=dtype) * 9
    x[3] = 0.0  # a zero vector: unit 1
    x[5, 7] = float("nan")  # torch's amax is NaN there, and where(NaN > 0, ...) picks 1
    x = x[:, 2:27]  # a column slice: rows keep unit stride
    in_unit = 1 / 63
    scale = x.abs().amax(-1, keepdim=True)
    unit_ref = torch.where(scale > 0, scale, torch.ones_like(scale)).mul_(in_unit)
    ref = x * unit_ref.reciprocal()
    if rnd:
        ref = ref.round()
    if math.isfinite(bound):
        ref = ref.clamp(-bound, bound)
    codes, unit = torch.empty(x.shape, dtype=dtype), torch.empty(x.shape[0], dtype=dtype)
    row_codes(x, in_unit, rnd, bound, codes, unit)
    assert torch.equal(unit, unit_ref[:, 0])
    assert torch.equal(codes.nan_to_num(123.0), ref.nan_to_num(123.0))
    assert torch.equal(codes.isnan(), ref.isnan())


def test_loops_compile_without_a_writable_cache():
    """numba refuses ``cache=True`` for a function whose source file it cannot place a
    cache beside (nor in its user cache); the loops then compile uncached."""
    from crossbar.kernels import compiled

    namespace = {}
    exec(compile("def plus_one(x):\n    return x + 1\n", "/nonexistent/plus_one.py", "exec"), namespace)
    fn = compiled(namespace["plus_one"])
    assert fn(41) == 42 and fn.signatures  # compiled, and it ran
