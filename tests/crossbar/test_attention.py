"""nn.MultiheadAttention on crossbars: its projections are crossbar layers that run, the
attention between them is torch's own, folded and looped alike."""

import pytest
import torch
from torch import nn

import crossbar
from crossbar.attention import CrossbarMultiheadAttention

E, HEADS = 8, 2
NOISY = crossbar.get_preset("pcm", **crossbar.AIHWKIT_PERIPHERY)
TIGHT = dict(rtol=1e-5, atol=1e-6)


def _run(xmodel, x, n_chips=3, seed=0, first_chip=0, t=3600.0):
    xmodel.program(n_chips, seed, first_chip).drift(t)
    with torch.no_grad():
        return xmodel(x)


class AttentionNet(nn.Module):
    """A projection, attention (self- or cross-, with a padding mask and a causal 2-d or a
    per-head 3-d mask) and a head; ``weights`` returns the attention weights as well."""

    def __init__(self, batch_first: bool, cross: bool, mask: str = "2d", weights: bool = False):
        super().__init__()
        self.batch_first, self.cross, self.mask, self.weights = batch_first, cross, mask, weights
        self.pre = nn.Linear(E, E)
        extra = dict(kdim=6, vdim=5, add_bias_kv=True, add_zero_attn=True) if cross else {}
        self.att = nn.MultiheadAttention(E, HEADS, batch_first=batch_first, **extra)
        if cross:
            self.to_k, self.to_v = nn.Linear(E, 6), nn.Linear(E, 5)
        self.head = nn.Linear(E, 3)

    def forward(self, x):
        h = self.pre(x)
        k, v = (self.to_k(x), self.to_v(x)) if self.cross else (h, h)
        features = x[..., 0] if self.batch_first else x[..., 0].T  # (N, L) of the model's own input
        n, length = features.shape
        padding = features > 0.8
        padding[:, 0] = False  # every query sees at least one key
        causal = torch.ones(length, length, dtype=torch.bool).triu(1)
        if self.mask == "3d":  # each sequence and head its own
            heads = torch.arange(n * HEADS).view(-1, 1, 1)
            mask = causal | ((heads % 3 == 1) & (torch.arange(length) == 1))
        else:
            mask = causal
        y, w = self.att(h, k, v, key_padding_mask=padding, attn_mask=mask, need_weights=self.weights,
                        average_attn_weights=self.mask == "2d")
        out = self.head(y)
        return (out, w) if self.weights else out


CASES = [(bf, cross, mask) for bf in (True, False) for cross in (False, True) for mask in ("2d", "3d")]


