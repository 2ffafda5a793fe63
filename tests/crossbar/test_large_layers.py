"""Layers of real size: drawn tile by tile, the devices redrawn at each read, chip
identity, aihwkit's distributions at resnet18's layer sizes, and bounded memory."""

import copy
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from aihwkit.inference.noise.pcm import CustomDriftPCMLikeNoiseModel
from scipy import stats

import crossbar
import crossbar.arrays
from crossbar.arrays import DRAW_BLOCK, private_rng, seed_global
from crossbar.common import Stream, derive_seed
from crossbar.noise import Programming

DAY = 86400.0
EFFECTS = {
    "pcm": {},
    "reram_cmo": {},
    "reram_wan2022": {},
    "lognormal": {},
    "pcm faults": {"p_sa0": 0.02, "p_sa1": 0.01, "p_row_fault": 0.01, "p_col_fault": 0.01, "p_cluster": 0.001},
    "reram_cmo variation": {"g_max_variation": 0.1, "g_min_variation": 0.1},
}


def _preset(key: str) -> crossbar.Preset:
    return crossbar.get_preset(key.split()[0], **EFFECTS[key])


@pytest.fixture
def small_block(monkeypatch):
    """Layers above 2,000 weights drawn tile by tile, so that small tests cover the path
    of large layers (the real threshold is checked at its size below)."""
    monkeypatch.setattr(crossbar.arrays, "DRAW_BLOCK", 2000)


@pytest.mark.parametrize("key", list(EFFECTS))
def test_chip_k_of_a_tiled_layer_is_the_same_whatever_the_chips_and_threads(small_block, key):
    preset = _preset(key).with_overrides(max_in=32, max_out=16)
    w = torch.randn(40, 70, generator=torch.Generator().manual_seed(1))
    everything = crossbar.program(w, preset, 5, seed=9, layer=3)
    assert len(everything.blocks) == len(everything.tiles) == 9
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        part = crossbar.program(w, preset, 2, seed=9, first_chip=2, layer=3)
        for t in (None, DAY):
            assert torch.equal(part.weights(t), everything.weights(t)[2:4])
    finally:
        torch.set_num_threads(threads)
    # the same chip read twice is the same chip; another layer index is another chip
    assert torch.equal(everything.weights(DAY), everything.weights(DAY))
    other = crossbar.program(w, preset, 5, seed=9, layer=4)
    assert not torch.equal(other.weights(DAY), everything.weights(DAY))


def test_each_tile_of_a_large_layer_draws_from_its_own_stream(small_block):
    # two tiles holding the same weights: their devices' noise must differ
    w = torch.randn(64, 32).repeat(1, 2)
    array = crossbar.program(w, crossbar.get_preset("pcm", max_in=32), 1, seed=0)
    assert len(array.blocks) == 2
    g = array.weights(DAY)[0]
    assert not torch.equal(g[:, :32], g[:, 32:])
    assert float((g[:, :32] - g[:, 32:]).abs().mean()) > 1e-3


def test_a_layer_within_the_draw_block_draws_as_aihwkit_on_the_whole_layer():
    """Up to DRAW_BLOCK weights (every layer of the digits and MNIST networks) a chip is
    aihwkit's noise model applied once to the layer's targets with the chip's seed,
    whatever its tiles: the scheme every figure of the docs was measured with."""
    preset = crossbar.get_preset("pcm", max_in=32, max_out=16)
    w = torch.randn(40, 70)
    array = crossbar.program(w, preset, 3, seed=4, layer=2)
    assert len(array.tiles) == 9 and len(array.blocks) == 1
    model, target = preset.noise_model, array.g_target
    with private_rng(target.device):
        for k in range(3):
            seed_global(target.device, derive_seed(4, Stream.PROGRAM, 2, k))
            g = model.apply_programming_noise_to_conductance(target)
            nu = model.generate_drift_coefficients(target)
            assert torch.equal(array.g_programmed[k], g)
            seed_global(target.device, derive_seed(4, Stream.READ, 2, k, crossbar.common.time_key(DAY)))
            assert torch.equal(array.conductances(DAY)[k], model.apply_drift_noise_to_conductance(g, nu, DAY))


