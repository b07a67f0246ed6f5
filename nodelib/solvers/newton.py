"""Newton's method for the implicit stages of a diagonally implicit Runge–Kutta step.

An implicit stage solves ``G(z) = z - base - hγ f(t, z) = 0`` for its stage value z. Newton's
iteration ``z ← z - M⁻¹ G(z)`` with ``M = I - hγ J`` needs the Jacobian J = ∂f/∂z (from autograd:
one vector–Jacobian product per state component) and an LU factorisation of M. Both are costly,
so :class:`Newton` keeps them: J is reused across stages and steps while Newton converges fast,
and M is refactorised only when hγ changes (all implicit stages of an ESDIRK share γ).

Gradients never go through the iterations. Once z has converged (under ``no_grad``),
:func:`implicit_stage` attaches it to the graph by the implicit function theorem: its derivative
with respect to base and the parameters of f is ``M*⁻¹ ∂G/∂(·)`` with M* at the solution — one
solve with the transposed factorisation in the backward pass.
"""
from __future__ import annotations

import math

import torch

from ..errors import NewtonConvergenceError


class NewtonFailure(Exception):
    """Raised inside a step when Newton's method does not converge (the step is rejected).
    ``nonfinite``: the iteration met NaN/inf (in f, or in an overflowing iterate)."""

    def __init__(self, message: str, nonfinite: bool = False):
        super().__init__(message)
        self.nonfinite = nonfinite


class Newton:
    """The Newton solver of one solve: its cached Jacobian and factorisation, and its counts."""

    def __init__(self, func, rtol: float, atol: float, stats, *, max_iterations: int = 8,
                 tol: float | None = None):
        self.func, self.rtol, self.atol, self.stats = func, rtol, atol, stats
        self.max_iterations, self.tol = max_iterations, tol
        self.jacobian: torch.Tensor | None = None
        self.lu: tuple[torch.Tensor, torch.Tensor] | None = None
        self.h_gamma: float | None = None
        self.fresh = False   # is the cached Jacobian from this step's start point?
        self.last_iterations = 0   # of the last stage solved: many mean J is getting stale

    # --- the cached linear algebra ---------------------------------------------------------
    def new_step(self, t: torch.Tensor, y: torch.Tensor, slow: bool) -> None:
        """At the start of a step: re-evaluate J if none is cached or the last solve was slow."""
        if self.jacobian is None or slow:
            self.jacobian, calls = jacobian(self.func, t, y)
            self.stats.n_jacobians += 1
            self.stats.nfe += calls
            self.lu, self.fresh = None, True
        else:
            self.fresh = False

    def refresh_jacobian(self) -> None:
        """Drop the cached Jacobian: the next step re-evaluates it (after a Newton failure)."""
        self.jacobian = None

    def factor(self, h_gamma: float) -> None:
        """Factorise M = I - hγJ, unless the cached M is for a hγ within 20%: Newton with a
        slightly wrong M still converges (a little slower), and an LU costs O(n³)."""
        if (self.lu is None or self.h_gamma is None
                or abs(h_gamma / self.h_gamma - 1) > 0.2):
            assert self.jacobian is not None   # (new_step evaluated it)
            n = self.jacobian.shape[0]
            eye = torch.eye(n, dtype=self.jacobian.dtype, device=self.jacobian.device)
            lu, pivots, info = torch.linalg.lu_factor_ex(eye - h_gamma * self.jacobian)
            self.stats.n_lu += 1
            if int(info) != 0:   # singular: this step cannot be solved; reject it
                self.lu = None
                raise NewtonFailure("the Newton matrix I - hγJ is singular")
            self.lu, self.h_gamma = (lu, pivots), h_gamma

    def solve_linear(self, rhs: torch.Tensor) -> torch.Tensor:
        assert self.lu is not None   # (factor ran first)
        return torch.linalg.lu_solve(*self.lu, rhs.reshape(-1, 1)).view_as(rhs)

    # --- one implicit stage ----------------------------------------------------------------
    def solve(self, t: torch.Tensor, base: torch.Tensor, h_gamma: float,
              guess: torch.Tensor, full: bool = False) -> torch.Tensor:
        """The stage value z with ``z = base + hγ f(t, z)``, under no_grad (the iterations it
        took are kept in ``last_iterations``). Raises :class:`NewtonFailure` if it diverges or
        stalls. ``full``: J and M re-evaluated at every iterate (full Newton: the last resort of
        a fixed-size step, which cannot shrink)."""
        self.factor(h_gamma)
        with torch.no_grad():
            z, base = guess.detach().clone(), base.detach()
            # an update below the dtype's resolution cannot be asked for: rtol floored at 100 eps
            rtol = max(self.rtol, 100 * torch.finfo(z.dtype).eps)
            scale = z.abs().mul(rtol).add_(self.atol)
            tol = self.tol if self.tol is not None else iteration_tolerance(self.rtol, z.dtype)
            previous = None
            for iteration in range(1, self.max_iterations + 1):
                if full and iteration > 1:
                    self.jacobian, calls = jacobian(self.func, t, z)
                    self.stats.n_jacobians += 1
                    self.stats.nfe += calls
                    self.lu = None
                    self.factor(h_gamma)
                residual = z - base - h_gamma * self.func(t, z)
                self.stats.nfe += 1
                delta = self.solve_linear(residual)
                z = z - delta
                size = float(torch.linalg.vector_norm(delta / scale)) / math.sqrt(z.numel())
                if not math.isfinite(size):
                    raise NewtonFailure("Newton's iteration produced NaN/inf", nonfinite=True)
                rate = size / previous if previous else 0.0
                # converged when the update — or, for a linearly converging iteration, the
                # remaining error rate/(1 - rate)·size — is well below the tolerance
                if size <= tol or (0 < rate < 1 and rate / (1 - rate) * size <= tol):
                    self.stats.n_newton_iterations += iteration
                    self.last_iterations = iteration
                    return z
                if rate >= 0.9:                 # diverging or stalled: give up on this step
                    self.stats.n_newton_iterations += iteration
                    raise NewtonFailure(f"Newton's iteration diverged or stalled after "
                                        f"{iteration} iterations")
                previous = size
        self.stats.n_newton_iterations += self.max_iterations
        raise NewtonFailure(f"Newton's method did not converge in {self.max_iterations} "
                            "iterations")


