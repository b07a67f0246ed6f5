"""The integrate loop: ONE loop for every solve — a fixed grid, an adaptive solve, and the
checkpointed gradient's replay of a forward solve.

Each pass asks the controller where the step ends (:class:`~nodelib.solvers.controllers.FixedGrid`:
the next grid point or replayed step; an adaptive controller: t + h, clipped to the end time and
to ``step_t``/``jump_t``), takes the step (:func:`~nodelib.solvers.runge_kutta.rk_step`), lets an
adaptive controller accept or reject it, and hands an accepted step to the output times or to the
event locator (both answer "done?"), to the checkpoint recorder and to the stiffness detector.
What differs between the three uses is the controller, nothing else: the replay is exact because
it runs the very code the forward ran, on the forward's step ends.

Between the points of a step, an adaptive method uses its tableau's dense output; a fixed-step
method a cubic Hermite interpolant (see :class:`_GridInterpolant`). Times are Python floats here:
the step-size arithmetic never touches the device.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import cast

import numpy as np
import torch

from ..errors import (
    EventNotFoundError,
    MaxStepsExceededError,
    NewtonConvergenceError,
    NonFiniteError,
    ODESolverError,
    StepSizeUnderflowError,
    StiffnessError,
)
from .config import SolveConfig
from .controllers import FixedGrid, StepSizeController
from .events import EventLocator
from .interpolation import hermite, interpolate
from .newton import Newton, NewtonFailure
from .outputs import Landmarks, OutputTimes
from .problem import Problem, time_factory
from .runge_kutta import combine, error_estimate, rk_step
from .scipy_solver import scipy_solution
from .solution import PassStats, Solution, StepRecord
from .stiffness import StiffnessDetector

_LINEAR = np.array([[1.0]])   # y0 + θ (y1 - y0), on the single slope (y1 - y0)/h


def integrate(func, y0: torch.Tensor, times: list[float], config: SolveConfig,
              stats: PassStats, *, controller: FixedGrid | StepSizeController | None = None,
              f0: torch.Tensor | None = None, callbacks=None, event: EventLocator | None = None,
              record_trace: bool = False, h0: float | None = None, recorder=None,
              newton: Newton | None = None) -> Solution:
    """March from ``times[0]`` until every output time in ``times`` is reached (or, with an
    ``event`` locator, until the event). Returns the :class:`Solution`.

    ``controller``: default, the config's (adaptive) controller or the fixed-step method's grid;
    the checkpoint replay passes a :class:`FixedGrid` of the forward's step ends, and the first
    slope ``f0`` it checkpointed. ``h0``: an adaptive solve's first step (the adjoint's backward
    pass chains its intervals with the ``h_next`` of the one before). ``recorder``: offered the
    state after every accepted step (the checkpoints of ``strategy="checkpoint"``). ``newton``:
    an implicit method's Newton solver to reuse, with its cached Jacobian (the replay shares one
    across its segments).
    """
    time, tableau = time_factory(y0), config.tableau
    if controller is None:
        controller = config.controller if config.controller is not None else FixedGrid.for_times(
            func, y0, times, config.step_size, config.grid_constructor,
            unbounded=event is not None, max_steps=config.max_num_steps)
    adaptive = isinstance(controller, StepSizeController)
    # (one of the two, by `adaptive`; cast once, so the loop has no isinstance per step)
    stepper, grid = cast(StepSizeController, controller), cast(FixedGrid, controller)
    replay = not adaptive and grid.replay
    t, t_end = times[0], times[-1]
    direction = math.copysign(1.0, t_end - t)
    sink = event if event is not None else OutputTimes(times, y0, snap=(
        0.0 if tableau.adaptive else 1e-9))
    solution = Solution(t=None, ys=None, stats=stats)
    newton = newton if newton is not None else new_newton(func, config, stats)
    # an Adams method keeps its history of slopes here, and counts its own evaluations of f
    adams = config.multistep.stepper(func, time, stats) if config.multistep is not None else None
    perturb = config.perturb
    y, nfe, n_steps, n_accepted = y0, 0, 0, 0
    h = h_next = math.nan
    if adaptive:   # the first slope, for the first step's size and the first stage
        f0 = func(time(t), y0)
        nfe = 1
        h, first_nfe = _first_step(stepper, config, func, t, t_end, y0, f0, h0, time)
        nfe += first_nfe
        memory, ratio, newton_failures = stepper.start(), 0.0, 0
        eps = torch.finfo(y0.dtype).eps
        k = tableau.error_exponent
        landmarks = Landmarks(config.step_t, config.jump_t, t, direction)
        stiffness = (StiffnessDetector(tableau) if config.detect_stiffness and tableau.fsal
                     and not tableau.implicit else None)
    max_steps = config.max_num_steps if adaptive else grid.max_steps
    dense = tableau.dense if tableau.dense is not None else np.zeros((0, 0))
    if recorder is not None:
        recorder.offer(0, t, y, f0 if tableau.adaptive else None)
    try:
        while True:
            # --- where does this step end? -----------------------------------------------
            if adaptive:
                if n_steps >= config.max_num_steps or abs(h) <= _resolution(t, eps):
                    _guard(n_steps, config, t, t_end, h, eps, ratio, y0.dtype)
                t1 = t + h
                if direction * (t1 - t_end) >= 0:
                    t1, h = t_end, t_end - t                # land exactly on the final time
                elif not math.isfinite(t1):
                    _unbounded_step(t, h, n_accepted)
                t1, jump = landmarks.clip(t, t1, h)
            else:
                if max_steps is not None and n_steps >= max_steps:
                    raise EventNotFoundError(
                        f"the event never happened: event_fn did not cross zero in "
                        f"{n_steps} steps of size {abs(h):.3g}, up to t={t:.6g}; check "
                        "event_fn, or raise options['max_num_steps']")
                try:
                    t1, jump = grid.next_end()
                except StopIteration:
                    break
            h = t1 - t
            if callbacks is not None:
                callbacks.step(t, y, h)
            n_steps += 1
            # --- the step --------------------------------------------------------------------
            if f0 is None and not tableau.diag(0):   # (a first implicit stage needs no f0)
                f0 = func(_nudge(time(t), t1) if perturb else time(t), y)
                nfe += 1
            # a step ending on a jump of f, or one avoiding the grid points (perturb),
            # evaluates its last stages just before its end
            end_time = _nudge(time(t1), t) if (jump or perturb) else None
            if adaptive:
                try:
                    y1, ks = rk_step(func, t, y, f0, h, tableau, time, end_time, newton)
                except NewtonFailure as failure:   # rejected: retry smaller (or fresh J)
                    if failure.nonfinite:   # (the underflow guard then blames NaN, not h)
                        ratio = math.nan
                    h = _after_newton_failure(newton, failure, t, h, newton_failures)
                    newton_failures += 1
                    if record_trace:
                        stats.trace.append(StepRecord(t, t1 - t, math.nan, False))
                    continue
                newton_failures = 0
                with torch.no_grad():
                    err = error_estimate(ks, tableau, h)
                    if newton is not None:   # filtered by (I - hγJ)⁻¹: stiff parts not overrated
                        err = newton.solve_linear(err)
                    ratio = stepper.error_ratio(err, y, y1)
                accepted, h_next, memory = stepper.adapt(ratio, h, memory, k)
            elif adams is not None:
                y1, ks = adams.step(t, t1, y, f0, end_time), []
                accepted, ratio = True, math.nan
            else:
                y1, ks = _fixed_size_step(func, t, y, f0, h, tableau, time, newton, end_time,
                                          replay)
                accepted, ratio = True, math.nan
            if newton is None and adams is None:   # (Newton and Adams count their own)
                nfe += tableau.stages - 1
            if record_trace:
                stats.trace.append(StepRecord(t, h, ratio, accepted))
            if not accepted:
                if callbacks is not None:
                    callbacks.reject(t, y, h)
                if not math.isfinite(ratio) and f0 is not None and not bool(
                        torch.isfinite(f0).all()):
                    raise NonFiniteError(f"func returned NaN/inf at t={t:.6g} for a finite state")
                h = h_next
                continue
            # --- an accepted step --------------------------------------------------------------
            if adaptive and callbacks is not None:
                callbacks.accept(t, y, h)
            if tableau.adaptive:
                if not tableau.fsal:   # the end slope: for dense output and the next step
                    ks.append(func(time(t1), y1))
                    nfe += 1
                # (a lambda, not an object: it is built on every step of the hot loop)
                interpolant: Callable[[list[float]], torch.Tensor] | _GridInterpolant = (
                    lambda thetas, y=y, ks=ks, h=h: interpolate(y, ks, h, thetas, dense))
            else:
                interpolant = _GridInterpolant(func, time, config.interp, t1, h, y, f0, y1)
            done = sink.after_step(t, t1, y, y1, interpolant)
            solution.step_start.append(t)
            solution.step_h.append(h)
            if tableau.adaptive:
                f1 = ks[-1]
                if jump:   # f jumps here: restart from the slope on the far side
                    f1 = func(_nudge(time(t1), t1 + direction), y1)
                    nfe += 1
            else:   # the end slope, if interpolation needed it, is the next step's first stage
                assert isinstance(interpolant, _GridInterpolant)
                nfe += interpolant.nfe
                f1 = None if perturb else interpolant.f1
            if adaptive:
                landmarks.passed(t1)
                if stiffness is not None:
                    stiffness.after_accepted_step(
                        t1, h, y, ks, y1, lambda i, y=y, ks=ks, h=h: combine(
                            y, ks, tableau.stage_terms[i], tableau.weights(i, y.dtype, y.device),
                            h))   # Y_i, the point where stage i evaluated f (when asked)
                h = h_next
            t, y, f0 = t1, y1, f1
            n_accepted += 1
            if recorder is not None:
                recorder.offer(n_accepted, t, y, f0 if tableau.adaptive else None)
            if done and not replay:   # (a replay runs to the end of its steps)
                break
    finally:   # counters are recorded even when the solve fails: they explain the failure
        stats.nfe += nfe
        stats.n_accepted += n_accepted
        if adaptive:
            solution.h_next = abs(h)
            stats.n_rejected += n_steps - n_accepted
    solution.ys = sink.stacked()
    solution.y_last, solution.f_last = y, f0
    if not adaptive and event is None and not replay:
        _check_finite_outputs(solution.ys, times)
    return solution


def _first_step(controller, config, func, t, t_end, y0, f0, h0, time) -> tuple[float, int]:
    """The first step of an adaptive solve, and the evaluations of f it cost."""
    direction = math.copysign(1.0, t_end - t)
    if h0 is not None:
        return direction * min(abs(h0), abs(t_end - t)), 0
    if config.first_step is not None:
        return direction * config.first_step, 0
    k = config.tableau.error_exponent
    return direction * controller.initial_step(func, t, y0, f0, direction, k, time), 1


def _unbounded_step(t: float, h: float, n_accepted: int):
    """A step end that is not finite: NaN from func, or (event search) a step grown to inf."""
    if math.isnan(h):
        raise NonFiniteError(f"the step size became NaN at t={t:.6g}: func returned NaN/inf "
                             "for a finite state")
    raise EventNotFoundError(
        f"the event never happened: event_fn did not cross zero before time overflowed (the "
        f"step size grew without bound after t={t:.6g}, {n_accepted} steps); check event_fn, "
        "or give t a finite end")


def _resolution(t: float, eps: float) -> float:
    """The smallest step worth taking at ``t``: a few units in the last place of t itself
    (relative, so that a problem's time unit does not matter; flooring |t| at 1, as nodelib
    did before, stopped a float32 solve near t = 0.5 with h = 16 ulps of t)."""
    return 8 * eps * max(abs(t), 1e-300)


def _guard(n_steps, config, t, t_end, h, eps, ratio, dtype) -> None:
    """Stop an adaptive solve that can no longer advance: too many steps, or h underflow."""
    if n_steps >= config.max_num_steps:
        kind = EventNotFoundError if math.isinf(t_end) else MaxStepsExceededError
        raise kind(
            f"reached max_num_steps={config.max_num_steps} at t={t:.6g} before "
            + (f"t={t_end:.6g}" if math.isfinite(t_end) else "any event")
            + "; the problem may be stiff or blow up — raise options['max_num_steps'] or "
            "loosen rtol/atol")
    if abs(h) <= _resolution(t, eps):
        if not math.isfinite(ratio):
            raise NonFiniteError(
                f"the state or func became NaN/inf on every step tried after t={t:.17g}, "
                "down to the smallest step size: func may be undefined beyond this time")
        raise StepSizeUnderflowError(
            f"step size underflow at t={t:.17g}: h={abs(h):.3g} is too small to advance "
            f"time in {dtype}; the solution may blow up (finite-time singularity)"
            + (", or f is discontinuous or ill-posed here" if config.tableau.implicit else
               " or the problem is too stiff for an explicit method (try radau5)"))


class _GridInterpolant:
    """Between two grid points: the cubic Hermite through the values and slopes at both ends
    (error O(h⁴), below that of the fixed-step methods up to rk4, so outputs never add steps),
    or the straight line (``interp="linear"``, the default of the implicit methods: a cubic
    through stiff slopes overshoots without bound, the line stays between the grid values, and
    its O(h²) error is within these order-1 and order-2 methods' own).

    The end slope is evaluated on first use and kept: it is also the next step's first stage.
    (One kept from a call under ``no_grad`` — the event locator's bisection — is evaluated
    again for a call that records a graph.) ``nfe`` counts the evaluations made here."""
    __slots__ = (
        "f0",
        "f1",
        "func",
        "graphless",
        "h",
        "linear",
        "nfe",
        "own_f0",
        "t1",
        "time",
        "y",
        "y1",
    )

    def __init__(self, func, time, interp, t1, h, y, f0, y1):
        self.func, self.time, self.linear = func, time, interp == "linear"
        self.t1, self.h, self.y, self.f0, self.y1 = t1, h, y, f0, y1
        self.f1, self.nfe, self.own_f0, self.graphless = None, 0, f0 is None, False

    def __call__(self, thetas: list[float]) -> torch.Tensor:
        y, y1, h = self.y, self.y1, self.h
        if self.linear:
            return interpolate(y, [(y1 - y) / h], h, thetas, _LINEAR)
        if self.f1 is None or (self.graphless and torch.is_grad_enabled()):
            self.graphless = not torch.is_grad_enabled()
            self.f1 = self.func(self.time(self.t1), y1)
            self.nfe += 1
            if self.own_f0:   # a first implicit stage needed no f0; the cubic does
                self.f0 = self.func(self.time(self.t1 - h), y)
                self.nfe += 1
        return hermite(y, self.f0, y1, self.f1, h, thetas)


def new_newton(func, config: SolveConfig, stats: PassStats) -> Newton | None:
    """The Newton solver of an implicit method's solve (None for an explicit method)."""
    if not config.tableau.implicit:
        return None
    # a fixed-step method cannot shrink its step when Newton struggles: let it iterate longer
    iterations = 8 if config.adaptive else 50
    return Newton(func, *config.newton_tolerances, stats, max_iterations=iterations)


def _fixed_size_step(func, t, y, f, h, tableau, time, newton, end_time, replay: bool):
    """One step whose size may not change (a grid step, or a replayed forward step). An
    implicit one whose simplified Newton iteration fails retries with a fresh Jacobian, then
    with full Newton; the third failure ends the solve."""
    for attempt in range(3):   # attempt 0: cached J; 1: fresh J; 2: full Newton
        try:
            return rk_step(func, t, y, f, h, tableau, time, end_time, newton,
                           full_newton=attempt == 2)
        except NewtonFailure as failure:
            if attempt < 2:
                newton.refresh_jacobian()
                continue
            if replay:
                raise ODESolverError(f"re-running the step from t={t:.6g} for the "
                                     f"checkpointed gradient: {failure}") from None
            raise NewtonConvergenceError(
                f"Newton's method failed in the step from t={t:.6g} (h={h:.3g}): {failure}; use "
                "a smaller step_size or an adaptive implicit method (radau5)") from None
    raise AssertionError("unreachable")


def _nudge(t: torch.Tensor, towards: float) -> torch.Tensor:
    """The next representable time after ``t`` in the direction of ``towards``."""
    return torch.nextafter(t, torch.full_like(t, towards))


def _check_finite_outputs(out: torch.Tensor, times: list[float]) -> None:
    """One check (one host sync) for a whole fixed-grid solve, naming the first bad output."""
    finite = torch.isfinite(out.detach().reshape(len(out), -1)).all(dim=1)
    if not bool(finite.all()):
        i = int((~finite).nonzero()[0])
        raise NonFiniteError(
            f"the solution became NaN/inf: first non-finite output is at t={times[i]:.6g} "
            f"(index {i}); the step size may be too large for this problem (try a smaller "
            "step_size or an adaptive method)")


def _after_newton_failure(newton, failure, t, h, failures) -> float:
    """A step whose Newton iteration failed is rejected: retry with a fresh Jacobian, else
    with a quarter of the step; after ten failures in a row, give up."""
    if failures >= 10:
        if failure.nonfinite:
            raise NonFiniteError(
                f"func returned NaN/inf in Newton's iteration on every step tried at t={t:.6g} "
                f"(down to h={abs(h):.3g}): func may be undefined beyond this time")
        raise NewtonConvergenceError(
            f"Newton's method failed {failures + 1} times in a row at t={t:.6g} (last step "
            f"h={abs(h):.3g}): {failure}; the problem may be ill-posed there, or loosen rtol/atol")
    if not newton.fresh:
        newton.refresh_jacobian()
        return h
    return 0.25 * h


def solve_problem(problem: Problem, stats: PassStats, *, event_fn=None,
                  record_trace: bool = False, h0: float | None = None, callbacks="default",
                  recorder=None) -> Solution:
    """Run the integrate loop on a prepared problem (flat states in, a Solution out)."""
    times = problem.times
    t = problem.t
    if len(times) == 1 and event_fn is None:
        return Solution(t=t, ys=problem.y0.unsqueeze(0), stats=stats)
    if problem.config.scipy is not None:   # scipy takes the steps: no loop here
        return scipy_solution(problem, stats, event_fn)
    event = None
    if event_fn is not None:
        if len(times) != 2:
            raise ValueError(f"event handling needs t = [t0, t1] (t1 gives only the direction), "
                             f"got {len(times)} times")
        event_fn = _flat_event_fn(event_fn, problem)
        event = EventLocator(event_fn, times[0], problem.y0, _event_tol(problem.config),
                             time_factory(problem.y0))
        times = [times[0], times[0] + (math.inf if times[1] > times[0] else -math.inf)]
    callbacks = problem.callbacks if callbacks == "default" else callbacks
    try:
        solution = integrate(problem.func, problem.y0, times, problem.config, stats,
                             callbacks=callbacks, event=event, record_trace=record_trace,
                             h0=h0, recorder=recorder)
    except StiffnessError as stiff:
        if event is None:
            raise
        # an event search has no end time: say first that the event has not happened yet
        raise EventNotFoundError(
            f"the event never happened: event_fn did not cross zero before the search "
            f"stopped ({stiff})") from stiff
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


__all__ = ["integrate", "solve_problem"]
