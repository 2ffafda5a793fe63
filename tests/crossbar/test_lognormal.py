"""The BayesFT log-normal drift model, alone and inside aihwkit's own tiles."""

import math

import pytest
import torch
from aihwkit.nn.conversion import convert_to_analog
from aihwkit.simulator.configs import InferenceRPUConfig
from torch import nn

import crossbar
from crossbar.noise import LogNormalDriftNoiseModel


def test_sigma_zero_is_the_identity():
    w = torch.randn(20, 30)
    for t in (0.0, 1.0, 1e8):
        assert torch.equal(crossbar.sample_weights(w, crossbar.get_preset("lognormal", sigma=0.0), t, 4)[3], w)


def test_weights_follow_w_exp_theta():
    sigma = 0.7
    w = torch.randn(40, 50)
    got = crossbar.sample_weights(w, crossbar.get_preset("lognormal", sigma=sigma), 86400.0, 20, seed=4)
    theta = torch.log(got / w).double()  # single pair, g_min = 0: exactly w * exp(theta)
    n = theta.numel()
    assert abs(theta.mean().item()) < 5 * sigma / math.sqrt(n)
    assert abs(theta.std().item() - sigma) < 5 * sigma / math.sqrt(2 * (n - 1))
    # one draw per device at programming: the same drifted chip at every time
    assert torch.equal(got, crossbar.sample_weights(w, crossbar.get_preset("lognormal", sigma=sigma), 1.0, 20, seed=4))


def test_reproducible_from_the_seed():
    w = torch.randn(10, 10)
    a = crossbar.sample_weights(w, "lognormal", 5.0, 3, seed=9)
    assert torch.equal(a, crossbar.sample_weights(w, "lognormal", 5.0, 3, seed=9))
    assert not torch.equal(a, crossbar.sample_weights(w, "lognormal", 5.0, 3, seed=10))


def test_plugs_into_aihwkit_inference_tiles():
    sigma = 0.4
    torch.manual_seed(0)
    layer = nn.Linear(64, 32, bias=False)
    rpu = InferenceRPUConfig(noise_model=LogNormalDriftNoiseModel(sigma=sigma), drift_compensation=None)
    rpu.forward.is_perfect = True
    analog = convert_to_analog(layer, rpu).eval()
    analog.program_analog_weights()
    analog.drift_analog_weights(3600.0)
    x = torch.eye(64)
    drifted = analog(x).T  # column j = W[:, j] as the tile holds it
    theta = torch.log(drifted / layer.weight.detach()).double()
    n = theta.numel()
    assert abs(theta.std().item() - sigma) < 5 * sigma / math.sqrt(2 * (n - 1))


def test_negative_sigma_is_rejected():
    with pytest.raises(ValueError, match="sigma"):
        crossbar.get_preset("lognormal", sigma=-0.1)
    with pytest.raises(ValueError, match="sigma must be >= 0"):
        LogNormalDriftNoiseModel(sigma=-1)
