"""Newton's method for the implicit stages of a Runge–Kutta step.

A diagonally implicit stage solves ``G(z) = z - base - hγ f(t, z) = 0`` for its stage value z.
Newton's iteration ``z ← z - M⁻¹ G(z)`` with ``M = I - hγ J`` needs the Jacobian J = ∂f/∂z (from
autograd: one vector–Jacobian product per state component) and an LU factorisation of M. Both are
costly, so :class:`Newton` keeps them: J is reused across stages and steps while Newton converges
fast, and M is refactorised only when hγ changes (all implicit stages of an ESDIRK share γ).

A fully implicit method (Gauss–Legendre, Radau IIA) solves for all m stage increments
``W_i = Y_i - y`` at once: ``G(W) = W - h (A ⊗ I) F(y + W) = 0``, F the stacked slopes
f(t + c_i h, Y_i). Simplified Newton uses the same J for every stage, so its matrix is
``I - h (A ⊗ J)`` (m·n × m·n), factorised once and reused like M. (Hairer's RADAU5 splits this
matrix by the eigenvalues of A into one real and one complex n × n system, cheaper for large
n; for the small stiff systems nodelib meets, one stacked LU is as fast and reads as the
equations do.) The stage slopes come from one call of f on the stacked stages where f allows
it (:meth:`Newton.evaluate_stages`).

Gradients never go through the iterations. Once z (or W) has converged (under ``no_grad``),
:func:`implicit_stage` (:func:`implicit_stages`) attaches it to the graph by the implicit
function theorem: its derivative with respect to base (y) and the parameters of f is
``M*⁻¹ ∂G/∂(·)`` with M* = ∂G/∂z at the solution — one solve with the transposed
factorisation in the backward pass.
"""
from __future__ import annotations

