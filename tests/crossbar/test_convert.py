"""What crossbar.convert maps, leaves digital, warns about and refuses: never a silently
different network (issue 31)."""

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import crossbar

NOISY = crossbar.preset("lognormal", sigma=0.5)


class ScaledLinear(nn.Linear):
    """A Linear with a computation of its own around the product."""

    def forward(self, x):
        return 2.0 * super().forward(x) + 1.0


class StdConv2d(nn.Conv2d):
    """timm's weight-standardised convolution: its forward changes the weight."""

    def forward(self, x):
        w = self.weight
        w = (w - w.mean(dim=(1, 2, 3), keepdim=True)) / (w.std(dim=(1, 2, 3), keepdim=True) + 1e-5)
        return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)


class SameConv2d(nn.Conv2d):
    """Only ``_conv_forward`` overridden, as timm's Conv2dSame does (here: a doubled output)."""

    def _conv_forward(self, x, weight, bias):
        return 2 * super()._conv_forward(x, weight, bias)


class Net(nn.Module):
    def __init__(self, conv: type = nn.Conv2d, head: type = nn.Linear):
        super().__init__()
        self.conv = conv(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 16)
        self.head = head(16, 10)

    def forward(self, x):
        return self.head(torch.relu(self.fc(torch.relu(self.conv(x)).flatten(1))))


def _run(xmodel, x, n_chips=2, seed=0):
    xmodel.program(n_chips, seed=seed).drift(1.0)
    with torch.no_grad():
        return xmodel(x)


@pytest.mark.parametrize("conv, head, layer", [(nn.Conv2d, ScaledLinear, "head"), (StdConv2d, nn.Linear, "conv"),
                                               (SameConv2d, nn.Linear, "conv")])
def test_a_layer_with_its_own_forward_stays_digital_and_is_named(conv, head, layer):
    torch.manual_seed(0)
    model = Net(conv, head).eval()
    x = torch.randn(5, 1, 8, 8)
    name = type(getattr(model, layer)).__name__
    with pytest.warns(UserWarning, match=rf"layer {layer} \({name}, its own forward\) stays digital"):
        exact = crossbar.convert(model, "ideal")
    # its own computation kept: under the ideal preset the network computes as the digital one
    assert type(getattr(exact.module, layer)) is type(getattr(model, layer))
    with torch.no_grad():
        assert torch.allclose(_run(exact, x), model(x).expand(2, -1, -1), atol=1e-5)
    assert [n for n, _ in crossbar.unmapped_layers(model)] == [layer]
    assert layer not in [n for n, _ in crossbar.mapped_layers(model)]
    with pytest.warns(UserWarning, match=rf"{layer} \({name}, its own forward\)"):
        noisy = crossbar.convert(model, NOISY)
    assert len(noisy.crossbar_layers) == 2  # the other two layers are on crossbars, and noisy
    with torch.no_grad():
        assert not torch.allclose(_run(noisy, x), model(x).expand(2, -1, -1), atol=1e-3)


def test_a_model_of_only_own_forward_layers_is_refused_with_their_names():
    with pytest.raises(ValueError, match=r"no nn.Linear, nn.Conv2d or nn.MultiheadAttention layer .*0 "
                                         r"\(ScaledLinear, its own forward\)"):
        crossbar.convert(nn.Sequential(ScaledLinear(4, 2)), "pcm")


