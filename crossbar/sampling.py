"""The devices alone: :func:`program` (a :class:`~crossbar.arrays.ProgrammedArray` of a
weight matrix on many chips) and :func:`sample_weights` (the weights the chips hold at a
time, sliced presets' cells read back and shift-added)."""

from __future__ import annotations

from torch import Tensor

from .arrays import ProgrammedArray
from .catalog import resolve_preset
from .common import check_n_chips, check_seed
from .compensation import drift_factors, drift_readouts, scale_tiles
from .presets import Preset
from .slicing import sliced_weights

__all__ = ["program", "sample_weights"]


def program(
    weight: Tensor,
    preset: "str | Preset",
    n_chips: int,
    seed: int = 0,
    *,
    first_chip: int = 0,
    layer: int = 0,
) -> ProgrammedArray:
    """Program ``weight`` onto ``n_chips`` simulated chips; see :class:`ProgrammedArray`."""
    preset = resolve_preset(preset)
    if preset.architecture.sliced:
        raise ValueError(f"program() maps a weight onto one device (pair); preset {preset.name!r} slices it over "
                         f"cells: use sample_weights, or convert(...).program(...)")
    return ProgrammedArray(weight, preset, n_chips, seed, first_chip, layer)


def sample_weights(
    weight: Tensor,
    preset: "str | Preset",
    t_inference: float,
    n_chips: int,
    seed: int = 0,
    *,
    compensate: bool = False,
) -> Tensor:
    """The weights ``n_chips`` independent chips hold ``t_inference`` s after programming.

    Returns a tensor of shape ``(n_chips, *weight.shape)`` in ``weight``'s dtype and
    device, read back from each chip's conductances. By default this is before any
    output-side drift compensation; ``compensate=True`` applies the preset's global
    drift compensation (when it has it) as a perfect periphery would: each tile (or each
    column, ``per_column``) scaled by mean |W| right after programming over mean |W| at
    ``t_inference``.
    """
    preset = resolve_preset(preset)
    t = preset.check_time(t_inference)
    n_chips = check_n_chips(n_chips)
    seed = check_seed(seed)
    if preset.architecture.sliced:  # every cell read back and shift-added (crossbar.slicing)
        weights = sliced_weights(weight, preset, t, n_chips, seed)
        return weights.reshape(n_chips, *weight.shape).to(device=weight.device, dtype=weight.dtype)
    array = ProgrammedArray(weight, preset, n_chips, seed)
    weights = array.weights(t)
    comp = preset.drift_compensation_model
    if compensate and comp is not None:
        alpha = drift_factors(array, comp, drift_readouts(array, comp, array.weights(None)), weights)
        scale_tiles(weights, array.tiles, alpha)
    return weights.reshape(n_chips, *weight.shape).to(device=weight.device, dtype=weight.dtype)
