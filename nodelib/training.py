"""Fitting a vector field to observed trajectories: windows, per-sample times, a training loop.

Observed trajectories are stored as times ``t`` of shape ``(n_traj, n_obs)`` and states ``y`` of
shape ``(n_traj, n_obs, dim)``; each trajectory may have its own, irregular, times. (One
trajectory may also be given as ``t`` of shape ``(n_obs,)`` and ``y`` of shape ``(n_obs, dim)``.)

- :func:`sample_windows` draws random windows of ``length`` consecutive observations, as
  torchdiffeq's ``ode_demo`` does: short windows make a loss whose minima are easy to find,
  where one long trajectory from ``t[0]`` traps gradient descent in bad ones.
- :func:`odeint_per_sample` solves a batch whose members want their outputs at *different*
  times: one solve on the sorted union of all the times, then each member picks its own. The
  adaptive solvers place their steps by the error estimate and reach the output times by dense
  output, so irregular times cost interpolation, not steps.
- :func:`fit_trajectories` is the training loop: sample windows, solve, compare, step; it
  records the loss and the forward/backward NFE of every iteration in a :class:`FitHistory`.

Windows restart the clock at 0 (``Windows.t[:, 0] == 0``): that is exact for autonomous fields
``f(y)``, the systems of this module's users. A field that depends on ``t`` would need each
window's absolute start time, ``Windows.start``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from .odeint import odeint
from .progress import progress as _progress
from .stats import SolverStats


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


def odeint_per_sample(func, y0: torch.Tensor, t: torch.Tensor, *, solver=odeint,
                      **solver_kwargs) -> torch.Tensor:
    """States of ``y0[i]`` at its own times ``t[i]``: shape (batch, length, *state).

    ``y0`` has shape (batch, *state) and ``t`` (batch, length); every row of ``t`` must start at
    the same time and increase strictly. One call of ``solver`` (``odeint`` or
    ``odeint_adjoint``, with ``solver_kwargs``) integrates the whole batch on the sorted union
    of the times, so the batch shares its steps; each row then picks its own outputs. Note for
    ``odeint_adjoint``: its backward pass restarts at every output time, so a union of many
    distinct times makes it take at least one step per time.
    """
    if t.dim() != 2 or t.shape[0] != y0.shape[0]:
        raise ValueError(f"t must have shape (batch, length) with batch = y0.shape[0] = "
                         f"{y0.shape[0]}, got {tuple(t.shape)}")
    if t.shape[1] >= 2 and not bool((t[:, 1:] > t[:, :-1]).all()):
        raise ValueError("the times of every sample must be strictly increasing")
    if not bool((t[:, 0] == t[0, 0]).all()):
        raise ValueError("every sample must start at the same time t[:, 0]")
    t = t.to(dtype=y0.dtype)
    union, where = torch.unique(t, sorted=True, return_inverse=True)   # where: (batch, length)
    # Window times are differences t[k] - t[s], so "the same" time can differ in its last bits
    # between rows. Such near-duplicates would give the adjoint's backward pass intervals of a
    # few ulps, too short to step across: merge times closer than 64 ulps of the largest one
    # (moving an output by that much changes it by ~1e-13 relative, far below any tolerance).
    eps = torch.finfo(y0.dtype).eps
    span = union.abs().max().clamp_min(1.0)
    keep = torch.cat([union.new_ones(1, dtype=torch.bool),
                      union[1:] - union[:-1] > 64 * eps * span])
    union, where = union[keep], (torch.cumsum(keep, 0) - 1)[where]
    ys = solver(func, y0, union, **solver_kwargs)          # (n_union, batch, *state)
    batch = torch.arange(y0.shape[0], device=y0.device).unsqueeze(1)
    return ys[where, batch]


@dataclass
class FitHistory:
    """Per iteration: the training loss, the window length and the forward/backward NFE."""
    loss: list[float] = field(default_factory=list)
    length: list[int] = field(default_factory=list)
    nfe_forward: list[int] = field(default_factory=list)
    nfe_backward: list[int] = field(default_factory=list)

    def as_arrays(self) -> dict[str, np.ndarray]:
        return {k: np.asarray(v, dtype=float) for k, v in self.__dict__.items()}


def fit_trajectories(func: nn.Module, t: torch.Tensor, y: torch.Tensor, *, iterations: int,
                     length: int | Callable[[int], int], batch_size: int, lr: float = 1e-2,
                     loss_fn: Callable | None = None,
                     optimizer: torch.optim.Optimizer | None = None, cosine: bool = True,
                     solver=odeint, solver_kwargs: dict | None = None,
                     generator: torch.Generator | None = None, desc: str | None = None,
                     callback: Callable[[int, nn.Module], None] | None = None) -> FitHistory:
    """Fit the vector field ``func(t, y)`` to observed trajectories ``(t, y)`` and return the
    :class:`FitHistory`.

    Each of the ``iterations`` steps draws ``batch_size`` windows (:func:`sample_windows`),
    solves from their first observations to all of their times (:func:`odeint_per_sample` with
    ``solver`` and ``solver_kwargs``, e.g. ``rtol``, ``atol``, ``method``), and takes one
    optimizer step on ``loss_fn(prediction, observation)`` (default: the mean absolute error,
    as in torchdiffeq's demo). ``length`` is the window length, or a function of the iteration
    (0-based) for a horizon that grows. ``optimizer`` defaults to Adam with learning rate
    ``lr``, annealed to 0 on a cosine schedule when ``cosine``. ``callback(i, func)`` runs after
    step ``i``. ``desc`` names a progress bar (:func:`nodelib.progress`); none when ``None``.
    """
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    t, y = as_trajectories(t, y)
    loss_fn = (lambda pred, obs: (pred - obs).abs().mean()) if loss_fn is None else loss_fn
    optimizer = (torch.optim.Adam(func.parameters(), lr=lr) if optimizer is None
                 else optimizer)
    scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(iterations, 1))
                 if cosine else None)
    length_at = length if callable(length) else (lambda _: length)
    kwargs = dict(solver_kwargs or {})
    history = FitHistory()
    steps = range(iterations) if desc is None else _progress(range(iterations), desc=desc)
    for i in steps:
        n = int(length_at(i))
        win = sample_windows(t, y, n, batch_size, generator=generator)
        stats = SolverStats()
        pred = odeint_per_sample(func, win.y0, win.t, solver=solver, stats=stats, **kwargs)
        loss = loss_fn(pred, win.y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        history.loss.append(loss.item())
        history.length.append(n)
        history.nfe_forward.append(stats.nfe_forward)
        history.nfe_backward.append(stats.nfe_backward)   # after backward: adjoint only
        if desc is not None and hasattr(steps, "set_postfix"):
            steps.set_postfix(loss=history.loss[-1], refresh=False)
        if callback is not None:
            callback(i, func)
    return history
