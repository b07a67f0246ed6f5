"""Step-size control: the error norm, the PI controller and Hairer's initial step.

Why these defaults: the mixed RMS norm scales each component by ``atol + rtol·|y|`` so a ratio of 1
means "exactly at tolerance" whatever the units; the PI controller (Gustafsson; β of Hairer's
DOPRI5 code) damps the oscillation of a pure I controller; the initial-step heuristic (Hairer,
Nørsett & Wanner, II.4) costs one extra evaluation and avoids a cascade of rejections at the start.
"""
from __future__ import annotations

import math

import torch

SAFETY = 0.9
MIN_FACTOR = 0.2    # never shrink by more than 5x in one go ...
MAX_FACTOR = 10.0   # ... nor grow by more than 10x
PI_BETA = 0.04      # weight of the previous error ratio (Hairer's DOPRI5)


def rms_norm(x: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(x) / math.sqrt(max(x.numel(), 1))


def scaled_error(err: torch.Tensor, y0: torch.Tensor, y1: torch.Tensor, rtol: float,
                 atol: float) -> torch.Tensor:
    """``err / (atol + rtol·max(|y0|, |y1|))`` as a flat tensor (call under no_grad)."""
    scale = torch.maximum(y0.detach().abs(), y1.detach().abs()).reshape(-1)
    scale = scale.mul_(rtol).add_(atol)
    return err.reshape(-1) / scale


class PIController:
    """Proposes the next step size from the error ratio r of the step just attempted:
    ``h_new = h · SAFETY · r^(-1/k) · r_prev^β`` (k the error exponent, r_prev the previous
    accepted ratio). The r_prev term damps the step-size oscillation near the tolerance; it is
    floored at ``MEMORY_FLOOR`` so that a step that was far more accurate than needed (typical
    right after the first step) does not throttle the growth that follows."""

    MEMORY_FLOOR = 0.1

    def __init__(self, error_exponent: int):
        self.alpha = 1.0 / error_exponent
        self.prev_ratio = 1.0   # no history yet: the first factor is the plain I controller

    def factor(self, ratio: float, accepted: bool) -> float:
        if ratio == 0.0:
            return MAX_FACTOR
        if not math.isfinite(ratio):
            return MIN_FACTOR
        factor = SAFETY * ratio ** (-self.alpha)
        if accepted:
            factor *= self.prev_ratio ** PI_BETA
            self.prev_ratio = max(ratio, self.MEMORY_FLOOR)
            return min(MAX_FACTOR, max(MIN_FACTOR, factor))
        return min(1.0, max(MIN_FACTOR, factor))   # after a rejection, never grow


def initial_step(func, t0: float, y0: torch.Tensor, f0: torch.Tensor, direction: float,
                 error_exponent: int, rtol: float, atol: float, norm, time) -> float:
    """Hairer's starting step: make the first Euler step's change and the change of f small
    relative to the tolerance. Costs one evaluation of ``func``."""
    with torch.no_grad():
        scale = y0.detach().abs().reshape(-1).mul(rtol).add_(atol)
        d0 = norm(y0.detach().reshape(-1) / scale)
        d1 = norm(f0.detach().reshape(-1) / scale)
        d0, d1 = torch.stack([d0, d1]).tolist()
        h0 = 1e-6 if (d0 < 1e-5 or d1 < 1e-5) else 0.01 * d0 / d1
        y1 = y0.detach() + (direction * h0) * f0.detach()
        f1 = func(time(t0 + direction * h0), y1)
        d2 = norm((f1.detach() - f0.detach()).reshape(-1) / scale).item() / h0
    if max(d1, d2) <= 1e-15:
        h1 = max(1e-6, h0 * 1e-3)
    else:
        h1 = (0.01 / max(d1, d2)) ** (1.0 / error_exponent)
    return min(100.0 * h0, h1)
