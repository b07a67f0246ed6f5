"""Toy data sets that Neural ODEs cannot fit (Dupont, Doucet & Teh 2019), generated, never downloaded.

- :func:`flip_1d`: the two points of ``g(-1) = 1, g(1) = -1``; the flow of a 1-D ODE keeps the
  order of points, so it cannot swap them.
- :func:`nested_spheres`: ``g(x) = -1`` for ``‖x‖ ≤ r1`` and ``+1`` for ``r2 ≤ ‖x‖ ≤ r3`` in
  ``dim`` dimensions; a homeomorphism followed by a linear read-out cannot separate them.

Trajectories of known systems, for learning dynamics from data (chapter 8):

- :func:`spiral_trajectory` of :class:`SpiralField`, torchdiffeq's demo ``dy/dt = (y³) A``;
- :func:`observe`: noisy observations at random, irregular times of any field, e.g. a
  :class:`DampedPendulum` with viscous and quadratic friction.

Sampling happens on the CPU in float64 from a seeded generator, and only the result is moved to
``device`` / cast to ``dtype``: the same seed gives the same points on every device.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


def flip_1d(*, device=None, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs ``[[-1], [1]]`` and targets ``[[1], [-1]]`` (shape (2, 1) each)."""
    x = torch.tensor([[-1.0], [1.0]], dtype=dtype, device=device)
    return x, -x


def uniform_shell(n: int, dim: int, r_min: float, r_max: float, *,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` points uniform (in volume) in ``{r_min ≤ ‖x‖ ≤ r_max} ⊂ ℝ^dim``, float64, CPU.

    The direction is a normalised Gaussian (uniform on the sphere). The volume inside radius r
    grows like r^dim, so ‖x‖^dim must be uniform on [r_min^dim, r_max^dim]: drawing the radius
    uniformly instead would crowd the points towards the centre.
    """
    if not 0 <= r_min <= r_max:
        raise ValueError(f"need 0 <= r_min <= r_max, got r_min={r_min}, r_max={r_max}")
    if dim < 1 or n < 0:
        raise ValueError(f"need dim >= 1 and n >= 0, got dim={dim}, n={n}")
    direction = torch.randn(n, dim, generator=generator, dtype=torch.float64)
    # a Gaussian vector is never exactly 0 in practice; the clamp only guards the division
    direction = direction / direction.norm(dim=1, keepdim=True).clamp_min(1e-300)
    u = torch.rand(n, 1, generator=generator, dtype=torch.float64)
    radius = (r_min ** dim + u * (r_max ** dim - r_min ** dim)) ** (1.0 / dim)
    return direction * radius


def nested_spheres(n_inner: int = 500, n_outer: int = 500, dim: int = 2, r1: float = 0.5,
                   r2: float = 1.0, r3: float = 1.5, *, seed: int = 0, device=None,
                   dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Points ``x`` of shape (n_inner + n_outer, dim) and labels ``y`` of shape (n, 1).

    The first ``n_inner`` points are uniform in the ball ``‖x‖ ≤ r1`` with label -1, the rest
    uniform in the shell ``r2 ≤ ‖x‖ ≤ r3`` with label +1 (for ``dim=2``: a disc inside an
    annulus). Requires ``0 < r1 < r2 < r3``.
    """
    if not 0 < r1 < r2 < r3:
        raise ValueError(f"need 0 < r1 < r2 < r3, got r1={r1}, r2={r2}, r3={r3}")
    gen = torch.Generator().manual_seed(seed)
    x = torch.cat([uniform_shell(n_inner, dim, 0.0, r1, generator=gen),
                   uniform_shell(n_outer, dim, r2, r3, generator=gen)])
    y = torch.cat([-torch.ones(n_inner, 1, dtype=torch.float64),
                   torch.ones(n_outer, 1, dtype=torch.float64)])
    return x.to(device=device, dtype=dtype), y.to(device=device, dtype=dtype)


def nested_spheres_target(x: torch.Tensor, r1: float = 0.5, r2: float = 1.0,
                          r3: float = 1.5) -> torch.Tensor:
    """``g(x)`` for a batch ``x`` of shape (n, dim): -1 inside r1, +1 on the shell, 0 elsewhere
    (where g is not specified). Shape (n, 1), on ``x``'s device and in its dtype."""
    r = x.norm(dim=-1, keepdim=True)
    g = torch.zeros_like(r)
    g[r <= r1] = -1.0
    g[(r >= r2) & (r <= r3)] = 1.0
    return g


# --------------------------------------------------------------------------- dynamics data
# Trajectories for fitting vector fields (chapter 8): known systems, solved by nodelib at tight
# tolerance in float64 on the CPU, observed at random times with Gaussian noise.

SPIRAL_A = ((-0.1, 2.0), (-2.0, -0.1))


class SpiralField(torch.nn.Module):
    """torchdiffeq's demo system ``dy/dt = (y**3) A`` with ``A = [[-0.1, 2], [-2, -0.1]]``
    (``y`` a row vector, cubed entrywise): a spiral that winds inwards ever more slowly."""

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
    from .training import odeint_per_sample   # here, not at the top: training is a user
    with torch.no_grad():
        return odeint_per_sample(field, y0, t, rtol=1e-10, atol=1e-10)
