"""The Monte Carlo: each chip's score (accuracy, or any :mod:`crossbar.metrics` metric) over many
simulated chips and inference times."""

from __future__ import annotations

from typing import Any, Iterable, Optional, Sequence

import numpy as np
import psutil
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .arrays import CHIP_BLOCK
from .catalog import resolve_preset
from .common import check_int, check_n_chips, check_seed, check_threads, resolve_device
from .layers import CrossbarConv2d
from .mapping import convert
from .metrics import Metric, MetricSpec, get_metric, n_targets
from .model import CrossbarModel, InputError, check_output, check_strategy
from .presets import Preset


def check_times(t_inference: Any, preset: Preset) -> list[float]:
    """A non-empty list of times the preset can simulate."""
    if isinstance(t_inference, (np.ndarray, Tensor)):
        t_inference = t_inference.tolist() if t_inference.ndim else [t_inference.item()]
    times = list(t_inference) if isinstance(t_inference, (list, tuple)) else [t_inference]
    if not times:
        raise ValueError("t_inference must list at least one time (seconds since programming)")
    return [preset.check_time(t) for t in times]


def _batches(data: Any, batch_size: int, device: torch.device, metric: Metric) -> list[tuple[Tensor, Any]]:
    """``data`` as a list of ``(inputs, targets)`` batches on ``device``, the targets
    checked by the metric (class indices for accuracy)."""
    what = metric.targets
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(d, Tensor) for d in data):
        inputs, labels = data
        metric.check_targets(labels)
        if inputs.dim() == 0 or labels.dim() == 0 or inputs.shape[0] != labels.shape[0]:
            raise ValueError(
                f"data: inputs ({inputs.shape[0] if inputs.dim() else 'a scalar'}) and {what} "
                f"({labels.shape[0] if labels.dim() else 'a scalar'}) differ in length; inputs must be a batch, "
                "(n_samples, ...)"
            )
        batches = [
            (inputs[i:i + batch_size], labels[i:i + batch_size]) for i in range(0, inputs.shape[0], batch_size)
        ]
    elif isinstance(data, Iterable) and not isinstance(data, (Tensor, str, bytes)):
        batches = []
        for item in data:
            if not (isinstance(item, (tuple, list)) and len(item) >= 2):
                raise ValueError(f"data: a DataLoader must yield (inputs, {what}) batches")
            batches.append((item[0], item[1]))
    else:
        raise ValueError(
            f"data must be a DataLoader yielding (inputs, {what}) or an (inputs, {what}) pair of tensors, "
            f"got {type(data).__name__}"
        )
    for x, y in batches:
        if not isinstance(x, Tensor):
            raise ValueError(f"data: inputs must be tensors, got {type(x).__name__}")
        metric.check_targets(y)
        if x.dim() == 0 or x.shape[0] != n_targets(y):
            raise ValueError(
                f"data: a batch holds {x.shape[0] if x.dim() else 'a scalar as'} inputs but {n_targets(y)} {what}"
            )
        if x.is_floating_point() or x.is_complex():
            bad = int((~torch.isfinite(x)).sum())
            if bad:  # every chip would score chance, and nothing would say why
                raise ValueError(f"data: the inputs hold {bad} NaN or infinite value(s) of {x.numel()}")
    if not batches or sum(n_targets(y) for _, y in batches) == 0:
        raise ValueError("data holds no samples")
    return [(x.to(device), _to(y, device)) for x, y in batches]


def _to(y: Any, device: torch.device) -> Any:
    if isinstance(y, Tensor):
        return y.to(device)
    return [{k: v.to(device) if isinstance(v, Tensor) else v for k, v in t.items()} if isinstance(t, dict) else t
            for t in y]


def _activation_bytes(model: CrossbarModel, sample: Tensor) -> int:
    """Bytes of all module outputs for one sample (an upper bound on live activations),
    plus the unfolded input vectors a convolution with a periphery works on."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(output, Tensor):
            total += output.numel() * output.element_size()
            if isinstance(module, CrossbarConv2d) and not module.periphery.perfect:
                positions = output.shape[-1] * output.shape[-2]
                # unfolded inputs, their DAC codes and one temporary
                total += 3 * positions * module.weight[0].numel() * output.element_size()
                if module.periphery.lines:  # the array effects' products and weight noise
                    total += 3 * output.numel() * output.element_size()

    handles = [m.register_forward_hook(hook) for m in model.module.modules()]
    try:
        with torch.no_grad():
            _forward(model, sample)
    finally:
        for h in handles:
            h.remove()
    return total


def available_memory(device: torch.device) -> int:
    """Bytes free on ``device`` now."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    return int(psutil.virtual_memory().available)


