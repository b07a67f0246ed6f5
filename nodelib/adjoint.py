"""``odeint_adjoint``: gradients by the continuous adjoint method (Chen et al. 2018, Algorithm 2).

The forward pass solves the ODE without recording a graph and keeps only the outputs, so memory
does not grow with the number of solver steps. The backward pass integrates the augmented state

    s = [z, a, a_θ, a_t],   ds/dt = [f, -aᵀ ∂f/∂z, -aᵀ ∂f/∂θ, -aᵀ ∂f/∂t]

backwards from t_N to t_0, interval by interval, adding ∂L/∂z(t_i) to ``a`` at each output time.
The products ``aᵀ ∂f/∂·`` are vector–Jacobian products: one reverse-mode pass through ``func``
per evaluation, never a Jacobian.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .odeint import solve
from .problem import (CheckedFunc, check_options, check_state, check_times, check_tolerances,
                      get_tableau)
from .stats import SolverStats


def odeint_adjoint(func, y0, t, *, rtol: float = 1e-7, atol: float = 1e-9,
                   method: str = "dopri5", options: dict | None = None,
                   adjoint_rtol: float | None = None, adjoint_atol: float | None = None,
                   adjoint_method: str | None = None, adjoint_options: dict | None = None,
                   adjoint_params=None, stats: SolverStats | None = None):
    """Same result as :func:`nodelib.odeint`; gradients by the continuous adjoint method.

    Gradients reach ``y0``, every ``t[i]`` and ``adjoint_params`` (default: ``func.parameters()``
    when ``func`` is an ``nn.Module``, else none — tensors that ``func`` merely closes over get no
    gradient). The backward solve uses ``adjoint_rtol/atol/method/options`` (default: the forward
    ones). ``adjoint_options={"norm": "seminorm"}`` leaves the parameter and time parts of the
    adjoint state out of its error control (Kidger et al. 2021): they never feed back into the
    dynamics, so controlling their error only costs steps.
    """
    tableau = get_tableau(method)
    options = check_options(tableau, options)
    rtol, atol = check_tolerances(rtol, atol)
    adjoint_tableau = get_tableau(adjoint_method or method)
    if adjoint_options is None:
        adjoint_options = dict(options) if adjoint_tableau is tableau else {}
    adjoint_options = dict(adjoint_options)
    seminorm = adjoint_options.pop("norm", None)
    if seminorm not in (None, "seminorm"):
        raise ValueError(f"adjoint_options['norm'] must be 'seminorm' or absent, got {seminorm!r}")
    adjoint_options = check_options(adjoint_tableau, adjoint_options)
    a_rtol, a_atol = check_tolerances(rtol if adjoint_rtol is None else adjoint_rtol,
                                      atol if adjoint_atol is None else adjoint_atol)

    if adjoint_params is None:
        adjoint_params = tuple(func.parameters()) if isinstance(func, nn.Module) else ()
    params = tuple(p for p in adjoint_params if p.requires_grad)

    y0_flat, layout = check_state(y0)
    t = check_times(t, y0_flat)
    settings = _Settings(
        func=CheckedFunc(func, y0_flat, layout), tableau=tableau, rtol=rtol, atol=atol,
        options=options, adjoint_tableau=adjoint_tableau, adjoint_rtol=a_rtol,
        adjoint_atol=a_atol, adjoint_options=adjoint_options, seminorm=seminorm is not None,
        params=params, stats=stats)
    ys = _AdjointODESolve.apply(settings, y0_flat, t, *params)
    return ys if layout is None else layout.unflatten(ys, lead=(len(t),))


class _Settings:
    def __init__(self, **kw):
        self.__dict__.update(kw)


class _AdjointODESolve(torch.autograd.Function):

    @staticmethod
    def forward(ctx, s: _Settings, y0, t, *params):
        with torch.no_grad():
            ys = solve(s.func, y0, t.tolist(), s.tableau, rtol=s.rtol, atol=s.atol,
                       options=s.options, stats=s.stats.forward if s.stats else None)
        ctx.settings = s
        ctx.save_for_backward(t, ys)   # outputs only: memory independent of the step count
        return ys

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_ys):
        s: _Settings = ctx.settings
        t, ys = ctx.saved_tensors
        times = t.tolist()
        func, params = s.func, s.params
        want_t = ctx.needs_input_grad[2]
        shape, n = ys.shape[1:], ys[0].numel()
        p_numels = [p.numel() for p in params]
        n_aug = 2 * n + sum(p_numels) + (1 if want_t else 0)
        pass_stats = s.stats.backward if s.stats else None
        extra_nfe = 0

        def aug_dynamics(t_, aug):
            # aug = [z, a, a_θ, a_t] flattened; returns [f, -aᵀ∂f/∂z, -aᵀ∂f/∂θ, -aᵀ∂f/∂t].
            z, a = aug[:n].view(shape), aug[n:2 * n].view(shape)
            with torch.enable_grad():
                z = z.detach().requires_grad_(True)
                t_ = t_.detach().requires_grad_(want_t)
                f = func(t_, z)
                inputs = (z, t_, *params) if want_t else (z, *params)
                vjps = torch.autograd.grad(f, inputs, -a, allow_unused=True)
            parts = [f.reshape(-1)] + [
                (torch.zeros(m, dtype=aug.dtype, device=aug.device) if v is None
                 else v.reshape(-1))
                for v, m in zip(vjps, [n] + ([1] if want_t else []) + p_numels)]
            if want_t:   # layout [z, a, a_θ, a_t]: move the time part to the end
                parts.append(parts.pop(2))
            return torch.cat(parts)

        # Error norm of the augmented state: the largest RMS over its parts (z, a, a_θ, a_t),
        # so no part's error is diluted by another's size; the seminorm drops a_θ and a_t,
        # which never feed back into the dynamics (and so can only be smaller).
        bounds = [0, n, 2 * n] + ([] if s.seminorm else [n_aug - (1 if want_t else 0), n_aug])
        norm = _max_of_rms(sorted(set(bounds)))
        a = grad_ys[-1].reshape(-1)
        a_params = torch.zeros(n_aug - 2 * n - (1 if want_t else 0), dtype=ys.dtype,
                               device=ys.device)
        grad_t = torch.zeros_like(t) if want_t else None
        a_t = None
        step_memo = {}   # the step size carries over from one interval to the next
        if want_t:
            g_dot_f = _dot_slope(func, t[-1], ys[-1], grad_ys[-1])
            extra_nfe += 1
            grad_t[-1] = g_dot_f
            a_t = -g_dot_f.reshape(1)

        for i in range(len(times) - 1, 0, -1):
            # z restarts from the stored forward solution at t_i: no drift from the backward solve.
            parts = [ys[i].reshape(-1), a, a_params] + ([a_t] if want_t else [])
            aug = torch.cat(parts)
            aug = solve(aug_dynamics, aug, [times[i], times[i - 1]], s.adjoint_tableau,
                        rtol=s.adjoint_rtol, atol=s.adjoint_atol, options=s.adjoint_options,
                        stats=pass_stats, norm=norm, step_memo=step_memo)[-1]
            a = aug[n:2 * n] + grad_ys[i - 1].reshape(-1)
            a_params = aug[2 * n:2 * n + a_params.numel()]
            if want_t:
                a_t = aug[-1:]
                if i - 1 > 0:
                    g_dot_f = _dot_slope(func, t[i - 1], ys[i - 1], grad_ys[i - 1])
                    extra_nfe += 1
                    grad_t[i - 1] = g_dot_f
                    a_t = a_t - g_dot_f
        if want_t:
            grad_t[0] = a_t[0]
        if pass_stats is not None:
            pass_stats.nfe += extra_nfe
        grad_params = [g.view_as(p) for g, p in
                       zip(torch.split(a_params, p_numels), params)] if params else []
        return (None, a.view(shape), grad_t, *grad_params)


def _dot_slope(func, t_i, y_i, g_i):
    """``∂L/∂z(t_i) · f(t_i, z(t_i))``: how the loss moves when the output time t_i moves."""
    return (g_i * func(t_i, y_i)).sum()


def _max_of_rms(bounds: list[int]):
    """Norm of a flat augmented state: the max of the RMS norms of x[bounds[i]:bounds[i+1]]."""
    parts = [(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:]) if hi > lo]

    def norm(x: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.linalg.vector_norm(x[lo:hi]) / math.sqrt(hi - lo)
                            for lo, hi in parts]).max()
    return norm
