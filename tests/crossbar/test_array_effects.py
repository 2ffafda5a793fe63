"""Array effects: IR drop, weight noise and output non-linearity against aihwkit's C++
tiles; conductance levels; device-to-device variation; correlated faults."""

import math

import pytest
import torch
from aihwkit.nn.conversion import convert_to_analog
from aihwkit.simulator.configs import InferenceRPUConfig
from aihwkit.simulator.parameters.enums import BoundManagementType, WeightClipType, WeightNoiseType
from scipy import stats

import crossbar
from crossbar.noise import IdealNoiseModel


def _cpp_layer(layer, max_in=512, **io):
    """aihwkit's analog layer on its C++ InferenceTile: ideal devices, no DAC/ADC, no
    output noise or bound, noise management ABS_MAX (its default), plus ``io``."""
    rpu = InferenceRPUConfig()
    rpu.noise_model = IdealNoiseModel()
    rpu.drift_compensation = None
    rpu.clip.type = WeightClipType.NONE
    rpu.mapping.weight_scaling_omega = 1.0
    rpu.mapping.max_input_size = max_in
    rpu.forward.inp_res = -1
    rpu.forward.out_res = -1
    rpu.forward.out_noise = 0.0
    rpu.forward.out_bound = -1
    rpu.forward.bound_management = BoundManagementType.NONE
    for name, value in io.items():
        setattr(rpu.forward, name, value)
    return convert_to_analog(layer, rpu).eval()


def _ours(layer, x, n_chips=1, seed=0, **overrides):
    preset = crossbar.get_preset("ideal", **overrides)
    with torch.no_grad():
        return crossbar.convert(layer, preset).program(n_chips, seed=seed).drift(0.0)(x)


LAYERS = [
    (lambda: torch.nn.Linear(50, 7, bias=False), (40, 50), 512),
    (lambda: torch.nn.Linear(50, 7, bias=False), (40, 50), 20),  # three tiles along the inputs
    (lambda: torch.nn.Conv2d(3, 5, 3, padding=1, bias=False), (4, 3, 9, 9), 512),
]


@pytest.mark.parametrize("make_layer, shape, max_in", LAYERS)
def test_ir_drop_equals_aihwkits_cpp_tile(make_layer, shape, max_in):
    torch.manual_seed(0)
    layer = make_layer()
    with torch.no_grad():
        layer.weight.div_(layer.weight.abs().max())  # one tile scale: aihwkit's omega = 1 is then ours
    x = torch.rand(shape) * 2 - 1
    io = dict(ir_drop=1.0, ir_drop_g_ratio=200.0)  # a strong drop, so that its shape is tested
    with torch.no_grad():
        theirs = _cpp_layer(layer, max_in, **io)(x)
        ideal = _cpp_layer(layer, max_in)(x)
    ours = _ours(layer, x, max_in=max_in, **io)[0]
    drop = (theirs - ideal).abs().max()
    assert drop > 0.05 * ideal.abs().max()  # the drop is there and large
    # equal up to float rounding; a 10 % wrong strength or a wrong sign is 10 % of drop off
    assert (ours - theirs).abs().max() < 1e-3 * drop
    # the first input of a tile sees no drop, the last the most (aihwkit's ordering)
    w = torch.zeros(1, 8)
    w[0, 0] = w[0, -1] = 1.0
    one = torch.nn.Linear(8, 1, bias=False)
    with torch.no_grad():
        one.weight.copy_(w)
    first, last = torch.eye(8)[[0]] * 1.0, torch.eye(8)[[-1]] * 1.0
    io = dict(ir_drop=1.0, ir_drop_g_ratio=1.0)
    assert _ours(one, first, **io)[0].item() == pytest.approx(1.0)
    assert _ours(one, last, **io)[0].item() < 1.0


