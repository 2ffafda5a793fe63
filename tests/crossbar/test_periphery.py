"""The periphery against aihwkit's own IO-managed analog matmul (its torch tile)."""

import math

import pytest
import torch
from aihwkit.simulator.parameters.enums import BoundManagementType
from aihwkit.simulator.parameters.io import IOParameters
from aihwkit.simulator.tiles.analog_mvm import AnalogMVM

import crossbar
from crossbar.periphery import Periphery
from crossbar.rng import NoiseStream


def _aihwkit(weight, x, periphery, bm):
    settings = periphery.settings
    io = IOParameters(
        inp_res=settings.inp_res, out_res=settings.out_res, out_noise=settings.out_noise,
        inp_bound=settings.inp_bound, out_bound=settings.out_bound, bound_management=bm,
    )
    return AnalogMVM.matmul(weight, x, io, is_test=True)


def _ours(weight, x, periphery, streams=None):
    codes, unit = periphery.prepare_input(x.unsqueeze(0))
    z, factor = periphery.mvm(codes, unit, x.unsqueeze(0), periphery.code_weights(weight).unsqueeze(0), streams)
    return (z * factor)[0]


def _agree(ours, theirs, x, periphery):
    """Equal up to float rounding; a value within an ulp of an ADC boundary may differ by one step."""
    close = torch.isclose(ours, theirs, rtol=1e-5, atol=1e-5)
    assert close.double().mean() > 0.999
    lsb = periphery.out_unit * x.abs().amax(-1, keepdim=True).expand_as(ours)
    assert torch.all((ours - theirs).abs()[~close] <= lsb[~close] * 1.001)


def _noiseless_default():
    values = dict(crossbar.AIHWKIT_PERIPHERY, out_noise=0.0)
    return Periphery.of(**values)


def test_dac_adc_and_clipping_match_aihwkit_without_bound_management():
    gen = torch.Generator().manual_seed(0)
    weight = torch.rand(20, 100, generator=gen) * 2 - 1
    x = torch.randn(300, 100, generator=gen) * torch.rand(300, 1, generator=gen) * 5
    per = Periphery.of(**dict(crossbar.AIHWKIT_PERIPHERY, out_noise=0.0, bound_management="none"))
    theirs = _aihwkit(weight, x, per, BoundManagementType.NONE)
    ours = _ours(weight, x, per)
    assert (ours.abs() > 0).any() and (ours != x @ weight.T).any()  # quantisation acts
    _agree(ours, theirs, x, per)


def test_iterative_bound_management_matches_aihwkit_vector_by_vector():
    gen = torch.Generator().manual_seed(1)
    weight = torch.ones(4, 64)  # outputs of up to 64 in normalised units: they clip at 12
    x = torch.rand(30, 64, generator=gen) * torch.linspace(0.1, 1.0, 30).unsqueeze(1)
    per = _noiseless_default()
    ours = _ours(weight, x, per)
    for i in range(x.shape[0]):  # aihwkit's torch tile manages bounds per batch; one vector each
        theirs = _aihwkit(weight, x[i:i + 1], per, BoundManagementType.ITERATIVE)
        _agree(ours[i:i + 1], theirs, x[i:i + 1], per)
    assert ours.max() > 12  # bound management recovered outputs beyond the bound


def test_output_noise_has_aihwkit_strength():
    gen = torch.Generator().manual_seed(2)
    weight = torch.rand(50, 40, generator=gen) - 0.5
    x = torch.rand(400, 40, generator=gen)
    per = Periphery.of(out_noise=0.06)
    err = (_ours(weight, x, per, [NoiseStream(3)]) - x @ weight.T) / x.abs().amax(-1, keepdim=True)
    n = err.numel()
    assert abs(err.mean().item()) < 5 * 0.06 / math.sqrt(n)
    assert abs(err.std().item() - 0.06) < 5 * 0.06 / math.sqrt(2 * (n - 1))


@pytest.mark.parametrize("shape", [(33, 1, 2), (1, 7, 3)])
def test_zero_and_tiny_inputs_do_not_divide_by_zero(shape):
    per = _noiseless_default()
    x = torch.zeros(shape[0], 8)
    assert torch.equal(_ours(torch.ones(5, 8), x, per), torch.zeros(shape[0], 5))


