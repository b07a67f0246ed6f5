"""The continuous adjoint (``strategy="backsolve"``): the augmented state — its layout, its
dynamics and its error norm — and the autograd Function that solves it backwards.

The backward pass of the continuous adjoint integrates, from t_N down to t_0,

    s = [z, a, a_θ, a_t],   ds/dt = [f, -aᵀ ∂f/∂z, -aᵀ ∂f/∂θ, -aᵀ ∂f/∂t],

stored as one flat vector. :class:`AdjointLayout` says where each part sits,
:class:`AdjointDynamics` is the right-hand side (vector–Jacobian products: one reverse-mode
pass through ``func`` per evaluation, never a Jacobian) and :func:`adjoint_norm` the error norm
of the backward solve.
"""
from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass

import torch

from ..solvers.config import SolveConfig
from ..solvers.controllers import rms_norm
from ..solvers.integrate import solve_problem
from ..solvers.problem import Problem
from ..solvers.solution import PassStats, SolverStats
from .time_gradient import dot_slope


@dataclass(frozen=True)
class AdjointLayout:
    """Flat order ``[z (n), a (n), a_θ (Σ numel θ), a_t (1, only when t needs a gradient)]``."""
    shape: torch.Size                       # shape of z (the solver's state)
    param_shapes: tuple[torch.Size, ...]
    want_t: bool

    @property
    def param_numels(self) -> tuple[int, ...]:
        return tuple(math.prod(s) for s in self.param_shapes)

    @property
    def n(self) -> int:
        return math.prod(self.shape)

    @property
    def n_params(self) -> int:
        return sum(self.param_numels)

    @property
    def size(self) -> int:
        return 2 * self.n + self.n_params + int(self.want_t)

    def pack(self, z, a, a_params, a_t) -> torch.Tensor:
        parts = [z.reshape(-1), a.reshape(-1), a_params] + ([a_t.reshape(1)] if self.want_t else [])
        return torch.cat(parts)

    def unpack(self, s: torch.Tensor):
        """Views ``(z, a, a_params, a_t)``; z and a shaped like the state, a_t 0-d (``None``
        when t needs no gradient: called at every evaluation, so nothing is allocated)."""
        n, p = self.n, self.n_params
        z, a = s[:n].view(self.shape), s[n:2 * n].view(self.shape)
        a_params = s[2 * n:2 * n + p]
        a_t = s[-1] if self.want_t else None
        return z, a, a_params, a_t

    def as_tuple(self, s: torch.Tensor, unflatten=None) -> tuple[torch.Tensor, ...]:
        """The augmented state as torchdiffeq's tuple ``(a_t, *z, *a, *a_params)`` (z and a
        expanded into their parts for a tuple state via ``unflatten``; a_t 0 when t needs no
        gradient): what a user's adjoint norm and ``_adjoint`` callbacks are called with."""
        z, a, a_params, a_t = self.unpack(s)
        a_t = s.new_zeros(()) if a_t is None else a_t
        expand = (lambda x: (x,)) if unflatten is None else unflatten
        return (a_t, *expand(z), *expand(a), *self.split_params(a_params))

    def split_params(self, a_params: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """a_θ as one tensor per parameter, each shaped like its parameter."""
        if not self.param_shapes:
            return ()
        chunks = torch.split(a_params, list(self.param_numels))
        return tuple(c.view(s) for c, s in zip(chunks, self.param_shapes))


class AdjointDynamics:
    """``(t, s) ↦ ds/dt`` of the augmented state, with ``func``'s parameters ``params``."""

    def __init__(self, func, params: tuple[torch.Tensor, ...], layout: AdjointLayout):
        self.func, self.params, self.layout = func, params, layout

    def __call__(self, t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        layout = self.layout
        z, a, _, _ = layout.unpack(s)
        # An implicit adjoint_method differentiates these dynamics (Newton's Jacobian): then
        # they must stay differentiable in s, so z is not cut off and the VJP keeps its graph.
        differentiable = s.requires_grad
        with torch.enable_grad():
            if not differentiable:
                z = z.detach().requires_grad_(True)
            t = t.detach().requires_grad_(layout.want_t)
            f = self.func(t, z)
            inputs = (z, t, *self.params) if layout.want_t else (z, *self.params)
            vjps: tuple[torch.Tensor | None, ...]
            if f.requires_grad:
                vjps = torch.autograd.grad(f, inputs, -a, allow_unused=True,
                                           create_graph=differentiable)
            else:   # f depends on none of them (e.g. on t only, with no gradient wanted)
                vjps = (None,) * len(inputs)
        sizes = [layout.n] + ([1] if layout.want_t else []) + list(layout.param_numels)
        parts = [f.reshape(-1)] + [s.new_zeros(m) if v is None else v.reshape(-1)
                                   for v, m in zip(vjps, sizes)]
        if layout.want_t:   # computed as [f, z, t, θ]; stored as [z, a, a_θ, a_t]
            parts.append(parts.pop(2))
        return torch.cat(parts)


def adjoint_norm(layout: AdjointLayout, state_norm=rms_norm, choice=None, unflatten=None):
    """The error norm of the backward solve, on the flat augmented state.

    * default: the largest of ``|a_t|``, ``state_norm(z)``, ``state_norm(a)`` and the RMS of all
      of a_θ — no part's error is diluted by another's size (``state_norm`` is the forward
      solve's norm);
    * ``"seminorm"``: z and a only. a_θ and a_t never feed back into the dynamics, so
      controlling their error only costs steps (Kidger et al. 2021);
    * a callable: called as torchdiffeq calls it, on the tuple ``(a_t, z, a, *a_params)`` (z and
      a shaped like the state, expanded into their parts for a tuple state via ``unflatten``).
    """
    def parts(s):
        return layout.unpack(s)

    if choice is None:
        def norm(s):
            z, a, a_params, a_t = parts(s)
            values = [state_norm(z), state_norm(a)] + ([a_t.abs()] if a_t is not None else [])
            if a_params.numel():
                values.append(rms_norm(a_params))
            return torch.stack(values).max()
    elif choice == "seminorm":
        def norm(s):
            z, a, _, _ = parts(s)
            return torch.maximum(state_norm(z), state_norm(a))
    elif callable(choice):
        def norm(s):
            return choice(layout.as_tuple(s, unflatten))
    else:
        raise ValueError(f"adjoint_options['norm'] must be 'seminorm' or a callable, "
                         f"got {choice!r}")
    return norm


def forward_state_norm(problem: Problem):
    """How the backward solve measures z and a: with the forward solve's norm, or, after a
    fixed-step forward method, with the RMS (of each tensor of a tuple state, as forward)."""
    forward = problem.config.controller
    if forward is not None:
        return forward.norm
    return rms_norm if problem.layout is None else problem.layout.norm_per_part("rms", rms_norm)


def exposed_norm(s: BacksolveSettings):
    """The backward solve's norm as torchdiffeq exposes it, in ``grad_fn.adjoint_options``:
    called on the tuple ``(a_t, z, a, *a_params)`` with z and a shaped like the solver's state
    (flat for a tuple state). Its value is :func:`adjoint_norm`'s."""
    problem, choice = s.problem, s.norm_choice
    if callable(choice):
        if problem.layout is None:
            return choice
        unflatten = problem.layout.unflatten
        return lambda parts: choice((parts[0], *unflatten(parts[1]), *unflatten(parts[2]),
                                     *parts[3:]))
    state_norm = forward_state_norm(problem)

    def norm(parts):
        a_t, z, a, *a_params = parts
        values = [state_norm(z), state_norm(a)]
        if choice is None:   # (seminorm: z and a only)
            values.append(a_t.abs())
            if a_params:
                values.append(rms_norm(torch.cat([p.reshape(-1) for p in a_params])))
        return torch.stack(values).max()
    return norm


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


class _BacksolveAdjoint(torch.autograd.Function):

    @staticmethod
    def forward(ctx, s: BacksolveSettings, y0, t, *params):
        pass_stats = s.stats.forward if s.stats is not None else PassStats()
        with torch.no_grad():
            solution = solve_problem(s.problem, pass_stats, event_fn=s.event_fn,
                                     record_trace=s.stats is not None)
        ctx.settings = s
        # torchdiffeq's handle on the backward norm: read, or replaced before backward()
        ctx.exposed_norm = exposed_norm(s)
        ctx.adjoint_options = {"norm": ctx.exposed_norm}
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
        want_t = ctx.needs_input_grad[2]
        replaced = ctx.adjoint_options.get("norm", ctx.exposed_norm)
        a, a_params, grad_t = _backsolve(s, t, ys, grad_ys, want_t,
                                         None if replaced is ctx.exposed_norm else replaced)
        if grad_t is not None and s.event_fn is not None:
            # t[1] only gave the direction; the event time's own dependence on t0 reaches t0
            # through the state (odeint_event's implicit-function-theorem term)
            grad_t[-1] = 0.0
        grad_params = [g.view_as(p) for g, p in zip(a_params, s.params)]
        return (None, a.view(ys.shape[1:]), grad_t, *grad_params)


def _backsolve(s: BacksolveSettings, t: torch.Tensor, ys: torch.Tensor, grad_ys: torch.Tensor,
               want_t: bool, replaced_norm=None):
    """The backward sweep: returns (∂L/∂y0, ∂L/∂θ per parameter, ∂L/∂t or None).
    ``replaced_norm``: a norm put into ``grad_fn.adjoint_options`` after the forward pass
    (called on the tuple of :func:`exposed_norm`)."""
    problem, func = s.problem, s.problem.func
    layout = AdjointLayout(ys.shape[1:], tuple(p.shape for p in s.params), want_t)
    state_norm = forward_state_norm(problem)
    unflatten = None if problem.layout is None else problem.layout.unflatten
    norm = (adjoint_norm(layout, state_norm, s.norm_choice, unflatten) if replaced_norm is None
            else adjoint_norm(layout, state_norm, replaced_norm))
    config = s.backward_config
    if config.controller is not None:
        config = _with_norm(config, norm)
    dynamics = AdjointDynamics(func, s.params, layout)
    pass_stats = s.stats.backward if s.stats is not None else PassStats()
    callbacks = _tuple_callbacks(s.backward_callbacks, layout, unflatten)

    times = t.tolist()
    a = grad_ys[-1].reshape(-1)
    a_params = ys.new_zeros(layout.n_params)
    grad_t = torch.zeros_like(t)   # (returned only when want_t)
    a_t = ys.new_zeros(())
    if want_t:
        g_dot_f = dot_slope(func, t[-1], ys[-1], grad_ys[-1])
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
            g_dot_f = dot_slope(func, t[i - 1], ys[i - 1], grad_ys[i - 1])
            pass_stats.nfe += 1
            grad_t[i - 1] = g_dot_f
            a_t = a_t - g_dot_f
    if not want_t:
        return a, layout.split_params(a_params), None
    grad_t[0] = a_t
    return a, layout.split_params(a_params), grad_t


def _with_norm(config: SolveConfig, norm) -> SolveConfig:
    """The backward config with the adjoint's norm in its controller (a copy: configs are
    frozen and shared)."""
    controller = copy.copy(config.controller)
    assert controller is not None, "only an adaptive backward solve has a norm"
    controller.norm = norm
    return dataclasses.replace(config, controller=controller)


def _tuple_callbacks(callbacks, layout: AdjointLayout, unflatten):
    """The ``_adjoint`` callbacks see the augmented state as torchdiffeq's tuple
    ``(a_t, z, a, *a_params)``."""
    if callbacks is None:
        return None

    return type(callbacks)(*(
        (lambda t0, y0, dt, cb=cb: cb(t0, layout.as_tuple(y0, unflatten), dt))
        for cb in callbacks))