def memory_budget(device: torch.device) -> int:
    """Default memory for one chunk of chips: a quarter of what is free, at most 4 GiB."""
    return int(min(available_memory(device) // 4, 4 << 30))


def chip_bytes(xmodel: CrossbarModel, activation_bytes: int, batch_size: int) -> int:
    """One chip's memory: its programmed state, and in fold its activations (which grow
    with the chips folded into a batch)."""
    per_chip = xmodel.weight_bytes_per_chip()
    if xmodel.runs_folded():
        per_chip += batch_size * activation_bytes
    return per_chip


def auto_chunk_size(
    xmodel: CrossbarModel,
    sample: Tensor,
    t_inference: float,
    batch_size: int,
    n_chips: int,
    max_memory: Optional[int] = None,
) -> int:
    """How many chips to program at once so that their state stays within ``max_memory``."""
    activations = 0
    if xmodel.runs_folded():
        xmodel.program(1).drift(t_inference)
        activations = _activation_bytes(xmodel, sample)
    budget = memory_budget(xmodel.device) if max_memory is None else int(max_memory)
    return max(1, min(n_chips, budget // max(chip_bytes(xmodel, activations, batch_size), 1)))


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def check_memory(n_chips: int, n_times: int, chunk: int, per_chip: int, max_memory: Optional[int],
                 device: torch.device) -> None:
    """Refuse, before anything large is allocated, an evaluation that cannot fit: the
    scores of every chip and time, and one chunk of programmed chips."""
    if max_memory is not None and per_chip > max_memory:
        raise ValueError(f"max_memory={int(max_memory):,} bytes ({_size(max_memory)}) is less than one chip of "
                         f"this network needs (about {_size(per_chip)}); raise max_memory")
    scores, state = 8 * n_chips * n_times, min(chunk, n_chips) * per_chip
    free = available_memory(torch.device("cpu"))
    if device.type == "cuda":
        gpu_free = available_memory(device)
        if state > gpu_free:
            raise ValueError(f"{min(chunk, n_chips):,} chip(s) programmed at once need about {_size(state)}, more "
                             f"than the {_size(gpu_free)} free on {device}; pass a smaller chunk_size or max_memory")
        state = 0
    if scores + state > free:
        budget = "the default" if max_memory is None else f"{_size(max_memory)}"
        raise ValueError(
            f"n_chips={n_chips:,} over {n_times} time(s) needs about {_size(scores + state)} (the scores "
            f"{_size(scores)}, {min(chunk, n_chips):,} chip(s) programmed at once {_size(state)}), more than the "
            f"{_size(free)} of memory available (max_memory, {budget}, bounds the chips programmed at once only); "
            "evaluate fewer chips")


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: Any,
    preset: "str | Preset",
    t_inference: "float | Sequence[float]",
    n_chips: int,
    seed: int = 0,
    *,
    batch_size: int = 256,
    device: "str | torch.device | None" = None,
    chunk_size: Optional[int] = None,
    max_memory: Optional[int] = None,
    strategy: str = "auto",
    threads: Optional[int] = None,
    progress: bool = False,
    metric: MetricSpec = "accuracy",
    output: "int | str | None" = None,
    digital: Sequence[str] = (),
    calibration_data: Any = None,
) -> np.ndarray:
    """Each chip's score (classification accuracy by default) of ``model`` on ``n_chips``
    simulated chips.

    Args:
        model: a digital ``nn.Module`` classifier (converted here with
            :func:`crossbar.convert`) or an already converted :class:`CrossbarModel`.
        data: a DataLoader yielding ``(inputs, labels)`` or an ``(inputs, labels)`` pair
            of tensors; for detection, targets per batch as :mod:`models.tasks`
            describes (a DataLoader with ``collate_fn=models.collate_detection``).
        preset: preset name, :class:`Preset` or mapping.
        t_inference: time(s) since programming ended: seconds, or durations such as ``"1d"``.
        n_chips: number of independent chips; chip ``k`` is the same chip for any
            ``n_chips > k``, chunking and time.
        seed: the run's seed.
        batch_size: batch size when ``data`` is a pair of tensors.
        device: ``"cpu"``, ``"cuda"``; default CUDA when available.
        chunk_size: chips programmed at once; default from ``max_memory``.
        max_memory: bytes for one chunk's state (default: a quarter of free memory, at
            most 4 GiB).
        strategy: ``"auto"``, ``"fold"`` or ``"loop"`` (see :mod:`crossbar.model`).
        threads: loop strategy on a CPU: chips run side by side on this many threads,
            each chip on one (default: ``torch.get_num_threads()``). Results do not
            depend on it, nor on ``strategy``. For an already converted model, both
            (when given) apply to this call only; the model keeps its own settings.
        progress: show a progress bar over chips.
        metric: a name of :data:`crossbar.METRICS` (``"accuracy"``; with :mod:`models`
            imported, a detector's ``"map50"``, ``"map"`` or ``"map75"``), a
            :class:`crossbar.Metric`, or a callable ``metric(outputs, targets) -> float``
            called once per chip with all its outputs (see :mod:`crossbar.metrics`).
        output: for a model that returns a tuple or a dict, the index or key of the
            element that holds the scores (for this call only, on a converted model).
        digital: layers placed digital (exact), by name (:func:`crossbar.convert`).
        calibration_data: inputs the chips read to calibrate, when the preset asks for a
            calibration (``calibration``, ``input_range_percentile``): a tensor, an
            ``(inputs, labels)`` pair or a DataLoader, e.g. training samples (never the
            data scored); the first ``calibration_samples`` are used. Ignored otherwise.

    Returns:
        ``(len(t_inference), n_chips)`` float64 array of each chip's score (accuracies
        and mAPs in [0, 1]).
    """
    preset = resolve_preset(preset)
    times = check_times(t_inference, preset)
    n_chips = check_n_chips(n_chips)
    seed = check_seed(seed)
    batch_size = check_int(batch_size, "batch_size", 1)
    if chunk_size is not None:
        chunk_size = check_int(chunk_size, "chunk_size", 1, " or None")
    check_strategy(strategy)
    threads = check_threads(threads)
    output = check_output(output)
    metric = get_metric(metric)
    dev = resolve_device(device)
    if isinstance(model, CrossbarModel):
        if model.preset != preset:
            raise ValueError("model was converted with another preset; pass the digital model instead")
        if digital:
            raise ValueError("digital: give it to crossbar.convert, or pass the digital model to evaluate")
        xmodel = model
    else:
        xmodel = convert(model, preset, strategy=strategy, output=output, digital=digital)
    # A converted model given by the caller runs with this call's strategy and threads
    # (when given) and gets its own settings back afterwards.
    saved = (xmodel.strategy, xmodel.threads, xmodel.output)
    if strategy != "auto":
        xmodel.strategy = strategy
    if threads is not None:
        xmodel.threads = threads
    if output is not None:
        xmodel.output = output
    if preset.calibrations.calibrates and calibration_data is not None:
        xmodel.calibrate_with(calibration_data)
    xmodel.check_calibration()  # before any chip is programmed
    try:
        return _evaluate(xmodel, data, times, n_chips, seed, batch_size, dev, chunk_size, max_memory, progress, metric)
    finally:
        xmodel.strategy, xmodel.threads, xmodel.output = saved


def _forward(xmodel: CrossbarModel, x: Tensor) -> Tensor:
    """``xmodel(x)``; inputs the model cannot take (a dtype other than the weights', a
    shape a layer cannot take) get one line that names the layer and what it takes."""
    try:
        return xmodel(x)
    except InputError as err:
        raise ValueError(f"data: {err}") from err.__cause__


def _evaluate(xmodel, data, times, n_chips, seed, batch_size, dev, chunk_size, max_memory, progress,
              metric: Metric) -> np.ndarray:
    preset = xmodel.preset
    xmodel = xmodel.to(dev).eval()
    batches = _batches(data, batch_size, dev, metric)
    largest = max(len(x) for x, _ in batches)
    # one chip and one sample first: the inputs' shape and dtype, every crossbar seen to
    # run and the fold tried, before a chunk of chips is programmed
    xmodel.program(1, seed=seed).drift(times[0])
    activations = _activation_bytes(xmodel, batches[0][0][:1])
    per_chip = chip_bytes(xmodel, activations, largest)
    budget = memory_budget(dev) if max_memory is None else int(max_memory)
    chunk = chunk_size or max(1, min(n_chips, budget // max(per_chip, 1)))
    block = CHIP_BLOCK.get(preset.physics_device(dev).type, 1)
    if chunk_size is None and block < chunk < n_chips:  # whole blocks of chips: none drawn twice
        chunk -= chunk % block
    check_memory(n_chips, len(times), chunk, per_chip, max_memory, dev)

    scores = np.zeros((len(times), n_chips), dtype=np.float64)
    with tqdm(total=n_chips * len(times), unit="chip", desc=f"{preset.name}", disable=not progress, leave=False) as bar:
        for start in range(0, n_chips, chunk):
            n = min(chunk, n_chips - start)
            xmodel.program(n, seed=seed, first_chip=start)
            for ti, t in enumerate(times):
                xmodel.drift(t)
                chips = metric.scores(n, xmodel.module)
                for x, y in batches:
                    chips.update(_forward(xmodel, x), y)
                scores[ti, start:start + n] = chips.compute()
                bar.update(n)
    return scores
