"""Helpers that crossbar/, models/ and search/ share: argument checks, did-you-mean,
the torch device, the text of pydantic's errors, and the random streams' seeds.

Randomness is explicit everywhere: a run's seed and a named :class:`Stream` key (plus
layer, chip, time, ...) give each stream its own seed through :func:`derive_seed`, so
that chip ``k`` is the same chip whatever else is asked for. :class:`Stream` is the one
table of those keys.
"""

from __future__ import annotations

import ctypes
import difflib
import enum
import struct
import sys
from typing import Any, Iterable, Optional

import numpy as np
import torch
from torch import Tensor


class Stream(enum.IntEnum):
    """The keys of the random streams (the second word of :func:`derive_seed`).

    The numbers are part of every result: changing one changes the chips and
    networks a seed gives.
    """

    PROGRAM = 0  # a chip's programming noise and drift parameters, per layer
    FAULTS = 1  # its stuck-at fault map, per layer
    READ = 2  # its time-dependent effects (drift, read noise), per layer and time
    BASELINE = 3  # the periphery's output noise in drift compensation's first read-out
    READOUT = 4  # ... and in its read-out at an inference time
    FORWARD = 5  # the periphery's output noise in the forward pass, per chip and time
    WEIGHT_NOISE = 6  # its output-referred weight noise in the forward pass, per chip and time
    LINES = 7  # the output lines' non-linearity of a chip's tiles, per layer
    VARIATION = 8  # each device's conductance range on a chip, per layer
    CORRELATED_FAULTS = 9  # a chip's failed rows, columns and fault clusters, per layer
    CALIBRATION = 10  # the periphery's noise in a chip's calibration pass, per chip (and time)
    CHIP_BLOCK = 11  # a block of chips drawn together (the GPU's scheme): programming and read, per layer and block
    HARDWARE_AWARE = 101  # the chip drawn at each step of hardware-aware training
    EVALUATION_CHIPS = 200  # the chips a search scores its trials on (validation) and reports (test)
    CODESIGN = 300  # the co-design search's sampler of each proposal, per method and trial


def derive_seed(seed: int, stream: int, layer: int, chip: int, *extra: int) -> int:
    """A 63-bit seed for one random stream: (run seed, stream key, layer, chip, extra keys)."""
    keys = (seed, stream, layer, chip, *extra)
    state = np.random.SeedSequence([int(k) for k in keys]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def time_key(t_inference: float) -> int:
    """The bit pattern of a time, so that each time has its own random stream."""
    return struct.unpack("<Q", struct.pack("<d", float(t_inference)))[0]


# ------------------------------------------------------------------ argument checks


def check_int(value: Any, name: str, minimum: int, allowed: str = "") -> int:
    """``value`` as an int, or a ValueError naming ``name`` and the allowed range."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}{allowed}, got {value!r}")
    return int(value)


def check_n_chips(n_chips: Any) -> int:
    return check_int(n_chips, "n_chips", 1)


def check_seed(seed: Any) -> int:
    return check_int(seed, "seed", 0)


def check_threads(threads: Any) -> Optional[int]:
    return None if threads is None else check_int(threads, "threads", 1, " or None (torch's thread count)")


def check_weight(weight: Any, name: str = "weight") -> Tensor:
    """A non-empty, floating-point, finite tensor, or a ValueError naming ``name``."""
    if not isinstance(weight, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(weight).__name__}")
    if weight.is_meta:
        raise ValueError(f"{name} is on the meta device: it has a shape but no values; give the model its weights "
                         "first (e.g. model.to_empty(device='cpu') and load_state_dict)")
    if weight.dim() < 1 or weight.numel() == 0:
        raise ValueError(
            f"{name} must be a non-empty tensor with at least 1 dimension, got shape {tuple(weight.shape)}"
        )
    if not weight.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {weight.dtype}")
    # one summing pass first (NaN and inf carry through a sum); the count only when it is not finite
    bad = 0 if bool(torch.isfinite(weight.detach().sum())) else int((~torch.isfinite(weight.detach())).sum())
    if bad:
        raise ValueError(
            f"{name} holds {bad} NaN or infinite value(s) of {weight.numel()}; devices can only hold finite weights"
        )
    return weight


def did_you_mean(word: Any, options: Iterable[str]) -> str:
    """`` (did you mean 'g_max'?)`` for a near miss among ``options``, else ``""``."""
    close = difflib.get_close_matches(str(word), list(options), n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


def error_text(error: dict) -> str:
    """The message of one pydantic error without pydantic's prefixes."""
    msg = error["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    return msg


def resolve_device(device: "str | torch.device | None") -> torch.device:
    """``None`` means CUDA when available, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but no CUDA GPU is available; use 'cpu'")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    return dev


def user_stacklevel() -> int:
    """The ``stacklevel`` of the first caller outside this package (and torch's
    decorators), for a warning raised in :func:`crossbar.convert` or a first forward pass
    whether the user called it or ``crossbar.evaluate`` did."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith(("crossbar.", "torch.")):
        frame, level = frame.f_back, level + 1
    return level


_LIBC: Any = None
_FREED = [0]
TRIM_BYTES = 256 << 20


def release_free_memory(freed: int) -> None:
    """Note ``freed`` bytes of transients freed; once they add up to ``TRIM_BYTES``, hand
    the free memory back to the system (glibc's ``malloc_trim``; nothing elsewhere). A
    layer drawn tile by tile frees a few MB per tile, and glibc keeps such blocks in its
    heap (its mmap threshold rises to 32 MB after the first large free), where they
    would add up to hundreds of MB of resident memory. Trimming after every tile would
    cost its pages' faults again (1.5x the time of a PCM tile); every 256 MB costs nothing
    measurable."""
    global _LIBC
    _FREED[0] += freed
    if _FREED[0] < TRIM_BYTES:
        return
    _FREED[0] = 0
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL("libc.so.6").malloc_trim if sys.platform.startswith("linux") else False
        except (OSError, AttributeError):
            _LIBC = False
    if _LIBC:
        _LIBC(0)
