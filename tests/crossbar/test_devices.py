"""Conductance pairs, tiles, chip identity and stuck-at faults."""

import math

import pytest
import torch
from aihwkit.simulator.tiles.array import TileModuleArray
from hypothesis import given, settings
from hypothesis import strategies as st

import crossbar
from crossbar.arrays import split_sizes

CONVERTERS = [
    {},
    {"g_converter": "dual_pair", "f_lst": [1.0, 3.0]},
    {"g_converter": "n_pair", "f_lst": [1.0, 2.0, 4.0]},
    {"g_converter": "single_device"},
    {"g_min": 2.0, "g_max": 40.0},
]


@pytest.mark.parametrize("overrides", CONVERTERS)
@settings(max_examples=25, deadline=None)
@given(
    rows=st.integers(1, 9),
    cols=st.integers(1, 9),
    seed=st.integers(0, 2**31),
    scale=st.floats(1e-3, 1e3),
)
def test_noiseless_pairs_reconstruct_weights_and_stay_in_range(overrides, rows, cols, seed, scale):
    w = torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed)) * scale
    preset = crossbar.get_preset("ideal", max_in=4, max_out=4, **overrides)
    array = crossbar.program(w, preset, n_chips=2, seed=seed % 1000)
    g_min, g_max = preset.resolved_g_min, preset.resolved_g_max
    assert array.g_target.min() >= g_min and array.g_target.max() <= g_max
    for t in (0.0, 86400.0):
        g = array.conductances(t)
        assert g.min() >= g_min and g.max() <= g_max
    got = crossbar.sample_weights(w, preset, 1.0, 2, seed=seed % 1000)
    torch.testing.assert_close(got, w.expand(2, rows, cols), rtol=1e-6, atol=1e-6 * scale)


def test_ideal_single_pair_round_trip_is_bit_exact():
    w = torch.randn(37, 53)
    assert torch.equal(crossbar.sample_weights(w, "ideal", 3600.0, 3)[2], w)


def test_each_weight_uses_one_device_of_its_pair():
    w = torch.tensor([[0.5, -1.0, 0.0]])
    array = crossbar.program(w, "ideal", 1)
    g_plus, g_minus = array.g_target
    torch.testing.assert_close(g_plus, torch.tensor([[12.5, 0.0, 0.0]], dtype=torch.float64))
    torch.testing.assert_close(g_minus, torch.tensor([[0.0, 25.0, 0.0]], dtype=torch.float64))


def test_tiles_follow_aihwkit_split_and_have_their_own_scale():
    for size, max_size in [(1000, 512), (512, 512), (513, 512), (1, 512), (1100, 0), (70, 32)]:
        assert split_sizes(size, max_size) == TileModuleArray.get_split_sizes(None, size, max_size)
    w = torch.ones(6, 10)
    w[:, :5] *= 4.0  # the first input tile holds larger weights
    array = crossbar.program(w, crossbar.get_preset("ideal", max_in=5, max_out=3), 1)
    assert array.tiles == [(0, 3, 0, 5), (3, 6, 0, 5), (0, 3, 5, 10), (3, 6, 5, 10)]
    assert array.tile_abs_max == [4.0, 4.0, 1.0, 1.0]
    # every tile maps its own largest weight to g_max
    assert torch.all(array.g_target[0] == 25.0)


def test_a_chip_is_its_seed_and_index_whatever_the_batch():
    w = torch.randn(8, 8)
    all_chips = crossbar.program(w, "pcm", 6, seed=11)
    part = crossbar.program(w, "pcm", 2, seed=11, first_chip=4)
    torch.testing.assert_close(part.g_programmed, all_chips.g_programmed[4:])
    torch.testing.assert_close(part.conductances(60.0), all_chips.conductances(60.0)[4:])
    other = crossbar.program(w, "pcm", 6, seed=12)
    assert not torch.equal(other.g_programmed, all_chips.g_programmed)
    # the caller's global RNG stream is not disturbed
    torch.manual_seed(5)
    a = torch.rand(3)
    torch.manual_seed(5)
    crossbar.sample_weights(w, "pcm", 10.0, 3)
    assert torch.equal(torch.rand(3), a)


def test_same_chip_at_two_times_differs_only_by_time_dependent_effects():
    # PCM without read noise: g(t) = g_prog * ((t + t0) / t0) ** -nu with nu fixed at programming.
    preset = crossbar.get_preset("pcm", read_noise_scale=0.0)
    array = crossbar.program(torch.randn(16, 16), preset, 4, seed=3)
    g_prog = array.g_programmed
    t0 = preset.noise_model.t_0
    g1, g2 = array.conductances(3600.0), array.conductances(30 * 86400.0)
    on = g_prog > 1e-3
    ratio = torch.log(g2[on].double() / g_prog[on]) / torch.log(g1[on].double() / g_prog[on])
    expected = math.log((30 * 86400.0 + t0) / t0) / math.log((3600.0 + t0) / t0)
    # float32 device physics: the log-ratios carry ~1e-5 relative rounding
    torch.testing.assert_close(ratio, torch.full_like(ratio, expected), rtol=1e-4, atol=0)


def test_stuck_devices_match_their_probabilities_within_binomial_error():
    p0, p1 = 0.1, 0.03
    array = crossbar.program(torch.randn(50, 40), crossbar.get_preset("ideal", p_sa0=p0, p_sa1=p1), 10, seed=0)
    n = array.stuck.numel()
    for code, p in ((1, p0), (2, p1)):
        share = (array.stuck == code).double().mean().item()
        assert abs(share - p) < 4 * math.sqrt(p * (1 - p) / n)


def test_stuck_devices_hold_their_value_at_every_time_and_the_map_is_fixed():
    preset = crossbar.get_preset("pcm", faults="chen2015")
    w = torch.randn(30, 30)
    array = crossbar.program(w, preset, 3, seed=7)
    again = crossbar.program(w, preset, 3, seed=7)
    assert torch.equal(array.stuck, again.stuck)
    sa0, sa1 = array.stuck == 1, array.stuck == 2
    assert sa0.any() and sa1.any()
    for t in (0.0, 1.0, 86400.0, 3.15e7):
        g = array.conductances(t)
        assert torch.all(g[sa0] == 0.0) and torch.all(g[sa1] == 25.0)
    assert not torch.equal(crossbar.program(w, preset, 3, seed=8).stuck, array.stuck)


@pytest.mark.parametrize("p0, p1", [(1.0, 0.0), (0.0, 1.0)])
def test_fully_stuck_arrays_hold_zero_weights(p0, p1):
    w = torch.randn(5, 5)
    got = crossbar.sample_weights(w, crossbar.get_preset("lognormal", p_sa0=p0, p_sa1=p1), 86400.0, 2)
    assert torch.all(got == 0)
