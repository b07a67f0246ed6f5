"""Butcher tableaux: every Runge–Kutta method in nodelib is data, run by one stepper.

A tableau holds the nodes ``c``, the stage matrix ``a`` (lower triangular, or full for a fully
implicit method), the weights ``b`` of the propagated solution and, for adaptive methods,
``b_error = b - b_embedded`` whose combination of stages estimates the local error. Adaptive
methods also carry a dense-output polynomial:
``y(t + θh) = y + h Σ_i P_i(θ) k_i`` with ``P_i(θ) = Σ_j dense[i, j] θ^(j+1)``.

Three kinds of method, told apart by the shape of ``a`` alone: explicit (row i has i entries),
diagonally implicit (the same rows plus ``diagonal``: one Newton solve per stage), and fully
implicit (every row has s entries: Newton on all stages at once, see
:func:`nodelib.solvers.runge_kutta.rk_step`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction as F
from math import sqrt

import numpy as np
import torch

from .interpolation import hermite_dense


@dataclass(frozen=True, eq=False)
class ButcherTableau:
    name: str
    order: int                      # order of the propagated solution
    c: tuple[float, ...]
    # a[i] has i entries (the weights of stages 0..i-1), or s entries for a fully implicit method
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    b_error: tuple[float, ...] | None = None   # b - b_embedded (None: fixed-step method)
    embedded_order: int | None = None
    # (n_slopes, degree) coefficients of P_i(θ); n_slopes = stages, plus one for a non-FSAL
    # method, whose last slope is f(t + h, y1) (the next step's first stage)
    dense: np.ndarray | None = None
    # a_ii of a diagonally implicit method (None: explicit). Stage i then solves
    # z_i = y + h Σ_{j<i} a_ij k_j + h a_ii f(t + c_i h, z_i) by Newton's method.
    diagonal: tuple[float, ...] | None = None
    # fully implicit adaptive pairs: the γ of the error filter (I - hγJ)⁻¹ (Hairer's RADAU5);
    # a diagonally implicit method's filter uses its own diagonal γ
    filter_gamma: float | None = None
    _weights_cache: dict = field(default_factory=dict, repr=False, compare=False)
    # derived in __post_init__ (never per step): the nonzero (j, weight) terms of each stage row
    # and of b, and whether the method is FSAL
    stage_terms: tuple = field(init=False, repr=False, compare=False)
    b_terms: tuple = field(init=False, repr=False, compare=False)
    fsal: bool = field(init=False, repr=False, compare=False)
    fully_implicit: bool = field(init=False, repr=False, compare=False)
    stiffly_accurate: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        # Everything the stepper needs is computed once here, never per step: the nonzero
        # terms of each stage row and of b, and whether the method is FSAL.
        nonzero = lambda row: tuple((j, float(w)) for j, w in enumerate(row) if w != 0.0)
        object.__setattr__(self, "stage_terms", tuple(nonzero(row) for row in self.a))
        object.__setattr__(self, "b_terms", nonzero(self.b))
        full = any(len(row) > i for i, row in enumerate(self.a))
        object.__setattr__(self, "fully_implicit", full)
        if full:
            _check_fully_implicit(self)
        # FSAL (first same as last): the last stage is evaluated at the new solution itself,
        # so its slope is the next step's first stage (for an implicit method: "stiffly
        # accurate" with an explicit first stage)
        last_row = tuple(self.a[-1]) + (() if full else (self.diag(self.stages - 1),))
        # stiffly accurate: the last stage value is the new solution
        object.__setattr__(self, "stiffly_accurate", last_row == tuple(self.b))
        object.__setattr__(self, "fsal", self.c[-1] == 1.0 and last_row == tuple(self.b)
                           and self.c[0] == 0.0 and self.diag(0) == 0.0)
        if self.adaptive:
            expected = self.stages + (0 if self.fsal else 1)
            if self.dense is None or self.dense.shape[0] != expected:
                raise ValueError(f"adaptive tableau {self.name!r} needs dense-output "
                                 f"coefficients for {expected} slopes")

    @property
    def stages(self) -> int:
        return len(self.c)

    def diag(self, i: int) -> float:
        if self.fully_implicit:
            return float(self.a[i][i]) if len(self.a[i]) > i else 0.0
        return 0.0 if self.diagonal is None else float(self.diagonal[i])

    @property
    def implicit(self) -> bool:
        return self.fully_implicit or (self.diagonal is not None
                                       and any(d != 0.0 for d in self.diagonal))

    @property
    def lead(self) -> int:
        """A fully implicit method's explicit first stages: 1 when stage 0 is f(t, y) itself
        (it enters only the error estimate), else 0."""
        return 1 if self.fully_implicit and len(self.a[0]) == 0 else 0

    def collocation(self, dtype: torch.dtype, device: torch.device):
        """A fully implicit method's implicit block as cached tensors: its stage matrix A
        (m × m), A⁻¹ (stage slopes from stage increments: K = A⁻¹ W / h), d = bᵀA⁻¹
        (the new solution y + Σ d_j W_j; None when y1 is the last stage value), and (numpy)
        the coefficients of the collocation polynomials."""
        cache_key = ("collocation", dtype, device)
        out = self._weights_cache.get(cache_key)
        if out is None:
            A = np.array([row[self.lead:] for row in self.a[self.lead:]], dtype=np.float64)
            A_inv = np.linalg.inv(A)
            as_tensor = lambda x: torch.tensor(x, dtype=dtype, device=device)
            d = None if self.stiffly_accurate else as_tensor(
                np.array(self.b[self.lead:]) @ A_inv)
            # the collocation polynomials ℓ_j (ℓ_j(0) = 0, ℓ_j(c_i) = δ_ij), coefficients of
            # θ^1..θ^m in column j: the stepper's starting values extrapolate them
            c = np.array(self.c[self.lead:])
            L = np.linalg.inv(c[:, None] ** np.arange(1, len(c) + 1))
            out = (as_tensor(A), as_tensor(A_inv), d, L)
            self._weights_cache[cache_key] = out
        return out


    @property
    def adaptive(self) -> bool:
        return self.b_error is not None

    @property
    def error_exponent(self) -> int:
        """Local error of the embedded pair scales like h^(q+1), q the lower of the two orders."""
        assert self.embedded_order is not None, f"{self.name} is not an embedded pair"
        return min(self.order, self.embedded_order) + 1

    def weights(self, key, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """A coefficient vector as a cached tensor: ``key`` is a stage index (row of ``a``),
        ``"b"`` or ``"b_error"``."""
        cache_key = (key, dtype, device)
        w = self._weights_cache.get(cache_key)
        if w is None:
            values = self.a[key] if isinstance(key, int) else getattr(self, key)
            w = torch.tensor(values, dtype=dtype, device=device)
            self._weights_cache[cache_key] = w
        return w


def _check_fully_implicit(tableau: ButcherTableau) -> None:
    s, lead = tableau.stages, tableau.lead
    rows = tableau.a[lead:]
    if any(len(row) != s for row in rows) or (
            lead and (any(row[0] != 0.0 for row in rows) or tableau.b[0] != 0.0)):
        raise ValueError(f"fully implicit tableau {tableau.name!r}: every implicit row needs "
                         "s entries, and an explicit first stage may enter only b_error")


def _floats(rows):
    return tuple(tuple(float(x) for x in row) for row in rows)


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
HEUN3 = ButcherTableau("heun3", 3, (0.0, 1 / 3, 2 / 3), ((), (1 / 3,), (0.0, 2 / 3)),
                       (1 / 4, 0.0, 3 / 4))
# Kutta's 3/8 rule: the fourth-order variant torchdiffeq's "rk4" also uses (same cost as the
# classic c = (0, 1/2, 1/2, 1) method, a smaller error constant on most problems).
RK4 = ButcherTableau(
    "rk4", 4, (0.0, 1 / 3, 2 / 3, 1.0), ((), (1 / 3,), (-1 / 3, 1.0), (1.0, -1.0, 1.0)),
    (1 / 8, 3 / 8, 3 / 8, 1 / 8),
)

# --- low-order adaptive pairs ------------------------------------------------------------------
# Heun's method with Euler as its embedded estimate: cheap, and a clear first example of an
# embedded pair. Not FSAL: the slope at the new point costs one more evaluation per step.
_ah_b = (0.5, 0.5)
ADAPTIVE_HEUN = ButcherTableau(
    "adaptive_heun", 2, c=(0.0, 1.0), a=((), (1.0,)), b=_ah_b,
    b_error=(0.5 - 1.0, 0.5 - 0.0), embedded_order=1,
    dense=hermite_dense(_ah_b, fsal=False),
)
# Fehlberg's RK1(2): the embedded first-order solution is FSAL, but we propagate the
# second-order one (as torchdiffeq does), so the end slope is evaluated at y1 itself.
_fe_b = (F(1, 512), F(255, 256), F(1, 512))
_fe_b_low = (F(1, 256), F(255, 256), F(0))
FEHLBERG2 = ButcherTableau(
    "fehlberg2", 2, c=(0.0, 0.5, 1.0), a=_floats([(), (F(1, 2),), (F(1, 256), F(255, 256))]),
    b=tuple(float(x) for x in _fe_b),
    b_error=tuple(float(x - y) for x, y in zip(_fe_b, _fe_b_low)), embedded_order=1,
    dense=hermite_dense([float(x) for x in _fe_b], fsal=False),
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
    dense=hermite_dense([float(x) for x in _bs_b]),
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
    dense=hermite_dense([float(x) for x in _dp_b], midpoint=[float(x) for x in _dp_mid]),
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

# --- Dormand–Prince 8(7), Prince & Dormand's RK8(7)13M ---------------------------------------
# Rational approximations of the coefficients as published (and as torchdiffeq uses them);
# dense output: the quartic through both ends' values and slopes and the midpoint value.
_d8_c = (0.0, 1 / 18, 1 / 12, 1 / 8, 5 / 16, 3 / 8, 59 / 400, 93 / 200,
         5490023248 / 9719169821, 13 / 20, 1201146811 / 1299019798, 1.0, 1.0, 1.0)
_d8_a = (
    (),
    (1 / 18,),
    (1 / 48, 1 / 16),
    (1 / 32, 0, 3 / 32),
    (5 / 16, 0, -75 / 64, 75 / 64),
    (3 / 80, 0, 0, 3 / 16, 3 / 20),
    (29443841 / 614563906, 0, 0, 77736538 / 692538347, -28693883 / 1125000000,
     23124283 / 1800000000),
    (16016141 / 946692911, 0, 0, 61564180 / 158732637, 22789713 / 633445777,
     545815736 / 2771057229, -180193667 / 1043307555),
    (39632708 / 573591083, 0, 0, -433636366 / 683701615, -421739975 / 2616292301,
     100302831 / 723423059, 790204164 / 839813087, 800635310 / 3783071287),
    (246121993 / 1340847787, 0, 0, -37695042795 / 15268766246, -309121744 / 1061227803,
     -12992083 / 490766935, 6005943493 / 2108947869, 393006217 / 1396673457,
     123872331 / 1001029789),
    (-1028468189 / 846180014, 0, 0, 8478235783 / 508512852, 1311729495 / 1432422823,
     -10304129995 / 1701304382, -48777925059 / 3047939560, 15336726248 / 1032824649,
     -45442868181 / 3398467696, 3065993473 / 597172653),
    (185892177 / 718116043, 0, 0, -3185094517 / 667107341, -477755414 / 1098053517,
     -703635378 / 230739211, 5731566787 / 1027545527, 5232866602 / 850066563,
     -4093664535 / 808688257, 3962137247 / 1805957418, 65686358 / 487910083),
    (403863854 / 491063109, 0, 0, -5068492393 / 434740067, -411421997 / 543043805,
     652783627 / 914296604, 11173962825 / 925320556, -13158990841 / 6184727034,
     3936647629 / 1978049680, -160528059 / 685178525, 248638103 / 1413531060, 0),
)
_d8_b = (14005451 / 335480064, 0, 0, 0, 0, -59238493 / 1068277825, 181606767 / 758867731,
         561292985 / 797845732, -1041891430 / 1371343529, 760417239 / 1151165299,
         118820643 / 751138087, -528747749 / 2220607170, 1 / 4)
_d8_b_low = (13451932 / 455176623, 0, 0, 0, 0, -808719846 / 976000145,
             1757004468 / 5645159321, 656045339 / 265891186, -3867574721 / 1518517206,
             465885868 / 322736535, 53011238 / 667516719, 2 / 45, 0)


def _dopri8_midpoint() -> list[float]:
    """Weights of y(t + h/2) from DOP853's continuous extension, evaluated at θ = 1/2."""
    coefficients = {   # stage: polynomial coefficients of θ^5 .. θ^1 (and θ^0 for stage 0)
        0: (-6.3448349392860401388, 22.1396504998094068976, -30.0610568289666450593,
            19.9990069333683970610, -6.6910181737837595697, 1.0),
        5: (-39.6107919852202505218, 116.4422149550342161651, -121.4999627731334642623,
            52.2273532792945524050, -7.6142658045872677172),
        6: (20.3761213808791436958, -67.1451318825957197185, 83.1721004639847717481,
            -46.8919164181093621583, 10.7281392630428866124),
        7: (7.3347098826795362023, -16.5672243527496524646, 9.5724507555993664382,
            -0.1890893225010595467, 0.5526637063753648783),
        8: (32.8801774352459155182, -89.9916014847245016028, 87.8406057677205645007,
            -35.7075975946222072821, 4.2186562625665153803),
        9: (-10.1588990526426760954, 22.6237489648532849093, -17.4152107770762969005,
            6.2736448083240352160, -0.6627209125361597559),
        10: (-12.5401268098782561200, 32.2362340167355370113, -28.5903289514790976966,
             10.3160881272450748458, -1.2636789001135462218),
        11: (29.5553001484516038033, -82.1020315488359848644, 81.6630950584341412934,
             -34.7650769866611817349, 5.4106037898590422230),
        12: (-41.7923486424390588923, 116.2662185791119533462, -114.9375291377009418170,
             47.7457971078225540396, -7.0321379067945741781),
        13: (20.3006925822100825485, -53.9020777466385396792, 50.2558364226176017553,
             -19.0082099341608028453, 2.3537586759714983486),
    }
    theta, mid = 0.5, [0.0] * 14
    for stage, coef in coefficients.items():
        powers = [theta ** (5 - j) for j in range(5)] + ([1.0] if len(coef) == 6 else [])
        mid[stage] = theta * sum(a * p for a, p in zip(coef, powers))
    return mid