@pytest.mark.filterwarnings("ignore:invalid value encountered in log10")  # a CMO device read below 0, as aihwkit
@pytest.mark.parametrize("name, params", [
    ("pcm", {}), ("pcm", {"prog_noise_scale": 0.5, "drift_scale": 2.0, "read_noise_scale": 0.0}),
    ("pcm", {"prog_coeff": [0.1, 1.0, -0.5, 0.2]}),
    ("reram_cmo", {}), ("reram_cmo", {"prog_noise_scale": 0.5, "drift_scale": 2.0, "read_noise_scale": 3.0}),
    ("reram_cmo", {"acceptance_range": 2}),
])
def test_programming_and_reading_in_place_are_bit_for_bit_aihwkit(name, params):
    model = copy.deepcopy(crossbar.get_preset(name).noise_model)  # the built-in preset's own model stays as it is
    for key, value in params.items():
        setattr(model, key, value)
    target = torch.rand(2, 300, 200) * 25.0 if name == "pcm" else torch.rand(1, 300, 200) * 79.0 + 9.0
    target[0, :10] = 0.0 if name == "pcm" else 9.0
    programming = Programming(model, target)
    assert programming.pcm or programming.cmo
    for seed in range(3):
        torch.manual_seed(seed)
        g, nu = programming.draw(read=True)
        torch.manual_seed(seed)
        want_g = model.apply_programming_noise_to_conductance(target)
        want_nu = model.generate_drift_coefficients(target)
        assert torch.equal(g, want_g) and torch.equal(nu, want_nu)
        for t in (0.0, 1.0, DAY, 3.2e8):
            torch.manual_seed(seed)
            got = programming.read(g, nu, t)
            torch.manual_seed(seed)
            want = model.apply_drift_noise_to_conductance(want_g, want_nu, t)
            torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)  # bit for bit, NaN where log10 < 0
        assert torch.equal(g, want_g)  # the read leaves the programmed state as it was


def test_a_pcm_subclass_keeps_its_own_methods():
    custom = CustomDriftPCMLikeNoiseModel({"g_lst": [0.0, 10.0, 25.0], "nu_mean_lst": [0.1, 0.05, 0.02],
                                           "nu_std_lst": [0.01, 0.01, 0.01]})
    target = torch.rand(2, 20, 20) * 25.0
    programming = Programming(custom, target)
    assert not programming.pcm and not programming.cmo
    torch.manual_seed(0)
    g, nu = programming.draw(read=True)
    torch.manual_seed(0)
    assert torch.equal(g, custom.apply_programming_noise_to_conductance(target))
    assert torch.equal(nu, custom.generate_drift_coefficients(target))
    torch.manual_seed(1)
    got = programming.read(g, nu, DAY)
    torch.manual_seed(1)
    assert torch.equal(got, custom.apply_drift_noise_to_conductance(g, nu, DAY))


@pytest.mark.parametrize("name", ["pcm", "reram_cmo"])
def test_a_resnet18_size_layer_has_aihwkits_distributions(name):
    """512 x 4608 (resnet18's largest convolution, above DRAW_BLOCK: drawn per tile): the
    conductances a day after programming against aihwkit's noise model applied to the
    whole layer with torch's generator, per target-conductance bin, Kolmogorov-Smirnov
    on 20,000 devices a bin (p > 1e-4 each; a bias of a tenth of the spread fails)."""
    preset = crossbar.get_preset(name)
    w = torch.randn(512, 4608, generator=torch.Generator().manual_seed(0))
    array = crossbar.program(w, preset, 1, seed=1)
    assert w.numel() > DRAW_BLOCK and len(array.blocks) == len(array.tiles) == 9
    ours = array.conductances(DAY)[0].flatten()
    target = array.g_target
    torch.manual_seed(123)
    model = preset.noise_model
    g = model.apply_programming_noise_to_conductance(target)
    theirs = model.apply_drift_noise_to_conductance(g, model.generate_drift_coefficients(target), DAY).flatten()
    target = target.flatten()
    rng = np.random.default_rng(0)
    edges = torch.quantile(target[::97].double(), torch.tensor([0.0, 0.3, 0.6, 0.9, 1.0], dtype=torch.float64))
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = torch.nonzero((target >= lo) & (target <= hi)).flatten().numpy()
        if len(inside) < 40000:
            continue
        pick = rng.choice(inside, 20000, replace=False)
        p = stats.ks_2samp(ours[pick].numpy(), theirs[pick].numpy()).pvalue
        assert p > 1e-4, (float(lo), float(hi), p)


