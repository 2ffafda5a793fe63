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

from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["ColumnCorrection", "calibration_inputs", "column_fit", "patch_sums", "percentile_range"]


def column_fit(y: Tensor, target: Tensor, sums: Optional[Tensor] = None) -> tuple[Tensor, Tensor, Optional[Tensor]]:
    """Each chip's and column's least-squares correction ``target ~ gain * y + offset (+
    sum_k coef_k * sums_k)``.

    ``y``: ``(C, S, out)`` what each chip's columns read on ``S`` reference vectors;
    ``target``: ``(C or 1, S, out)`` what the target weights give on the same vectors;
    ``sums``: ``(C or 1, S, out or 1, K)`` each vector's input sums (one per input split
    of the layer's tiles), or None for gain and offset alone. Returns ``(gain, offset,
    coef)``: ``(C, out)``, ``(C, out)`` and ``(C, out, K)`` (None without sums) in ``y``'s
    dtype. Directions with no spread (a column that reads the same value on every
    vector, sums that never change) get no weight (a tiny ridge): such a column keeps
    gain 1 and gets the offset alone.
    """
    # centred sums of products over the vectors in y's dtype (torch's reductions sum in
    # blocks, accurate to far below the fit's own noise); the small systems in float64
    y_mean, t_mean = y.mean(1), target.mean(1)
    dy = y - y_mean.unsqueeze(1)
    var, cov = (dy * dy).mean(1).double(), (dy * target).mean(1).double()
    y_mean, t_mean = y_mean.double(), t_mean.double()
    flat = var <= 1e-10 * y_mean * y_mean + 1e-30  # no spread beyond float32's rounding
    if sums is None:
        gain = torch.where(flat, torch.ones_like(var), cov / torch.where(flat, torch.ones_like(var), var))
        return gain.to(y.dtype), (t_mean - gain * y_mean).to(y.dtype), None
    n, n_chips, n_out = y.shape[1], y.shape[0], y.shape[2]
    s_mean = sums.mean(1)  # (Cx, G, K)
    ds = sums - s_mean.unsqueeze(1)  # (Cx, S, G, K)
    s_mean = s_mean.double()
    n_s = ds.shape[-1]
    if ds.shape[2] == 1:  # one sum for all the columns: products over the vectors as matrix products
        d = ds[:, :, 0, :]
        ss = (d.transpose(1, 2) @ d / n).unsqueeze(1)  # (Cx, 1, K, K)
        ys = dy.transpose(1, 2) @ d / n  # (C, out, K)
        ts = target.transpose(1, 2) @ d / n  # (Cx, out, K)
    else:  # each column its own sum (a grouped convolution)
        ss = torch.einsum("csok,csol->cokl", ds, ds) / n
        ys = torch.einsum("cso,csok->cok", dy, ds.expand(n_chips, -1, -1, -1)) / n
        ts = torch.einsum("cso,csok->cok", target, ds) / n
    ss, ys, ts = ss.double(), ys.double(), ts.double()
    # the normal equations of (y, s_1..s_K), centred: a (K+1) x (K+1) system per chip and column
    gram = var.new_empty((n_chips, n_out, n_s + 1, n_s + 1))
    gram[..., 0, 0] = var
    gram[..., 0, 1:] = ys
    gram[..., 1:, 0] = ys
    gram[..., 1:, 1:] = ss
    rhs = torch.cat([cov.unsqueeze(-1), ts.expand(n_chips, -1, -1)], -1)
    # equilibrated, with a tiny ridge: a direction without spread (a flat column, a sum
    # that never changes) gets no weight
    scale = gram.diagonal(dim1=-2, dim2=-1).clamp(min=1e-300).sqrt()
    eq = gram / (scale.unsqueeze(-1) * scale.unsqueeze(-2)) + 1e-10 * torch.eye(n_s + 1, dtype=torch.float64,
                                                                               device=y.device)
    solution = torch.linalg.solve(eq, (rhs / scale).unsqueeze(-1)).squeeze(-1) / scale
    gain, coef = solution[..., 0], solution[..., 1:]
    gain = torch.where(flat, torch.ones_like(gain), gain)
    offset = t_mean - gain * y_mean - (coef * s_mean.expand(n_chips, n_out, -1)).sum(-1)
    return gain.to(y.dtype), offset.to(y.dtype), coef.to(y.dtype)


