"""Adams methods on a fixed grid: torchdiffeq's ``explicit_adams`` (Adams–Bashforth) and
``implicit_adams`` (Adams–Bashforth–Moulton), as data plus one small stepper.

A linear multistep method reuses the slopes of earlier steps instead of evaluating new stages:
the k-step Adams–Bashforth formula (order k) is

    y_{n+1} = y_n + h Σ_{j<k} β_j f_{n-j},   β_j = ∫_0^1 ℓ_j(s) ds,

ℓ_j the Lagrange basis polynomial through the nodes s = 0, -1, …, -(k-1) (time in steps from
t_n); Adams–Moulton (order k) puts the nodes at 1, 0, …, -(k-2), so its first coefficient
multiplies the unknown f_{n+1}. The coefficients below are computed from that integral in exact
fractions, once, at import (``bashforth(4)`` is (55, -59, 37, -9)/24).

Start-up and order, as torchdiffeq's ``fixed_adams``: the first two steps are Kutta's 3/8 rule
(nodelib's ``rk4``); from then on the stepper uses every slope it has, up to ``max_order - 1``
of them (default 11): Adams–Bashforth of order 3, 4, …, 11, each step's own slope counted. The
``implicit_adams`` corrector is Adams–Moulton one order higher (up to 12), solved by functional
iteration from the Bashforth predictor: at most ``max_iters`` (default 4) evaluations of f,
stopping when the increment changes by less than ``atol + rtol·|increment|`` (max norm), where
rtol/atol are the solve's tolerances; a step whose iteration does not converge warns, and drops
the oldest slope (the next step is one order lower).

The start-up sets the global order on an even grid, not the late high orders: for
``explicit_adams`` its one Bashforth step of order 3 (local error O(h⁴)), so the error falls like
h⁴; for ``implicit_adams`` the 3/8-rule steps and the first Moulton step of order 4 (local
errors O(h⁵)): h⁵ (while the corrector converges; tests/solvers/test_multistep.py measures
both). Stability is the catch of the explicit method: Adams–Bashforth of order 11 is stable
only for |hλ| below about 0.0034 on the negative real axis (order 4: 0.3), so a default
``explicit_adams`` needs tiny steps, or ``options["max_order"] = 5`` (at most order 4).

One difference from torchdiffeq: the formulas hold for equal steps only. Where the grid's step
changes — the shorter last step onto ``t[-1]``, the points of a ``grid_constructor`` — the
stepper restarts (3/8 rule again) instead of applying the equal-step coefficients to an unequal
step. Gradients: backprop through the steps (``odeint``) and ``odeint_adjoint``'s
``"backsolve"``; ``strategy="checkpoint"`` replays segments from a single saved state, which a
multistep method cannot do (its history of slopes is not saved), so it is refused.
"""
from __future__ import annotations

import math
import warnings
from collections import deque
from dataclasses import dataclass
from fractions import Fraction

import torch

from .runge_kutta import combine, rk_step
from .tableaux import TABLEAUX

# torchdiffeq's limits: below 3 slopes the 3/8 rule starts the method; at most 11 (max_order 12)
_MIN_SLOPES = 3
MAX_ORDER = 12


def _poly_mul_linear(poly: list[Fraction], root: Fraction, scale: Fraction) -> list[Fraction]:
    """``poly(s) · (s - root) / scale`` (coefficients lowest degree first)."""
    out = [Fraction(0)] * (len(poly) + 1)
    for i, c in enumerate(poly):
        out[i + 1] += c / scale
        out[i] -= c * root / scale
    return out


def adams_coefficients(nodes: tuple[int, ...]) -> tuple[Fraction, ...]:
    """``∫_0^1 ℓ_j(s) ds`` for each Lagrange basis polynomial ℓ_j through ``nodes``, exactly."""
    weights = []
    for j, sj in enumerate(nodes):
        poly = [Fraction(1)]
        for m, sm in enumerate(nodes):
            if m != j:
                poly = _poly_mul_linear(poly, Fraction(sm), Fraction(sj - sm))
        weights.append(sum((c / (i + 1) for i, c in enumerate(poly)), Fraction(0)))
    return tuple(weights)


def bashforth(k: int) -> tuple[Fraction, ...]:
    """The k-step Adams–Bashforth weights of f_n, f_{n-1}, …, f_{n-k+1} (order k)."""
    return adams_coefficients(tuple(-j for j in range(k)))


def moulton(k: int) -> tuple[Fraction, ...]:
    """The Adams–Moulton weights of f_{n+1}, f_n, …, f_{n-k+2} (k slopes, order k)."""
    return adams_coefficients(tuple(1 - j for j in range(k)))


BASHFORTH = {k: bashforth(k) for k in range(1, MAX_ORDER)}
MOULTON = {k: moulton(k) for k in range(2, MAX_ORDER + 1)}


@dataclass(frozen=True)
class AdamsMethod:
    """An Adams method and its settings: ``implicit`` adds the Moulton corrector; ``max_order``
    bounds the history (``max_order - 1`` slopes); ``max_iters``, ``rtol``, ``atol``: the
    corrector's functional iteration (:func:`nodelib.odeint` passes its tolerances)."""
    name: str
    implicit: bool
    max_order: int = MAX_ORDER
    max_iters: int = 4
    rtol: float = 1e-7
    atol: float = 1e-9
    # the global order on an even grid, which the start-up sets (see the module's docstring)
    order: int = 4

    @property
    def startup(self):
        """The Runge–Kutta method of the first steps (torchdiffeq's: Kutta's 3/8 rule)."""
        return TABLEAUX["rk4"]

    def stepper(self, func, time, stats) -> AdamsStepper:
        return AdamsStepper(self, func, time, stats)


