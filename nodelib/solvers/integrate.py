"""Integrators: march a tableau's steps across the output times.

* :func:`fixed_grid` — steps on a grid (``step_size``, a ``grid_constructor``, or one step per
  output interval); output times are grid points or are interpolated (cubic Hermite).
* :func:`adaptive` — embedded error estimate, a controller object (:mod:`nodelib.control`) and
  the tableau's dense output; one host sync per step (the accept/reject decision).

Both feed every accepted step to the same output-time loop (:class:`_OutputTimes`), or, in event
mode, to an :class:`~nodelib.events.EventLocator`, and return a :class:`~nodelib.Solution`.
Times are Python floats here: the step-size arithmetic never touches the device.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import torch

from .config import DEFAULT_MAX_NUM_STEPS, SolveConfig
from .events import EventLocator
from ..errors import (MaxStepsExceededError, NewtonConvergenceError, NonFiniteError,
                     StepSizeUnderflowError)
from .interpolation import hermite, interpolate
from .newton import Newton, NewtonFailure
from .problem import Problem, time_factory
from .solution import PassStats, Solution, StepRecord
from .runge_kutta import _combine, error_estimate, rk_step
from .stiffness import StiffnessDetector

_LINEAR = np.array([[1.0]])   # y0 + θ (y1 - y0), on the single slope (y1 - y0)/h


class _OutputTimes:
    """Collects the states at the output times as the accepted steps pass them.

    An output time strictly inside a step is interpolated; one on the step's end (within
    ``snap·|h|``) takes the step's result itself. All outputs inside one step cost one call of
    the step's interpolant, whatever their number."""

    def __init__(self, times: list[float], y0: torch.Tensor, snap: float):
        self.times, self.snap = times, snap
        self.parts, self.next = [y0.unsqueeze(0)], 1

    @property
    def done(self) -> bool:
        return self.next >= len(self.times)

    def after_step(self, t0: float, t1: float, y1: torch.Tensor, interpolant) -> None:
        times, h, last = self.times, t1 - t0, self.next
        while last < len(times) and (t1 - times[last]) / h > self.snap:
            last += 1
        if last > self.next:
            self.parts.append(interpolant([(times[j] - t0) / h for j in range(self.next, last)]))
        if last < len(times) and abs(times[last] - t1) <= self.snap * abs(h):
            self.parts.append(y1.unsqueeze(0))
            last += 1
        self.next = last

    def stacked(self) -> torch.Tensor:
        return torch.cat(self.parts)


def fixed_grid(func, y0: torch.Tensor, times: list[float], config: SolveConfig,
               stats: PassStats, *, callbacks=None, event=None, record_trace: bool = False,
               keep=None, **_) -> Solution:
    """Steps on the grid of :func:`_grid`. Outputs between grid points come from cubic Hermite
    interpolation (error O(h⁴), below that of the methods up to rk4), so asking for many outputs
    never adds steps. ``options["perturb"]`` evaluates f just after each grid point and just
    before the next, so a jump of f at a grid point is seen from the correct side."""
    time, tableau = time_factory(y0), config.tableau
    outputs = _OutputTimes(times, y0, snap=1e-9)
    solution = Solution(t=None, ys=None, stats=stats)
    y, t, f = y0, times[0], None
    nfe = 0
    newton = _newton(func, config, stats)
    if keep is not None:
        keep.offer(0, t, y, None)
    try:
        for t1 in _grid(func, y0, times, config, event is not None):
            h = t1 - t
            if callbacks is not None:
                callbacks.step(t, y, h)
            if f is None and not tableau.diag(0):   # (a first implicit stage needs no f0)
                f = func(_nudge(time(t), t1) if config.perturb else time(t), y)
                nfe += 1
            try:
                y1, ks = fixed_size_step(func, t, y, f, h, tableau, time, newton,
                                         _nudge(time(t1), t) if config.perturb else None)
            except NewtonFailure as failure:
                raise NewtonConvergenceError(
                    f"Newton's method failed in the step from t={t:.6g} (h={h:.3g}): "
                    f"{failure}; use a smaller step_size or an adaptive implicit method "
                    "(kvaerno3)") from None
            nfe += tableau.stages - 1 if newton is None else 0
            if record_trace:
                stats.trace.append(StepRecord(t, h, math.nan, True))
            solution.step_t.append(t)
            solution.step_h.append(h)
            slopes = {}

            def interpolant(thetas, y=y, f=f, y1=y1, t1=t1, h=h):
                nonlocal nfe
                if config.interp == "linear":
                    return interpolate(y, [(y1 - y) / h], h, thetas, _LINEAR)
                slopes["f1"] = func(time(t1), y1)
                nfe += 1
                if f is None:   # a first implicit stage needed no f0; the cubic does
                    f = func(time(t1 - h), y)
                    nfe += 1
                return hermite(y, f, y1, slopes["f1"], h, thetas)

            if event is not None:
                if event.after_step(t, h, y, y1, interpolant):
                    break
            else:
                outputs.after_step(t, t1, y1, interpolant)
            # the end slope, if interpolation needed it, is the next step's first stage
            t, y, f = t1, y1, None if config.perturb else slopes.get("f1")
            if keep is not None:
                keep.offer(len(solution.step_h), t, y, None)
    finally:
        stats.nfe += nfe
        stats.n_accepted += len(solution.step_h)
    solution.ys = event.stacked() if event is not None else outputs.stacked()
    if event is None:
        _check_finite_outputs(solution.ys, times)
    return solution