import functools
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
        # fully implicit methods: the factorised I - h (A ⊗ J) and its h; and whether f takes
        # all stages in one call (None: not yet tried)
        self.stacked_lu: tuple[torch.Tensor, torch.Tensor] | None = None
        self.stacked_h: float | None = None
        self.batched: bool | None = None
        self.previous = None   # (t, h, W) of the last fully implicit step: starting values

    # --- the cached linear algebra ---------------------------------------------------------
    def new_step(self, t: torch.Tensor, y: torch.Tensor, slow: bool) -> None:
        """At the start of a step: re-evaluate J if none is cached or the last solve was slow."""
        if self.jacobian is None or slow:
            self.jacobian, calls = jacobian(self.func, t, y)
            self.stats.n_jacobians += 1
            self.stats.nfe += calls
            self.lu, self.stacked_lu, self.fresh = None, None, True
        else:
            self.fresh = False

    def refresh_jacobian(self) -> None:
        """Drop the cached Jacobian: the next step re-evaluates it (after a Newton failure).
        The last step's stages go too: a retry starts from zero increments, not from their
        extrapolation (which a stiff transient can throw far off)."""
        self.jacobian = None
        self.previous = None

    def factor(self, h_gamma: float) -> None:
        """Factorise M = I - hγJ, unless the cached M is for a hγ within 20%: Newton with a
        slightly wrong M still converges (a little slower), and an LU costs O(n³)."""
        if (self.lu is None or self.h_gamma is None
                or abs(h_gamma / self.h_gamma - 1) > 0.2):
            assert self.jacobian is not None   # (new_step evaluated it)
            n = self.jacobian.shape[0]
            eye = torch.eye(n, dtype=self.jacobian.dtype, device=self.jacobian.device)
            self.lu = None   # (until the new one exists: a singular M rejects the step)
            self.lu = self._lu(eye - h_gamma * self.jacobian, "I - hγJ")
            self.h_gamma = h_gamma

    def _lu(self, matrix: torch.Tensor, name: str) -> tuple:
        """The LU factors of a Newton matrix, counted; a singular one rejects the step."""
        lu, pivots, info = torch.linalg.lu_factor_ex(matrix)
        self.stats.n_lu += 1
        if int(info) != 0:
            raise NewtonFailure(f"the Newton matrix {name} is singular")
        return lu, pivots

    def solve_linear(self, rhs: torch.Tensor) -> torch.Tensor:
        assert self.lu is not None   # (factor ran first)
        return _lu_solve(self.lu, rhs)

    # --- one implicit stage ----------------------------------------------------------------
    def solve(self, t: torch.Tensor, base: torch.Tensor, h_gamma: float,
              guess: torch.Tensor, full: bool = False) -> torch.Tensor:
        """The stage value z with ``z = base + hγ f(t, z)``, under no_grad (the iterations it
        took are kept in ``last_iterations``). Raises :class:`NewtonFailure` if it diverges or
        stalls. ``full``: J and M re-evaluated at every iterate (full Newton: the last resort of
        a fixed-size step, which cannot shrink)."""
        self.factor(h_gamma)
        base = base.detach()

        def refresh(z):
            self._jacobian_at(t, z)
            self.lu = None
            self.factor(h_gamma)

        def residual(z):
            self.stats.nfe += 1
            return z - base - h_gamma * self.func(t, z)

        guess = guess.detach()
        scale = guess.abs().mul(self._rtol(guess)).add_(self.atol)
        return self._iterate(residual, self.solve_linear, guess, scale, refresh if full else None)

    # --- all stages of a fully implicit method at once -----------------------------------------
    def solve_stages(self, times: list[torch.Tensor], y: torch.Tensor, h: float,
                     A: torch.Tensor, guess: torch.Tensor, full: bool = False) -> torch.Tensor:
        """The stage increments W (m × y's shape) with ``W = h (A ⊗ I) F(y + W)``, under
        no_grad, by simplified Newton on the stacked stages. ``full``: the exact matrix
        I - h (A ⊗ I) diag(J(Y_i)) at every iterate. Raises :class:`NewtonFailure`."""
        self.factor_stacked(A, h)
        y = y.detach()
        m = A.shape[0]

        def refresh(W):
            Js = [self._jacobian_at(t, y + w) for t, w in zip(times, W)]
            self.stacked_lu = None
            self.factor_stacked(A, h, Js)

        def residual(W):
            F = self.evaluate_stages(times, y + W)
            return W - h * (A @ F.reshape(m, -1)).view_as(W)

        scale = y.abs().mul(self._rtol(y)).add_(self.atol).expand_as(guess)
        return self._iterate(residual, self.solve_stacked, guess.detach(), scale,
                             refresh if full else None)

    def factor_stacked(self, A: torch.Tensor, h: float, jacobians=None) -> None:
        """Factorise I - h (A ⊗ I) diag(J_i) (simplified Newton: every J_i the cached J),
        unless the cached one is for an h within 20% (as :meth:`factor`)."""
        if jacobians is None and self.stacked_lu is not None and self.stacked_h is not None \
                and abs(h / self.stacked_h - 1) <= 0.2:
            return
        assert self.jacobian is not None   # (new_step evaluated it)
        Js = jacobians if jacobians is not None else [self.jacobian] * A.shape[0]
        self.stacked_lu = None   # (as in factor)
        self.stacked_lu = self._lu(stacked_matrix(A, h, Js), "I - h(A ⊗ J)")
        self.stacked_h = h

    def solve_stacked(self, rhs: torch.Tensor) -> torch.Tensor:
        """(I - h (A ⊗ J))⁻¹ rhs, by the cached factorisation (rhs shaped like W)."""
        assert self.stacked_lu is not None   # (factor_stacked ran first)
        return _lu_solve(self.stacked_lu, rhs)

    def evaluate_stages(self, times: list[torch.Tensor], Y: torch.Tensor) -> torch.Tensor:
        """f at every stage value (the rows of Y), stacked. One call of f on all rows, with the
        times as a column, where f is batch-agnostic: found out on the first call, by
        comparing that call with one call per stage (f indexing y[0] for its first component,
        say, is not; it then gets one call per stage for the rest of the solve). Counts calls
        of f in ``stats.nfe``: a call on the stacked stages counts once."""
        if self.batched is False:
            return self._one_call_per_stage(times, Y)
        T = torch.stack(times).view(len(times), *[1] * (Y.dim() - 1))
        self.stats.nfe += 1
        if self.batched:
            return self.func(T, Y)
        try:
            F = self.func(T, Y)
        except Exception:   # any failure means "not batch-agnostic"
            F = None
        looped = self._one_call_per_stage(times, Y)
        eps = 1000 * torch.finfo(Y.dtype).eps
        self.batched = (isinstance(F, torch.Tensor) and F.shape == looped.shape
                        and bool(torch.allclose(F, looped, rtol=eps, atol=eps * float(
                            looped.abs().max()), equal_nan=True)))
        return looped

    def _one_call_per_stage(self, times, Y) -> torch.Tensor:
        self.stats.nfe += len(times)
        return torch.stack([self.func(t, z) for t, z in zip(times, Y)])

    # --- the iteration itself ------------------------------------------------------------------
    def _rtol(self, like: torch.Tensor) -> float:
        # an update below the dtype's resolution cannot be asked for: rtol floored at 100 eps
        return max(self.rtol, 100 * _eps(like.dtype))

    def _jacobian_at(self, t, z) -> torch.Tensor:
        self.jacobian, calls = jacobian(self.func, t, z)
        self.stats.n_jacobians += 1
        self.stats.nfe += calls
        return self.jacobian

    def _iterate(self, residual, solve, z, scale, refresh) -> torch.Tensor:
        """Simplified Newton ``z ← z - solve(residual(z))`` until the update, measured in
        ``scale`` (RMS), is below the iteration tolerance; ``refresh(z)``, if given, rebuilds
        the matrix at each iterate after the first (full Newton)."""
        with torch.no_grad():
            tol = self.tol if self.tol is not None else iteration_tolerance(self.rtol, z.dtype)
            previous = None
            for iteration in range(1, self.max_iterations + 1):
                if refresh is not None and iteration > 1:
                    refresh(z)
                delta = solve(residual(z))
                z = z - delta
                size = float(torch.linalg.vector_norm(delta / scale)) / math.sqrt(z.numel())
                if not math.isfinite(size):
                    self.stats.n_newton_iterations += iteration
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