@pytest.mark.filterwarnings("error")  # every crossbar runs; no fold-to-loop fallback
@pytest.mark.parametrize("strategy", ["fold", "loop"])
@pytest.mark.parametrize("batch_first, cross, mask", CASES)
def test_ideal_attention_gives_torchs_outputs(batch_first, cross, mask, strategy):
    torch.manual_seed(0)
    model = AttentionNet(batch_first, cross, mask).eval()
    x = torch.randn(4, 5, E, generator=torch.Generator().manual_seed(1))  # (N, L) or (L, N)
    xmodel = crossbar.convert(model, "ideal", strategy=strategy)
    att = xmodel.module.att
    assert isinstance(att, CrossbarMultiheadAttention)
    assert [type(getattr(att, p)) for p in ("q_proj", "k_proj", "v_proj", "out_proj")] == [crossbar.CrossbarLinear] * 4
    with torch.no_grad():
        expected = model(x)
    torch.testing.assert_close(_run(xmodel, x), expected.expand(3, *expected.shape), **TIGHT)
    assert all(layer.ran for layer in xmodel.crossbar_layers)


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("strategy", ["fold", "loop"])
@pytest.mark.parametrize("mask", ["2d", "3d"])
def test_ideal_attention_weights_are_torchs(mask, strategy):
    torch.manual_seed(0)
    model = AttentionNet(True, True, mask, weights=True).eval()
    x = torch.randn(4, 5, E, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out, w = model(x)
    assert w.shape == ((4, 5, 5 + 2) if mask == "2d" else (4, HEADS, 5, 5 + 2))  # bias_kv and zero_attn columns
    for index, expected in enumerate((out, w)):
        got = _run(crossbar.convert(model, "ideal", strategy=strategy, output=index), x)
        torch.testing.assert_close(got, expected.expand(3, *expected.shape), **TIGHT)


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("strategy", ["fold", "loop"])
@pytest.mark.parametrize("batch_first", [True, False])
def test_transformer_encoder_runs_its_attention_on_the_crossbars(batch_first, strategy):
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(E, HEADS, dim_feedforward=16, dropout=0.0, batch_first=batch_first)
    model = nn.TransformerEncoder(layer, 2, enable_nested_tensor=batch_first).eval()
    x = torch.randn(4, 6, E, generator=torch.Generator().manual_seed(3))
    padding = torch.zeros((4, 6) if batch_first else (6, 4), dtype=torch.bool)  # (N, S)
    padding[:, -2:] = True  # the last keys of every sequence: the nested-tensor path would take it

    class Net(nn.Module):  # an embedding first, as a transformer has: the residuals then see folded chips
        def __init__(self):
            super().__init__()
            self.embed = nn.Linear(E, E)
            self.encoder = model

        def forward(self, x):
            return self.encoder(self.embed(x), src_key_padding_mask=padding)

    net = Net().eval()
    torch.backends.mha.set_fastpath_enabled(False)  # torch's per-module path: padded positions not zeroed
    try:
        with torch.no_grad():
            expected = net(x)
    finally:
        torch.backends.mha.set_fastpath_enabled(True)
    xmodel = crossbar.convert(net, "ideal", strategy=strategy)
    assert sum(isinstance(m, CrossbarMultiheadAttention) for m in xmodel.modules()) == 2
    assert len(xmodel.crossbar_layers) == 1 + 2 * (4 + 2)  # the embedding; q, k, v, out, two feed-forward layers
    torch.testing.assert_close(_run(xmodel, x), expected.expand(3, *expected.shape), rtol=1e-5, atol=1e-5)
    assert all(layer.ran for layer in xmodel.crossbar_layers)


@pytest.mark.filterwarnings("error")
def test_a_model_that_is_one_attention_block_converts():
    torch.manual_seed(0)
    att = nn.MultiheadAttention(E, HEADS, batch_first=True).eval()
    x = torch.randn(3, 5, E)
    for strategy in ("fold", "loop"):
        xmodel = crossbar.convert(att, "ideal", strategy=strategy, output=0)  # key and value default to the query
        assert isinstance(xmodel.module, CrossbarMultiheadAttention)
        torch.testing.assert_close(_run(xmodel, x), att(x, x, x)[0].detach().expand(3, -1, -1, -1), **TIGHT)
    att = nn.MultiheadAttention(E, HEADS)
    unbatched = crossbar.convert(att, "ideal", strategy="fold", output=0)
    x = torch.randn(5, E)  # one sequence: (L, E)
    torch.testing.assert_close(_run(unbatched, x), att(x, x, x)[0].detach().expand(3, -1, -1), **TIGHT)


def test_projections_take_the_numbers_after_every_other_layer():
    torch.manual_seed(0)
    model = AttentionNet(True, True)
    xmodel = crossbar.convert(model, NOISY)
    m = xmodel.module
    assert [m.pre.index, m.to_k.index, m.to_v.index, m.head.index] == [0, 1, 2, 3]  # as without the attention
    assert [getattr(m.att, p).index for p in ("q_proj", "k_proj", "v_proj", "out_proj")] == [4, 5, 6, 7]
    assert crossbar.mapped_layers(model)[-1][0] == "head"
    assert [name for name, _ in crossbar.attention.mapped_attention(model)] == ["att"]
    assert crossbar.unmapped_layers(model) == []


def test_attention_placed_digital_stays_as_it_was():
    torch.manual_seed(0)
    model = AttentionNet(True, False).eval()
    xmodel = crossbar.convert(model, NOISY, digital=["att"])
    assert type(xmodel.module.att) is nn.MultiheadAttention and xmodel.module.head.index == 1
    exact = crossbar.convert(model, "ideal", digital=["att"])
    x = torch.randn(4, 5, E)
    with torch.no_grad():
        torch.testing.assert_close(_run(exact, x), model(x).expand(3, -1, -1, -1), **TIGHT)
    with pytest.raises(ValueError, match=r"digital: 'attn' is not a mapped layer .* att"):
        crossbar.convert(model, NOISY, digital=["attn"])


@pytest.mark.parametrize("batch_first", [True, False])
def test_noisy_attention_folded_and_looped_alike_and_chips_keep_their_identity(batch_first):
    torch.manual_seed(0)
    model = AttentionNet(batch_first, True, "3d").eval()
    x = torch.randn(4, 5, E, generator=torch.Generator().manual_seed(4))
    folded = _run(crossbar.convert(model, NOISY, strategy="fold"), x, n_chips=4, seed=3)
    looped = _run(crossbar.convert(model, NOISY, strategy="loop"), x, n_chips=4, seed=3)
    assert torch.equal(folded, looped)
    assert not torch.equal(folded[0], folded[1])
    xmodel = crossbar.convert(model, NOISY)
    assert torch.equal(_run(xmodel, x, n_chips=2, seed=3), folded[:2])
    assert torch.equal(_run(xmodel, x, n_chips=2, seed=3, first_chip=2), folded[2:])


def test_cost_says_that_attention_is_not_priced():
    torch.manual_seed(0)
    model = AttentionNet(True, False).eval()
    preset = crossbar.preset("pcm", read_time=100e-9, read_voltage=0.2, tech_node=32, **crossbar.AIHWKIT_PERIPHERY)
    x = torch.randn(2, 5, E)
    with pytest.raises(ValueError, match=r"layer 'att' \(MultiheadAttention\): attention's projections on "
                                         r"crossbars are not priced; place it digital \(digital=\['att'\]\)"):
        crossbar.cost(model, preset, x)
    priced = crossbar.cost(model, preset, x, digital=["att"])
    assert priced.digital == ("att (MultiheadAttention)",)
    assert set(priced.by_layer()) == {"pre", "head"}


def test_calibrating_chips_fit_the_projections_folded_and_looped_alike():
    torch.manual_seed(0)
    model = AttentionNet(False, True, "2d").eval()
    chip = crossbar.get_preset("reram_cmo", **crossbar.AIHWKIT_PERIPHERY, calibration="at_inference",
                               input_range_percentile=99.0)
    x, reference = torch.randn(4, 5, E), torch.randn(32, 5, E)
    runs = [_run(crossbar.convert(model, chip, strategy=s).calibrate_with(reference), x) for s in ("fold", "loop")]
    assert torch.equal(*runs)
    calibrated = crossbar.convert(model, chip).calibrate_with(reference).program(1).drift(1.0)
    assert all(layer.correction is not None and layer.input_range is not None for layer in calibrated.crossbar_layers)


def test_log_normal_attention_in_distribution_against_torch_with_drawn_weights():
    # An independent computation: torch's own nn.MultiheadAttention with each projection
    # weight multiplied by exp(theta), theta ~ N(0, sigma^2) per weight (the log-normal
    # preset's physics on a single pair from 0 uS), biases exact. The chips' outputs and
    # these follow one distribution: KS test on four outputs over 400 chips each.
    from scipy.stats import ks_2samp
    from torch.func import functional_call

    sigma, n = 0.3, 400
    torch.manual_seed(0)
    att = nn.MultiheadAttention(E, HEADS, batch_first=True).eval()
    x = torch.randn(1, 4, E, generator=torch.Generator().manual_seed(1))
    xmodel = crossbar.convert(att, crossbar.get_preset("lognormal", sigma=sigma), output=0)
    chips = _run(xmodel, x, n_chips=n, seed=5)[:, 0]  # (chips, L, E)
    gen = torch.Generator().manual_seed(6)
    names = ("in_proj_weight", "out_proj.weight")
    drawn = []
    with torch.no_grad():
        for _ in range(n):
            params = {k: v * torch.exp(sigma * torch.randn(v.shape, generator=gen))
                      for k, v in att.named_parameters() if k in names}
            drawn.append(functional_call(att, params, (x, x, x), {"need_weights": False})[0][0])
    drawn = torch.stack(drawn)
    for index in [(0, 0), (1, 3), (2, 5), (3, 7)]:
        a, b = chips[(slice(None), *index)].numpy(), drawn[(slice(None), *index)].numpy()
        assert ks_2samp(a, b).pvalue > 1e-3, index
    # and not the digital network's: the spread over chips is the devices'
    assert chips.std(0).mean() > 0.05 * chips.abs().mean()
