"""Training: accuracy, determinism, early stopping, divergence, hardware-aware noise,
checkpoints."""

import pydantic
import pytest
import torch

import crossbar
import models


@pytest.fixture(scope="module")
def digits():
    return models.load_dataset("digits", seed=0)


def fit(splits, name="mlp", dropout=0.0, seed=0, **config):
    net = (
        models.build(name, splits.in_shape, splits.n_classes, dropout=dropout, seed=seed, depth=1, width=64)
        if name == "mlp"
        else models.build(name, splits.in_shape, splits.n_classes, dropout=dropout, seed=seed)
    )
    return models.train(net, splits, models.TrainConfig(**{"epochs": 15, **config}), seed=seed)


def test_mlp_on_digits_reaches_95_percent_test_accuracy(digits):
    result = fit(digits, dropout=0.1)
    assert result.ok and result.reason is None
    assert models.accuracy(result.model, digits.test) >= 0.95
    assert len(result.history) == result.epochs_run == 15
    assert not result.model.training


def test_lenet5_trains_on_digits(digits):
    result = fit(digits, name="lenet5", dropout=[0.1, 0.1, 0.2, 0.2], epochs=20)
    assert models.accuracy(result.model, digits.test) >= 0.95


def test_same_seed_same_weights_and_global_rng_untouched(digits):
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a, b = fit(digits, dropout=0.3, seed=7), fit(digits, dropout=0.3, seed=7)
    assert torch.equal(torch.get_rng_state(), before)
    for (k, va), vb in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(va, vb), k
    c = fit(digits, dropout=0.3, seed=8)
    assert not torch.equal(a.model.state_dict()["net.1.weight"], c.model.state_dict()["net.1.weight"])


def test_dropout_changes_training(digits):
    plain, dropped = fit(digits, dropout=0.0, epochs=2), fit(digits, dropout=0.5, epochs=2)
    assert plain.history[0]["loss"] != dropped.history[0]["loss"]


def test_early_stopping_keeps_the_best_epoch(digits):
    result = fit(digits, epochs=60, patience=3, lr=1e-2, schedule="constant")
    assert result.epochs_run < 60  # it stopped
    assert result.epochs_run - result.best_epoch == 3
    best = max(h["val_score"] for h in result.history)
    assert result.val_score == best == result.history[result.best_epoch - 1]["val_score"]
    assert models.accuracy(result.model, digits.val) == pytest.approx(best)  # best weights restored


class Mistakes:
    """How many validation samples a network gets wrong: lower is better, and above 1."""

    def __init__(self, n, module):
        self.wrong = torch.zeros(n, dtype=torch.float64)

    def update(self, outputs, labels):
        self.wrong += (outputs.argmax(-1) != labels).sum(-1).double()

    def compute(self):
        return self.wrong.numpy()


def test_a_metric_where_lower_is_better_keeps_the_epoch_of_its_lowest_score(digits):
    crossbar.register_metric(crossbar.Metric("mistakes", "mistakes", "classification", Mistakes,
                                             higher_is_better=False))
    try:
        net = models.build("mlp", digits.in_shape, digits.n_classes, seed=0, depth=1, width=8)
        config = models.TrainConfig(epochs=8, lr=0.05, schedule="constant", patience=3)
        result = models.train(net, digits, config, seed=0, metric="mistakes")
    finally:
        crossbar.METRICS.pop("mistakes")
    scores = [h["val_score"] for h in result.history]
    assert min(scores) > 1 and len(set(scores)) > 1  # counts, and they moved
    assert result.val_score == min(scores) == scores[result.best_epoch - 1]
    assert result.epochs_run == len(scores) and result.epochs_run - result.best_epoch <= 3