class TiedHead(nn.Module):
    """A forward that reads a mapped layer's weight directly (a tied head)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Linear(8, 8)
        self.out = nn.Linear(8, 4)

    def forward(self, x):
        return F.linear(torch.relu(self.body(x)), self.out.weight, self.out.bias)


class AllDirect(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        return F.linear(x, self.fc.weight)


@pytest.mark.parametrize("strategy", ["loop", "fold"])
@pytest.mark.parametrize("preset", ["ideal", NOISY])
def test_a_crossbar_the_forward_never_runs_is_named(preset, strategy):
    torch.manual_seed(0)
    x, y = torch.randn(20, 8), torch.randint(0, 4, (20,))
    with pytest.warns(UserWarning, match=r"layer out \(CrossbarLinear\) did not run .*F.linear\(x, self.fc.weight\)"):
        crossbar.evaluate(TiedHead().eval(), (x, y), preset, [1.0], n_chips=3, strategy=strategy)
    with pytest.raises(ValueError, match=r"no crossbar layer ran in AllDirect.s forward pass \(fc \(CrossbarLinear"):
        crossbar.evaluate(AllDirect().eval(), (x, y), preset, [1.0], n_chips=3, strategy=strategy)


def test_every_crossbar_of_a_network_that_runs_them_all_is_quiet(recwarn):
    torch.manual_seed(0)
    model = Net().eval()
    crossbar.evaluate(model, (torch.randn(6, 1, 8, 8), torch.randint(0, 10, (6,))), NOISY, [1.0], n_chips=2)
    assert not [w for w in recwarn if "did not run" in str(w.message)]


class Pair(nn.Module):
    def __init__(self, as_dict: bool = False):
        super().__init__()
        self.fc = nn.Linear(8, 4)
        self.as_dict = as_dict

    def forward(self, x):
        logits = self.fc(x)
        return {"features": x, "logits": logits} if self.as_dict else (logits, x)


@pytest.mark.parametrize("strategy", ["loop", "fold"])
def test_tuple_and_dict_outputs_get_one_line_or_an_output_selector(strategy):
    torch.manual_seed(0)
    x, y = torch.randn(30, 8), torch.randint(0, 4, (30,))
    plain, keys = Pair(), Pair(as_dict=True)
    keys.load_state_dict(plain.state_dict())
    with pytest.raises(ValueError, match=r"^Pair returns a tuple of 2, not a tensor: pass output=<index or key>"):
        crossbar.evaluate(plain, (x, y), NOISY, [1.0], n_chips=3, strategy=strategy)
    with pytest.raises(ValueError, match=r"^Pair returns a dict with keys 'features', 'logits', not a tensor"):
        crossbar.evaluate(Pair(as_dict=True), (x, y), NOISY, [1.0], n_chips=3, strategy=strategy)
    expected = crossbar.evaluate(nn.Sequential(plain.fc), (x, y), NOISY, [1.0], n_chips=3, strategy=strategy)
    picked = crossbar.evaluate(plain, (x, y), NOISY, [1.0], n_chips=3, strategy=strategy, output=0)
    keyed = crossbar.evaluate(keys, (x, y), NOISY, [1.0], 3, strategy=strategy, output="logits")
    assert np.array_equal(picked, expected)
    assert np.array_equal(keyed, expected)
    with pytest.raises(ValueError, match=r"output='scores': the model returns no such element; it has "
                                         r"\['features', 'logits'\]"):
        crossbar.evaluate(Pair(as_dict=True), (x, y), NOISY, [1.0], 3, strategy=strategy, output="scores")
    with pytest.raises(ValueError, match="output must be an index"):
        crossbar.convert(plain, NOISY, output=1.5)


def test_a_model_that_cannot_run_folded_runs_in_a_loop_with_a_warning():
    torch.manual_seed(0)
    vit = torchvision.models.VisionTransformer(image_size=8, patch_size=4, num_layers=1, num_heads=2, hidden_dim=8,
                                               mlp_dim=16, num_classes=10).eval()
    x, y = torch.randn(12, 3, 8, 8), torch.randint(0, 10, (12,))
    with pytest.warns(UserWarning) as caught:
        folded = crossbar.evaluate(vit, (x, y), NOISY, [1.0, 100.0], n_chips=3, strategy="fold")
    lines = [str(w.message) for w in caught]
    assert any(line.startswith("crossbar: VisionTransformer cannot run with its chips folded into the batch (")
               and line.endswith("its chips run one after another instead (strategy='loop')") for line in lines)
    assert not any("stays digital" in line for line in lines)  # its attention is on the crossbars too
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        looped = crossbar.evaluate(vit, (x, y), NOISY, [1.0, 100.0], n_chips=3, strategy="loop")
    assert np.array_equal(folded, looped)


@pytest.mark.parametrize("strategy", ["loop", "fold"])
def test_inputs_of_the_wrong_shape_name_the_layer_and_what_it_takes(strategy):
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10)).eval()
    y = torch.randint(0, 10, (6,))
    with pytest.raises(ValueError, match=r"^data: inputs of shape \(1, 7, 7\) reach layer '1' \(CrossbarLinear, "
                                         r"which takes 64 input features\) as \(1, 49\), which it cannot take: "):
        crossbar.evaluate(mlp, (torch.randn(6, 7, 7), y), NOISY, [1.0], n_chips=2, strategy=strategy)
    with pytest.raises(ValueError, match=r"^data: inputs of shape \(1, 3, 8, 8\) reach layer 'conv' \(CrossbarConv2d, "
                                         r"which takes 1 input channels\) as \(1, 3, 8, 8\)"):
        crossbar.evaluate(Net().eval(), (torch.randn(6, 3, 8, 8), y), NOISY, [1.0], n_chips=2, strategy=strategy)
    xmodel = crossbar.convert(mlp, NOISY, strategy=strategy)
    with pytest.raises(ValueError, match=r"^inputs of shape \(4, 7, 7\) reach layer '1'"):  # the model itself, too
        _run(xmodel, torch.randn(4, 7, 7))


def test_an_absurd_number_of_chips_is_refused_before_anything_is_allocated():
    mlp = nn.Sequential(nn.Linear(8, 4)).eval()
    data = (torch.randn(5, 8), torch.randint(0, 4, (5,)))
    with pytest.raises(ValueError, match=r"^n_chips=1,000,000,000,000 over 2 time\(s\) needs about 14.6 TiB .* "
                                         r"more than the .* of memory available .*evaluate fewer chips$"):
        crossbar.evaluate(mlp, data, "pcm", [1.0, 2.0], n_chips=10**12)
    with pytest.raises(ValueError, match=r"^max_memory=100 bytes \(100 B\) is less than one chip of this network needs "
                                         r"\(about .*\); raise max_memory$"):
        crossbar.evaluate(mlp, data, "pcm", [1.0], n_chips=4, max_memory=100)


def test_the_converted_model_shares_no_tensor_with_the_original():
    """Nothing of the converted model aliases the user's model: not the crossbars, not a
    layer placed digital, not an embedding tied to a mapped head (a later change to the
    user's weights does not reach the chips)."""

    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(6, 4)
            self.body = nn.Linear(4, 4)
            self.keep = nn.Linear(4, 4)
            self.head = nn.Linear(4, 6, bias=False)
            self.head.weight = self.embed.weight

        def forward(self, x):
            return self.head(self.keep(self.body(self.embed(x))))

    model = Tied()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xmodel = crossbar.convert(model, "ideal", digital=["keep"])
    ours = {t.data_ptr() for t in model.state_dict().values()}
    theirs = [name for name, t in xmodel.state_dict().items() if t.data_ptr() in ours]
    assert theirs == []
    before = xmodel.state_dict()
    before = {k: v.clone() for k, v in before.items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    assert all(torch.equal(before[k], v) for k, v in xmodel.state_dict().items())
