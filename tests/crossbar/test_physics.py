"""The physics table, a preset's full parameter set, and the one drift compensation."""

import pytest
import torch
from torch import nn

import crossbar
from crossbar.physics import ALL_PARAMS, PHYSICS


def test_every_kind_of_the_table_makes_its_model_with_its_parameters():
    for kind, physics in PHYSICS.items():
        preset = crossbar.make_preset({"name": kind, "physics": kind})
        model = preset.noise_model
        assert preset.resolved_g_max == physics.g_max and preset.resolved_g_min == physics.g_min
        assert set(physics.resolved_params(model)) == set(physics.params)  # the model holds each by name
        others = [p for p in ALL_PARAMS if p not in physics.params]
        for other in others[:1]:  # a parameter of another kind is refused, naming this kind's
            with pytest.raises(ValueError, match=f"{other} does not apply to physics='{kind}'"):
                crossbar.make_preset({"name": kind, "physics": kind, other: 1.0})


@pytest.mark.parametrize("name", crossbar.list_presets())
def test_a_full_spec_simulates_the_same_devices_bit_for_bit(name):
    preset = crossbar.get_preset(name, faults="chen2015", g_max=20.0)
    full = preset.full_spec()
    assert full["p_sa0"] == 0.0904 and full["p_sa1"] == 0.0175 and "faults" not in full  # the profile's rates
    assert full["g_max"] == 20.0 and full["g_min"] is not None and full["g_converter"]
    assert all(full[p] is not None for p in preset.kind.params)  # aihwkit's defaults written out
    again = crossbar.make_preset(full)
    assert again.full_spec() == full
    assert again.architecture == preset.architecture
    w = torch.randn(7, 5, generator=torch.Generator().manual_seed(0))
    t = preset.times[0] if preset.times else 86400.0
    assert torch.equal(crossbar.sample_weights(w, preset, t, 3, seed=2),
                       crossbar.sample_weights(w, again, t, 3, seed=2))


def test_training_and_the_chips_share_one_drift_compensation():
    """sample_weights(compensate=True), what hardware-aware training injects, is exactly
    what a converted layer computes with a perfect periphery, for every chip and tile."""
    torch.manual_seed(0)
    layer = nn.Linear(40, 12)
    for preset in (crossbar.get_preset("pcm"), crossbar.get_preset("pcm", max_in=16, max_out=5, faults="chen2015")):
        assert preset.drift_compensation
        for t in (1.0, 86400.0, 365 * 86400.0):
            injected = crossbar.sample_weights(layer.weight, preset, t, 4, seed=3, compensate=True)
            xmodel = crossbar.convert(layer, preset).program(4, seed=3).drift(t)
            assert torch.equal(injected, xmodel.crossbar_layers[0]._w)
        raw = crossbar.sample_weights(layer.weight, preset, 365 * 86400.0, 4, seed=3)
        assert not torch.equal(raw, injected)  # the compensation acts


def test_durations_are_times_for_evaluate_too(trained_mlp, digits_split):
    _, (x, y) = digits_split
    words = crossbar.evaluate(trained_mlp, (x, y), "pcm", ["1s", "1 day", "1y"], 3, seed=1)
    seconds = crossbar.evaluate(trained_mlp, (x, y), "pcm", [1.0, 86400.0, 365 * 86400.0], 3, seed=1)
    assert (words == seconds).all()
