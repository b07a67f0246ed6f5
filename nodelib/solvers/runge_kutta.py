"""One Runge–Kutta step, driven by a Butcher tableau: explicit stages, Newton's method on each
diagonally implicit stage, or Newton on all stages of a fully implicit method at once
(:mod:`nodelib.solvers.newton`).

Stage i evaluates ``k_i = f(t + c_i h, y + h Σ_j a_ij k_j)``. The linear combinations are the
only tensor work the solver adds to the cost of ``f``, so they use as few kernels as possible: an
``add`` per nonzero coefficient for short rows, one ``stack`` + ``addmv`` for long ones. The
nonzero terms of every row were listed once, when the tableau was built.
"""
from __future__ import annotations

import numpy as np
import torch

from .newton import implicit_stage, implicit_stages
from .tableaux import ButcherTableau

_STACK_FROM = 5  # rows with at least this many nonzero coefficients use stack + addmv
# (measured: below 5 terms, chained adds beat stack + addmv, mostly in the backward pass)


def combine(y: torch.Tensor, ks: list[torch.Tensor], terms, weights, h: float) -> torch.Tensor:
    """``y + h Σ_j w_j k_j`` over the nonzero ``terms`` ((j, w) pairs) of one row."""
    if len(terms) < _STACK_FROM:
        out = y
        for j, w in terms:
            out = torch.add(out, ks[j], alpha=h * w)
        return out
    K = torch.stack(ks[: len(weights)]).reshape(len(weights), -1)
    return torch.addmv(y.reshape(-1), K.t(), weights, alpha=h).view_as(y)


def _propagate(y: torch.Tensor, ks: list[torch.Tensor], tableau: ButcherTableau, h: float):
    """The new solution ``y + h Σ b_j k_j``. Short rows sum the small increments first and add
    y once, so rounding is relative to the increment, not to |y| at every term."""
    terms = tableau.b_terms
    if len(terms) == 1 or len(terms) >= _STACK_FROM:
        return combine(y, ks, terms, tableau.weights("b", y.dtype, y.device), h)
    (j0, w0), rest = terms[0], terms[1:]
    increment = ks[j0] * (h * w0)
    for j, w in rest:
        increment = torch.add(increment, ks[j], alpha=h * w)
    return y + increment


def rk_step(func, t: float, y: torch.Tensor, f0: torch.Tensor | None, h: float,
            tableau: ButcherTableau, time, end_time: torch.Tensor | None = None,
            newton=None, full_newton: bool = False):
    """Advance ``y`` from ``t`` to ``t + h``. ``f0 = f(t, y)``; ``time(float)`` makes the time
    tensor passed to ``func``; ``end_time``, if given, replaces it for the stages at t + h.
    Returns ``(y1, ks)`` where ``ks`` are the stage slopes; for a FSAL tableau
    ``ks[-1] = f(t + h, y1)``, which the next step reuses. An implicit tableau needs ``newton``
    (a :class:`~nodelib.solvers.newton.Newton`; ``full_newton``: a fresh Jacobian at every
    iterate) and may raise :class:`~nodelib.solvers.newton.NewtonFailure`."""
    if tableau.fully_implicit:
        return _fully_implicit_step(func, t, y, f0, h, tableau, time, newton, end_time,
                                    full_newton)
    if tableau.implicit:
        return _implicit_step(func, t, y, f0, h, tableau, time, newton, end_time, full_newton)
    ks: list = [f0]   # (f0 is given for an explicit first stage)
    yi = y
    for i in range(1, tableau.stages):
        terms = tableau.stage_terms[i]
        weights = (tableau.weights(i, y.dtype, y.device) if len(terms) >= _STACK_FROM
                   else None)
        yi = combine(y, ks, terms, weights, h)
        at_end = end_time is not None and tableau.c[i] == 1.0
        ti = end_time if at_end else time(t + tableau.c[i] * h)
        ks.append(func(ti, yi))
    y1 = yi if tableau.fsal else _propagate(y, ks, tableau, h)
    return y1, ks