def test_output_nonlinearity_equals_aihwkits_cpp_tile():
    torch.manual_seed(1)
    layer = torch.nn.Linear(30, 9, bias=False)
    with torch.no_grad():
        layer.weight.div_(layer.weight.abs().max())
    x = (torch.rand(60, 30) * 2 - 1) * 3
    io = dict(out_nonlinearity=2.0, slope_calibration=0.5, out_bound=12.0)
    with torch.no_grad():
        theirs = _cpp_layer(layer, **io)(x)
        ideal = layer(x)
    ours = _ours(layer, x, bound_management="none", **io)[0]
    assert (theirs.abs() >= 12.0).any()  # some clip at the bound, after the non-linearity
    assert (theirs - ideal).abs().max() > 0.05 * ideal.abs().max()
    assert (ours - theirs).abs().max() < 1e-4 * (theirs - ideal).abs().max() + 1e-6


@pytest.mark.parametrize("kind", ["additive_constant", "pcm_read"])
def test_weight_noise_has_the_distribution_of_aihwkits_cpp_tile(kind):
    """aihwkit's C++ generator cannot be seeded from Python, so its side is a fresh draw
    each run: the tolerances (6 standard errors, KS p > 1e-6) make a false alarm
    negligible, and at 24,000 values a 10 % wrong strength is 20 standard errors off."""
    gen = torch.Generator().manual_seed(2)
    layer = torch.nn.Linear(40, 8, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.rand(8, 40, generator=gen) * 2 - 1)
        layer.weight.div_(layer.weight.abs().max())
    x = torch.rand(3000, 40, generator=gen) * 2 - 1
    w_noise = 0.05
    with torch.no_grad():
        theirs = _cpp_layer(layer, w_noise=w_noise, w_noise_type=WeightNoiseType[kind.upper()])(x)
        ideal = layer(x)
    ours = _ours(layer, x, w_noise=w_noise, w_noise_type=kind)[0]
    scale = x.abs().amax(-1, keepdim=True)  # noise management: the noise acts on x / max|x|
    xn = x / scale
    if kind == "additive_constant":
        std = w_noise * xn.norm(dim=-1, keepdim=True) * scale
    else:
        std = w_noise * (xn * xn @ layer.weight.detach().abs().T).sqrt() * scale
    r_ours = ((ours - ideal) / std).flatten().double()
    r_theirs = ((theirs - ideal) / std).flatten().double()
    n = r_ours.numel()
    for r in (r_ours, r_theirs):
        assert abs(r.mean().item()) < 6 / math.sqrt(n)
        assert abs(r.std().item() - 1.0) < 6 / math.sqrt(2 * (n - 1))
    assert stats.ks_2samp(r_ours.numpy(), r_theirs.numpy()).pvalue > 1e-6
    # drawn afresh for every vector and independently for each output
    assert abs(torch.corrcoef(torch.stack([r_ours[0::8], r_ours[1::8]]))[0, 1]) < 6 / math.sqrt(n / 8)


def test_line_effects_fixed_per_chip_and_weight_noise_fresh_per_time():
    layer = torch.nn.Linear(20, 6)
    x = torch.randn(10, 20)
    preset = crossbar.get_preset("ideal", out_nonlinearity=1.0, out_nonlinearity_std=0.5, out_bound=12.0)
    xm = crossbar.convert(layer, preset).program(4, seed=3)
    n_i = xm.crossbar_layers[0]._nonlinearity[0][0]
    assert n_i.shape == (4, 6) and len(set(n_i.flatten().tolist())) == 24  # per chip and output line
    with torch.no_grad():
        a, b = xm.drift(1.0)(x), xm.drift(1e6)(x)
    assert torch.equal(a, b)  # time-independent, fixed at programming
    two = crossbar.convert(layer, preset).program(2, seed=3, first_chip=2)
    assert torch.equal(two.crossbar_layers[0]._nonlinearity[0][0], n_i[2:])  # chip identity
    noisy = crossbar.get_preset("ideal", w_noise=0.1, w_noise_type="additive_constant")
    xm = crossbar.convert(layer, noisy).program(2, seed=3)
    with torch.no_grad():
        a, again, b = xm.drift(1.0)(x), xm.drift(1.0)(x), xm.drift(2.0)(x)
    assert torch.equal(a, again) and not torch.equal(a, b)
    assert not torch.equal(a[0], a[1])


# ------------------------------------------------------------------ levels


