"""Fully implicit Runge–Kutta methods (Gauss–Legendre, Radau IIA: Newton on the stacked stages)
and torchdiffeq's other fixed-step implicit methods: orders, symplecticity, L-stability,
gradients through the stacked Newton solve, clear errors."""
import math

import numpy as np
import pytest
import torch

from nodelib import TABLEAUX, SolverStats, odeint, odeint_adjoint
from nodelib.errors import NewtonConvergenceError, NonFiniteError, StepSizeUnderflowError
from nodelib.solvers.newton import Newton
from nodelib.solvers.solution import PassStats

F64 = torch.float64
NEW_FIXED = ["gl4", "gl6", "radauIIA3", "radauIIA5", "sdirk2", "trbdf2"]
FULLY_IMPLICIT = [m for m in TABLEAUX if TABLEAUX[m].fully_implicit]


def test_the_methods_are_registered_with_their_kind():
    assert set(FULLY_IMPLICIT) == {"gl4", "gl6", "radauIIA3", "radauIIA5", "radau5"}
    for m in ("sdirk2", "trbdf2", "kvaerno5"):
        assert TABLEAUX[m].implicit and not TABLEAUX[m].fully_implicit
    assert TABLEAUX["radau5"].adaptive and TABLEAUX["kvaerno5"].adaptive


def _pendulum(t, y):
    return torch.stack([y[1], -torch.sin(y[0])])


@pytest.mark.parametrize("method", NEW_FIXED)
def test_measured_order_on_a_nonlinear_problem(method):
    """Slope of log(error) against log(h) on the pendulum (nonlinear, so the stability
    function alone cannot fake the order), against a dopri8 reference at rtol 1e-13."""
    order = TABLEAUX[method].order
    y0 = torch.tensor([1.0, 0.0], dtype=F64)
    t = torch.tensor([0.0, 2.0], dtype=F64)
    ref = odeint(_pendulum, y0, t, method="dopri8", rtol=1e-13, atol=1e-13)[-1]
    # steps that keep the error well above rounding (~1e-14) and in the asymptotic range
    hs = [0.2, 0.1, 0.05, 0.025] if order <= 4 else [0.5, 0.25, 0.2, 0.125]
    errors = [(odeint(_pendulum, y0, t, method=method, options={"step_size": h})[-1]
               - ref).abs().max().item() for h in hs]
    slope = np.polyfit(np.log(hs), np.log(errors), 1)[0]
    # ±0.3: the band for measured orders (next-order terms bend the fit a little)
    assert abs(slope - order) < 0.3, (method, slope, errors)


def _energy_drift(method, h=0.5, n=100_000):
    """The largest |(|y_k|² - 1)| over k ≤ n steps of size h on y'' = -y from |y0| = 1. The
    problem is linear, so a step is a 2 × 2 matrix M (the solver's own step applied to the two
    unit vectors); n steps are M^k, multiplied out step by step in float64 — 1e5 steps in a
    fraction of a second, where 1e5 solver steps would take ~30 s."""
    f = lambda t, y: torch.stack([y[1], -y[0]])
    t = torch.tensor([0.0, h], dtype=F64)
    M = torch.stack([odeint(f, e, t, method=method, options={"step_size": h})[-1]
                     for e in torch.eye(2, dtype=F64)], dim=1).numpy()
    y, drift = np.array([1.0, 0.0]), 0.0
    for _ in range(n):
        y = M @ y
        drift = max(drift, abs(y @ y - 1.0))
    return drift, M


@pytest.mark.parametrize("method", ["gl4", "gl6"])
def test_gauss_legendre_keeps_the_oscillator_energy(method):
    """Symplectic and exact on quadratic invariants: |y|² of y'' = -y stays 1 to rounding over
    1e5 steps (h = 0.5), where radauIIA5 (not symplectic) loses it steadily."""
    drift, M = _energy_drift(method)
    # the one-step matrix is orthogonal up to Newton's tolerance and rounding; 1e5 products
    # accumulate ~1e5 × 1e-16 rounding: measured below 1e-11, 1e-10 leaves room
    assert drift < 1e-10, drift
    # the steps themselves: the matrix is what the solver does over many steps
    f = lambda t, y: torch.stack([y[1], -y[0]])
    y0 = torch.tensor([1.0, 0.0], dtype=F64)
    ys = odeint(f, y0, torch.tensor([0.0, 100.0], dtype=F64), method=method,
                options={"step_size": 0.5})
    assert np.allclose(ys[-1].numpy(), np.linalg.matrix_power(M, 200) @ y0.numpy(),
                       atol=1e-12)   # (rounding over 200 steps)
    radau_drift, _ = _energy_drift("radauIIA5")
    assert radau_drift > 1e-3, radau_drift


