"""The CPU output-noise streams: Philox4x32-10 bits, Box-Muller Gaussians, the fused ADC pass."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from crossbar.kernels import noisy_adc
from crossbar.rng import NoiseStream, philox4x32_10, standard_normal

# Random123's published known-answer vectors for Philox4x32-10 (its tests/kat_vectors);
# the third is the suite's standard one, the leading hex digits of pi.
KNOWN_ANSWERS = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]
N = 1 << 21  # draws for the statistical tests: 2.1 M


@pytest.mark.parametrize("counter, key, expected", KNOWN_ANSWERS)
def test_philox_matches_random123_known_answers(counter, key, expected):
    assert philox4x32_10(counter, key) == expected


def _box_muller_float64(seed: int, n: int) -> np.ndarray:
    """The stream's first ``n`` values computed in float64 from the same Philox words."""
    k0, k1 = seed & 0xFFFFFFFF, seed >> 32
    words = np.array([philox4x32_10((c, 0, 0, 0), (k0, k1)) for c in range((n + 3) // 4)], dtype=np.float64)
    out = np.empty((len(words), 4))
    for pair, (a, b) in enumerate(((0, 1), (2, 3))):
        u = (np.floor(words[:, a] / 256) + 1) * 2.0**-24
        radius = np.sqrt(-2 * np.log(u))
        quadrant = np.floor(words[:, b] / 2**30)
        offset = (np.floor(words[:, b] / 64) % 2**24 + 0.5) * 2.0**-24 * (np.pi / 2) - np.pi / 4
        angle = quadrant * np.pi / 2 + offset
        out[:, 2 * pair], out[:, 2 * pair + 1] = radius * np.cos(angle), radius * np.sin(angle)
    return out.ravel()[:n]


def test_gaussians_are_box_muller_of_the_philox_words_to_float32_rounding():
    seed = 0x1234_5678_9ABC_DEF0
    ours = standard_normal(4003, seed).double().numpy()
    exact = _box_muller_float64(seed, 4003)
    assert np.abs(ours - exact).max() < 4e-7 * max(1.0, np.abs(exact).max())


def test_gaussians_have_the_normal_distribution():
    z = standard_normal(N, seed=7).double().numpy()
    n = z.size
    assert abs(z.mean()) < 5 / math.sqrt(n)
    assert abs(z.std() - 1) < 5 / math.sqrt(2 * n)
    assert abs(stats.skew(z)) < 5 * math.sqrt(6 / n)
    assert abs(stats.kurtosis(z)) < 5 * math.sqrt(24 / n)
    assert stats.kstest(z, "norm").pvalue > 1e-3
    for r in (2.0, 3.0, 4.0):  # tail mass on each side, within binomial error
        p = stats.norm.sf(r)
        for count in ((z > r).sum(), (z < -r).sum()):
            assert abs(count - n * p) < 5 * math.sqrt(n * p * (1 - p)) + 1
    # the radius has 24 bits: nothing beyond sqrt(2 ln 2^24), as with torch's generator
    assert np.abs(z).max() <= math.sqrt(2 * 24 * math.log(2)) + 1e-5


def test_values_are_uncorrelated_within_and_across_streams():
    a = standard_normal(N, seed=1).double().numpy()
    b = standard_normal(N, seed=2).double().numpy()
    bound = 5 / math.sqrt(N)
    assert abs(np.corrcoef(a, b)[0, 1]) < bound
    for lag in (1, 2, 3, 4, 5):  # neighbours share a Philox counter or a Box-Muller pair
        assert abs(np.corrcoef(a[:-lag], a[lag:])[0, 1]) < bound
        assert abs(np.corrcoef(a[:-lag] ** 2, a[lag:] ** 2)[0, 1]) < 2 * bound  # radius shared in a pair


def test_a_stream_is_its_seed_and_its_sequence_of_draws():
    s1, s2 = NoiseStream(99), NoiseStream(99)
    first = s1.normal_(torch.empty(10))
    assert torch.equal(first, s2.normal_(torch.empty(10)))
    assert not torch.equal(first, s1.normal_(torch.empty(10)))  # the next draw goes on
    assert not torch.equal(first, NoiseStream(100).normal_(torch.empty(10)))
    assert s1.counter == 2 * 3  # 10 values: 3 counters of 4
    scaled = NoiseStream(99).normal_(torch.empty(10), std=0.25)
    assert torch.equal(scaled, first * 0.25)


def test_noisy_adc_adds_the_streams_values_and_rounds():
    z = torch.randn(5000, generator=torch.Generator().manual_seed(0)) * 20
    noise = NoiseStream(5).normal_(torch.empty_like(z), std=1.3)
    expected = torch.round(z + noise)
    out, stream = z.clone(), NoiseStream(5)
    over = noisy_adc(out, stream.key, 1.3, True, 12.0, 0, stream.take(out.numel()))
    assert torch.equal(out, expected)
    assert over == int((expected.abs() > 12).sum()) > 0
    unrounded = z.clone()
    noisy_adc(unrounded, NoiseStream(5).key, 1.3, False, math.inf, 0, 0)
    assert torch.equal(unrounded, z + noise)
    plain = z.clone()
    assert noisy_adc(plain, None, 1.3, True, 12.0) == int((torch.round(z).abs() > 12).sum())
    assert torch.equal(plain, torch.round(z))  # no stream: no noise


@pytest.mark.parametrize("cuts", [(0, 4000), (0, 1, 5, 4000), (0, 3, 1027, 2050, 3999, 4000)])
def test_a_draw_made_in_pieces_gives_the_numbers_of_one_draw(cuts):
    z = torch.randn(4000, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    whole, stream = z.clone(), NoiseStream(8)
    noisy_adc(whole, stream.key, 0.7, True, math.inf, 0, stream.take(whole.numel()))
    pieces, stream = z.clone(), NoiseStream(8)
    start = stream.take(pieces.numel())
    for lo, hi in zip(cuts[:-1], cuts[1:]):
        noisy_adc(pieces[lo:hi], stream.key, 0.7, True, math.inf, lo, start)
    assert torch.equal(pieces, whole)


def test_nan_stays_nan_and_is_not_counted_as_clipping():
    z = torch.tensor([float("nan"), 30.0, -2.0, float("inf")])
    over = noisy_adc(z, NoiseStream(0).key, 0.1, True, 12.0, 0, 0)
    assert torch.isnan(z[0]) and over == 2  # 30 and inf exceed the bound


def test_streams_refuse_what_they_cannot_fill():
    with pytest.raises(ValueError, match="contiguous CPU tensors"):
        NoiseStream(0).normal_(torch.empty(4, 4).T)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_streams_are_torch_generators():
    stream = NoiseStream(3, "cuda")
    out = stream.normal_(torch.empty(1000, device="cuda"), std=2.0)
    ref = torch.empty(1000, device="cuda").normal_(0.0, 2.0, generator=torch.Generator("cuda").manual_seed(3))
    assert torch.equal(out, ref)

