"""aihwkit's global drift compensation read from simulated chips: the one both the
simulated chips and hardware-aware training use (:func:`drift_readouts`,
:func:`drift_factors`, :func:`scale_tiles`)."""

from __future__ import annotations

from typing import Callable, Iterable, Optional, Sequence

from aihwkit.inference.compensation.base import BaseDriftCompensation
from aihwkit.inference.compensation.drift import PerColumnDriftCompensation
from torch import Tensor

from .arrays import ProgrammedArray

Product = Callable[[Tensor, int], Tensor]  # (C, out, in) tile weights, tile index -> (C, in, out) outputs of eye


def drift_readouts(array: ProgrammedArray, comp: BaseDriftCompensation,
                   weights: "Tensor | Iterable[tuple[int, Tensor]]", product: Optional[Product] = None) -> Tensor:
    """aihwkit's drift compensation read-out of every chip's tiles: ``(C, n_tiles, T)``,
    ``T`` 1 for ``GlobalDriftCompensation`` (one value a tile), the widest tile's columns
    for ``PerColumnDriftCompensation`` (one a column; a narrower tile's padded with 1).

    Each tile's weights, normalised so that its largest target |weight| is 1 (one full
    conductance range), read with the one-hot inputs ``eye``; ``comp.readout`` of the
    outputs (their mean |value|, over all or per column, clamped below as aihwkit does).
    ``weights``: the ``(C, out, in)`` weights, or ``(tile index, (C, n_out, n_in))``
    pairs (:meth:`ProgrammedArray.tile_weights`). ``product(block, k)`` gives the
    outputs of tile ``k`` through a periphery; by default they are exact (``block``
    transposed).
    """
    if isinstance(weights, Tensor):
        whole = weights
        weights = ((k, whole[:, o0:o1, i0:i1]) for k, (o0, o1, i0, i1) in enumerate(array.tiles))
    width = max(o1 - o0 for o0, o1, _, _ in array.tiles) if isinstance(comp, PerColumnDriftCompensation) else 1
    values: Optional[Tensor] = None
    for k, tile in weights:
        block = tile / (array.tile_abs_max[k] or 1.0)
        out = block.transpose(1, 2) if product is None else product(block, k)
        if values is None:
            values = block.new_ones((block.shape[0], len(array.tiles), width))
        for c in range(block.shape[0]):
            readout = comp.readout(out[c])
            values[c, k, :readout.numel()] = readout
    assert values is not None
    return values


def drift_factors(
    array: ProgrammedArray, comp: BaseDriftCompensation, baseline: Tensor, weights: Tensor,
    product: Optional[Product] = None,
) -> Tensor:
    """The compensation's output scale of every chip's tiles (and columns), ``(C, n_tiles,
    T)`` as :func:`drift_readouts`: the read-out right after programming over the read-out
    now; ``baseline``: the read-outs right after programming (:func:`drift_readouts`), computed once."""
    return baseline / drift_readouts(array, comp, weights, product)


def scale_tiles(weights: Tensor, tiles: Sequence[tuple[int, int, int, int]], alpha: Tensor) -> Tensor:
    """Multiply each chip's tile ``k`` of ``weights`` ``(C, out, in)`` by ``alpha[:, k]``
    (one factor, or one per column), in place."""
    for k, (o0, o1, i0, i1) in enumerate(tiles):
        weights[:, o0:o1, i0:i1] *= alpha[:, k, :(o1 - o0 if alpha.shape[2] > 1 else 1), None]
    return weights
