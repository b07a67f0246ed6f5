"""Training loops that record the solver's cost: the loss and the forward/backward NFE of every
step.

- :func:`fit` trains a model on ``(x, y)`` pairs (chapter 7's augmented Neural ODEs) and keeps a
  :class:`History` per epoch;
- :func:`fit_trajectories` fits a vector field to observed trajectories (chapter 8): sample
  windows (:func:`~nodelib.training.windows.sample_windows`), solve them all at once on the union
  of their times (:func:`~nodelib.odeint_per_sample`), compare, step; it keeps a
  :class:`FitHistory` per iteration.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from ..gradients.backprop import odeint, odeint_per_sample
from ..solvers.solution import SolverStats
from .progress import progress as _progress
from .windows import as_trajectories, sample_windows


@dataclass
class History:
    """Per epoch: the mean training loss and the mean forward / backward NFE per batch.

    The NFE lists stay empty for models without ``nfe_forward`` (a ResNet, say).
    """
    loss: list[float] = field(default_factory=list)
    nfe_forward: list[float] = field(default_factory=list)
    nfe_backward: list[float] = field(default_factory=list)

    def as_arrays(self) -> dict[str, np.ndarray]:
        return {k: np.asarray(v, dtype=float) for k, v in self.__dict__.items()}


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int, lr: float = 1e-3,
        loss_fn: Callable | None = None, optimizer: torch.optim.Optimizer | None = None,
        batch_size: int | None = None, generator: torch.Generator | None = None,
        progress: Callable[[Iterable], Iterable] | None = None) -> History:
    """Train ``model`` on ``(x, y)`` and return its :class:`History`.

    ``loss_fn`` defaults to the Huber loss (``nn.SmoothL1Loss``) that Dupont et al. use for
    regression; ``optimizer`` to Adam with learning rate ``lr``. ``batch_size=None`` trains on
    the full batch (one step per epoch); otherwise the data are reshuffled every epoch with
    ``generator`` (a CPU generator, so the order does not depend on the device). ``progress``
    wraps the epoch range, e.g. ``progress=tqdm``; nothing is printed otherwise.
    """
    loss_fn = nn.SmoothL1Loss() if loss_fn is None else loss_fn
    optimizer = torch.optim.Adam(model.parameters(), lr=lr) if optimizer is None else optimizer
    n = x.shape[0]
    batch_size = n if batch_size is None else int(batch_size)
    counts_nfe = hasattr(model, "nfe_forward")
    history = History()
    epochs_iter = range(epochs) if progress is None else progress(range(epochs))
    for _ in epochs_iter:
        order = (torch.arange(n) if batch_size >= n
                 else torch.randperm(n, generator=generator)).to(x.device)
        losses, nfe_f, nfe_b = [], [], []
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            optimizer.zero_grad()
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            if counts_nfe:   # this batch's solves: the block resets its stats on every forward
                nfe_f.append(float(cast(Any, model).nfe_forward))
                nfe_b.append(float(cast(Any, model).nfe_backward))
        history.loss.append(float(np.mean(losses)))
        if counts_nfe:
            history.nfe_forward.append(float(np.mean(nfe_f)))
            history.nfe_backward.append(float(np.mean(nfe_b)))
    return history


@dataclass
class FitHistory(History):
    """Per iteration (not per epoch): the training loss, the forward/backward NFE, and the
    window length."""
    length: list[int] = field(default_factory=list)


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