@pytest.mark.parametrize("converter", [{}, {"g_converter": "single_device"}, {"g_min": 2.0, "g_max": 40.0}])
def test_levels_round_targets_to_the_grid(converter):
    w = torch.randn(30, 70, generator=torch.Generator().manual_seed(4))
    n = 9
    preset = crossbar.get_preset("ideal", levels=n, max_in=32, **converter)
    array = crossbar.program(w, preset, n_chips=2)
    g_min, g_max = preset.resolved_g_min, preset.resolved_g_max
    grid = torch.linspace(g_min, g_max, n, dtype=torch.float64)
    g = array.conductances(10.0)
    assert torch.all((g.unsqueeze(-1) - grid).abs().amin(-1) < 1e-9 * g_max)
    got = crossbar.sample_weights(w, preset, 1.0, 1)[0].double()
    expected = torch.empty_like(got)
    for o0, o1, i0, i1 in array.tiles:  # each tile has its own scale
        block = w[o0:o1, i0:i1].double()
        if converter.get("g_converter") == "single_device":  # [w_min, w_max] onto [g_min, g_max]
            lo, hi = block.min(), block.max()
            expected[o0:o1, i0:i1] = lo + torch.round((block - lo) / (hi - lo) * (n - 1)) / (n - 1) * (hi - lo)
        else:
            m = block.abs().max()
            expected[o0:o1, i0:i1] = torch.round(block / m * (n - 1)) / (n - 1) * m
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
    assert not torch.allclose(got, w.double(), atol=1e-3)


def test_a_list_of_levels_is_the_nearest_level():
    levels = [0.0, 1.0, 4.0, 10.0, 25.0]
    w = torch.linspace(-1, 1, 101).view(1, -1)
    array = crossbar.program(w, crossbar.get_preset("ideal", levels=levels), 1)
    g = array.conductances(0.0)[0]
    target = crossbar.program(w, "ideal", 1).g_target
    grid = torch.tensor(levels, dtype=torch.float64)
    nearest = grid[(target.unsqueeze(-1) - grid).abs().argmin(-1)]
    assert torch.equal(g, nearest)


def test_levels_come_before_programming_noise():
    w = torch.randn(40, 40, generator=torch.Generator().manual_seed(5))
    coarse = crossbar.get_preset("pcm", levels=4)
    g = crossbar.program(w, coarse, 1).conductances(1.0)
    assert g.unique().numel() > 100  # noise spreads the 4 levels
    torch.testing.assert_close(crossbar.program(w, coarse, 1).g_target.unique(),
                               torch.linspace(0, 25, 4, dtype=torch.float32))


# ------------------------------------------------------------------ variation


def test_device_variation_has_its_spread_fixed_per_chip_and_independent_across_chips():
    w = torch.ones(64, 64)  # every G+ device at g_max, every G- at g_min
    v_max, v_min = 0.1, 0.2
    preset = crossbar.get_preset("ideal", g_min=2.0, g_max=40.0, g_max_variation=v_max, g_min_variation=v_min)
    array = crossbar.program(w, preset, n_chips=3, seed=6)
    g = array.conductances(1.0)
    rel_max = g[:, 0] / 40.0 - 1.0
    rel_min = g[:, 1] / 2.0 - 1.0
    n = rel_max[0].numel()
    for rel, v in ((rel_max, v_max), (rel_min, v_min)):
        for c in range(3):
            assert abs(rel[c].mean().item()) < 6 * v / math.sqrt(n)
            assert abs(rel[c].std().item() - v) < 6 * v / math.sqrt(2 * (n - 1))
        r = torch.corrcoef(rel.flatten(1))
        assert (r - torch.eye(3)).abs().max() < 6 / math.sqrt(n)
    assert torch.equal(g, array.conductances(1e7))  # ideal devices: the range alone, at any time
    again = crossbar.program(w, preset, n_chips=1, seed=6, first_chip=2).conductances(5.0)
    assert torch.equal(again[0], g[2])  # chip identity
    # a weight's conductance is the same fraction of its device's own range
    half = crossbar.program(w * 0.5 - torch.eye(64) * 0.25, preset, n_chips=1, seed=6)
    lo, hi = half.g_range
    frac = (half.conductances(0.0) - lo) / (hi - lo)
    nominal = (half.g_target - 2.0) / 38.0
    torch.testing.assert_close(frac[0], nominal, rtol=1e-9, atol=1e-9)


