"""One explicit Runge–Kutta step, driven by a Butcher tableau.

Stage i evaluates ``k_i = f(t + c_i h, y + h Σ_j a_ij k_j)``. The linear combinations are the
only tensor work the solver adds to the cost of ``f``, so they use as few kernels as possible: an
``add`` per nonzero coefficient for short rows, one ``stack`` + ``addmv`` for long ones.
"""
from __future__ import annotations

import torch

from .tableaux import ButcherTableau

_STACK_FROM = 5  # rows with at least this many nonzero coefficients use stack + addmv
# (measured: below 5 terms, chained adds beat stack + addmv, mostly in the backward pass)


def combine(y: torch.Tensor, ks: list[torch.Tensor], tableau: ButcherTableau, row: str,
            h: float) -> torch.Tensor:
    """``y + h Σ_j w_j k_j`` for the coefficient vector ``row`` ('a<i>' or 'b') of the tableau."""
    coeffs = tableau.a[int(row[1:])] if row.startswith("a") else getattr(tableau, row)
    nonzero = [(j, w) for j, w in enumerate(coeffs) if w != 0.0]
    if len(nonzero) < _STACK_FROM:
        if row == "b" and len(nonzero) > 1:
            # the propagated solution: sum the small increments first and add y once, so
            # rounding is relative to the increment, not to |y| at every term
            (j0, w0), rest = nonzero[0], nonzero[1:]
            increment = ks[j0] * (h * w0)
            for j, w in rest:
                increment = torch.add(increment, ks[j], alpha=h * w)
            return y + increment
        out = y
        for j, w in nonzero:
            out = torch.add(out, ks[j], alpha=h * w)
        return out
    K = torch.stack(ks[: len(coeffs)]).reshape(len(coeffs), -1)
    w = tableau.weights(row, y.dtype, y.device)
    return torch.addmv(y.reshape(-1), K.t(), w, alpha=h).view_as(y)


def rk_step(func, t: float, y: torch.Tensor, f0: torch.Tensor, h: float,
            tableau: ButcherTableau, time):
    """Advance ``y`` from ``t`` to ``t + h``. ``f0 = f(t, y)``; ``time(float)`` makes the time
    tensor passed to ``func``. Returns ``(y1, ks)`` where ``ks`` are the stage slopes; for a FSAL
    tableau ``ks[-1] = f(t + h, y1)``, which the next step reuses."""
    ks = [f0]
    for i in range(1, tableau.stages):
        yi = combine(y, ks, tableau, f"a{i}", h)
        ks.append(func(time(t + tableau.c[i] * h), yi))
    y1 = yi if tableau.fsal else combine(y, ks, tableau, "b", h)
    return y1, ks


def error_estimate(ks: list[torch.Tensor], tableau: ButcherTableau, h: float) -> torch.Tensor:
    """The embedded local error estimate ``h Σ_j (b_j - b̂_j) k_j`` (call under no_grad)."""
    K = torch.stack(ks).reshape(len(ks), -1)
    w = tableau.weights("b_error", K.dtype, K.device)
    return torch.mv(K.t(), w).mul_(h)
