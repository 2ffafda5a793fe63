"""The crossbar periphery: DAC, ADC, output noise and bounds, with aihwkit's meaning.

Follows aihwkit's ``IOParameters`` and its torch tile (``AnalogMVM``) for a one-pass
analog matrix-vector product:

1. noise management ``ABS_MAX``: every input vector is divided by its largest |value|;
2. DAC: uniform quantisation with step ``inp_res * 2 * inp_bound``, clipped to
   ``+-inp_bound``;
3. the product with the tile's weights, normalised so that the tile's largest target
   |weight| is 1 (one full conductance range; aihwkit's ``weight_scaling_omega = 1``);
4. Gaussian output noise of std ``out_noise``, ADC quantisation with step
   ``out_res * 2 * out_bound``, clipping to ``+-out_bound``;
5. iterative bound management: a vector whose output clipped is computed again with
   its input halved, up to the limit aihwkit uses (``max_bm_factor`` = 1000, and
   ``max_bm_res`` = 0.25 of the DAC step). Done per vector, as aihwkit's C++ tiles do,
   so a result does not depend on what else is in the batch.

``res > 1`` means a number of steps, as in aihwkit; 0 switches a stage off.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import Tensor

_MAX_BM_FACTOR = 1000.0
_MAX_BM_RES = 0.25


def _step(res: float, bound: float) -> float:
    res = 1.0 / res if res > 1.0 else res
    return res * 2.0 * bound


@dataclass(frozen=True)
class Periphery:
    inp_res: float = 0.0
    out_res: float = 0.0
    out_noise: float = 0.0
    inp_bound: float = 0.0
    out_bound: float = 0.0
    bound_management: str = "iterative"

    @classmethod
    def from_preset(cls, preset) -> "Periphery":
        return cls(
            inp_res=preset.inp_res,
            out_res=preset.out_res,
            out_noise=preset.out_noise,
            inp_bound=preset.inp_bound,
            out_bound=preset.out_bound,
            bound_management=preset.bound_management,
        )

    @property
    def perfect(self) -> bool:
        return not any((self.inp_res, self.out_res, self.out_noise, self.inp_bound, self.out_bound))

    @property
    def bm_limit(self) -> float:
        """Largest input reduction that bound management tries (aihwkit's stop rule)."""
        if self.out_bound <= 0 or self.bound_management == "none":
            return 0.0
        limit = _MAX_BM_FACTOR
        if self.inp_res > 0:
            limit = min(limit, _MAX_BM_RES / _step(self.inp_res, self.inp_bound))
        return limit

    def prepare_input(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Noise management and DAC of ``(..., n, k)`` input vectors: (quantised, scale)."""
        scale = x.abs().amax(-1, keepdim=True)
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        return self._dac(x * (1.0 / scale)), scale

    def _dac(self, xs: Tensor) -> Tensor:
        if self.inp_res > 0:
            step = _step(self.inp_res, self.inp_bound)
            xs = torch.round(xs.div_(step)).mul_(step)
        if self.inp_bound > 0:
            xs = xs.clamp_(-self.inp_bound, self.inp_bound)
        return xs

    def _adc(self, y: Tensor, generators: Optional[Sequence[torch.Generator]]) -> Tensor:
        """Output noise and ADC, in place on ``(C, n, out)``; the per-chip generators draw the noise."""
        if self.out_noise > 0:
            assert generators is not None and len(generators) == y.shape[0]
            for c, gen in enumerate(generators):
                y[c].add_(torch.empty_like(y[c]).normal_(generator=gen), alpha=self.out_noise)
        if self.out_res > 0:
            step = _step(self.out_res, self.out_bound)
            y = torch.round(y.div_(step)).mul_(step)
        return y

    def mvm(
        self,
        xs: Tensor,
        scale: Tensor,
        x_raw: Tensor,
        weight: Tensor,
        generators: Optional[Sequence[torch.Generator]],
    ) -> Tensor:
        """Analog products of prepared inputs with normalised tile weights.

        Args:
            xs: ``(Cx, n, k)`` DAC outputs from :meth:`prepare_input`, ``Cx`` 1 (shared by
                all chips) or ``C``.
            scale: ``(Cx, n, 1)`` noise-management scales.
            x_raw: ``(Cx, n, k)`` the unscaled inputs (for bound management).
            weight: ``(C, out, k)`` normalised tile weights, one matrix per chip.
            generators: one generator per chip for the output noise.

        Returns:
            ``(C, n, out)`` outputs in input units (scales applied back).
        """
        n_chips = weight.shape[0]
        y = self._adc(torch.matmul(xs, weight.transpose(-1, -2)), generators)
        limit = self.bm_limit
        out_scale = scale.expand(n_chips, *scale.shape[1:]).clone()
        if self.out_bound > 0 and limit > 0:
            clipped = (y.abs() > self.out_bound).any(-1)
            reduction = 1.0
            while reduction <= limit and bool(clipped.any()):
                reduction *= 2.0
                for c in range(n_chips):
                    rows = clipped[c].nonzero().squeeze(-1)
                    if rows.numel() == 0:
                        continue
                    cx = c if x_raw.shape[0] > 1 else 0
                    s = scale[cx, rows] * reduction
                    yc = self._dac(x_raw[cx, rows] * (1.0 / s)) @ weight[c].T
                    gens = [generators[c]] if generators is not None else None
                    yc = self._adc(yc.unsqueeze(0), gens)[0]
                    y[c, rows] = yc
                    out_scale[c, rows] = s
                    clipped[c, rows] = (yc.abs() > self.out_bound).any(-1)
        if self.out_bound > 0:
            y = y.clamp_(-self.out_bound, self.out_bound)
        return y.mul_(out_scale)
