"""The named presets, and the one way to a preset from a name, a mapping or a
:class:`crossbar.Preset` (:func:`preset`).

Built in: ``ideal`` (the digital reference), ``pcm``, ``reram_wan2022``, ``reram_cmo``
(aihwkit's noise models) and ``lognormal`` (BayesFT's drift); :func:`register_preset`
adds one, :func:`list_presets` names them.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from .common import did_you_mean
from .physics import PHYSICS
from .presets import Preset, validated_preset

_PRESETS: dict[str, Preset] = {}


def register_preset(preset: Preset) -> Preset:
    """Make ``preset`` available under ``preset.name`` (to :func:`preset`, :func:`get_preset`
    and scenarios' ``devices``)."""
    _PRESETS[preset.name] = preset
    return preset


for _spec in (
    dict(
        name="ideal",
        physics="ideal",
        description="exact conductances: the digital reference (add faults to study them alone)",
    ),
    dict(
        name="pcm",
        physics="pcm",
        drift_compensation=True,
        description="phase-change memory, aihwkit PCMLikeNoiseModel (Nandakumar et al. 2019): "
        "programming noise, 1/f read noise, power-law drift; global drift compensation on",
    ),
    dict(
        name="reram_wan2022",
        physics="reram_wan2022",
        description="ReRAM fitted to Wan et al., Nature 2022 (aihwkit ReRamWan2022NoiseModel); "
        "defined at 1 s, 1 day and 2 days only",
    ),
    dict(
        name="reram_cmo",
        physics="reram_cmo",
        description="CMO/HfOx ReRAM (aihwkit ReRamCMONoiseModel): programming noise, "
        "log-time conductance relaxation, read noise; one device per weight",
    ),
    dict(
        name="lognormal",
        physics="lognormal",
        sigma=0.5,
        description="BayesFT weight drift w' = w exp(theta), theta ~ N(0, sigma^2) "
        "(Ye et al., DAC 2021); time-independent",
    ),
    dict(
        name="isaac",
        physics="ideal",
        g_converter="single_device",
        g_min=0.5,
        g_max=3.4,
        max_in=128,
        max_out=16,
        weight_bits=16,
        bits_per_cell=2,
        input_bits=16,
        bits_per_input_cycle=1,
        adc_bits=8,
        cols_per_adc=128,
        read_time=100e-9,
        read_voltage=0.1,
        tech_node=32,
        cell_area=0.0002 / (8 * 128 * 128) * 1e6,
        components="isaac",
        description="ISAAC-CE (Shafiee et al., ISCA 2016): 128x128 arrays of 2-bit cells, 16-bit weights on 8 "
        "cells, 16-bit inputs one bit a 100 ns cycle, one 8-bit ADC an array, 32 nm; exact devices of "
        "0.5-3.4 uS read at 0.1 V (docs/cost.md)",
    ),
):
    register_preset(Preset(**_spec))


def list_presets() -> list[str]:
    """Names accepted by :func:`get_preset`."""
    return sorted(_PRESETS)


def builtin_preset(name: str) -> Optional[Preset]:
    """The registered preset called ``name``, or None."""
    return _PRESETS.get(name)


def get_preset(name: "str | Preset", /, **overrides: Any) -> Preset:
    """The preset called ``name`` (see :func:`list_presets`), with ``overrides`` applied.

    ``get_preset("pcm", g_max=20.0, faults="chen2015", drift_compensation=False)``
    """
    if isinstance(name, Preset):
        return name.with_overrides(**overrides) if overrides else name
    if name not in _PRESETS:
        raise ValueError(f"unknown preset {name!r}{did_you_mean(name, list_presets())}; "
                         f"valid presets: {', '.join(list_presets())}")
    base = _PRESETS[name]
    if not overrides:
        return base
    return base.with_overrides(**overrides)


def make_preset(spec: Mapping[str, Any]) -> Preset:
    """Build a preset from a plain mapping (e.g. a YAML block).

    Either ``base: <preset name>`` plus overrides, or ``physics: <kind>`` (its old name
    ``noise`` is accepted too) plus parameters; a mapping with neither, named after a
    registered preset, is that preset with overrides. ``name`` defaults to ``"custom"``.
    """
    if not isinstance(spec, Mapping):
        raise ValueError(f"a preset must be a mapping, got {type(spec).__name__}")
    data = dict(spec)
    base = data.pop("base", None)
    kind = "physics" in data or "noise" in data
    if base is None and not kind and data.get("name") in _PRESETS:
        base = data["name"]  # {name: pcm, p_sa0: 0.02}: the registered preset, changed
    name = data.get("name", base or "custom")
    if base is not None:
        if kind:
            raise ValueError(f"preset {name!r}: give either base or physics, not both")
        return get_preset(base, **{"name": name, **data})
    if not kind and set(data) == {"name"}:  # {name: pcmm}: a misspelt preset name
        get_preset(name)
    if not kind:
        raise ValueError(
            f"preset {name!r}: needs 'base' (one of {', '.join(list_presets())}) or 'physics' "
            f"(one of {', '.join(PHYSICS)})"
        )
    return validated_preset(name, data)


def preset(spec: "str | Preset | Mapping[str, Any]", /, **overrides: Any) -> Preset:
    """A preset from a name of :func:`list_presets`, a mapping (:func:`make_preset`: ``base:
    NAME`` plus overrides, or ``physics: KIND`` plus parameters) or a :class:`Preset`,
    with ``overrides`` applied: ``crossbar.preset("pcm", g_max=20)``."""
    resolved = resolve_preset(spec)
    return resolved.with_overrides(**overrides) if overrides else resolved


def resolve_preset(preset: "str | Preset | Mapping[str, Any]") -> Preset:
    """Accept a preset, a preset name or a mapping."""
    if isinstance(preset, Preset):
        return preset
    if isinstance(preset, str):
        return get_preset(preset)
    if isinstance(preset, Mapping):
        return make_preset(preset)
    raise ValueError(f"preset must be a name, a Preset or a mapping, got {type(preset).__name__}")