class ColumnCorrection:
    """Every chip's calibrated correction of one layer's columns, digital, after the ADC:
    ``gain``, ``offset`` (each ``(C, out)``) and, with input sums, ``coef`` (``(C, out,
    K)``, one per input split); made uncorrected (gain 1, the rest 0) for a calibration
    pass, which fits them (:func:`column_fit`)."""

    def __init__(self, n_chips: int, n_out: int, n_sums: int, like: Tensor):
        self.gain = like.new_ones((n_chips, n_out))
        self.offset = like.new_zeros((n_chips, n_out))
        self.coef = like.new_zeros((n_chips, n_out, n_sums)) if n_sums else None

    def apply(self, y: Tensor, chips: slice, sums: Optional[Tensor], bias: Optional[Tensor],
              ideal: Optional[Any] = None) -> Tensor:
        """The correction and ``bias`` applied to ``y`` (``(C, n, out)`` or ``(C, B, out,
        L)``) of the chips ``chips``, in place; ``sums``: the vectors' input sums
        (``(Cx, n, G, K)`` or ``(Cx, B, G, L, K)``, ``G`` 1 or out). With ``ideal`` (a
        calibration pass), fitted first against ``ideal()``, the target weights' outputs
        for the same inputs."""
        columns = y.dim() == 4
        sums = sums if self.coef is not None else None
        if ideal is not None:
            flat = (lambda t: t.transpose(2, 3).reshape(t.shape[0], -1, t.shape[2])) if columns else (lambda t: t)
            fit_sums = None if sums is None else \
                sums.transpose(2, 3).reshape(sums.shape[0], -1, sums.shape[2], sums.shape[4]) if columns else sums
            gain, offset, coef = column_fit(flat(y), flat(ideal()), fit_sums)
            self.gain[chips], self.offset[chips] = gain, offset
            if coef is not None:
                self.coef[chips] = coef
        shape = (-1, 1, y.shape[2], 1) if columns else (-1, 1, y.shape[2])
        y = y.mul_(self.gain[chips].view(shape))
        for k in range(0 if sums is None else sums.shape[-1]):
            y.addcmul_(sums[..., k], self.coef[chips][..., k].view(shape))
        shift = self.offset[chips] if bias is None else self.offset[chips] + bias  # with the bias: one pass
        return y.add_(shift.view(shape))


def patch_sums(x: Tensor, n_x: int, weight_shape: tuple, kernel_size, stride, padding, dilation, groups: int,
               splits: list[tuple[int, int]]) -> Tensor:
    """Each convolution patch's input sum per input split of the tiles, ``(n_x, B, 1, L,
    K)`` (a grouped convolution: each output's group's sum, ``(n_x, B, out, L, 1)``),
    from the padded input ``x``: a convolution with a kernel of ones on each split."""
    c_in, (kh, kw) = weight_shape[1], kernel_size
    if groups == 1 and len(splits) == 1:  # the channels' sum, then a window of ones: one channel
        x, kernel = x.sum(1, keepdim=True), x.new_ones((1, 1, kh, kw))
    elif groups == 1:
        mask = x.new_zeros((len(splits), c_in * kh * kw))
        for k, (i0, i1) in enumerate(splits):
            mask[k, i0:i1] = 1
        kernel = mask.view(len(splits), c_in, kh, kw)
    else:
        kernel = x.new_ones((weight_shape[0], c_in, kh, kw))
    s = F.conv2d(x, kernel, None, stride, padding, dilation, groups)
    s = s.view(n_x, s.shape[0] // n_x, s.shape[1], -1)
    return s.transpose(2, 3).unsqueeze(2) if groups == 1 else s.unsqueeze(-1)


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
