"""``odeint_adjoint``: the forward solve without a graph, gradients by an adjoint strategy.

* ``strategy="backsolve"`` (the default) is the continuous adjoint of Chen et al. 2018
  (Algorithm 2): the forward pass keeps only the outputs, so memory does not grow with the number
  of solver steps, and the backward pass integrates the augmented state of
  :mod:`nodelib.adjoint_state` from t_N down to t_0, interval by interval, adding ∂L/∂z(t_i) to
  ``a`` at each output time and restarting z from the stored forward output there.
* ``strategy="checkpoint"`` (:mod:`nodelib.checkpoint`) gives the exact gradient of the discrete
  forward solve, re-running it segment by segment from stored checkpoints.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from .adjoint_state import AdjointDynamics, AdjointLayout, adjoint_norm
from .checkpoint import DEFAULT_CHECKPOINTS, Checkpoints, checkpoint_backward
from .config import SolveConfig, get_tableau, make_config
from .control import rms_norm
from .odeint import solve_problem
from .problem import Problem, find_callbacks, prepare
from .stats import PassStats, SolverStats

STRATEGIES = ("backsolve", "checkpoint")


def odeint_adjoint(func, y0, t, *, rtol: float = 1e-7, atol: float = 1e-9,
                   method: str | None = None, options: dict | None = None, event_fn=None,
                   adjoint_rtol: float | None = None, adjoint_atol: float | None = None,
                   adjoint_method: str | None = None, adjoint_options: dict | None = None,
                   adjoint_params=None, strategy: str = "backsolve",
                   stats: SolverStats | None = None):
    """Same result as :func:`nodelib.odeint`; gradients by the adjoint ``strategy``.

    Gradients reach ``y0``, every ``t[i]`` and ``adjoint_params`` (default: ``func.parameters()``
    when ``func`` is an ``nn.Module``, else none — tensors that ``func`` merely closes over get no
    gradient). The backward solve uses ``adjoint_rtol/atol/method/options`` (default: the forward
    ones, without the forward ``norm``). Its error norm (``adjoint_options["norm"]``): by default
    the largest of the forward norm of z and of a, the RMS of a_θ and |a_t|; ``"seminorm"``
    leaves a_θ and a_t out (Kidger et al. 2021): they never feed back into the dynamics, so
    controlling their error only costs steps; or a callable, called as torchdiffeq calls it on
    the tuple ``(a_t, z, a, *a_params)``. ``strategy="checkpoint"`` keeps at most
    ``adjoint_options["checkpoints"]`` states (default 64; ``"sqrt"``: about 2√N of them).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown adjoint strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
    problem = prepare(func, y0, t, rtol=rtol, atol=atol, method=method, options=options)
    norm_choice = (adjoint_options or {}).get("norm")
    if not (norm_choice is None or norm_choice == "seminorm" or callable(norm_choice)):
        raise ValueError(f"adjoint_options['norm'] must be 'seminorm' or a callable, "
                         f"got {norm_choice!r}")
    if adjoint_params is None:
        adjoint_params = tuple(func.parameters()) if isinstance(func, nn.Module) else ()
    params = tuple(p for p in adjoint_params if p.requires_grad)
    settings = BacksolveSettings(
        problem=problem, params=params, stats=stats,
        backward_config=_backward_config(problem, method, adjoint_method, adjoint_rtol,
                                         adjoint_atol, rtol, atol, options, adjoint_options),
        norm_choice=norm_choice,
        backward_callbacks=find_callbacks(func, None, problem.y0, suffix="_adjoint"),
        event_fn=event_fn)
    if strategy == "checkpoint":
        if event_fn is not None:
            raise ValueError("strategy='checkpoint' does not handle events yet; use backsolve")
        count = (adjoint_options or {}).get("checkpoints", DEFAULT_CHECKPOINTS)
        ys = _CheckpointAdjoint.apply(problem, params, stats, count, problem.y0, problem.t,
                                      *params)
        return problem.unflatten(ys)
    if event_fn is not None:
        event_t, ys = _BacksolveAdjoint.apply(settings, problem.y0, problem.t, *params)
        return event_t, problem.unflatten(ys)
    ys = _BacksolveAdjoint.apply(settings, problem.y0, problem.t, *params)
    return problem.unflatten(ys)


@dataclass
class BacksolveSettings:
    """What the autograd Function needs besides the tensors it differentiates."""
    problem: Problem
    params: tuple
    stats: SolverStats | None
    backward_config: SolveConfig
    norm_choice: object
    backward_callbacks: object
    event_fn: object


def _backward_config(problem, method, adjoint_method, adjoint_rtol, adjoint_atol, rtol, atol,
                     options, adjoint_options) -> SolveConfig:
    same_method = get_tableau(adjoint_method or method) is problem.config.tableau
    if adjoint_options is None:   # inherit the forward options, but not the forward norm
        adjoint_options = dict(options or {}) if same_method else {}
        adjoint_options.pop("norm", None)
    adjoint_options = {k: v for k, v in adjoint_options.items()
                       if k not in ("norm", "checkpoints")}
    a_rtol = rtol if adjoint_rtol is None else adjoint_rtol
    a_atol = atol if adjoint_atol is None else adjoint_atol
    return make_config(adjoint_method or method, a_rtol, a_atol, adjoint_options)


