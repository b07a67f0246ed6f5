"""Augmented Neural ODEs (Dupont, Doucet & Teh 2019) and a training loop that records NFE.

The flow of an ODE in ℝ^d is a homeomorphism: trajectories cannot cross, so a Neural ODE cannot
turn the inside of a ball inside out, or swap the order of two points on a line. An *augmented*
ODE block pads the input ``x ∈ ℝ^d`` with ``p`` zeros and solves in ℝ^{d+p},

    d/dt [h, a] = f([h, a], t),   [h(0), a(0)] = [x, 0],

where the extra room lets trajectories pass each other. :class:`AugmentedNeuralODE` puts a linear
read-out on top; with ``augment_dim=0`` it is the plain Neural ODE with the same read-out, so the
two are compared like for like. :func:`fit` trains either and records the loss and the forward
and backward NFE of every epoch.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn

from .layers import MLPField, ODEBlock


def augment(x: torch.Tensor, augment_dim: int) -> torch.Tensor:
    """``[x, 0, …, 0]``: ``augment_dim`` zeros appended to the last axis (``x`` itself for 0)."""
    if augment_dim < 0:
        raise ValueError(f"augment_dim must be >= 0, got {augment_dim}")
    if augment_dim == 0:
        return x
    # new_zeros follows x's device and dtype; the zeros are constants, a(0) = 0 is not learned
    return torch.cat([x, x.new_zeros(*x.shape[:-1], augment_dim)], dim=-1)


class AugmentedODEBlock(ODEBlock):
    """An :class:`~nodelib.layers.ODEBlock` whose input is padded with ``augment_dim`` zeros.

    ``field`` must act on states of size ``d + augment_dim``; the output (and every state of
    :meth:`trajectory`) has that size too. ``augment_dim=0`` is exactly the plain ODE block.
    """

    def __init__(self, field: nn.Module, augment_dim: int = 0, t1: float = 1.0, **ode_options):
        super().__init__(field, t1, **ode_options)
        if augment_dim < 0:
            raise ValueError(f"augment_dim must be >= 0, got {augment_dim}")
        self.augment_dim = int(augment_dim)

    def trajectory(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """States ``[h(t), a(t)]`` at every time in ``t``, starting from ``[x, 0]``."""
        return super().trajectory(augment(x, self.augment_dim), t)

    def extra_repr(self) -> str:
        return f"augment_dim={self.augment_dim}, " + super().extra_repr()


class AugmentedNeuralODE(nn.Module):
    """``x ↦ W z(t1) + b`` with ``z`` the ODE in ℝ^{d+p} started at ``[x, 0]``.

    The vector field is an :class:`~nodelib.layers.MLPField` (time as an extra input) of width
    ``hidden``; ``augment_dim=0`` gives the Neural ODE of Chen et al. with the same linear
    read-out. Keyword arguments ``ode_options`` go to :class:`ODEBlock` (``method``, ``rtol``,
    ``atol``, ``adjoint``, …).
    """

    def __init__(self, in_dim: int, out_dim: int = 1, augment_dim: int = 0, hidden: int = 32,
                 depth: int = 2, activation=nn.ReLU, t1: float = 1.0, **ode_options):
        super().__init__()
        width = in_dim + augment_dim
        self.in_dim, self.augment_dim = in_dim, augment_dim
        self.block = AugmentedODEBlock(MLPField(width, hidden, depth, activation), augment_dim,
                                       t1, **ode_options)
        self.readout = nn.Linear(width, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.block(x))

    def trajectory(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The features ``z(t) ∈ ℝ^{d+p}`` at every time in ``t`` (before the read-out)."""
        return self.block.trajectory(x, t)

    @property
    def nfe_forward(self) -> int:
        return self.block.nfe_forward

    @property
    def nfe_backward(self) -> int:
        return self.block.nfe_backward


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
                nfe_f.append(model.nfe_forward)
                nfe_b.append(model.nfe_backward)
        history.loss.append(float(np.mean(losses)))
        if counts_nfe:
            history.nfe_forward.append(float(np.mean(nfe_f)))
            history.nfe_backward.append(float(np.mean(nfe_b)))
    return history
