"""Calibration: per-column drift compensation against aihwkit's pipeline, column gain and
offset calibration through the noisy periphery, input ranges from a percentile, and
every calibration off leaving the simulation as it was."""

import math

import numpy as np
import pytest
import torch
from torch import nn

import crossbar

N_CHIPS = 24


@pytest.mark.parametrize("compensation", ["global", "per_column"])
def test_drift_compensation_matches_aihwkits_pipeline(trained_mlp, digits_split, compensation):
    """The accuracy over chips one day after programming equals aihwkit's with the same
    compensation: means within 4 standard errors of their difference, spreads within 2x."""
    _, (x, y) = digits_split
    # weaker devices make the compensation matter: a 5x drift and programming noise
    preset = crossbar.get_preset("pcm", drift_compensation=compensation, drift_scale=5.0, prog_noise_scale=3.0)
    ours = crossbar.evaluate(trained_mlp, (x, y), preset, [86400.0], N_CHIPS, seed=1)[0]
    theirs = _aihwkit_accuracies(trained_mlp, x, y, compensation, preset.noise_model)
    se = math.hypot(ours.std(ddof=1), theirs.std(ddof=1)) / math.sqrt(N_CHIPS)
    assert abs(ours.mean() - theirs.mean()) < 4 * se + 1e-9, (ours.mean(), theirs.mean(), se)
    assert 0.5 < ours.std() / theirs.std() < 2.0, (ours.std(), theirs.std())
    off = crossbar.evaluate(trained_mlp, (x, y), preset.with_overrides(drift_compensation="none"), [86400.0],
                            N_CHIPS, seed=1)[0]
    assert ours.mean() > off.mean() + 4 * math.hypot(ours.std(ddof=1), off.std(ddof=1)) / math.sqrt(N_CHIPS)


def _aihwkit_accuracies(model, x, y, compensation, noise_model):
    """aihwkit's own pipeline: convert_to_analog, then per chip program, drift a day, score."""
    from aihwkit.inference.compensation.drift import GlobalDriftCompensation, PerColumnDriftCompensation
    from aihwkit.nn.conversion import convert_to_analog
    from aihwkit.simulator.configs import InferenceRPUConfig

    rpu = InferenceRPUConfig()
    rpu.noise_model = noise_model
    rpu.forward.is_perfect = True
    rpu.mapping.weight_scaling_omega = 1.0
    rpu.drift_compensation = {"global": GlobalDriftCompensation, "per_column": PerColumnDriftCompensation}[
        compensation]()
    analog = convert_to_analog(model, rpu).eval()
    accs = []
    with torch.no_grad():
        for chip in range(N_CHIPS):
            torch.manual_seed(100 + chip)
            analog.program_analog_weights()
            analog.drift_analog_weights(86400.0)
            accs.append(float((analog(x).argmax(-1) == y).double().mean()))
    return np.array(accs)


def _offset_layer(out_noise: float, input_sum: bool = False):
    """A linear layer whose last input is always 1, on exact devices with output noise
    and no converters, and inputs whose largest |value| is that 1 (so the noise is
    ``out_noise`` times the tile's largest |weight| in output units)."""
    torch.manual_seed(3)
    layer = nn.Linear(17, 8, bias=False)
    preset = crossbar.get_preset("ideal", out_noise=out_noise, calibration="at_inference", calibration_samples=50,
                                 calibration_input_sum=input_sum)
    x = torch.cat([torch.rand(400, 16) * 2 - 1, torch.ones(400, 1)], 1)
    return layer, preset, x


def _inject_offsets(xmodel, seed: int) -> torch.Tensor:
    """Each chip's columns get an offset: the device of the constant input moved up (a
    conductance shift, as a drifting or mis-programmed device would), returned in output units."""
    layer = xmodel.crossbar_layers[0]
    array = layer.array
    g = array.g_programmed
    shift = torch.rand(g.shape[0], 8, generator=torch.Generator().manual_seed(seed)) * 5.0 + 2.0
    before = array.weights(None)[:, :, 16].clone()
    g[:, 0, :, 16] += shift.to(g.dtype)
    array.g_programmed = g  # pinned: the chips keep these conductances
    return (array.weights(None)[:, :, 16] - before).float()


