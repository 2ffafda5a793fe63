"""Mapping a network onto crossbars: which layers, and the converted copy.

:func:`convert` copies any ``torch.nn.Module`` and replaces each ``nn.Linear`` and
``nn.Conv2d`` by a crossbar layer (:mod:`crossbar.layers`; a grouped convolution with a
periphery by one a group, :mod:`crossbar.grouped`), each ``nn.MultiheadAttention`` by
one whose projections are crossbar layers (:mod:`crossbar.attention`), and each
``nn.MaxPool2d`` by :class:`~crossbar.pooling.WindowMaxPool2d` (the same numbers, faster
on a CPU); :func:`mapped_layers` and :func:`~crossbar.attention.mapped_attention` list
what it maps, :func:`unmapped_layers` the weight layers it leaves digital (it warns
about them).
"""

from __future__ import annotations

import copy
import warnings
from typing import Optional, Sequence

from torch import nn

from .attention import PROJECTIONS, CrossbarMultiheadAttention, mapped_attention, no_fast_path, own_attention_forward
from .catalog import resolve_preset
from .common import check_threads, check_weight, user_stacklevel
from .grouped import conv_layer
from .layers import CrossbarLinear
from .model import CrossbarModel, check_output, check_strategy
from .pooling import WindowMaxPool2d
from .presets import Preset


