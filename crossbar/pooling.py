"""Max-pooling for converted models: the same numbers as ``nn.MaxPool2d``, faster on a CPU.

:func:`crossbar.convert` puts :class:`WindowMaxPool2d` in place of a model's
``nn.MaxPool2d`` modules; pooling stays digital.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def window_max(x: Tensor, kernel_size, stride=None, dilation=1) -> Tensor:
    """Max over 2-d windows of the last two dimensions (no padding, floor mode).

    The same numbers as ``F.max_pool2d`` (NaN propagates), computed as a running
    ``torch.maximum`` over the strided views of each window offset, rows first, then
    columns. On a CPU torch's max-pool kernel (which also computes indices) measured
    5-13x slower than this for the 2x2 pools of LeNet/VGG (see ``bench/mc_eval.py``).
    """
    kernel, dilation = _pair(kernel_size), _pair(dilation)
    stride = kernel if stride is None or stride == () or stride == [] else _pair(stride)
    for dim, k, s, d in ((-2, kernel[0], stride[0], dilation[0]), (-1, kernel[1], stride[1], dilation[1])):
        size = x.shape[dim]
        n_out = (size - d * (k - 1) - 1) // s + 1
        if n_out < 1:
            raise ValueError(f"max-pool window {kernel} does not fit an input of {tuple(x.shape[-2:])}")
        views = [x.narrow(dim, i * d, (n_out - 1) * s + 1) for i in range(k)]
        if s > 1:
            views = [v[..., ::s, :] if dim == -2 else v[..., ::s] for v in views]
        if k == 1:
            x = views[0]
            continue
        m = torch.maximum(views[0], views[1])
        for v in views[2:]:
            torch.maximum(m, v, out=m)
        x = m
    return x


class WindowMaxPool2d(nn.MaxPool2d):
    """``nn.MaxPool2d`` computed with :func:`window_max` where that gives the same
    result (no padding, no indices, floor mode); :func:`convert` puts it in place of
    the model's max-pools."""

    @classmethod
    def from_module(cls, pool: nn.MaxPool2d) -> "WindowMaxPool2d":
        new = cls(pool.kernel_size, pool.stride, pool.padding, pool.dilation, pool.return_indices, pool.ceil_mode)
        new.train(pool.training)
        return new

    def forward(self, x: Tensor) -> Tensor:
        (kh, kw), (dh, dw) = _pair(self.kernel_size), _pair(self.dilation)
        if (
            self.return_indices or self.ceil_mode or _pair(self.padding) != (0, 0) or x.dim() not in (3, 4)
            or x.shape[-2] < dh * (kh - 1) + 1 or x.shape[-1] < dw * (kw - 1) + 1  # torch's error
        ):
            return super().forward(x)
        return window_max(x, self.kernel_size, self.stride, self.dilation)
