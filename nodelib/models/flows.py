"""Normalizing flows, discrete and continuous.

A discrete flow pushes base samples through invertible maps and tracks the density by the change
of variables, ``log q(f(z)) = log q(z) - log|det ∂f/∂z|``: :class:`PlanarFlow` (one layer of
Rezende & Mohamed 2015) and :class:`PlanarNF` (a stack of K of them).

A continuous normalizing flow (CNF, Chen et al. 2018) integrates ``dz/dt = f(t, z)`` together
with the instantaneous change of variables ``d log p(z(t))/dt = -tr(∂f/∂z)``: :class:`CNFDynamics`
is that pair of right-hand sides for ``odeint``/``odeint_adjoint`` on the tuple state
``(z, log p)``, with the trace computed exactly (one autograd pass per dimension), estimated by
Hutchinson's ``εᵀ(∂f/∂z)ε`` (one pass), or taken from the field's own closed form.
:class:`CNF` runs the solves; :class:`PlanarCNFField` is
the paper's planar CNF, ``Σ_m σ_m(t) u_m tanh(w_mᵀz + b_m)``, with M units and time-dependent gates.

States have shape ``(batch, dim)``; log-densities and log-determinants have shape ``(batch,)``.
Everything follows the input tensor's device and dtype.
"""
from __future__ import annotations

import math
from typing import cast

import torch
from torch import nn
from torch.nn import functional as F

from ..gradients import gradient_mode, solve_with_gradient
from ..solvers.solution import SolverStats
from .traces import NOISE_KINDS, TRACE_METHODS, exact_trace, hutchinson_trace, sample_noise


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """``log N(z; 0, I)`` summed over the last dimension."""
    return -0.5 * z.square().sum(-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)


# --------------------------------------------------------------------------- discrete: planar
class PlanarFlow(nn.Module):
    """``f(z) = z + û tanh(wᵀz + b)`` with ``log|det ∂f/∂z| = log|1 + ûᵀψ(z)|``,
    ``ψ(z) = tanh'(wᵀz + b) w`` (Rezende & Mohamed 2015, Eq. 10–12).

    The free parameter ``u`` is mapped to ``û = u + (m(wᵀu) - wᵀu) w/‖w‖²`` with
    ``m(x) = -1 + softplus(x)``, so ``wᵀû = m(wᵀu) > -1``. Since ``0 < tanh' ≤ 1``, then
    ``1 + ûᵀψ = 1 + tanh'·wᵀû > 0`` everywhere: the map is invertible for every value of the
    parameters, and gradient steps cannot break it. (In floating point the margin
    ``1 + m(wᵀu) = softplus(wᵀu)`` underflows once ``wᵀu`` is below about -36 in float64, -16 in
    float32: the layer then approaches a singular map.)
    """

    def __init__(self, dim: int, init_scale: float = 0.1):
        super().__init__()
        w, u = init_scale * torch.randn(dim), init_scale * torch.randn(dim)
        # Start close to the identity. m(0) = -1 + log 2 ≠ 0, so small w and u alone would give
        # wᵀû ≈ -0.31 and a large û ≈ -0.31 w/‖w‖². Instead set wᵀu = log(e - 1), where
        # m(wᵀu) = 0: then û is the (small) part of u orthogonal to w.
        u = u + (math.log(math.e - 1) - w @ u) * w / w.square().sum()
        self.w, self.u = nn.Parameter(w), nn.Parameter(u)
        self.b = nn.Parameter(torch.zeros(()))

    def _constrained(self) -> tuple[torch.Tensor, torch.Tensor]:
        wu = self.w @ self.u
        c = -1 + F.softplus(wu)                           # wᵀû, computed directly: no rounding
        return self.u + (c - wu) * self.w / self.w.square().sum(), c

    def u_hat(self) -> torch.Tensor:
        return self._constrained()[0]

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(f(z), log|det ∂f/∂z|)``."""
        u, c = self._constrained()
        h = torch.tanh(z @ self.w + self.b)
        psi_u = (1 - h.square()) * c                      # ûᵀψ(z) = tanh'(wᵀz + b) wᵀû
        return z + h.unsqueeze(-1) * u, torch.log(torch.abs(1 + psi_u))

    def inverse(self, y: torch.Tensor, n_iter: int = 80) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z, log|det ∂f/∂z| at z)`` with ``f(z) = y``.

        Along ``w`` the map is scalar: ``α = wᵀz`` solves ``α + c tanh(α + b) = wᵀy`` with
        ``c = wᵀû > -1``, an increasing function of α; as ``|tanh| ≤ 1`` the root lies in
        ``wᵀy ± |c|``, and bisection halves that bracket ``n_iter`` times (80 halvings reach
        float64 resolution). Then ``z = y - û tanh(α + b)``.
        """
        u, c = self._constrained()
        target = y @ self.w
        lo, hi = target - c.abs(), target + c.abs()
        for _ in range(n_iter):
            mid = 0.5 * (lo + hi)
            below = mid + c * torch.tanh(mid + self.b) < target
            lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
        h = torch.tanh(0.5 * (lo + hi) + self.b)
        return y - h.unsqueeze(-1) * u, torch.log(torch.abs(1 + (1 - h.square()) * c))


