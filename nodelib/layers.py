"""Neural-network building blocks: an ODE block usable as a layer, vector fields that take t,
and the residual block of the ResNet baseline.

An :class:`ODEBlock` maps ``x ↦ z(t1)`` where ``dz/dt = field(t, z)``, ``z(0) = x``: the
continuous-depth replacement for a stack of residual blocks. After each forward pass its
``stats`` (a :class:`~nodelib.SolverStats`) hold the forward NFE; after ``backward()`` (adjoint
mode) the backward NFE too.
"""
from __future__ import annotations

import torch
from torch import nn

from .gradients import gradient_mode, solve_with_gradient
from .stats import SolverStats


class ODEBlock(nn.Module):
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

    @property
    def nfe_forward(self) -> int:
        return self.stats.nfe_forward

    @property
    def nfe_backward(self) -> int:
        """Backward NFE of the adjoint (0 in backprop mode, where the backward pass replays the
        recorded graph instead of evaluating the field)."""
        return self.stats.nfe_backward

    def extra_repr(self) -> str:
        return (f"t1={self.t1}, method={self.method!r}, rtol={self.rtol}, atol={self.atol}, "
                f"adjoint={self.adjoint}")


class MLPField(nn.Module):
    """``f(t, z) = MLP([z, t])`` for states of shape (batch, dim): time is one more input."""

    def __init__(self, dim: int, hidden: int = 64, depth: int = 2, activation=nn.Tanh):
        super().__init__()
        layers, width = [], dim + 1
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), activation()]
            width = hidden
        layers.append(nn.Linear(width, dim))
        self.net = nn.Sequential(*layers)

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([z, t.expand(*z.shape[:-1], 1)], dim=-1))


class ConcatConv2d(nn.Module):
    """A 3×3 convolution that sees time as one extra constant input channel."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels + 1, out_channels, 3, padding=1)

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        tt = t.expand(x.shape[0], 1, *x.shape[2:])
        return self.conv(torch.cat([x, tt], dim=1))


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, channels), channels)


class ConvField(nn.Module):
    """The ODE-Net vector field of Chen et al.: norm–ReLU–conv(t)–norm–ReLU–conv(t)–norm.
    ``activation`` defaults to ReLU as in the paper; its kinks slow the adaptive solver down and
    cap the agreement of adjoint and backprop gradients, so tests use a smooth one."""

    def __init__(self, channels: int, activation=torch.relu):
        super().__init__()
        self.activation = activation
        self.norm1, self.norm2, self.norm3 = _norm(channels), _norm(channels), _norm(channels)
        self.conv1 = ConcatConv2d(channels, channels)
        self.conv2 = ConcatConv2d(channels, channels)

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(t, self.activation(self.norm1(x)))
        out = self.conv2(t, self.activation(self.norm2(out)))
        return self.norm3(out)


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
