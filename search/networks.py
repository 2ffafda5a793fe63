"""The checks of a scenario's network that need it built: a user's network (it runs on
chips as the scenario says, returns class scores), mode evaluate's trained weights, a
search's dropout slots, a cost report's layers. Each raises ValueError of one line,
which the scenario's validation reports before any work."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import torch
from torch import nn

import crossbar
import models

if TYPE_CHECKING:
    from .schema import Scenario


def check_network(scenario: "Scenario") -> None:
    """mode evaluate: a checkpoint that fits the network (other modes train theirs); a
    search: dropout slots; a user's classifier: class scores, and crossbars that run."""
    evaluate = scenario.mode == "evaluate"
    if evaluate and scenario.model.checkpoint is None:
        raise ValueError("mode evaluate needs model.checkpoint: the trained weights, saved with "
                         "torch.save(model.state_dict(), 'my_net.pt')")
    if not evaluate and scenario.model.checkpoint is not None:
        raise ValueError(f"model.checkpoint is for mode: evaluate (a trained network measured as it is); mode "
                         f"{scenario.mode} trains its networks")
    if evaluate and (scenario.variants or scenario.findings):
        raise ValueError("variants and findings are for mode: study; mode evaluate measures one trained network")
    if scenario.mode == "search" and not scenario.slots():
        raise ValueError(f"model: {scenario.model.name} has no dropout slots, which the search tunes: make it a "
                         "models.DropoutNet that places self.slot('name') where a dropout goes (docs/models.md), "
                         "or measure it trained with mode: evaluate")
    user = models.imports.is_import(scenario.model.name) and scenario.task == "classification"
    if not (user or evaluate):
        return
    in_shape, n_classes = scenario.data_shape()
    net = models.build(scenario.model.name, in_shape, n_classes, **scenario.model.options)
    if user:
        problem = models.imports.output_problem(net, in_shape, n_classes) or _mapping_problem(net, in_shape)
        if problem:
            raise ValueError(f"model: {scenario.model.name}: {problem}")
    if evaluate:  # the network checked above takes the trained weights
        try:
            models.load_weights(net, scenario.model.checkpoint)
        except (ValueError, FileNotFoundError) as e:
            raise ValueError(f"model.checkpoint: {e}") from None


def check_priced(scenario: "Scenario") -> None:
    """``report.cost``: every layer of the network is one :func:`crossbar.cost` prices."""
    name, options = scenario.network()
    unpriced = _unpriced(models.build(name, *scenario.data_shape(), **options))
    if unpriced:
        raise ValueError(f"report.cost: {unpriced} of {scenario.model.label} is not priced by crossbar.cost "
                         "(docs/cost.md); set report.cost: false")


def _mapping_problem(net, in_shape) -> str:
    """What keeps a user's network from running on chips as a scenario says (no layer to
    map, or a crossbar its forward never runs because it reads the weight itself: those
    devices would not act), found on one ideal chip before any work; ``""``: nothing.
    Layers left digital by the conversion (exact, by design) are warned about when the
    run converts it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # what stays digital by design is said when the run converts it
            chip = crossbar.convert(net, "ideal", strategy="loop").program(1).drift(1.0)
            with torch.no_grad():
                chip(torch.zeros(2, *in_shape))
    except ValueError as e:
        return str(e)
    return chip.unused_problem()


def _unpriced(net) -> str:
    """The first layer of ``net`` that :func:`crossbar.cost` does not price (attention's
    projections, a grouped convolution), or ``""``."""
    for name, m in crossbar.inference_cost.unpriced_layers(net)[:1]:
        if isinstance(m, nn.MultiheadAttention):
            return f"layer {name!r} (MultiheadAttention)"
        return f"layer {name!r} (a grouped convolution, groups={m.groups})"
    return ""
