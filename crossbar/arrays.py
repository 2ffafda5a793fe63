"""Programmed device arrays: weights on conductance pairs, programming, faults and time, for many chips.

A weight matrix is split into tiles (aihwkit ``MappingParameter`` semantics); each tile
maps its weights onto conductances with the preset's aihwkit converter, scaled by the
tile's own largest weight. :class:`ProgrammedArray` then holds, for each of ``n_chips``
chips, the conductance of every device: programmed once (programming noise, drift
parameters, stuck-at faults), and read at any time since programming with the
time-dependent effects of the noise model. Weights are read back from the devices.
:func:`drift_readouts` is aihwkit's global drift compensation, the one both the
simulated chips and hardware-aware training use.

Randomness: chip ``k`` of a call with ``seed`` is the same chip whatever ``n_chips`` or
chunking; its programmed devices and fault map do not depend on the time at which it
is read. aihwkit's noise models draw from torch's global generator, so each chip's
draws run under ``torch.random.fork_rng`` with a seed derived from (seed, stream,
layer, chip); the caller's global RNG state is left as it was.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Optional, Sequence

import torch
from aihwkit.inference.compensation.base import BaseDriftCompensation
from aihwkit.inference.compensation.drift import PerColumnDriftCompensation
from aihwkit.inference.converter.conductance import SingleDeviceConductanceConverter
from torch import Tensor

from .common import Stream, check_n_chips, check_seed, check_weight, derive_seed, time_key
from .presets import Preset

_STUCK_SA0, _STUCK_SA1 = 1, 2  # fault codes; 0: the device works


def split_sizes(size: int, max_size: int) -> list[int]:
    """Equal splits of ``size`` into pieces of at most ``max_size`` (aihwkit's rule)."""
    if max_size <= 0:
        return [size]
    n_splits = (size + max_size - 1) // max_size
    base, extra = divmod(size, n_splits)
    return [base + (i < extra) for i in range(n_splits)]


def tile_grid(out_size: int, in_size: int, max_out: int, max_in: int) -> list[tuple[int, int, int, int]]:
    """``(o0, o1, i0, i1)`` blocks of a ``(out_size, in_size)`` matrix, one per tile."""
    blocks = []
    i0 = 0
    for i_size in split_sizes(in_size, max_in):
        o0 = 0
        for o_size in split_sizes(out_size, max_out):
            blocks.append((o0, o0 + o_size, i0, i0 + i_size))
            o0 += o_size
        i0 += i_size
    return blocks


def _cuda_index(device: torch.device) -> int:
    return device.index if device.index is not None else torch.cuda.current_device()


@contextlib.contextmanager
def private_rng(device: torch.device) -> Iterator[None]:
    """Run aihwkit's global-RNG draws without disturbing the caller's RNG state."""
    devices = [_cuda_index(device)] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        yield


def seed_global(device: torch.device, seed: int) -> None:
    """Seed the default generator that draws for tensors on ``device``.

    (``torch.manual_seed`` would also queue a lazy CUDA seeding with a recorded
    traceback on every call, which costs more than the draws of a small layer.)
    """
    if device.type == "cuda":
        torch.cuda.default_generators[_cuda_index(device)].manual_seed(seed)
    else:
        torch.default_generator.manual_seed(seed)


def _as_list(conductances: "Tensor | Sequence[Tensor]") -> list[Tensor]:
    return [conductances] if isinstance(conductances, Tensor) else list(conductances)


def _convert_block(converter, block: Tensor) -> tuple[list[Tensor], dict]:
    """aihwkit's conversion of one tile, with the constant tile of a single-device
    mapping (where aihwkit divides by max - min = 0) mapped to g_min everywhere."""
    if isinstance(converter, SingleDeviceConductanceConverter) and bool(block.max() == block.min()):
        w_min = block.min()
        scale = (converter.g_max - converter.g_min) / w_min.abs().clamp(min=1e-7)
        return [torch.full_like(block, converter.g_min)], {"scale_ratio": scale, "min": w_min}
    devices, params = converter.convert_to_conductances(block)
    return _as_list(devices), params


class ProgrammedArray:
    """``n_chips`` programmed copies of one weight matrix, device by device.

    Attributes:
        g_target: ``(D, out, in)`` target conductances (uS), the same for every chip;
            ``D`` is the number of devices per weight (2 for a single pair).
        g_programmed: ``(n_chips, D, out, in)`` conductances right after programming,
            stuck devices included.
        stuck: ``(n_chips, D, out, in)`` int8 codes (0 ok, 1 stuck at g_min, 2 stuck at
            g_max), or None without faults: independent cells (``p_sa0``, ``p_sa1``),
            then clusters, bit lines (columns) and word lines (rows) of each tile, each
            overriding the one before where they meet.
        g_range: ``(g_min, g_max)``, each ``(n_chips, D, out, in)``: every device's own
            conductance range under device-to-device variation; None without it.
        tiles: ``(o0, o1, i0, i1)`` block of each tile.
        tile_abs_max: largest target |weight| of each tile (its conductance scale).
    """

    def __init__(
        self,
        weight: Tensor,
        preset: Preset,
        n_chips: int,
        seed: int = 0,
        first_chip: int = 0,
        layer: int = 0,
        targets: Optional[tuple[Tensor, list[tuple[int, int, int, int]]]] = None,
    ):
        """``targets``: ``(g_target, tiles)`` given directly (the cells of sliced
        weights, :mod:`crossbar.slicing`) instead of ``weight`` mapped by the preset's
        converter; ``weight`` is then only checked."""
        check_weight(weight)
        self.preset = preset
        self.n_chips = check_n_chips(n_chips)
        self.seed = check_seed(seed)
        self.layer = int(layer)
        self.chips = range(int(first_chip), int(first_chip) + self.n_chips)
        self.shape = tuple(weight.shape)
        self.device = preset.physics_device(weight.device)
        self.noise_model = preset.noise_model
        self.converter = self.noise_model.g_converter

        # Mapping in float64: the ideal round trip w -> (G+, G-) -> w is then exact once
        # cast back to float32.
        matrix = weight.detach().reshape(self.shape[0], -1).to(device=self.device, dtype=torch.float64)
        out_size, in_size = matrix.shape
        self.tiles = tile_grid(out_size, in_size, preset.max_out, preset.max_in)
        self.tile_params: list[dict] = []
        self.tile_abs_max: list[float] = []
        g_target: Optional[Tensor] = None
        if targets is not None:
            g_target, self.tiles = targets[0].to(self.device, torch.float64), list(targets[1])
        for o0, o1, i0, i1 in self.tiles if targets is None else ():
            block = matrix[o0:o1, i0:i1]
            devices, params = _convert_block(self.converter, block)
            if g_target is None:
                g_target = matrix.new_empty((len(devices), out_size, in_size))
            for d, g in enumerate(devices):
                g_target[d, o0:o1, i0:i1] = g
            self.tile_params.append(params)
            self.tile_abs_max.append(float(block.abs().max()))
        assert g_target is not None
        # The converters' arithmetic can overshoot the range by an ulp; devices cannot.
        g_target = g_target.clamp_(self.converter.g_min, self.converter.g_max)
        if preset.levels is not None and targets is None:
            g_target = round_to_levels(g_target, preset.levels, self.converter.g_min, self.converter.g_max)
        g_target = g_target.to(preset.dtype)
        self.g_target = g_target
        self.n_devices = g_target.shape[0]

        self.g_range = self._sample_ranges()
        # Under variation each chip's devices map the nominal targets onto their own range.
        self._chip_target = None if self.g_range is None else self._map_to_ranges(g_target)
        self.g_programmed = g_target.new_empty((self.n_chips, *g_target.shape))
        self._drift_params: Optional[Tensor] = None
        self._drift_is_target = False
        with private_rng(self.device):
            for k, chip in enumerate(self.chips):
                seed_global(self.device, derive_seed(self.seed, Stream.PROGRAM, self.layer, chip))
                target = g_target if self._chip_target is None else self._chip_target[k]
                self.g_programmed[k] = self.noise_model.apply_programming_noise_to_conductance(target)
                nu = self.noise_model.generate_drift_coefficients(target)
                if nu is None:
                    continue
                if nu is target:  # ReRAM models keep the target as their "drift parameter"
                    self._drift_is_target = True
                    continue
                if self._drift_params is None:
                    self._drift_params = torch.empty_like(self.g_programmed)
                self._drift_params[k] = nu

        self.stuck = self._sample_faults()
        self.g_programmed = self._apply_stuck(self.g_programmed)

    # --- device-to-device variation ------------------------------------------

    def _sample_ranges(self) -> Optional[tuple[Tensor, Tensor]]:
        """Every device's own (g_min, g_max): the nominal values times ``1 + v N(0, 1)``,
        drawn per chip on the CPU (the same devices on any device), clamped so that
        g_min >= 0 and g_max >= g_min."""
        v_max, v_min = self.preset.g_max_variation, self.preset.g_min_variation
        if v_max == 0 and v_min == 0:
            return None
        g_lo, g_hi = float(self.converter.g_min), float(self.converter.g_max)
        shape = (self.n_chips, *self.g_target.shape)
        lo = torch.empty(shape, dtype=torch.float64)
        hi = torch.empty(shape, dtype=torch.float64)
        for k, chip in enumerate(self.chips):
            gen = torch.Generator().manual_seed(derive_seed(self.seed, Stream.VARIATION, self.layer, chip))
            hi[k] = g_hi * (1.0 + v_max * torch.randn(self.g_target.shape, generator=gen, dtype=torch.float64))
            lo[k] = g_lo * (1.0 + v_min * torch.randn(self.g_target.shape, generator=gen, dtype=torch.float64))
        lo.clamp_(min=0.0)
        hi = torch.maximum(hi, lo)
        return lo.to(self.device, self.preset.dtype), hi.to(self.device, self.preset.dtype)

    def _map_to_ranges(self, g_target: Tensor) -> Tensor:
        """``(n_chips, D, out, in)`` targets: each device reaches the same fraction of its
        own range that the nominal target is of the nominal range."""
        assert self.g_range is not None
        lo, hi = self.g_range
        g_lo, g_hi = float(self.converter.g_min), float(self.converter.g_max)
        fraction = (g_target - g_lo) / (g_hi - g_lo)
        return lo + fraction * (hi - lo)

    # --- faults --------------------------------------------------------------

    def _sample_faults(self) -> Optional[Tensor]:
        preset = self.preset
        p0, p1 = preset.p_sa0, preset.p_sa1
        correlated = preset.p_row_fault > 0 or preset.p_col_fault > 0 or preset.p_cluster > 0
        if p0 == 0 and p1 == 0 and not correlated:
            return None
        codes = torch.zeros((self.n_chips, *self.g_target.shape), dtype=torch.int8)
        for k, chip in enumerate(self.chips):
            # Drawn on the CPU with its own generator: the same fault map on any device.
            if p0 > 0 or p1 > 0:
                gen = torch.Generator().manual_seed(derive_seed(self.seed, Stream.FAULTS, self.layer, chip))
                u = torch.rand(self.g_target.shape, generator=gen, dtype=torch.float64)
                codes[k] = ((u < p0).to(torch.int8) * _STUCK_SA0
                            + ((u >= p0) & (u < p0 + p1)).to(torch.int8) * _STUCK_SA1)
            if correlated:
                self._correlated_faults(codes[k], chip)
        return codes.to(self.device)

    def _correlated_faults(self, codes: Tensor, chip: int) -> None:
        """Stuck clusters, bit lines and word lines of every tile of one chip, in place
        on its ``(D, out, in)`` codes. A tile's row is one input (all its devices); its
        column one device of one output; a cluster covers the cells within
        ``cluster_radius`` of a seed cell in the tile's layout (inputs along rows, each
        output's D devices side by side along columns). Each line and cluster is stuck at
        g_max with probability ``fault_sa1_share``, else at g_min; each kind has its own
        random stream, so switching one on leaves the others' maps as they were."""
        preset = self.preset
        share = preset.fault_sa1_share
        n_dev = codes.shape[0]

        def generator(kind: int) -> torch.Generator:
            return torch.Generator().manual_seed(
                derive_seed(self.seed, Stream.CORRELATED_FAULTS, self.layer, chip, kind))

        def draw(gen: torch.Generator, p: float, shape: tuple[int, ...]) -> Tensor:
            """Codes of failed elements (0 where working), each failed with probability p."""
            failed = torch.rand(shape, generator=gen, dtype=torch.float64) < p
            high = torch.rand(shape, generator=gen, dtype=torch.float64) < share
            return failed.to(torch.int8) * torch.where(high, _STUCK_SA1, _STUCK_SA0).to(torch.int8)

        gens = [generator(kind) for kind in range(3)]
        for o0, o1, i0, i1 in self.tiles:
            block = codes[:, o0:o1, i0:i1]  # a view: (D, n_out, n_in)
            n_out, n_in = o1 - o0, i1 - i0
            if preset.p_cluster > 0:
                seeds = draw(gens[2], preset.p_cluster, (n_in, n_out * n_dev))  # the tile's layout
                grown = cluster_cells(seeds, preset.cluster_radius)  # (n_in, n_out * D)
                grown = grown.view(n_in, n_out, n_dev).permute(2, 1, 0)
                block.copy_(torch.where(grown > 0, grown, block))
            if preset.p_col_fault > 0:
                cols = draw(gens[1], preset.p_col_fault, (n_dev, n_out)).unsqueeze(-1)
                block.copy_(torch.where(cols > 0, cols.expand_as(block), block))
            if preset.p_row_fault > 0:
                rows = draw(gens[0], preset.p_row_fault, (n_in,)).view(1, 1, n_in)
                block.copy_(torch.where(rows > 0, rows.expand_as(block), block))

    def _apply_stuck(self, g: Tensor) -> Tensor:
        if self.stuck is None:
            return g
        lo, hi = self.g_range if self.g_range is not None else (self.converter.g_min, self.converter.g_max)
        g = torch.where(self.stuck == _STUCK_SA0, lo, g)
        return torch.where(self.stuck == _STUCK_SA1, hi, g)

    # --- reading -------------------------------------------------------------

    def conductances(self, t_inference: float) -> Tensor:
        """``(n_chips, D, out, in)`` conductances (uS) at ``t_inference`` s after programming."""
        t = self.preset.check_time(t_inference)
        out = torch.empty_like(self.g_programmed)
        with private_rng(self.device):
            for k, chip in enumerate(self.chips):
                seed_global(self.device, derive_seed(self.seed, Stream.READ, self.layer, chip, time_key(t)))
                if self._drift_params is not None:
                    nu = self._drift_params[k]
                elif self._drift_is_target:
                    nu = self.g_target if self._chip_target is None else self._chip_target[k]
                else:
                    nu = None
                out[k] = self.noise_model.apply_drift_noise_to_conductance(self.g_programmed[k], nu, t)
        return self._apply_stuck(out)

    def to_weights(self, conductances: Tensor) -> Tensor:
        """Read weights back from ``(n_chips, D, out, in)`` conductances: ``(n_chips, out, in)``."""
        weights = conductances.new_empty((conductances.shape[0], *self.g_target.shape[1:]))
        single = isinstance(self.converter, SingleDeviceConductanceConverter)
        for (o0, o1, i0, i1), params in zip(self.tiles, self.tile_params):
            devices = [conductances[:, d, o0:o1, i0:i1] for d in range(self.n_devices)]
            weights[:, o0:o1, i0:i1] = self.converter.convert_back_to_weights(
                devices[0] if single else devices, params
            )
        return weights

    def weights(self, t_inference: Optional[float] = None) -> Tensor:
        """``(n_chips, out, in)`` float64 weight matrices at ``t_inference``.

        ``None`` gives the state right after programming, before any time-dependent
        effect (aihwkit's drift-compensation baseline).
        """
        if t_inference is None:
            return self.to_weights(self.g_programmed)
        return self.to_weights(self.conductances(t_inference))


def round_to_levels(g: Tensor, levels: "int | Sequence[float]", g_min: float, g_max: float) -> Tensor:
    """Conductances ``g`` rounded to the nearest programmable level: ``levels`` equally
    spaced on ``[g_min, g_max]``, or the given list (uS)."""
    if isinstance(levels, int):
        step = (g_max - g_min) / (levels - 1)
        return torch.round((g - g_min) / step).mul_(step).add_(g_min).clamp_(g_min, g_max)
    grid = torch.tensor(sorted(levels), dtype=g.dtype, device=g.device)
    upper = torch.searchsorted(grid, g.contiguous()).clamp_(1, len(grid) - 1)
    lo, hi = grid[upper - 1], grid[upper]
    return torch.where(g - lo <= hi - g, lo, hi)


def cluster_cells(seeds: Tensor, radius: float) -> Tensor:
    """Fault clusters: every cell within ``radius`` cells (Euclidean) of a seed takes the
    seed's code; where clusters of both kinds meet, stuck at g_max wins. ``seeds`` is a
    2-D int8 map of codes (0: no seed). Each cell's distance to the nearest seed comes
    from scipy's exact Euclidean distance transform, so the cost does not grow with the
    radius (a radius past the tile's diagonal covers the tile)."""
    from scipy.ndimage import distance_transform_edt

    grown = torch.zeros_like(seeds)
    codes = seeds.cpu().numpy()
    for code in (_STUCK_SA0, _STUCK_SA1):  # the second overrides the first
        if not (codes == code).any():
            continue
        squared = distance_transform_edt(codes != code) ** 2  # integer offsets: exact up to rounding
        covered = torch.from_numpy(squared <= radius * radius + 1e-6).to(seeds.device)
        grown[covered] = code
    return grown


# ------------------------------------------------------------------ drift compensation

Product = Callable[[Tensor, int], Tensor]  # (C, out, in) tile weights, tile index -> (C, in, out) outputs of eye


def drift_readouts(array: ProgrammedArray, comp: BaseDriftCompensation, weights: Tensor,
                   product: Optional[Product] = None) -> Tensor:
    """aihwkit's drift compensation read-out of every chip's tiles: ``(C, n_tiles, T)``,
    ``T`` 1 for ``GlobalDriftCompensation`` (one value a tile), the widest tile's columns
    for ``PerColumnDriftCompensation`` (one a column; a narrower tile's padded with 1).

    Each tile's weights, normalised so that its largest target |weight| is 1 (one full
    conductance range), read with the one-hot inputs ``eye``; ``comp.readout`` of the
    outputs (their mean |value|, over all or per column, clamped below as aihwkit does).
    ``product(block, k)`` gives the outputs of tile ``k`` through a periphery; by
    default they are exact (``block`` transposed).
    """
    width = max(o1 - o0 for o0, o1, _, _ in array.tiles) if isinstance(comp, PerColumnDriftCompensation) else 1
    values = weights.new_ones((weights.shape[0], len(array.tiles), width))
    for k, ((o0, o1, i0, i1), abs_max) in enumerate(zip(array.tiles, array.tile_abs_max)):
        block = weights[:, o0:o1, i0:i1] / (abs_max or 1.0)
        out = block.transpose(1, 2) if product is None else product(block, k)
        for c in range(weights.shape[0]):
            readout = comp.readout(out[c])
            values[c, k, :readout.numel()] = readout
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
