"""The gradient with respect to the times ``t``: the exact flow's, in one place.

Moving an output time t_i along the trajectory moves the output by the slope there, and moving
the start time t_0 is the same as moving the initial state against the flow:

    dL/dt_i = ∂L/∂y(t_i) · f(t_i, y(t_i))   (i ≥ 1),      dL/dt_0 = -a(t_0) · f(t_0, y_0),

with a(t_0) = dL/dy_0 the adjoint at the start. Every gradient strategy gives these formulas (so
they match the derivative of the numerical solution only up to the solver's error):
backpropagation builds them into the graph (:func:`shift_start`, :func:`attach_output_times`),
the checkpointed gradient evaluates them after its sweep (:func:`time_gradient`), and the
continuous adjoint accumulates them interval by interval (:func:`dot_slope`) into its a_t.
"""
from __future__ import annotations

import torch


def dot_slope(func, t_i: torch.Tensor, y_i: torch.Tensor, g_i: torch.Tensor) -> torch.Tensor:
    """``∂L/∂y(t_i) · f(t_i, y(t_i))``: how the loss moves when the output time t_i moves."""
    return (g_i * func(t_i, y_i)).sum()


def time_gradient(func, t: torch.Tensor, ys: torch.Tensor, grad_ys: torch.Tensor,
                  a0: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``dL/dt`` for every time (``a0`` = dL/dy_0 from the rest of the solve), and the
    evaluations of f it cost."""
    with torch.no_grad():
        slopes = [func(t[i], ys[i]) for i in range(len(t))]
        grad_t = torch.stack([(grad_ys[i] * slopes[i]).sum() for i in range(len(t))])
        grad_t[0] = -(a0 * slopes[0]).sum()
    return grad_t, len(t)


def shift_start(func, t0: torch.Tensor, y0: torch.Tensor) -> torch.Tensor:
    """``y0`` with the value unchanged but ``d/dt0 = -f(t0, y0)``: backpropagation then gives
    dL/dt_0 through the solve itself (events included: the event time depends on t_0 through
    the state). Costs one evaluation of f."""
    with torch.no_grad():
        f_start = func(t0.detach(), y0)
    return y0 - (t0 - t0.detach()) * f_start


def attach_output_times(func, t: torch.Tensor, ys: torch.Tensor, y0: torch.Tensor):
    """The outputs with the value unchanged but ``d ys[i]/d t_i = f(t_i, ys[i])`` (i ≥ 1), and
    ``ys[0] = y0`` itself; returns ``(ys, evaluations of f)``."""
    with torch.no_grad():
        slopes = torch.stack([func(t[i].detach(), ys[i]) for i in range(1, len(t))])
    dt = (t[1:] - t[1:].detach()).view(-1, *([1] * y0.dim()))
    return torch.cat([y0.unsqueeze(0), ys[1:] + dt * slopes]), len(t)