def test_schedules(digits):
    cosine = fit(digits, epochs=3, schedule="cosine")
    assert cosine.history[-1]["lr"] == pytest.approx(0.0, abs=1e-9)
    constant = fit(digits, epochs=3, schedule="constant", lr=1e-3)
    assert [h["lr"] for h in constant.history] == [1e-3] * 3
    onecycle = fit(digits, epochs=10, schedule="onecycle", lr=1e-2, optimizer="sgd")
    lrs = [h["lr"] for h in onecycle.history]
    assert max(lrs) > lrs[0] and lrs[-1] < 1e-4  # warms up, then anneals
    assert onecycle.ok


def test_divergence_is_reported_not_raised(digits):
    result = fit(digits, optimizer="sgd", lr=1e4, schedule="constant")
    assert not result.ok and "diverged" in result.reason
    assert result.val_score is None and result.epochs_run < 15
    assert "model" not in result.summary() and result.summary()["ok"] is False


def test_hardware_aware_with_ideal_devices_is_plain_training(digits):
    # the ideal preset maps w -> (G+, G-) -> w exactly, so straight-through noise
    # injection must reproduce plain training bit for bit
    plain = fit(digits, dropout=0.2, epochs=3)
    ideal = fit(digits, dropout=0.2, epochs=3, hardware_aware={"preset": "ideal"})
    for va, vb in zip(plain.model.state_dict().values(), ideal.model.state_dict().values()):
        assert torch.equal(va, vb)


def test_hardware_aware_injects_the_presets_noise(digits):
    plain = fit(digits, dropout=0.2, epochs=4)
    noisy = fit(digits, dropout=0.2, epochs=4, hardware_aware={"preset": {"base": "lognormal", "sigma": 1.0}})
    again = fit(digits, dropout=0.2, epochs=4, hardware_aware={"preset": {"base": "lognormal", "sigma": 1.0}})
    # plain training for the first half of the epochs (the same steps, bit for bit), then the
    # noisy forward pass makes the training loss higher at every epoch...
    assert [h["noise_strength"] for h in noisy.history] == [0.0, 0.0, 1.0, 1.0]
    assert [n["loss"] for n in noisy.history[:2]] == [p["loss"] for p in plain.history[:2]]
    assert all(n["loss"] > p["loss"] for n, p in zip(noisy.history[2:], plain.history[2:]))
    assert noisy.best_epoch > 2  # the network kept is one trained under the noise
    # ...the network still learns, and the noise is deterministic from the seed
    assert noisy.ok and noisy.val_score > 0.5  # chance is 0.1
    assert [h["loss"] for h in noisy.history] == [h["loss"] for h in again.history]
    # pcm (with drift compensation) and stuck-at faults go through the same path
    faulty = fit(digits, epochs=2,
                 hardware_aware={"preset": {"base": "pcm", "faults": "chen2015"}, "t_inference": 3600})
    assert faulty.ok


def test_config_is_validated():
    with pytest.raises(pydantic.ValidationError, match="epochs"):
        models.TrainConfig(epochs=0)
    with pytest.raises(pydantic.ValidationError, match="optimizer"):
        models.TrainConfig(optimizer="rmsprop")
    with pytest.raises(pydantic.ValidationError, match="unknown preset 'nope'"):
        models.TrainConfig(hardware_aware={"preset": "nope"})
    with pytest.raises(pydantic.ValidationError, match="reram_wan2022"):
        models.TrainConfig(hardware_aware={"preset": "reram_wan2022", "t_inference": 100})
    with pytest.raises(pydantic.ValidationError, match="extra"):
        models.TrainConfig(epoch=3)


@pytest.mark.parametrize(
    "in_shape, n_classes, match",
    [((1, 28, 28), 10, r"built for inputs of shape \(1, 28, 28\) but the training inputs are \(1, 8, 8\)"),
     ((1, 8, 8), 5, r"built for 5 classes but the training labels go up to 9")],
)
def test_a_network_built_for_other_data_is_refused_before_training(digits, in_shape, n_classes, match):
    net = models.build("mlp", in_shape, n_classes, seed=0)
    before = [p.clone() for p in net.parameters()]
    with pytest.raises(ValueError, match=match):
        models.train(net, digits, models.TrainConfig(epochs=1), seed=0)
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))