def _newton(func, config: SolveConfig, stats: PassStats):
    if not config.tableau.implicit:
        return None
    # a fixed-step method cannot shrink its step when Newton struggles: let it iterate longer
    iterations = 8 if config.adaptive else 50
    return Newton(func, *config.newton_tolerances, stats, max_iterations=iterations)


def fixed_size_step(func, t, y, f, h, tableau, time, newton, end_time=None):
    """One step whose size may not change (a fixed-grid step, or the replay of a forward step
    for the checkpointed gradient). An implicit one whose simplified Newton iteration fails
    retries with a fresh Jacobian, then with full Newton; the third failure propagates."""
    for attempt in range(3):
        if newton is not None:   # attempt 0: cached J; 1: fresh J; 2: full Newton
            newton.full = attempt == 2
        try:
            return rk_step(func, t, y, f, h, tableau, time, end_time=end_time, newton=newton)
        except NewtonFailure:
            if attempt == 2:
                raise
            newton.jacobian = None
        finally:
            if newton is not None:
                newton.full = False


def _nudge(t: torch.Tensor, towards: float) -> torch.Tensor:
    """The next representable time after ``t`` in the direction of ``towards``."""
    return torch.nextafter(t, torch.full_like(t, towards))


def _grid(func, y0, times: list[float], config: SolveConfig, unbounded: bool):
    """Grid points after t0: t0 + k·step_size, then t[-1] (a point closer than 1e-9·step to
    t[-1] is moved onto it); or the points of ``grid_constructor(func, y0, t)``; without either,
    the output times themselves. ``unbounded`` (event mode): t0 + k·step_size forever."""
    step, t0, t_end = config.step_size, times[0], times[-1]
    direction = math.copysign(1.0, t_end - t0)
    if unbounded:
        if step is None:
            raise ValueError("event handling with a fixed-step method needs options['step_size']")
        return (t0 + direction * k * step for k in itertools.count(1))
    if config.grid_constructor is not None:
        return _constructed_grid(func, y0, times, config.grid_constructor)
    if step is None:
        return list(times[1:])
    n = int(math.floor(abs(t_end - t0) / step + 1e-9))
    grid = [t0 + direction * k * step for k in range(1, n + 1)]
    if grid and abs(grid[-1] - t_end) <= 1e-9 * step:
        grid[-1] = t_end
    else:
        grid.append(t_end)
    return grid


def _constructed_grid(func, y0, times, grid_constructor) -> list[float]:
    t = torch.tensor(times, dtype=y0.dtype, device=y0.device)
    grid = torch.as_tensor(grid_constructor(func, y0, t)).detach().reshape(-1).cpu().double()
    grid = grid.tolist()
    if len(grid) < 2 or grid[0] != times[0] or grid[-1] != times[-1]:
        raise ValueError(f"grid_constructor must return a grid from t[0]={times[0]:.6g} to "
                         f"t[-1]={times[-1]:.6g}; got {len(grid)} points from "
                         f"{grid[0] if grid else None} to {grid[-1] if grid else None}")
    steps = np.diff(grid) * math.copysign(1.0, times[-1] - times[0])
    if not (steps > 0).all():
        raise ValueError("grid_constructor returned a grid that is not strictly monotone in the "
                         "direction of t")
    return grid[1:]


