"""Time series for latent ODEs (chapter 9): the paper's two-direction spirals, random
observation masks, and series observed at different times put on one shared grid.

Data come as a batch on one shared time grid ``t`` (for example the union of every series'
observation times, :func:`union_grid`) with a boolean ``mask`` saying which grid points each
series observed. Random numbers are drawn on the CPU from a generator, so a seed gives the same
data on every device.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class SpiralData:
    """Spirals on one time grid: ``t`` (T,), ``clean`` and ``noisy`` (n, T, 2), ``clockwise``
    (n,) bool, and the start angle ``theta0`` (n,)."""
    t: torch.Tensor
    clean: torch.Tensor
    noisy: torch.Tensor
    clockwise: torch.Tensor
    theta0: torch.Tensor


def spirals(n: int, t: torch.Tensor, *, noise_std: float = 0.1, a: float = 0.3,
            b: float = 0.25, omega: float = 1.2, theta_range=(math.pi, 2 * math.pi),
            generator: torch.Generator | None = None) -> SpiralData:
    """``n`` Archimedean spirals ``r = a + b θ`` sampled at the times ``t``.

    Each spiral starts at a random angle ``θ0`` drawn uniformly from ``theta_range`` and turns
    at the angular speed ``omega``: ``θ(t) = θ0 + omega t``. Half of them, chosen at random, are
    mirrored in the x-axis, which makes them turn clockwise; the others turn counter-clockwise.
    ``noisy`` adds independent Gaussian noise of standard deviation ``noise_std``.

    Random numbers are drawn on the CPU in float64 from ``generator`` (so a seed gives the same
    spirals on every device); the result is cast to ``t``'s dtype and moved to its device.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if not isinstance(t, torch.Tensor) or t.dim() != 1 or t.numel() < 1:
        raise ValueError("t must be a non-empty 1-D tensor of times")
    if noise_std < 0:
        raise ValueError(f"noise_std must be >= 0, got {noise_std}")
    lo, hi = theta_range
    theta0 = lo + (hi - lo) * torch.rand(n, generator=generator, dtype=torch.float64)
    clockwise = torch.rand(n, generator=generator, dtype=torch.float64) < 0.5
    theta = theta0[:, None] + omega * t.detach().cpu().double()[None, :]
    r = a + b * theta
    sign = torch.where(clockwise, -1.0, 1.0)[:, None]
    clean = torch.stack([r * torch.cos(theta), sign * r * torch.sin(theta)], dim=-1)
    noise = torch.randn(clean.shape, generator=generator, dtype=torch.float64)
    noisy = clean + noise_std * noise
    return SpiralData(t, clean.to(t.device, t.dtype), noisy.to(t.device, t.dtype),
                      clockwise.to(t.device), theta0.to(t.device, t.dtype))


def observation_mask(n: int, n_window: int, n_obs, *, n_times: int | None = None,
                     generator: torch.Generator | None = None,
                     device=None) -> torch.Tensor:
    """A boolean mask (n, n_times): each row observes ``n_obs`` random points among the first
    ``n_window`` grid points (and none after them: the rest is left for extrapolation).

    ``n_obs`` is an int, or a pair ``(low, high)`` for a count drawn uniformly per row from
    ``low..high`` inclusive. Random numbers come from ``generator`` on the CPU.
    """
    n_times = n_window if n_times is None else n_times
    if not 1 <= n_window <= n_times:
        raise ValueError(f"need 1 <= n_window <= n_times, got {n_window}, {n_times}")
    low, high = (n_obs, n_obs) if isinstance(n_obs, int) else tuple(n_obs)
    if not 1 <= low <= high <= n_window:
        raise ValueError(f"n_obs must lie in 1..{n_window}, got {n_obs}")
    counts = torch.randint(low, high + 1, (n,), generator=generator)
    # a random permutation per row: the ranks of uniform numbers; keep the first `count`
    ranks = torch.rand(n, n_window, generator=generator).argsort(1).argsort(1)
    mask = torch.zeros(n, n_times, dtype=torch.bool)
    mask[:, :n_window] = ranks < counts[:, None]
    return mask.to(device)


def union_grid(times, values):
    """Series observed at different times, put on one shared grid.

    ``times`` is a list of 1-D tensors (increasing, one per series) and ``values`` a list of
    (n_i, d) tensors. Returns ``(t, x, mask)``: the sorted union of all times (U,), the values
    scattered onto it (B, U, d, zeros where a series has no observation) and the mask (B, U).
    """
    if len(times) != len(values) or not times:
        raise ValueError("times and values must be non-empty lists of equal length")
    for i, (ti, xi) in enumerate(zip(times, values)):
        if ti.dim() != 1 or xi.dim() != 2 or xi.shape[0] != ti.shape[0]:
            raise ValueError(f"series {i}: times (n,) and values (n, d) must match, got "
                             f"{tuple(ti.shape)} and {tuple(xi.shape)}")
        if ti.numel() > 1 and not bool((ti[1:] > ti[:-1]).all()):
            raise ValueError(f"series {i}: times must be strictly increasing")
    t = torch.unique(torch.cat(times))          # sorted
    x = values[0].new_zeros(len(times), len(t), values[0].shape[1])
    mask = torch.zeros(len(times), len(t), dtype=torch.bool, device=t.device)
    for i, (ti, xi) in enumerate(zip(times, values)):
        idx = torch.searchsorted(t, ti)
        x[i, idx] = xi
        mask[i, idx] = True
    return t, x, mask
