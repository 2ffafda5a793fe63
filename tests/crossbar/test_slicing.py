"""Sliced weights and bit-serial inputs: exact where the architecture allows it, the
noise of every cell carried by its significance, chips vectorised like the rest."""

import math

import numpy as np
import pytest
import torch
from torch import nn

import crossbar
from crossbar.arrays import tile_grid
from crossbar.slicing import Slicing, cell_digits, input_codes, program_sliced, tile_codes_product, weight_codes


def sliced(**overrides):
    spec = dict(physics="ideal", g_converter="single_device", g_min=1.0, g_max=10.0, max_in=64, max_out=8,
                weight_bits=8, bits_per_cell=2, input_bits=6, bits_per_input_cycle=2, adc_bits=12)
    spec.update(overrides)
    return crossbar.make_preset(spec)


@pytest.mark.parametrize("converter", ["single_device", "single_pair"])
@pytest.mark.parametrize("bits", [(8, 2, 6, 2), (8, 4, 4, 1), (6, 1, 8, 4), (4, 4, 8, 2), (8, 2, 4, 4)])
def test_exact_devices_and_fine_adcs_give_the_integer_product_exactly(converter, bits):
    w_bits, cell, i_bits, cycle = bits
    preset = sliced(g_converter=converter, weight_bits=w_bits, bits_per_cell=cell, input_bits=i_bits,
                    bits_per_input_cycle=cycle, adc_bits=16)
    s = Slicing.of(preset)
    gen = torch.Generator().manual_seed(sum(bits))
    weight = torch.randn(7, 30, generator=gen, dtype=torch.float64)
    codes, _ = weight_codes(weight, s)
    array, _, _ = program_sliced(weight, preset, 2, seed=0)
    digits = cell_digits(array.conductances(1.0), s)
    x = torch.randn(9, 30, generator=gen, dtype=torch.float64)
    x[0] = x[0].abs()  # one vector of one sign only
    a, _ = input_codes(x, s)
    product = tile_codes_product(a, digits, s)  # (C, n, out), in code units
    signed = codes[0] if s.devices == 1 else codes[0] - codes[1]
    exact = a @ signed.T
    assert torch.equal(product[0], exact) and torch.equal(product[1], exact)
    assert float(exact.abs().max()) == int(exact.abs().max())  # integers, no rounding anywhere


def test_a_layer_computes_the_quantised_product():
    torch.manual_seed(3)
    layer = nn.Linear(30, 7)
    x = torch.randn(5, 30)
    for converter in ("single_device", "single_pair"):
        preset = sliced(g_converter=converter, adc_bits=16)
        s = Slicing.of(preset)
        w = layer.weight.detach().double()
        codes, w_max = weight_codes(w, s)
        top_w, top_x = 2**s.weight_bits - 1, 2**s.input_bits - 1
        w_q = (2 * codes[0] / top_w - 1) * w_max if s.devices == 1 else (codes[0] - codes[1]) / top_w * w_max
        a, m = input_codes(x.double(), s)
        expected = (a / top_x * m) @ w_q.T + layer.bias.double()
        y = crossbar.convert(layer, preset).program(2).drift(1.0)(x)
        assert torch.allclose(y[0].double(), expected, rtol=0, atol=1e-5)
        assert torch.equal(y[0], y[1])


def test_sample_weights_reads_every_slice_back():
    torch.manual_seed(4)
    w = torch.randn(6, 40)
    for converter in ("single_device", "single_pair"):
        preset = sliced(g_converter=converter, max_in=16)  # three input tiles, each its own w_max
        s = Slicing.of(preset)
        expected = torch.empty(6, 40, dtype=torch.float64)
        for o0, o1, i0, i1 in tile_grid(6, 40, 8, 16):
            codes, w_max = weight_codes(w[o0:o1, i0:i1].double(), s)
            unit = (2 * codes[0] / 255 - 1) if s.devices == 1 else (codes[0] - codes[1]) / 255
            expected[o0:o1, i0:i1] = unit * w_max
        got = crossbar.sample_weights(w, preset, 1.0, 2)
        assert torch.allclose(got[0].double(), expected, atol=1e-6) and torch.equal(got[0], got[1])
        noisy = crossbar.sample_weights(w, preset.with_overrides(physics="lognormal", sigma=0.1), 1.0, 2)
        assert not torch.allclose(noisy[0], noisy[1])
    with pytest.raises(ValueError, match="slices it over cells: use sample_weights"):
        crossbar.program(w, sliced(), 2)


def test_an_adc_too_coarse_for_the_column_drops_its_low_bits():
    preset = sliced(adc_bits=4)  # full scale 30 rows x 3 x 3 = 270 units: 2^4 codes of 32 units
    s = Slicing.of(preset)
    assert s.full_scale(30) == 270 and s.adc_step(30) == 32
    assert sliced(adc_bits=9).architecture.adc_bits == 9 and Slicing.of(sliced(adc_bits=9)).adc_step(30) == 1
    torch.manual_seed(0)
    layer, x = nn.Linear(30, 7), torch.rand(64, 30)
    fine = crossbar.convert(layer, sliced(adc_bits=12)).program(1).drift(1.0)(x)
    coarse = crossbar.convert(layer, preset).program(1).drift(1.0)(x)
    error = (coarse - fine).abs().mean().item()
    assert error > 1e-3  # the coarse ADC loses what its step cannot resolve