@pytest.mark.parametrize("input_sum", [False, True])
def test_an_injected_column_offset_is_removed_exactly_without_noise(input_sum):
    layer, preset, x = _offset_layer(0.0, input_sum)
    xmodel = crossbar.convert(layer, preset).calibrate_with(x[:50]).program(6, seed=0)
    offset = _inject_offsets(xmodel, 0)
    assert offset.abs().min() > 0.005
    xmodel.drift(1.0)
    got = xmodel(x[50:])
    want = layer(x[50:]).detach()
    torch.testing.assert_close(got, want.expand_as(got), atol=2e-5, rtol=1e-5)
    cal = xmodel.crossbar_layers[0]
    torch.testing.assert_close(cal.correction.offset, -offset, atol=2e-5, rtol=1e-5)


def test_an_injected_column_offset_is_removed_to_within_the_calibrations_noise():
    """The fitted offset misses the injected one by the read noise averaged over the
    reference reads: the least-squares intercept's standard error
    s sqrt(1/N + m^2 / (N v)) (m, v: mean and variance of the column's output over the N
    reference inputs). Over 64 chips x 8 columns the standardised misses have mean 0 and
    standard deviation 1, within 4 standard errors of each (1/sqrt(512) and 1/sqrt(1024))."""
    sigma = 0.05
    layer, preset, x = _offset_layer(sigma)
    n_ref = preset.calibration_samples
    xmodel = crossbar.convert(layer, preset).calibrate_with(x[:n_ref]).program(64, seed=0)
    offset = _inject_offsets(xmodel, 1)
    xmodel.drift(1.0)
    cal = xmodel.crossbar_layers[0]
    miss = (cal.correction.offset + offset * cal.correction.gain).double()  # the offset left after the correction
    outputs = (x[:n_ref] @ layer.weight.T).double()  # what the columns read, without noise (gain ~ 1)
    s = sigma * float(layer.weight.detach().abs().max())
    m, v = outputs.mean(0), outputs.var(0, unbiased=False)
    se = s * torch.sqrt(1 / n_ref + m**2 / (n_ref * v))
    z = (miss / se).flatten()
    assert abs(float(z.mean())) < 4 / math.sqrt(z.numel()), float(z.mean())
    assert abs(float(z.std()) - 1) < 4 / math.sqrt(2 * z.numel()), float(z.std())
    # more reference reads, a smaller miss
    more = preset.with_overrides(calibration_samples=200)
    xmore = crossbar.convert(layer, more).calibrate_with(x[:200]).program(64, seed=0)
    _inject_offsets(xmore, 1)
    xmore.drift(1.0)
    more_fit = xmore.crossbar_layers[0].correction
    miss_more = (more_fit.offset + offset * more_fit.gain).double()
    assert float(miss_more.std()) < 0.7 * float(miss.std())


def test_a_shift_common_to_a_columns_devices_is_undone_by_the_input_sum_term():
    """CMO ReRAM's relaxation moves every device of a single-device mapping by about the
    same conductance: each weight of a column by the same amount, an error of that amount
    times the input's sum, which gain and offset cannot undo and the input-sum term does."""
    torch.manual_seed(6)
    layer = nn.Linear(24, 6, bias=False)
    x = torch.rand(300, 24)  # inputs >= 0 (after a ReLU): sums that vary from input to input
    errors = {}
    for input_sum in (False, True):
        preset = crossbar.get_preset("ideal", g_converter="single_device", g_min=5.0, calibration="at_inference",
                                     calibration_input_sum=input_sum, calibration_samples=100)
        xmodel = crossbar.convert(layer, preset).calibrate_with(x[:100]).program(3, seed=0)
        array = xmodel.crossbar_layers[0].array
        array.g_programmed -= torch.linspace(1.0, 3.0, 6, dtype=array.g_programmed.dtype).view(1, 1, 6, 1)
        errors[input_sum] = float((xmodel.drift(1.0)(x[100:]) - layer(x[100:]).detach()).abs().max())
    assert errors[True] < 1e-4 < 0.05 < errors[False], errors


