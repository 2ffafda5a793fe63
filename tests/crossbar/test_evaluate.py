"""crossbar.evaluate and the chip-batched model."""

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import crossbar


def _digital_accuracy(model, x, y):
    with torch.no_grad():
        return (model(x).argmax(-1) == y).double().mean().item()


def test_ideal_preset_gives_the_digital_accuracy_exactly(trained_mlp, digits_split):
    _, (x, y) = digits_split
    digital = _digital_accuracy(trained_mlp, x, y)
    assert digital > 0.9
    acc = crossbar.evaluate(trained_mlp, (x, y), "ideal", [0.0, 1.0, 3.15e7], n_chips=3)
    assert acc.shape == (3, 3)
    assert np.all(acc == digital)


def test_lognormal_accuracy_falls_with_sigma(trained_mlp, digits_split):
    _, (x, y) = digits_split
    n_chips = 24
    means, ses = [], []
    for sigma in (0.0, 0.4, 0.8, 1.4):
        acc = crossbar.evaluate(
            trained_mlp, (x, y), crossbar.get_preset("lognormal", sigma=sigma), [86400.0], n_chips, seed=1
        )
        means.append(acc.mean())
        ses.append(acc.std(ddof=1) / math.sqrt(n_chips) if sigma > 0 else 0.0)
    for i in range(len(means) - 1):
        assert means[i] > means[i + 1] + 2 * math.hypot(ses[i], ses[i + 1]), means


def _small_cnn():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding="same", padding_mode="reflect"), nn.ReLU(),
        nn.Flatten(), nn.Linear(6 * 4 * 4, 10),
    ).eval()


@pytest.mark.parametrize(
    "overrides",
    [{}, dict(crossbar.AIHWKIT_PERIPHERY), dict(crossbar.AIHWKIT_PERIPHERY, faults="chen2015", max_in=20, max_out=4)],
)
def test_fold_loop_and_chunking_give_identical_accuracies(overrides):
    model = _small_cnn()
    x = torch.randn(40, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    y = model(x).argmax(-1)
    y[:10] = (y[:10] + 1) % 10
    preset = crossbar.get_preset("pcm", **overrides)
    runs = [
        crossbar.evaluate(
            model, (x, y), preset, [1.0, 86400.0], 5, seed=2, strategy=strategy, chunk_size=chunk, batch_size=16
        )
        for strategy, chunk in (("loop", None), ("fold", None), ("fold", 2), ("loop", 3))
    ]
    for other in runs[1:]:
        np.testing.assert_array_equal(runs[0], other)
    assert len(np.unique(runs[0])) > 1  # chips really differ


def test_times_as_a_number_a_list_an_array_or_a_tensor(trained_mlp, digits_split):
    _, (x, y) = digits_split
    ref = crossbar.evaluate(trained_mlp, (x, y), "pcm", [1.0, 60.0], 2, seed=1)
    for times in ((1.0, 60.0), np.array([1.0, 60.0]), torch.tensor([1.0, 60.0])):
        np.testing.assert_array_equal(crossbar.evaluate(trained_mlp, (x, y), "pcm", times, 2, seed=1), ref)
    np.testing.assert_array_equal(crossbar.evaluate(trained_mlp, (x, y), "pcm", 60.0, 2, seed=1), ref[1:])


def test_dataloader_and_tensor_pair_agree(trained_mlp, digits_split):
    _, (x, y) = digits_split
    loader = DataLoader(TensorDataset(x, y), batch_size=100)
    a = crossbar.evaluate(trained_mlp, loader, "pcm", [60.0], 4, seed=5)
    b = crossbar.evaluate(trained_mlp, (x, y), "pcm", [60.0], 4, seed=5, batch_size=64)
    np.testing.assert_array_equal(a, b)


def test_layers_larger_than_a_tile_are_split_and_still_exact():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1100, 600), nn.ReLU(), nn.Linear(600, 10))
    x = torch.randn(64, 1100)
    xmodel = crossbar.convert(model, "ideal").program(2).drift(10.0)
    assert len(xmodel.crossbar_layers[0].array.tiles) == 3 * 2
    for layer, linear in zip(xmodel.crossbar_layers, (model[0], model[2])):  # the tiles hold the weights exactly
        torch.testing.assert_close(layer.array.weights(10.0).float(), linear.weight.expand(2, -1, -1), rtol=0, atol=0)
    # And the outputs bit for bit, against a reference on one thread as each chip runs:
    # the order of a product's sums depends on the thread count (16 cores: 4e-7 apart).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        reference = model(x)
    finally:
        torch.set_num_threads(threads)
    torch.testing.assert_close(xmodel(x), reference.expand(2, 64, 10), rtol=0, atol=0)