def mapped_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, layer)`` of every ``nn.Linear`` and ``nn.Conv2d`` that :func:`convert` maps.

    In ``model.modules()`` order (name ``""`` when ``model`` itself is one). A layer
    registered under two names (weight tying) is listed under both; ``convert`` maps it
    once, and both names use the same crossbar. ``nn.MultiheadAttention`` is skipped
    whole (its forward reads its projection weights itself, ``out_proj.weight`` among
    them): :func:`convert` maps it as a block (:func:`~crossbar.attention.mapped_attention`),
    its projections numbered after the layers listed here.
    """
    found: list[tuple[str, nn.Module]] = []
    digital: list[str] = []  # name prefixes of attention blocks: nothing under them is mapped
    for name, module in model.named_modules(remove_duplicate=False):
        if any(name.startswith(prefix) for prefix in digital):
            continue
        if isinstance(module, nn.MultiheadAttention):
            digital.append(f"{name}." if name else "")  # "": the model itself, all of it
        elif isinstance(module, (nn.Linear, nn.Conv2d)) and not own_forward(module):
            found.append((name, module))
    return found


def check_digital(digital: Sequence[str], layers: list[tuple[str, nn.Module]], model: nn.Module) -> set[int]:
    """The ids of the layers ``digital`` names (every name of a tied layer follows);
    ValueError naming an unknown one and the layers that can be placed."""
    if isinstance(digital, str):
        digital = [digital]
    names = {name: layer for name, layer in layers}
    unknown = [d for d in digital if d not in names]
    if unknown:
        raise ValueError(f"digital: {unknown[0]!r} is not a mapped layer of {type(model).__name__}; the layers: "
                         f"{', '.join(n or '(the model)' for n in names)}")
    if digital and len({id(names[d]) for d in digital}) == len({id(layer) for _, layer in layers}):
        raise ValueError("digital: every layer would stay digital; leave at least one on the crossbars")
    return {id(names[d]) for d in digital}


def own_forward(layer: nn.Module) -> bool:
    """True for a subclass of ``nn.Linear`` or ``nn.Conv2d`` that computes its own way:
    its class overrides ``forward`` (or a convolution's ``_conv_forward``), as timm's
    weight-standardised ``StdConv2d``, ``Conv2dSame`` or a LoRA layer do. A crossbar
    layer holds the weight and computes the plain product, so it would silently drop
    that computation: :func:`convert` leaves such a layer digital and says so."""
    base = nn.Linear if isinstance(layer, nn.Linear) else nn.Conv2d if isinstance(layer, nn.Conv2d) else None
    if base is None:
        return False
    names = ("forward",) if base is nn.Linear else ("forward", "_conv_forward")
    return any(getattr(type(layer), n) is not getattr(base, n) for n in names)


# layers that multiply by a weight matrix, which a crossbar would hold, but convert
# leaves digital: a user simulating them would otherwise be told nothing
_UNMAPPED_MATMULS = (nn.modules.conv._ConvNd, nn.RNNBase, nn.Bilinear)


def unmapped_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, layer)`` of layers with weight matrices that :func:`convert` leaves
    digital: convolutions other than ``nn.Conv2d`` (1-d, 3-d, transposed), recurrent
    layers, ``nn.Bilinear``, and subclasses of ``nn.Linear``/``nn.Conv2d`` or
    ``nn.MultiheadAttention`` with a forward of their own (:func:`own_forward`). An
    ``nn.MultiheadAttention`` itself is mapped (its projections on crossbars, the
    attention between them digital). Normalisation layers and embeddings are not listed."""
    found: list[tuple[str, nn.Module]] = []
    for name, module in model.named_modules():
        if any(name.startswith(f"{outer}.") or outer == "" for outer, _ in found):
            continue  # inside a block already listed (an attention's out_proj)
        if (isinstance(module, _UNMAPPED_MATMULS) and not isinstance(module, nn.Conv2d)) or own_forward(module) \
                or own_attention_forward(module):
            found.append((name, module))
    return found


def _listed(layers: list[tuple[str, nn.Module]]) -> str:
    return ", ".join(f"{name or 'the model'} ({type(layer).__name__}"
                     f"{', its own forward' * (own_forward(layer) or own_attention_forward(layer))})"
                     for name, layer in layers)


def convert(
    model: nn.Module,
    preset: "str | Preset",
    *,
    strategy: str = "auto",
    threads: Optional[int] = None,
    output: "int | str | None" = None,
    digital: Sequence[str] = (),
) -> CrossbarModel:
    """Map every ``nn.Linear``, ``nn.Conv2d`` and ``nn.MultiheadAttention`` of ``model`` onto crossbars.

    ``digital`` names layers (as :func:`mapped_layers` names them) or attention blocks
    (as :func:`~crossbar.attention.mapped_attention` does) placed digital on purpose:
    they keep their exact weights and their numbers, so the other layers are the same
    devices of the same chips whichever layers are digital.

    ``model`` is not changed: the result holds a copy. Layers are numbered in
    ``model.modules()`` order, then each attention block's four projections (q, k, v,
    out); a chip's random draws for a layer depend on that number. A grouped
    convolution with a periphery (or on a sliced preset) gets one crossbar layer a group
    (:mod:`crossbar.grouped`), under its own number. Layers that stay digital are named
    in a warning (:func:`unmapped_layers`), and the first forward pass names any
    crossbar the model's forward never ran. ``output`` picks the scores of a model that
    returns a tuple or a dict (an index or a key).
    """
    preset = resolve_preset(preset)
    check_strategy(strategy)
    check_threads(threads)
    check_output(output)
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(model, CrossbarModel):
        raise ValueError("model is already converted; convert the digital model instead")
    module = copy.deepcopy(model)
    layers = mapped_layers(module)
    blocks = mapped_attention(module)
    placed = check_digital(digital, layers + blocks, model)
    digital = unmapped_layers(model)
    if not layers and not blocks:
        own = [(name, layer) for name, layer in digital if own_forward(layer) or own_attention_forward(layer)]
        raise ValueError(
            f"model ({type(model).__name__}) has no nn.Linear, nn.Conv2d or nn.MultiheadAttention layer to map "
            "onto crossbars"
            + (f" ({_listed(own)}: a forward of its own, which a crossbar would drop)" if own else "")
        )
    if digital:
        own = any(own_forward(layer) or own_attention_forward(layer) for _, layer in digital)
        warnings.warn(f"crossbar.convert: layer{'s' * (len(digital) > 1)} {_listed(digital)} "
                      f"{'stay' if len(digital) > 1 else 'stays'} digital, with exact weights: only nn.Linear, "
                      "nn.Conv2d and nn.MultiheadAttention are mapped onto crossbars"
                      + (", and a subclass's own forward would be dropped on one" if own else ""),
                      UserWarning, stacklevel=user_stacklevel())
    for name, layer in layers:
        check_weight(layer.weight, f"layer {name or type(model).__name__!r} ({type(layer).__name__}): weight")
    crossbars: dict[int, nn.Module] = {}  # one per distinct layer, numbered in order
    for name, layer in layers:
        if id(layer) not in crossbars:
            index = len(crossbars)
            crossbars[id(layer)] = layer if id(layer) in placed else (
                CrossbarLinear(layer.weight, layer.bias, preset, index) if isinstance(layer, nn.Linear)
                else conv_layer(layer, preset, index)
            )
    attention: dict[int, nn.Module] = {}  # each block's projections numbered after every layer
    for name, block in blocks:
        if id(block) not in attention:
            index = len(crossbars) + len(PROJECTIONS) * len(attention)
            attention[id(block)] = block if id(block) in placed else CrossbarMultiheadAttention(
                block, preset, index, name or type(model).__name__)
    for name, layer in layers + blocks:
        mapped = crossbars[id(layer)] if id(layer) in crossbars else attention[id(layer)]
        if mapped is layer:  # placed digital
            continue
        if name:
            module.set_submodule(name, mapped)
        else:  # the whole model is a single Linear, Conv2d or attention block
            module = mapped
    no_fast_path(module)
    for name, pool in list(module.named_modules(remove_duplicate=False)):
        if type(pool) is nn.MaxPool2d:  # digital, same numbers, faster (see window_max)
            module.set_submodule(name, WindowMaxPool2d.from_module(pool))
    return CrossbarModel(module, preset, strategy, threads, output).eval()