@pytest.fixture
def chip_blocks(monkeypatch):
    """The GPU's scheme on the CPU: chips drawn in blocks of 3 from one generator."""
    monkeypatch.setitem(crossbar.arrays.CHIP_BLOCK, "cpu", 3)


@pytest.mark.parametrize("tiled", [False, True])
@pytest.mark.parametrize("key", list(EFFECTS))
def test_chip_k_drawn_in_blocks_of_chips_is_the_same_whatever_the_chips_and_chunking(chip_blocks, monkeypatch,
                                                                                       key, tiled):
    if tiled:
        monkeypatch.setattr(crossbar.arrays, "DRAW_BLOCK", 2000)
    preset = _preset(key).with_overrides(max_in=32, max_out=16)
    w = torch.randn(40, 70, generator=torch.Generator().manual_seed(1))
    everything = crossbar.program(w, preset, 8, seed=9, layer=3)
    for first, n in ((0, 1), (2, 2), (3, 4), (4, 4), (7, 1)):  # within a block, across blocks, the last one
        part = crossbar.program(w, preset, n, seed=9, first_chip=first, layer=3)
        for t in (None, DAY):
            assert torch.equal(part.weights(t), everything.weights(t)[first:first + n]), (first, n, t)
    monkeypatch.setitem(crossbar.arrays.CHIP_BLOCK, "cpu", 1)  # chip by chip: other streams, other chips
    assert not torch.equal(crossbar.program(w, preset, 8, seed=9, layer=3).weights(DAY), everything.weights(DAY))
    assert torch.equal(everything.weights(DAY)[7:], part.weights(DAY))  # each array keeps its own scheme


@pytest.mark.parametrize("strategy", ["fold", "loop"])
def test_evaluate_with_blocks_of_chips_scores_chip_k_the_same_whatever_the_chunks(chip_blocks, strategy):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(30, 20), torch.nn.ReLU(), torch.nn.Linear(20, 4))
    data = (torch.randn(40, 30), torch.randint(0, 4, (40,)))
    preset = crossbar.get_preset("pcm", p_sa0=0.02)
    whole = crossbar.evaluate(net, data, preset, [DAY], 7, seed=1, strategy=strategy)
    for chunk in (1, 2, 4):
        np.testing.assert_array_equal(
            crossbar.evaluate(net, data, preset, [DAY], 7, seed=1, strategy=strategy, chunk_size=chunk), whole)
    assert len(np.unique(whole)) > 1  # the chips differ


def test_a_block_of_chips_is_one_draw_call(chip_blocks, monkeypatch):
    calls = []
    draw = Programming.draw
    monkeypatch.setattr(Programming, "draw", lambda self, read: calls.append(self.shape) or draw(self, read))
    array = crossbar.program(torch.randn(20, 30), crossbar.get_preset("pcm"), 8, seed=0, first_chip=1)
    array.weights(DAY)
    assert calls == [(3, 2, 20, 30)] * 3  # chips 0-2 (0 discarded), 3-5, 6-8


def test_a_pinned_chip_drawn_in_a_block_keeps_its_conductances(chip_blocks):
    preset = crossbar.get_preset("pcm")
    array = crossbar.program(torch.randn(20, 30), preset, 5, seed=0, first_chip=2)
    pinned = array.g_programmed.clone()
    pinned[1] = array.g_target
    array.g_programmed = pinned
    assert torch.equal(array.g_programmed, pinned)
    assert not torch.equal(array.conductances(DAY)[1], pinned[1])  # it drifts and reads from there


