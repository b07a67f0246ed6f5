"""``sdeint_adjoint``: the forward solve without a graph; gradients by solving backwards.

* For every method but reversible Heun: the stochastic adjoint SDE of
  :mod:`nodelib.sde.adjoint_sde`, solved from ``ts[-1]`` down to ``ts[0]`` over the forward
  grid reversed, on the same Brownian path (the Brownian interval returns the same
  increments). At each output time the state is reset to the stored forward output and
  ``∂L/∂y(ts[i])`` is added to ``a``. The gradients converge to the true ones as ``dt → 0``,
  and differ from backprop's by the solver's error.
* ``method="reversible_heun"`` (``adjoint_method="adjoint_reversible_heun"``, the default for
  it): each step is undone exactly (:func:`nodelib.sde.steppers.reversible_heun_reverse`),
  re-run with a graph, and differentiated — backprop's gradient, to rounding, in memory that
  does not grow with the number of steps.
"""
from __future__ import annotations

import torch
from torch import nn

from .adjoint_sde import AdjointSDE
from .methods import get_method
from .sdeint import SDEProblem, _as_state, _no_unknown, finish, prepare, solve
from .steppers import reversible_heun, reversible_heun_reverse


def sdeint_adjoint(sde, y0, ts, bm=None, method: str | None = None,
                   adjoint_method: str | None = None, dt: float = 1e-3, adaptive: bool = False,
                   adjoint_adaptive: bool = False, rtol: float = 1e-5,
                   adjoint_rtol: float = 1e-5, atol: float = 1e-4, adjoint_atol: float = 1e-4,
                   dt_min: float = 1e-5, options: dict | None = None,
                   adjoint_options: dict | None = None, adjoint_params=None,
                   names: dict | None = None, logqp: bool = False, extra: bool = False,
                   extra_solver_state=None, **unused):
    """Same result as :func:`nodelib.sdeint`; gradients by the adjoint (torchsde's API).

    Gradients reach ``y0`` and ``adjoint_params`` (default: ``sde.parameters()`` when ``sde``
    is an ``nn.Module``, else none). ``adjoint_method`` (default: ``"euler"`` for an Itô SDE,
    ``"midpoint"`` for a Stratonovich one, ``"adjoint_reversible_heun"`` after
    ``method="reversible_heun"``) solves the adjoint SDE, whose noise is general: Milstein and
    SRK cannot. ``adjoint_options`` go to it. The other arguments are :func:`sdeint`'s; with
    ``adaptive=True`` the backward pass retraces the accepted forward steps.
    """
    _no_unknown(unused, "sdeint_adjoint")
    if adjoint_adaptive:
        raise NotImplementedError("adjoint_adaptive=True is not implemented in nodelib.sde")
    problem = prepare(sde, y0, ts, bm, method, dt, adaptive, options, names, logqp, rtol, atol,
                      dt_min)
    if adjoint_params is None:
        adjoint_params = tuple(sde.parameters()) if isinstance(sde, nn.Module) else ()
    params = tuple(p for p in adjoint_params if p.requires_grad)
    reversible = problem.method.name == "reversible_heun"
    if adjoint_method is None:
        adjoint_method = ("adjoint_reversible_heun" if reversible else
                          "euler" if problem.sde.sde_type == "ito" else "midpoint")
    if adjoint_method == "adjoint_reversible_heun":
        if not reversible:
            raise ValueError("adjoint_method='adjoint_reversible_heun' needs "
                             "method='reversible_heun'")
        backward = None
    else:
        try:
            backward = get_method(adjoint_method, problem.sde.sde_type, "general")
        except ValueError as error:   # say why: the adjoint's noise is general
            raise ValueError(f"adjoint_method: {error} (the adjoint SDE has general noise: "
                             f"its diffusion mixes y, a and a_θ)") from None
        if backward.levy_area != "none":
            raise ValueError(f"adjoint_method={adjoint_method!r} needs the diffusion matrix, "
                             f"which the adjoint SDE never forms; use midpoint, heun, "
                             f"euler_heun or reversible_heun")
    settings = (problem, params, backward, dict(adjoint_options or {}))
    initial = _as_state(extra_solver_state)
    ys, *state = _Adjoint.apply(settings, initial, problem.y0, *params)
    return finish(ys, tuple(state), logqp, extra)