def test_variation_moves_stuck_devices_with_their_range():
    w = torch.randn(20, 20)
    preset = crossbar.get_preset("ideal", g_min=1.0, g_max_variation=0.1, g_min_variation=0.1, p_sa0=0.2, p_sa1=0.2)
    array = crossbar.program(w, preset, 2, seed=1)
    lo, hi = array.g_range
    g = array.conductances(3.0)
    assert torch.equal(g[array.stuck == 1], lo[array.stuck == 1])
    assert torch.equal(g[array.stuck == 2], hi[array.stuck == 2])


# ------------------------------------------------------------------ correlated faults


def test_failed_rows_and_columns_have_their_probability_and_are_stuck_whole():
    w = torch.randn(60, 90, generator=torch.Generator().manual_seed(7))
    p_row, p_col = 0.1, 0.05
    preset = crossbar.get_preset("ideal", p_row_fault=p_row, p_col_fault=p_col, fault_sa1_share=0.5,
                                 max_in=30, max_out=20)
    array = crossbar.program(w, preset, n_chips=20, seed=8)
    stuck = array.stuck  # (C, D, out, in)
    assert stuck is not None
    rows, cols = [], []
    for o0, o1, i0, i1 in array.tiles:
        block = stuck[:, :, o0:o1, i0:i1] > 0
        cols.append(block.all(-1).flatten(1))  # (C, D * n_out): a device column stuck in every cell
        rows.append(block.flatten(1, 2).all(1))  # (C, n_in)
    row_share = torch.cat(rows, 1).double()
    col_share = torch.cat(cols, 1).double()
    for share, p in ((row_share, p_row), (col_share, p_col)):
        n = share.numel()
        # a column also counts as failed when every row crossing it failed: p_row^n_out, negligible
        assert abs(share.mean().item() - p) < 5 * math.sqrt(p * (1 - p) / n)
    # a failed row is stuck in every cell, one state per row, both states present
    row_codes = []
    for o0, o1, i0, i1 in array.tiles:
        block = stuck[:, :, o0:o1, i0:i1].flatten(1, 2)  # (C, D * n_out, n_in)
        failed = (block > 0).all(1)
        for c, i in failed.nonzero().tolist():
            assert block[c, :, i].unique().numel() == 1
            row_codes.append(block[c, 0, i].item())
    assert set(row_codes) == {1, 2}
    g = array.conductances(1.0)
    assert torch.equal(g[stuck == 2], torch.full_like(g[stuck == 2], 25.0))
    assert torch.equal(stuck, crossbar.program(w, preset, 20, seed=8).stuck)  # from the seed
    again = crossbar.program(w, preset, 1, seed=8, first_chip=5)
    assert torch.equal(again.stuck[0], stuck[5])  # chip identity


def test_fault_maps_stay_fixed_over_time_on_drifting_devices():
    w = torch.randn(30, 30)
    preset = crossbar.get_preset("pcm", p_row_fault=0.1, p_col_fault=0.1, p_cluster=0.01)
    array = crossbar.program(w, preset, 2, seed=2)
    lo = array.stuck == 1
    for t in (1.0, 86400.0, 3e7):
        g = array.conductances(t)
        assert torch.all(g[lo] == 0.0) and torch.all(g[array.stuck == 2] == 25.0)