DOPRI8 = ButcherTableau(
    "dopri8", 8, c=_d8_c, a=_d8_a + (_d8_b,), b=_d8_b + (0.0,),
    b_error=tuple(x - y for x, y in zip(_d8_b, _d8_b_low)) + (0.0,), embedded_order=7,
    dense=hermite_dense(list(_d8_b) + [0.0], midpoint=_dopri8_midpoint()),
)

# --- diagonally implicit methods (a Newton solve per implicit stage) ------------------------------
# Backward Euler: L-stable, first order.
IMPLICIT_EULER = ButcherTableau("implicit_euler", 1, c=(1.0,), a=((),), b=(1.0,),
                                diagonal=(1.0,))
# The implicit midpoint rule: A-stable (not L-stable), second order, symplectic.
IMPLICIT_MIDPOINT = ButcherTableau("implicit_midpoint", 2, c=(0.5,), a=((),), b=(1.0,),
                                   diagonal=(0.5,))
# The trapezoidal rule (Crank–Nicolson): an explicit first stage, then an implicit one at t + h.
TRAPEZOID = ButcherTableau("trapezoid", 2, c=(0.0, 1.0), a=((), (0.5,)), b=(0.5, 0.5),
                           diagonal=(0.0, 0.5))

# Kværnø's ESDIRK 3(2) (Kværnø 2004): explicit first stage, three implicit stages with the same
# γ (one LU factorisation serves them all), stiffly accurate (y1 is the last stage) and
# L-stable; the third stage, also at t + h, is the embedded second-order solution.
_g = 0.4358665215084589994160194511935568425
_kv_a3 = ((-4 * _g ** 2 + 6 * _g - 1) / (4 * _g), (-2 * _g + 1) / (4 * _g))
_kv_a4 = ((6 * _g - 1) / (12 * _g), -1 / ((24 * _g - 12) * _g),
          (-6 * _g ** 2 + 6 * _g - 1) / (6 * _g - 3))