ADAMS_METHODS = {m.name: m for m in (AdamsMethod("explicit_adams", implicit=False, order=4),
                                     AdamsMethod("implicit_adams", implicit=True, order=5))}
ADAMS_OPTIONS = {"max_order", "max_iters"}


def adams_with_options(method: AdamsMethod, rtol: float, atol: float,
                       options: dict) -> AdamsMethod:
    """``method`` with the solve's tolerances and torchdiffeq's ``max_order``/``max_iters``."""
    max_order = options.get("max_order", method.max_order)
    if isinstance(max_order, bool) or not isinstance(max_order, int) \
            or not _MIN_SLOPES + 1 <= max_order <= MAX_ORDER:
        raise ValueError(f"options['max_order'] must be a whole number from {_MIN_SLOPES + 1} to "
                         f"{MAX_ORDER}, got {max_order!r}")
    max_iters = options.get("max_iters", method.max_iters)
    if isinstance(max_iters, bool) or not isinstance(max_iters, int) or max_iters < 1:
        raise ValueError(f"options['max_iters'] must be a whole number of at least 1, "
                         f"got {max_iters!r}")
    return AdamsMethod(method.name, method.implicit, max_order, max_iters, rtol, atol,
                       method.order)


class AdamsStepper:
    """One solve's Adams steps: the history of slopes (newest first) and the step they share.
    Counts its evaluations of f in ``stats.nfe``."""

    def __init__(self, method: AdamsMethod, func, time, stats):
        self.method, self.func, self.time, self.stats = method, func, time, stats
        self.slopes: deque[torch.Tensor] = deque(maxlen=method.max_order - 1)
        self.h = math.nan
        self.warned = False
        self._weights: dict = {}

    def step(self, t: float, t1: float, y: torch.Tensor, f0: torch.Tensor | None,
             end_time: torch.Tensor | None) -> torch.Tensor:
        """``y`` at ``t1`` from ``y`` at ``t``, given ``f0 = f(t, y)``. ``end_time`` (a nudged
        t1: options["perturb"]) replaces t1 where the corrector evaluates f."""
        assert f0 is not None, "the integrate loop evaluates f0 before an Adams step"
        h = t1 - t
        eps = torch.finfo(y.dtype).eps
        # the grid's step changed (beyond the rounding of the times): the history is for
        # another step size, so start again
        if abs(h - self.h) > 16 * eps * max(abs(t), abs(t1), abs(h)) or math.isnan(self.h):
            self.slopes.clear()
        self.h = h
        self.slopes.appendleft(f0)
        k = len(self.slopes)
        if k < _MIN_SLOPES:
            y1, _ = rk_step(self.func, t, y, f0, h, self.method.startup, self.time, end_time)
            self.stats.nfe += self.method.startup.stages - 1
            return y1
        slopes = list(self.slopes)
        y1 = self._combine(y, slopes, BASHFORTH[k], 0, h)
        if not self.method.implicit:
            return y1
        # Moulton: y1 = base + h β_0 f(t1, y1), iterated from the predictor
        weights = MOULTON[k + 1]
        base = self._combine(y, slopes, weights, 1, h)
        t_end = end_time if end_time is not None else self.time(t1)
        beta0 = h * float(weights[0])
        rtol, atol = self.method.rtol, self.method.atol
        for _ in range(self.method.max_iters):
            previous = y1
            y1 = torch.add(base, self.func(t_end, previous), alpha=beta0)
            self.stats.nfe += 1
            with torch.no_grad():   # the change of the increment y1 - y, relative to it
                change = (y1 - previous).abs()
                scale = torch.maximum((y1 - y).abs(), (previous - y).abs()).mul_(rtol).add_(atol)
                converged = bool((change <= scale).all())
            if converged:
                return y1
        if not self.warned:   # (once per solve: it tends to repeat at every step)
            self.warned = True
            warnings.warn(f"{self.method.name}: the corrector's functional iteration did not "
                          f"converge in {self.method.max_iters} iterations in the step from "
                          f"t={t:.6g} (h={h:.3g}); the solution may be inaccurate (try a "
                          "smaller step_size, looser rtol/atol, or a larger "
                          "options['max_iters'])", stacklevel=3)
        self.slopes.pop()   # as torchdiffeq: one order lower from the next step
        return y1

    def _combine(self, y, slopes, coefficients, first, h):
        """``y + h Σ_j c_{first+j} slopes[j]`` over the coefficients from ``first`` on."""
        key = (len(coefficients), first, y.dtype, y.device)
        if key not in self._weights:
            values = [float(c) for c in coefficients[first:]]
            self._weights[key] = (tuple(enumerate(values)),
                                  torch.tensor(values, dtype=y.dtype, device=y.device))
        terms, weights = self._weights[key]
        return combine(y, slopes, terms, weights, h)


__all__ = ["ADAMS_METHODS", "AdamsMethod", "AdamsStepper", "adams_coefficients", "bashforth",
           "moulton"]
