"""Trajectories of known systems, for learning dynamics from data (chapter 8).

- :func:`spiral_trajectory` of :class:`SpiralField`, torchdiffeq's demo ``dy/dt = (y³) A``;
- :func:`observe`: noisy observations at random, irregular times of any field, e.g. a
  :class:`DampedPendulum` with viscous and quadratic friction.

The systems are solved by nodelib at tight tolerance in float64 on the CPU; sampling happens on
the CPU from a seeded generator, and only the result is moved to ``device`` / cast to ``dtype``:
the same seed gives the same points on every device.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..gradients.backprop import odeint_per_sample

SPIRAL_A = ((-0.1, 2.0), (-2.0, -0.1))


class SpiralField(torch.nn.Module):
    """torchdiffeq's demo system ``dy/dt = (y**3) A`` with ``A = [[-0.1, 2], [-2, -0.1]]``
    (``y`` a row vector, cubed entrywise): a spiral that winds inwards ever more slowly."""

    A: torch.Tensor

    def __init__(self, A=SPIRAL_A):
        super().__init__()
        self.register_buffer("A", torch.as_tensor(A, dtype=torch.float64))

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (y ** 3) @ self.A.to(device=y.device, dtype=y.dtype)


def spiral_trajectory(n: int = 1000, t1: float = 25.0, y0=(2.0, 0.0), *, device=None,
                      dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """The demo's data: times ``t`` (n,) evenly spaced on [0, t1] and states ``y`` (n, 2) of
    :class:`SpiralField` from ``y0``, solved with dopri5 at rtol = atol = 1e-10 in float64."""
    if n < 2 or not t1 > 0:
        raise ValueError(f"need n >= 2 and t1 > 0, got n={n}, t1={t1}")
    t = torch.linspace(0.0, t1, n, dtype=torch.float64)
    start = torch.as_tensor(y0, dtype=torch.float64).reshape(1, 2)
    y = _solve_tight(SpiralField(), start, t.expand(1, n))[0]
    return t.to(device=device, dtype=dtype), y.to(device=device, dtype=dtype)


class DampedPendulum(torch.nn.Module):
    """``θ' = ω``, ``ω' = -ω0² sin θ + friction(ω)``, the state ``y = (θ, ω)`` on the last axis,
    with the friction ``friction(ω) = -c ω - k ω |ω|`` (viscous plus quadratic air drag)."""

    def __init__(self, omega0: float = 2.0, c: float = 0.1, k: float = 0.1):
        super().__init__()
        if omega0 <= 0 or c < 0 or k < 0:
            raise ValueError(f"need omega0 > 0, c >= 0, k >= 0; got {omega0}, {c}, {k}")
        self.omega0, self.c, self.k = float(omega0), float(c), float(k)

    def friction(self, omega: torch.Tensor) -> torch.Tensor:
        return -self.c * omega - self.k * omega * omega.abs()

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        theta, omega = y[..., 0], y[..., 1]
        domega = -self.omega0 ** 2 * torch.sin(theta) + self.friction(omega)
        return torch.stack([omega, domega], dim=-1)

    def extra_repr(self) -> str:
        return f"omega0={self.omega0}, c={self.c}, k={self.k}"


@dataclass
class Observations:
    """``t`` (n_traj, n_obs) sorted observation times, the first one 0; ``y`` (n_traj, n_obs,
    dim) the noisy observations; ``y_true`` the exact states at the same times; ``y0`` the
    exact initial states (n_traj, dim)."""
    t: torch.Tensor
    y: torch.Tensor
    y_true: torch.Tensor
    y0: torch.Tensor


def observe(field, y0, t_end: float, n_obs: int, *, noise_std: float = 0.0, seed: int = 0,
            device=None, dtype=torch.float32) -> Observations:
    """Observe ``dy/dt = field(t, y)`` from each row of ``y0`` (n_traj, dim) at ``n_obs``
    times: ``t = 0`` and ``n_obs - 1`` times drawn uniformly from (0, t_end], different for
    every trajectory, with independent Gaussian noise of standard deviation ``noise_std`` added
    to every component. The exact states come from dopri5 at rtol = atol = 1e-10 in float64."""
    if n_obs < 2 or not t_end > 0 or noise_std < 0:
        raise ValueError(f"need n_obs >= 2, t_end > 0, noise_std >= 0; got n_obs={n_obs}, "
                         f"t_end={t_end}, noise_std={noise_std}")
    y0 = torch.as_tensor(y0, dtype=torch.float64).cpu()
    if y0.dim() != 2:
        raise ValueError(f"y0 must have shape (n_traj, dim), got {tuple(y0.shape)}")
    gen = torch.Generator().manual_seed(seed)
    n_traj = y0.shape[0]
    # rand is in [0, 1); 1 - u is in (0, 1], so no drawn time coincides with t = 0
    later = (1.0 - torch.rand(n_traj, n_obs - 1, generator=gen, dtype=torch.float64)) * t_end
    t = torch.cat([torch.zeros(n_traj, 1, dtype=torch.float64), later.sort(dim=1).values], 1)
    if not bool((t[:, 1:] > t[:, :-1]).all()):    # a tie has probability 0; reject it anyway
        raise ValueError("two observation times coincide; choose another seed")
    y_true = _solve_tight(field, y0, t)
    noise = noise_std * torch.randn(y_true.shape, generator=gen, dtype=torch.float64)
    cast = dict(device=device, dtype=dtype)
    return Observations(t=t.to(**cast), y=(y_true + noise).to(**cast),
                        y_true=y_true.to(**cast), y0=y0.to(**cast))


def _solve_tight(field, y0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """(batch, length, dim) states of ``field`` from ``y0`` at per-row times ``t``, float64."""
    with torch.no_grad():
        return odeint_per_sample(field, y0, t, rtol=1e-10, atol=1e-10)