_kv_b = _kv_a4 + (_g,)
_kv_b_low = _kv_a3 + (_g, 0.0)
KVAERNO3 = ButcherTableau(
    "kvaerno3", 3, c=(0.0, 2 * _g, 1.0, 1.0), a=((), (_g,), _kv_a3, _kv_a4), b=_kv_b,
    b_error=tuple(x - y for x, y in zip(_kv_b, _kv_b_low)), embedded_order=2,
    dense=hermite_dense(list(_kv_b)), diagonal=(0.0, _g, _g, _g),
)

# torchdiffeq's two other diagonally implicit methods. SDIRK2 (Alexander's γ = 1 - 1/√2):
# L-stable, stiffly accurate, second order.
_sd = (2 - sqrt(2)) / 2
SDIRK2 = ButcherTableau("sdirk2", 2, c=(_sd, 1.0), a=((), (1 - _sd,)), b=(1 - _sd, _sd),
                        diagonal=(_sd, _sd))
# TR-BDF2 (Bank et al. 1985): a trapezoidal stage to t + 2γh, then BDF2 to t + h; L-stable.
_tr, _trb = 1 - sqrt(2) / 2, sqrt(2) / 4
TRBDF2 = ButcherTableau("trbdf2", 2, c=(0.0, 2 * _tr, 1.0), a=((), (_tr,), (_trb, _trb)),
                        b=(_trb, _trb, _tr), diagonal=(0.0, _tr, _tr))

