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
import warnings
from typing import Any, Optional

import torch
from torch import Tensor, nn

from .common import Stream, check_n_chips, check_seed, check_threads, derive_seed, time_key, user_stacklevel
from .layers import ChipContext, CrossbarLayer
from .presets import Preset
from .rng import NoiseStream

STRATEGIES = ("auto", "fold", "loop")


def check_strategy(strategy: str) -> str:
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    return strategy


def check_output(output: Any) -> "int | str | None":
    """``output``: which element of a tuple or dict the model returns holds its scores."""
    if output is not None and (isinstance(output, bool) or not isinstance(output, (int, str))):
        raise ValueError(f"output must be an index (int), a key (str) or None, got {output!r}")
    return output


class InputError(ValueError):
    """Inputs the model cannot run on: their dtype, or a shape a layer cannot take."""


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


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

    ``forward(x)`` returns the outputs of every chip stacked: ``(n_chips, batch, ...)``
    (``output`` picks them from a model that returns a tuple or a dict). The first
    forward pass warns about any crossbar layer the model's forward did not run; in
    ``fold``, a model that cannot run with its chips folded into the batch (one that
    reshapes by the input's batch size) runs in ``loop`` instead, with a warning.
    """

    def __init__(self, module: nn.Module, preset: Preset, strategy: str = "auto", threads: Optional[int] = None,
                 output: "int | str | None" = None):
        super().__init__()
        self.module = module
        self.preset = preset
        self.strategy = check_strategy(strategy)
        self.threads = check_threads(threads)
        self.output = check_output(output)
        self._checked = False  # the first forward's check of which crossbars ran
        self._fold_works: Optional[bool] = None  # None: not tried yet
        self.crossbar_layers = [m for m in module.modules() if isinstance(m, CrossbarLayer)]
        self._ctx = ChipContext()
        for layer in self.crossbar_layers:
            layer._ctx = self._ctx
        self.seed = 0
        self.first_chip = 0
        self.t_inference: Optional[float] = None
        self.calibration_inputs: Optional[Tensor] = None  # what the chips read to calibrate (calibrate_with)

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

    def runs_folded(self) -> bool:
        """Whether a forward pass folds the chips into the batch: ``fold`` unless the model
        was found not to run folded (then it runs in ``loop``)."""
        return self.resolved_strategy() == "fold" and self._fold_works is not False

    @torch.no_grad()
    def program(self, n_chips: int, seed: int = 0, first_chip: int = 0) -> "CrossbarModel":
        """Program chips ``first_chip .. first_chip + n_chips - 1`` of the run ``seed``."""
        n_chips = check_n_chips(n_chips)
        self.seed = check_seed(seed)
        self.first_chip = int(first_chip)
        self.check_calibration()
        for layer in self.crossbar_layers:
            layer.program(n_chips, self.seed, self.first_chip)
        self._ctx.n_chips = n_chips
        self.t_inference = None
        if self.preset.calibration == "at_programming":
            self._fit_calibration(None)
        return self

    # --- calibration (crossbar.calibration) ------------------------------------

    @torch.no_grad()
    def calibrate_with(self, inputs: Any) -> "CrossbarModel":
        """The inputs the chips read to calibrate (the preset's ``calibration`` and
        ``input_range_percentile``): the first ``calibration_samples`` of ``inputs`` (a
        tensor, an ``(inputs, labels)`` pair or a DataLoader), e.g. a few training
        samples. Sets each layer's input range (the same for every chip) at once; the
        column fits happen at :meth:`program` or :meth:`drift`."""
        from .calibration import calibration_inputs, percentile_range

        x = calibration_inputs(inputs, self.preset.calibration_samples, self.device)
        self.calibration_inputs = x
        percentile = self.preset.input_range_percentile
        if percentile is not None:
            seen: dict = {}
            self._ctx.digital = seen
            try:
                self.module(x)
            finally:
                self._ctx.digital = None
            for layer in self.crossbar_layers:
                layer.input_range = percentile_range(seen[layer], percentile) if layer in seen else None
        return self

    def check_calibration(self) -> None:
        """A preset that calibrates needs its calibration inputs (:meth:`calibrate_with`)."""
        if self.preset.calibrations.calibrates and self.calibration_inputs is None:
            raise ValueError(f"preset {self.preset.name!r} calibrates (calibration = "
                             f"{self.preset.calibration!r}, input_range_percentile = "
                             f"{self.preset.input_range_percentile}): pass calibration_data, inputs its chips "
                             "read to calibrate (e.g. a few training samples), to crossbar.evaluate, or call "
                             "xmodel.calibrate_with(inputs)")

    def _fit_calibration(self, t: Optional[float]) -> None:
        """The chips' calibration pass: the calibration inputs through every layer, each
        layer's columns fitted in order (:meth:`CrossbarLayer._correct`), with the
        periphery's noise from each chip's own calibration stream (programming: ``t`` None)."""
        assert self.calibration_inputs is not None
        ctx, extra = self._ctx, () if t is None else (time_key(t),)
        chips, device = range(self.first_chip, self.first_chip + self.n_chips), self.device
        for layer in self.crossbar_layers:
            if t is None:  # the state right after programming
                layer.drift(None)
            layer.start_fit()
        ctx.streams = ctx.w_streams = None
        if self.preset.out_noise > 0:
            ctx.streams = [NoiseStream(derive_seed(self.seed, Stream.CALIBRATION, 0, chip, *extra), device)
                           for chip in chips]
        if self.preset.w_noise > 0:
            ctx.w_streams = [NoiseStream(derive_seed(self.seed, Stream.CALIBRATION, 1, chip, *extra), device)
                             for chip in chips]
        ctx.fitting = True
        try:
            self._forward(self.calibration_inputs)
        finally:
            ctx.fitting = False
            ctx.streams = ctx.w_streams = None

    @torch.no_grad()
    def drift(self, t_inference: float) -> "CrossbarModel":
        """Set every programmed chip to its state ``t_inference`` s after programming."""
        if self.n_chips == 0:
            raise RuntimeError("program() the model before drift()")
        t = self.preset.check_time(t_inference)
        for layer in self.crossbar_layers:
            layer.drift(t)
        if self.preset.calibration == "at_inference":
            self._fit_calibration(t)
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
        first = not self._checked
        for layer in self.crossbar_layers if first else ():
            layer.ran = False
        try:
            y = self._forward(x)
        except RuntimeError as err:
            raise self._diagnose(x, err) from err
        if first:
            self._check_used()
            self._checked = True
        return y

    def _forward(self, x: Tensor) -> Tensor:
        if not self.runs_folded():
            return torch.stack([self._select(y) for y in self._loop(x)])
        if self._fold_works:
            return self._fold(x)
        try:
            y = self._fold(x)
        except Exception as err:  # a model that cannot run folded: the first pass says so
            try:
                y = torch.stack([self._select(y) for y in self._loop(x)])
            except Exception:
                raise err from None
            self._fold_works = False
            warnings.warn(f"crossbar: {type(self.module).__name__} cannot run with its chips folded into the batch "
                          f"({_first_line(err)}); its chips run one after another instead (strategy='loop')",
                          UserWarning, stacklevel=user_stacklevel())
            return y
        if self._ctx.n_chips > 1:  # one chip folded is no test: its batch is the model's own
            self._fold_works = True
        return y

    def _fold(self, x: Tensor) -> Tensor:
        ctx = self._ctx
        ctx.batch = x.shape[0]
        y = self._select(self.module(x))
        if y.dim() and y.shape[0] == ctx.n_chips * ctx.batch:
            return y.view(ctx.n_chips, ctx.batch, *y.shape[1:])
        if y.dim() and y.shape[0] == ctx.batch:  # no crossbar layer on the output path
            return y.unsqueeze(0).expand(ctx.n_chips, *y.shape)
        raise RuntimeError(f"model output batch {y.shape[0] if y.dim() else 'a scalar'} does not match the "
                           f"input batch {ctx.batch}")

    def _select(self, y: Any) -> Tensor:
        """The scores among what the model returned: ``output`` picks them from a tuple or a dict."""
        if self.output is not None:
            try:
                y = y[self.output]
            except (KeyError, IndexError, TypeError) as err:
                keys = list(y.keys()) if isinstance(y, dict) else f"0..{len(y) - 1}" if isinstance(y, (tuple, list)) \
                    else f"nothing to pick from ({type(y).__name__})"
                raise ValueError(f"output={self.output!r}: the model returns no such element; it has {keys}") from err
        if not isinstance(y, Tensor):
            what = f"a dict with keys {', '.join(map(repr, y))}" if isinstance(y, dict) else \
                f"a {type(y).__name__} of {len(y)}" if isinstance(y, (tuple, list)) else f"a {type(y).__name__}"
            raise ValueError(f"{type(self.module).__name__} returns {what}, not a tensor: pass output=<index or key> "
                             "to crossbar.convert or crossbar.evaluate to name the element that holds the scores")
        return y

    def unused_problem(self) -> str:
        """After a forward pass, the crossbars it did not run, said in one line (``""``: every
        one ran). A forward that reads a layer's weight directly (``F.linear(x,
        self.fc.weight)``, tied weights) computes with the exact digital weight, so no
        chip's devices act there."""
        names = {id(m): name for name, m in self.module.named_modules()}
        unused = [f"{names.get(id(layer)) or 'the model'} ({type(layer).__name__})"
                  for layer in self.crossbar_layers if not layer.ran]
        if not unused:
            return ""
        why = ("its weight may be read directly (F.linear(x, self.fc.weight), tied weights), which computes with "
               "the exact digital weight: call the layer instead")
        if len(unused) == len(self.crossbar_layers):
            return (f"no crossbar layer ran in {type(self.module).__name__}'s forward pass ({', '.join(unused)}), "
                    f"so every chip would score as the digital network; {why}")
        return (f"layer{'s' * (len(unused) > 1)} {', '.join(unused)} did not run in the model's first forward pass, "
                f"so no chip's devices act there; {why}")

    def _check_used(self) -> None:
        """The first forward pass: crossbars it did not run are warned about
        (:meth:`unused_problem`); none at all is an error: nothing would be simulated."""
        problem = self.unused_problem()
        if problem and not any(layer.ran for layer in self.crossbar_layers):
            raise ValueError(problem)
        if problem:
            warnings.warn(f"crossbar: {problem}", UserWarning, stacklevel=user_stacklevel())

    def _diagnose(self, x: Tensor, err: RuntimeError) -> Exception:
        """The error of a forward pass that failed, naming the layer that could not take
        its input (torch's own message names none) and what it expects."""
        dtype = self.crossbar_layers[0].weight.dtype if self.crossbar_layers else x.dtype
        if x.dtype != dtype and "type" in str(err):
            hint = "x.float() / 255 for 8-bit images" if not x.is_floating_point() else f"x.to({dtype})"
            return InputError(f"inputs are {x.dtype} but the model's weights are {dtype}; convert them first ({hint})")
        entered: list[tuple[str, nn.Module, tuple]] = []

        def pre(name: str):
            def hook(module: nn.Module, args: tuple) -> None:
                shape = tuple(args[0].shape) if args and isinstance(args[0], Tensor) else ()
                entered.append((name, module, shape))
            return hook

        def post(module: nn.Module, args: tuple, out: Any) -> None:
            while entered and entered.pop()[1] is not module:
                pass

        handles = [h for name, m in self.module.named_modules()
                   for h in (m.register_forward_pre_hook(pre(name)), m.register_forward_hook(post))]
        try:  # the failure again, on one chip, to see where it happens
            self._run_chip(0, x)
        except RuntimeError:
            pass
        else:
            return err
        finally:
            for h in handles:
                h.remove()
        if not entered or not entered[-1][0]:
            return err
        name, layer, shape = entered[-1]
        expects = ""
        weight = getattr(layer, "weight", None)
        if isinstance(weight, Tensor) and weight.dim() >= 2:
            conv = weight.dim() > 2
            n_in = weight.shape[1] * (getattr(layer, "groups", 1) if conv else 1)
            expects = f", which takes {n_in} input {'channels' if conv else 'features'}"
        return InputError(f"inputs of shape {tuple(x.shape)} reach layer {name!r} ({type(layer).__name__}{expects}) "
                          f"as {shape}, which it cannot take: {_first_line(err)}")

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
        """Memory one chip's state needs: its read-out weights (physics dtype, then the
        float32 copy the forward uses), one fault code a device, and the largest tile's
        devices while they are drawn (a few working copies; :class:`ProgrammedArray`)."""
        total, tile = 0, 0
        for layer in self.crossbar_layers:
            size = torch.finfo(layer.preset.dtype).bits // 8
            preset = layer.preset
            faults = preset.p_sa0 > 0 or preset.p_sa1 > 0 or preset.p_row_fault > 0 or preset.p_col_fault > 0 \
                or preset.p_cluster > 0
            devices = preset.devices_per_weight
            total += layer.weight.numel() * (devices * int(faults) + size + 4)
            n_out = layer.weight.shape[0]
            largest = min(preset.max_out or n_out, n_out) * min(preset.max_in or 1 << 62, layer.weight.numel() // n_out)
            tile = max(tile, largest * devices * 8 * size)
        return total + tile