def iteration_tolerance(rtol: float, dtype: torch.dtype = torch.float64) -> float:
    """How small Newton's update must be, relative to the error scale ``|z|·rtol + atol``, to stop.

    It tightens with rtol as in RADAU5 (Hairer & Wanner IV.8): a fixed 0.03 let a reused
    Jacobian's slow convergence leave iteration errors far above the local error at rtol ≤ 1e-6.
    (rtol is floored at 100 eps, as in :meth:`Newton.solve`.)"""
    eps = torch.finfo(dtype).eps
    rtol = max(rtol, 100 * eps)
    return max(10 * eps / rtol, min(0.03, math.sqrt(rtol)))


def jacobian(func, t: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, int]:
    """∂f/∂y at (t, y) as an (n × n) matrix of the flattened state, by reverse-mode autograd
    (one vector–Jacobian product per row, batched with vmap where func allows it), and the
    number of calls of func it made."""
    shape = y.shape
    flat = lambda z: func(t, z.view(shape)).reshape(-1)
    with torch.enable_grad():
        try:
            J = torch.autograd.functional.jacobian(flat, y.detach().reshape(-1), vectorize=True)
        except RuntimeError:   # func not vmap-able (e.g. data-dependent control flow)
            J = torch.autograd.functional.jacobian(flat, y.detach().reshape(-1))
    return J.detach(), 1   # (the jacobian evaluates func once and reverses it n times)


def implicit_stage(func, t: torch.Tensor, base: torch.Tensor, h_gamma: float,
                   z: torch.Tensor, stats) -> torch.Tensor:
    """The converged stage value z, made differentiable by the implicit function theorem.

    ``r = z - base - hγ f(t, z)`` (z detached) carries the dependence on base and on f's
    parameters; the result is ``z - M*⁻¹ r`` with M* = I - hγ ∂f/∂z at z. Its value is z (r is
    zero at convergence, so the correction is not even computed), and its gradient is the IFT's.
    The Jacobian at z and its LU are built only if a backward pass actually runs."""
    if not torch.is_grad_enabled() or not (base.requires_grad or _may_need_grad(func)):
        return z
    z = z.detach()
    residual = z - base - h_gamma * func(t, z)
    stats.nfe += 1
    if not residual.requires_grad:   # nothing upstream needs a gradient
        return z
    return z + _InverseCorrection.apply(residual, func, t, z, h_gamma, stats)


def _may_need_grad(func) -> bool:
    """Could f carry tensors that need gradients? A module answers from its parameters; a plain
    function may close over such tensors, so for it the residual itself tells (one call)."""
    while hasattr(func, "func") and not isinstance(func, torch.nn.Module):
        func = func.func          # unwrap nodelib's wrappers (CheckedFunc)
    if isinstance(func, torch.nn.Module):
        return any(p.requires_grad for p in func.parameters())
    return True


class _InverseCorrection(torch.autograd.Function):
    """Value 0; backward: ``grad_r = -M*⁻ᵀ grad`` (one solve with the transposed LU)."""

    @staticmethod
    def forward(ctx, residual, func, t, z, h_gamma, stats):
        ctx.func, ctx.t, ctx.z, ctx.h_gamma, ctx.stats = func, t, z, h_gamma, stats
        return torch.zeros_like(residual)

    @staticmethod
    def backward(ctx, grad):
        J, calls = jacobian(ctx.func, ctx.t, ctx.z)
        ctx.stats.n_jacobians += 1
        ctx.stats.n_lu += 1
        ctx.stats.nfe += calls
        eye = torch.eye(J.shape[0], dtype=J.dtype, device=J.device)
        lu = torch.linalg.lu_factor(eye - ctx.h_gamma * J)
        w = torch.linalg.lu_solve(*lu, grad.reshape(-1, 1), adjoint=True).view_as(grad)
        return -w, None, None, None, None, None


__all__ = ["Newton", "NewtonConvergenceError", "NewtonFailure", "implicit_stage",
           "iteration_tolerance", "jacobian"]
