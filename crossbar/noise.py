"""Noise models that aihwkit lacks, written against aihwkit's own interface.

Each class is an aihwkit ``BaseNoiseModel``: it maps target conductances (in
microsiemens) to programmed conductances, draws per-device drift parameters at
programming time, and applies time-dependent effects at ``t_inference`` seconds after
programming ended. They therefore plug into aihwkit's own inference tiles
(``InferenceRPUConfig(noise_model=...)``) as well as into this package's simulator.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
from aihwkit.inference.converter.base import BaseConductanceConverter
from aihwkit.inference.converter.conductance import SinglePairConductanceConverter
from aihwkit.inference.noise.base import BaseNoiseModel
from aihwkit.inference.noise.pcm import _ZERO_CLIP, PCMLikeNoiseModel
from aihwkit.inference.noise.reram import ReRamCMONoiseModel
from torch import Tensor
from torch.autograd import no_grad


class IdealNoiseModel(BaseNoiseModel):
    """Exact devices: conductances are programmed and held without any error.

    The digital reference; useful with stuck-at faults to study faults alone.
    """

    def __init__(self, g_converter: Optional[BaseConductanceConverter] = None):
        super().__init__(g_converter or SinglePairConductanceConverter())

    @no_grad()
    def apply_programming_noise_to_conductance(self, g_target: Tensor) -> Tensor:
        return g_target.clone()

    @no_grad()
    def generate_drift_coefficients(self, g_target: Tensor) -> None:
        return None

    @no_grad()
    def apply_drift_noise_to_conductance(
        self, g_prog: Tensor, drift_noise_param: Optional[Tensor], t_inference: float
    ) -> Tensor:
        return g_prog.clone()


class LogNormalDriftNoiseModel(BaseNoiseModel):
    r"""Log-normal weight drift of the BayesFT paper (Ye et al., DAC 2021).

    Every device's conductance is multiplied by :math:`e^{\theta}` with
    :math:`\theta \sim \mathcal{N}(0, \sigma^2)`, drawn once per device when the chip is
    programmed. With a single differential pair and ``g_min = 0`` (the default), one
    device of each pair is at 0 and the weight becomes exactly the paper's
    :math:`w' = w\,e^{\theta}`.

    The paper's model has no time axis: the drifted state is the same at every
    ``t_inference`` (including 0), so ``sigma`` plays the role that time plays in the
    physical models. Programming itself is exact.

    Args:
        sigma: standard deviation of :math:`\theta` (dimensionless, >= 0).
        g_converter: conductance converter (default: single pair, ``g_max`` 25 uS).
        g_max: maximal conductance in uS, used when no converter is given.
    """

    def __init__(
        self,
        sigma: float = 0.5,
        g_converter: Optional[BaseConductanceConverter] = None,
        g_max: Optional[float] = None,
    ):
        if sigma < 0:
            raise ValueError(f"sigma must be >= 0, got {sigma}")
        super().__init__(g_converter or SinglePairConductanceConverter(g_max=g_max))
        self.sigma = float(sigma)
        self.g_max = self.g_converter.g_max

    @no_grad()
    def apply_programming_noise_to_conductance(self, g_target: Tensor) -> Tensor:
        return g_target.clone()

    @no_grad()
    def generate_drift_coefficients(self, g_target: Tensor) -> Tensor:
        """Per-device log drift factors theta ~ N(0, sigma^2)."""
        return self.sigma * torch.randn_like(g_target)

    @no_grad()
    def apply_drift_noise_to_conductance(
        self, g_prog: Tensor, drift_noise_param: Tensor, t_inference: float
    ) -> Tensor:
        return g_prog * torch.exp(drift_noise_param)


class Programming:
    """A noise model's programming of one target block, chip after chip: ``draw(read)``
    gives one chip's programmed conductances and (when ``read``) its drift parameters,
    drawing from torch's global generator exactly as the model's own
    ``apply_programming_noise_to_conductance`` then ``generate_drift_coefficients`` do;
    ``read(g, nu, t)`` is its ``apply_drift_noise_to_conductance``.

    For aihwkit's ``PCMLikeNoiseModel`` and ``ReRamCMONoiseModel`` the terms that depend
    on the target alone (the programming noise's spread, PCM's drift exponents' mean and
    spread) are computed once for all chips, and the read runs in place (fewer passes
    over memory); the values are bit for bit the model's (tested).

    ``chips`` > 0 draws that many chips in one call (a block of chips from one generator:
    ``(chips, *target.shape)`` conductances, each chip's devices independent of the
    others'); 0 draws one chip of the target's shape."""

    def __init__(self, model: BaseNoiseModel, target: Tensor, chips: int = 0):
        self.model, self.target = model, target
        self.shape = tuple(target.shape) if chips == 0 else (chips, *target.shape)
        self.pcm = type(model) is PCMLikeNoiseModel
        self.cmo = type(model) is ReRamCMONoiseModel and target.device.type == "cpu"
        self._drift: Optional[tuple[Tensor, Tensor]] = None
        if self.cmo:  # ReRamCMONoiseModel._apply_poly's arithmetic, in its order
            coeff = model.coeff_dict[model.acceptance_range if model.acceptance_range in model.coeff_dict
                                     else min(model.coeff_dict)]
            mat, spread = 1, coeff[0]
            for value in coeff[1:]:
                mat = mat * target
                spread = spread + mat * value
            spread *= model.g_max / model.coeff_g_max_reference
            self.prog_spread = spread
        if not self.pcm:
            return
        m = model
        mat, sig_prog = 1, m.prog_coeff[0]  # aihwkit's arithmetic, in its order
        for coeff in m.prog_coeff[1:]:
            mat = mat * (target / m.g_max)
            sig_prog = sig_prog + mat * coeff
        sig_prog *= m.g_max / m.prog_coeff_g_max_reference
        self.prog_spread = m.prog_noise_scale * sig_prog

    def _drift_terms(self) -> tuple[Tensor, Tensor]:
        if self._drift is None:
            g_relative = torch.clamp(torch.abs(self.target / self.model.g_max), min=_ZERO_CLIP)
            log_g = torch.log(g_relative)
            self._drift = ((-0.0155 * log_g + 0.0244).clamp_(min=0.049, max=0.1),
                           (-0.0125 * log_g - 0.0059).clamp_(min=0.008, max=0.045))
        return self._drift

    def _randn(self) -> Tensor:
        return torch.randn(self.shape, dtype=self.target.dtype, device=self.target.device)

    def draw(self, read: bool) -> tuple[Tensor, Optional[Tensor]]:
        if self.cmo:
            g = self._randn().mul_(self.prog_spread).mul_(self.model.prog_noise_scale)
            return g.add_(self.target), self.target if read else None
        if not self.pcm:  # the model's own methods, on the target repeated for each chip of a block
            target = self.target.expand(self.shape)
            g = self.model.apply_programming_noise_to_conductance(target)
            return g, self.model.generate_drift_coefficients(target) if read else None
        g = (self.target + self.prog_spread * self._randn()).clamp_(min=0.0)
        if not read:
            return g, None
        mu, sig = self._drift_terms()
        nu = torch.abs(mu + sig * self._randn()).clamp_(min=0.0)
        return g, nu.mul_(self.model.drift_scale)

    def read(self, g_prog: Tensor, nu: Optional[Tensor], t_inference: float) -> Tensor:
        m = self.model
        if self.cmo and t_inference != 0:
            log_t, decay, reads = np.log(t_inference), m.decay_dict, m.read_dict
            g_mean = g_prog + (decay["mean"][0] * log_t * m.drift_scale)
            relaxation = decay["std"][0] * log_t + decay["std"][1]
            g_drift = torch.randn_like(g_prog).mul_(relaxation).mul_(m.drift_scale).add_(g_mean)
            spread = torch.from_numpy(np.log10(g_drift.numpy()))  # numpy's log10, as aihwkit's
            spread.mul_(reads["K"]).mul_(np.sqrt(np.log((t_inference + reads["t_read"]) / (2 * reads["t_read"]))))
            spread.mul_(torch.randn_like(g_prog)).mul_(m.read_noise_scale).add_(g_drift)
            return spread.clamp_(min=m.g_min, max=m.g_max)
        if not self.pcm:
            return m.apply_drift_noise_to_conductance(g_prog, nu, t_inference)
        assert nu is not None
        t = t_inference + m.t_0
        if t > m.t_0:
            g_drift = torch.neg(nu)
            torch.pow(t / m.t_0, g_drift, out=g_drift)
            g_drift.mul_(g_prog)
        else:
            g_drift = g_prog
        if not t > 0:
            return g_prog.clamp(min=0.0)
        q_s = 0.0088 / torch.abs(g_prog).div_(m.g_max).pow_(0.65).clamp_(min=1e-3)
        q_s.clamp_(max=0.2).mul_(math.sqrt(np.log((t + m.t_read) / (2 * m.t_read))))
        noise = torch.abs(g_drift).mul_(m.read_noise_scale).mul_(q_s).mul_(torch.randn_like(g_prog))
        return noise.add_(g_drift).clamp_(min=0.0)