def test_checkpoint_round_trip(digits, tmp_path):
    result = fit(digits, name="lenet5", dropout=[0.1, 0.2, 0.3, 0.0], epochs=2)
    path = models.save_checkpoint(tmp_path / "sub" / "net.pt", result.model, val_score=result.val_score, seed=0)
    model, meta = models.load_checkpoint(path)
    assert meta == {"val_score": result.val_score, "seed": 0}
    assert model.dropout_rates == pytest.approx([0.1, 0.2, 0.3, 0.0]) and not model.training
    x = digits.test[0][:64]
    assert torch.equal(model(x), result.model.cpu()(x))  # trained on CUDA where there is one
    assert not list(tmp_path.glob("sub/*.tmp"))


def test_checkpoint_refuses_pickled_objects(tmp_path):
    import argparse

    torch.save({"format": 1, "spec": argparse.Namespace(cmd="rm -rf /")}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match=r"can load safely: it holds Python objects \(argparse.Namespace\)"):
        models.load_checkpoint(tmp_path / "evil.pt")
    (tmp_path / "text.pt").write_text("not a torch file")
    with pytest.raises(ValueError, match=r"text.pt is not a checkpoint this tool can load safely: torch.load cannot"):
        models.load_checkpoint(tmp_path / "text.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "plain.pt")
    with pytest.raises(ValueError, match=r"plain.pt is not a checkpoint of format 1 .*found format None"):
        models.load_checkpoint(tmp_path / "plain.pt")
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        models.load_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="models.build"):
        models.save_checkpoint(tmp_path / "x.pt", torch.nn.Linear(2, 2))


def test_hardware_aware_noise_goes_to_the_layers_a_chip_maps():
    # every weight a chip holds gets training's noise, once: a layer used twice once, an
    # attention block's projections (q, k, v of its packed in_proj_weight, out_proj) too
    import warnings

    from torch import nn

    import crossbar
    from models.training import _crossbar_weights

    shared = nn.Linear(8, 8)
    model = nn.ModuleDict({"att": nn.MultiheadAttention(8, 2), "a": shared, "b": shared, "fc": nn.Linear(8, 3)})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing stays digital
        converted = crossbar.convert(model, "ideal")
    on_chip = [name for name, m in converted.module.named_modules(remove_duplicate=False)
               if isinstance(m, crossbar.CrossbarLinear)]
    assert on_chip == ["att.q_proj", "att.k_proj", "att.v_proj", "att.out_proj", "a", "b", "fc"]
    assert [(name, parts) for name, _, parts in _crossbar_weights(model)] == [
        ("a.weight", 1), ("fc.weight", 1), ("att.in_proj_weight", 3), ("att.out_proj.weight", 1)]


def test_hardware_aware_training_perturbs_attention_projections():
    # a network that is one attention block (no other layer a chip maps), trained
    # hardware-aware under log-normal drift: it learns from noisy copies of its
    # projections, so it ends elsewhere than plain training's
    from torch import nn

    class Att(nn.Module):
        def __init__(self):
            super().__init__()
            self.att = nn.MultiheadAttention(4, 1, batch_first=True)

        def forward(self, x):
            return self.att(x, x, x, need_weights=False)[0].mean(1)[:, :2]  # two class scores

    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 3, 4, generator=gen), torch.randint(0, 2, (64,), generator=gen)
    trained = {}
    for hwa in (None, models.HardwareAware(preset="lognormal", t_inference=1.0, warmup=0.0)):
        torch.manual_seed(0)
        net = Att()
        result = models.train(net, (x, y), models.TrainConfig(epochs=2, hardware_aware=hwa), seed=0)
        trained[hwa is None] = result.model.att.in_proj_weight.detach().clone()
    assert not torch.equal(trained[True], trained[False])