def _lu_solve(factors: tuple, rhs: torch.Tensor) -> torch.Tensor:
    """``M⁻¹ rhs`` from M's LU factors, for rhs of any shape (flattened to one column)."""
    return torch.linalg.lu_solve(*factors, rhs.reshape(-1, 1)).view_as(rhs)


def stacked_matrix(A: torch.Tensor, h: float, jacobians: list[torch.Tensor]) -> torch.Tensor:
    """``I - h (A ⊗ I) diag(J_1 … J_m)``: block (i, j) is ``δ_ij I - h a_ij J_j``, the
    derivative of the stacked residual W - h (A ⊗ I) F(y + W) with respect to W."""
    m, n = A.shape[0], jacobians[0].shape[0]
    blocks = torch.stack(jacobians)                                    # (m, n, n), J_j
    M = -h * A[:, :, None, None] * blocks[None]                        # (m, m, n, n)
    M = M.permute(0, 2, 1, 3).reshape(m * n, m * n)
    return M + torch.eye(m * n, dtype=M.dtype, device=M.device)


@functools.cache
def _eps(dtype: torch.dtype) -> float:
    return torch.finfo(dtype).eps   # (finfo costs ~25 µs: once per dtype, not per step)


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

    def matrix():
        J = _counted_jacobian(func, t, z, stats)
        return torch.eye(J.shape[0], dtype=J.dtype, device=J.device) - h_gamma * J
    return _attach(z, residual, matrix, stats)


def implicit_stages(newton: Newton, times: list[torch.Tensor], y: torch.Tensor, h: float,
                    A: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """The converged stage increments W of a fully implicit step, made differentiable the same
    way: the residual ``W - h (A ⊗ I) F(y + W)`` carries the dependence on y and on f's
    parameters, and M* = I - h (A ⊗ I) diag(J(Y_i)), with each stage's own Jacobian."""
    func = newton.func
    if not torch.is_grad_enabled() or not (y.requires_grad or _may_need_grad(func)):
        return W
    W = W.detach()
    m = A.shape[0]
    residual = W - h * (A @ newton.evaluate_stages(times, y + W).reshape(m, -1)).view_as(W)

    def matrix():
        Y = (y.detach() + W)
        return stacked_matrix(A, h, [_counted_jacobian(func, t, z, newton.stats)
                                     for t, z in zip(times, Y)])
    return _attach(W, residual, matrix, newton.stats)


def _attach(z: torch.Tensor, residual: torch.Tensor, matrix, stats) -> torch.Tensor:
    if not residual.requires_grad:   # nothing upstream needs a gradient
        return z
    return z + _InverseCorrection.apply(residual, matrix, stats)


def _counted_jacobian(func, t, z, stats) -> torch.Tensor:
    J, calls = jacobian(func, t, z)
    stats.n_jacobians += 1
    stats.nfe += calls
    return J


def _may_need_grad(func) -> bool:
    """Could f carry tensors that need gradients? A module answers from its parameters; a plain
    function may close over such tensors, so for it the residual itself tells (one call)."""
    while hasattr(func, "func") and not isinstance(func, torch.nn.Module):
        func = func.func          # unwrap nodelib's wrappers (CheckedFunc)
    if isinstance(func, torch.nn.Module):
        return any(p.requires_grad for p in func.parameters())
    return True


class _InverseCorrection(torch.autograd.Function):
    """Value 0; backward: ``grad_r = -M*⁻ᵀ grad`` (one solve with the transposed LU of the
    matrix that ``matrix()`` builds, only when a backward pass runs)."""

    @staticmethod
    def forward(ctx, residual, matrix, stats):
        ctx.matrix, ctx.stats = matrix, stats
        return torch.zeros_like(residual)

    @staticmethod
    def backward(ctx, grad):
        lu = torch.linalg.lu_factor(ctx.matrix())
        ctx.stats.n_lu += 1
        w = torch.linalg.lu_solve(*lu, grad.reshape(-1, 1), adjoint=True).view_as(grad)
        return -w, None, None


__all__ = ["Newton", "NewtonConvergenceError", "NewtonFailure", "implicit_stage",
           "implicit_stages", "iteration_tolerance", "jacobian", "stacked_matrix"]
