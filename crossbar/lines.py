"""The array effects between a tile's product and its ADC: the state a call needs
(:class:`LineState`: weight-noise streams, each output line's non-linearity) and the
two passes over one chip's products, IR drop (:func:`ir_products`) and weight noise
with the output non-linearity (:func:`apply_lines`). On a CPU the element-wise work is
a compiled loop (:mod:`crossbar.kernels`).

Between the product and the ADC, the non-idealities of aihwkit's C++ tiles
(``ForwardBackwardPassIOManaged::applyNonIdealities`` and ``finalizeOutput``), in its
order and with its formulas, in normalised units (inputs after the DAC, tile weights
with largest |target| 1, outputs before the ADC) for an input vector ``x`` of a tile of
``n`` inputs:

- IR drop (``ir_drop``, ``ir_drop_g_ratio``): ``a_i = n / g_ratio * sum_j |w_ij| |x_j|``,
  ``c_i = a_i (a_i (0.05 a_i - 0.2) + 0.5)``, ``y_i -= ir_drop c_i sum_j w_ij x_j
  (1 - (1 - j / n)^2)``;
- output-referred weight noise (``w_noise``), drawn afresh for every vector:
  ``additive_constant`` adds ``w_noise |x|_2 N(0, 1)`` to each output, ``pcm_read``
  ``w_noise sqrt(sum_j |w_ij| x_j^2) N(0, 1)``;
- output non-linearity (``out_nonlinearity``): ``y_i = f y_i / (1 + |n_i y_i|)`` with
  ``n_i = |out_nonlinearity / out_bound (1 + out_nonlinearity_std N(0, 1))|`` fixed per
  output line of each tile and chip, and ``f = (1 + (mean_i n_i) slope_calibration
  out_bound)^2`` (1 without calibration); then output noise, ADC and bounds
  (:mod:`crossbar.periphery`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Sequence

import torch
from torch import Tensor

from . import kernels
from .groups import PeripherySettings
from .rng import NoiseStream

if TYPE_CHECKING:
    from .periphery import Periphery


@dataclass(frozen=True)
class LineState:
    """What the array effects of one call need beside the weights, for its chips.

    Attributes:
        w_streams: one stream per chip for the output-referred weight noise.
        nonlinearity: per tile, ``(C, out)`` the non-linearity ``n_i`` of each output
            line in normalised units; None without one.
        nl_factor: per tile, ``(C,)`` the calibration factor ``f``.
    """

    w_streams: Optional[Sequence[NoiseStream]] = None
    nonlinearity: Optional[Sequence[Tensor]] = None
    nl_factor: Optional[Sequence[Tensor]] = None

    def chips(self, index: slice) -> "LineState":
        return LineState(
            None if self.w_streams is None else list(self.w_streams)[index],
            None if self.nonlinearity is None else [n[index] for n in self.nonlinearity],
            None if self.nl_factor is None else [f[index] for f in self.nl_factor],
        )

    def tile(self, k: int) -> "TileLines":
        return TileLines(
            self.w_streams,
            None if self.nonlinearity is None else self.nonlinearity[k],
            None if self.nl_factor is None else self.nl_factor[k],
        )

    def only_tile(self, k: int) -> "LineState":
        """The state of tile ``k`` alone, for a call that multiplies that tile only."""
        return LineState(
            self.w_streams,
            None if self.nonlinearity is None else [self.nonlinearity[k]],
            None if self.nl_factor is None else [self.nl_factor[k]],
        )


@dataclass(frozen=True)
class TileLines:
    """:class:`LineState` of one tile."""

    w_streams: Optional[Sequence[NoiseStream]] = None
    nonlinearity: Optional[Tensor] = None  # (C, out)
    nl_factor: Optional[Tensor] = None  # (C,)
    signed: bool = True  # whether the inputs may be negative

    def chip(self, c: int) -> "TileLines":
        return TileLines(
            None if self.w_streams is None else [self.w_streams[c]],
            None if self.nonlinearity is None else self.nonlinearity[c:c + 1],
            None if self.nl_factor is None else self.nl_factor[c:c + 1],
            self.signed,
        )


_IR_PROFILES: dict[tuple, Tensor] = {}


def ir_profile(n: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """aihwkit's share of the IR drop each of a tile's ``n`` inputs sees: ``1 - (1 - j / n)^2``."""
    key = (n, dtype, device)
    if key not in _IR_PROFILES:
        p = 1.0 - torch.arange(n, dtype=torch.float64) / n
        _IR_PROFILES[key] = (1.0 - p * p).to(dtype=dtype, device=device)
    return _IR_PROFILES[key]


def line_nonlinearity(settings: PeripherySettings, n_out: int, generator: torch.Generator) -> tuple[Tensor, float]:
    """One tile's ``n_i`` for its ``n_out`` output lines (float64) and its factor ``f``
    (aihwkit's ``populateFBParameter``), drawn with ``generator``."""
    bound = settings.out_bound if settings.out_bound > 0 else 1.0
    n = torch.full((n_out,), settings.out_nonlinearity / bound, dtype=torch.float64)
    if settings.out_nonlinearity_std > 0:
        n = (n * (1.0 + settings.out_nonlinearity_std * torch.randn(n_out, generator=generator,
                                                                dtype=torch.float64))).abs_()
    f = 1.0
    if settings.slope_calibration > 0:
        f = (1.0 + float(n.abs().mean()) * settings.slope_calibration * bound) ** 2
    return n, f


def ir_products(periphery: "Periphery", z: Tensor, x: Tensor, w: Tensor, signed: bool = True) -> None:
    """The products of one chip's codes ``x`` with its tile's code weights ``w``
    (out, k) under IR drop, into ``z``: rows ``z (n, out)``, ``x (n, k)``, or
    columns ``z (B, out, L)``, ``x (B, k, L)``. The ideal product, the drop's
    weighted product (``w`` times each input's share of the drop) and, for inputs
    that are not ``signed``, the currents (``|w| x``) are one product of stacked
    weights; the rest is one compiled pass on a CPU."""
    columns = z.dim() == 3
    n_out, k = w.shape
    profile = ir_profile(k, w.dtype, w.device)
    stacked = torch.cat([w, w * profile] if signed else [w, w * profile, w.abs()])  # (S out, k)
    if columns:  # (S out, k) @ (B, k, L) -> (B, S out, L)
        prods = torch.matmul(stacked, x)
    else:  # (n, k) @ (k, S out) -> (n, S out), as (n, S out, 1)
        prods = torch.mm(x, stacked.T).unsqueeze(-1)
    main, drop = prods[:, :n_out], prods[:, n_out:2 * n_out]
    if not signed:
        current = prods[:, 2 * n_out:]
    elif columns:
        current = torch.matmul(w.abs(), x.abs())
    else:
        current = torch.mm(x.abs(), w.abs().T).unsqueeze(-1)
    z3 = z if columns else z.unsqueeze(-1)
    # a_i = n / g_ratio * sum_j |w_ij| |x_j|, normalised
    a_scale = periphery.out_unit * k / periphery.settings.ir_drop_g_ratio
    if z.device.type == "cpu":
        kernels.ir_drop(z3, main, drop, current, a_scale, periphery.settings.ir_drop)
        return
    a = current.mul(a_scale)
    c_i = a.mul(0.05).sub_(0.2).mul_(a).add_(0.5).mul_(a)
    torch.addcmul(main, c_i, drop, value=-periphery.settings.ir_drop, out=z3)


def apply_lines(periphery: "Periphery", z: Tensor, x: Tensor, w: Tensor, lines: TileLines, c: int,
            noise: Optional[Tensor]) -> None:
    """The C++ tiles' non-idealities after IR drop (:func:`ir_products`) on one
    chip's products ``z`` of codes ``x`` with its tile's code weights ``w`` (out, k),
    in place, in codes: rows ``z (n, out)``, ``x (n, k)``, or columns
    ``z (B, out, L)``, ``x (B, k, L)``. ``noise`` holds the standard normals of the
    weight noise, ``z``'s shape."""
    columns = z.dim() == 3

    def product(a: Tensor, m: Tensor) -> Tensor:  # m (out, k) applied to vectors a
        return torch.matmul(m, a) if columns else torch.mm(a, m.T)

    o_unit, i_unit = periphery.out_unit, periphery.in_unit
    std, root, std_scale = None, False, 1.0
    if periphery.settings.weight_noise:
        assert noise is not None
        if periphery.settings.w_noise_type == "additive_constant":  # w_noise |x|_2; the sum of squares as a product
            std, root = product(x * x, x.new_ones((1, x.shape[-2 if columns else -1]))), True
            std_scale = periphery.settings.w_noise * i_unit / o_unit
        else:  # pcm_read: w_noise sqrt(sum_j |w_ij| x_j^2), in codes
            std, root = product(x * x, w.abs()), True
            std_scale = periphery.settings.w_noise * math.sqrt(o_unit * i_unit) / o_unit
    n_i, f = None, 1.0
    if periphery.settings.out_nonlinearity > 0:
        if lines.nonlinearity is None or lines.nl_factor is None:
            raise ValueError("the periphery's output non-linearity needs each line's n_i (TileLines.nonlinearity)")
        n_i = lines.nonlinearity[c].to(z.dtype) * o_unit
        f = float(lines.nl_factor[c])
    if z.device.type == "cpu":
        as3 = (lambda t: t) if columns else (lambda t: None if t is None else t.unsqueeze(-1))
        kernels.lines(as3(z), as3(noise) if std is not None else None, as3(std), n_i, f, root, std_scale)
        return
    if std is not None:
        z.addcmul_(std.sqrt() if root else std, noise, value=std_scale)
    if n_i is not None:
        denom = z.abs().mul_(n_i.view(-1, 1) if columns else n_i).add_(1.0)
        if f != 1.0:
            z.mul_(f)
        z.div_(denom)
