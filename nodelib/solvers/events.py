"""The event locator: where does ``event_fn(t, y)`` cross zero?

The integrate loop hands every accepted step to an :class:`EventLocator`, which checks the sign
of the event function at the step's end and, on a crossing, finds it by bisection on the step's
dense output. Only the *value* of the event time is found here; its gradient (the implicit
function theorem) lives above the solver, in :mod:`nodelib.gradients.events`. This module
imports nothing else of nodelib, as torchdiffeq's ``event_handling.py`` does.
"""
from __future__ import annotations

import math

import torch


def combine_signs(event_fn, t0: torch.Tensor, y0: torch.Tensor):
    """One scalar event function for a (possibly vector-valued) ``event_fn``: every component
    made positive at (t0, y0), so "some component crossed" is "the min is <= 0"."""
    with torch.no_grad():
        signs = torch.sign(check_event_value(event_fn(t0, y0), t0))
    return lambda t, y: torch.min(event_fn(t, y) * signs)


def check_event_value(value, t) -> torch.Tensor:
    """The event function's value, checked: a non-empty real tensor, finite."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"event_fn(t, y) must return a tensor, got {type(value).__name__} "
                        f"(at t={float(t):.6g})")
    if value.numel() == 0 or not value.is_floating_point():
        raise ValueError(f"event_fn(t, y) must return a non-empty floating-point tensor, got "
                         f"shape {tuple(value.shape)} and dtype {value.dtype} "
                         f"(at t={float(t):.6g})")
    return value


class EventLocator:
    """Watches the accepted steps for a sign change of the (combined) event function."""

    def __init__(self, event_fn, t0: float, y0: torch.Tensor, tol: float, time):
        self.time, self.tol = time, max(float(tol), 1e-12)
        self.event_fn = combine_signs(event_fn, time(t0), y0)
        self.y0, self.found = y0, False
        self.t_event: float | None = None
        self.y_event: torch.Tensor | None = None
        self._value(t0, y0)   # a NaN at the start is reported before the first step

    def _value(self, t: float, y: torch.Tensor) -> float:
        with torch.no_grad():
            value = float(self.event_fn(self.time(t), y))
        if math.isnan(value):
            raise ValueError(f"event_fn(t, y) returned NaN at t={t:.6g}: an event function "
                             "must be defined (finite or ±inf) wherever the solve goes")
        return value

    def after_step(self, t0: float, t1: float, y0: torch.Tensor, y1: torch.Tensor,
                   interpolant) -> bool:
        """Look for a crossing in the step from t0 to t1; True once the event is found."""
        h = t1 - t0
        if self._value(t0 + h, y1) > 0:   # (t0 + h, as 0.2 had it: bit-identical events)
            return False
        # bisection on θ ∈ [0, 1] until the bracket is below tol in time
        lo, hi = 0.0, 1.0
        with torch.no_grad():
            for _ in range(max(1, math.ceil(math.log2(abs(h) / self.tol)))):
                mid = 0.5 * (lo + hi)
                if self._value(t0 + mid * h, interpolant([mid])[0]) > 0:
                    lo = mid
                else:
                    hi = mid
        theta = 0.5 * (lo + hi)
        # the state at the event keeps its graph to y0 and the parameters (time held fixed)
        self.t_event, self.y_event = t0 + theta * h, interpolant([theta])[0]
        self.found = True
        return True

    def stacked(self) -> torch.Tensor:
        assert self.y_event is not None, "no event found"
        return torch.stack([self.y0, self.y_event])