def _implicit_step(func, t, y, f0, h, tableau, time, newton, end_time=None, full=False):
    """A diagonally implicit step: each stage with a_ii ≠ 0 solves
    ``z = base + h a_ii f(t_i, z)`` (Newton), and its slope is ``k = (z - base)/(h a_ii)``,
    exact at the solution and free of another evaluation of f."""
    stage_time = lambda i: (end_time if end_time is not None and tableau.c[i] == 1.0
                            else time(t + tableau.c[i] * h))
    _start_newton(newton, t, h, y, time, end_time)
    ks, z = [], y
    for i in range(tableau.stages):
        ti = stage_time(i)
        terms = tableau.stage_terms[i]
        weights = (tableau.weights(i, y.dtype, y.device) if len(terms) >= _STACK_FROM
                   else None)
        base = combine(y, ks, terms, weights, h) if i else y
        gamma = tableau.diag(i)
        if gamma == 0.0:   # an explicit stage (the first of an ESDIRK: f0 itself)
            ks.append(f0 if i == 0 else func(ti, base))
            z = base
            continue
        guess = z if i else y
        z_star = newton.solve(ti, base, h * gamma, guess, full=full)
        z = implicit_stage(func, ti, base, h * gamma, z_star, newton.stats)
        ks.append((z - base) / (h * gamma))
    y1 = z if tableau.fsal else _propagate(y, ks, tableau, h)
    return y1, ks


def _start_newton(newton, t, h, y, time, end_time) -> None:
    """A new step for Newton: the Jacobian is re-evaluated if the last solve was slow, at the
    step's start (just after it, when the step avoids its own end points: options["perturb"],
    or a jump of f at t + h)."""
    t_jac = time(t)
    if end_time is not None:
        t_jac = torch.nextafter(t_jac, torch.full_like(t_jac, t + h))
    newton.new_step(t_jac, y, slow=not newton.fresh and newton.last_iterations > 2)


def _fully_implicit_step(func, t, y, f0, h, tableau, time, newton, end_time=None, full=False):
    """A fully implicit step: Newton on the m stacked stage increments ``W_i = Y_i - y``,
    ``W = h (A ⊗ I) F(y + W)``. The slopes follow without another evaluation of f,
    ``K = A⁻¹ W / h`` (exact at the solution), and so does the new solution: the last stage
    value of a stiffly accurate method (Radau IIA), else ``y + Σ d_j W_j`` with d = bᵀA⁻¹."""
    lead = tableau.lead
    A, A_inv, d, L = tableau.collocation(y.dtype, y.device)
    m = A.shape[0]
    times = [end_time if end_time is not None and c == 1.0 else time(t + c * h)
             for c in tableau.c[lead:]]
    _start_newton(newton, t, h, y, time, end_time)
    guess = _extrapolated_guess(newton, tableau, L, t, h, y)
    W = newton.solve_stages(times, y, h, A, guess, full=full)
    newton.previous = (t, h, W)
    W = implicit_stages(newton, times, y, h, A, W)
    flat = W.reshape(m, -1)
    K = (A_inv @ flat) / h
    ks = ([f0] if lead else []) + list(K.view_as(W).unbind(0))
    y1 = y + W[-1] if d is None else y + (d @ flat).view_as(y)
    if tableau.adaptive:   # the error filter (I - hγ0 J)⁻¹ that integrate applies
        newton.factor(h * tableau.filter_gamma)
    return y1, ks


def _extrapolated_guess(newton, tableau, L, t: float, h: float, y: torch.Tensor):
    """Newton's starting stage increments: the last step's collocation polynomial
    ``u(t_old + θ h_old) = y_old + Σ_j ℓ_j(θ) W_j`` at this step's stage times, less its value
    at t (Hairer's RADAU5 starting values). Zero on the first step, or far from the last."""
    m = L.shape[0]
    if newton.previous is None:
        return y.new_zeros((m, *y.shape))
    t_old, h_old, W_old = newton.previous
    theta0 = (t - t_old) / h_old
    thetas = theta0 + np.array(tableau.c[tableau.lead:]) * (h / h_old)
    if not (-1e-9 <= theta0 <= 1 + 1e-9 and thetas.max() <= 3.0) or W_old.shape[1:] != y.shape:
        return y.new_zeros((m, *y.shape))
    powers = lambda x: np.atleast_1d(x)[:, None] ** np.arange(1, m + 1)
    E = powers(thetas) @ L - powers(theta0) @ L          # (m, m): ℓ_j(θ_i) - ℓ_j(θ_0)
    E = torch.as_tensor(E, dtype=y.dtype, device=y.device)
    return (E @ W_old.reshape(m, -1)).view_as(W_old)


def error_estimate(ks: list[torch.Tensor], tableau: ButcherTableau, h: float) -> torch.Tensor:
    """The embedded local error estimate ``h Σ_j (b_j - b̂_j) k_j``, shaped like the state
    (call under no_grad)."""
    K = torch.stack(ks[: tableau.stages]).reshape(tableau.stages, -1)
    w = tableau.weights("b_error", K.dtype, K.device)
    return torch.mv(K.t(), w).mul_(h).view_as(ks[0])
