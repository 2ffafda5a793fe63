"""Grouped and depthwise convolutions on crossbars: each group on its own tiles.

A convolution with ``groups > 1`` multiplies each group of input channels by its own
block of the weight; on a chip each group is a crossbar layer of its own (its own
tiles, DAC scales, output noise, drift compensation and calibration).
:func:`conv_layer` gives :class:`GroupedConv2d` where the preset has a periphery or
slices its weights; with a perfect periphery a grouped convolution stays one
:class:`~crossbar.layers.CrossbarConv2d` (one ``F.conv2d`` with ``groups``, exact under
``ideal``), as it always was.

Each group's layer has its own layer number for its random streams,
``index + ((g + 1) << 32)`` (:func:`group_index`): distinct from every other layer's
and group's, and the convolution's own ``index`` and the numbers of the layers after it
are what they are without groups.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from .layers import CrossbarConv2d
from .periphery import Periphery
from .presets import Preset

GROUP_SHIFT = 32  # a group's layer number: the convolution's, plus (group + 1) << GROUP_SHIFT


def group_index(index: int, group: int) -> int:
    """The layer number of group ``group`` of the convolution numbered ``index``."""
    return index + ((group + 1) << GROUP_SHIFT)


def conv_layer(conv: nn.Conv2d, preset: Preset, index: int) -> nn.Module:
    """The crossbar layer of ``conv``: one :class:`GroupedConv2d` (one layer a group) for a
    grouped convolution with a periphery or a sliced preset, else one CrossbarConv2d."""
    if conv.groups > 1 and (not Periphery(preset.periphery).perfect or preset.architecture.sliced):
        return GroupedConv2d(conv, preset, index)
    return CrossbarConv2d(conv, preset, index)


class GroupedConv2d(nn.Module):
    """A grouped ``nn.Conv2d`` as one :class:`~crossbar.layers.CrossbarConv2d` a group
    (``convs[g]``: ``in_channels / groups`` inputs, ``out_channels / groups`` outputs, the
    group's rows of the weight and of the bias). Splits its input's channels, runs each
    group's layer and concatenates their outputs along the channels."""

    def __init__(self, conv: nn.Conv2d, preset: Preset, index: int):
        super().__init__()
        self.groups, self.index = conv.groups, index
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        n_in, n_out = conv.in_channels // conv.groups, conv.out_channels // conv.groups
        self.convs = nn.ModuleList()
        for g in range(conv.groups):
            part = nn.Conv2d(n_in, n_out, conv.kernel_size, conv.stride, conv.padding, conv.dilation, 1,
                             conv.bias is not None, conv.padding_mode, device="meta", dtype=conv.weight.dtype)
            part.weight = nn.Parameter(conv.weight.detach()[g * n_out:(g + 1) * n_out], requires_grad=False)
            if conv.bias is not None:
                part.bias = nn.Parameter(conv.bias.detach()[g * n_out:(g + 1) * n_out], requires_grad=False)
            self.convs.append(CrossbarConv2d(part, preset, group_index(index, g)))

    @property
    def weight(self) -> Tensor:
        """The whole convolution's weight, ``(out_channels, in_channels / groups, kh, kw)``."""
        return torch.cat([c.weight for c in self.convs])

    @property
    def bias(self) -> Optional[Tensor]:
        return None if self.convs[0].bias is None else torch.cat([c.bias for c in self.convs])

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() not in (3, 4) or x.shape[-3] != self.in_channels:
            raise RuntimeError(f"Given groups={self.groups}, weight of size {tuple(self.weight.shape)}, expected "
                               f"input{list(x.shape)} to have {self.in_channels} channels, but got "
                               f"{x.shape[-3] if x.dim() >= 3 else 'no'} channels instead")
        parts = x.split(self.in_channels // self.groups, dim=-3)
        return torch.cat([conv(part) for conv, part in zip(self.convs, parts)], dim=-3)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, groups={self.groups}, index={self.index}"
