"""Adams methods (nodelib.solvers.multistep): coefficients, measured orders, stability, agreement
with torchdiffeq, gradients, and their place in the one integrate loop."""
import math
import warnings
from fractions import Fraction

import numpy as np
import pytest
import torch

from nodelib import PassStats, SolverStats, odeint, odeint_adjoint
from nodelib.solvers.config import SolveConfig, make_config
from nodelib.solvers.integrate import integrate
from nodelib.solvers.multistep import ADAMS_METHODS, BASHFORTH, MOULTON, bashforth, moulton

ADAMS = ["explicit_adams", "implicit_adams"]


def _rotation(t, y):
    return torch.stack([y[1], -y[0]])


def test_coefficients_are_the_textbook_ones():
    # Hairer, Nørsett & Wanner I, III.1: AB4 = (55, -59, 37, -9)/24, AM4 = (9, 19, -5, 1)/24
    assert bashforth(4) == tuple(Fraction(c, 24) for c in (55, -59, 37, -9))
    assert moulton(4) == tuple(Fraction(c, 24) for c in (9, 19, -5, 1))
    assert bashforth(1) == (1,) and moulton(2) == (Fraction(1, 2), Fraction(1, 2))
    # every formula integrates a constant exactly (weights sum to 1), up to the largest used
    assert all(sum(BASHFORTH[k]) == 1 for k in BASHFORTH)
    assert all(sum(MOULTON[k]) == 1 for k in MOULTON)
    # and the k-step formula integrates s^(k-1) exactly: ∫_0^1 s^m ds over the nodes
    k = 11
    for m in range(k):
        assert sum(c * Fraction(-j) ** m for j, c in enumerate(BASHFORTH[k])) == Fraction(1, m + 1)
        assert sum(c * Fraction(1 - j) ** m for j, c in enumerate(MOULTON[k + 1])) \
            == Fraction(1, m + 1)


def _oscillator_error(method, h, max_order=12, t1=2.0):
    y0 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    y = odeint(_rotation, y0, torch.tensor([0.0, t1], dtype=torch.float64), method=method,
               options={"step_size": h, "max_order": max_order})
    return abs(y[-1, 0].item() - math.cos(t1))


def _slope(hs, errors):
    return np.polyfit(np.log(hs), np.log(errors), 1)[0]


def test_implicit_adams_converges_with_order_five():
    """The start-up dominates the global error on an even grid: two 3/8-rule steps and one
    Moulton step of order 4 (local errors O(h^5)), then orders up to 12: slope 5."""
    hs = [0.1, 0.05, 0.025, 0.0125]
    errors = [_oscillator_error("implicit_adams", h) for h in hs]
    slope = _slope(hs, errors)
    print(f"implicit_adams: errors {errors}, slope {slope:.2f}")
    assert ADAMS_METHODS["implicit_adams"].order == 5
    assert abs(slope - 5) < 0.3, (slope, errors)   # the band for measured orders


def test_explicit_adams_converges_with_order_four():
    """The one Bashforth step of order 3 (local error O(h^4)) sets the global order, 4.
    Measured with max_order=5 (at most AB4): see the next test for why not with the default."""
    hs = [0.1, 0.05, 0.025, 0.0125]
    errors = [_oscillator_error("explicit_adams", h, max_order=5) for h in hs]
    slope = _slope(hs, errors)
    print(f"explicit_adams (max_order=5): errors {errors}, slope {slope:.2f}")
    assert ADAMS_METHODS["explicit_adams"].order == 4
    assert abs(slope - 4) < 0.3, (slope, errors)   # the band for measured orders


def _max_root(z, k):
    """The largest root of AB_k's characteristic polynomial ζ^k - ζ^(k-1) - z Σ β_j ζ^(k-1-j)."""
    poly = np.zeros(k + 1, dtype=complex)
    poly[0], poly[1] = 1.0, -1.0
    poly[1:] -= z * np.array([float(c) for c in BASHFORTH[k]])
    return max(abs(np.roots(poly)))


