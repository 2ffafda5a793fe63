"""Weights on devices: conductance pairs, programming, faults and time, for many chips.

A weight matrix is split into tiles (aihwkit ``MappingParameter`` semantics); each tile
maps its weights onto conductances with the preset's aihwkit converter, scaled by the
tile's own largest weight. :class:`ProgrammedArray` then holds, for each of ``n_chips``
chips, the conductance of every device: programmed once (programming noise, drift
parameters, stuck-at faults), and read at any time since programming with the
time-dependent effects of the noise model. Weights are read back from the devices.

Randomness: chip ``k`` of a call with ``seed`` is the same chip whatever ``n_chips`` or
chunking; its programmed devices and fault map do not depend on the time at which it
is read. aihwkit's noise models draw from torch's global generator, so each chip's
draws run under ``torch.random.fork_rng`` with a seed derived from (seed, layer, chip,
stage); the caller's global RNG state is left as it was.
"""

from __future__ import annotations

import contextlib
import struct
from typing import Any, Iterator, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from aihwkit.inference.converter.conductance import SingleDeviceConductanceConverter

from .presets import Preset, resolve_preset

# Stages of a chip's life, each with its own random stream.
PROGRAM, FAULTS, READ, BASELINE, READOUT, FORWARD = range(6)

_STUCK_NONE, _STUCK_SA0, _STUCK_SA1 = 0, 1, 2