def test_input_ranges_are_the_percentile_of_each_layers_inputs_and_inputs_clip_there():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 5)).eval()
    x = torch.randn(300, 12) * 2
    preset = crossbar.get_preset("ideal", inp_res=1 / (2**16 - 2), inp_bound=1.0, input_range_percentile=90.0,
                                 calibration_samples=100)
    xmodel = crossbar.convert(model, preset).calibrate_with(x)
    first, second = xmodel.crossbar_layers
    hidden = torch.relu(model[0](x[:100])).detach()
    assert first.input_range == pytest.approx(float(np.percentile(x[:100].abs().numpy(), 90)), rel=1e-6)
    assert second.input_range == pytest.approx(float(np.percentile(hidden.abs().numpy(), 90)), rel=1e-6)
    # the first layer's output is its exact product with the inputs clipped at the range
    single = crossbar.convert(model[0], preset).calibrate_with(x)
    single.program(2).drift(1.0)
    r = single.crossbar_layers[0].input_range
    got = single(x[100:])
    want = model[0](x[100:].clamp(-r, r)).detach()
    step = r / (2**15 - 1)  # one DAC code: 2 x the range / (2**16 - 2)
    bound = float(model[0].weight.abs().sum(1).max()) * step / 2 + 1e-4
    assert float((got - want).abs().max()) <= bound
    assert float((got - model[0](x[100:]).detach()).abs().max()) > 10 * bound  # it did clip


