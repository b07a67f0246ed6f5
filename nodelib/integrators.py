"""Integrators: march a tableau's steps across the output times.

* :func:`fixed_grid` — steps of ``options["step_size"]`` (or one step per output interval), with
  the output times inserted into the grid so outputs are exact step results, not interpolations.
* :func:`adaptive` — embedded error estimate, mixed RMS norm, PI controller, Hairer's first step
  and dense output; one host sync per step (the accept/reject decision).

Both return the states at every output time stacked on a new leading dimension (index 0 is y0).
Times are Python floats here: the step-size arithmetic never touches the device.
"""
from __future__ import annotations

import math

import torch

from .control import PIController, initial_step, rms_norm, scaled_error
from .errors import MaxStepsExceededError, NonFiniteError, StepSizeUnderflowError
from .interpolation import dense_output
from .stats import PassStats, StepRecord
from .stepper import error_estimate, rk_step
from .tableaux import ButcherTableau

DEFAULT_MAX_NUM_STEPS = 100_000


def time_factory(like: torch.Tensor):
    """Build the 0-d time tensors handed to ``func``, on y's device and in y's dtype."""
    dtype, device = like.dtype, like.device
    return lambda value: torch.full((), value, dtype=dtype, device=device)


def fixed_grid(func, y0: torch.Tensor, times: list[float], tableau: ButcherTableau, *,
               options: dict, stats: PassStats | None, **_) -> torch.Tensor:
    """Steps of ``options["step_size"]`` from t0 (the last one shortened to end on t[-1]);
    without it, one step per output interval. Outputs that fall between grid points come from
    cubic Hermite interpolation (error O(h⁴), below that of the methods up to rk4), so asking
    for many outputs never adds steps."""
    time = time_factory(y0)
    grid = _fixed_grid(times, options.get("step_size"))
    outputs, y, t, f = [y0.unsqueeze(0)], y0, times[0], None
    next_out, nfe = 1, 0
    record = stats is not None
    for t1 in grid:
        h = t1 - t
        if f is None:
            f = func(time(t), y)
            nfe += 1
        y1, _ = rk_step(func, t, y, f, h, tableau, time)
        nfe += tableau.stages - 1
        if record:
            stats.trace.append(StepRecord(t, h, math.nan, True))
        last = next_out
        while last < len(times) and _strictly_before(times[last], t1, h):
            last += 1
        f1 = None
        if last > next_out:       # outputs inside this step: interpolate
            f1 = func(time(t1), y1)
            nfe += 1
            thetas = [(times[j] - t) / h for j in range(next_out, last)]
            outputs.append(hermite(y, f, y1, f1, h, thetas))
        if last < len(times) and abs(times[last] - t1) <= 1e-9 * abs(h):
            outputs.append(y1.unsqueeze(0))
            last += 1
        next_out = last
        t, y, f = t1, y1, f1
    if record:
        stats.nfe += nfe
        stats.n_accepted += len(grid)
    out = torch.cat(outputs)
    _check_finite_outputs(out, times)
    return out


def _strictly_before(t_out: float, t1: float, h: float) -> bool:
    return (t1 - t_out) / h > 1e-9


def _fixed_grid(times: list[float], step_size: float | None) -> list[float]:
    """Grid points after t0: t0 + k·step_size, then t[-1] (a point closer than 1e-9·step to
    t[-1] is moved onto it). Without a step size, the output times themselves."""
    if step_size is None:
        return list(times[1:])
    t0, t_end = times[0], times[-1]
    direction = math.copysign(1.0, t_end - t0)
    n = int(math.floor(abs(t_end - t0) / step_size + 1e-9))
    grid = [t0 + direction * k * step_size for k in range(1, n + 1)]
    if grid and abs(grid[-1] - t_end) <= 1e-9 * step_size:
        grid[-1] = t_end
    else:
        grid.append(t_end)
    return grid


def hermite(y0, f0, y1, f1, h: float, thetas: list[float]) -> torch.Tensor:
    """Cubic Hermite interpolation inside one step, for many θ at once: (m, *y0.shape)."""
    weights = [[2 * th**3 - 3 * th**2 + 1, h * (th**3 - 2 * th**2 + th),
                -2 * th**3 + 3 * th**2, h * (th**3 - th**2)] for th in thetas]
    w = torch.tensor(weights, dtype=y0.dtype, device=y0.device)
    basis = torch.stack([y0, f0, y1, f1]).reshape(4, -1)
    return (w @ basis).view(len(thetas), *y0.shape)


