"""Step-size control: error norms, the first step, and controller objects — adaptive (I, PI,
PID) and fixed (:class:`FixedGrid`).

An adaptive controller owns everything that decides step sizes: the tolerances, the error norm,
the safety factor, the limits on how fast h may change and on h itself. The integrate loop asks
it three things — a first step, the error ratio of an attempted step, and ``adapt``: accept this
step? which step next? A :class:`FixedGrid` answers a simpler question — where does the next
step end? — for a fixed-step method's grid and for the checkpointed gradient's replay of the
forward's steps; its steps are always accepted. (The loop itself still clips an adaptive step to
the end time and to ``step_t``/``jump_t``, and quarters it after a Newton failure.)

Why these defaults: the mixed RMS norm scales each component by ``atol + rtol·|y|`` so a ratio of
1 means "exactly at tolerance" whatever the units; the PI controller (Gustafsson; β of Hairer's
DOPRI5 code) damps the oscillation of a pure I controller; the initial-step heuristic (Hairer,
Nørsett & Wanner, II.4) costs one extra evaluation and avoids a cascade of rejections at the start.
"""
from __future__ import annotations

import abc
import itertools
import math
from collections.abc import Iterable

import numpy as np
import torch


# --- error norms: a tensor of scaled errors (shaped like the state) -> a 0-d tensor ----------
def rms_norm(x: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(x) / math.sqrt(max(x.numel(), 1))


def per_sample_rms_norm(x: torch.Tensor) -> torch.Tensor:
    """The largest per-sample RMS over the batch (dimension 0): every sample of a batch of
    independent problems meets the tolerance on its own, while all share the same steps. One RMS
    over the whole batch would let a few hard samples hide behind many easy ones."""
    if x.dim() < 1:
        raise ValueError("the 'per_sample' norm needs a state with a batch dimension (dim 0)")
    per_sample = torch.linalg.vector_norm(x.reshape(x.shape[0], -1), dim=1)
    return per_sample.max() / math.sqrt(max(x[0].numel(), 1))


NORMS = {"rms": rms_norm, "per_sample": per_sample_rms_norm}


def scaled_error(err: torch.Tensor, y0: torch.Tensor, y1: torch.Tensor, rtol: float,
                 atol: float) -> torch.Tensor:
    """``err / (atol + rtol·max(|y0|, |y1|))``, shaped like the state (call under no_grad)."""
    scale = torch.maximum(y0.detach().abs(), y1.detach().abs())
    scale = scale.mul_(rtol).add_(atol)
    return err / scale


# --- controllers ------------------------------------------------------------------------------
class StepSizeController(abc.ABC):
    """Base class: tolerances, norm, the first step, and the accept/next-step rule.

    Subclasses only say how the error ratios of the last few steps set the growth factor
    (:meth:`_factor`). ``min_factor``/``max_factor`` bound the change of h per step;
    ``min_step``/``max_step`` bound |h| itself (a step at ``min_step`` is accepted whatever its
    error, as torchdiffeq does).
    """

    def __init__(self, rtol: float = 1e-7, atol: float = 1e-9, norm=rms_norm, *,
                 safety: float = 0.9, min_factor: float = 0.2, max_factor: float = 10.0,
                 min_step: float = 0.0, max_step: float = math.inf):
        if not (rtol >= 0 and atol >= 0 and rtol + atol > 0):
            raise ValueError(f"rtol and atol must be non-negative and not both zero, "
                             f"got rtol={rtol}, atol={atol}")
        if not (0 < safety <= 1 and 0 < min_factor <= 1 <= max_factor):
            raise ValueError(f"need 0 < safety <= 1 and 0 < min_factor <= 1 <= max_factor, got "
                             f"safety={safety}, min_factor={min_factor}, max_factor={max_factor}")
        if not 0 <= min_step <= max_step:
            raise ValueError(f"need 0 <= min_step <= max_step, got {min_step}, {max_step}")
        self.rtol, self.atol, self.norm = float(rtol), float(atol), norm
        self.safety, self.min_factor, self.max_factor = safety, min_factor, max_factor
        self.min_step, self.max_step = float(min_step), float(max_step)

    def error_ratio(self, err: torch.Tensor, y0: torch.Tensor, y1: torch.Tensor) -> float:
        """The norm of the error relative to the tolerance: <= 1 means within tolerance."""
        with torch.no_grad():
            return float(self.norm(scaled_error(err, y0, y1, self.rtol, self.atol)))

    def clip(self, h: float) -> float:
        """``h`` with its size moved into [min_step, max_step]."""
        return math.copysign(min(max(abs(h), self.min_step), self.max_step), h)

    def start(self) -> tuple:
        """The controller's memory before the first step (error ratios of earlier steps)."""
        return ()

    def adapt(self, ratio: float, h: float, memory: tuple, error_exponent: int):
        """Returns ``(accept, h_next, memory)`` for a step of size ``h`` with this error ratio.
        After a rejection the step never grows."""
        # (a step at min_step, up to the rounding of t + h - t, is accepted whatever its error)
        accept = ratio <= 1.0 or abs(h) <= self.min_step * (1 + 1e-12)
        if ratio == 0.0:
            factor = self.max_factor
        elif not math.isfinite(ratio):
            factor = self.min_factor
        elif accept:
            factor = self._factor(ratio, memory, error_exponent)
            factor = min(self.max_factor, max(self.min_factor, factor))
            memory = self._remember(ratio, memory)
        else:
            factor = self.safety * ratio ** (-1.0 / error_exponent)
            factor = min(1.0, max(self.min_factor, factor))
        return accept, self.clip(h * factor), memory

    @abc.abstractmethod
    def _factor(self, ratio: float, memory: tuple, k: int) -> float:
        """The growth factor after an accepted step (each controller's own rule)."""

    def _remember(self, ratio: float, memory: tuple) -> tuple:
        return ()

    def initial_step(self, func, t0: float, y0: torch.Tensor, f0: torch.Tensor,
                     direction: float, error_exponent: int, time) -> float:
        """Hairer's starting step: make the first Euler step's change and the change of f small
        relative to the tolerance. Costs one evaluation of ``func``."""
        norm, rtol, atol = self.norm, self.rtol, self.atol
        with torch.no_grad():
            scale = y0.detach().abs().mul(rtol).add_(atol)
            d0 = norm(y0.detach() / scale)
            d1 = norm(f0.detach() / scale)
            d0, d1 = torch.stack([d0, d1]).tolist()
            h0 = 1e-6 if (d0 < 1e-5 or d1 < 1e-5) else 0.01 * d0 / d1
            y1 = y0.detach() + (direction * h0) * f0.detach()
            f1 = func(time(t0 + direction * h0), y1)
            d2 = float(norm((f1.detach() - f0.detach()) / scale)) / h0
        if max(d1, d2) <= 1e-15:
            h1 = max(1e-6, h0 * 1e-3)
        else:
            h1 = (0.01 / max(d1, d2)) ** (1.0 / error_exponent)
        return self.clip(min(100.0 * h0, h1))

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(rtol={self.rtol}, atol={self.atol}, "
                f"norm={getattr(self.norm, '__name__', self.norm)})")


class IController(StepSizeController):
    """``h_new = h · safety · r^(-1/k)``: the classical controller (k the error exponent)."""

    def _factor(self, ratio, memory, k):
        return self.safety * ratio ** (-1.0 / k)


class PIController(StepSizeController):
    """``h_new = h · safety · r^(-1/k) · r_prev^β`` (r_prev the previous accepted ratio). The
    r_prev term damps the step-size oscillation near the tolerance; it is floored at
    ``memory_floor`` so that a step far more accurate than needed (typical right after the first
    step) does not throttle the growth that follows. nodelib's default controller."""

    def __init__(self, *args, beta: float = 0.04, memory_floor: float = 0.1, **kwargs):
        super().__init__(*args, **kwargs)
        self.beta, self.memory_floor = beta, memory_floor

    def _factor(self, ratio, memory, k):
        prev = memory[0] if memory else 1.0   # no history yet: the plain I controller
        return self.safety * ratio ** (-1.0 / k) * prev ** self.beta

    def _remember(self, ratio, memory):
        return (max(ratio, self.memory_floor),)


class PIDController(StepSizeController):
    """Söderlind's digital filters: ``h_new = h · safety · Π_j r_{n-j}^(-β_j / k)`` over the
    current and the two previous accepted ratios. The default gains ``(1/18, 1/9, 1/18)`` are his
    H312PID filter (Söderlind 2003), which smooths the step-size sequence; ``(1/6, 1/6, 0)`` is
    H211PI."""

    H312PID = (1 / 18, 1 / 9, 1 / 18)
    H211PI = (1 / 6, 1 / 6, 0.0)

    def __init__(self, *args, gains: tuple[float, float, float] = H312PID, **kwargs):
        super().__init__(*args, **kwargs)
        if len(gains) != 3:
            raise ValueError(f"PIDController needs three gains, got {gains!r}")
        self.gains = tuple(float(g) for g in gains)

    def _factor(self, ratio, memory, k):
        ratios = (ratio,) + tuple(memory) + (ratio,) * (2 - len(memory))
        factor = self.safety
        for gain, r in zip(self.gains, ratios):
            factor *= max(r, 1e-10) ** (-gain / k)
        return factor

    def _remember(self, ratio, memory):
        return ((ratio,) + tuple(memory))[:2]


CONTROLLERS = {"I": IController, "PI": PIController, "PID": PIDController}


class FixedGrid:
    """Steps whose ends are known before the solve: every step is accepted, nothing estimated
    (diffrax's ``StepTo``, torchode's ``FixedStepController``).

    Two uses, one loop: a fixed-step method's grid (:meth:`for_times`), and the checkpointed
    gradient's replay of the forward solve's accepted steps (``replay=True``), whose ``jumps``
    are the step ends where f jumps (``jump_t``). ``max_steps`` caps an unbounded grid (event
    mode)."""

    adaptive = False

    def __init__(self, ends: Iterable[float], jumps: Iterable[float] = (), *,
                 replay: bool = False, max_steps: int | None = None):
        self._ends = iter(ends)
        self.jumps = frozenset(jumps)
        self.replay, self.max_steps = replay, max_steps

    def next_end(self) -> tuple[float, bool]:
        """The end of the next step, and whether f jumps there. ``StopIteration`` at the end."""
        t1 = next(self._ends)
        return t1, t1 in self.jumps

    @classmethod
    def for_times(cls, func, y0: torch.Tensor, times: list[float], step_size: float | None,
                  grid_constructor, *, unbounded: bool = False,
                  max_steps: int | None = None) -> FixedGrid:
        """The grid points after t0: t0 + k·step_size, then t[-1] (a point closer than
        1e-9·step to t[-1] is moved onto it); or the points of ``grid_constructor(func, y0,
        t)``; without either, the output times themselves. ``unbounded`` (event mode):
        t0 + k·step_size forever, at most ``max_steps`` of them."""
        t0, t_end = times[0], times[-1]
        direction = math.copysign(1.0, t_end - t0)
        if unbounded:
            if step_size is None:
                raise ValueError("event handling with a fixed-step method needs "
                                 "options['step_size']")
            step = step_size
            return cls((t0 + direction * k * step for k in itertools.count(1)),
                       max_steps=max_steps)
        if grid_constructor is not None:
            return cls(_constructed_grid(func, y0, times, grid_constructor))
        if step_size is None:
            return cls(times[1:])
        n = math.floor(abs(t_end - t0) / step_size + 1e-9)
        grid = [t0 + direction * k * step_size for k in range(1, n + 1)]
        if grid and abs(grid[-1] - t_end) <= 1e-9 * step_size:
            grid[-1] = t_end
        else:
            grid.append(t_end)
        return cls(grid)


def _constructed_grid(func, y0, times, grid_constructor) -> list[float]:
    t = torch.tensor(times, dtype=y0.dtype, device=y0.device)
    points = torch.as_tensor(grid_constructor(func, y0, t)).detach().reshape(-1).cpu().double()
    grid: list[float] = points.tolist()
    if len(grid) < 2 or grid[0] != times[0] or grid[-1] != times[-1]:
        raise ValueError(f"grid_constructor must return a grid from t[0]={times[0]:.6g} to "
                         f"t[-1]={times[-1]:.6g}; got {len(grid)} points from "
                         f"{grid[0] if grid else None} to {grid[-1] if grid else None}")
    steps = np.diff(grid) * math.copysign(1.0, times[-1] - times[0])
    if not (steps > 0).all():
        raise ValueError("grid_constructor returned a grid that is not strictly monotone in the "
                         "direction of t")
    return grid[1:]
