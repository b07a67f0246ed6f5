"""``odeint``: solve an initial value problem and differentiate by backprop through the solver."""
from __future__ import annotations

import torch

from . import integrators
from .control import rms_norm
from .problem import (CheckedFunc, check_options, check_state, check_times, check_tolerances,
                      get_tableau)
from .stats import SolverStats


def odeint(func, y0, t, *, rtol: float = 1e-7, atol: float = 1e-9, method: str = "dopri5",
           options: dict | None = None, stats: SolverStats | None = None):
    """Solve ``dy/dt = func(t, y)``, ``y(t[0]) = y0`` and return the states at every ``t[i]``.

    Args:
        func: callable ``func(t, y) -> dy/dt`` (``t`` a 0-d tensor, ``y`` shaped like ``y0``).
        y0: initial state, a tensor of any shape (batches included) or a tuple of tensors.
        t: 1-D tensor of output times, strictly increasing or strictly decreasing.
        rtol, atol: tolerances of the adaptive methods (ignored by fixed-step methods).
        method: ``"dopri5"`` (default), ``"tsit5"``, ``"bosh3"`` (adaptive) or ``"euler"``,
            ``"midpoint"``, ``"heun2"``, ``"rk4"`` (fixed step).
        options: fixed step: ``step_size`` (default: one step per interval of ``t``); adaptive:
            ``first_step``, ``max_num_steps`` (default 100 000), ``norm`` (a callable for the
            error norm; default RMS).
        stats: a :class:`~nodelib.SolverStats` to fill with NFE, step counts and the step trace.

    Returns:
        Tensor of shape ``(len(t), *y0.shape)`` (a tuple of such for a tuple ``y0``) on ``y0``'s
        device and in its dtype.

    Gradients flow to ``y0`` and to the parameters of ``func`` by backpropagation through every
    solver operation (memory grows with the number of steps; see :func:`odeint_adjoint`). The
    gradient with respect to ``t`` is that of the exact flow — ``dL/dt_i = ∂L/∂y(t_i) · f(t_i,
    y(t_i))`` for ``i ≥ 1`` and ``dL/dt_0 = -∂L/∂y_0 · f(t_0, y_0)`` — the same formulas the adjoint
    method gives; it matches the derivative of the numerical solution up to the solver's error.
    """
    tableau = get_tableau(method)
    options = check_options(tableau, options)
    rtol, atol = check_tolerances(rtol, atol)
    y0_flat, layout = check_state(y0)
    t = check_times(t, y0_flat)
    norm = options.pop("norm", rms_norm)
    if not callable(norm):
        raise ValueError("options['norm'] must be a callable mapping a flat tensor to a 0-d "
                         "tensor ('seminorm' is an adjoint_options setting of odeint_adjoint)")
    f = CheckedFunc(func, y0_flat, layout)
    pass_stats = stats.forward if stats is not None else None

    needs_time_grad = t.requires_grad and torch.is_grad_enabled()
    y_start = y0_flat
    if needs_time_grad:
        # Value unchanged, but d(y_start)/d t0 = -f(t0, y0): moving the start time along the
        # trajectory is the same as moving the initial state against the flow.
        with torch.no_grad():
            f_start = f(t[0].detach(), y0_flat)
        y_start = y0_flat - (t[0] - t[0].detach()) * f_start

    ys = solve(f, y_start, t.detach().tolist(), tableau, rtol=rtol, atol=atol, options=options,
               stats=pass_stats, norm=norm)

    if needs_time_grad:
        # d y(t_i) / d t_i = f(t_i, y(t_i)); the output at t_0 is y0 itself.
        with torch.no_grad():
            slopes = torch.stack([f(t[i].detach(), ys[i]) for i in range(1, len(t))])
        if pass_stats is not None:
            pass_stats.nfe += len(t)
        dt = (t[1:] - t[1:].detach()).view(-1, *([1] * y0_flat.dim()))
        ys = torch.cat([y0_flat.unsqueeze(0), ys[1:] + dt * slopes])

    return ys if layout is None else layout.unflatten(ys, lead=(len(t),))


def solve(func, y0: torch.Tensor, times: list[float], tableau, *, rtol: float, atol: float,
          options: dict, stats, norm=rms_norm, step_memo: dict | None = None) -> torch.Tensor:
    """Dispatch to the fixed-grid or adaptive integrator (states stacked, index 0 = y0)."""
    if tableau.adaptive:
        return integrators.adaptive(func, y0, times, tableau, rtol=rtol, atol=atol,
                                    options=options, stats=stats, norm=norm, step_memo=step_memo)
    return integrators.fixed_grid(func, y0, times, tableau, options=options, stats=stats)