def test_drift_compensation_restores_the_programmed_mean_conductance():
    torch.manual_seed(0)
    model = nn.Linear(40, 30)
    xmodel = crossbar.convert(model, crossbar.get_preset("pcm", max_in=20)).program(3, seed=1).drift(3.15e7)
    layer = xmodel.crossbar_layers[0]
    programmed = layer.array.weights(None).double()
    compensated = layer._w.double().reshape(3, 30, 40)
    drifted = layer.array.weights(3.15e7).double()
    for o0, o1, i0, i1 in layer.array.tiles:
        before = programmed[:, o0:o1, i0:i1].abs().mean((1, 2))
        torch.testing.assert_close(compensated[:, o0:o1, i0:i1].abs().mean((1, 2)), before, rtol=1e-5, atol=0)
        assert torch.all(drifted[:, o0:o1, i0:i1].abs().mean((1, 2)) < 0.8 * before)  # a year of PCM drift


def test_converted_model_runs_all_chips_and_leaves_the_original_alone(trained_mlp):
    before = [p.clone() for p in trained_mlp.parameters()]
    xmodel = crossbar.convert(trained_mlp, "reram_cmo").program(4, seed=3).drift(100.0)
    out = xmodel(torch.rand(7, 64))
    assert out.shape == (4, 7, 10)
    assert all(torch.equal(a, b) for a, b in zip(before, trained_mlp.parameters()))
    assert isinstance(xmodel.module[0], crossbar.CrossbarLinear)


def test_evaluate_of_a_converted_model_keeps_its_settings(trained_mlp, digits_split):
    _, (x, y) = digits_split
    preset = crossbar.get_preset("pcm", **crossbar.AIHWKIT_PERIPHERY)
    xmodel = crossbar.convert(trained_mlp, preset, strategy="loop", threads=2)
    reference = crossbar.evaluate(xmodel, (x[:200], y[:200]), preset, [86400.0], 3, seed=5)
    assert (xmodel.strategy, xmodel.threads) == ("loop", 2)
    other = crossbar.evaluate(xmodel, (x[:200], y[:200]), preset, [86400.0], 3, seed=5, strategy="fold", threads=1)
    assert (xmodel.strategy, xmodel.threads) == ("loop", 2)
    np.testing.assert_array_equal(other, reference)  # results depend on neither setting
    with pytest.raises(ValueError, match="inputs"):
        crossbar.evaluate(xmodel, (x[:10],), preset, [1.0], 2, threads=1)
    assert (xmodel.strategy, xmodel.threads) == ("loop", 2)


class _CountingModel(nn.Module):
    calls = 0  # on the class: convert works on a copy of the model

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        type(self).calls = 0

    def forward(self, x):
        type(self).calls += 1
        return self.fc(x)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(preset="nope"), r"unknown preset 'nope'; valid presets:"),
        (dict(t_inference=[1.0, -5.0]), r"t_inference must be a finite time >= 0 s"),
        (dict(t_inference=[]), r"at least one time"),
        (dict(preset="reram_wan2022", t_inference=[7200.0]), r"1 s, 1 day, 2 days"),
        (dict(n_chips=0), r"n_chips must be an integer >= 1"),
        (dict(seed=-1), r"seed must be an integer >= 0"),
        (dict(batch_size=0), r"batch_size must be an integer >= 1"),
        (dict(strategy="fast"), r"strategy must be one of auto, fold, loop"),
        (dict(device="tpu"), r"device must be 'cpu', 'cuda' or 'cuda:N'"),
        (dict(data=(torch.zeros(3, 4), torch.zeros(2, dtype=torch.long))), r"inputs \(3\) and labels \(2\) differ"),
        (dict(data=[1, 2, 3]), r"DataLoader must yield \(inputs, labels\)"),
        (dict(data=(torch.zeros(3, 4), torch.zeros(3, 3, dtype=torch.long))), r"labels must be a 1-D integer tensor"),
        (dict(data=(torch.zeros(3, 4), torch.zeros(3))), r"labels must be a 1-D integer tensor .* torch.float32"),
        (dict(data=DataLoader(TensorDataset(torch.zeros(3, 4), torch.zeros(3, 2)), batch_size=2)),
         r"labels must be a 1-D integer tensor"),
        (dict(data=(torch.zeros(3, 4), torch.tensor([0, -1, 2]))), r"labels must be class indices >= 0, got -1"),
        # one sample without its batch dimension: the label is a scalar
        (dict(data=(torch.zeros(4), torch.tensor(1))), r"labels must be a 1-D integer tensor .* shape \(\)"),
    ],
)
def test_bad_input_fails_before_any_work(kwargs, match):
    model = _CountingModel()
    args = dict(model=model, data=(torch.zeros(3, 4), torch.zeros(3, dtype=torch.long)), preset="pcm",
                t_inference=[1.0], n_chips=2)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        crossbar.evaluate(**args)
    assert model.calls == 0


