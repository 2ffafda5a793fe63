"""The converted model: a network whose crossbar layers run on ``n_chips`` simulated chips.

:func:`crossbar.convert` returns a :class:`CrossbarModel`, which follows aihwkit's life
cycle for a whole batch of chips::

    xmodel = crossbar.convert(model, "pcm")
    xmodel.program(n_chips=16, seed=0)   # programming noise, drift parameters, faults
    xmodel.drift(86400.0)                # every chip as it is one day later
    logits = xmodel(x)                   # (16, batch, classes)

Two ways to run the network over the chips give identical results:

- ``"fold"``: chips are folded into the batch dimension (chip-major, one forward pass
  for all chips): fully-connected layers are one batched matmul, the periphery is
  batched over chips, convolutions are dispatched per chip slice into one output.
- ``"loop"``: the network runs once per chip over the same pre-sampled weights, so
  each chip's activations stay cache-sized. On a CPU, chips run side by side on
  ``threads`` threads (default: torch's thread count), each chip on one thread. On a
  CPU this measured faster (see ``bench/mc_eval.py``); ``"auto"`` picks ``loop`` on
  CPU and ``fold`` on CUDA.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
from typing import Optional

import torch
from torch import Tensor, nn

from .common import Stream, check_n_chips, check_seed, check_threads, derive_seed, time_key
from .layers import ChipContext, CrossbarLayer
from .presets import Preset
from .rng import NoiseStream

STRATEGIES = ("auto", "fold", "loop")


def check_strategy(strategy: str) -> str:
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    return strategy


_POOLS: dict[tuple[int, int], concurrent.futures.ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def _chip_pool(threads: int) -> concurrent.futures.ThreadPoolExecutor:
    """A process-wide pool of ``threads`` threads for running chips side by side."""
    key = (os.getpid(), threads)  # a forked child must not use its parent's threads
    with _POOLS_LOCK:
        pool = _POOLS.get(key)
        if pool is None:
            pool = _POOLS[key] = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="crossbar-chip")
        return pool


class CrossbarModel(nn.Module):
    """A network whose ``Linear``/``Conv2d`` layers run on ``n_chips`` simulated chips.

    ``forward(x)`` returns the outputs of every chip stacked: ``(n_chips, batch, ...)``.
    """

    def __init__(self, module: nn.Module, preset: Preset, strategy: str = "auto", threads: Optional[int] = None):
        super().__init__()
        self.module = module
        self.preset = preset
        self.strategy = check_strategy(strategy)
        self.threads = check_threads(threads)
        self.crossbar_layers = [m for m in module.modules() if isinstance(m, CrossbarLayer)]
        self._ctx = ChipContext()
        for layer in self.crossbar_layers:
            layer._ctx = self._ctx
        self.seed = 0
        self.first_chip = 0
        self.t_inference: Optional[float] = None

    @property
    def n_chips(self) -> int:
        return self._ctx.n_chips

    @property
    def device(self) -> torch.device:
        for t in self.module.buffers():
            return t.device
        for t in self.module.parameters():
            return t.device
        return torch.device("cpu")

    def resolved_strategy(self) -> str:
        if self.strategy != "auto":
            return self.strategy
        return "fold" if self.device.type == "cuda" else "loop"

    @torch.no_grad()
    def program(self, n_chips: int, seed: int = 0, first_chip: int = 0) -> "CrossbarModel":
        """Program chips ``first_chip .. first_chip + n_chips - 1`` of the run ``seed``."""
        n_chips = check_n_chips(n_chips)
        self.seed = check_seed(seed)
        self.first_chip = int(first_chip)
        for layer in self.crossbar_layers:
            layer.program(n_chips, self.seed, self.first_chip)
        self._ctx.n_chips = n_chips
        self.t_inference = None
        return self

    @torch.no_grad()
    def drift(self, t_inference: float) -> "CrossbarModel":
        """Set every programmed chip to its state ``t_inference`` s after programming."""
        if self.n_chips == 0:
            raise RuntimeError("program() the model before drift()")
        t = self.preset.check_time(t_inference)
        for layer in self.crossbar_layers:
            layer.drift(t)
        self._ctx.streams = self._ctx.w_streams = None
        chips, device = range(self.first_chip, self.first_chip + self.n_chips), self.device
        if self.preset.out_noise > 0:
            self._ctx.streams = [NoiseStream(derive_seed(self.seed, Stream.FORWARD, 0, chip, time_key(t)), device)
                                 for chip in chips]
        if self.preset.w_noise > 0:
            self._ctx.w_streams = [
                NoiseStream(derive_seed(self.seed, Stream.WEIGHT_NOISE, 0, chip, time_key(t)), device) for chip in chips
            ]
        self.t_inference = t
        return self

    def forward(self, x: Tensor) -> Tensor:
        if self.t_inference is None:
            raise RuntimeError("call program(n_chips, seed) and drift(t_inference) before running the model")
        ctx = self._ctx
        if self.resolved_strategy() == "loop":
            return torch.stack(self._loop(x))
        ctx.batch = x.shape[0]
        y = self.module(x)
        if y.shape[0] == ctx.n_chips * ctx.batch:
            return y.view(ctx.n_chips, ctx.batch, *y.shape[1:])
        if y.shape[0] == ctx.batch:  # no crossbar layer on the output path
            return y.unsqueeze(0).expand(ctx.n_chips, *y.shape)
        raise RuntimeError(f"model output batch {y.shape[0]} does not match the input batch {ctx.batch}")

    def chip_threads(self) -> int:
        """Chips run side by side in loop mode: ``threads``, default torch's thread count
        (1 on CUDA, whose kernels are asynchronous anyway)."""
        if self.device.type != "cpu":
            return 1
        return max(1, min(self.threads or torch.get_num_threads(), self.n_chips))

    def _run_chip(self, chip: int, x: Tensor) -> Tensor:
        ctx = self._ctx
        ctx.chip = chip
        try:
            return self.module(x)
        finally:
            ctx.chip = None

    def _loop(self, x: Tensor) -> list[Tensor]:
        """Every chip's forward pass, each on one CPU thread, up to ``chip_threads()``
        chips at a time. One thread per chip keeps a chip's numbers the same whatever
        the machine's core count, and uses the cores better than splitting each
        (small) operation: the periphery's compiled loops, for one, run on a single
        thread (and release the GIL, so chips run side by side)."""
        n_chips, threads = self._ctx.n_chips, self.chip_threads()
        if self.device.type != "cpu":
            return [self._run_chip(c, x) for c in range(n_chips)]
        grad = torch.is_grad_enabled()  # thread-local, like no_grad

        def run(chip: int) -> Tensor:  # in a pool thread
            if torch.get_num_threads() != 1:  # a per-thread setting (OpenMP)
                torch.set_num_threads(1)
            with torch.set_grad_enabled(grad):
                return self._run_chip(chip, x)

        previous = torch.get_num_threads()
        self._ctx.model_input = x
        try:
            if threads > 1:
                return list(_chip_pool(threads).map(run, range(n_chips)))
            torch.set_num_threads(1)
            return [self._run_chip(c, x) for c in range(n_chips)]
        finally:
            self._ctx.model_input = None
            # also resets the process-wide default that a worker's set_num_threads(1)
            # changed, which new threads start with
            torch.set_num_threads(previous)

    def weight_bytes_per_chip(self) -> int:
        """Memory one chip's programmed state needs (devices, drift parameters, weights)."""
        total = 0
        for layer in self.crossbar_layers:
            size = torch.finfo(layer.preset.dtype).bits // 8
            # programmed conductance, drift parameter and fault code per device; two
            # working copies in the physics dtype and the float32 result per weight.
            per_device = 2 * size + 1
            if layer.preset.g_max_variation > 0 or layer.preset.g_min_variation > 0:
                per_device += 3 * size  # each device's range and its own target
            per_weight = layer.preset.devices_per_weight * per_device + 2 * size + 4
            total += layer.weight.numel() * per_weight
        return total