# Kværnø's ESDIRK 5(4) (Kværnø 2004, the coefficients to 17 digits as published): explicit
# first stage, six implicit stages sharing γ = 0.26, stiffly accurate and L-stable; the sixth
# stage is the embedded fourth-order solution. (c is the row sums, so they agree exactly.)
_k5g = 0.26
_k5_a = ((), (_k5g,), (0.13, 0.84033320996790809),
         (0.22371961478320505, 0.47675532319799699, -0.06470895363112615),
         (0.16648564323248321, 0.10450018841591720, 0.03631482272098715,
          -0.13090704451073998),
         (0.13855640231268224, 0.0, -0.04245337201752043, 0.02446657898003141,
          0.61943039072480676),
         (0.13659751177640291, 0.0, -0.05496908796538376, -0.04118626728321046,
          0.62993304899016403, 0.06962479448202728))
_k5_b = _k5_a[6] + (_k5g,)
_k5_b_low = _k5_a[5] + (_k5g, 0.0)
KVAERNO5 = ButcherTableau(
    "kvaerno5", 5, c=(0.0,) + tuple(sum(row) + _k5g for row in _k5_a[1:]), a=_k5_a, b=_k5_b,
    b_error=tuple(x - y for x, y in zip(_k5_b, _k5_b_low)), embedded_order=4,
    dense=hermite_dense(list(_k5_b)), diagonal=(0.0,) + (_k5g,) * 6,
)

