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
from typing import Iterator, Optional, Sequence

import torch
from aihwkit.inference.converter.conductance import SingleDeviceConductanceConverter
from torch import Tensor

from .common import Stream, check_n_chips, check_seed, check_weight, derive_seed, release_free_memory, time_key
from .noise import Programming
from .presets import Preset

_STUCK_SA0, _STUCK_SA1 = 1, 2  # fault codes; 0: the device works
#: Chips drawn per call, by device type: 1 draws each chip from its own stream (aihwkit's
#: noise models chip by chip); more draws blocks of that many chips (chips c*n .. c*n + n - 1)
#: from one generator, one call per block, the extra chips of a block discarded, so that
#: chip k is the same for any number of chips and chunking at a given block size.
CHIP_BLOCK: dict[str, int] = {"cpu": 1, "cuda": 16}
DRAW_BLOCK = 1 << 20  # weights: a layer up to this size draws its devices in one block, a larger one per tile


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

    A chip's devices are not kept: each tile's are drawn again from the chip's streams
    whenever they are read (programming noise, drift parameters, variation, then the
    read at a time), tile by tile, so that a chip costs its read-out weights and, with
    faults, one byte a device; the transients are one tile's. Reading the same chip
    twice gives the same devices. Chips are drawn one by one, or on a GPU in blocks of
    :data:`CHIP_BLOCK` chips, one call a block.

    Attributes:
        g_target: ``(D, out, in)`` target conductances (uS), the same for every chip;
            ``D`` is the number of devices per weight (2 for a single pair). Computed
            when asked for.
        g_programmed: ``(n_chips, D, out, in)`` conductances right after programming,
            stuck devices included; computed when asked for. Assigning it pins them
            (e.g. a real chip's measured conductances): the chip then keeps them and
            reads them at later times with its own drift and read noise.
        stuck: ``(n_chips, D, out, in)`` int8 codes (0 ok, 1 stuck at g_min, 2 stuck at
            g_max), or None without faults: independent cells (``p_sa0``, ``p_sa1``),
            then clusters, bit lines (columns) and word lines (rows) of each tile, each
            overriding the one before where they meet.
        g_range: ``(g_min, g_max)``, each ``(n_chips, D, out, in)``: every device's own
            conductance range under device-to-device variation; None without it.
            Computed when asked for.
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
        self._pinned: Optional[Tensor] = None
        self._matrix = weight.detach().reshape(self.shape[0], -1)
        self._given: Optional[Tensor] = None
        self.tile_params: list[dict] = []
        self.tile_abs_max: list[float] = []
        if targets is not None:
            self._given, self.tiles = targets[0], list(targets[1])
            self.n_devices, out_size = self._given.shape[0], self._given.shape[1]
        else:
            out_size = self._matrix.shape[0]
            self.tiles = tile_grid(out_size, self._matrix.shape[1], preset.max_out, preset.max_in)
            for tile in self.tiles:  # each tile's scale, once
                devices, params = self._convert(tile)
                self.tile_params.append(params)
                self.tile_abs_max.append(float(self._block(tile).abs().max()))
                release_free_memory(devices[0].numel() * 8 * (len(devices) + 2))  # float64 block, devices, |w|
            self.n_devices = len(devices)
        self.target_shape = (self.n_devices, out_size, self._matrix.shape[1])
        # Draw blocks: a layer of up to DRAW_BLOCK weights is drawn whole, a larger one tile by tile.
        whole = (0, out_size, 0, self.target_shape[2])
        self.blocks = [whole] if out_size * self.target_shape[2] <= DRAW_BLOCK else list(self.tiles)
        self.chip_block = CHIP_BLOCK.get(self.device.type, 1)  # fixed at programming: a chip stays itself
        self.variation = preset.g_max_variation != 0 or preset.g_min_variation != 0
        self.stuck = self._sample_faults()

    # --- one tile --------------------------------------------------------------

    def _block(self, tile: tuple[int, int, int, int]) -> Tensor:
        """The tile's weights, in float64 (the ideal round trip w -> (G+, G-) -> w is
        then exact once cast back to float32)."""
        o0, o1, i0, i1 = tile
        return self._matrix[o0:o1, i0:i1].to(device=self.device, dtype=torch.float64)

    def _convert(self, tile: tuple[int, int, int, int]) -> tuple[list[Tensor], dict]:
        return _convert_block(self.converter, self._block(tile))

    def _tile_target(self, j: int) -> Tensor:
        """``(D, n_out, n_in)`` target conductances of tile ``j`` in the physics' dtype."""
        o0, o1, i0, i1 = self.tiles[j]
        if self._given is not None:
            g = self._given[:, o0:o1, i0:i1].to(self.device, torch.float64)
        else:
            g = torch.stack(self._convert(self.tiles[j])[0])
        # The converters' arithmetic can overshoot the range by an ulp; devices cannot.
        g = g.clamp_(self.converter.g_min, self.converter.g_max)
        if self.preset.levels is not None and self._given is None:
            g = round_to_levels(g, self.preset.levels, self.converter.g_min, self.converter.g_max)
        return g.to(self.preset.dtype)

    def _tiles_in(self, b: int) -> list[tuple[int, tuple[int, int, int, int]]]:
        """The tiles of draw block ``b``: ``(index, (o0, o1, i0, i1))`` relative to the block."""
        p0, p1, q0, q1 = self.blocks[b]
        return [(j, (o0 - p0, o1 - p0, i0 - q0, i1 - q0)) for j, (o0, o1, i0, i1) in enumerate(self.tiles)
                if p0 <= o0 and o1 <= p1 and q0 <= i0 and i1 <= q1]

    def _block_target(self, b: int) -> Tensor:
        """``(D, n_out, n_in)`` target conductances of draw block ``b``."""
        if len(self.blocks) > 1:
            return self._tile_target(b)
        g = torch.empty(self.target_shape, dtype=self.preset.dtype, device=self.device)
        for j, (o0, o1, i0, i1) in self._tiles_in(b):
            g[:, o0:o1, i0:i1] = self._tile_target(j)
        return g

    def _seed(self, stream: Stream, chip: int, b: int, *extra: int) -> int:
        """Draw block ``b``'s stream of a chip (block 0's is the layer's)."""
        return derive_seed(self.seed, stream, self.layer, chip, *extra, *((b,) if b else ()))

    def _group_seed(self, stream: Stream, c: int, size: int, b: int, *extra: int) -> int:
        """The stream of chip ``c`` (``size`` 1) or of the ``c``-th block of ``size`` chips."""
        if size == 1:
            return self._seed(stream, c, b, *extra)
        return derive_seed(self.seed, Stream.CHIP_BLOCK, self.layer, c, size, stream, b, *extra)

    def _block_ranges(self, j: int, shape: tuple[int, ...]) -> Optional[tuple[Tensor, Tensor]]:
        """Draw block ``j``'s devices' own (g_min, g_max), each ``(n_chips, *shape)``: the nominal
        values times ``1 + v N(0, 1)``, drawn per chip on the CPU (the same devices on any
        device), clamped so that g_min >= 0 and g_max >= g_min."""
        if not self.variation:
            return None
        v_max, v_min = self.preset.g_max_variation, self.preset.g_min_variation
        g_lo, g_hi = float(self.converter.g_min), float(self.converter.g_max)
        lo = torch.empty((self.n_chips, *shape), dtype=torch.float64)
        hi = torch.empty((self.n_chips, *shape), dtype=torch.float64)
        for k, chip in enumerate(self.chips):
            gen = torch.Generator().manual_seed(self._seed(Stream.VARIATION, chip, j))
            hi[k] = g_hi * (1.0 + v_max * torch.randn(shape, generator=gen, dtype=torch.float64))
            lo[k] = g_lo * (1.0 + v_min * torch.randn(shape, generator=gen, dtype=torch.float64))
        lo.clamp_(min=0.0)
        hi = torch.maximum(hi, lo)
        return lo.to(self.device, self.preset.dtype), hi.to(self.device, self.preset.dtype)

    def _block_conductances(self, j: int, t: Optional[float]) -> Tensor:
        """``(n_chips, D, n_out, n_in)`` conductances of draw block ``j`` at ``t`` (None:
        right after programming), stuck devices included."""
        o0, o1, i0, i1 = self.blocks[j]
        target = self._block_target(j)
        ranges = self._block_ranges(j, tuple(target.shape))
        out = target.new_empty((self.n_chips, *target.shape))
        size, first, stop = self.chip_block, self.chips.start, self.chips.stop
        together = size if size > 1 else 0  # chips per draw call (0: one chip)
        programming = None if ranges is not None else Programming(self.noise_model, target, together)
        g_lo, g_hi = float(self.converter.g_min), float(self.converter.g_max)
        with private_rng(self.device):
            for c in range(first // size, (stop - 1) // size + 1):  # single chips, or blocks of chips
                a, b = max(c * size, first), min(c * size + size, stop)  # the chips wanted (the others discarded)
                mine, theirs = slice(a - first, b - first), slice(a - c * size, b - c * size)
                if ranges is not None:  # each device reaches the same fraction of its own range as the target
                    own = ranges[0][mine] + (target - g_lo) / (g_hi - g_lo) * (ranges[1][mine] - ranges[0][mine])
                    if b - a < size:  # a partial block: its discarded chips on the nominal targets
                        own = target.expand(size, *target.shape).clone().index_copy_(
                            0, torch.arange(theirs.start, theirs.stop, device=own.device), own)
                    programming = Programming(self.noise_model, own[0] if size == 1 else own)  # one target a chip
                assert programming is not None
                seed_global(self.device, self._group_seed(Stream.PROGRAM, c, size, j))
                g, nu = programming.draw(read=t is not None)
                g = g.reshape(size, *target.shape)
                if self._pinned is not None:
                    g = g.clone()
                    g[theirs] = self._pinned[mine, :, o0:o1, i0:i1].to(self.device, self.preset.dtype)
                if t is not None:
                    seed_global(self.device, self._group_seed(Stream.READ, c, size, j, time_key(t)))
                    g = programming.read(g if size > 1 else g[0], nu, t).reshape(size, *target.shape)
                out[mine] = g[theirs]
        if self.stuck is not None:
            codes = self.stuck[:, :, o0:o1, i0:i1]
            lo, hi = ranges if ranges is not None else (self.converter.g_min, self.converter.g_max)
            out = torch.where(codes == _STUCK_SA1, hi, torch.where(codes == _STUCK_SA0, lo, out))
        return out

    # --- faults --------------------------------------------------------------

    def _sample_faults(self) -> Optional[Tensor]:
        preset = self.preset
        p0, p1 = preset.p_sa0, preset.p_sa1
        correlated = preset.p_row_fault > 0 or preset.p_col_fault > 0 or preset.p_cluster > 0
        if p0 == 0 and p1 == 0 and not correlated:
            return None
        codes = torch.zeros((self.n_chips, *self.target_shape), dtype=torch.int8)
        for k, chip in enumerate(self.chips):
            # Drawn on the CPU with its own generator: the same fault map on any device.
            for j, (o0, o1, i0, i1) in enumerate(self.blocks if p0 > 0 or p1 > 0 else ()):
                gen = torch.Generator().manual_seed(self._seed(Stream.FAULTS, chip, j))
                u = torch.rand((self.n_devices, o1 - o0, i1 - i0), generator=gen, dtype=torch.float64)
                codes[k, :, o0:o1, i0:i1] = ((u < p0).to(torch.int8) * _STUCK_SA0
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

    # --- reading -------------------------------------------------------------

    def conductances(self, t_inference: Optional[float]) -> Tensor:
        """``(n_chips, D, out, in)`` conductances (uS) at ``t_inference`` s after programming
        (None: right after programming, before any time-dependent effect)."""
        t = None if t_inference is None else self.preset.check_time(t_inference)
        out = torch.empty((self.n_chips, *self.target_shape), dtype=self.preset.dtype, device=self.device)
        for j, (o0, o1, i0, i1) in enumerate(self.blocks):
            out[:, :, o0:o1, i0:i1] = self._block_conductances(j, t)
        return out

    @property
    def g_programmed(self) -> Tensor:
        return self.conductances(None)

    @g_programmed.setter
    def g_programmed(self, value: Tensor) -> None:
        expected = (self.n_chips, *self.target_shape)
        if tuple(value.shape) != expected:
            raise ValueError(f"g_programmed must have shape {expected} (chips, devices, out, in), "
                             f"not {tuple(value.shape)}")
        self._pinned = value.detach().clone()

    @property
    def g_target(self) -> Tensor:
        """``(D, out, in)`` target conductances (uS), the same for every chip."""
        g = torch.empty(self.target_shape, dtype=self.preset.dtype, device=self.device)
        for j, (o0, o1, i0, i1) in enumerate(self.blocks):
            g[:, o0:o1, i0:i1] = self._block_target(j)
        return g

    @property
    def g_range(self) -> Optional[tuple[Tensor, Tensor]]:
        if not self.variation:
            return None
        lo = torch.empty((self.n_chips, *self.target_shape), dtype=self.preset.dtype, device=self.device)
        hi = torch.empty_like(lo)
        for j, (o0, o1, i0, i1) in enumerate(self.blocks):
            ranges = self._block_ranges(j, (self.n_devices, o1 - o0, i1 - i0))
            assert ranges is not None
            lo[:, :, o0:o1, i0:i1], hi[:, :, o0:o1, i0:i1] = ranges
        return lo, hi

    def to_weights(self, conductances: Tensor) -> Tensor:
        """Read weights back from ``(n_chips, D, out, in)`` conductances: ``(n_chips, out, in)``."""
        weights = conductances.new_empty((conductances.shape[0], *self.target_shape[1:]))
        for j, (o0, o1, i0, i1) in enumerate(self.tiles):
            weights[:, o0:o1, i0:i1] = self._tile_weights(j, conductances[:, :, o0:o1, i0:i1])
        return weights

    def _tile_weights(self, j: int, conductances: Tensor) -> Tensor:
        single = isinstance(self.converter, SingleDeviceConductanceConverter)
        devices = [conductances[:, d] for d in range(self.n_devices)]
        return self.converter.convert_back_to_weights(devices[0] if single else devices, self.tile_params[j])

    def weights(self, t_inference: Optional[float] = None) -> Tensor:
        """``(n_chips, out, in)`` weight matrices at ``t_inference``, in the physics' dtype,
        read back tile by tile (one tile's conductances at a time).

        ``None`` gives the state right after programming, before any time-dependent
        effect (aihwkit's drift-compensation baseline).
        """
        weights = torch.empty((self.n_chips, *self.target_shape[1:]), dtype=self.preset.dtype, device=self.device)
        for j, block in self.tile_weights(t_inference):
            o0, o1, i0, i1 = self.tiles[j]
            weights[:, o0:o1, i0:i1] = block
        return weights

    def tile_weights(self, t_inference: Optional[float] = None) -> Iterator[tuple[int, Tensor]]:
        """``(tile index, (n_chips, n_out, n_in) weights)`` of every tile at
        ``t_inference``, one draw block's devices at a time (no whole-layer tensor)."""
        t = None if t_inference is None else self.preset.check_time(t_inference)
        for b in range(len(self.blocks)):
            g = self._block_conductances(b, t)
            for j, (o0, o1, i0, i1) in self._tiles_in(b):
                yield j, self._tile_weights(j, g[:, :, o0:o1, i0:i1])
            release_free_memory(g.numel() * g.element_size() * 8)  # the block's draws and reads, a few copies
            del g


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
