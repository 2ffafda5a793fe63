"""crossbar.cost: the energy of an inference follows the simulated conductances and the
actual inputs, the counts follow the layers, and bad input is one line."""

import pytest
import torch
from torch import nn

import crossbar
from crossbar.arrays import tile_grid
from crossbar.slicing import program_sliced

ARCH = dict(read_time=100e-9, read_voltage=0.2, tech_node=32, max_in=64, max_out=32, **crossbar.AIHWKIT_PERIPHERY)


def pcm(**overrides):
    return crossbar.preset("pcm", **{**ARCH, **overrides})


def linear(n_in=20, n_out=12, seed=0):
    torch.manual_seed(seed)
    return nn.Linear(n_in, n_out)


def test_array_energy_is_v_squared_g_t_of_each_chips_conductances():
    net = linear()
    x = torch.ones(5, 20)  # every row at full scale: sum over vectors of (x / max|x|)^2 = 1 per row
    for t in (1.0, 86400.0):
        priced = crossbar.cost(net, pcm(), x, t, n_chips=3, seed=4)
        g = crossbar.program(net.weight.detach(), pcm(), 3, 4).conductances(t)  # (C, D, out, in), uS
        expected = 0.2**2 * 100e-9 * g.sum(dim=(1, 2, 3)).double().numpy() * 1e-6
        arrays = [r for r in priced.rows if r["component"] == "crossbar"]
        assert len(arrays) == 1
        assert priced.chip_energy_j - sum(r["energy_j"] for r in priced.rows if r["component"] != "crossbar") \
            == pytest.approx(expected, rel=1e-9)
        assert arrays[0]["energy_j"] == pytest.approx(expected.mean(), rel=1e-9)


def test_a_row_at_half_scale_costs_a_quarter():
    net = linear()
    x = torch.full((3, 20), -0.5)
    x[:, 0] = 1.0  # the largest |value| sets the DAC's scale; the others are at half of it, in V^2 a quarter
    priced = crossbar.cost(net, pcm(), x, 1.0, n_chips=2, seed=1)
    g = crossbar.program(net.weight.detach(), pcm(), 2, 1).conductances(1.0).sum(dim=(1, 2)).double()  # (C, in)
    weight = torch.full((20,), 0.25, dtype=torch.float64)
    weight[0] = 1.0
    expected = 0.2**2 * 100e-9 * (g @ weight).numpy() * 1e-6
    assert priced.by_component()["crossbar"] == pytest.approx(expected.mean(), rel=1e-9)


@pytest.mark.parametrize("conv, max_in", [
    (dict(padding=1), 64),  # one input slice: whole channels only
    (dict(stride=2, dilation=2, padding=2, padding_mode="reflect"), 64),
    (dict(padding="same"), 64),
    (dict(stride=2, padding=1), 16),  # two input slices: a channel split between them
    (dict(stride=(2, 1), dilation=(1, 2), padding=(1, 2)), 12),  # three slices, uneven stride and dilation
])
def test_a_convolutions_rows_are_its_patches(conv, max_in):
    torch.manual_seed(2)
    layer = nn.Conv2d(3, 5, 3, **conv)
    x = torch.randn(4, 3, 9, 9)
    x[:, :, :5, :5] = 0  # patches of zeros only (an image's blank corner): they cost nothing, and are no NaN
    preset = pcm(max_in=max_in)
    priced = crossbar.cost(layer, preset, x, 1.0, n_chips=1)
    padded = nn.functional.pad(x, layer._reversed_padding_repeated_twice,
                               mode="constant" if layer.padding_mode == "zeros" else layer.padding_mode)
    patches = nn.functional.unfold(padded.double(), 3, layer.dilation, 0, layer.stride)  # (B, 27, L)
    assert patches.shape[2] == layer(x).shape[2] * layer(x).shape[3]
    g = crossbar.program(layer.weight.detach(), preset, 1, 0).conductances(1.0).sum(dim=(1, 2))[0].double()
    expected = 0.0
    for i0, i1 in sorted({(i0, i1) for _, _, i0, i1 in tile_grid(5, 27, 128, max_in)}):  # aihwkit's even split
        part = patches[:, i0:i1]
        scaled = part / part.abs().amax(1, keepdim=True).clamp_min(1e-300)  # a vector of padding is 0
        expected += float((scaled**2).sum(dim=(0, 2)) @ g[i0:i1])
    expected *= 0.2**2 * 100e-9 * 1e-6 / 4
    assert priced.by_component()["crossbar"] == pytest.approx(expected, rel=1e-5)  # convolutions sum in float32


