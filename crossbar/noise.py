"""Noise models that aihwkit lacks, written against aihwkit's own interface.

Each class is an aihwkit ``BaseNoiseModel``: it maps target conductances (in
microsiemens) to programmed conductances, draws per-device drift parameters at
programming time, and applies time-dependent effects at ``t_inference`` seconds after
programming ended. They therefore plug into aihwkit's own inference tiles
(``InferenceRPUConfig(noise_model=...)``) as well as into this package's simulator.
"""

from __future__ import annotations

from typing import Optional

import torch
from aihwkit.inference.converter.base import BaseConductanceConverter
from aihwkit.inference.converter.conductance import SinglePairConductanceConverter
from aihwkit.inference.noise.base import BaseNoiseModel
from aihwkit.inference.noise.pcm import _ZERO_CLIP, PCMLikeNoiseModel
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
    ``apply_programming_noise_to_conductance`` then ``generate_drift_coefficients`` do.

    For aihwkit's ``PCMLikeNoiseModel`` the terms that depend on the target alone (the
    programming noise's spread, the drift exponents' mean and spread) are computed once
    for all chips; the values are bit for bit the model's (tested)."""

    def __init__(self, model: BaseNoiseModel, target: Tensor):
        self.model, self.target = model, target
        self.pcm = type(model) is PCMLikeNoiseModel
        if not self.pcm:
            return
        m = model
        mat, sig_prog = 1, m.prog_coeff[0]  # aihwkit's arithmetic, in its order
        for coeff in m.prog_coeff[1:]:
            mat = mat * (target / m.g_max)
            sig_prog = sig_prog + mat * coeff
        sig_prog *= m.g_max / m.prog_coeff_g_max_reference
        self.prog_spread = m.prog_noise_scale * sig_prog
        g_relative = torch.clamp(torch.abs(target / m.g_max), min=_ZERO_CLIP)
        self.mu_drift = (-0.0155 * torch.log(g_relative) + 0.0244).clamp(min=0.049, max=0.1)
        self.sig_drift = (-0.0125 * torch.log(g_relative) - 0.0059).clamp(min=0.008, max=0.045)

    def draw(self, read: bool) -> tuple[Tensor, Optional[Tensor]]:
        if not self.pcm:
            g = self.model.apply_programming_noise_to_conductance(self.target)
            return g, self.model.generate_drift_coefficients(self.target) if read else None
        target = self.target
        g = (target + self.prog_spread * torch.randn_like(target)).clamp_(min=0.0)
        if not read:
            return g, None
        nu = torch.abs(self.mu_drift + self.sig_drift * torch.randn_like(target)).clamp_(min=0.0)
        return g, nu * self.model.drift_scale
