"""``odeint`` and ``odesolve``: solve an initial value problem, differentiating by backprop
through the solver.

``odeint`` returns what torchdiffeq's returns (the states at ``t``); ``odesolve`` returns the
whole :class:`~nodelib.Solution` — states, accepted steps, final step size, statistics.
"""
from __future__ import annotations

import torch

from .events import EventLocator
from .integrators import integrate, time_factory
from .problem import Problem, prepare
from .solution import Solution
from .stats import PassStats, SolverStats


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
            ``"heun2"``, ``"heun3"``, ``"rk4"``.
        options: fixed step: ``step_size`` (default: one step per interval of ``t``) or
            ``grid_constructor``, ``perturb``, ``interp`` (``"cubic"``, default, or
            ``"linear"``); adaptive: ``first_step``, ``max_num_steps`` (default 100 000),
            ``norm`` (a callable, called on the scaled error shaped like the state — a tuple for
            a tuple state —, or ``"rms"``/``"per_sample"``), ``controller`` (``"PI"``, ``"I"``,
            ``"PID"`` or a :class:`~nodelib.control.StepSizeController`), ``min_step``,
            ``max_step``, ``safety``, ``ifactor``, ``dfactor``, ``step_t``, ``jump_t``.
        event_fn: ``event_fn(t, y) -> tensor``; if given, solve from ``t[0]`` until it crosses
            zero and return ``(event_t, states at [t[0], event_t])`` (see :mod:`nodelib.events`).
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
    returns them), the accepted steps ``step_t``/``step_h``, ``h_next`` and ``stats`` (a
    :class:`~nodelib.PassStats`, with the step trace unless ``record_trace=False``)."""
    problem = prepare(func, y0, t, rtol=rtol, atol=atol, method=method, options=options)
    holder = SolverStats()
    solution = _solve_with_time_gradient(problem, holder, event_fn, record_trace)
    solution.ys = problem.unflatten(solution.ys)
    return solution


def solve_problem(problem: Problem, stats: PassStats, *, event_fn=None,
                  record_trace: bool = False, h0: float | None = None, callbacks="default",
                  keep=None):
    """Run the integrator on a prepared problem (flat states in, a Solution out)."""
    times = problem.times
    t = problem.t
    if len(times) == 1 and event_fn is None:
        return Solution(t=t, ys=problem.y0.unsqueeze(0), stats=stats)
    event = None
    if event_fn is not None:
        if len(times) != 2:
            raise ValueError(f"event handling needs t = [t0, t1] (t1 gives only the direction), "
                             f"got {len(times)} times")
        event_fn = _flat_event_fn(event_fn, problem)
        event = EventLocator(event_fn, times[0], problem.y0, _event_tol(problem.config),
                             time_factory(problem.y0))
        times = [times[0], times[0] + (float("inf") if times[1] > times[0] else -float("inf"))]
    callbacks = problem.callbacks if callbacks == "default" else callbacks
    solution = integrate(problem.func, problem.y0, times, problem.config, stats,
                         callbacks=callbacks, event=event, record_trace=record_trace, h0=h0,
                         keep=keep)
    solution.t = t
    if event is not None:
        solution.event_t = torch.tensor(event.t_event, dtype=t.dtype, device=t.device)
        solution.t = torch.stack([t[0].detach(), solution.event_t])
    return solution


def _event_tol(config) -> float:
    return config.controller.atol if config.controller is not None else 1e-9


def _flat_event_fn(event_fn, problem: Problem):
    if problem.layout is None:
        return event_fn
    return lambda t, y: event_fn(t, problem.layout.unflatten(y))


def _solve_with_time_gradient(problem: Problem, stats: SolverStats | None, event_fn=None,
                              record_trace: bool | None = None) -> Solution:
    """The solve, plus the exact-flow gradient with respect to the times (see odeint)."""
    f, t, y0 = problem.func, problem.t, problem.y0
    pass_stats = stats.forward if stats is not None else PassStats()
    record = stats is not None if record_trace is None else record_trace
    needs_time_grad = t.requires_grad and torch.is_grad_enabled() and event_fn is None
    y_start = y0
    if needs_time_grad:
        # Value unchanged, but d(y_start)/d t0 = -f(t0, y0): moving the start time along the
        # trajectory is the same as moving the initial state against the flow.
        with torch.no_grad():
            f_start = f(t[0].detach(), y0)
        y_start = y0 - (t[0] - t[0].detach()) * f_start
        problem = Problem(f, y_start, problem.layout, t, problem.config, problem.callbacks)

    solution = solve_problem(problem, pass_stats, event_fn=event_fn, record_trace=record)

    if needs_time_grad and len(t) > 1:
        ys = solution.ys
        # d y(t_i) / d t_i = f(t_i, y(t_i)); the output at t_0 is y0 itself.
        with torch.no_grad():
            slopes = torch.stack([f(t[i].detach(), ys[i]) for i in range(1, len(t))])
        pass_stats.nfe += len(t)
        dt = (t[1:] - t[1:].detach()).view(-1, *([1] * y0.dim()))
        solution.ys = torch.cat([y0.unsqueeze(0), ys[1:] + dt * slopes])
    return solution
