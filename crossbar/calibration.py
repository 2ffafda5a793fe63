"""Calibration as chips do it: what a chip measures on a few inputs it reads, and the
digital corrections it then applies (the preset's ``calibration`` group,
:class:`crossbar.groups.Calibration`; docs/simulator.md has the procedure).

- **Column gain and offset** (``calibration: at_programming | at_inference``): the chip
  runs ``calibration_samples`` calibration inputs through its own layers, periphery and
  noise included, and for every column fits, by least squares, the gain ``a`` and
  offset ``b`` that best turn what the column read (``y``, after the ADC) into what the
  layer's target weights give on the same input (``y0``): ``y0 ~ a y + b``. The
  correction ``a y + b`` is digital, after the ADC, before the bias. Layers are fitted
  in order, each on the inputs the chip's already corrected layers give it, as a chip
  that calibrates layer by layer would. ``at_programming``: once, right after
  programming (the state drift compensation's baseline reads); ``at_inference``: again
  at each inference time. The fit reads through the same noisy periphery as inference
  (its own noise stream), so it is itself noisy: with output noise of std ``s`` on ``N``
  reference vectors an offset is found to within about ``s / sqrt(N)``.
- **Input range** (``input_range_percentile: p``): each layer's DAC full scale is the
  ``p``-th percentile of the |values| the layer receives on the calibration inputs in
  the digital network (aihwkit's ``calibrate_input_ranges`` with ``CACHE_QUANTILE``,
  on |x|), the same for every chip; inputs beyond it clip. Without it every input
  vector is scaled by its own largest |value| (aihwkit's ``ABS_MAX`` noise management).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["calibration_inputs", "column_fit", "percentile_range"]


def column_fit(y: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Each chip's and column's least-squares gain and offset, ``target ~ gain * y + offset``.

    ``y``: ``(C, S, out)`` what each chip's columns read on ``S`` reference vectors;
    ``target``: ``(C or 1, S, out)`` what the target weights give on the same vectors.
    Returns ``(gain, offset)``, each ``(C, out)`` in ``y``'s dtype; a column that reads
    the same value on every vector keeps gain 1 and gets the offset alone.
    """
    y64, t64 = y.to(torch.float64), target.to(torch.float64)
    y_mean, t_mean = y64.mean(1), t64.mean(1)
    dy = y64 - y_mean.unsqueeze(1)
    var = (dy * dy).mean(1)
    cov = (dy * (t64 - t_mean.unsqueeze(1))).mean(1)
    flat = var <= 1e-24 * (y_mean * y_mean + 1e-300)
    gain = torch.where(flat, torch.ones_like(var), cov / torch.where(flat, torch.ones_like(var), var))
    offset = t_mean - gain * y_mean
    return gain.to(y.dtype), offset.to(y.dtype)


def percentile_range(values: list[Tensor], percentile: float) -> float:
    """The ``percentile``-th percentile of the |values| a layer received (numpy's linear
    interpolation), at least the smallest positive float so that a range is never 0."""
    flat = torch.cat([v.detach().reshape(-1).abs().to(torch.float64).cpu() for v in values]).numpy()
    return max(float(np.percentile(flat, percentile)), float(np.finfo(np.float32).tiny))


def calibration_inputs(data: Any, n: int, device: torch.device) -> Tensor:
    """The first ``n`` inputs of ``data`` (a tensor, an ``(inputs, labels)`` pair or a
    DataLoader of batches) on ``device``, or a ValueError naming what is wrong."""
    if isinstance(data, Tensor):
        batches = [data]
    elif isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], Tensor):
        batches = [data[0]]
    elif hasattr(data, "__iter__") and not isinstance(data, (str, bytes)):
        batches, held = [], 0
        for item in data:
            x = item[0] if isinstance(item, (tuple, list)) else item
            if not isinstance(x, Tensor):
                raise ValueError(f"calibration_data: a batch's inputs must be a tensor, got {type(x).__name__}")
            batches.append(x)
            held += x.shape[0] if x.dim() else 0
            if held >= n:
                break
    else:
        raise ValueError("calibration_data must be a tensor of inputs, an (inputs, labels) pair or a DataLoader, "
                         f"got {type(data).__name__}")
    if not batches or any(b.dim() == 0 for b in batches):
        raise ValueError("calibration_data holds no inputs")
    x = torch.cat([b[: n] for b in batches])[:n]
    if len(x) < n:
        raise ValueError(f"calibration_data holds {len(x)} input(s) but calibration_samples = {n}; allowed: at least "
                         f"{n} inputs, or a smaller calibration_samples")
    if not x.is_floating_point() or not bool(torch.isfinite(x).all()):
        raise ValueError("calibration_data: the inputs must be finite floating-point values")
    return x.to(device)