def _check_finite_outputs(out: torch.Tensor, times: list[float]) -> None:
    """One check (one host sync) for the whole fixed-grid solve, naming the first bad output."""
    finite = torch.isfinite(out.detach().reshape(len(out), -1)).all(dim=1)
    if not bool(finite.all()):
        i = int((~finite).nonzero()[0])
        raise NonFiniteError(
            f"the solution became NaN/inf: first non-finite output is at t={times[i]:.6g} "
            f"(index {i}); the step size may be too large for this problem (try a smaller "
            "step_size or an adaptive method)")


def adaptive(func, y0: torch.Tensor, times: list[float], config: SolveConfig,
             stats: PassStats, *, callbacks=None, event=None, record_trace: bool = False,
             h0: float | None = None, keep=None) -> Solution:
    """``h0``: the first step (e.g. the ``h_next`` of the solve before: the adjoint's backward
    pass chains its intervals this way instead of re-estimating a first step for each)."""
    time, tableau, control = time_factory(y0), config.tableau, config.controller
    t, t_end = times[0], times[-1]
    direction = math.copysign(1.0, t_end - t)
    eps = torch.finfo(y0.dtype).eps
    k = tableau.error_exponent
    outputs = _OutputTimes(times, y0, snap=0.0)
    solution = Solution(t=None, ys=None, stats=stats)
    landmarks = _Landmarks(config, t, direction)

    f0 = func(time(t), y0)
    nfe = 1
    if h0 is not None:
        h = direction * min(abs(h0), abs(t_end - t))
    elif config.first_step is not None:
        h = direction * config.first_step
    else:
        h = direction * control.initial_step(func, t, y0, f0, direction, k, time)
        nfe += 1
    memory, y = control.start(), y0
    n_steps = n_accepted = newton_failures = 0
    ratio = 0.0
    newton = _newton(func, config, stats)
    stiffness = (StiffnessDetector(tableau) if config.detect_stiffness and tableau.fsal
                 and not tableau.implicit else None)
    if keep is not None:   # checkpoints for strategy="checkpoint" (nodelib.checkpoint)
        keep.offer(0, t, y0, f0)
    try:
        while not (event.found if event is not None else outputs.done):
            if n_steps >= config.max_num_steps:
                raise MaxStepsExceededError(
                    f"reached max_num_steps={config.max_num_steps} at t={t:.6g} before "
                    f"t={t_end:.6g}; the problem may be stiff or blow up — raise "
                    "options['max_num_steps'] or loosen rtol/atol")
            if abs(h) <= 8 * eps * max(abs(t), 1.0):
                if not math.isfinite(ratio):
                    raise NonFiniteError(
                        f"the state or func became NaN/inf on every step tried after "
                        f"t={t:.17g}, down to the smallest step size: func may be undefined "
                        "beyond this time")
                raise StepSizeUnderflowError(
                    f"step size underflow at t={t:.17g}: h={abs(h):.3g} is too small to advance "
                    f"time in {y0.dtype}; the solution may blow up (finite-time singularity)"
                    + (", or f is discontinuous or ill-posed here" if tableau.implicit else
                       " or the problem is too stiff for an explicit method (try kvaerno3)"))
            t1 = t + h
            if direction * (t1 - t_end) >= 0:
                t1, h = t_end, t_end - t                    # land exactly on the final time
            t1, jump = landmarks.clip(t, t1, h)
            h = t1 - t
            if callbacks is not None:
                callbacks.step(t, y, h)
            n_steps += 1
            try:
                # a step ending on a jump of f evaluates its last stages just before the jump
                y1, ks = rk_step(func, t, y, f0, h, tableau, time,
                                 end_time=_nudge(time(t1), t) if jump else None, newton=newton)
            except NewtonFailure as failure:
                h = _after_newton_failure(newton, failure, t, h, newton_failures)
                newton_failures += 1
                if record_trace:
                    stats.trace.append(StepRecord(t, t1 - t, math.nan, False))
                continue
            newton_failures = 0
            nfe += tableau.stages - 1 if newton is None else 0
            with torch.no_grad():
                err = error_estimate(ks, tableau, h)
                if newton is not None:   # filtered by (I - hγJ)⁻¹: stiff parts not overrated
                    err = newton.solve_linear(err)
                ratio = control.error_ratio(err, y, y1)
            accepted, h_next, memory = control.adapt(ratio, h, memory, k)
            if record_trace:
                stats.trace.append(StepRecord(t, h, ratio, accepted))
            if accepted:
                if callbacks is not None:
                    callbacks.accept(t, y, h)
                if not tableau.fsal:   # the end slope: for dense output and the next step
                    ks.append(func(time(t1), y1))
                    nfe += 1
                interpolant = (lambda thetas, y=y, ks=ks, h=h:
                               interpolate(y, ks, h, thetas, tableau.dense))
                if event is not None:
                    event.after_step(t, h, y, y1, interpolant)
                else:
                    outputs.after_step(t, t1, y1, interpolant)
                solution.step_t.append(t)
                solution.step_h.append(h)
                f1 = ks[-1]
                if jump:   # f jumps here: restart from the slope on the far side
                    f1 = func(_nudge(time(t1), t1 + direction), y1)
                    nfe += 1
                landmarks.passed(t1)
                if stiffness is not None:
                    stiffness.after_accepted_step(t1, h, y, ks, y1, lambda i, y=y, ks=ks, h=h:
                                                  _stage_argument(y, ks, tableau, i, h))
                t, y, f0 = t1, y1, f1
                n_accepted += 1
                if keep is not None:
                    keep.offer(n_accepted, t, y, f0)
            else:
                if callbacks is not None:
                    callbacks.reject(t, y, h)
                if not math.isfinite(ratio) and not bool(torch.isfinite(f0).all()):
                    raise NonFiniteError(f"func returned NaN/inf at t={t:.6g} for a finite state")
            h = h_next
    finally:   # counters are recorded even when the solve fails: they explain the failure
        solution.h_next = abs(h)
        stats.nfe += nfe
        stats.n_accepted += n_accepted
        stats.n_rejected += n_steps - n_accepted
    solution.ys = event.stacked() if event is not None else outputs.stacked()
    return solution


