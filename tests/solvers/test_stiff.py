"""Implicit methods on stiff problems: accuracy against scipy's BDF, Newton's bookkeeping,
gradients through implicit steps (implicit function theorem), clear failures."""
import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from nodelib import (ADAPTIVE_METHODS, FIXED_STEP_METHODS, TABLEAUX, MaxStepsExceededError,
                     SolverStats, odeint, odeint_adjoint)
from nodelib.errors import NewtonConvergenceError
from nodelib.solvers.newton import iteration_tolerance

from problems import robertson

F64 = torch.float64
IMPLICIT = [m for m in TABLEAUX if TABLEAUX[m].implicit]


def _scipy_robertson(t_end):
    f = lambda t, y: robertson(t, torch.tensor(y)).numpy()
    return solve_ivp(f, (0.0, t_end), [1.0, 0.0, 0.0], method="BDF", rtol=1e-10,
                     atol=1e-14).y[:, -1]


def test_implicit_methods_are_listed():
    assert {"implicit_euler", "implicit_midpoint", "trapezoid"} <= set(FIXED_STEP_METHODS)
    assert "kvaerno3" in ADAPTIVE_METHODS


def test_robertson_to_1e5():
    """Rate constants over nine orders of magnitude: kvaerno3 reaches t = 1e5 in a few hundred
    steps, where an explicit method runs out of steps long before."""
    y0 = torch.tensor([1.0, 0.0, 0.0], dtype=F64)
    t = torch.tensor([0.0, 1e5], dtype=F64)
    stats = SolverStats()
    ys = odeint(robertson, y0, t, rtol=1e-6, atol=1e-10, method="kvaerno3", stats=stats)
    ref = _scipy_robertson(1e5)
    # rtol 1e-6 per step over ~600 steps: a few 1e-5 relative in y1, y3 at the end
    assert np.allclose(ys[-1].numpy(), ref, rtol=1e-4, atol=1e-9)
    assert stats.forward.n_accepted < 2000
    assert 0 < stats.forward.n_lu < stats.forward.n_accepted   # the LU is reused across steps
    with pytest.raises(MaxStepsExceededError):
        odeint(robertson, y0, t, rtol=1e-6, atol=1e-10, method="bosh3",
               options={"max_num_steps": 20000})


def test_van_der_pol_mu_1000():
    mu = 1000.0
    f = lambda t, y: torch.stack([y[1], mu * (1 - y[0] ** 2) * y[1] - y[0]])
    ref = solve_ivp(lambda t, y: [y[1], mu * (1 - y[0] ** 2) * y[1] - y[0]], (0, 1000.0),
                    [2.0, 0.0], method="BDF", rtol=1e-10, atol=1e-12).y[:, -1]
    ys = odeint(f, torch.tensor([2.0, 0.0], dtype=F64), torch.tensor([0.0, 1000.0], dtype=F64),
                rtol=1e-7, atol=1e-7, method="kvaerno3")
    # the slow branch x ≈ -1.8…-1: agreement to ~1e-4 (tolerance amplified by the fast jumps)
    assert abs(ys[-1, 0].item() - ref[0]) < 1e-3


@pytest.mark.parametrize("method", ["implicit_euler", "implicit_midpoint", "trapezoid"])
def test_fixed_implicit_methods_are_a_stable(method):
    """y' = -1000 y with h = 0.1 (hλ = -100): explicit Euler explodes, these do not."""
    ys = odeint(lambda t, y: -1000.0 * y, torch.ones(1, dtype=F64),
                torch.tensor([0.0, 1.0], dtype=F64), method=method, options={"step_size": 0.1})
    assert abs(ys[-1].item()) <= 1.0
    if method == "implicit_euler":   # L-stable: R(-100) = 1/101 per step
        assert abs(ys[-1].item() - 101.0 ** -10) < 1e-25