def test_labels_beyond_the_models_outputs_are_refused():
    # labels 1..3 for a 3-class model (a common off-by-one) would silently score label 3 as wrong
    with pytest.raises(ValueError, match=r"labels must be class indices below the model's 3 outputs, got 3"):
        crossbar.evaluate(_CountingModel(), (torch.zeros(3, 4), torch.tensor([1, 2, 3])), "pcm", [1.0], 2)


@pytest.mark.parametrize("strategy", ["loop", "fold"])
@pytest.mark.parametrize(
    "dtype, hint",
    [(torch.uint8, r"x.float\(\) / 255"), (torch.float64, r"x.to\(torch.float32\)")],
)
def test_inputs_of_another_dtype_than_the_weights_get_a_line_saying_so(strategy, dtype, hint):
    data = (torch.zeros(3, 4, dtype=dtype), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=rf"data: inputs are {dtype} but the model's weights are torch.float32; "
                                         rf".*{hint}"):
        crossbar.evaluate(_CountingModel(), data, "pcm", [1.0], 2, strategy=strategy)


def test_integer_inputs_stay_allowed_for_a_model_that_takes_them():
    # token ids into an embedding (digital) before the first crossbar layer
    model = nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(8, 3))
    tokens = torch.randint(0, 10, (6, 2), generator=torch.Generator().manual_seed(0))
    labels = model(tokens).argmax(-1)
    assert crossbar.evaluate(model, (tokens, labels), "ideal", [1.0], 2).tolist() == [[1.0, 1.0]]


def test_a_model_with_non_finite_weights_is_refused_naming_the_layer():
    model = _CountingModel()
    with torch.no_grad():
        model.fc.weight[1, 2] = float("nan")
    with pytest.raises(ValueError, match=r"layer 'fc' \(Linear\): weight holds 1 NaN or infinite value\(s\) of 12"):
        crossbar.evaluate(model, (torch.zeros(3, 4), torch.zeros(3, dtype=torch.long)), "pcm", [1.0], 2)
    assert model.calls == 0


def test_a_model_without_mappable_layers_is_refused():
    with pytest.raises(ValueError, match=r"model \(Sequential\) has no nn.Linear, nn.Conv2d or nn.MultiheadAttention "
                                         r"layer"):
        crossbar.convert(nn.Sequential(nn.Flatten(), nn.ReLU()), "pcm")
    assert isinstance(crossbar.convert(nn.Linear(3, 2), "ideal").module, crossbar.CrossbarLinear)


class _Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.att = nn.MultiheadAttention(8, 2, batch_first=True)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        y, _ = self.att(x, x, x)
        return self.fc(y.mean(1))


class _OwnAttention(nn.MultiheadAttention):
    def forward(self, query, key, value, **kwargs):
        return super().forward(query * 2, key, value, **kwargs)


@pytest.mark.filterwarnings("error")
def test_attention_blocks_are_mapped_after_the_other_layers():
    torch.manual_seed(0)
    model = _Attention().eval()
    x = torch.randn(6, 5, 8)
    xmodel = crossbar.convert(model, "pcm")  # no "stays digital" warning
    assert isinstance(xmodel.module.att, crossbar.attention.CrossbarMultiheadAttention)
    assert isinstance(xmodel.module.fc, crossbar.CrossbarLinear) and xmodel.module.fc.index == 0
    assert [layer.index for layer in xmodel.crossbar_layers] == [1, 2, 3, 4, 0]  # q, k, v, out, then fc
    exact = crossbar.convert(model, "ideal")
    exact.program(n_chips=2, seed=0)
    exact.drift(1.0)
    with torch.no_grad():
        assert torch.allclose(exact(x), model(x).expand(2, -1, -1), atol=1e-5)
    assert isinstance(crossbar.convert(nn.Sequential(nn.MultiheadAttention(8, 2)), "pcm").module[0],
                      crossbar.attention.CrossbarMultiheadAttention)
    assert isinstance(crossbar.convert(nn.MultiheadAttention(8, 2), "pcm").module,  # the model itself
                      crossbar.attention.CrossbarMultiheadAttention)


