"""Windows of observed trajectories: the batches :func:`~nodelib.training.fit_trajectories`
trains on.

Observed trajectories are stored as times ``t`` of shape ``(n_traj, n_obs)`` and states ``y`` of
shape ``(n_traj, n_obs, dim)``; each trajectory may have its own, irregular, times. (One
trajectory may also be given as ``t`` of shape ``(n_obs,)`` and ``y`` of shape ``(n_obs, dim)``.)
:func:`sample_windows` draws random windows of ``length`` consecutive observations, as
torchdiffeq's ``ode_demo`` does: short windows make a loss whose minima are easy to find,
where one long trajectory from ``t[0]`` traps gradient descent in bad ones.

Windows restart the clock at 0 (``Windows.t[:, 0] == 0``): that is exact for autonomous fields
``f(y)``, the systems of this package's users. A field that depends on ``t`` would need each
window's absolute start time, ``Windows.start``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Windows:
    """A batch of windows: ``t`` (batch, length) times since each window's start (column 0 is
    0), ``y0`` (batch, dim) the first observation of each, ``y`` (batch, length, dim) all of
    them (``y[:, 0] == y0``), ``start`` (batch,) the absolute start times, and ``index``
    (batch, 2) the (trajectory, first observation) each window was cut from."""
    t: torch.Tensor
    y0: torch.Tensor
    y: torch.Tensor
    start: torch.Tensor
    index: torch.Tensor


def as_trajectories(t: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(t, y)`` in the batched layout (n_traj, n_obs) and (n_traj, n_obs, dim), checked."""
    if t.dim() == 1 and y.dim() == 2:
        t, y = t.unsqueeze(0), y.unsqueeze(0)
    if t.dim() != 2 or y.dim() != 3 or y.shape[:2] != t.shape:
        raise ValueError(
            "need t of shape (n_traj, n_obs) and y of shape (n_traj, n_obs, dim) (or (n_obs,) "
            f"and (n_obs, dim) for one trajectory); got t {tuple(t.shape)}, y {tuple(y.shape)}")
    if t.shape[1] >= 2 and not bool((t[:, 1:] > t[:, :-1]).all()):
        raise ValueError("the times of every trajectory must be strictly increasing")
    return t, y


def sample_windows(t: torch.Tensor, y: torch.Tensor, length: int, batch_size: int, *,
                   generator: torch.Generator | None = None) -> Windows:
    """``batch_size`` windows of ``length`` consecutive observations, drawn uniformly (with
    replacement) among all (trajectory, start) pairs that leave room for ``length`` points.

    The draw uses ``generator`` on the CPU, so a seed gives the same windows on every device;
    the windows are on ``y``'s device. ``length`` equal to the number of observations gives the
    whole trajectories, from their first observation.
    """
    t, y = as_trajectories(t, y)
    n_traj, n_obs = t.shape
    if not 2 <= length <= n_obs:
        raise ValueError(f"length must be between 2 and the number of observations per "
                         f"trajectory ({n_obs}), got {length}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    n_starts = n_obs - length + 1
    pick = torch.randint(0, n_traj * n_starts, (batch_size,), generator=generator)
    traj, first = pick // n_starts, pick % n_starts
    rows = first.unsqueeze(1) + torch.arange(length)           # (batch, length), CPU
    traj, rows = traj.to(t.device), rows.to(t.device)
    times = t[traj.unsqueeze(1), rows]
    states = y[traj.unsqueeze(1), rows]
    start = times[:, 0]
    return Windows(t=times - start.unsqueeze(1), y0=states[:, 0], y=states, start=start,
                   index=torch.stack([traj, first.to(t.device)], dim=1))