def test_newton_counts():
    stats = SolverStats()
    odeint(lambda t, y: -50 * (y - torch.cos(t)), torch.zeros(1, dtype=F64),
           torch.tensor([0.0, 2.0], dtype=F64), method="kvaerno3", stats=stats)
    s = stats.forward
    # three implicit stages per attempted step, each at least one Newton iteration
    assert s.n_newton_iterations >= 3 * (s.n_accepted + s.n_rejected)
    assert s.n_jacobians >= 1 and s.n_lu >= 1


def _linear_field():
    A = torch.tensor([[-100.0, 1.0], [0.5, -2.0]], dtype=F64, requires_grad=True)
    return A, (lambda t, y: y @ A.T)


@pytest.mark.parametrize("method", IMPLICIT)
def test_gradients_through_implicit_steps_match_finite_differences(method):
    """Backprop through implicit steps (IFT, never the Newton iterations) against central
    differences of the same discrete solve."""
    options = {"step_size": 0.05} if method in FIXED_STEP_METHODS else None
    t = torch.tensor([0.0, 0.5], dtype=F64)
    y0 = torch.tensor([1.0, -0.5], dtype=F64, requires_grad=True)
    A, f = _linear_field()
    kw = dict(method=method, options=options, rtol=1e-8, atol=1e-10)
    loss = lambda y0_, A_: odeint(lambda t, y: y @ A_.T, y0_, t, **kw)[-1].pow(2).sum()
    loss(y0, A).backward()
    eps = 1e-6
    for tensor, grad in ((y0, y0.grad), (A, A.grad)):
        for idx in np.ndindex(*tensor.shape):
            plus, minus = tensor.detach().clone(), tensor.detach().clone()
            plus[idx] += eps
            minus[idx] -= eps
            args = lambda x: (x, A.detach()) if tensor is y0 else (y0.detach(), x)
            with torch.no_grad():
                fd = (loss(*args(plus)) - loss(*args(minus))) / (2 * eps)
            # central differences: O(eps²) truncation plus Newton's tolerance / eps
            assert abs(grad[idx].item() - fd.item()) < 1e-5 * max(1.0, abs(fd.item())), idx


def test_adjoint_with_implicit_adjoint_method():
    A, f = _linear_field()
    y0 = torch.tensor([1.0, -0.5], dtype=F64, requires_grad=True)
    t = torch.tensor([0.0, 1.0], dtype=F64)
    ys = odeint_adjoint(f, y0, t, method="kvaerno3", adjoint_method="kvaerno3",
                        adjoint_params=(A,), rtol=1e-6, atol=1e-8)
    ys[-1].pow(2).sum().backward()
    exact = torch.linalg.matrix_exp(A.detach())          # y(1) = e^A y0
    y1 = exact @ y0.detach()
    # forward and backward solves each at rtol 1e-6: the gradient to ~1e-4 relative
    assert torch.allclose(y0.grad, 2 * exact.T @ y1, rtol=1e-4, atol=1e-8)


def test_newton_failure_names_the_time():
    """f blows up for y > 1: implicit Euler's Newton iteration cannot converge past it."""
    f = lambda t, y: torch.where(t > 0.5, y ** 2 * 1e8, -y)
    with pytest.raises(NewtonConvergenceError, match=r"t=0\.5"):
        odeint(f, torch.ones(1, dtype=F64), torch.tensor([0.0, 1.0], dtype=F64),
               method="implicit_euler", options={"step_size": 0.5})


def test_implicit_follows_dtype():
    ys = odeint(lambda t, y: -20 * y, torch.ones(3, dtype=torch.float32),
                torch.tensor([0.0, 1.0]), method="kvaerno3", rtol=1e-4, atol=1e-6)
    assert ys.dtype == torch.float32
    assert abs(ys[-1, 0].item() - math.exp(-20)) < 1e-5