def test_the_default_explicit_adams_needs_tiny_steps():
    """torchdiffeq's explicit_adams climbs to Adams–Bashforth of order 11, whose stability
    region reaches only |hλ| ≈ 0.0034 on the negative real axis and 0.0038 on the imaginary one
    (AB4: 0.3 and 0.43). Outside it the solution blows up; nodelib keeps torchdiffeq's default
    (max_order=12) and documents it."""
    assert _max_root(-0.0033, 11) <= 1 + 1e-12 < _max_root(-0.0035, 11)
    assert _max_root(0.0037j, 11) <= 1 + 1e-12 < _max_root(0.0039j, 11)
    assert _max_root(-0.29, 4) <= 1 + 1e-12 < _max_root(-0.31, 4)
    # on the oscillator (|λ| = 1): h = 0.0125 diverges, AB4 at most (max_order=5) is fine
    assert _oscillator_error("explicit_adams", 0.0125) > 1.0
    assert _oscillator_error("explicit_adams", 0.0125, max_order=5) < 1e-7   # its ~2e-8
    # within the region (h = 0.002) the default is accurate
    assert _oscillator_error("explicit_adams", 0.002) < 1e-10   # its ~2e-12


@pytest.mark.parametrize("method", ADAMS)
def test_agrees_with_torchdiffeq(method):
    torchdiffeq = pytest.importorskip("torchdiffeq")
    f = lambda t, y: y * torch.cos(t) - 0.1 * y ** 2
    y0 = torch.tensor([1.0, 0.5], dtype=torch.float64)
    t = torch.linspace(0.0, 2.0, 9, dtype=torch.float64)   # outputs on the grid: no interpolation
    options = {"step_size": 0.0025}
    ours = odeint(f, y0, t, method=method, options=options)
    theirs = torchdiffeq.odeint(f, y0, t, method=method, options=options)
    # the same formulas in a different order of summation: rounding, amplified over 800 steps
    assert torch.allclose(ours, theirs, rtol=1e-11, atol=1e-13), (ours - theirs).abs().max()


def test_start_up_is_two_rk4_steps():
    """The first two steps are the 3/8 rule itself; the third is Adams–Bashforth 3."""
    y0 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    t = torch.tensor([0.0, 0.1, 0.2, 0.3], dtype=torch.float64)
    adams = odeint(_rotation, y0, t, method="explicit_adams")
    rk4 = odeint(_rotation, y0, t, method="rk4")
    assert torch.equal(adams[:3], rk4[:3])
    assert not torch.allclose(adams[3], rk4[3], rtol=0, atol=1e-12)
    stats = SolverStats()
    odeint(_rotation, y0, t, method="explicit_adams", stats=stats)
    # every step evaluates its first slope (the history's new entry), the two 3/8-rule steps
    # three more each; Bashforth none (the outputs are the grid points: no interpolation)
    assert stats.forward.nfe == 3 + 2 * 3, stats.forward.nfe


