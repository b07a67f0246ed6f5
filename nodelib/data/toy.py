"""Toy data sets that Neural ODEs cannot fit (Dupont, Doucet & Teh 2019), generated, never
downloaded.

- :func:`flip_1d`: the two points of ``g(-1) = 1, g(1) = -1``; the flow of a 1-D ODE keeps the
  order of points, so it cannot swap them.
- :func:`nested_spheres`: ``g(x) = -1`` for ``‖x‖ ≤ r1`` and ``+1`` for ``r2 ≤ ‖x‖ ≤ r3`` in
  ``dim`` dimensions; a homeomorphism followed by a linear read-out cannot separate them.

Sampling happens on the CPU in float64 from a seeded generator, and only the result is moved to
``device`` / cast to ``dtype``: the same seed gives the same points on every device.
"""
from __future__ import annotations

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
