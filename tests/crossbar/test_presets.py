"""Presets: names, aihwkit models behind them, overrides, custom presets, bad input."""

import pytest
import torch
from aihwkit.inference.converter.conductance import DualPairConductanceConverter, SingleDeviceConductanceConverter
from aihwkit.inference.noise.pcm import PCMLikeNoiseModel
from aihwkit.inference.noise.reram import ReRamCMONoiseModel, ReRamWan2022NoiseModel

import crossbar
from crossbar.noise import IdealNoiseModel, LogNormalDriftNoiseModel
from crossbar.periphery import Periphery


def test_presets_are_discoverable_and_backed_by_their_noise_models():
    expected = {
        "ideal": IdealNoiseModel,
        "pcm": PCMLikeNoiseModel,
        "reram_wan2022": ReRamWan2022NoiseModel,
        "reram_cmo": ReRamCMONoiseModel,
        "lognormal": LogNormalDriftNoiseModel,
    }
    assert set(expected) <= set(crossbar.list_presets())
    for name, cls in expected.items():
        preset = crossbar.get_preset(name)
        assert type(preset.noise_model) is cls
        assert preset.noise_model is preset.noise_model  # the instance the simulator uses
        assert Periphery(preset.periphery).perfect and preset.p_sa0 == 0 and preset.p_sa1 == 0


def test_groups_read_flat_and_nested_and_noise_is_the_old_name_of_physics():
    flat = crossbar.preset("pcm", g_max=20.0, max_in=64, out_noise=0.02, levels=8)
    assert flat.mapping.g_max == flat.g_max == 20.0 and flat.tiles.max_in == flat.max_in == 64
    assert flat.periphery.out_noise == flat.out_noise == 0.02 and flat.effects.levels == flat.levels == 8
    nested = crossbar.make_preset({"name": "pcm", "physics": "pcm", "tiles": {"max_in": 64},
                                   "mapping": {"g_max": 20.0, "drift_compensation": True},
                                   "periphery": {"out_noise": 0.02}, "effects": {"levels": 8}})
    assert {**nested.full_spec(), "description": ""} == {**flat.full_spec(), "description": ""}
    changed = {"g_max": 20.0, "max_in": 64, "out_noise": 0.02, "levels": 8}
    assert flat.changes_from(crossbar.get_preset("pcm")) == changed
    with pytest.raises(ValueError, match="g_max is given twice, flat and in mapping"):
        crossbar.make_preset({"name": "x", "physics": "pcm", "g_max": 1.0, "mapping": {"g_max": 2.0}})
    old = crossbar.preset({"name": "ln", "noise": "lognormal", "sigma": 0.3})
    assert old.physics == old.noise == "lognormal" and old == crossbar.preset({"name": "ln", "physics": "lognormal",
                                                                                "sigma": 0.3})
    assert crossbar.get_preset("ideal", noise="lognormal", sigma=0.3).physics == "lognormal"  # an override, old name
    with pytest.raises(ValueError, match="give physics \\(or its old name noise\\) once"):
        crossbar.make_preset({"name": "x", "physics": "pcm", "noise": "lognormal"})


def test_overrides_reach_the_noise_model():
    p = crossbar.get_preset("pcm", g_max=20.0, g_min=1.0, prog_noise_scale=0.5, drift_compensation=False)
    assert p.noise_model.g_max == 20.0 and p.noise_model.g_converter.g_min == 1.0
    assert p.noise_model.prog_noise_scale == 0.5 and not p.drift_compensation
    assert crossbar.get_preset("pcm").g_max is None  # the registry is untouched
    dual = crossbar.get_preset("pcm", g_converter="dual_pair", f_lst=[1.0, 3.0])
    assert isinstance(dual.noise_model.g_converter, DualPairConductanceConverter)
    assert crossbar.get_preset("lognormal", sigma=1.2).noise_model.sigma == 1.2
    cmo = crossbar.get_preset("reram_cmo")
    assert isinstance(cmo.noise_model.g_converter, SingleDeviceConductanceConverter)
    assert (
        crossbar.get_preset("reram_cmo", g_converter="single_pair").noise_model.g_converter.__class__.__name__
        == "SinglePairConductanceConverter"
    )


def test_fault_profile_from_the_literature_applies_to_any_preset():
    for name in crossbar.list_presets():
        p = crossbar.get_preset(name, faults="chen2015")
        assert (p.p_sa0, p.p_sa1) == (0.0904, 0.0175)
    p = crossbar.get_preset("pcm", faults="chen2015").with_overrides(p_sa0=0.01)
    assert (p.p_sa0, p.p_sa1, p.faults) == (0.01, 0.0, None)