@pytest.mark.parametrize("method", ["dopri5", "tsit5"])
def test_explicit_methods_stop_with_the_stiffness_error(method):
    from nodelib.errors import StiffnessError
    import time
    start = time.perf_counter()
    with pytest.raises(StiffnessError, match="appears stiff at t=.*radau5"):
        odeint(robertson, torch.tensor([1.0, 0.0, 0.0], dtype=F64),
               torch.tensor([0.0, 1e5], dtype=F64), rtol=1e-6, atol=1e-10, method=method)
    # detection needs 150+ steps at the limit, a fraction of a second (not a timing test:
    # the bound only guards against running into max_num_steps instead)
    assert time.perf_counter() - start < 30
    # the check can be switched off: then the solve just takes many steps
    ys = odeint(lambda t, y: -1e4 * (y - torch.cos(t)), torch.zeros(1, dtype=F64),
                torch.tensor([0.0, 1.0], dtype=F64), method=method,
                options={"detect_stiffness": False})
    assert abs(ys[-1].item() - math.cos(1.0)) < 1e-3


def test_non_stiff_problem_is_not_flagged():
    ys = odeint(lambda t, y: torch.stack([y[1], -y[0]]), torch.tensor([1.0, 0.0], dtype=F64),
                torch.tensor([0.0, 200.0], dtype=F64), rtol=1e-3, atol=1e-6)
    assert torch.isfinite(ys).all()


def test_linear_system_with_eigenvalues_1_to_1e6_against_radau():
    lams = torch.logspace(0, 6, 7, dtype=F64)
    Q, _ = torch.linalg.qr(torch.randn(7, 7, dtype=F64, generator=torch.Generator().manual_seed(0)))
    A = -(Q * lams) @ Q.T
    y0 = torch.ones(7, dtype=F64)
    ts = torch.logspace(-6, 1, 8, dtype=F64)
    t = torch.cat([torch.zeros(1, dtype=F64), ts])
    ys = odeint(lambda t, y: A @ y, y0, t, rtol=1e-8, atol=1e-10, method="kvaerno3")
    ref = solve_ivp(lambda t, y: A.numpy() @ y, (0, 10.0), y0.numpy(), method="Radau",
                    t_eval=t.numpy(), rtol=1e-12, atol=1e-14).y.T
    # global error of a 3rd-order method at rtol 1e-8 with stiff transients: ~1e-6
    assert np.abs(ys.numpy() - ref).max() < 1e-5


def test_newton_iteration_tolerance_tightens_with_rtol():
    """RADAU5's rule: min(0.03, sqrt(rtol)), but never below 10 eps / rtol (rtol floored at
    100 eps), so a tight rtol cannot ask Newton for updates below the rounding error."""
    assert iteration_tolerance(1e-3) == 0.03
    assert math.isclose(iteration_tolerance(1e-6), 1e-3)
    eps = torch.finfo(torch.float64).eps
    assert iteration_tolerance(1e-15) == iteration_tolerance(100 * eps) == 0.1
    # float32: rtol 1e-6 is below 100 eps (1.2e-5), so the floor applies
    assert iteration_tolerance(1e-6, torch.float32) == 0.1


@pytest.mark.parametrize("rtol", [1e-6, 1e-7])
def test_robertson_error_follows_the_tolerance(rtol):
    """Newton's iteration error must stay below the local error as rtol tightens. With a fixed
    Newton tolerance (0.03 of the error scale) and a reused Jacobian, the end error was 68 and
    8900 times rtol here (6.8e-5, 8.9e-4) in 2.7 and 11 times the steps."""
    y0 = torch.tensor([1.0, 0.0, 0.0], dtype=F64)
    stats = SolverStats()
    ys = odeint(robertson, y0, torch.tensor([0.0, 1e5], dtype=F64), rtol=rtol,
                atol=1e-4 * rtol, method="kvaerno3", stats=stats)
    error = np.abs(ys[-1].numpy() - _scipy_robertson(1e5)).max()
    # measured 0.03-0.06 rtol (global error of a third-order method, summed over ~600-1300
    # steps); rtol itself leaves a factor ~20 of margin and fails the defect by 68x and more
    assert error < rtol
    # third order: a tenth of the tolerance costs 10^(1/3) ~ 2.2x the steps (measured 2.1x)
    assert stats.forward.n_accepted < 1300 * (rtol / 1e-7) ** (-1 / 3) * 1.5


