"""Vector fields ``f(t, z)`` for Neural ODEs: MLPs that take t as one more input, the ODE-Net's
convolutional field, and the autonomous MLP of the latent ODE.

Every field here is an ``nn.Module`` called as ``field(t, z)`` with a 0-d ``t``, so any of them
can be handed to ``odeint`` directly or wrapped in an :class:`~nodelib.models.blocks.ODEBlock`.
"""
from __future__ import annotations

import torch
from torch import nn


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


class MLPDynamics(nn.Module):
    """An autonomous vector field ``f(t, z) = MLP(z)``: one hidden layer of ``hidden`` ELU
    units. ``t`` is ignored, as in the paper's latent dynamics: the same state always moves the
    same way, which is what lets the model extrapolate."""

    def __init__(self, dim: int, hidden: int = 20):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.ELU(), nn.Linear(hidden, dim))

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)
