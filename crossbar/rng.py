"""The periphery's output noise: one counter-based Gaussian stream per chip.

The periphery draws one Gaussian per output of every layer, per image and chip
(aihwkit's ``out_noise``): about 6,500 per image and chip for LeNet-5 on MNIST, almost
all the random numbers of a Monte Carlo with the periphery on. On a CPU they come from
Philox4x32-10 turned into Gaussians by Box-Muller, in compiled loops
(:mod:`crossbar.kernels`, which also adds them to the outputs in the pass that rounds
to ADC codes, :func:`crossbar.kernels.noisy_adc`), several times faster than torch's
CPU generator (mt19937, one value at a time; docs/performance.md has the figures and
``bench/periphery_profile.py`` measures them).

A :class:`NoiseStream` is a key and a counter, like a ``torch.Generator``: a draw of ``n``
values takes the next ``ceil(n / 4)`` counters, so the values are a pure function of the
seed and the sequence of draws, and value ``i`` of a draw does not depend on how the
caller splits the draw into pieces. The arithmetic is IEEE single precision, without
fast-math and without fused multiply-adds (checked in the compiled code), so a stream's
values do not depend on the CPU's vector width. On CUDA a stream is a ``torch.Generator``:
torch's own Philox kernels are fast there, and the two devices draw different streams.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import Tensor

from .kernels import flat_numpy, philox_words, standard_normal_into

__all__ = ["NoiseStream", "philox4x32_10", "standard_normal"]


def philox4x32_10(counter, key) -> tuple[int, int, int, int]:
    """Philox4x32-10 of a 4-word counter and a 2-word key: the four 32-bit output words."""
    return tuple(int(w) for w in philox_words(*(int(v) for v in counter), *(int(v) for v in key)))


class NoiseStream:
    """One chip's stream of output noise: Philox4x32-10 on a CPU, a torch.Generator on
    CUDA. ``seed`` is a 64-bit key (e.g. from :func:`crossbar.common.derive_seed`)."""

    def __init__(self, seed: int, device="cpu"):
        self.seed = int(seed) & 0xFFFFFFFFFFFFFFFF
        self.device = torch.device(device)
        self.counter = 0  # next unused Philox counter (CPU)
        self.generator: Optional[torch.Generator] = None
        if self.device.type != "cpu":
            self.generator = torch.Generator(self.device).manual_seed(self.seed)

    @property
    def key(self) -> tuple[int, int]:
        return self.seed & 0xFFFFFFFF, self.seed >> 32

    def take(self, n_values: int) -> int:
        """Reserve the counters of a draw of ``n_values`` values; returns the first."""
        start = self.counter
        self.counter += (int(n_values) + 3) // 4
        return start

    def normal_(self, out: Tensor, std: float = 1.0) -> Tensor:
        """Fill ``out`` with ``std * N(0, 1)``: the values :func:`crossbar.kernels.noisy_adc` would add."""
        if self.generator is not None:
            return out.normal_(0.0, std, generator=self.generator)
        flat = flat_numpy(out)
        draws = np.empty(flat.size, np.float32)
        standard_normal_into(draws, self.take(flat.size), *self.key)
        flat[:] = draws
        if std != 1.0:
            flat *= flat.dtype.type(std)
        return out

    def __repr__(self) -> str:
        return f"NoiseStream(seed={self.seed}, device={str(self.device)!r}, counter={self.counter})"


def standard_normal(n: int, seed: int) -> Tensor:
    """``n`` standard normals, the first draw of a CPU stream with ``seed`` (float32)."""
    out = torch.empty(int(n), dtype=torch.float32)
    return NoiseStream(seed).normal_(out)