def test_drift_moves_the_array_energy_by_the_conductance_ratio():
    net, x = linear(), torch.rand(8, 20)
    array = crossbar.program(net.weight.detach(), pcm(), 2, 0)
    early, late = (crossbar.cost(net, pcm(), x, t, n_chips=2) for t in (1.0, 86400.0))
    ratio = (array.conductances(86400.0).sum() / array.conductances(1.0).sum()).item()
    e_early, e_late = (c.by_component()["crossbar"] for c in (early, late))
    assert ratio < 0.99  # PCM's conductances drift down
    # inputs weight the rows unevenly, so the ratio holds up to the rows' spread of drift
    assert e_late / e_early == pytest.approx(ratio, rel=0.02)
    assert early.by_component()["ADC"] == late.by_component()["ADC"]  # the periphery does not drift


def test_zero_inputs_cost_no_array_energy_and_sparsity_costs_less():
    net = linear()
    zero = crossbar.cost(net, pcm(), torch.zeros(4, 20))
    assert zero.by_component()["crossbar"] == 0.0
    assert zero.by_component()["DAC"] > 0  # the converters still convert
    dense = torch.rand(16, 20, generator=torch.Generator().manual_seed(1)) + 0.5
    sparse = dense * (torch.arange(20) % 2 == 0)  # half the rows off
    e_dense, e_sparse = (crossbar.cost(net, pcm(), x).by_component()["crossbar"] for x in (dense, sparse))
    assert 0.3 < e_sparse / e_dense < 0.7


def test_counts_follow_the_layers_and_tiles():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 40, 3, padding=1)  # 27 rows, 40 outputs: 2 tiles of 32 and 8 outputs
    priced = crossbar.cost(conv, pcm(), torch.rand(2, 3, 6, 6))
    count = {r["component"]: r["count"] for r in priced.rows}
    positions = 36
    assert count["DAC"] == positions * 27 * 2  # each tile's rows get their own DAC
    assert count["ADC"] == count["sample-and-hold"] == positions * 40
    assert "accumulation" not in count  # one input split: nothing to add
    assert priced.macs == positions * 40 * 27
    assert priced.ops == 2 * priced.macs
    assert priced.latency_s == pytest.approx(positions * crossbar.macro_cost(pcm(), 1).cycle_s)
    assert priced.area_mm2 == pytest.approx(crossbar.macro_cost(pcm(), 2).area_mm2)
    assert priced.tops_per_w == pytest.approx(priced.ops / priced.energy_j / 1e12)

    wide = crossbar.cost(linear(n_in=150), pcm(), torch.rand(3, 150))  # 3 input splits of at most 64
    count = {r["component"]: r["count"] for r in wide.rows}
    assert count["accumulation"] == 12 * 2
    assert count["DAC"] == 150


def test_sliced_weights_and_bit_serial_inputs_count_every_cycle_and_cell():
    net = linear(n_in=30, n_out=6)
    isaac = crossbar.preset("isaac", max_in=16)  # two input tiles of 15 rows; 16 cycles of 1 bit
    x = torch.rand(4, 30)
    priced = crossbar.cost(net, isaac, x)
    count = {r["component"]: r["count"] for r in priced.rows}
    assert count["DAC"] == 16 * 30  # positive inputs: one sign, 16 cycles per row
    assert count["ADC"] == count["shift-add"] == 16 * 6 * 8 * 2  # 8 cells a weight, in both input tiles
    assert priced.latency_s == pytest.approx(16 * crossbar.macro_cost(isaac, 1).cycle_s)
    signed = crossbar.cost(net, isaac, x - 0.5)
    assert {r["component"]: r["count"] for r in signed.rows}["DAC"] == 2 * 16 * 30  # both signs: twice the cycles
    # the array: a 1-bit DAC drives a row at full voltage when its bit is 1, so the energy
    # is V^2 t times the conductance of the rows whose bit is set, over every cycle
    assert crossbar.cost(net, isaac, torch.zeros(2, 30)).by_component()["crossbar"] == 0.0
    ones = crossbar.cost(net, isaac, torch.ones(1, 30))  # every code 65535: every bit set in all 16 cycles
    cells = program_sliced(net.weight.detach(), isaac, 1, 0)[0].conductances(1.0)  # (1, 1, 6 x 8, 30) uS
    assert cells.shape == (1, 1, 48, 30)
    expected = 0.1**2 * 100e-9 * 16 * float(cells.double().sum()) * 1e-6
    assert ones.by_component()["crossbar"] == pytest.approx(expected, rel=1e-9)


def test_a_chip_is_the_same_chip_for_any_number_of_chips():
    net, x = linear(), torch.rand(4, 20)
    two, five = (crossbar.cost(net, pcm(), x, "1d", n_chips=n, seed=3) for n in (2, 5))
    assert list(five.chip_energy_j[:2]) == pytest.approx(list(two.chip_energy_j), rel=1e-12)
    assert len(set(five.chip_energy_j.tolist())) == 5


