"""Where the accepted steps must deliver: the output times, and the landmarks a step must end on.

:class:`OutputTimes` collects the states at the output times as the accepted steps pass them.
It has the same ``after_step`` signature as the event locator (:mod:`nodelib.solvers.events`),
so the integrate loop hands every accepted step to one of the two and stops when it says so.
"""
from __future__ import annotations

import torch


class OutputTimes:
    """The states at the output times, collected step by step.

    An output time strictly inside a step is interpolated; one on the step's end (within
    ``snap·|h|``) takes the step's result itself. All outputs inside one step cost one call of
    the step's interpolant, whatever their number."""

    def __init__(self, times: list[float], y0: torch.Tensor, snap: float):
        self.times, self.snap = times, snap
        self.parts, self.next = [y0.unsqueeze(0)], 1

    @property
    def done(self) -> bool:
        return self.next >= len(self.times)

    def after_step(self, t0: float, t1: float, y0: torch.Tensor, y1: torch.Tensor,
                   interpolant) -> bool:
        """Take the outputs inside (t0, t1]; True once every output time has been reached."""
        times, h, last = self.times, t1 - t0, self.next
        while last < len(times) and (t1 - times[last]) / h > self.snap:
            last += 1
        if last > self.next:
            self.parts.append(interpolant([(times[j] - t0) / h for j in range(self.next, last)]))
        if last < len(times) and abs(times[last] - t1) <= self.snap * abs(h):
            self.parts.append(y1.unsqueeze(0))
            last += 1
        self.next = last
        return last >= len(times)

    def stacked(self) -> torch.Tensor:
        return torch.cat(self.parts)


class Landmarks:
    """``options["step_t"]`` and ``options["jump_t"]``: times a step must end on (for ``jump_t``,
    f is discontinuous there, so the next step starts from the slope on the far side)."""

    def __init__(self, step_t, jump_t, t0: float, direction: float):
        ahead = lambda ts: [s for s in ts if direction * (s - t0) > 0]
        marks = [(s, False) for s in ahead(step_t)] + [(s, True) for s in ahead(jump_t)]
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