def derive_seed(seed: int, stage: int, layer: int, chip: int, *extra: int) -> int:
    """A 63-bit seed for one random stream: (run seed, stage, layer, chip, extra keys)."""
    keys = (seed, stage, layer, chip, *extra)
    state = np.random.SeedSequence([int(k) for k in keys]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def time_key(t_inference: float) -> int:
    """The bit pattern of a time, so that each time has its own random stream."""
    return struct.unpack("<Q", struct.pack("<d", float(t_inference)))[0]


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


def check_int(value: Any, name: str, minimum: int, allowed: str = "") -> int:
    """``value`` as an int, or a ValueError naming ``name`` and the allowed range."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}{allowed}, got {value!r}")
    return int(value)


def check_n_chips(n_chips: Any) -> int:
    return check_int(n_chips, "n_chips", 1)


def check_seed(seed: Any) -> int:
    return check_int(seed, "seed", 0)


def check_weight(weight: Any, name: str = "weight") -> Tensor:
    """A non-empty, floating-point, finite tensor, or a ValueError naming ``name``."""
    if not isinstance(weight, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(weight).__name__}")
    if weight.dim() < 1 or weight.numel() == 0:
        raise ValueError(f"{name} must be a non-empty tensor with at least 1 dimension, got shape {tuple(weight.shape)}")
    if not weight.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {weight.dtype}")
    bad = int((~torch.isfinite(weight.detach())).sum())
    if bad:
        raise ValueError(
            f"{name} holds {bad} NaN or infinite value(s) of {weight.numel()}; devices can only hold finite weights"
        )
    return weight


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


def physics_dtype(preset: Preset) -> torch.dtype:
    """dtype of the device physics.

    aihwkit's stochastic models run in float32: their noise dwarfs its rounding, and
    their draws are most of the cost (float64 normals are ~5x slower on a CPU). The
    ideal and log-normal models keep float64 so that a noiseless chip reads back its
    weights bit for bit.
    """
    return torch.float64 if preset.noise in ("ideal", "lognormal") else torch.float32


def physics_device(preset: Preset, device: torch.device) -> torch.device:
    """Where the device physics runs: with the weights, except for aihwkit's
    ReRamCMONoiseModel, which applies numpy's log10 to conductance tensors (CPU only)."""
    return torch.device("cpu") if preset.noise == "reram_cmo" else device


def devices_per_weight(preset: Preset) -> int:
    kind = preset.resolved_converter
    if kind == "single_device":
        return 1
    return 2 * len(preset.f_lst) if kind in ("dual_pair", "n_pair") else 2


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
            g_max), or None without faults.
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
    ):
        check_weight(weight)
        self.preset = preset
        self.n_chips = check_n_chips(n_chips)
        self.seed = check_seed(seed)
        self.layer = int(layer)
        self.chips = range(int(first_chip), int(first_chip) + self.n_chips)
        self.shape = tuple(weight.shape)
        self.device = physics_device(preset, weight.device)
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
        for o0, o1, i0, i1 in self.tiles:
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
        g_target = g_target.clamp_(self.converter.g_min, self.converter.g_max).to(physics_dtype(preset))
        self.g_target = g_target
        self.n_devices = g_target.shape[0]

        self.g_programmed = g_target.new_empty((self.n_chips, *g_target.shape))
        self._drift_params: Optional[Tensor] = None
        self._drift_is_target = False
        with private_rng(self.device):
            for k, chip in enumerate(self.chips):
                seed_global(self.device, derive_seed(self.seed, PROGRAM, self.layer, chip))
                self.g_programmed[k] = self.noise_model.apply_programming_noise_to_conductance(g_target)
                nu = self.noise_model.generate_drift_coefficients(g_target)
                if nu is None:
                    continue
                if nu is g_target:  # ReRAM models keep the target as their "drift parameter"
                    self._drift_is_target = True
                    continue
                if self._drift_params is None:
                    self._drift_params = torch.empty_like(self.g_programmed)
                self._drift_params[k] = nu

        self.stuck = self._sample_faults()
        self.g_programmed = self._apply_stuck(self.g_programmed)

    # --- faults --------------------------------------------------------------

    def _sample_faults(self) -> Optional[Tensor]:
        p0, p1 = self.preset.p_sa0, self.preset.p_sa1
        if p0 == 0 and p1 == 0:
            return None
        codes = torch.empty((self.n_chips, *self.g_target.shape), dtype=torch.int8)
        for k, chip in enumerate(self.chips):
            # Drawn on the CPU with its own generator: the same fault map on any device.
            gen = torch.Generator().manual_seed(derive_seed(self.seed, FAULTS, self.layer, chip))
            u = torch.rand(self.g_target.shape, generator=gen, dtype=torch.float64)
            codes[k] = (u < p0).to(torch.int8) * _STUCK_SA0 + ((u >= p0) & (u < p0 + p1)).to(torch.int8) * _STUCK_SA1
        return codes.to(self.device)

    def _apply_stuck(self, g: Tensor) -> Tensor:
        if self.stuck is None:
            return g
        g = torch.where(self.stuck == _STUCK_SA0, self.converter.g_min, g)
        return torch.where(self.stuck == _STUCK_SA1, self.converter.g_max, g)

    # --- reading -------------------------------------------------------------

    def conductances(self, t_inference: float) -> Tensor:
        """``(n_chips, D, out, in)`` conductances (uS) at ``t_inference`` s after programming."""
        t = self.preset.check_time(t_inference)
        out = torch.empty_like(self.g_programmed)
        with private_rng(self.device):
            for k, chip in enumerate(self.chips):
                seed_global(self.device, derive_seed(self.seed, READ, self.layer, chip, time_key(t)))
                if self._drift_params is not None:
                    nu = self._drift_params[k]
                else:
                    nu = self.g_target if self._drift_is_target else None
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
    return ProgrammedArray(weight, resolve_preset(preset), n_chips, seed, first_chip, layer)


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
    drift compensation (when it has it) as a perfect periphery would: each tile scaled
    by mean |W| right after programming over mean |W| at ``t_inference``.
    """
    preset = resolve_preset(preset)
    t = preset.check_time(t_inference)
    n_chips = check_n_chips(n_chips)
    seed = check_seed(seed)
    array = ProgrammedArray(weight, preset, n_chips, seed)
    weights = array.weights(t)
    if compensate and preset.drift_compensation:
        baseline = array.weights(None)
        for o0, o1, i0, i1 in array.tiles:
            ref = baseline[:, o0:o1, i0:i1].abs().mean(dim=(1, 2), keepdim=True)
            now = weights[:, o0:o1, i0:i1].abs().mean(dim=(1, 2), keepdim=True)
            weights[:, o0:o1, i0:i1] *= ref / now.clamp_min(1e-12)
    return weights.reshape(n_chips, *weight.shape).to(device=weight.device, dtype=weight.dtype)
