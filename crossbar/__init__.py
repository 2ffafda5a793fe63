"""Resistive crossbar (ReRAM, PCM) inference simulator built on IBM aihwkit's device models.

The user-facing API (``__all__``; names are stable):

- presets: :func:`preset` (a name with overrides, a mapping or a :class:`Preset`),
  :func:`get_preset`, :func:`make_preset`, :func:`register_preset`, :func:`list_presets`,
  :data:`FAULT_PROFILES`, :data:`AIHWKIT_PERIPHERY`; the kinds of device physics:
  :data:`PHYSICS`, :class:`Physics`, :func:`register_physics`.
- the Monte Carlo: :func:`evaluate`, each chip's score by a :class:`Metric` of
  :data:`METRICS` (:func:`register_metric`, :func:`get_metric`), accuracy by default.
- chips: :func:`convert` (any ``nn.Module`` onto crossbar layers, a :class:`CrossbarModel`
  of :class:`CrossbarLinear` / :class:`CrossbarConv2d`, :class:`GroupedConv2d` and
  :class:`CrossbarMultiheadAttention`), :func:`mapped_layers`, :func:`mapped_attention`,
  :func:`unmapped_layers`; :func:`sample_weights` and :func:`program`
  (:class:`ProgrammedArray`) for the devices alone.
- aihwkit-style noise models of our own: :class:`IdealNoiseModel`,
  :class:`LogNormalDriftNoiseModel`.
- costs: :func:`cost` (:class:`InferenceCost`), energy, latency and area of an inference by
  layer and component; :func:`macro_cost` (:class:`MacroCost`), the power and area of a macro.
- :func:`parse_duration`, :func:`readable`: times as people write them (``"1d"``) and back.

Where things are: ``physics`` (the kinds of device physics), ``groups`` (a preset's
settings), ``presets`` (the :class:`Preset` model), ``catalog`` (the named presets),
``arrays`` (conductances, faults, drift compensation), ``sampling`` (``program``,
``sample_weights``), ``periphery``, ``lines`` and ``inputs`` (DAC, ADC, tiles, array
effects), ``slicing`` (weights over cells, inputs in bits), ``kernels`` and ``rng``
(compiled loops, noise streams), ``layers``, ``attention``, ``grouped``, ``model``, ``mapping`` (convert),
``pooling``, ``evaluate``, ``metrics``, ``cost`` and ``inference_cost``; ``common`` and
``durations`` hold what models/ and search/ share. Their
other names are importable from there.
"""

from .arrays import ProgrammedArray
from .attention import CrossbarMultiheadAttention, mapped_attention
from .catalog import get_preset, list_presets, make_preset, preset, register_preset
from .cost import MacroCost, macro_cost
from .durations import parse_duration, readable
from .evaluate import evaluate
from .grouped import GroupedConv2d
from .inference_cost import InferenceCost, cost
from .layers import CrossbarConv2d, CrossbarLinear
from .mapping import convert, mapped_layers, unmapped_layers
from .metrics import METRICS, Metric, get_metric, register_metric
from .model import CrossbarModel
from .noise import IdealNoiseModel, LogNormalDriftNoiseModel
from .physics import PHYSICS, Physics, register_physics
from .presets import AIHWKIT_PERIPHERY, FAULT_PROFILES, Preset
from .sampling import program, sample_weights

__all__ = [
    "AIHWKIT_PERIPHERY",
    "CrossbarConv2d",
    "CrossbarLinear",
    "CrossbarModel",
    "CrossbarMultiheadAttention",
    "FAULT_PROFILES",
    "GroupedConv2d",
    "IdealNoiseModel",
    "InferenceCost",
    "MacroCost",
    "LogNormalDriftNoiseModel",
    "METRICS",
    "Metric",
    "PHYSICS",
    "Physics",
    "Preset",
    "ProgrammedArray",
    "convert",
    "cost",
    "evaluate",
    "get_metric",
    "get_preset",
    "list_presets",
    "macro_cost",
    "make_preset",
    "mapped_attention",
    "mapped_layers",
    "parse_duration",
    "preset",
    "program",
    "readable",
    "register_metric",
    "register_physics",
    "register_preset",
    "sample_weights",
    "unmapped_layers",
]