def _stage_argument(y, ks, tableau, i, h):
    """The point Y_i at which stage i evaluated f (recomputed only when asked)."""
    return _combine(y, ks, tableau.stage_terms[i], tableau.weights(i, y.dtype, y.device), h)


def _after_newton_failure(newton, failure, t, h, failures) -> float:
    """A step whose Newton iteration failed is rejected: retry with a fresh Jacobian, else
    with a quarter of the step; after ten failures in a row, give up."""
    if failures >= 10:
        raise NewtonConvergenceError(
            f"Newton's method failed {failures + 1} times in a row at t={t:.6g} (last step "
            f"h={abs(h):.3g}): {failure}; the problem may be ill-posed there, or loosen rtol/atol")
    if not newton.fresh:
        newton.jacobian = None
        return h
    return 0.25 * h


class _Landmarks:
    """``step_t`` and ``jump_t``: times a step must end on (for ``jump_t``, f is discontinuous
    there, so the next step starts from the slope on the far side)."""

    def __init__(self, config: SolveConfig, t0: float, direction: float):
        ahead = lambda ts: sorted((s for s in ts if direction * (s - t0) > 0),
                                  key=lambda s: direction * s)
        marks = [(s, False) for s in ahead(config.step_t)] + [(s, True) for s in
                                                               ahead(config.jump_t)]
        self.marks = sorted(marks, key=lambda m: direction * m[0])

    def clip(self, t: float, t1: float, h: float) -> tuple[float, bool]:
        """The end of the step from t, moved onto the next landmark inside it, if any."""
        if self.marks:
            s, jump = self.marks[0]
            if (s - t) / h <= 1.0:
                return s, jump
        return t1, False

    def passed(self, t1: float) -> None:
        while self.marks and self.marks[0][0] == t1:
            self.marks.pop(0)


def integrate(func, y0, times, config: SolveConfig, stats: PassStats, **kwargs) -> Solution:
    """Dispatch to the fixed-grid or adaptive integrator."""
    integrator = adaptive if config.adaptive else fixed_grid
    return integrator(func, y0, times, config, stats, **kwargs)


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


__all__ = ["fixed_grid", "adaptive", "integrate", "DEFAULT_MAX_NUM_STEPS"]
