"""sample_weights reproduces the error distribution of aihwkit's own noise models."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

import crossbar

N_CHIPS = 48


@pytest.fixture(scope="module")
def weights():
    return torch.randn(32, 32, generator=torch.Generator().manual_seed(0)) * 0.2


def _moments_agree(a: np.ndarray, b: np.ndarray, n_sigma: float = 5.0) -> None:
    """Means and variances agree within n_sigma standard errors from the sample sizes."""
    se_mean = math.sqrt(a.var() / a.size + b.var() / b.size)
    assert abs(a.mean() - b.mean()) < n_sigma * se_mean, (a.mean(), b.mean(), se_mean)
    def var_se(x):
        return math.sqrt(max(((x - x.mean()) ** 4).mean() - x.var() ** 2, 0.0) / x.size)
    assert abs(a.var() - b.var()) < n_sigma * math.hypot(var_se(a), var_se(b)), (a.var(), b.var())


@pytest.mark.parametrize("name", ["pcm", "reram_wan2022", "reram_cmo", "lognormal"])
@pytest.mark.parametrize("t", [1.0, 86400.0])
def test_error_distribution_matches_aihwkit_apply_noise(name, t, weights):
    preset = crossbar.get_preset(name)
    ours = crossbar.sample_weights(weights, preset, t, N_CHIPS, seed=1) - weights
    torch.manual_seed(2)
    theirs = torch.stack([preset.noise_model.apply_noise(weights, t) for _ in range(N_CHIPS)]) - weights
    a, b = ours.double().flatten().numpy(), theirs.double().flatten().numpy()
    assert a.std() > 0
    _moments_agree(a, b)
    assert stats.ks_2samp(a, b).pvalue > 1e-3