def test_the_mean_over_inputs_does_not_depend_on_the_batches():
    net, x = linear(), torch.rand(12, 20)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, torch.zeros(12)), batch_size=5)
    whole, batched = crossbar.cost(net, pcm(), x), crossbar.cost(net, pcm(), loader)
    assert batched.n_inputs == 12
    assert batched.energy_j == pytest.approx(whole.energy_j, rel=1e-12)


def test_table_and_plain_data():
    priced = crossbar.cost(linear(), pcm(), torch.rand(3, 20), n_chips=2)
    data = priced.as_dict()
    assert data["energy_j"] == pytest.approx(sum(r["energy_j"] for r in data["rows"]))
    assert set(priced.by_layer()) == {"Linear"}
    assert "TOPS/W" in priced.table() and "1 MAC = 2 ops" in priced.table()


def test_layers_left_digital_are_named():
    model = nn.Sequential(nn.Conv1d(2, 4, 3), nn.Flatten(), nn.Linear(4 * 6, 3))
    with pytest.warns(UserWarning, match="stays digital"):
        crossbar.convert(model, "ideal")
    priced = crossbar.cost(model, pcm(), torch.rand(2, 2, 8))
    assert priced.digital == ("0 (Conv1d)",)
    assert "left digital, not priced: 0 (Conv1d)" in priced.table()


@pytest.mark.parametrize("call, message", [
    (lambda: crossbar.cost(linear(), "pcm", torch.rand(2, 20)), "needs read_time"),
    (lambda: crossbar.cost("net", pcm(), torch.rand(2, 20)), "model must be a torch.nn.Module"),
    (lambda: crossbar.cost(linear(), pcm(), [1, 2, 3]), "inputs must be a tensor"),
    (lambda: crossbar.cost(linear(), pcm(), torch.zeros(0, 20)), "at least one input"),
    (lambda: crossbar.cost(nn.Conv2d(4, 4, 3, groups=2), pcm(), torch.rand(1, 4, 5, 5)), "grouped convolution"),
    (lambda: crossbar.cost(linear(), pcm(), torch.rand(2, 20), n_chips=0), "n_chips"),
])
def test_bad_input_is_one_line(call, message):
    with pytest.raises(ValueError, match=message) as info:
        call()
    assert "\n" not in str(info.value)


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 6))


def test_a_layer_placed_digital_stays_exact_and_keeps_the_others_devices():
    net, preset = mlp(), pcm()
    both = crossbar.convert(net, preset).program(2, seed=3)
    placed = crossbar.convert(net, preset, digital=["2"]).program(2, seed=3)
    assert type(placed.module[2]) is nn.Linear and torch.equal(placed.module[2].weight, net[2].weight)
    assert placed.module[0].index == both.module[0].index == 0
    assert torch.equal(placed.module[0].array.conductances(1.0), both.module[0].array.conductances(1.0))
    first = crossbar.convert(net, preset, digital=["0"]).program(2, seed=3)
    assert first.module[2].index == 1  # numbered as if every layer were mapped
    assert torch.equal(first.module[2].array.conductances(1.0), both.module[2].array.conductances(1.0))


def test_a_layer_placed_digital_costs_its_multiply_adds():
    from hwcomponents_library import AladdinAdder, AladdinMultiplier

    net, x = mlp(), torch.randn(7, 20)
    analog = crossbar.cost(net, pcm(), x, 1.0, n_chips=2)
    placed = crossbar.cost(net, pcm(), x, 1.0, n_chips=2, digital=["2"])
    rows = [r for r in placed.rows if r["layer"] == "2"]
    assert [r["component"] for r in rows] == ["digital MAC"] and rows[0]["count"] == 16 * 6
    width = crossbar.macro_cost(pcm(), 1).layout["output_bits"]
    each = (AladdinMultiplier(tech_node=32e-9, width_a=8, width_b=8).multiply().energy
            + AladdinAdder(tech_node=32e-9, width=width).add().energy)
    assert rows[0]["energy_j"] == pytest.approx(16 * 6 * each, rel=1e-12)
    layer0 = [r for r in analog.rows if r["layer"] == "0"]
    assert [r for r in placed.rows if r["layer"] == "0"] == layer0  # the other layer's chips and counts unchanged
    assert placed.macs == analog.macs
    assert placed.area_mm2 < analog.area_mm2  # one array fewer


@pytest.mark.parametrize("digital, message", [
    (["3"], "digital: '3' is not a mapped layer of Sequential; the layers: 0, 2"),
    (["0", "2"], "digital: every layer would stay digital"),
])
def test_digital_names_a_mapped_layer(digital, message):
    with pytest.raises(ValueError, match=message):
        crossbar.cost(mlp(), pcm(), torch.randn(3, 20), 1.0, digital=digital)
    with pytest.raises(ValueError, match=message):
        crossbar.evaluate(mlp(), (torch.randn(3, 20), torch.zeros(3, dtype=torch.long)), pcm(), 1.0, 1,
                          digital=digital)