class PlanarNF(nn.Module):
    """A stack of K planar layers: ``log q_K(z_K) = log q_0(z_0) - Σ_k log|det ∂f_k/∂z_{k-1}|``."""

    def __init__(self, dim: int, n_layers: int, init_scale: float = 0.1):
        super().__init__()
        self.dim = dim
        self.layers = nn.ModuleList(PlanarFlow(dim, init_scale) for _ in range(n_layers))

    def forward(self, z0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z_K, Σ_k log|det|)`` for base points ``z0``."""
        z, logdet = z0, z0.new_zeros(z0.shape[:-1])
        for layer in self.layers:
            z, ld = layer(z)
            logdet = logdet + ld
        return z, logdet

    def sample(self, n: int, generator: torch.Generator | None = None, *,
               device=None, dtype=None) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` samples ``z_K`` of the flow and their log-density ``log q_K(z_K)``."""
        p = next(self.parameters())
        z0 = torch.randn(n, self.dim, generator=generator, device=device or p.device,
                         dtype=dtype or p.dtype)
        z, logdet = self(z0)
        return z, standard_normal_log_prob(z0) - logdet

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``log q_K(x)``: invert the layers from the last to the first."""
        z, logdet = x, x.new_zeros(x.shape[:-1])
        for layer in reversed(self.layers):
            z, ld = cast(PlanarFlow, layer).inverse(z)
            logdet = logdet + ld
        return standard_normal_log_prob(z) - logdet




# --------------------------------------------------------------------------- continuous
class ProbedDynamics(nn.Module):
    """What the CNF's dynamics and the regularised dynamics share: a Hutchinson probe drawn once
    per solve (:meth:`draw_noise`), and the graph handling of :meth:`forward` — the trace and
    the penalties are derivatives of the field, so they are computed with autograd on, and kept
    differentiable only when a gradient is wanted (backprop through the solver, or the
    adjoint's backward pass); a forward-only solve drops that graph. Subclasses write
    :meth:`rates` ``(t, z, create_graph) -> tuple of tensors``."""

    noise_kind: str
    noise: torch.Tensor | None

    def draw_noise(self, z: torch.Tensor, generator: torch.Generator | None = None) -> None:
        """Draw the probe ε for the next solve, shaped like ``z``."""
        self.noise = sample_noise(z.shape, self.noise_kind, generator=generator,
                                  device=z.device, dtype=z.dtype)

    def probe(self, z: torch.Tensor, who: str) -> torch.Tensor:
        if self.noise is None or self.noise.shape != z.shape:
            raise RuntimeError(f"call draw_noise(z) before the solve ({who} does this)")
        return self.noise

    def forward(self, t: torch.Tensor, state):
        z = state[0]
        create_graph = torch.is_grad_enabled()
        with torch.enable_grad():
            if not z.requires_grad:
                z = z.detach().requires_grad_(True)
            out = self.rates(t, z, create_graph)
        if not create_graph:
            out = tuple(o.detach() for o in out)
        return out

    def rates(self, t: torch.Tensor, z: torch.Tensor, create_graph: bool) -> tuple:
        raise NotImplementedError


class CNFDynamics(ProbedDynamics):
    """Right-hand side of the CNF on the tuple state ``(z, log p)``:
    ``d/dt (z, log p) = (f(t, z), -tr ∂f/∂z)``.

    ``trace="exact"`` differentiates once per dimension; ``trace="closed_form"`` asks the field
    for ``(f, tr ∂f/∂z)`` through its ``with_divergence(t, z)`` (e.g.
    :meth:`PlanarCNFField.with_divergence`) and needs no backward pass at all;
    ``trace="hutchinson"`` uses the probe ``self.noise``, which :meth:`draw_noise` sets once per
    solve: the same ε at every step makes
    the integrand a smooth function of t (an adaptive solver could not control the error of an
    integrand that is redrawn at each evaluation), and the estimate of the whole integral stays
    unbiased.
    """

    def __init__(self, field: nn.Module, trace: str = "exact", noise: str = "rademacher"):
        super().__init__()
        if trace not in TRACE_METHODS:
            raise ValueError(f"unknown trace {trace!r}; known: {', '.join(TRACE_METHODS)}")
        if trace == "closed_form" and not hasattr(field, "with_divergence"):
            raise ValueError("trace='closed_form' needs a field with a with_divergence(t, z) "
                             "method returning (f, tr ∂f/∂z)")
        if noise not in NOISE_KINDS:
            raise ValueError(f"unknown noise {noise!r}; known: {', '.join(NOISE_KINDS)}")
        self.field, self.trace, self.noise_kind = field, trace, noise
        self.noise: torch.Tensor | None = None

    def rates(self, t, z, create_graph):
        if self.trace == "closed_form":
            f, tr = self.field.with_divergence(t, z)
        elif self.trace == "exact":
            f = self.field(t, z)
            tr = exact_trace(f, z, create_graph)
        else:
            noise = self.probe(z, "Hutchinson trace: CNF.integrate")
            f = self.field(t, z)
            tr = hutchinson_trace(f, z, noise, create_graph)
        return f, -tr


class CNF(nn.Module):
    """A continuous normalizing flow on ``[0, t1]``: base samples at ``t = 0``, data at ``t = t1``.

    ``log p_1(z(t1)) = log p_0(z(0)) - ∫_0^{t1} tr ∂f/∂z dt``. Solves use ``odeint_adjoint`` when
    ``adjoint=True`` (memory independent of the step count) and ``odeint`` otherwise; ``stats``
    holds the solver statistics of the last solve.
    """

    def __init__(self, field: nn.Module, *, t1: float = 1.0, trace: str = "exact",
                 noise: str = "rademacher", method: str = "dopri5", rtol: float = 1e-5,
                 atol: float = 1e-5, options: dict | None = None, adjoint: bool = False,
                 adjoint_options: dict | None = None,
                 base_log_prob=standard_normal_log_prob):
        super().__init__()
        self.dynamics = CNFDynamics(field, trace, noise)
        self.t1, self.method, self.rtol, self.atol = float(t1), method, rtol, atol
        self.options, self.adjoint, self.adjoint_options = options, adjoint, adjoint_options
        self.base_log_prob = base_log_prob
        self.stats = SolverStats()

    def integrate(self, z: torch.Tensor, logp: torch.Tensor, t,
                  generator: torch.Generator | None = None):
        """Solve the pair ``(z, log p)`` from ``t[0]`` through every ``t[i]``; returns the
        states ``(zs, logps)`` with a leading time axis. One Hutchinson probe per call."""
        t = (t.to(device=z.device, dtype=z.dtype) if isinstance(t, torch.Tensor)   # no float32
             else torch.as_tensor(t, device=z.device, dtype=z.dtype))           # detour
        if self.dynamics.trace == "hutchinson":
            self.dynamics.draw_noise(z, generator)
        self.stats = SolverStats()
        return solve_with_gradient(
            self.dynamics, (z, logp), t, gradient=gradient_mode(self.adjoint), rtol=self.rtol,
            atol=self.atol, method=self.method, options=self.options,
            adjoint_options=self.adjoint_options, stats=self.stats)

    def forward(self, z0: torch.Tensor, logp0: torch.Tensor | None = None):
        """Push base points to ``t1``: ``(z(t1), log p(z(t1)))``; ``logp0`` defaults to the base
        log-density of ``z0``."""
        if logp0 is None:
            logp0 = self.base_log_prob(z0)
        zs, logps = self.integrate(z0, logp0, [0.0, self.t1])
        return zs[-1], logps[-1]

    def sample(self, n: int, generator: torch.Generator | None = None, *, device=None,
               dtype=None):
        """``n`` samples at ``t1`` and their log-density."""
        p = next(self.parameters(), None)
        device = device or (p.device if p is not None else None)
        dtype = dtype or (p.dtype if p is not None else None)
        z0 = torch.randn(n, self._dim(), generator=generator, device=device, dtype=dtype)
        return self(z0)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``log p_1(x)``: solve from ``t1`` back to 0 starting at ``(x, 0)``; the second
        component then ends at ``∫_0^{t1} tr ∂f/∂z dt``, so ``log p_1(x) = log p_0(z(0)) - it``."""
        zs, deltas = self.integrate(x, x.new_zeros(x.shape[:-1]), [self.t1, 0.0])
        return self.base_log_prob(zs[-1]) - deltas[-1]

    def _dim(self) -> int:
        dim = getattr(self.dynamics.field, "dim", None)
        if dim is None:
            raise AttributeError("the field has no attribute 'dim'; pass base points to forward()")
        return dim


class PlanarCNFField(nn.Module):
    """The planar CNF of Chen et al. (2018, §4.1): ``f(t, z) = Σ_m σ_m(t) u_m tanh(w_mᵀz + b_m)``.

    A sum of M planar units, each switched on and off in time by a gate ``σ_m(t) ∈ (0, 1)`` that a
    small network of ``t`` computes. Because the trace is linear, the cost of
    ``tr ∂f/∂z = Σ_m σ_m(t) tanh'(w_mᵀz + b_m) u_mᵀw_m`` grows linearly in M (see
    :meth:`with_divergence`), as the cost of K planar layers grows linearly in K.
    """

    def __init__(self, dim: int, width: int, gate_hidden: int = 16, init_scale: float = 0.1):
        super().__init__()
        self.dim, self.width = dim, width
        self.w = nn.Parameter(init_scale * torch.randn(width, dim))
        self.u = nn.Parameter(init_scale * torch.randn(width, dim))
        self.b = nn.Parameter(torch.zeros(width))
        self.gate = nn.Sequential(nn.Linear(1, gate_hidden), nn.Tanh(),
                                  nn.Linear(gate_hidden, width))

    def gates(self, t: torch.Tensor) -> torch.Tensor:
        """``σ_m(t)`` for the M units, shape ``(width,)``."""
        return torch.sigmoid(self.gate(t.reshape(1, 1).to(self.w.dtype))).reshape(-1)

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(z @ self.w.T + self.b)                # (batch, M)
        return (h * self.gates(t)) @ self.u

    def with_divergence(self, t: torch.Tensor, z: torch.Tensor):
        """``(f(t, z), tr ∂f/∂z)`` with the trace in closed form,
        ``Σ_m σ_m(t) (1 - tanh²(w_mᵀz + b_m)) u_mᵀw_m``, sharing the tanh and the gates."""
        h, g = torch.tanh(z @ self.w.T + self.b), self.gates(t)
        return (h * g) @ self.u, (1 - h.square()) @ (g * (self.u * self.w).sum(-1))

    def divergence(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``tr ∂f/∂z`` in closed form (see :meth:`with_divergence`)."""
        return self.with_divergence(t, z)[1]
