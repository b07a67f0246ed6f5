"""A stochastic oscillator for neural SDEs (chapter 13): noise in the dynamics, not only in
the observations, and an exact answer to compare a model with.

The state ``y(t)`` in the plane follows the linear SDE (a damped rotation driven by noise)

    dy = A y dt + s dW,    A = [[-γ, -ω], [ω, -γ]],

started in its stationary law ``N(0, v I)`` with ``v = s² / (2γ)``. Its increments over any
step ``h`` are exactly Gaussian, ``y(t + h) = e^{-γh} R(ωh) y(t) + sqrt(v (1 - e^{-2γh})) ξ``
(``R`` a rotation), so the paths are simulated without discretisation error on any grid,
regular or not; and the process is Gaussian with the covariance

    Cov(y(t), y(s)) = v e^{-γ|t - s|} R(ω (t - s)),

which :func:`stochastic_oscillator_covariance` returns for a grid: conditioning it on noisy
observations gives the exact predictive distribution (the best any model can do). Random numbers
are drawn on the CPU in float64 from a generator, so a seed gives the same data on every device.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["StochasticSeries", "stochastic_oscillator", "stochastic_oscillator_covariance"]


@dataclass
class StochasticSeries:
    """Paths on one time grid: ``t`` (T,), ``clean`` and ``noisy`` (n, T, 2)."""
    t: torch.Tensor
    clean: torch.Tensor
    noisy: torch.Tensor


def _check(t: torch.Tensor, omega: float, damping: float, noise: float) -> None:
    if not isinstance(t, torch.Tensor) or t.dim() != 1 or t.numel() < 1:
        raise ValueError("t must be a non-empty 1-D tensor of times")
    if t.numel() > 1 and not bool((t[1:] > t[:-1]).all()):
        raise ValueError("t must be strictly increasing")
    if damping <= 0 or noise <= 0:
        raise ValueError(f"damping and noise must be positive (a stationary law exists only "
                         f"then), got damping={damping}, noise={noise}")
    if not math.isfinite(omega):
        raise ValueError(f"omega must be finite, got {omega}")


def _rotation(angle: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (..., 2, 2) by ``angle`` (...)."""
    c, s = torch.cos(angle), torch.sin(angle)
    return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)


def stochastic_oscillator(n: int, t: torch.Tensor, *, omega: float = 2.0,
                          damping: float = 0.3, noise: float = 0.5, obs_std: float = 0.1,
                          generator: torch.Generator | None = None) -> StochasticSeries:
    """``n`` exact sample paths of the stochastic oscillator at the times ``t``, started in the
    stationary law, and ``noisy`` = ``clean`` plus independent ``N(0, obs_std²)`` noise.

    ``omega`` is the angular speed, ``damping`` the rate γ at which the state forgets its past,
    ``noise`` the diffusion ``s``. The result has ``t``'s dtype and device."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    _check(t, omega, damping, noise)
    if obs_std < 0:
        raise ValueError(f"obs_std must be >= 0, got {obs_std}")
    tt = t.detach().cpu().double()
    v = noise ** 2 / (2 * damping)
    y = math.sqrt(v) * torch.randn(n, 2, generator=generator, dtype=torch.float64)
    path = [y]
    for h in (tt[1:] - tt[:-1]).tolist():
        step = math.exp(-damping * h) * _rotation(torch.tensor(omega * h, dtype=torch.float64))
        shock = math.sqrt(v * -math.expm1(-2 * damping * h))
        y = y @ step.T + shock * torch.randn(n, 2, generator=generator, dtype=torch.float64)
        path.append(y)
    clean = torch.stack(path, 1)
    noisy = clean + obs_std * torch.randn(clean.shape, generator=generator,
                                          dtype=torch.float64)
    return StochasticSeries(t, clean.to(t.device, t.dtype), noisy.to(t.device, t.dtype))


def stochastic_oscillator_covariance(t: torch.Tensor, *, omega: float = 2.0,
                                     damping: float = 0.3, noise: float = 0.5) -> torch.Tensor:
    """The covariance (2T, 2T) of the stationary oscillator's states at the times ``t``,
    time-major (row ``2k + i`` is coordinate ``i`` at ``t[k]``):
    ``Cov(y(t_k), y(t_j)) = v e^{-γ|t_k - t_j|} R(ω (t_k - t_j))`` with ``v = s² / (2γ)``.
    In ``t``'s dtype and on its device."""
    _check(t, omega, damping, noise)
    v = noise ** 2 / (2 * damping)
    lag = t[:, None] - t[None, :]                                   # t_k - t_j
    block = v * torch.exp(-damping * lag.abs())[..., None, None] * _rotation(omega * lag)
    T = len(t)
    return block.permute(0, 2, 1, 3).reshape(2 * T, 2 * T)
