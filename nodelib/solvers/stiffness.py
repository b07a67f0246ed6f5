"""Stiffness detection for explicit methods (after Hairer & Wanner, Solving ODEs II, IV.2).

On a stiff problem an explicit method's step size is held at its stability limit, not by
accuracy: h·|λ| stays near the edge of the method's stability region (|λ| the largest
eigenvalue magnitude of ∂f/∂y along the solution). The last two stages of a FSAL step give
|λ| ≈ ‖k_s - k_{s-1}‖ / ‖Y_s - Y_{s-1}‖ for free, so every tenth accepted step we compare h·|λ|
with the method's stability boundary on the negative real axis. Fifteen such hits without six
non-stiff checks in between (so at least 150 steps at the limit) stop the solve with a
:class:`~nodelib.errors.StiffnessError` that names the time and suggests an implicit method.
"""
from __future__ import annotations

import functools

import numpy as np
import torch

from ..errors import StiffnessError

CHECK_EVERY = 10
HITS_TO_STOP, MISSES_TO_RESET = 15, 6


@functools.cache   # per tableau (tableaux are immutable): once per method
def real_stability_boundary(tableau) -> float:
    """The largest r with |R(-x)| <= 1 for all 0 < x <= r, R the stability function."""
    s = tableau.stages
    A = np.zeros((s, s))
    for i, row in enumerate(tableau.a):
        A[i, :len(row)] = row
    b = np.array(tableau.b)
    # an explicit method's R(z) = 1 + z bᵀ(I + zA + z²A² + …)1 is a polynomial of degree s
    coefficients = [1.0] + [b @ np.linalg.matrix_power(A, k) @ np.ones(s) for k in range(s)]
    xs = np.linspace(1e-3, 20.0, 20000)
    R = np.polynomial.polynomial.polyval(-xs, coefficients)
    bad = np.nonzero(np.abs(R) > 1 + 1e-12)[0]
    return float(xs[bad[0] - 1]) if len(bad) else float(xs[-1])


class StiffnessDetector:
    def __init__(self, tableau):
        self.tableau = tableau
        self.boundary = real_stability_boundary(tableau)
        self.hits = self.misses = self.checks = 0

    def after_accepted_step(self, t: float, h: float, y: torch.Tensor, ks, y1: torch.Tensor,
                            combine) -> None:
        self.checks += 1
        if self.checks % CHECK_EVERY:
            return
        s = self.tableau.stages
        with torch.no_grad():
            y_prev = combine(s - 2)          # the argument of the second-to-last stage
            num = torch.linalg.vector_norm(ks[-1] - ks[-2])
            den = torch.linalg.vector_norm(y1 - y_prev)
            rho = float(num / den) if float(den) > 0 else 0.0
        if abs(h) * rho > 0.9 * self.boundary:
            self.hits, self.misses = self.hits + 1, 0
            if self.hits >= HITS_TO_STOP:
                raise StiffnessError(
                    f"the problem appears stiff at t={t:.6g}: the step size h={abs(h):.3g} is "
                    f"held at the stability limit of {self.tableau.name} (h·|λ| ≈ "
                    f"{abs(h) * rho:.3g}, |λ| ≈ {rho:.3g}), not by the tolerance; use an "
                    "implicit method such as method='radau5' (or the diagonally implicit "
                    "'kvaerno5', 'kvaerno3'), or options['detect_stiffness']=False to keep "
                    "stepping")
        else:
            self.misses += 1
            if self.misses >= MISSES_TO_RESET:
                self.hits = 0