def test_attention_with_a_forward_of_its_own_stays_digital():
    torch.manual_seed(0)
    model = _Attention()
    model.att = _OwnAttention(8, 2, batch_first=True)
    assert [name for name, _ in crossbar.unmapped_layers(model)] == ["att"]
    with pytest.warns(UserWarning, match=r"layer att \(_OwnAttention, its own forward\) stays digital"):
        xmodel = crossbar.convert(model, "pcm")
    assert type(xmodel.module.att) is _OwnAttention
    with pytest.raises(ValueError, match=r"\(_OwnAttention\) has no nn.Linear, nn.Conv2d or nn.MultiheadAttention "
                                         r"layer .*_OwnAttention, its own forward"):
        crossbar.convert(_OwnAttention(8, 2), "pcm")


def test_weight_layers_left_digital_are_named_in_a_warning(recwarn):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(24, 8), nn.BatchNorm1d(8),
                          nn.Unflatten(1, (1, 8)), nn.LSTM(8, 4, batch_first=True))
    assert [name for name, _ in crossbar.unmapped_layers(model)] == ["0", "6"]
    x, y = torch.randn(10, 1, 8), torch.randint(0, 4, (10,))
    model.eval()
    head = lambda net: nn.Sequential(net, _LastStep())  # noqa: E731
    with pytest.warns(UserWarning, match=r"^crossbar.convert: layers 0.0 \(Conv1d\), 0.6 \(LSTM\) "
                                         r"stay digital") as caught:
        crossbar.evaluate(head(model), (x, y), "pcm", [1.0], n_chips=2)
    assert caught[0].filename == __file__  # it points at the caller, not into crossbar or torch
    recwarn.clear()
    crossbar.convert(nn.Sequential(nn.Embedding(5, 4), nn.Linear(4, 2), nn.LayerNorm(2)), "pcm")
    assert not [w for w in recwarn if "stay" in str(w.message)]  # norms and lookups are not crossbar layers


class _LastStep(nn.Module):
    def forward(self, out):
        return out[0][:, -1]


class _Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(6, 6)
        self.b = self.a  # weight tying: one crossbar, used twice
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.b(torch.relu(self.a(x)))))


@pytest.mark.parametrize("strategy", ["loop", "fold"])
def test_a_layer_used_twice_is_one_crossbar_used_twice(strategy):
    torch.manual_seed(0)
    model = _Tied().eval()
    x = torch.randn(10, 6)
    xmodel = crossbar.convert(model, {"base": "lognormal", "sigma": 0.5}, strategy=strategy)
    assert isinstance(xmodel.module.b, crossbar.CrossbarLinear) and xmodel.module.a is xmodel.module.b
    assert [layer.index for layer in xmodel.crossbar_layers] == [0, 1]
    xmodel.program(n_chips=3, seed=1)
    xmodel.drift(1.0)
    with torch.no_grad():
        logits = xmodel(x)
        for chip in range(3):  # the chip's own weights in both uses
            w, fc = (layer.array.weights(1.0)[chip].float() for layer in (xmodel.module.a, xmodel.module.fc))
            h = torch.relu(torch.relu(x @ w.T + model.a.bias) @ w.T + model.a.bias)
            assert torch.allclose(logits[chip], h @ fc.T + model.fc.bias, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_shapes_and_ideal_exactness(trained_mlp, digits_split):
    _, (x, y) = digits_split
    acc = crossbar.evaluate(trained_mlp, (x, y), "ideal", [1.0], 4, device="cuda")
    assert np.all(acc == _digital_accuracy(trained_mlp, x, y))
    noisy = crossbar.evaluate(
        trained_mlp, (x, y), crossbar.get_preset("pcm", **crossbar.AIHWKIT_PERIPHERY), [1.0, 86400.0], 8, device="cuda"
    )
    assert noisy.shape == (2, 8) and np.all((noisy > 0) & (noisy <= 1))
