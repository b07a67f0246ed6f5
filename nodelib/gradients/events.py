"""Events: stop a solve where ``event_fn(t, y)`` crosses zero, and differentiate the event time.

``odeint(func, y0, t, event_fn=...)`` integrates from ``t[0]`` (in the direction of ``t[1]``,
with no end time) until the event function changes sign, locates the crossing by bisection on the
step's dense output, and returns ``(event_t, solution)`` with ``solution = [y0, y(event_t)]``.
A vector-valued ``event_fn`` stops at the first of its components to cross.

:func:`odeint_event` also gives the gradient *through* the event time. At the event,
``c(t*, y(t*)) = 0``; differentiating, ``dt*/dθ = -(∂c/∂y · ∂y/∂θ) / (∂c/∂t + ∂c/∂y · f)``
(implicit function theorem). :class:`_EventTimeGradient` inserts exactly this term into the
backward pass, on top of the gradient of the state at a fixed time.
"""
from __future__ import annotations

import torch
from torch.autograd.functional import vjp

from ..solvers.events import combine_signs
from ..solvers.problem import CheckedFunc, check_state
from .backprop import odeint


class _EventTimeGradient(torch.autograd.Function):
    """Identity on (event_t, state); in backward, routes the event time's dependence on the
    state (implicit function theorem) and the state's dependence on the end time."""

    @staticmethod
    def forward(ctx, func, event_fn, event_t, state):
        ctx.func, ctx.event_fn = func, event_fn
        ctx.save_for_backward(event_t, state)
        return event_t.detach().clone(), state.detach().clone()

    @staticmethod
    def backward(ctx, grad_t, grad_state):
        event_t, state = ctx.saved_tensors
        event_t, state = event_t.detach(), state.detach()
        with torch.no_grad():
            f = ctx.func(event_t, state)
        with torch.enable_grad():
            _, (dc_dt, dc_dy) = vjp(ctx.event_fn, (event_t, state))
        total_dc_dt = dc_dt + (dc_dy * f).sum()     # d/dt of c(t, y(t)) along the solution
        # moving the end time to the event time moves the final state by f dt*
        grad_t = grad_t + (grad_state * f).sum()
        grad_state = grad_state - dc_dy * (grad_t / total_dc_dt)
        return None, None, None, grad_state


def odeint_event(func, y0, t0, *, event_fn, reverse_time: bool = False,
                 odeint_interface=odeint, **kwargs):
    """Solve from ``t0`` until ``event_fn(t, y) = 0``; returns ``(event_t, solution)`` with
    gradients through ``event_t`` (to y0, t0 and the parameters of func). ``odeint_interface``
    is :func:`nodelib.odeint` (default) or :func:`nodelib.odeint_adjoint`; ``kwargs`` go to it."""
    interface = odeint if odeint_interface is None else odeint_interface
    t0 = torch.as_tensor(t0).reshape(-1)
    t = torch.cat([t0, t0.detach() + (-1.0 if reverse_time else 1.0)])
    event_t, solution = interface(func, y0, t, event_fn=event_fn, **kwargs)

    flat_y0, layout = check_state(y0)
    f = CheckedFunc(func, flat_y0, layout)
    if layout is None:
        state, c = solution[-1], event_fn
    else:
        state = layout.flatten([s[-1] for s in solution])
        c = lambda t_, y_: event_fn(t_, layout.unflatten(y_))
    combined = combine_signs(c, t0[0].to(state), flat_y0)
    event_t, state = _EventTimeGradient.apply(f, combined, event_t.to(state), state)
    if layout is None:
        return event_t, torch.cat([solution[:-1], state[None]])
    parts = layout.unflatten(state)
    return event_t, tuple(torch.cat([s[:-1], p[None]]) for s, p in zip(solution, parts))

