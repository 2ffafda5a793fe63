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