def test_uneven_grid_restarts_the_history():
    """The equal-step formulas are not applied to an unequal step: a grid whose step changes
    restarts with the 3/8 rule (torchdiffeq would apply them regardless)."""
    y0 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    even = torch.tensor([0.0, 0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    uneven = torch.tensor([0.0, 0.1, 0.2, 0.3, 0.35], dtype=torch.float64)
    for method in ADAMS:
        a = odeint(_rotation, y0, uneven, method=method)
        rk = odeint(_rotation, torch.as_tensor(a[3]), uneven[3:], method="rk4")
        assert torch.equal(a[4], rk[-1])   # the short last step: a 3/8-rule step
        assert odeint(_rotation, y0, even, method=method).shape == (5, 2)


@pytest.mark.parametrize("method", ADAMS)
def test_same_loop_as_every_method(method):
    """An Adams solve runs the integrate loop with the fixed grid, as rk4 does: same steps."""
    config = make_config(method, 1e-7, 1e-9, {"step_size": 0.1, "max_order": 5})
    assert isinstance(config, SolveConfig) and config.multistep is not None
    assert config.tableau.name == "rk4"   # its start-up method
    y0 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    solution = integrate(_rotation, y0, [0.0, 1.0], config, PassStats())
    assert len(solution.step_h) == 10
    # order 4 at h = 0.1 over one time unit: errors ~1e-5 (explicit) and ~1e-7 (implicit)
    assert abs(solution.ys[-1, 0].item() - math.cos(1.0)) < 1e-4


@pytest.mark.parametrize("method", ADAMS)
def test_gradients_by_backprop_and_adjoint_match_finite_differences(method):
    """d y(T) / d(y0, k) for y' = -k y² (exact y0 / (1 + k y0 t)): backprop is the exact
    derivative of the discrete solve; backsolve that of the exact flow up to the solver's
    error; both are within 1e-6 of the analytic gradient at h = 0.01."""
    k = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    y0 = torch.tensor([1.3], dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0.0, 1.5], dtype=torch.float64)

    class Field(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.k = torch.nn.Parameter(k.detach().clone())

        def forward(self, t, y):
            return -self.k * y ** 2

    T, kv, yv = 1.5, 0.7, 1.3
    exact_dy0 = 1 / (1 + kv * yv * T) ** 2
    exact_dk = -yv ** 2 * T / (1 + kv * yv * T) ** 2
    for solve in (odeint, odeint_adjoint):
        field = Field()
        y0_ = y0.detach().clone().requires_grad_(True)
        # (explicit: at most AB4, whose stability region holds hλ ≈ -0.02 here; AB11 not)
        options = {"step_size": 0.01, "max_order": 5 if method == "explicit_adams" else 12}
        y = solve(field, y0_, t, method=method, options=options)
        y[-1].sum().backward()
        assert abs(y0_.grad.item() - exact_dy0) < 1e-6, (solve.__name__, y0_.grad, exact_dy0)
        assert abs(field.k.grad.item() - exact_dk) < 1e-6, (solve.__name__, field.k.grad, exact_dk)


@pytest.mark.parametrize("method", ADAMS)
def test_gradcheck_through_the_steps(method):
    y0 = torch.tensor([0.8, -0.3], dtype=torch.float64, requires_grad=True)
    A = torch.tensor([[-0.5, 1.0], [-1.0, -0.2]], dtype=torch.float64, requires_grad=True)
    t = torch.linspace(0.0, 1.0, 6, dtype=torch.float64)
    fn = lambda y0, A: odeint(lambda t, y: torch.tanh(A @ y), y0, t, method=method,
                              options={"step_size": 0.05})
    assert torch.autograd.gradcheck(fn, (y0, A))


def test_checkpoint_strategy_is_refused():
    y0 = torch.tensor([1.0], requires_grad=True)
    with pytest.raises(ValueError, match="cannot replay method 'explicit_adams'"):
        odeint_adjoint(lambda t, y: -y, y0, torch.tensor([0.0, 1.0]), method="explicit_adams",
                       strategy="checkpoint")


def test_options_and_perturb():
    f_times = []

    def f(t, y):
        f_times.append(t.item())
        return -y

    y0 = torch.tensor([1.0], dtype=torch.float64)
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    odeint(f, y0, t, method="implicit_adams", rtol=1e-3, atol=1e-6,
           options={"step_size": 0.25, "perturb": True})
    assert 0.0 not in f_times and 0.5 not in f_times and 0.75 not in f_times
    with pytest.raises(ValueError, match="max_order"):
        odeint(f, y0, t, method="explicit_adams", options={"max_order": 13})
    with pytest.raises(ValueError, match="max_iters"):
        odeint(f, y0, t, method="implicit_adams", options={"max_iters": 0})
    with pytest.raises(ValueError, match=r"unknown option.*'first_step'.*explicit_adams"):
        odeint(f, y0, t, method="explicit_adams", options={"first_step": 0.1})


def test_corrector_that_does_not_converge_warns_once():
    y0 = torch.tensor([1.0], dtype=torch.float64)
    t = torch.tensor([0.0, 2.0], dtype=torch.float64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # |h β0 λ| = 0.1 · 0.35 · 5 ≈ 0.18: 4 fixed-point iterations cannot reach rtol 1e-13
        odeint(lambda t, y: -5 * y, y0, t, method="implicit_adams", rtol=1e-13, atol=1e-15,
               options={"step_size": 0.1})
    messages = [str(w.message) for w in caught if "did not converge" in str(w.message)]
    assert len(messages) == 1, messages


def test_unknown_method_lists_the_adams_methods():
    with pytest.raises(ValueError, match=r"explicit_adams, implicit_adams.*scipy_solver"):
        odeint(lambda t, y: -y, torch.ones(1), torch.tensor([0.0, 1.0]), method="adams")