@pytest.mark.filterwarnings("ignore:invalid value encountered in log10")
@pytest.mark.parametrize("name", ["pcm", "reram_cmo", "reram_wan2022"])
def test_chips_drawn_in_blocks_have_aihwkits_distributions_and_are_independent(monkeypatch, name):
    """Blocks of 8 chips against aihwkit's noise model drawn chip by chip with torch's
    generator, a day after programming: Kolmogorov-Smirnov on 20,000 devices a side
    (p > 1e-4), and the programming errors of two chips of a block uncorrelated (|r| at
    most 5 standard errors of r with 19,200 devices, 0.036)."""
    monkeypatch.setitem(crossbar.arrays.CHIP_BLOCK, "cpu", 8)
    preset = crossbar.get_preset(name)
    array = crossbar.program(torch.randn(80, 120, generator=torch.Generator().manual_seed(0)), preset, 8, seed=2)
    ours = array.conductances(DAY)
    target, model = array.g_target, preset.noise_model
    torch.manual_seed(5)
    theirs = []
    for _ in range(8):
        g = model.apply_programming_noise_to_conductance(target)
        theirs.append(model.apply_drift_noise_to_conductance(g, model.generate_drift_coefficients(target), DAY))
    ours, theirs = ours.flatten().numpy(), torch.stack(theirs).flatten().numpy()
    pick = np.random.default_rng(0).choice(ours.size, 20000, replace=False)
    keep = np.isfinite(ours[pick]) & np.isfinite(theirs[pick])
    assert stats.ks_2samp(ours[pick][keep], theirs[pick][keep]).pvalue > 1e-4
    error = (array.g_programmed - target).flatten(1).double()
    n = error.shape[1]
    assert abs(float(torch.corrcoef(error[:2])[0, 1])) < 5 / n ** 0.5
    assert abs(float(torch.corrcoef(error[[3, 7]])[0, 1])) < 5 / n ** 0.5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_a_gpu_chip_k_is_the_same_whatever_the_chips_and_chunking():
    preset = crossbar.get_preset("pcm", p_sa0=0.01)
    w = torch.randn(300, 500, device="cuda")
    size = crossbar.arrays.CHIP_BLOCK["cuda"]
    everything = crossbar.program(w, preset, 2 * size + 3, seed=9)
    part = crossbar.program(w, preset, size, seed=9, first_chip=size // 2)
    assert torch.equal(part.weights(DAY), everything.weights(DAY)[size // 2:size // 2 + size])
    net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4)).cuda()
    data = (torch.randn(50, 64, device="cuda"), torch.randint(0, 4, (50,), device="cuda"))
    whole = crossbar.evaluate(net, data, preset, [DAY], 2 * size + 3, seed=1, device="cuda")
    chunked = crossbar.evaluate(net, data, preset, [DAY], 2 * size + 3, seed=1, device="cuda", chunk_size=5)
    np.testing.assert_array_equal(whole, chunked)


MEMORY_SCRIPT = textwrap.dedent("""
    import json, resource, sys
    import torch
    from torch import nn
    import crossbar
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2048, 2048), nn.ReLU(), nn.Linear(2048, 10))
    xmodel = crossbar.convert(net, "pcm")
    x, y = torch.randn(64, 2048), torch.randint(0, 10, (64,))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    acc = crossbar.evaluate(xmodel, (x, y), "pcm", [86400.0], 16, max_memory=int(sys.argv[1]))
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"grew": after - before, "n": int(acc.size), "per_chip": xmodel.weight_bytes_per_chip()}))
""")


def test_evaluate_of_many_chips_stays_within_max_memory():
    """16 chips of a 4.2 M-weight PCM network: a naive state (programmed conductances and
    drift exponents of every device kept, 20 bytes a weight and chip) would be 1.3 GB;
    with max_memory 192 MB the process grows by less than that plus 96 MB, the working
    memory of a pass that does not scale with chips (about 75 MB with one chip a chunk).
    Before devices were redrawn at each read, this grew by 450 MB."""
    budget, slack = 192 << 20, 96 << 20
    run = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(budget)], capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["n"] == 16
    assert 16 * 4_200_000 * 20 > 4 * (budget + slack)
    assert report["grew"] < budget + slack, report
