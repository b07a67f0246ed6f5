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

from ..errors import ODESolverError
from ..solvers.integrate import (_LINEAR, _newton, _nudge, _OutputTimes, fixed_size_step,
                                 solve_problem)
from ..solvers.interpolation import hermite, interpolate
from ..solvers.newton import NewtonFailure
from ..solvers.problem import time_factory
from ..solvers.solution import PassStats

DEFAULT_CHECKPOINTS = 64


class Checkpoints:
    """States (and, for adaptive methods, the first slope) at every k-th accepted step.

    ``max_count`` an int: at most that many are kept (when the list is full every other one is
    dropped and k doubles), so the peak during backward — one segment's graph — grows like
    N/max_count. ``"sqrt"``: the allowance grows with the steps taken, 2√N, so both the
    checkpoints and the longest segment grow like √N (the classic √N checkpointing, without
    knowing N in advance)."""

    def __init__(self, max_count=DEFAULT_CHECKPOINTS):
        self.grow = max_count == "sqrt"
        if not self.grow and (isinstance(max_count, str) or int(max_count) < 2):
            raise ValueError(f"adjoint_options['checkpoints'] must be an integer of at least "
                             f"2 or 'sqrt', got {max_count!r}")
        self.max_count = 4 if self.grow else int(max_count)
        self.every, self.kept = 1, []

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
    ends = solution.step_t[1:] + [times[-1]]
    steps = list(zip(solution.step_t, ends))
    kept = checkpoints.kept
    bounds = [index for index, *_ in kept] + [len(steps)]
    direction = math.copysign(1.0, times[-1] - times[0])
    a_y = torch.zeros_like(problem.y0)
    a_f = None
    grad_params = [torch.zeros_like(p) for p in params]
    newton = _newton(func, config, stats)
    for j in range(len(kept) - 1, -1, -1):
        _, t_start, y_ckpt, f_ckpt = kept[j]
        segment = steps[bounds[j]:bounds[j + 1]]
        if not segment:
            continue
        t_end = segment[-1][1]
        outs = [i for i, s in enumerate(times)
                if direction * (s - t_start) > 0 and direction * (s - t_end) <= 0]
        with torch.enable_grad():
            y = y_ckpt.detach().requires_grad_(True)
            carried_f = config.adaptive and j > 0
            f0 = f_ckpt.detach().requires_grad_(True) if carried_f else None
            ys, y_end, f_end = _replay(func, config, segment, y, f0, [times[i] for i in outs],
                                       newton, stats)
            total = (a_y * y_end).sum()
            if outs:
                total = total + (grad_ys[outs] * ys).sum()
            if a_f is not None and f_end is not None:
                total = total + (a_f * f_end).sum()
            inputs = [y] + ([f0] if carried_f else []) + list(params)
            grads = torch.autograd.grad(total, inputs, allow_unused=True)
        a_y = grads[0]
        a_f = grads[1] if carried_f else None
        for k, g in enumerate(grads[1 + int(carried_f):]):
            if g is not None:
                grad_params[k] += g
    grad_t = None
    if want_t:   # the exact-flow formulas, as for odeint and backsolve: moving t0 moves the
        # start of the trajectory (not the output ys[0] = y0 itself)
        with torch.no_grad():
            slopes = [func(t[i], solution.ys[i]) for i in range(len(times))]
        stats.nfe += len(times)
        grad_t = torch.stack([(grad_ys[i] * slopes[i]).sum() for i in range(len(times))])
        grad_t[0] = -(a_y * slopes[0]).sum()
    return a_y + grad_ys[0], grad_params, grad_t


def _replay(func, config, segment, y, f0, out_times, newton, stats):
    """Re-run the forward's steps ``segment`` (pairs (t, t1)) from y, recording the graph;
    returns (outputs at out_times, y at the end, the next step's first slope or None)."""
    tableau, time = config.tableau, time_factory(y)
    outputs = _OutputTimes([segment[0][0]] + out_times, y, snap=0.0 if config.adaptive else 1e-9)
    nfe = 0
    for t, t1 in segment:
        h = t1 - t
        jump = config.adaptive and t1 in config.jump_t
        if f0 is None and not tableau.diag(0):
            f0 = func(_nudge(time(t), t1) if config.perturb else time(t), y)
            nfe += 1
        end_time = (_nudge(time(t1), t) if (jump or config.perturb) else None)
        try:   # the forward's step size, so Newton may not shrink it: retry instead
            y1, ks = fixed_size_step(func, t, y, f0, h, tableau, time, newton, end_time)
        except NewtonFailure as failure:
            raise ODESolverError(f"re-running the step from t={t:.6g} for the checkpointed "
                                 f"gradient: {failure}") from None
        nfe += tableau.stages - 1 if newton is None else 0
        if config.adaptive:
            if not tableau.fsal:
                ks.append(func(time(t1), y1))
                nfe += 1
            interpolant = lambda th, y=y, ks=ks, h=h: interpolate(y, ks, h, th, tableau.dense)
        else:
            interpolant = _fixed_interpolant(func, config, time, y, f0, y1, t1, h)
        outputs.after_step(t, t1, y1, interpolant)
        if config.adaptive:
            f0 = ks[-1]
            if jump:
                f0 = func(_nudge(time(t1), t1 + h), y1)
                nfe += 1
        else:
            f0 = None
        y = y1
    stats.nfe += nfe
    ys = outputs.stacked()[1:]
    return ys, y, f0


def _fixed_interpolant(func, config, time, y, f, y1, t1, h):
    def interpolant(thetas):
        if config.interp == "linear":
            return interpolate(y, [(y1 - y) / h], h, thetas, _LINEAR)
        f0 = f if f is not None else func(time(t1 - h), y)
        return hermite(y, f0, y1, func(time(t1), y1), h, thetas)
    return interpolant


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
