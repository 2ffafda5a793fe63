"""Grouped and depthwise convolutions: exact under ideal, each group on its own tiles with a
periphery, the same numbers folded and looped, and chip k the same chip whatever n_chips."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import crossbar
from crossbar.grouped import GroupedConv2d, group_index

NOISY = crossbar.get_preset("pcm", **crossbar.AIHWKIT_PERIPHERY)


def _run(xmodel, x, n_chips=3, seed=0, first_chip=0, t=3600.0):
    xmodel.program(n_chips, seed, first_chip).drift(t)
    with torch.no_grad():
        return xmodel(x)


def _convs():
    torch.manual_seed(0)
    return {
        "depthwise": nn.Conv2d(4, 4, 3, padding=1, groups=4),
        "grouped": nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2),
        "multiplier": nn.Conv2d(3, 6, (3, 2), padding="same", padding_mode="reflect", groups=3, bias=False),
    }


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("strategy", ["fold", "loop"])
@pytest.mark.parametrize("kind", ["depthwise", "grouped", "multiplier"])
def test_ideal_grouped_convolutions_equal_torch_exactly(kind, strategy):
    conv = _convs()[kind].eval()
    x = torch.randn(5, conv.in_channels, 7, 7, generator=torch.Generator().manual_seed(1))
    model = nn.Sequential(conv, nn.ReLU(), nn.Flatten(), nn.Linear(conv(x).shape[1:].numel(), 3)).eval()
    xmodel = crossbar.convert(model, "ideal", strategy=strategy)
    assert isinstance(xmodel.module[0], crossbar.CrossbarConv2d)  # a perfect periphery: one layer, groups kept
    got, want = _run(xmodel, x), model(x).detach().expand(3, -1, -1)
    if strategy == "loop":  # torch's own convolution on the weights read back exactly
        assert torch.equal(got, want)
    else:  # one convolution for all chips: torch may pick another kernel for its shape (seen on an AVX-512
        # CPU for the channel multiplier), whose sums round differently in float32's last bits
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("strategy", ["fold", "loop"])
def test_a_periphery_puts_each_group_on_tiles_of_its_own(strategy):
    conv = _convs()["grouped"].eval()
    on = crossbar.make_preset({"name": "bounded", "base": "ideal", "inp_bound": 1.0})  # a periphery, no noise
    xmodel = crossbar.convert(nn.Sequential(conv), on, strategy=strategy)
    grouped = xmodel.module[0]
    assert isinstance(grouped, GroupedConv2d) and len(grouped.convs) == 2
    assert [c.index for c in grouped.convs] == [group_index(0, 0), group_index(0, 1)] == [1 << 32, 2 << 32]
    assert [tuple(c.weight.shape) for c in grouped.convs] == [(3, 2, 3, 3)] * 2
    assert torch.equal(grouped.weight, conv.weight.detach())
    x = torch.randn(4, 4, 6, 6, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(_run(xmodel, x), conv(x).detach().expand(3, -1, -1, -1, -1), rtol=1e-5, atol=1e-5)


def test_later_layers_keep_their_numbers():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(4, 4, 3, groups=2), nn.Flatten(), nn.Linear(4, 2))
    xmodel = crossbar.convert(model, NOISY)
    assert xmodel.module[0].index == 0 and xmodel.module[2].index == 1
    assert len({layer.index for layer in xmodel.crossbar_layers}) == 3


@pytest.mark.parametrize("preset", [NOISY, crossbar.get_preset("reram_cmo", **crossbar.AIHWKIT_PERIPHERY,
                                                               faults="chen2015", max_in=10, max_out=2)],
                         ids=["pcm", "reram_cmo_tiles"])
def test_fold_and_loop_give_the_same_numbers_and_chips_keep_their_identity(preset):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1, groups=2), nn.ReLU(),
                          nn.Conv2d(6, 6, 3, groups=6), nn.Flatten(), nn.Linear(6 * 3 * 3, 5)).eval()
    x = torch.randn(6, 4, 5, 5, generator=torch.Generator().manual_seed(3))
    folded = _run(crossbar.convert(model, preset, strategy="fold"), x, n_chips=4, seed=7)
    looped = _run(crossbar.convert(model, preset, strategy="loop"), x, n_chips=4, seed=7)
    assert torch.equal(folded, looped)
    assert not torch.equal(folded[0], folded[1])  # the chips differ
    xmodel = crossbar.convert(model, preset)
    assert torch.equal(_run(xmodel, x, n_chips=2, seed=7), folded[:2])
    assert torch.equal(_run(xmodel, x, n_chips=2, seed=7, first_chip=2), folded[2:])


def test_output_noise_is_each_groups_own_in_distribution():
    """Output noise only: each output is the exact one plus out_noise x the group's
    largest |weight| (its tile's scale) x the patch's largest |input| (noise management)
    x N(0, 1); the groups' weights differ in scale 4x, so a tile shared by the groups
    would give the second group 4x too much noise."""
    sigma, n_chips = 0.05, 300
    preset = crossbar.make_preset({"name": "out_noise", "base": "ideal", "out_noise": sigma})
    conv = nn.Conv2d(4, 4, 3, padding=1, groups=2)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(4, 2, 3, 3, generator=torch.Generator().manual_seed(4)))
        conv.weight[2:] *= 0.25
    x = torch.randn(2, 4, 5, 5, generator=torch.Generator().manual_seed(5))
    y = _run(crossbar.convert(conv, preset, strategy="fold"), x, n_chips=n_chips, seed=11)  # (C, B, 4, 5, 5)
    exact = conv(x).detach()
    for g in range(2):
        patches = F.unfold(x[:, 2 * g:2 * g + 2], 3, padding=1)  # (B, 2 * 9, 25): the group's own inputs
        scale = sigma * conv.weight[2 * g:2 * g + 2].abs().max() * patches.abs().amax(1).view(2, 1, 5, 5)
        z = ((y[:, :, 2 * g:2 * g + 2] - exact[:, 2 * g:2 * g + 2]) / scale).double().flatten()
        n = z.numel()
        assert abs(float(z.mean())) < 5 / math.sqrt(n)
        assert abs(float(z.var()) - 1) < 5 * math.sqrt(2 / n)
    # the same draws whatever the strategy
    assert torch.equal(y, _run(crossbar.convert(conv, preset, strategy="loop"), x, n_chips=n_chips, seed=11))


def test_sliced_presets_run_each_group_as_its_own_convolution():
    preset = crossbar.make_preset(dict(physics="ideal", g_converter="single_device", g_min=1.0, g_max=10.0,
                                       max_in=64, max_out=8, weight_bits=8, bits_per_cell=2, input_bits=6,
                                       bits_per_input_cycle=2, adc_bits=16))
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 4, 3, groups=2)
    x = torch.randn(3, 4, 6, 6)
    y = {s: _run(crossbar.convert(conv, preset, strategy=s), x, n_chips=2) for s in ("fold", "loop")}
    assert torch.equal(y["fold"], y["loop"])
    for g in range(2):  # the group as a convolution of its own (exact devices: no draws to differ)
        part = nn.Conv2d(2, 2, 3)
        with torch.no_grad():
            part.weight.copy_(conv.weight[2 * g:2 * g + 2])
            part.bias.copy_(conv.bias[2 * g:2 * g + 2])
        alone = _run(crossbar.convert(part, preset), x[:, 2 * g:2 * g + 2], n_chips=2)
        assert torch.equal(y["fold"][:, :, 2 * g:2 * g + 2], alone)
    torch.testing.assert_close(y["fold"][0], conv(x).detach(), rtol=0, atol=0.05)  # 8-bit weights, 6-bit inputs


def test_inputs_with_the_wrong_channels_name_the_grouped_layer():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(4, 4, 3, groups=2), nn.Flatten()).eval()
    with pytest.raises(ValueError, match=r"reach layer '0' \(GroupedConv2d, which takes 4 input channels\)"):
        crossbar.evaluate(model, (torch.randn(3, 3, 5, 5), torch.zeros(3, dtype=torch.long)), NOISY, [1.0], 2)
