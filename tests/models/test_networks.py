"""Networks: shapes for every dataset shape, dropout slots, options, bad input."""

import pytest
import torch

import crossbar
import models
from models.networks import ACTIVATIONS, NORMS

SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32)]  # digits, MNIST-like, CIFAR/GTSRB-like
SMALL = {
    "vgg11": {"width": 0.125},
    "vgg": {"width": 0.125, "depth": 13},
    "resnet20": {"width": 0.5},
    "resnet": {"depth": 8},
}
EXPECTED_SLOTS = {
    "mlp": ["fc1", "fc2"],
    "lenet5": ["conv1", "conv2", "fc1", "fc2"],
    "vgg11": ["stage1", "stage2", "stage3", "stage4", "stage5", "fc1"],
    "resnet20": [f"stage{s}_block{b}" for s in (1, 2, 3) for b in (1, 2, 3)],
}


@pytest.mark.parametrize("name", [n for n in models.list_models() if models.model_task(n) == "classification"])
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_shapes_for_every_network_and_dataset_shape(name, shape):
    torch.manual_seed(0)
    net = models.build(name, shape, 7, **SMALL.get(name, {})).eval()
    out = net(torch.randn(3, *shape))
    assert out.shape == (3, 7) and torch.isfinite(out).all()


@pytest.mark.parametrize("name, slots", EXPECTED_SLOTS.items())
def test_slots_are_named_where_the_paper_places_them(name, slots):
    assert models.build(name, (3, 32, 32), 10, **SMALL.get(name, {})).dropout_slots == slots


def test_rates_set_each_slot():
    net = models.build("lenet5", (1, 28, 28), 10, dropout=[0.1, 0.2, 0.3, 0.0])
    assert net.dropout_rates == [0.1, 0.2, 0.3, 0.0]
    assert net.set_dropout({"fc2": 0.5}).dropout_rates == [0.1, 0.2, 0.3, 0.5]
    assert net.set_dropout(0.25).dropout_rates == [0.25] * 4
    # the rates act in training mode only
    net.set_dropout(0.9).train()
    x = torch.randn(64, 1, 28, 28)
    assert not torch.equal(net(x), net(x))
    net.eval()
    assert torch.equal(net(x), net(x))


@pytest.mark.parametrize(
    "dropout, match",
    [
        ([0.1, 0.2], r"2 rate\(s\) given for 4 slot\(s\) \(conv1, conv2, fc1, fc2\)"),
        ([0.1, 0.2, 0.3, 1.0], r"rate of slot 'fc2' must lie in \[0, 1\), got 1.0"),
        (-0.1, r"must lie in \[0, 1\)"),
        (float("nan"), r"must lie in \[0, 1\)"),
        ({"fc9": 0.1}, r"unknown slot\(s\) 'fc9'; slots: conv1, conv2, fc1, fc2"),
    ],
)
def test_bad_rates_are_rejected(dropout, match):
    with pytest.raises(ValueError, match=match):
        models.build("lenet5", (1, 28, 28), 10, dropout=dropout)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(name="alexnet"), r"unknown model 'alexnet'; valid models: fcos, lenet5, mlp, resnet"),
        (dict(name="mlp", activation="swish"), r"activation: unknown 'swish'; valid: relu, tanh"),
        (dict(name="mlp", norm="instance"), r"norm: unknown 'instance'; valid: none, batch, layer, group"),
        (dict(name="lenet5", depth=3), r"lenet5: unknown option\(s\) depth; valid: activation, norm"),
        (dict(name="resnet", depth=21), r"depth must be 6n \+ 2"),
        (dict(name="vgg", depth=12), r"depth must be one of 11, 13, 16"),
        (dict(name="mlp", in_shape=(28, 28)), r"in_shape must be \(channels, height, width\)"),
        (dict(name="mlp", n_classes=1), r"n_classes must be an integer >= 2"),
        (dict(name="lenet5", in_shape=(1, 3, 40)), r"lenet5: images must be at least 4x4, got 3x40"),
    ],
)
def test_bad_models_and_options_get_one_clear_line(kwargs, match):
    args = {"name": "mlp", "in_shape": (1, 8, 8), "n_classes": 10, **kwargs}
    with pytest.raises(ValueError, match=match):
        models.build(args.pop("name"), args.pop("in_shape"), args.pop("n_classes"), **args)


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_component_study_options_build_and_run(norm, activation):
    net = models.build("mlp", (1, 8, 8), 10, norm=norm, activation=activation, depth=3, width=16)
    assert len(net.dropout_slots) == 3
    assert net.train()(torch.randn(4, 1, 8, 8)).shape == (4, 10)


def test_same_seed_same_weights_and_networks_map_onto_crossbars():
    torch.manual_seed(3)
    a = models.build("resnet20", (3, 32, 32), 10, width=0.5)
    torch.manual_seed(3)
    b = models.build("resnet20", (3, 32, 32), 10, width=0.5)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    x = torch.randn(2, 3, 32, 32)
    out = crossbar.convert(a.eval(), "ideal").program(2).drift(1.0)(x)
    torch.testing.assert_close(out, a(x).expand(2, 2, 10), rtol=1e-5, atol=1e-5)
