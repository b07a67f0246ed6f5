"""``odeint`` and ``odesolve``: solve an initial value problem, differentiating by backprop
through the solver.

``odeint`` returns what torchdiffeq's returns (the states at ``t``); ``odesolve`` returns the
whole :class:`~nodelib.Solution` — states, accepted steps, final step size, statistics.
"""
from __future__ import annotations

import dataclasses

import torch

from ..solvers.integrate import solve_problem
from ..solvers.problem import Problem, prepare
from ..solvers.solution import PassStats, Solution, SolverStats
from .time_gradient import attach_output_times, shift_start


def odeint(func, y0, t, *, rtol: float = 1e-7, atol: float = 1e-9, method: str | None = None,
           options: dict | None = None, event_fn=None, stats: SolverStats | None = None):
    """Solve ``dy/dt = func(t, y)``, ``y(t[0]) = y0`` and return the states at every ``t[i]``.

    Args:
        func: callable ``func(t, y) -> dy/dt`` (``t`` a 0-d tensor, ``y`` shaped like ``y0``).
        y0: initial state, a tensor of any shape (batches included) or a tuple of tensors.
        t: 1-D tensor of output times, strictly increasing or strictly decreasing (one time
            returns ``y0[None]``).
        rtol, atol: tolerances of the adaptive methods (ignored by fixed-step methods).
        method: adaptive ``"dopri5"`` (default), ``"tsit5"``, ``"bosh3"``, ``"dopri8"``,
            ``"fehlberg2"``, ``"adaptive_heun"``; fixed step ``"euler"``, ``"midpoint"``,
            ``"heun2"``, ``"heun3"``, ``"rk4"``; fixed-step multistep ``"explicit_adams"``,
            ``"implicit_adams"`` (:mod:`nodelib.solvers.multistep`); ``"scipy_solver"``
            (scipy's ``solve_ivp``, ``options["solver"]``; no gradient through it:
            :mod:`nodelib.solvers.scipy_solver`). ``nodelib.METHODS`` lists the tableaux.
        options: fixed step: ``step_size`` (default: one step per interval of ``t``) or
            ``grid_constructor``, ``perturb``, ``interp`` (``"cubic"``, default, or
            ``"linear"``); adaptive: ``first_step``, ``max_num_steps`` (default 100 000),
            ``norm`` (a callable, called on the scaled error shaped like the state — a tuple for
            a tuple state —, or ``"rms"`` (default) / ``"per_sample"``, taken on each tensor
            of a tuple state and the largest kept), ``controller`` (``"PI"``, ``"I"``,
            ``"PID"`` or a :class:`~nodelib.StepSizeController`), ``min_step``,
            ``max_step``, ``safety``, ``ifactor``, ``dfactor``, ``step_t``, ``jump_t``.
        event_fn: ``event_fn(t, y) -> tensor``; if given, solve from ``t[0]`` until it crosses
            zero and return ``(event_t, states at [t[0], event_t])`` (see
            :mod:`nodelib.solvers.events` and :func:`nodelib.odeint_event`).
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
    problem = prepare(func, y0, t, rtol=rtol, atol=atol, method=method, options=options)
    solution = _solve_with_time_gradient(problem, stats, event_fn)
    if event_fn is not None:
        return solution.event_t, problem.unflatten(solution.ys)
    return problem.unflatten(solution.ys)


def odesolve(func, y0, t, *, rtol: float = 1e-7, atol: float = 1e-9, method: str | None = None,
             options: dict | None = None, event_fn=None, record_trace: bool = True) -> Solution:
    """Like :func:`odeint`, but returns the :class:`~nodelib.Solution`: ``ys`` (as odeint
    returns them), the accepted steps ``step_start``/``step_h``, ``h_next`` and ``stats`` (a
    :class:`~nodelib.PassStats`, with the step trace unless ``record_trace=False``)."""
    problem = prepare(func, y0, t, rtol=rtol, atol=atol, method=method, options=options)
    holder = SolverStats()
    solution = _solve_with_time_gradient(problem, holder, event_fn, record_trace)
    solution.ys = problem.unflatten(solution.ys)
    return solution


def _solve_with_time_gradient(problem: Problem, stats: SolverStats | None, event_fn=None,
                              record_trace: bool | None = None) -> Solution:
    """The solve, plus the exact-flow gradient with respect to the times (see odeint and
    :mod:`nodelib.gradients.time_gradient`)."""
    f, t, y0 = problem.func, problem.t, problem.y0
    pass_stats = stats.forward if stats is not None else PassStats()
    record = stats is not None if record_trace is None else record_trace
    needs_time_grad = t.requires_grad and torch.is_grad_enabled()
    if needs_time_grad:   # (an event time depends on t0 through the state: events too)
        problem = dataclasses.replace(problem, y0=shift_start(f, t[0], y0))

    solution = solve_problem(problem, pass_stats, event_fn=event_fn, record_trace=record)
    if problem.config.scipy is not None:
        solution.ys = _without_gradient(solution.ys, problem)

    if needs_time_grad and event_fn is not None:
        solution.ys = torch.cat([y0.unsqueeze(0), solution.ys[1:]])   # ys[0] is y0 itself
        pass_stats.nfe += 1   # (shift_start's evaluation)
    elif needs_time_grad and len(t) > 1:
        solution.ys, nfe = attach_output_times(f, t, solution.ys, y0)
        pass_stats.nfe += nfe
    return solution


class _NoGradient(torch.autograd.Function):
    """Passes ``ys`` through, tied to the inputs that wanted a gradient: backpropagating into
    them raises a clear error instead of silently giving none."""

    @staticmethod
    def forward(ctx, ys, *inputs):
        return ys.clone()

    @staticmethod
    def backward(ctx, *grads):
        raise RuntimeError(
            "method 'scipy_solver' gives no gradient through odeint: scipy's solve_ivp steps "
            "outside autograd. Differentiate with odeint_adjoint(..., method='scipy_solver') "
            "(its backward pass solves the adjoint ODE with scipy too), or use a nodelib method")


def _without_gradient(ys: torch.Tensor, problem: Problem) -> torch.Tensor:
    """scipy_solver's outputs, tied to y0 and func's parameters when they want a gradient."""
    if not torch.is_grad_enabled():
        return ys
    inner = getattr(problem.func, "func", problem.func)   # (the user's func, unwrapped)
    params = tuple(inner.parameters()) if isinstance(inner, torch.nn.Module) else ()
    wanting = [x for x in (problem.y0, *params) if x.requires_grad]
    return _NoGradient.apply(ys, *wanting) if wanting else ys


def odeint_per_sample(func, y0: torch.Tensor, t: torch.Tensor, *, solver=odeint,
                      **solver_kwargs) -> torch.Tensor:
    """States of ``y0[i]`` at its own times ``t[i]``: shape (batch, length, *state).

    ``y0`` has shape (batch, *state) and ``t`` (batch, length); every row of ``t`` must start at
    the same time and increase strictly. One call of ``solver`` (``odeint`` or
    ``odeint_adjoint``, with ``solver_kwargs``) integrates the whole batch on the sorted union
    of the times, so the batch shares its steps; each row then picks its own outputs. Note for
    ``odeint_adjoint``: its backward pass restarts at every output time, so a union of many
    distinct times makes it take at least one step per time.
    """
    if t.dim() != 2 or t.shape[0] != y0.shape[0]:
        raise ValueError(f"t must have shape (batch, length) with batch = y0.shape[0] = "
                         f"{y0.shape[0]}, got {tuple(t.shape)}")
    if t.shape[1] >= 2 and not bool((t[:, 1:] > t[:, :-1]).all()):
        raise ValueError("the times of every sample must be strictly increasing")
    if not bool((t[:, 0] == t[0, 0]).all()):
        raise ValueError("every sample must start at the same time t[:, 0]")
    t = t.to(dtype=y0.dtype)
    union, where = torch.unique(t, sorted=True, return_inverse=True)   # where: (batch, length)
    # Window times are differences t[k] - t[s], so "the same" time can differ in its last bits
    # between rows. Such near-duplicates would give the adjoint's backward pass intervals of a
    # few ulps, too short to step across: merge times closer than 64 ulps of the largest one
    # (moving an output by that much changes it by ~1e-13 relative, far below any tolerance).
    eps = torch.finfo(y0.dtype).eps
    span = union.abs().max().clamp_min(1.0)
    keep = torch.cat([union.new_ones(1, dtype=torch.bool),
                      union[1:] - union[:-1] > 64 * eps * span])
    union, where = union[keep], (torch.cumsum(keep, 0) - 1)[where]
    ys = solver(func, y0, union, **solver_kwargs)          # (n_union, batch, *state)
    batch = torch.arange(y0.shape[0], device=y0.device).unsqueeze(1)
    return ys[where, batch]