def test_clusters_cover_the_cells_around_their_seeds():
    seeds = torch.zeros(9, 9, dtype=torch.int8)
    seeds[4, 4] = 2
    grown = crossbar.arrays.cluster_cells(seeds, 1.5)
    assert grown.sum().item() == 2 * 9  # a 3x3 square: every cell within 1.5
    assert crossbar.arrays.cluster_cells(seeds, 1.0).sum().item() == 2 * 5  # a plus
    assert crossbar.arrays.cluster_cells(seeds, 0.0).sum().item() == 2  # the seed alone
    # in a large tile, the share of stuck cells away from the edges is 1 - (1 - p)^cells
    p, radius = 0.004, 2.0
    preset = crossbar.get_preset("ideal", p_cluster=p, cluster_radius=radius, max_in=0, max_out=0)
    array = crossbar.program(torch.randn(100, 200), preset, 4, seed=3)
    layout = array.stuck.permute(0, 3, 2, 1).reshape(4, 200, 200)  # inputs x (outputs x devices)
    inner = (layout[:, 2:-2, 2:-2] > 0).double()
    expected = 1 - (1 - p) ** 13  # cells within radius 2: 13
    n_eff = inner.numel() / 13  # a cluster's cells are not independent
    assert abs(inner.mean().item() - expected) < 6 * math.sqrt(expected * (1 - expected) / n_eff)


def _clusters_by_painting(seeds, radius):
    """The definition: paint every cell within radius of each seed, stuck at g_max last."""
    grown = torch.zeros_like(seeds)
    rows, cols = torch.meshgrid(torch.arange(seeds.shape[0]), torch.arange(seeds.shape[1]), indexing="ij")
    for code in (1, 2):
        for y, x in (seeds == code).nonzero().tolist():
            grown[(rows - y) ** 2 + (cols - x) ** 2 <= radius * radius + 1e-9] = code
    return grown


def test_clusters_equal_their_definition_at_any_radius_and_a_huge_one_covers_the_tile():
    g = torch.Generator().manual_seed(1)
    for _ in range(10):
        h, w = torch.randint(1, 40, (2,), generator=g).tolist()
        u = torch.rand(h, w, generator=g)
        seeds = (u < 0.02).to(torch.int8) + 2 * ((u > 0.5) & (u < 0.52)).to(torch.int8)
        for radius in (0.0, 1.0, 1.5, 2.3, 4.99, 5.0, 11.7):
            assert torch.equal(crossbar.arrays.cluster_cells(seeds, radius), _clusters_by_painting(seeds, radius))
    # a radius far past the tile (a disc of 2e6 cells across: terabytes by convolution) covers each seeded tile
    preset = crossbar.get_preset("ideal", p_cluster=5e-4, cluster_radius=1e6, max_in=32, max_out=32)
    array = crossbar.program(torch.randn(64, 64), preset, 2, seed=0)
    layout = (array.stuck > 0).permute(0, 3, 2, 1)  # chips x inputs x outputs x devices
    shares = [layout[:, i:i + 32, j:j + 32].flatten(1).float().mean(1) for i in (0, 32) for j in (0, 32)]
    assert set(torch.cat(shares).tolist()) == {0.0, 1.0}  # a tile is wholly stuck or has no seed


def test_switching_correlated_faults_on_keeps_the_independent_fault_map():
    w = torch.randn(40, 40)
    base = crossbar.program(w, crossbar.get_preset("ideal", p_sa0=0.1), 2, seed=4).stuck
    both = crossbar.program(w, crossbar.get_preset("ideal", p_sa0=0.1, p_row_fault=0.1), 2, seed=4).stuck
    rows = crossbar.program(w, crossbar.get_preset("ideal", p_row_fault=0.1), 2, seed=4).stuck
    assert torch.equal(torch.where(rows > 0, rows, base), both)


# ------------------------------------------------------------------ off is as before


EFFECTS = [
    {"ir_drop": 0.5, "ir_drop_g_ratio": 100.0},  # a strong one: a tiny array barely drops
    {"w_noise": 0.02, "w_noise_type": "pcm_read"},
    {"out_nonlinearity": 0.5},
    {"levels": 16},
    {"g_max_variation": 0.05},
    {"p_row_fault": 0.05},
    {"p_col_fault": 0.1},
    {"p_cluster": 0.01},
]