# --- fully implicit methods (Newton on all stages at once) ----------------------------------
# Collocation methods, in closed form. Gauss–Legendre with s stages: order 2s, A-stable,
# symplectic (a quadratic invariant such as a harmonic oscillator's energy is kept exactly).
# Radau IIA with s stages: order 2s - 1, L-stable, stiffly accurate (c_s = 1, y1 is the last
# stage). (torchdiffeq's gl4 lists c_2 = 1/2 - √3/6, a typo for 1/2 + √3/6: its stages' times
# are wrong for a non-autonomous f; ours are the Gauss points.)
_r3 = sqrt(3)
GL4 = ButcherTableau("gl4", 4, c=(1 / 2 - _r3 / 6, 1 / 2 + _r3 / 6),
                     a=((1 / 4, 1 / 4 - _r3 / 6), (1 / 4 + _r3 / 6, 1 / 4)), b=(1 / 2, 1 / 2))
_r15 = sqrt(15)
GL6 = ButcherTableau(
    "gl6", 6, c=(1 / 2 - _r15 / 10, 1 / 2, 1 / 2 + _r15 / 10),
    a=((5 / 36, 2 / 9 - _r15 / 15, 5 / 36 - _r15 / 30),
       (5 / 36 + _r15 / 24, 2 / 9, 5 / 36 - _r15 / 24),
       (5 / 36 + _r15 / 30, 2 / 9 + _r15 / 15, 5 / 36)),
    b=(5 / 18, 4 / 9, 5 / 18))
