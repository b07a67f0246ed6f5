"""``odeint_adjoint(..., strategy="checkpoint")``: the exact gradient of the discrete forward
solve, in bounded memory.

Backprop through the solver (:func:`nodelib.odeint`) records every step's graph: memory grows
with the number of steps. The continuous adjoint (``"backsolve"``) stores nothing but solves a
second ODE backwards, whose result is the gradient only up to the solver's error (and
reconstructing z backwards can drift). Checkpointing does neither: the forward solve runs
without a graph and keeps the state at every k-th accepted step (at most ``checkpoints`` of
them: when the list is full every other one is dropped and k doubles). The backward pass
re-runs one segment at a time, from its checkpoint, with exactly the forward's step sizes,
records that segment's graph, backpropagates through it, and moves to the previous segment.
Memory: the checkpoints plus one segment's graph. Cost: one extra forward solve.
"""
from __future__ import annotations

import math

import torch

from ..solvers.controllers import FixedGrid
from ..solvers.integrate import integrate, new_newton, solve_problem
from ..solvers.solution import PassStats
from .time_gradient import time_gradient

DEFAULT_CHECKPOINTS = 64


class Checkpoints:
    """States (and, for adaptive methods, the first slope) at every k-th accepted step.

    ``max_count`` an int: at most that many are kept (when the list is full every other one is
    dropped and k doubles), so the peak during backward — one segment's graph — grows like
    N/max_count. ``"sqrt"``: the allowance grows with the steps taken, 2√N, so both the
    checkpoints and the longest segment grow like √N (the classic √N checkpointing, without
    knowing N in advance)."""

    def __init__(self, max_count: int | str = DEFAULT_CHECKPOINTS):
        self.grow = isinstance(max_count, str) and max_count == "sqrt"
        # a whole number (an int, or a float such as 1e3 without a fraction), never a bool
        whole = (isinstance(max_count, (int, float)) and not isinstance(max_count, bool)
                 and math.isfinite(max_count) and max_count == int(max_count))
        if not self.grow and not (whole and int(max_count) >= 2):
            raise ValueError(f"adjoint_options['checkpoints'] must be a whole number of at least "
                             f"2 or 'sqrt', got {max_count!r}")
        self.max_count = 4 if self.grow else int(max_count)
        self.every = 1
        self.kept: list[tuple[int, float, torch.Tensor, torch.Tensor | None]] = []

    def offer(self, index: int, t: float, y: torch.Tensor, f) -> None:
        if self.grow:
            self.max_count = max(self.max_count, math.ceil(2 * math.sqrt(index + 1)))
        if index % self.every:
            return
        self.kept.append((index, t, y.detach(), None if f is None else f.detach()))
        if len(self.kept) > self.max_count:
            self.kept, self.every = self.kept[::2], 2 * self.every


def checkpoint_backward(problem, params, solution, checkpoints: Checkpoints, grad_ys,
                        stats, want_t: bool):
    """Gradients (∂L/∂y0, ∂L/∂θ per parameter, ∂L/∂t or None) by re-running the segments."""
    func, config, t = problem.func, problem.config, problem.t
    times = t.tolist()
    starts = solution.step_start
    ends = starts[1:] + [times[-1]]
    kept = checkpoints.kept
    bounds = [index for index, *_ in kept] + [len(ends)]
    direction = math.copysign(1.0, times[-1] - times[0])
    a_y = torch.zeros_like(problem.y0)
    a_f = None
    grad_params = [torch.zeros_like(p) for p in params]
    newton = new_newton(func, config, stats)   # one Jacobian cache for every segment
    for j in range(len(kept) - 1, -1, -1):
        _, t_start, y_ckpt, f_ckpt = kept[j]
        segment = ends[bounds[j]:bounds[j + 1]]
        if not segment:
            continue
        t_end = segment[-1]
        outs = [i for i, s in enumerate(times)
                if direction * (s - t_start) > 0 and direction * (s - t_end) <= 0]
        with torch.enable_grad():
            y = y_ckpt.detach().requires_grad_(True)
            f0 = (f_ckpt.detach().requires_grad_(True)
                  if config.adaptive and j > 0 and f_ckpt is not None else None)
            carried_f = f0 is not None
            ys, y_end, f_end = _replay(func, config, t_start, segment, y, f0,
                                       [times[i] for i in outs], newton, stats)
            total = (a_y * y_end).sum()
            if outs:
                total = total + (grad_ys[outs] * ys).sum()
            if a_f is not None and f_end is not None:
                total = total + (a_f * f_end).sum()
            inputs: list[torch.Tensor] = [y] + ([f0] if f0 is not None else []) + list(params)
            grads = torch.autograd.grad(total, inputs, allow_unused=True)
        a_y = grads[0]
        a_f = grads[1] if carried_f else None
        for k, g in enumerate(grads[1 + int(carried_f):]):
            if g is not None:
                grad_params[k] += g
    grad_t = None
    if want_t:
        grad_t, slopes_nfe = time_gradient(func, t, solution.ys, grad_ys, a_y)
        stats.nfe += slopes_nfe
    return a_y + grad_ys[0], grad_params, grad_t


def _replay(func, config, t_start, ends, y, f0, out_times, newton, stats):
    """Re-run the forward's steps from ``t_start`` through the step ``ends``, from y (and the
    checkpointed first slope f0), recording the graph: the integrate loop itself, with a
    :class:`~nodelib.solvers.controllers.FixedGrid` of those ends. Returns (outputs at
    out_times, y at the end, the next step's first slope or None)."""
    grid = FixedGrid(ends, config.jump_t if config.adaptive else (), replay=True)
    counts = PassStats()   # (the backward pass reports evaluations, not replayed steps)
    solution = integrate(func, y, [t_start] + out_times, config, counts, controller=grid, f0=f0,
                         newton=newton)
    stats.nfe += counts.nfe
    return solution.ys[1:], solution.y_last, solution.f_last


class _CheckpointAdjoint(torch.autograd.Function):

    @staticmethod
    def forward(ctx, problem, params, stats, count, y0, t, *param_tensors):
        pass_stats = stats.forward if stats is not None else PassStats()
        keep = Checkpoints(count)
        with torch.no_grad():
            solution = solve_problem(problem, pass_stats, record_trace=stats is not None,
                                     recorder=keep)
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