def test_a_sliced_weights_error_is_each_cells_noise_times_its_significance():
    """Log-normal cells: each digit's conductance times e^theta, theta ~ N(0, sigma^2).
    With every digit at the top level (g_max), a weight code's error is
    sum_k 4^k (g_max / (g_max - g_min)) 3 (e^theta_k - 1), variance
    (3 g_max / dg)^2 (e^sigma^2 - 1) e^sigma^2 sum_k 16^k."""
    sigma = 0.05
    preset = sliced(physics="lognormal", sigma=sigma, g_min=0.0, g_max=10.0, max_in=128, max_out=128)
    s = Slicing.of(preset)
    weight = torch.ones(40, 50, dtype=torch.float64)  # code 255 = digits 3, 3, 3, 3 (offset codes: w = w_max)
    array, _, _ = program_sliced(weight, preset, 4, seed=1)
    digits = cell_digits(array.conductances(1.0), s).view(4, 40, s.slices, 50)
    significance = torch.tensor([4.0**k for k in range(s.slices)], dtype=torch.float64).view(1, 1, -1, 1)
    error = ((digits - 3.0) * significance).sum(2).flatten().numpy()
    n = error.size
    spread = (math.exp(sigma**2) - 1) * math.exp(sigma**2)  # Var e^theta
    predicted = (3.0 * 10.0 / 10.0) ** 2 * spread * sum(16.0**k for k in range(4))
    # the sample variance of n normal-ish draws has relative standard error sqrt(2 / (n - 1))
    assert np.var(error, ddof=1) == pytest.approx(predicted, rel=5 * math.sqrt(2 / (n - 1)))
    assert abs(error.mean()) < 5 * math.sqrt(predicted / n) + 3 * 85 * (math.exp(sigma**2 / 2) - 1)  # E e^theta - 1
    # the most significant slice carries 16^3 / sum 16^k of the variance: 94 %
    top = ((digits[:, :, 3] - 3.0) * 64).flatten().numpy()
    assert np.var(top, ddof=1) / np.var(error, ddof=1) == pytest.approx(16**3 / sum(16.0**k for k in range(4)), rel=0.1)


def test_chips_are_the_same_chips_for_any_number_and_strategy():
    torch.manual_seed(1)
    conv = nn.Conv2d(3, 5, 3, padding=1)
    x = torch.randn(2, 3, 6, 6)
    preset = sliced(physics="lognormal", sigma=0.2, out_noise=0.01, max_in=16)
    three = crossbar.convert(conv, preset, strategy="loop").program(3, seed=2).drift(60.0)(x)
    five = crossbar.convert(conv, preset, strategy="fold").program(5, seed=2).drift(60.0)(x)
    assert torch.allclose(three, five[:3], atol=1e-6)
    assert not torch.allclose(five[0], five[1])


def test_output_noise_is_relative_to_the_full_scale_and_shift_added():
    """Pairs, 30 rows, 2-bit cells and planes: full scale 270 units, noise 0.01 of it per
    conversion (2.7 units) plus the ADC's rounding (1/12 unit^2); shift-added over 3
    cycles (16^c) and 4 slices (16^k), then scaled by w_max m / (255 x 63)."""
    torch.manual_seed(2)
    layer, x = nn.Linear(30, 7), torch.rand(300, 30)
    quiet = crossbar.convert(layer, sliced(g_converter="single_pair")).program(1).drift(1.0)(x)[0]
    loud = crossbar.convert(layer, sliced(g_converter="single_pair", out_noise=0.01)).program(1).drift(1.0)(x)[0]
    m = x.abs().amax(1, keepdim=True)
    w_max = layer.weight.abs().max()
    noise = ((loud - quiet) / (m * w_max)).double().flatten()
    per_conversion = 2.7**2 + 1 / 12
    predicted = math.sqrt(per_conversion * sum(16.0**c for c in range(3)) * sum(16.0**k for k in range(4))) / 255 / 63
    n = noise.numel()
    assert noise.std().item() == pytest.approx(predicted, rel=5 * math.sqrt(1 / (2 * (n - 1))))
    assert abs(noise.mean().item()) < 5 * predicted / math.sqrt(n)


def test_isaac_runs_and_evaluates():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 4))
    x, y = torch.randn(64, 20), torch.randint(0, 4, (64,))
    digital = (net(x).argmax(1) == y).float().mean().item()
    scores = crossbar.evaluate(net, (x, y), "isaac", ["1s", "1d"], n_chips=2)
    assert scores.shape == (2, 2)
    assert np.allclose(scores, digital, atol=2 / 64)  # exact devices, 16 bits: the digital answer


@pytest.mark.parametrize("overrides, message", [
    (dict(adc_bits=None), "a sliced preset .* needs adc_bits"),
    (dict(inp_res=0.01, inp_bound=1.0), "inp_res = 0.01 does not apply to a sliced preset"),
    (dict(levels=4), "levels = 4 does not apply to a sliced preset"),
    (dict(drift_compensation=True), "drift_compensation = True does not apply to a sliced preset"),
    (dict(ir_drop=1.0), "ir_drop = 1.0 does not apply"),
])
def test_what_a_sliced_preset_does_not_run_is_one_line(overrides, message):
    with pytest.raises(ValueError, match=message) as info:
        sliced(**overrides)
    assert "\n" not in str(info.value)


def test_grouped_convolutions_run_one_layer_a_group_on_sliced_presets():
    xmodel = crossbar.convert(nn.Conv2d(4, 4, 3, groups=2), sliced())  # tests/crossbar/test_grouped.py checks them
    assert isinstance(xmodel.module, crossbar.grouped.GroupedConv2d) and len(xmodel.crossbar_layers) == 2
    with pytest.raises(ValueError, match="groups=2"):  # one CrossbarConv2d cannot hold the groups
        crossbar.CrossbarConv2d(nn.Conv2d(4, 4, 3, groups=2), sliced(), 0)
