"""Resistive crossbar (ReRAM, PCM) inference simulator built on IBM aihwkit's device models.

Public API (names are stable):

- :func:`get_preset`, :func:`list_presets`, :func:`make_preset`, :class:`Preset`,
  :data:`FAULT_PROFILES`, :data:`AIHWKIT_PERIPHERY`: device presets.
- :func:`sample_weights`: effective weights of many chips at one time.
- :func:`program`: every device's conductance for many chips (:class:`ProgrammedArray`).
- :func:`convert`: any ``nn.Module`` onto crossbar layers (:class:`CrossbarModel`);
  :func:`mapped_layers`: the layers it maps; :func:`unmapped_layers`: weight layers it
  leaves digital (it warns about them).
- :func:`evaluate`: Monte-Carlo accuracy (or any :data:`METRICS` name, e.g. a detector's
  ``"map50"``, or a callable) over chips and inference times; :func:`collate_detection`
  and :func:`target_dicts` for detection targets (:mod:`crossbar.metrics`).
- :func:`parse_duration`, :func:`readable`: times as people write them (``"1d"``) and back.

Where things are: ``physics`` (the kinds of device physics), ``presets``, ``arrays``
(conductances, faults, drift compensation), ``periphery`` and ``inputs`` (DAC, ADC,
tiles), ``kernels`` and ``rng`` (compiled loops, noise streams), ``layers``, ``model``,
``mapping`` (convert), ``pooling``, ``evaluate``, ``metrics``; ``common`` and ``durations`` hold what
models/ and search/ share.
"""

from .arrays import ProgrammedArray, program, sample_weights, split_sizes, tile_grid
from .common import resolve_device
from .durations import parse_duration, readable
from .evaluate import evaluate
from .layers import CrossbarConv2d, CrossbarLinear
from .mapping import convert, mapped_layers, unmapped_layers
from .metrics import METRICS, collate_detection, target_dicts
from .model import CrossbarModel
from .noise import IdealNoiseModel, LogNormalDriftNoiseModel
from .presets import (
    AIHWKIT_PERIPHERY,
    FAULT_PROFILES,
    Preset,
    get_preset,
    list_presets,
    make_preset,
    register_preset,
    resolve_preset,
)

__all__ = [
    "AIHWKIT_PERIPHERY",
    "FAULT_PROFILES",
    "CrossbarConv2d",
    "CrossbarLinear",
    "CrossbarModel",
    "METRICS",
    "collate_detection",
    "target_dicts",
    "IdealNoiseModel",
    "LogNormalDriftNoiseModel",
    "Preset",
    "ProgrammedArray",
    "convert",
    "mapped_layers",
    "unmapped_layers",
    "evaluate",
    "get_preset",
    "list_presets",
    "make_preset",
    "parse_duration",
    "program",
    "readable",
    "register_preset",
    "resolve_device",
    "resolve_preset",
    "sample_weights",
    "split_sizes",
    "tile_grid",
]