@pytest.mark.parametrize("method", ["radauIIA3", "radauIIA5", "sdirk2", "trbdf2"])
def test_l_stable_methods_damp_the_stiff_component_in_one_step(method):
    """y' = -1e6 y, one step of h = 1 (hλ = -1e6): the stability function of an L-stable
    method vanishes at infinity, so the result is tiny; Gauss–Legendre (|R(∞)| = 1) is not."""
    f = lambda t, y: -1e6 * y
    one = lambda m: odeint(f, torch.ones(1, dtype=F64), torch.tensor([0.0, 1.0], dtype=F64),
                           method=m, options={"step_size": 1.0})[-1].item()
    # R(z) = O(1/z) for these methods: |R(-1e6)| is of order 1e-6 (sdirk2, trbdf2) or
    # smaller; 1e-5 bounds them all
    assert abs(one(method)) < 1e-5
    assert abs(one("gl4")) > 0.99   # A-stable only: R(-1e6) ≈ 1 (its sign alternates)


def test_radau_outputs_between_grid_points_stay_bounded():
    """Bug 1 of issue 20 for the new methods: outputs inside the steps of a stiff decay lie
    between the grid values (the line between them, the implicit methods' default)."""
    f = lambda t, y: -1e4 * y
    t = torch.linspace(0.0, 1.0, 41, dtype=F64)
    for method in ("radauIIA5", "gl6", "trbdf2"):
        ys = odeint(f, torch.ones(1, dtype=F64), t, method=method, options={"step_size": 0.1})
        assert ys.abs().max().item() <= 1.0 + 1e-12, method


def _linear_field():
    A = torch.tensor([[-20.0, 1.0], [0.5, -2.0]], dtype=F64, requires_grad=True)
    return A


@pytest.mark.parametrize("method", ["gl4", "radauIIA5"])
def test_gradcheck_through_the_stacked_newton_solve(method):
    """Backprop through fully implicit steps (the implicit function theorem on the stacked
    stages) against gradcheck's finite differences, with respect to y0 and the matrix."""
    y0 = torch.tensor([1.0, 2.0], dtype=F64, requires_grad=True)
    A = _linear_field()
    run = lambda y0, A: odeint(lambda t, y: torch.tanh(y) @ A.T, y0,
                               torch.tensor([0.0, 0.3], dtype=F64), method=method,
                               options={"step_size": 0.1}, rtol=1e-12, atol=1e-14)
    # Newton solved to ~1e-12: finite differences of the discrete map hold to ~1e-7
    assert torch.autograd.gradcheck(run, (y0, A), atol=1e-6)


def test_radau5_gradient_by_backprop_and_by_the_adjoint():
    """y' = A y: dL/dy0 of L = |y(1)|² is 2 e^{Aᵀ} y(1); backprop through radau5's steps and
    odeint_adjoint with radau5 in both directions both reach it."""
    A = _linear_field()
    exact = torch.linalg.matrix_exp(A.detach())
    t = torch.tensor([0.0, 1.0], dtype=F64)
    for solve in (odeint, lambda *a, **k: odeint_adjoint(*a, adjoint_params=(A,), **k)):
        y0 = torch.tensor([1.0, -0.5], dtype=F64, requires_grad=True)
        ys = solve(lambda t, y: y @ A.T, y0, t, method="radau5", rtol=1e-8, atol=1e-10)
        ys[-1].pow(2).sum().backward()
        y1 = exact @ y0.detach()
        # rtol 1e-8 per step over ~20 steps, in both passes: 1e-6 relative
        assert torch.allclose(y0.grad, 2 * exact.T @ y1, rtol=1e-6, atol=1e-10)


def test_gauss_legendre_under_odeint_adjoint():
    """Fixed-step gl4 in both passes of the backsolve adjoint: the gradient of |y(1)|² for
    y' = A y against the exact 2 e^{Aᵀ} y(1)."""
    A = _linear_field()
    y0 = torch.tensor([1.0, -0.5], dtype=F64, requires_grad=True)
    ys = odeint_adjoint(lambda t, y: y @ A.T, y0, torch.tensor([0.0, 1.0], dtype=F64),
                        method="gl4", options={"step_size": 0.01}, adjoint_params=(A,))
    ys[-1].pow(2).sum().backward()
    exact = torch.linalg.matrix_exp(A.detach())
    # fourth order with h = 0.01 and |hλ| ≤ 0.2: ~1e-8 relative in each pass
    assert torch.allclose(y0.grad, 2 * exact.T @ exact @ y0.detach(), rtol=1e-6)
    assert A.grad is not None and torch.isfinite(A.grad).all()