def _check_finite_outputs(out: torch.Tensor, times: list[float]) -> None:
    finite = torch.isfinite(out.detach().reshape(len(times), -1)).all(dim=1)
    if not bool(finite.all()):
        i = int((~finite).nonzero()[0])
        raise NonFiniteError(
            f"the solution became NaN/inf: first non-finite output is at t={times[i]:.6g} "
            f"(index {i}); the step size may be too large for this problem (try a smaller "
            "step_size or an adaptive method)")


def adaptive(func, y0: torch.Tensor, times: list[float], tableau: ButcherTableau, *,
             rtol: float, atol: float, options: dict, stats: PassStats | None,
             norm=rms_norm, step_memo: dict | None = None) -> torch.Tensor:
    """``step_memo``: when given, its ``"h"`` (if present) is the first step, and the step size
    proposed at the end is stored back — the adjoint's backward pass chains its intervals this
    way instead of re-estimating a first step for each."""
    time = time_factory(y0)
    t, t_end = times[0], times[-1]
    direction = math.copysign(1.0, t_end - t)
    max_steps = int(options.get("max_num_steps", DEFAULT_MAX_NUM_STEPS))
    eps = torch.finfo(y0.dtype).eps
    record = stats is not None

    f0 = func(time(t), y0)
    nfe = 1
    if step_memo and "h" in step_memo:
        h = direction * min(step_memo["h"], abs(t_end - t))
    elif "first_step" in options:
        h = direction * abs(float(options["first_step"]))
    else:
        h = direction * initial_step(func, t, y0, f0, direction, tableau.error_exponent,
                                     rtol, atol, norm, time)
        nfe += 1
    controller = PIController(tableau.error_exponent)
    outputs, next_out, y = [y0.unsqueeze(0)], 1, y0
    n_steps = n_accepted = 0
    ratio = 0.0
    try:
        while next_out < len(times):
            if n_steps >= max_steps:
                raise MaxStepsExceededError(
                    f"reached max_num_steps={max_steps} at t={t:.6g} before t={t_end:.6g}; the "
                    "problem may be stiff or blow up — raise options['max_num_steps'] or loosen "
                    "rtol/atol")
            if abs(h) <= 8 * eps * max(abs(t), 1.0):
                if not math.isfinite(ratio):
                    raise NonFiniteError(
                        f"the state or func became NaN/inf on every step tried after t={t:.17g}, "
                        "down to the smallest step size: func may be undefined beyond this time")
                raise StepSizeUnderflowError(
                    f"step size underflow at t={t:.17g}: h={abs(h):.3g} is too small to advance "
                    f"time in {y0.dtype}; the solution may blow up (finite-time singularity) or "
                    "the problem is too stiff for an explicit method")
            if direction * (t + h - t_end) > 0:
                h = t_end - t                               # land exactly on the final time
            y1, ks = rk_step(func, t, y, f0, h, tableau, time)
            nfe += tableau.stages - 1
            n_steps += 1
            with torch.no_grad():
                ratio = norm(scaled_error(error_estimate(ks, tableau, h), y, y1, rtol, atol)).item()
            accepted = ratio <= 1.0
            if record:
                stats.trace.append(StepRecord(t, h, ratio, accepted))
            if accepted:
                t1 = t + h
                last = next_out
                while last < len(times) and direction * (times[last] - t1) < 0:
                    last += 1
                if last > next_out:   # output times strictly inside this step: dense output
                    thetas = [(times[j] - t) / h for j in range(next_out, last)]
                    outputs.append(dense_output(y, ks, h, thetas, tableau))
                if last < len(times) and times[last] == t1:
                    outputs.append(y1.unsqueeze(0))
                    last += 1
                next_out = last
                t, y, f0 = t1, y1, ks[-1]
                n_accepted += 1
            elif not math.isfinite(ratio) and not bool(torch.isfinite(f0).all()):
                raise NonFiniteError(f"func returned NaN/inf at t={t:.6g} for a finite state")
            h = h * controller.factor(ratio, accepted)
    finally:   # counters are recorded even when the solve fails: they explain the failure
        if step_memo is not None:
            step_memo["h"] = abs(h)
        if record:
            stats.nfe += nfe
            stats.n_accepted += n_accepted
            stats.n_rejected += n_steps - n_accepted
    return torch.cat(outputs)