def test_robertson_log_spaced_outputs_against_radau():
    t = torch.cat([torch.zeros(1, dtype=F64), torch.logspace(-4, 5, 10, dtype=F64)])
    ys = odeint(robertson, torch.tensor([1.0, 0.0, 0.0], dtype=F64), t, rtol=1e-7, atol=1e-12,
                method="kvaerno3")
    f = lambda t, y: robertson(t, torch.tensor(y)).numpy()
    ref = solve_ivp(f, (0.0, 1e5), [1.0, 0.0, 0.0], method="Radau", t_eval=t.numpy(),
                    rtol=1e-12, atol=1e-16).y.T
    # relative to each component's size (y2 ~ 1e-5 .. 1e-10): 1e-4 at rtol 1e-7
    scale = np.abs(ref) + 1e-12
    assert (np.abs(ys.numpy() - ref) / scale).max() < 1e-3


@pytest.mark.parametrize("method, step, rtol", [
    ("implicit_euler", 0.02, 1e-13),   # Newton solved to rounding
    # the stacked stages of a fully implicit method: Newton's iteration error ~1e-3 rtol |y|
    # (1e-13 |y|) is 1e-8 relative after the division by eps
    ("radauIIA5", 0.05, 1e-10)])
def test_robertson_rate_gradient_against_finite_differences(method, step, rtol):
    """d y(T) / d log k for the three rate constants, through implicit steps (backprop; for
    radauIIA5 the implicit function theorem on all stages at once)."""
    def solve(logk):
        k = torch.exp(logk)
        f = lambda t, y: torch.stack([-k[0] * y[0] + k[1] * y[1] * y[2],
                                      k[0] * y[0] - k[1] * y[1] * y[2] - k[2] * y[1] ** 2,
                                      k[2] * y[1] ** 2])
        # a fixed step sequence, so finite differences see a smooth map (an adaptive one
        # would jump as the step sizes change)
        return odeint(f, torch.tensor([1.0, 0.0, 0.0], dtype=F64),
                      torch.tensor([0.0, 1.0], dtype=F64), rtol=rtol, atol=1e-16,
                      method=method, options={"step_size": step})[-1]
    logk = torch.log(torch.tensor([0.04, 1e4, 3e7], dtype=F64)).requires_grad_()
    weights = torch.tensor([1.0, 1e4, 1.0], dtype=F64)   # y2 is ~1e-5: weight it up
    (solve(logk) * weights).sum().backward()
    eps = 1e-5
    for i in range(3):
        e = torch.zeros(3, dtype=F64)
        e[i] = eps
        with torch.no_grad():
            fd = ((solve(logk + e) - solve(logk - e)) * weights).sum() / (2 * eps)
        # central differences: O(eps²) ≈ 1e-10 truncation, Newton's error / eps ≤ 1e-8
        assert abs(logk.grad[i].item() - fd.item()) < 1e-6 * max(abs(fd.item()), 1e-3), i


def test_gradcheck_implicit_step():
    A = torch.tensor([[-30.0, 2.0], [1.0, -3.0]], dtype=F64, requires_grad=True)
    y0 = torch.tensor([1.0, 2.0], dtype=F64, requires_grad=True)
    run = lambda y0, A: odeint(lambda t, y: y @ A.T, y0, torch.tensor([0.0, 0.3], dtype=F64),
                               method="trapezoid", options={"step_size": 0.05},
                               rtol=1e-12, atol=1e-14)
    assert torch.autograd.gradcheck(run, (y0, A), atol=1e-6)


def test_real_stability_boundaries():
    """Known values: Euler's interval is [-2, 0]; every 4-stage order-4 method's is about
    [-2.785, 0]; dopri5's about [-3.31, 0]."""
    from nodelib.solvers.stiffness import real_stability_boundary
    assert abs(real_stability_boundary(TABLEAUX["euler"]) - 2.0) < 2e-3
    assert abs(real_stability_boundary(TABLEAUX["rk4"]) - 2.785) < 2e-3
    assert abs(real_stability_boundary(TABLEAUX["dopri5"]) - 3.307) < 5e-3