def _aihwkit_layer(layer, max_in):
    from aihwkit.nn.conversion import convert_to_analog
    from aihwkit.simulator.configs import TorchInferenceRPUConfig

    from crossbar.noise import IdealNoiseModel

    rpu = TorchInferenceRPUConfig()
    rpu.noise_model = IdealNoiseModel()
    rpu.drift_compensation = None
    rpu.mapping.weight_scaling_omega = 1.0
    rpu.mapping.max_input_size = max_in
    for name, value in dict(crossbar.AIHWKIT_PERIPHERY, out_noise=0.0).items():
        setattr(rpu.forward, name, value)
    rpu.forward.bound_management = BoundManagementType.NONE
    return convert_to_analog(layer, rpu).eval()


@pytest.mark.parametrize("max_in", [512, 20])
@pytest.mark.parametrize(
    "make_layer, shape",
    [
        (lambda: torch.nn.Linear(50, 7), (64, 50)),
        (lambda: torch.nn.Conv2d(3, 5, 3, padding=1), (4, 3, 9, 9)),
        (lambda: torch.nn.Conv2d(3, 4, 5, stride=2, padding=3), (4, 3, 11, 11)),
        (lambda: torch.nn.Conv2d(6, 4, 1, stride=2), (4, 6, 9, 9)),
        (lambda: torch.nn.Conv2d(3, 4, 3, dilation=2, stride=(1, 2)), (4, 3, 10, 11)),
        (lambda: torch.nn.Conv2d(8, 6, 3, padding=1), (4, 8, 2, 2)),  # few positions: one product
        (lambda: torch.nn.Conv2d(5, 4, 3), (6, 5, 3, 3)),  # one position
    ],
)
def test_crossbar_layers_match_aihwkit_analog_layers(make_layer, shape, max_in):
    """Whole layers (unfolding, per-patch noise management, tiles, digital bias) against
    aihwkit's own analog layers, with ideal devices and a noiseless periphery."""
    torch.manual_seed(0)
    layer = make_layer()
    x = torch.randn(shape)
    preset = crossbar.get_preset(
        "ideal", **dict(crossbar.AIHWKIT_PERIPHERY, out_noise=0.0), bound_management="none", max_in=max_in
    )
    ours = crossbar.convert(layer, preset).program(1).drift(0.0)(x)[0]
    with torch.no_grad():
        theirs = _aihwkit_layer(layer, max_in)(x)
    assert not torch.allclose(ours, layer(x), atol=1e-4)  # the periphery really acts
    lsb = crossbar.get_preset("ideal", **crossbar.AIHWKIT_PERIPHERY)
    close = torch.isclose(ours, theirs, rtol=1e-4, atol=1e-4)
    assert close.double().mean() > 0.995
    # the rest: a value within an ulp of an ADC boundary rounded the other way
    step = Periphery(lsb.periphery).out_unit * x.abs().max() * layer.weight.abs().max()
    assert torch.all((ours - theirs).abs() <= step * 1.01)


def test_noisy_outputs_have_the_distribution_of_aihwkits():
    """With output noise and both converters on, our outputs (noise from the chip's
    Philox stream, added in the compiled ADC pass) and aihwkit's (torch's generator)
    have the same distribution around the exact product: two-sample KS, mean, spread."""
    from scipy import stats

    gen = torch.Generator().manual_seed(5)
    weight = torch.rand(20, 100, generator=gen) * 2 - 1
    x = torch.rand(2000, 100, generator=gen) - 0.3
    per = Periphery.of(**dict(crossbar.AIHWKIT_PERIPHERY, bound_management="none"))
    exact = x @ weight.T
    ours = (_ours(weight, x, per, [NoiseStream(11)]) - exact).flatten().double()
    torch.manual_seed(12)  # aihwkit draws from the global generator
    theirs = (_aihwkit(weight, x, per, BoundManagementType.NONE) - exact).flatten().double()
    n = ours.numel()
    assert stats.ks_2samp(ours.numpy(), theirs.numpy()).pvalue > 1e-3
    spread = theirs.std().item()
    assert abs(ours.mean().item() - theirs.mean().item()) < 5 * spread * math.sqrt(2 / n)
    assert abs(ours.std().item() - spread) < 5 * spread / math.sqrt(n)
    assert spread > 0.5 * 0.06 * x.abs().amax(-1).mean()  # the noise is really there