@pytest.mark.parametrize("overrides", [
    dict(calibration="at_inference"),
    dict(calibration="at_programming", drift_compensation="per_column"),
    dict(calibration="at_inference", input_range_percentile=99.0, drift_compensation="per_column", max_in=20,
         max_out=4),
])
def test_calibrated_chips_are_the_same_chips_whatever_the_strategy_and_chunking(overrides):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(4 * 4 * 4, 10)).eval()
    x = torch.randn(40, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    y = model(x).argmax(-1)
    y[:10] = (y[:10] + 1) % 10
    preset = crossbar.get_preset("reram_cmo", **crossbar.AIHWKIT_PERIPHERY, **overrides)
    cal = torch.randn(64, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    runs = [crossbar.evaluate(model, (x, y), preset, [1.0, 86400.0], 5, seed=2, strategy=strategy, chunk_size=chunk,
                              batch_size=16, calibration_data=cal)
            for strategy, chunk in (("loop", None), ("fold", None), ("fold", 2), ("loop", 3))]
    for other in runs[1:]:
        np.testing.assert_array_equal(runs[0], other)
    assert len(np.unique(runs[0])) > 1


def test_each_calibration_off_leaves_records_and_outputs_as_they_were(trained_mlp, digits_split):
    for name in crossbar.list_presets():
        spec = crossbar.get_preset(name).full_spec()
        assert not {"calibration", "calibration_samples", "input_range_percentile", "calibration_period"} & set(spec)
    assert crossbar.get_preset("pcm").full_spec()["drift_compensation"] is True  # as records have always said
    _, (x, y) = digits_split
    preset = crossbar.get_preset("pcm", **crossbar.AIHWKIT_PERIPHERY)
    explicit = preset.with_overrides(calibration="none", calibration_samples=7, calibration_period=3.0)
    plain = crossbar.evaluate(trained_mlp, (x, y), preset, [1.0, 86400.0], 4, seed=3)
    with_data = crossbar.evaluate(trained_mlp, (x, y), explicit, [1.0, 86400.0], 4, seed=3, calibration_data=x)
    np.testing.assert_array_equal(plain, with_data)
    on = crossbar.get_preset("pcm", **crossbar.AIHWKIT_PERIPHERY, calibration="at_inference")
    assert on.full_spec()["calibration"] == "at_inference" and on.full_spec()["calibration_samples"] == 32


@pytest.mark.parametrize("overrides, match", [
    (dict(calibration="sometimes"), r"calibration: Input should be 'none', 'at_programming' or 'at_inference'"),
    (dict(drift_compensation="per_row"), r"drift_compensation"),
    (dict(input_range_percentile=0.0, **crossbar.AIHWKIT_PERIPHERY), r"input_range_percentile: .*greater than 0"),
    (dict(input_range_percentile=100.5, **crossbar.AIHWKIT_PERIPHERY), r"input_range_percentile: .*less than or equal"),
    (dict(calibration="at_inference", calibration_samples=0), r"calibration_samples: .*greater than or equal to 1"),
    (dict(input_range_percentile=99.0), r"input_range_percentile = 99 sets the DAC's input range, but this preset "
                                        r"has no DAC"),
])
def test_bad_calibration_settings_get_one_line(overrides, match):
    with pytest.raises(ValueError, match=match) as err:
        crossbar.get_preset("pcm", **overrides)
    assert "\n" not in str(err.value)


def test_a_sliced_preset_refuses_calibration():
    with pytest.raises(ValueError, match=r"calibration = 'at_inference' does not apply to a sliced preset"):
        crossbar.get_preset("isaac", calibration="at_inference")


def test_calibration_without_calibration_data_is_refused_before_any_work(trained_mlp, digits_split):
    _, (x, y) = digits_split
    with pytest.raises(ValueError, match=r"calibrates .* pass calibration_data"):
        crossbar.evaluate(trained_mlp, (x, y), crossbar.get_preset("pcm", calibration="at_inference"), [1.0], 2)
    with pytest.raises(ValueError, match=r"calibration_data holds 10 input\(s\) but calibration_samples = 32"):
        crossbar.evaluate(trained_mlp, (x, y), crossbar.get_preset("pcm", calibration="at_inference"), [1.0], 2,
                          calibration_data=x[:10])


def test_the_cost_counts_each_calibrations_reads_and_corrections():
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)).eval()
    x = torch.rand(20, 64)
    chip = dict(crossbar.AIHWKIT_PERIPHERY, adc_bits=9, input_bits=7, read_time=1e-8, read_voltage=0.2, tech_node=32,
                max_in=40)
    off = crossbar.cost(model, crossbar.get_preset("reram_cmo", **chip), x)
    assert not {"reference reads", "column offsets", "input sums", "calibration reads"} & set(off.by_component())
    on = crossbar.cost(model, crossbar.get_preset("reram_cmo", **chip, drift_compensation="per_column",
                                                  calibration="at_inference", calibration_period=100.0), x)
    rows = {(r["layer"], r["component"]): r for r in on.rows}
    # the first layer: 64 inputs on two tile rows of 32, one vector an inference
    assert rows[("0", "reference reads")]["count"] == pytest.approx(64 / 100)
    assert rows[("0", "column offsets")]["count"] == pytest.approx(32)
    assert rows[("0", "input sums")]["count"] == pytest.approx(64)  # every input added once
    assert rows[("0", "input-sum terms")]["count"] == pytest.approx(32 * 2)  # each output, each of two splits
    assert rows[("2", "input-sum terms")]["count"] == pytest.approx(10)
    assert rows[("2", "calibration reads")]["count"] == pytest.approx(32 / 100)
    extra = sum(r["energy_j"] for r in on.rows if r["component"] in ("reference reads", "column offsets", "input sums",
                                                                       "input-sum terms", "calibration reads"))
    assert on.energy_j == pytest.approx(off.energy_j + extra, rel=1e-9)


@pytest.mark.parametrize("with_sums", [False, True])
def test_a_column_that_reads_one_value_keeps_gain_one_and_gets_the_offset(with_sums):
    from crossbar.calibration import column_fit

    g = torch.Generator().manual_seed(7)
    y = torch.randn(2, 500, 3, generator=g)
    y[:, :, 1] = 3.7  # a dead column: every vector reads the same
    target = 2 * y + 0.5
    target[:, :, 1] = torch.randn(2, 500, generator=g)
    sums = torch.zeros(2, 500, 1, 1) + 4.0 if with_sums else None  # sums that never change: no weight either
    gain, offset, coef = column_fit(y, target, sums)
    torch.testing.assert_close(gain[:, 0], torch.full((2,), 2.0))
    torch.testing.assert_close(offset[:, 0], torch.full((2,), 0.5), atol=1e-4, rtol=0)
    assert torch.equal(gain[:, 1], torch.ones(2))
    torch.testing.assert_close(offset[:, 1], target[:, :, 1].mean(1) - 3.7, atol=1e-4, rtol=0)
    if with_sums:
        assert float(coef.abs().max()) < 1e-3
