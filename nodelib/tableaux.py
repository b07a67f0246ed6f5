"""Butcher tableaux: every Runge–Kutta method in nodelib is data, run by one stepper.

A tableau holds the nodes ``c``, the stage matrix ``a`` (lower triangular), the weights ``b`` of
the propagated solution and, for adaptive methods, ``b_error = b - b_embedded`` whose combination
of stages estimates the local error. Adaptive methods also carry a dense-output polynomial:
``y(t + θh) = y + h Σ_i P_i(θ) k_i`` with ``P_i(θ) = Σ_j dense[i, j] θ^(j+1)``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction as F

import numpy as np
import torch


@dataclass(frozen=True, eq=False)
class ButcherTableau:
    name: str
    order: int                      # order of the propagated solution
    c: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]  # a[i] has i entries: the weights of stages 0..i-1
    b: tuple[float, ...]
    b_error: tuple[float, ...] | None = None   # b - b_embedded (None: fixed-step method)
    embedded_order: int | None = None
    dense: np.ndarray | None = None  # (stages, degree) coefficients of P_i(θ)
    _weights_cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def stages(self) -> int:
        return len(self.c)

    @property
    def adaptive(self) -> bool:
        return self.b_error is not None

    @property
    def fsal(self) -> bool:
        """First Same As Last: the last stage is evaluated at the new solution, so its slope is
        the next step's first stage and each step costs one evaluation less."""
        return self.c[-1] == 1.0 and tuple(self.a[-1]) + (0.0,) == tuple(self.b)

    @property
    def error_exponent(self) -> int:
        """Local error of the embedded pair scales like h^(q+1), q the lower of the two orders."""
        return min(self.order, self.embedded_order) + 1

    def weights(self, name: str, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """The coefficient vector ``name`` ('b', 'b_error' or 'a<i>') as a cached tensor."""
        key = (name, dtype, device)
        w = self._weights_cache.get(key)
        if w is None:
            values = self.a[int(name[1:])] if name.startswith("a") else getattr(self, name)
            w = torch.tensor(values, dtype=dtype, device=device)
            self._weights_cache[key] = w
        return w


def _floats(rows):
    return tuple(tuple(float(x) for x in row) for row in rows)


def _hermite_dense(b, *, midpoint=None) -> np.ndarray:
    """Dense output from the values and slopes at both ends of a FSAL step (cubic Hermite) and,
    when ``midpoint`` weights are given, also the value y(t + h/2) = y + h Σ midpoint_i k_i
    (a quartic, one order higher). Returns the (stages, degree) coefficient matrix."""
    s = len(b)
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
    data[1, 0] = 1.0                     # slope at 0 is k_0
    data[2, :] = b                        # y1 - y = h Σ b_i k_i
    data[3, s - 1] = 1.0                  # slope at 1 is the FSAL stage
    if midpoint is not None:
        data[4, :] = midpoint
    coeffs = cardinal @ data             # (degree+1, s): monomial coefficients for each stage
    assert np.allclose(coeffs[0], 0.0)   # no constant term: y(t) = y exactly
    return np.ascontiguousarray(coeffs[1:].T)


def _polynomial_dense(polys) -> np.ndarray:
    """Dense output given as one numpy polynomial (in θ) per stage."""
    degree = max(p.degree() for p in polys)
    out = np.zeros((len(polys), degree))
    for i, p in enumerate(polys):
        coef = p.convert(kind=np.polynomial.Polynomial).coef
        out[i, : len(coef) - 1] = coef[1:]
        assert abs(coef[0]) < 1e-14
    return out


# --- fixed-step methods ------------------------------------------------------------------------
EULER = ButcherTableau("euler", 1, (0.0,), ((),), (1.0,))
MIDPOINT = ButcherTableau("midpoint", 2, (0.0, 0.5), ((), (0.5,)), (0.0, 1.0))
HEUN2 = ButcherTableau("heun2", 2, (0.0, 1.0), ((), (1.0,)), (0.5, 0.5))
# Kutta's 3/8 rule: the fourth-order variant torchdiffeq's "rk4" also uses (same cost as the
# classic c = (0, 1/2, 1/2, 1) method, a smaller error constant on most problems).
RK4 = ButcherTableau(
    "rk4", 4, (0.0, 1 / 3, 2 / 3, 1.0), ((), (1 / 3,), (-1 / 3, 1.0), (1.0, -1.0, 1.0)),
    (1 / 8, 3 / 8, 3 / 8, 1 / 8),
)

# --- Bogacki–Shampine 3(2) ---------------------------------------------------------------------
_bs_b = (F(2, 9), F(1, 3), F(4, 9), F(0))
_bs_b_low = (F(7, 24), F(1, 4), F(1, 3), F(1, 8))
BOSH3 = ButcherTableau(
    "bosh3", 3,
    c=(0.0, 0.5, 0.75, 1.0),
    a=_floats([(), (F(1, 2),), (0, F(3, 4)), _bs_b[:3]]),
    b=tuple(float(x) for x in _bs_b),
    b_error=tuple(float(x - y) for x, y in zip(_bs_b, _bs_b_low)),
    embedded_order=2,
    dense=_hermite_dense([float(x) for x in _bs_b]),
)

# --- Dormand–Prince 5(4) -----------------------------------------------------------------------
_dp_b = (F(35, 384), F(0), F(500, 1113), F(125, 192), F(-2187, 6784), F(11, 84), F(0))
_dp_b_low = (F(5179, 57600), F(0), F(7571, 16695), F(393, 640), F(-92097, 339200),
             F(187, 2100), F(1, 40))
# y(t + h/2) from Shampine's continuous extension (the midpoint weights torchdiffeq also uses).
_dp_mid = (F(6025192743, 30085553152) / 2, F(0), F(51252292925, 65400821598) / 2,
           F(-2691868925, 45128329728) / 2, F(187940372067, 1594534317056) / 2,
           F(-1776094331, 19743644256) / 2, F(11237099, 235043384) / 2)
DOPRI5 = ButcherTableau(
    "dopri5", 5,
    c=(0.0, 0.2, 0.3, 0.8, 8 / 9, 1.0, 1.0),
    a=_floats([
        (),
        (F(1, 5),),
        (F(3, 40), F(9, 40)),
        (F(44, 45), F(-56, 15), F(32, 9)),
        (F(19372, 6561), F(-25360, 2187), F(64448, 6561), F(-212, 729)),
        (F(9017, 3168), F(-355, 33), F(46732, 5247), F(49, 176), F(-5103, 18656)),
        _dp_b[:6],
    ]),
    b=tuple(float(x) for x in _dp_b),
    b_error=tuple(float(x - y) for x, y in zip(_dp_b, _dp_b_low)),
    embedded_order=4,
    dense=_hermite_dense([float(x) for x in _dp_b], midpoint=[float(x) for x in _dp_mid]),
)

# --- Tsitouras 5(4) ----------------------------------------------------------------------------
_ts_b = (0.09646076681806523, 0.01, 0.4798896504144996, 1.379008574103742,
         -3.290069515436081, 2.324710524099774, 0.0)
_P = np.polynomial.Polynomial
_th = _P([0.0, 1.0])
# Tsitouras' interpolating polynomials b_i(θ) (order 4), as published in factored form.
_ts_dense = [
    -1.0530884977290216 * _th * (_th - 1.3299890189751412) * (_th**2 - 1.4364028541716351 * _th + 0.7139816917074209),
    0.1017 * _th**2 * (_th**2 - 2.1966568338249754 * _th + 1.2949852507374631),
    2.490627285651252793 * _th**2 * (_th**2 - 2.38535645472061657 * _th + 1.57803468208092486),
    -16.54810288924490272 * (_th - 1.21712927295533244) * (_th - 0.61620406037800089) * _th**2,
    47.37952196281928122 * (_th - 1.203071208372362603) * (_th - 0.658047292653547382) * _th**2,
    -34.87065786149660974 * (_th - 1.2) * (_th - 0.666666666666666667) * _th**2,
    2.5 * (_th - 1.0) * (_th - 0.6) * _th**2,
]
TSIT5 = ButcherTableau(
    "tsit5", 5,
    c=(0.0, 0.161, 0.327, 0.9, 0.9800255409045097, 1.0, 1.0),
    a=(
        (),
        (0.161,),
        (-0.008480655492356989, 0.335480655492357),
        (2.897153057105493, -6.359448489975075, 4.3622954328695815),
        (5.325864828439257, -11.748883564062828, 7.4955393428898365, -0.09249506636175525),
        (5.86145544294642, -12.92096931784711, 8.159367898576159, -0.071584973281401,
         -0.028269050394068383),
        _ts_b[:6],
    ),
    b=_ts_b,
    b_error=(-0.00178001105222577714, -0.0008164344596567469, 0.007880878010261995,
             -0.1447110071732629, 0.5823571654525552, -0.45808210592918697,
             0.015151515151515152),
    embedded_order=4,
    dense=_polynomial_dense(_ts_dense),
)

TABLEAUX: dict[str, ButcherTableau] = {
    t.name: t for t in (EULER, MIDPOINT, HEUN2, RK4, BOSH3, DOPRI5, TSIT5)
}
FIXED_STEP_METHODS = tuple(n for n, t in TABLEAUX.items() if not t.adaptive)
ADAPTIVE_METHODS = tuple(n for n, t in TABLEAUX.items() if t.adaptive)
