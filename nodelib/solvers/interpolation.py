"""Dense output: the solution anywhere inside a step, for many times at once.

Every interpolant in nodelib has one form, ``y(t + θh) = y + h Σ_i P_i(θ) k_i``: a polynomial in θ
per slope ``k_i``, stored as a (slopes × degree) coefficient matrix. For m output times in one step
this is a single (m × slopes) @ (slopes × n) matrix product, so output times cost no extra steps
and almost no work.

Where the coefficients come from:
* a tableau's own continuous extension (Tsitouras' polynomials for tsit5), or
* :func:`hermite_dense`: the polynomial through the values and slopes at both ends of a step
  (cubic Hermite), plus the midpoint value when the method provides one (a quartic). The
  fixed-grid integrator uses the cubic one, :data:`CUBIC_HERMITE`, evaluated on the values and
  slopes at both ends by :func:`hermite` (the same polynomials, one matrix product).
"""
from __future__ import annotations

import numpy as np
import torch


def hermite_dense(b, *, midpoint=None, fsal: bool = True) -> np.ndarray:
    """Coefficients of the Hermite interpolant of one Runge–Kutta step with weights ``b``.

    Conditions: the value and slope at θ = 0 and θ = 1, and, when ``midpoint`` weights are given,
    the value y(t + h/2) = y + h Σ midpoint_i k_i. The slope at the end is the last stage of a
    FSAL method; otherwise it is one extra slope f(t + h, y1), appended after the stages.
    Returns the (slopes, degree) coefficient matrix."""
    s = len(b) + (0 if fsal else 1)
    b = list(b) + ([] if fsal else [0.0])
    conditions = [("value", 0.0), ("slope", 0.0), ("value", 1.0), ("slope", 1.0)]
    if midpoint is not None:
        conditions.append(("value", 0.5))
    degree = len(conditions) - 1
    # Row r of M evaluates condition r on the monomials θ^0..θ^degree.
    M = np.zeros((degree + 1, degree + 1))
    for r, (kind, x) in enumerate(conditions):
        for j in range(degree + 1):
            M[r, j] = x ** j if kind == "value" else (j * x ** (j - 1) if j > 0 else 0.0)
    cardinal = np.linalg.inv(M)  # column r: monomial coefficients of the r-th cardinal polynomial
    # Data of each condition, as multiples of h·k_i (the value at θ=0 contributes y itself).
    data = np.zeros((len(conditions), s))
    data[1, 0] = 1.0                      # slope at 0 is k_0
    data[2, :] = b                        # y1 - y = h Σ b_i k_i
    data[3, s - 1] = 1.0                  # slope at 1: the FSAL stage, or the extra slope
    if midpoint is not None:
        data[4, :len(midpoint)] = midpoint
    coeffs = cardinal @ data              # (degree+1, s): monomial coefficients per slope
    assert np.allclose(coeffs[0], 0.0)    # no constant term: y(t) = y exactly
    return np.ascontiguousarray(coeffs[1:].T)


# The cubic through (y0, f0) and (y1, f1), written on the slopes [f0, (y1 - y0)/h, f1]:
# a "tableau" with b = (0, 1, 0) whose last slope is the end slope.
CUBIC_HERMITE = hermite_dense([0.0, 1.0, 0.0])


def hermite(y0, f0, y1, f1, h: float, thetas: list[float]) -> torch.Tensor:
    """The same cubic (CUBIC_HERMITE) evaluated directly on [y0, f0, y1, f1]: with
    P_i(θ) its polynomials, y(θ) = (1 - P_1) y0 + h P_0 f0 + P_1 y1 + h P_2 f1 — one matrix
    product and no (y1 - y0)/h to form, which the fixed-grid hot path feels."""
    powers = np.asarray(thetas, dtype=np.float64)[:, None] ** np.arange(1, 4)
    P = powers @ CUBIC_HERMITE.T                       # (m, 3)
    w = np.stack([1 - P[:, 1], h * P[:, 0], P[:, 1], h * P[:, 2]], axis=1)
    weights = torch.as_tensor(w, dtype=y0.dtype, device=y0.device)
    basis = torch.stack([y0, f0, y1, f1]).reshape(4, -1)
    return (weights @ basis).view(len(thetas), *y0.shape)


def interpolate(y0: torch.Tensor, slopes: list[torch.Tensor], h: float, thetas: list[float],
                dense: np.ndarray) -> torch.Tensor:
    """States at ``t + θh`` for each θ in ``thetas`` (in [0, 1]), stacked: (m, *y0.shape)."""
    powers = np.asarray(thetas, dtype=np.float64)[:, None] ** np.arange(1, dense.shape[1] + 1)
    weights = torch.as_tensor(h * (powers @ dense.T), dtype=y0.dtype, device=y0.device)
    K = torch.stack(slopes).reshape(len(slopes), -1)
    out = torch.addmm(y0.reshape(1, -1), weights, K)
    return out.view(len(thetas), *y0.shape)