class _Adjoint(torch.autograd.Function):

    @staticmethod
    def forward(ctx, settings, initial, y0, *params):
        problem = settings[0]
        with torch.no_grad():   # (an adaptive solve leaves its accepted steps as the grid)
            ys, state = solve(problem, initial)
        ctx.settings, ctx.state, ctx.given_state = settings, state, initial is not None
        ctx.save_for_backward(ys)
        return (ys, *state)

    @staticmethod
    def backward(ctx, grad_ys, *unused):
        problem, params, backward_method, adjoint_options = ctx.settings
        ys, = ctx.saved_tensors
        if backward_method is None:
            grads = _reversible_heun_backward(problem, params, ys, ctx.state, grad_ys,
                                              ctx.given_state)
        else:
            grads = _adjoint_sde_backward(problem, params, backward_method, adjoint_options,
                                          ys, grad_ys)
        return (None, None, *grads)


def _adjoint_sde_backward(problem: SDEProblem, params, method, options, ys, grad_ys):
    """Solve the adjoint SDE back over the forward grid, one output interval at a time."""
    adjoint = AdjointSDE(problem.sde, params, ys.shape[1:])
    grid, bm = problem.grid, problem.bm
    times, tt = grid.times, grid.tensor.unbind(0)
    kwargs = {k: options[k] for k in method.options if k in options}
    a = grad_ys[-1]
    a_params: list = [torch.zeros_like(p) for p in params]
    for i in range(len(ys) - 1, 0, -1):
        z = adjoint.pack(ys[i], a, a_params)
        state = method.init(adjoint, tt[grid.outputs[i]], z) if method.init is not None else ()
        for k in range(grid.outputs[i] - 1, grid.outputs[i - 1] - 1, -1):
            dW = -bm(times[k], times[k + 1])   # W(t_next) - W(t) for the backward step
            z, state = method.step(adjoint, tt[k + 1], tt[k], times[k] - times[k + 1], z, dW,
                                   state, **kwargs)
        _, a, a_params = adjoint.unpack(z)
        a = a + grad_ys[i - 1]
    return [a, *a_params]


def _reversible_heun_backward(problem: SDEProblem, params, ys, final_state, grad_ys,
                              given_state: bool):
    """Undo the forward steps one by one; at each, re-run the step with a graph and pull the
    adjoints of ``(y, f, g, z)`` back through it."""
    sde, grid, bm = problem.sde, problem.grid, problem.bm
    times, tt = grid.times, grid.tensor.unbind(0)
    y, state = ys[-1], final_state
    a_y = grad_ys[-1]
    a_state: list = [torch.zeros_like(x) for x in state]
    a_params: list = [torch.zeros_like(p) for p in params]
    output = len(grid.outputs) - 1
    for k in range(len(times) - 2, -1, -1):
        h, dW = times[k + 1] - times[k], bm(times[k], times[k + 1])
        with torch.no_grad():
            y, state = reversible_heun_reverse(sde, tt[k], h, y, dW, state)
        with torch.enable_grad():
            inputs = [x.detach().requires_grad_(True) for x in (y, *state)]
            y1, state1 = reversible_heun(sde, tt[k], tt[k + 1], h, inputs[0], dW,
                                         tuple(inputs[1:]))
            found = _grad((y1, *state1), (*inputs, *params), (a_y, *a_state))
        grads = [torch.zeros_like(x) if g is None else g
                 for g, x in zip(found, (*inputs, *params))]
        a_y, a_state = grads[0], grads[1:4]
        a_params = [p + g for p, g in zip(a_params, grads[4:])]
        if k == grid.outputs[output - 1]:
            output -= 1
            a_y = a_y + grad_ys[output]
    if given_state:   # the caller's extra_solver_state gets no gradient (as in torchsde)
        return [a_y, *a_params]
    # the initial state (f, g, z) = (f(y0), g(y0), y0) depends on y0 too
    with torch.enable_grad():
        y0 = problem.y0.detach().requires_grad_(True)
        f0, g0 = sde.f_and_g(tt[0], y0)
        found = _grad((f0, g0, y0), (y0, *params), tuple(a_state))
    grads = [torch.zeros_like(x) if g is None else g for g, x in zip(found, (y0, *params))]
    return [a_y + grads[0], *[p + g for p, g in zip(a_params, grads[1:])]]


def _grad(outputs, inputs, grad_outputs):
    """``torch.autograd.grad`` over the outputs that depend on something (an ``f`` or ``g``
    constant in the state and the parameters has no graph)."""
    pairs = [(o, g) for o, g in zip(outputs, grad_outputs) if o.requires_grad]
    if not pairs:
        return [None] * len(inputs)
    return torch.autograd.grad([o for o, _ in pairs], inputs, [g for _, g in pairs],
                               allow_unused=True)