RADAU_IIA3 = ButcherTableau("radauIIA3", 3, c=(1 / 3, 1.0),
                            a=((5 / 12, -1 / 12), (3 / 4, 1 / 4)), b=(3 / 4, 1 / 4))
_r6 = sqrt(6)
_radau5_c = ((4 - _r6) / 10, (4 + _r6) / 10, 1.0)
_radau5_a = (((88 - 7 * _r6) / 360, (296 - 169 * _r6) / 1800, (-2 + 3 * _r6) / 225),
             ((296 + 169 * _r6) / 1800, (88 + 7 * _r6) / 360, (-2 - 3 * _r6) / 225),
             ((16 - _r6) / 36, (16 + _r6) / 36, 1 / 9))
RADAU_IIA5 = ButcherTableau("radauIIA5", 5, c=_radau5_c, a=_radau5_a, b=_radau5_a[2])


def _radau5_pair() -> ButcherTableau:
    """Radau IIA 5 with Hairer's embedded third-order estimate (RADAU5, Hairer & Wanner IV.8):
    ``err = γ0 h f(t, y) + γ0 Σ_i e_i (Y_i - y)``, e = (-(13 + 7√6)/3, (-13 + 7√6)/3, -1/3),
    γ0 the real eigenvalue of A. So it is a tableau with a leading explicit stage f(t, y)
    that enters only b_error. Dense output: the collocation polynomial (cubic) through y and
    the three stage values. The step filters the estimate through (I - hγ0 J)⁻¹."""
    gamma0 = (6 + 81 ** (1 / 3) - 9 ** (1 / 3)) / 30
    A = np.array(_radau5_a)
    e = np.array([-(13 + 7 * _r6) / 3, (-13 + 7 * _r6) / 3, -1 / 3])
    # (Y_i - y) = h Σ_j a_ij k_j, so the estimate's weight of k_j is γ0 (eᵀA)_j
    b_error = (gamma0,) + tuple(float(x) for x in gamma0 * (e @ A))
    # the collocation polynomial: u(t + θh) = y + Σ_i ℓ_i(θ)(Y_i - y), ℓ_i(0) = 0,
    # ℓ_i(c_k) = δ_ik; in slopes, P_j(θ) = Σ_i ℓ_i(θ) a_ij
    c = np.array(_radau5_c)
    L = np.linalg.inv(c[:, None] ** np.arange(1, 4))   # column i: ℓ_i's coefficients
    dense = np.vstack([np.zeros(3), (L @ A).T])
    return ButcherTableau(
        "radau5", 5, c=(0.0,) + _radau5_c, a=((),) + tuple((0.0,) + row for row in _radau5_a),
        b=(0.0,) + _radau5_a[2], b_error=b_error, embedded_order=3, dense=dense,
        filter_gamma=gamma0)


RADAU5 = _radau5_pair()

TABLEAUX: dict[str, ButcherTableau] = {
    t.name: t for t in (EULER, MIDPOINT, HEUN2, HEUN3, RK4, ADAPTIVE_HEUN, FEHLBERG2, BOSH3,
                         DOPRI5, TSIT5, DOPRI8, IMPLICIT_EULER, IMPLICIT_MIDPOINT, TRAPEZOID,
                         SDIRK2, TRBDF2, GL4, GL6, RADAU_IIA3, RADAU_IIA5, KVAERNO3, KVAERNO5,
                         RADAU5)
}
FIXED_STEP_METHODS = tuple(n for n, t in TABLEAUX.items() if not t.adaptive)
ADAPTIVE_METHODS = tuple(n for n, t in TABLEAUX.items() if t.adaptive)