def test_nan_in_f_names_the_time():
    f = lambda t, y: torch.where(t > 0.45, torch.full_like(y, math.nan), -y)
    with pytest.raises(NewtonConvergenceError, match=r"t=0\.4.*NaN"):
        odeint(f, torch.ones(2, dtype=F64), torch.tensor([0.0, 1.0], dtype=F64),
               method="radauIIA5", options={"step_size": 0.1})
    with pytest.raises(NonFiniteError, match=r"t=0\.4(5|49)"):
        odeint(f, torch.ones(2, dtype=F64), torch.tensor([0.0, 1.0], dtype=F64),
               method="radau5")


@pytest.mark.parametrize("method", NEW_FIXED)
def test_newton_failure_of_a_fixed_step_names_the_time(method):
    """Past t = 0.5 the field turns into 1e8 y², whose Newton iteration from y = 1 cannot
    converge in a step of 0.5: a fixed step cannot shrink, so the solve stops there and says
    where, and what to do."""
    f = lambda t, y: torch.where(t > 0.5, y ** 2 * 1e8, -y)
    with pytest.raises(NewtonConvergenceError, match=r"from t=0\.5 \(h=0\.5\).*radau5"):
        odeint(f, torch.ones(1, dtype=F64), torch.tensor([0.0, 1.0], dtype=F64),
               method=method, options={"step_size": 0.5})


@pytest.mark.parametrize("method", ["radau5", "kvaerno5"])
def test_a_finite_time_blow_up_stops_at_its_time(method):
    """y' = y², y(0) = 1 blows up at t = 1: the adaptive implicit methods shrink the step until it
    underflows, and the error names a time within 1e-6 of the blow-up."""
    with pytest.raises(StepSizeUnderflowError, match="blow up") as caught:
        odeint(lambda t, y: y ** 2, torch.ones(1, dtype=F64),
               torch.tensor([0.0, 2.0], dtype=F64), method=method)
    t_stop = float(str(caught.value).split("at t=")[1].split(":")[0])
    assert abs(t_stop - 1.0) < 1e-6


def test_stages_in_one_call_only_for_a_batch_agnostic_f():
    """f written on the last axis takes the stacked stages in one call (and stays right for a
    time-dependent f); f that indexes y[0] is called once per stage, with the same result."""
    calls = []

    def on_last_axis(t, y):
        calls.append(y.shape)
        return -50 * (y - torch.cos(t))

    def indexing(t, y):
        calls.append(y.shape)
        return torch.stack([-50 * (y[0] - torch.cos(t)), -50 * (y[1] - torch.cos(t))])
    t = torch.tensor([0.0, 1.0], dtype=F64)
    a = odeint(on_last_axis, torch.zeros(2, dtype=F64), t, method="radauIIA5",
               options={"step_size": 0.1})
    assert (3, 2) in calls and calls.count((2,)) < 10   # (2,): the Jacobian, and the check
    calls.clear()
    b = odeint(indexing, torch.zeros(2, dtype=F64), t, method="radauIIA5",
               options={"step_size": 0.1})
    assert calls.count((2,)) > 30
    # one call or three: the same numbers up to rounding
    assert torch.allclose(a, b, rtol=1e-12, atol=1e-14)


def test_radau5_error_estimate_is_third_order():
    """Hairer's embedded estimate (before the filter) scales like h⁴."""
    from nodelib.solvers.runge_kutta import error_estimate, rk_step
    tab = TABLEAUX["radau5"]
    f = lambda t, y: y * torch.cos(t)
    time = lambda v: torch.tensor(v, dtype=F64)
    y0 = torch.ones(1, dtype=F64)
    hs, ests = [0.2, 0.1, 0.05, 0.025], []
    for h in hs:
        newton = Newton(f, 1e-13, 1e-15, PassStats())
        _, ks = rk_step(f, 0.3, y0, f(time(0.3), y0), h, tab, time, newton=newton)
        ests.append(error_estimate(ks, tab, h).abs().item())
    slope = np.polyfit(np.log(hs), np.log(ests), 1)[0]
    assert abs(slope - 4) < 0.3, slope   # the issue's ±0.3 band for measured orders


def test_radau5_reuses_its_factorisations():
    stats = SolverStats()
    f = lambda t, y: -50 * (y - torch.cos(t))
    odeint(f, torch.zeros(3, dtype=F64), torch.tensor([0.0, 5.0], dtype=F64), method="radau5",
           rtol=1e-6, atol=1e-9, stats=stats)
    s = stats.forward
    # Jacobians and LUs (stacked + filter) far fewer than steps: h changes by <20% mostly
    assert s.n_jacobians < s.n_accepted / 4 and s.n_lu < s.n_accepted
