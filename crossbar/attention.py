"""``nn.MultiheadAttention`` on crossbars: its four projections on tiles, the rest digital.

:func:`crossbar.convert` replaces each ``nn.MultiheadAttention`` by a
:class:`CrossbarMultiheadAttention`: the query, key and value projections (the rows of
the packed ``in_proj_weight``, or ``q_proj_weight``, ``k_proj_weight``,
``v_proj_weight`` when ``kdim``/``vdim`` differ) and ``out_proj`` are four
:class:`~crossbar.layers.CrossbarLinear` layers; the attention between them (heads,
scores, masks, softmax, dropout, ``bias_k``/``bias_v``, ``add_zero_attn``) is digital
and exact: torch's own ``F.multi_head_attention_forward`` computes it, with identity
projections, so every option of ``nn.MultiheadAttention`` means what it means there.

With the chips folded into the batch (``fold``) a tensor's first dimension is its
chips times the model's batch (or the model's batch, shared by all chips); the module
brings queries, keys and values into batch-first form with the chips in the batch
before projecting them, repeats a batch's masks for every chip, and returns its outputs
in the layout of its inputs, the chips folded into their first dimension.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .common import check_weight
from .layers import CrossbarLayer, CrossbarLinear
from .presets import Preset

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "out_proj")  # in the order of their layer numbers


def own_attention_forward(module: nn.Module) -> bool:
    """True for a subclass of ``nn.MultiheadAttention`` that computes its own way (its
    class overrides ``forward``): it stays digital, as a Linear with its own forward does."""
    return isinstance(module, nn.MultiheadAttention) and type(module).forward is not nn.MultiheadAttention.forward


def mapped_attention(model: nn.Module) -> list[tuple[str, nn.MultiheadAttention]]:
    """``(name, block)`` of every ``nn.MultiheadAttention`` :func:`crossbar.convert` maps,
    in ``model.modules()`` order (name ``""`` for the model itself; a block registered
    under two names is listed under both). Its four projections become crossbar layers
    numbered after every layer :func:`crossbar.mapped_layers` lists."""
    return [(name, m) for name, m in model.named_modules(remove_duplicate=False)
            if isinstance(m, nn.MultiheadAttention) and not own_attention_forward(m)]


def no_fast_path(module: nn.Module) -> None:
    """Keep torch's fused transformer kernels off the crossbars: an
    ``nn.TransformerEncoderLayer`` (and an ``nn.TransformerEncoder``'s nested tensors)
    that holds a crossbar layer runs its modules one by one. The fused kernel reads
    ``linear1.weight`` and the attention's weights itself, so the chips' devices would
    not act there."""
    for m in module.modules():
        if isinstance(m, (nn.TransformerEncoder, nn.TransformerEncoderLayer)) and \
                any(isinstance(x, CrossbarLayer) for x in m.modules()):
            if isinstance(m, nn.TransformerEncoder):
                m.use_nested_tensor = False
            else:
                m.activation_relu_or_gelu = 0  # the check the fast path makes; the activation is unchanged


class CrossbarMultiheadAttention(nn.Module):
    """``nn.MultiheadAttention`` whose projections run on crossbars (:mod:`crossbar.attention`).

    Takes the arguments of ``nn.MultiheadAttention.forward`` and returns what it returns,
    ``(output, weights or None)``; ``key`` and ``value`` default to ``query`` (so a model
    that is one attention block runs on one input). It has ``batch_first`` and says
    ``_qkv_same_embed_dim = False`` and ``in_proj_weight = in_proj_bias = None``, so that
    ``nn.TransformerEncoderLayer`` does not take its fused fast path, which would read
    the projection weights directly and compute them digitally.
    """

    def __init__(self, attention: nn.MultiheadAttention, preset: Preset, index: int, name: str = "attention"):
        """The projections take the layer numbers ``index`` .. ``index + 3`` (q, k, v, out)."""
        super().__init__()
        e = attention.embed_dim
        if attention._qkv_same_embed_dim:
            w = check_weight(attention.in_proj_weight, f"layer {name!r} (MultiheadAttention): in_proj_weight")
            weights = list(w.detach().chunk(3))
        else:
            weights = [check_weight(getattr(attention, f"{p}_proj_weight"),
                                    f"layer {name!r} (MultiheadAttention): {p}_proj_weight").detach() for p in "qkv"]
        check_weight(attention.out_proj.weight, f"layer {name!r} (MultiheadAttention): out_proj.weight")
        biases = [None] * 3 if attention.in_proj_bias is None else list(attention.in_proj_bias.detach().chunk(3))
        self.q_proj = CrossbarLinear(weights[0], biases[0], preset, index)
        self.k_proj = CrossbarLinear(weights[1], biases[1], preset, index + 1)
        self.v_proj = CrossbarLinear(weights[2], biases[2], preset, index + 2)
        self.out_proj = CrossbarLinear(attention.out_proj.weight, attention.out_proj.bias, preset, index + 3)
        self.embed_dim, self.kdim, self.vdim = e, attention.kdim, attention.vdim
        self.num_heads, self.head_dim = attention.num_heads, attention.head_dim
        self.dropout, self.batch_first, self.add_zero_attn = attention.dropout, attention.batch_first, \
            attention.add_zero_attn
        for b in ("bias_k", "bias_v"):  # added to the projected keys and values: digital
            value = getattr(attention, b)
            self.register_buffer(b, None if value is None else value.detach().clone())
        # what torch's fast paths check first: they would read in_proj_weight themselves
        self._qkv_same_embed_dim = False
        self.in_proj_weight: Optional[Tensor] = None
        self.in_proj_bias: Optional[Tensor] = None
        self.training = attention.training

    # --- the chips' layout ----------------------------------------------------

    def _rows(self, t: Tensor, batched: bool) -> tuple[Tensor, int]:
        """``t`` batch-first, ``(Cx * N, length, features)``, and ``Cx``: the chips its
        first dimension holds (1: the model's own batch, which all chips share)."""
        ctx = self.out_proj._ctx
        n_x = 1
        if ctx.chip is None and ctx.digital is None and ctx.n_chips > 1:  # fold
            outer = t.shape[0]
            if outer == ctx.n_chips * ctx.batch:
                n_x = ctx.n_chips
            elif outer != ctx.batch:
                raise RuntimeError(
                    f"{type(self).__name__}: input of shape {tuple(t.shape)}: its first dimension {outer} is neither "
                    f"the model's batch ({ctx.batch}) nor chips x batch ({ctx.n_chips * ctx.batch}); "
                    "use strategy='loop' for models that reshape the batch dimension")
        if not batched:  # (Cx * L, E): one sequence a chip
            return t.unflatten(0, (n_x, -1)), n_x
        if self.batch_first:
            return t, n_x
        return t.unflatten(0, (n_x, -1)).transpose(1, 2).flatten(0, 1), n_x  # (Cx * L, N, E) -> (Cx * N, L, E)

    def _project(self, layer: CrossbarLinear, t: Tensor, batch: int) -> Tensor:
        """``layer`` on batch-first ``t`` of ``batch`` sequences a chip (fold: the layer
        tells folded from shared inputs by the batch, which is the model's batch
        elsewhere)."""
        ctx = layer._ctx
        if ctx.chip is not None or ctx.digital is not None:
            return layer(t)
        model_batch, ctx.batch = ctx.batch, batch  # fold runs in one thread
        try:
            return layer(t)
        finally:
            ctx.batch = model_batch

    @staticmethod
    def _repeat(mask: Optional[Tensor], rows: int, chips: int) -> Optional[Tensor]:
        """A mask of one batch (``rows`` in its first dimension) for every chip, chip-major."""
        if mask is None or chips == 1 or mask.shape[0] != rows:
            return mask
        return mask.repeat(chips, *(1,) * (mask.dim() - 1))

    # --- forward --------------------------------------------------------------

    def forward(self, query: Tensor, key: Optional[Tensor] = None, value: Optional[Tensor] = None,
                key_padding_mask: Optional[Tensor] = None, need_weights: bool = True,
                attn_mask: Optional[Tensor] = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[Tensor, Optional[Tensor]]:
        key = query if key is None else key
        value = key if value is None else value
        batched = query.dim() == 3
        # nn.MultiheadAttention's own canonical masks (bool -> float -inf), before any repeat
        key_padding_mask = F._canonical_mask(mask=key_padding_mask, mask_name="key_padding_mask",
                                             other_type=F._none_or_dtype(attn_mask), other_name="attn_mask",
                                             target_type=query.dtype)
        attn_mask = F._canonical_mask(mask=attn_mask, mask_name="attn_mask", other_type=None, other_name="",
                                      target_type=query.dtype, check_other=False)
        (q, n_q), (k, n_k), (v, n_v) = (self._rows(t, batched) for t in (query, key, value))
        n = q.shape[0] // n_q  # sequences a chip
        q, k, v = (self._project(layer, t, n) for layer, t in ((self.q_proj, q), (self.k_proj, k), (self.v_proj, v)))
        chips = q.shape[0] // n  # fold: every chip's sequences after the projections; else 1
        if not batched and key_padding_mask is not None:
            key_padding_mask = key_padding_mask.unsqueeze(0)
        key_padding_mask = self._repeat(key_padding_mask, n, chips)
        if attn_mask is not None and attn_mask.dim() == 3:
            attn_mask = self._repeat(attn_mask, n * self.num_heads, chips)
        eye = torch.eye(self.embed_dim, dtype=q.dtype, device=q.device)  # the projections are done
        out, weights = F.multi_head_attention_forward(
            q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1), self.embed_dim, self.num_heads, None, None,
            self.bias_k, self.bias_v, self.add_zero_attn, self.dropout, eye, None, training=self.training,
            key_padding_mask=key_padding_mask, need_weights=need_weights, attn_mask=attn_mask,
            use_separate_proj_weight=True, q_proj_weight=eye, k_proj_weight=eye, v_proj_weight=eye,
            average_attn_weights=average_attn_weights, is_causal=is_causal)
        y = self._project(self.out_proj, out.transpose(0, 1), n)  # (chips * N, L, E)
        if not batched:
            return y.flatten(0, 1), None if weights is None else weights.flatten(0, 1)
        if not self.batch_first:
            y = y.unflatten(0, (chips, n)).transpose(1, 2).flatten(0, 1)  # (chips * L, N, E)
        return y, weights

    def extra_repr(self) -> str:
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, batch_first={self.batch_first}, "
                f"kdim={self.kdim}, vdim={self.vdim}")
