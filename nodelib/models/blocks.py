"""Neural-network blocks built on an ODE solve: the ODE block usable as a layer, its augmented
variant (Dupont, Doucet & Teh 2019), and the residual block of the ResNet baseline.

An :class:`ODEBlock` maps ``x ↦ z(t1)`` where ``dz/dt = field(t, z)``, ``z(0) = x``: the
continuous-depth replacement for a stack of residual blocks. After each forward pass its
``stats`` (a :class:`~nodelib.SolverStats`) hold the forward NFE; after ``backward()`` (adjoint
mode) the backward NFE too.

The flow of an ODE in ℝ^d is a homeomorphism: trajectories cannot cross, so a Neural ODE cannot
turn the inside of a ball inside out, or swap the order of two points on a line. An *augmented*
ODE block pads the input ``x ∈ ℝ^d`` with ``p`` zeros and solves in ℝ^{d+p},

    d/dt [h, a] = f([h, a], t),   [h(0), a(0)] = [x, 0],

where the extra room lets trajectories pass each other. :class:`AugmentedNeuralODE` puts a linear
read-out on top; with ``augment_dim=0`` it is the plain Neural ODE with the same read-out, so the
two are compared like for like.
"""
from __future__ import annotations

import torch
from torch import nn

from ..gradients import gradient_mode, solve_with_gradient
from ..solvers.solution import SolverStats
from .fields import MLPField, _norm


class ReportsNFE:
    """``nfe_forward`` / ``nfe_backward`` of a model's last solve, read from its ``stats`` (a
    :class:`~nodelib.SolverStats`; a wrapper model exposes the stats of the model it wraps)."""

    stats: SolverStats

    @property
    def nfe_forward(self) -> int:
        return self.stats.nfe_forward

    @property
    def nfe_backward(self) -> int:
        """Backward NFE of an adjoint solve (0 in backprop mode, where the backward pass replays
        the recorded graph instead of evaluating the field)."""
        return self.stats.nfe_backward


class ODEBlock(ReportsNFE, nn.Module):
    def __init__(self, field: nn.Module, t1: float = 1.0, *, method: str = "dopri5",
                 rtol: float = 1e-3, atol: float = 1e-3, adjoint: bool = True,
                 options: dict | None = None, adjoint_options: dict | None = None):
        super().__init__()
        self.field, self.t1 = field, float(t1)
        self.method, self.rtol, self.atol = method, rtol, atol
        self.adjoint, self.options, self.adjoint_options = adjoint, options, adjoint_options
        self.stats = SolverStats()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # times built in x's dtype: a float32 detour would move t1 = 0.8 by ~1e-8
        return self.trajectory(x, torch.tensor([0.0, self.t1], dtype=x.dtype,
                                               device=x.device))[-1]

    def trajectory(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """States at every time in ``t`` (for plots of the flow)."""
        self.stats = SolverStats()
        t = t.to(device=x.device, dtype=x.dtype)
        return solve_with_gradient(
            self.field, x, t, gradient=gradient_mode(self.adjoint), rtol=self.rtol,
            atol=self.atol, method=self.method, options=self.options,
            adjoint_options=self.adjoint_options, stats=self.stats)

    def extra_repr(self) -> str:
        return (f"t1={self.t1}, method={self.method!r}, rtol={self.rtol}, atol={self.atol}, "
                f"adjoint={self.adjoint}")


class ResidualBlock(nn.Module):
    """``x + F(x)`` with the same F as :class:`ConvField` minus time: one Euler step of it."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm1, self.norm2 = _norm(channels), _norm(channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(torch.relu(self.norm1(x)))
        out = self.conv2(torch.relu(self.norm2(out)))
        return x + out


def augment(x: torch.Tensor, augment_dim: int) -> torch.Tensor:
    """``[x, 0, …, 0]``: ``augment_dim`` zeros appended to the last axis (``x`` itself for 0)."""
    if augment_dim < 0:
        raise ValueError(f"augment_dim must be >= 0, got {augment_dim}")
    if augment_dim == 0:
        return x
    # new_zeros follows x's device and dtype; the zeros are constants, a(0) = 0 is not learned
    return torch.cat([x, x.new_zeros(*x.shape[:-1], augment_dim)], dim=-1)


class AugmentedODEBlock(ODEBlock):
    """An :class:`~nodelib.models.blocks.ODEBlock` whose input is padded with ``augment_dim`` zeros.

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


class AugmentedNeuralODE(ReportsNFE, nn.Module):
    """``x ↦ W z(t1) + b`` with ``z`` the ODE in ℝ^{d+p} started at ``[x, 0]``.

    The vector field is an :class:`~nodelib.models.fields.MLPField` (time as an extra input) of
    width ``hidden``; ``augment_dim=0`` gives the Neural ODE of Chen et al. with the same linear
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
    def stats(self) -> SolverStats:  # type: ignore[override]  # (its block's)
        return self.block.stats