def test_effects_off_leave_the_preset_and_its_numbers_as_they_were():
    """A preset with every effect at its off value is the preset (its record too: old run
    folders resume), and gives the same numbers bit for bit."""
    off = dict(levels=None, g_max_variation=0.0, g_min_variation=0.0, p_row_fault=0.0, p_col_fault=0.0,
               p_cluster=0.0, ir_drop=0.0, w_noise=0.0, out_nonlinearity=0.0)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(3 * 6 * 6, 5))
    x = torch.randn(16, 1, 8, 8)
    for name in ("pcm", "reram_cmo"):
        base = crossbar.get_preset(name, **crossbar.AIHWKIT_PERIPHERY)
        same = crossbar.get_preset(name, **crossbar.AIHWKIT_PERIPHERY, **off)
        assert same.full_spec() == base.full_spec()
        assert not set(crossbar.get_preset(name).full_spec()) & set(crossbar.presets.ARRAY_EFFECTS)
        with torch.no_grad():
            a = crossbar.convert(model, base).program(3, seed=1).drift(86400.0)(x)
            b = crossbar.convert(model, same).program(3, seed=1).drift(86400.0)(x)
        assert torch.equal(a, b)
        for effect in EFFECTS:  # and each effect on really changes them
            on = crossbar.get_preset(name, **crossbar.AIHWKIT_PERIPHERY, **effect)
            with torch.no_grad():
                c = crossbar.convert(model, on).program(3, seed=1).drift(86400.0)(x)
            assert not torch.equal(a, c), effect


@pytest.mark.parametrize("effect", EFFECTS)
def test_every_effect_runs_through_evaluate_in_both_strategies(effect):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(3 * 6 * 6, 5)).eval()
    x = torch.randn(24, 1, 8, 8)
    y = model(x).argmax(-1)
    preset = crossbar.get_preset("reram_cmo", **effect)
    loop = crossbar.evaluate(model, (x, y), preset, ["1s", "1d"], n_chips=3, strategy="loop", seed=2)
    fold = crossbar.evaluate(model, (x, y), preset, ["1s", "1d"], n_chips=3, strategy="fold", seed=2)
    assert loop.shape == (2, 3) and (loop == fold).all()


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "overrides, words",
    [
        ({"levels": 1}, "levels must be an integer >= 2"),
        ({"levels": [0.0, 30.0]}, "outside [g_min, g_max]"),
        ({"levels": [0.0, 10.0]}, "must hold g_min"),
        ({"levels": [0.0, 0.0, 25.0]}, "at least 2 different"),
        ({"ir_drop": -0.1}, "ir_drop"),
        ({"ir_drop_g_ratio": 0}, "ir_drop_g_ratio"),
        ({"w_noise": -1}, "w_noise"),
        ({"w_noise": 0.1}, "needs w_noise_type"),
        ({"w_noise": 0.1, "w_noise_type": "gaussian"}, "w_noise_type"),
        ({"out_nonlinearity_std": 0.1}, "set out_nonlinearity > 0"),
        ({"g_max_variation": 0.34}, "g_max (1 - 3 g_max_variation) > g_min"),
        ({"g_min_variation": 0.1}, "g_min_variation is relative to g_min"),
        ({"g_max_variation": -0.1}, "g_max_variation"),
        ({"p_row_fault": 1.2}, "p_row_fault"),
        ({"p_col_fault": -0.1}, "p_col_fault"),
        ({"p_cluster": 2}, "p_cluster"),
        ({"cluster_radius": -1}, "cluster_radius"),
        ({"fault_sa1_share": 1.5}, "fault_sa1_share"),
    ],
)
def test_bad_array_effects_are_one_line_naming_the_parameter(overrides, words):
    with pytest.raises(ValueError) as err:
        crossbar.get_preset("pcm", **overrides)
    text = str(err.value)
    assert words in text and "\n" not in text
    assert text.startswith("preset 'pcm'")


def test_variation_check_uses_the_presets_own_range():
    crossbar.get_preset("reram_cmo", g_max_variation=0.2, g_min_variation=0.2)  # 88 (1 - 0.6) > 9 (1 + 0.6)
    with pytest.raises(ValueError, match="g_max"):
        crossbar.get_preset("reram_cmo", g_max_variation=0.3, g_min_variation=0.3)  # 88 * 0.1 < 9 * 1.9