def test_custom_presets_from_plain_mappings():
    p = crossbar.make_preset({"base": "pcm", "name": "my_pcm", "g_max": 30.0, "faults": "chen2015"})
    assert p.name == "my_pcm" and p.noise == "pcm" and p.resolved_g_max == 30.0 and p.p_sa0 > 0
    q = crossbar.make_preset({"noise": "lognormal", "sigma": 0.3, "out_noise": 0.02, "out_bound": 10})
    assert q.noise_model.sigma == 0.3 and not Periphery(q.periphery).perfect
    # named after a built-in preset, with neither base nor noise: that preset, changed
    r = crossbar.make_preset({"name": "reram_cmo", "p_sa0": 0.02})
    assert r == crossbar.get_preset("reram_cmo", p_sa0=0.02) and r.name == "reram_cmo"
    crossbar.register_preset(p)
    try:
        assert crossbar.get_preset("my_pcm") == p
        assert "my_pcm" in crossbar.list_presets()
    finally:
        crossbar.catalog._PRESETS.pop("my_pcm")


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: crossbar.get_preset("rram"), r"unknown preset 'rram'; valid presets: ideal, isaac, lognormal, pcm"),
        (lambda: crossbar.get_preset("pcm", p_sa0=1.5), r"p_sa0.*less than or equal to 1"),
        (lambda: crossbar.get_preset("pcm", p_sa1=-0.1), r"p_sa1.*greater than or equal to 0"),
        (lambda: crossbar.get_preset("pcm", p_sa0=0.7, p_sa1=0.4), r"p_sa0 \+ p_sa1 = 1.1 exceeds 1"),
        (lambda: crossbar.get_preset("pcm", g_min=30.0), r"g_min \(30 uS\) must be smaller than g_max \(25 uS\)"),
        (lambda: crossbar.get_preset("pcm", g_max=-1.0), r"g_max.*greater than 0"),
        (lambda: crossbar.get_preset("pcm", gmax=3.0), r"unknown parameter 'gmax' \(did you mean 'g_max'\?\); "
         r"allowed: physics, g_max"),
        (lambda: crossbar.get_preset("pcm", sigma=0.3), r"sigma does not apply to physics='pcm'; "
         r"its parameters are: prog_noise_scale"),
        (lambda: crossbar.get_preset("pcm", faults="nope"), r"unknown fault profile 'nope'; known: chen2015"),
        (lambda: crossbar.get_preset("pcm", g_converter="dual_pair"), r"needs f_lst"),
        (lambda: crossbar.get_preset("pcm", inp_res=0.01), r"inp_res > 0 needs inp_bound > 0"),
        (lambda: crossbar.make_preset({"g_max": 3}), r"needs 'base'"),
    ],
)
def test_bad_preset_parameters_get_one_clear_line(call, match):
    with pytest.raises(ValueError, match=match) as info:
        call()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "preset, t, match",
    [
        ("pcm", -1.0, r"t_inference must be a finite time >= 0 s"),
        ("pcm", float("nan"), r"t_inference must be a finite time >= 0 s"),
        ("pcm", "1 parsec", r"t_inference: '1 parsec' is not a duration; use seconds or a number with one of s, min"),
        ("pcm", [1.0], r"t_inference must be a number of seconds or a duration such as '1d'"),
        ("reram_wan2022", 3600.0, r"only defined at t_inference = 1 s, 1 day, 2 days; got 3600 s"),
        ("reram_wan2022", 0.0, r"only defined at t_inference = 1 s, 1 day, 2 days"),
        ("reram_wan2022", 86400.5, r"only defined at"),
        # aihwkit's CMO read noise is sqrt(log((t + t_read) / (2 t_read))): NaN below t_read
        ("reram_cmo", 1e-7, r"'reram_cmo' is defined at t_inference = 0 s \(programming only\) and from its read "
                            r"time t_read = 1e-06 s on, not in between; got 1e-07 s"),
    ],
)
def test_bad_times_are_rejected_without_rounding(preset, t, match):
    with pytest.raises(ValueError, match=match):
        crossbar.sample_weights(torch.ones(3, 3), preset, t, 2)


def test_durations_are_times_as_scenarios_write_them():
    w = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    for text, seconds in (("1d", 86400.0), ("1 day", 86400.0), ("30min", 1800.0), ("2 days", 2 * 86400.0)):
        assert crossbar.get_preset("pcm").check_time(text) == seconds
        assert torch.equal(
            crossbar.sample_weights(w, "pcm", text, 2, seed=1), crossbar.sample_weights(w, "pcm", seconds, 2, seed=1)
        )


def test_cmo_at_zero_and_from_its_read_time_gives_finite_weights():
    for t in (0.0, 1e-6, 1.0):
        assert torch.isfinite(crossbar.sample_weights(torch.randn(4, 4), "reram_cmo", t, 3)).all()


def test_wan2022_accepts_exactly_its_defined_times():
    for t in (1, 86400, 2 * 86400):
        assert crossbar.sample_weights(torch.ones(3, 3), "reram_wan2022", t, 1).shape == (1, 3, 3)


@pytest.mark.parametrize("n_chips", [0, -3, 2.5, True, "4"])
def test_n_chips_must_be_a_positive_integer(n_chips):
    with pytest.raises(ValueError, match=r"n_chips must be an integer >= 1"):
        crossbar.sample_weights(torch.ones(3, 3), "ideal", 0.0, n_chips)


@pytest.mark.parametrize(
    "weight, match",
    [
        (torch.tensor([[1.0, float("nan")], [0.5, -0.5]]), r"weight holds 1 NaN or infinite value\(s\) of 4"),
        (torch.tensor([[1.0, float("inf")], [-float("inf"), -0.5]]), r"weight holds 2 NaN or infinite value\(s\) of 4"),
        (torch.ones(3, 3, dtype=torch.int64), r"weight must be a floating-point tensor, got torch.int64"),
        (torch.ones(0, 3), r"weight must be a non-empty tensor"),
        ([[1.0, 2.0]], r"weight must be a torch.Tensor, got list"),
    ],
)
def test_weights_a_crossbar_cannot_hold_are_refused(weight, match):
    with pytest.raises(ValueError, match=match):
        crossbar.sample_weights(weight, "pcm", 1.0, 2)