class _BacksolveAdjoint(torch.autograd.Function):

    @staticmethod
    def forward(ctx, s: BacksolveSettings, y0, t, *params):
        pass_stats = s.stats.forward if s.stats is not None else PassStats()
        with torch.no_grad():
            solution = solve_problem(s.problem, pass_stats, event_fn=s.event_fn,
                                     record_trace=s.stats is not None)
        ctx.settings = s
        times = solution.t if s.event_fn is not None else t
        ctx.save_for_backward(times, solution.ys)   # outputs only: memory flat in the steps
        if s.event_fn is not None:   # event_t's own gradient comes from odeint_event
            return solution.event_t, solution.ys
        return solution.ys

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *grads):
        s: BacksolveSettings = ctx.settings
        t, ys = ctx.saved_tensors
        grad_ys = grads[-1]
        want_t = ctx.needs_input_grad[2] and s.event_fn is None
        a, a_params, grad_t = _backsolve(s, t, ys, grad_ys, want_t)
        grad_params = [g.view_as(p) for g, p in zip(a_params, s.params)]
        return (None, a.view(ys.shape[1:]), grad_t, *grad_params)


class _CheckpointAdjoint(torch.autograd.Function):

    @staticmethod
    def forward(ctx, problem, params, stats, count, y0, t, *param_tensors):
        pass_stats = stats.forward if stats is not None else PassStats()
        keep = Checkpoints(count)
        with torch.no_grad():
            solution = solve_problem(problem, pass_stats, record_trace=stats is not None,
                                     keep=keep)
        ctx.problem, ctx.params, ctx.stats = problem, params, stats
        ctx.solution, ctx.keep = solution, keep
        return solution.ys

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_ys):
        stats = ctx.stats.backward if ctx.stats is not None else PassStats()
        a, grad_params, grad_t = checkpoint_backward(
            ctx.problem, ctx.params, ctx.solution, ctx.keep, grad_ys, stats,
            want_t=ctx.needs_input_grad[5])
        return (None, None, None, None, a, grad_t, *grad_params)


def _backsolve(s: BacksolveSettings, t: torch.Tensor, ys: torch.Tensor, grad_ys: torch.Tensor,
               want_t: bool):
    """The backward sweep: returns (∂L/∂y0, ∂L/∂θ per parameter, ∂L/∂t or None)."""
    problem, func = s.problem, s.problem.func
    layout = AdjointLayout(ys.shape[1:], tuple(p.shape for p in s.params), want_t)
    # z and a are measured with the forward solve's norm (RMS for a fixed-step forward method)
    forward = problem.config.controller
    state_norm = forward.norm if forward is not None else rms_norm
    unflatten = None if problem.layout is None else problem.layout.unflatten
    norm = adjoint_norm(layout, state_norm, s.norm_choice, unflatten)
    config = s.backward_config
    if config.controller is not None:
        config = _with_norm(config, norm)
    dynamics = AdjointDynamics(func, s.params, layout)
    pass_stats = s.stats.backward if s.stats is not None else PassStats()
    callbacks = _tuple_callbacks(s.backward_callbacks, layout, unflatten)

    times = t.tolist()
    a = grad_ys[-1].reshape(-1)
    a_params = ys.new_zeros(layout.n_params)
    grad_t = torch.zeros_like(t) if want_t else None
    a_t = ys.new_zeros(())
    if want_t:
        g_dot_f = _dot_slope(func, t[-1], ys[-1], grad_ys[-1])
        pass_stats.nfe += 1
        grad_t[-1] = g_dot_f
        a_t = -g_dot_f
    h_next = None   # the step size carries over from one interval to the next
    for i in range(len(times) - 1, 0, -1):
        # z restarts from the stored forward solution at t_i: no drift from the backward solve.
        state = layout.pack(ys[i], a, a_params, a_t)
        interval = Problem(dynamics, state, None, t[i - 1:i + 1].flip(0), config, callbacks)
        solution = solve_problem(interval, pass_stats, record_trace=s.stats is not None,
                                 h0=h_next, callbacks=callbacks)
        h_next = solution.h_next
        _, a, a_params, a_t = layout.unpack(solution.ys[-1])
        a = a.reshape(-1) + grad_ys[i - 1].reshape(-1)
        if want_t and i - 1 > 0:
            g_dot_f = _dot_slope(func, t[i - 1], ys[i - 1], grad_ys[i - 1])
            pass_stats.nfe += 1
            grad_t[i - 1] = g_dot_f
            a_t = a_t - g_dot_f
    if want_t:
        grad_t[0] = a_t
    return a, layout.split_params(a_params), grad_t


def _with_norm(config: SolveConfig, norm) -> SolveConfig:
    """The backward config with the adjoint's norm in its controller (a copy: configs are
    frozen and shared)."""
    controller = copy.copy(config.controller)
    controller.norm = norm
    return dataclasses.replace(config, controller=controller)


def _tuple_callbacks(callbacks, layout: AdjointLayout, unflatten):
    """The ``_adjoint`` callbacks see the augmented state as torchdiffeq's tuple
    ``(a_t, z, a, *a_params)``."""
    if callbacks is None:
        return None

    def as_tuple(s):
        z, a, a_params, a_t = layout.unpack(s)
        a_t = s.new_zeros(()) if a_t is None else a_t
        expand = (lambda x: (x,)) if unflatten is None else unflatten
        return (a_t, *expand(z), *expand(a), *layout.split_params(a_params))
    return type(callbacks)(*(
        (lambda t0, y0, dt, cb=cb: cb(t0, as_tuple(y0), dt)) for cb in callbacks))


def _dot_slope(func, t_i, y_i, g_i):
    """``∂L/∂z(t_i) · f(t_i, z(t_i))``: how the loss moves when the output time t_i moves."""
    return (g_i * func(t_i, y_i)).sum()
