"""The stochastic oscillator (nodelib.data.stochastic): exact paths and their covariance."""
import math

import pytest
import torch

from nodelib.data.stochastic import stochastic_oscillator, stochastic_oscillator_covariance

F64 = torch.float64


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_shapes_dtype_device_and_determinism(device):
    t = torch.linspace(0, 3, 13, dtype=F64, device=device)
    a = stochastic_oscillator(7, t, generator=_gen(1))
    b = stochastic_oscillator(7, t, generator=_gen(1))
    assert a.clean.shape == a.noisy.shape == (7, 13, 2)
    assert a.clean.device == t.device and a.noisy.dtype == F64
    assert torch.equal(a.noisy, b.noisy)
    assert not torch.equal(a.clean, stochastic_oscillator(7, t, generator=_gen(2)).clean)
    assert stochastic_oscillator_covariance(t).shape == (26, 26)


def test_paths_have_the_stated_covariance_on_an_irregular_grid():
    t = torch.tensor([0.0, 0.1, 0.45, 1.3, 3.0], dtype=F64)
    kw = dict(omega=1.7, damping=0.4, noise=0.6)
    d = stochastic_oscillator(40_000, t, obs_std=0.0, generator=_gen(0), **kw)
    x = d.clean.reshape(len(d.clean), -1)
    emp = x.T @ x / len(x)
    cov = stochastic_oscillator_covariance(t, **kw)
    v = 0.6 ** 2 / (2 * 0.4)
    # the entries' sampling sd is at most v sqrt(2 / n) = 0.0032: 5 sd
    assert (emp - cov).abs().max() < 5 * v * math.sqrt(2 / len(x))
    assert torch.allclose(cov, cov.T) and torch.linalg.eigvalsh(cov).min() > 0
    # the mean is 0 (sd of the estimate sqrt(v / n) = 0.0034)
    assert d.clean.mean((0,)).abs().max() < 5 * math.sqrt(v / len(x))


def test_covariance_formula_at_one_lag():
    t = torch.tensor([0.0, 0.7], dtype=F64)
    cov = stochastic_oscillator_covariance(t, omega=2.0, damping=0.3, noise=0.5)
    v, a = 0.5 ** 2 / 0.6, 2.0 * 0.7
    block = v * math.exp(-0.3 * 0.7) * torch.tensor(
        [[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]], dtype=F64)
    # Cov(y(0.7), y(0)) = v e^{-0.21} R(1.4): rows 2..3, columns 0..1 (round-off only)
    assert torch.allclose(cov[2:, :2], block, atol=1e-14)
    assert torch.allclose(cov[:2, :2], v * torch.eye(2, dtype=F64), atol=1e-14)


def test_observation_noise_has_the_stated_sd():
    t = torch.linspace(0, 1, 50, dtype=F64)
    d = stochastic_oscillator(400, t, obs_std=0.2, generator=_gen(0))
    # 40000 draws: the sd of the sample sd is 0.2 / sqrt(2 * 40000) = 0.0007
    assert abs((d.noisy - d.clean).std().item() - 0.2) < 0.004


@pytest.mark.parametrize("kwargs, match", [
    (dict(damping=0.0), "damping and noise must be positive"),
    (dict(noise=-1.0), "damping and noise must be positive"),
    (dict(obs_std=-0.1), "obs_std"),
])
def test_bad_parameters_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        stochastic_oscillator(3, torch.linspace(0, 1, 5), **kwargs)


def test_bad_times_are_refused():
    with pytest.raises(ValueError, match="strictly increasing"):
        stochastic_oscillator(3, torch.tensor([0.0, 1.0, 0.5]))
    with pytest.raises(ValueError, match="1-D"):
        stochastic_oscillator_covariance(torch.zeros(2, 2))
