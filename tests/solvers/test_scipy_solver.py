"""method="scipy_solver": scipy's solve_ivp behind odeint, without gradients through it."""
import math
import warnings

import pytest
import torch

from nodelib import SolverStats, odeint, odeint_adjoint

pytest.importorskip("scipy")

SOLVERS = ["RK45", "RK23", "DOP853", "Radau", "BDF", "LSODA"]


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_every_scipy_solver(solver, dtype):
    t = torch.linspace(0.0, 2.0, 5, dtype=torch.float64)
    y0 = torch.tensor([1.0, 0.0], dtype=dtype)
    stats = SolverStats()
    ys = odeint(lambda t, y: torch.stack([y[1], -y[0]]), y0, t, method="scipy_solver",
                rtol=1e-8, atol=1e-10, options={"solver": solver}, stats=stats)
    assert ys.shape == (5, 2) and ys.dtype == dtype and ys.device == y0.device
    exact = torch.stack([torch.cos(t), -torch.sin(t)], 1).to(dtype)
    # rtol 1e-8 → global errors ~1e-7 (RK23, LSODA the loosest); float32 rounding ~1e-7
    assert (ys - exact).abs().max() < 2e-6, (ys - exact).abs().max()
    assert stats.forward.nfe > 0


def test_tolerances_are_passed_through():
    f = lambda t, y: -y
    y0, t = torch.ones(1, dtype=torch.float64), torch.tensor([0.0, 3.0], dtype=torch.float64)
    errors, nfes = [], []
    for tol in (1e-4, 1e-8):
        stats = SolverStats()
        ys = odeint(f, y0, t, method="scipy_solver", rtol=tol, atol=tol * 1e-2,
                    options={"solver": "RK45"}, stats=stats)
        errors.append(abs(ys[-1].item() - math.exp(-3.0)))
        nfes.append(stats.forward.nfe)
    assert errors[1] < errors[0] / 100 and nfes[1] > nfes[0], (errors, nfes)


def test_decreasing_times_and_a_tuple_state():
    t = torch.tensor([2.0, 1.0, 0.0], dtype=torch.float64)
    y0 = (torch.tensor(math.exp(-2.0), dtype=torch.float64),
          torch.full((2, 2), math.exp(-2.0), dtype=torch.float64))
    ys = odeint(lambda t, y: (-y[0], -y[1]), y0, t, method="scipy_solver", rtol=1e-9,
                atol=1e-12, options={"solver": "DOP853"})
    assert ys[0].shape == (3,) and ys[1].shape == (3, 2, 2)
    exact = torch.exp(-t)
    assert torch.allclose(ys[0], exact, rtol=1e-7)   # rtol 1e-9 per step, a few dozen steps
    assert torch.allclose(ys[1], exact[:, None, None].expand(3, 2, 2), rtol=1e-7)


def test_no_gradient_through_odeint_is_a_clear_error():
    y0 = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    ys = odeint(lambda t, y: -y, y0, torch.tensor([0.0, 1.0]), method="scipy_solver")
    assert ys.requires_grad   # tied to y0, so that backward can say why there is no gradient
    with pytest.raises(RuntimeError, match=r"no gradient through odeint.*odeint_adjoint"):
        ys.sum().backward()


def test_odeint_adjoint_gives_gradients_with_scipy_on_both_passes():
    """The backward pass solves the adjoint ODE with scipy too: dy(1)/dy0 and dy(1)/dk of
    y' = -k y are e^{-k} and -y0 e^{-k} (y0 = 2, k = 0.5)."""
    class Decay(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.k = torch.nn.Parameter(torch.tensor(0.5, dtype=torch.float64))

        def forward(self, t, y):
            return -self.k * y

    field = Decay()
    y0 = torch.tensor([2.0], dtype=torch.float64, requires_grad=True)
    ys = odeint_adjoint(field, y0, torch.tensor([0.0, 1.0], dtype=torch.float64),
                        method="scipy_solver", rtol=1e-10, atol=1e-12,
                        options={"solver": "DOP853"})
    ys[-1].sum().backward()
    # the adjoint solve's own tolerance (1e-10 relative) bounds the error
    assert abs(y0.grad.item() - math.exp(-0.5)) < 1e-8
    assert abs(field.k.grad.item() + 2.0 * math.exp(-0.5)) < 1e-8


def test_bad_options_and_unsupported_uses():
    f, y0, t = (lambda t, y: -y), torch.ones(1), torch.tensor([0.0, 1.0])
    with pytest.raises(ValueError, match=r"options\[.solver.\] must be one of.*RK45.*LSODA"):
        odeint(f, y0, t, method="scipy_solver", options={"solver": "rk45"})
    with pytest.raises(ValueError, match=r"unknown option.*'step_size'.*scipy_solver"):
        odeint(f, y0, t, method="scipy_solver", options={"step_size": 0.1})
    with pytest.raises(ValueError, match="does not handle events"):
        odeint(f, y0, t, method="scipy_solver", event_fn=lambda t, y: y.sum() - 0.5)
    with pytest.raises(ValueError, match="cannot replay method 'scipy_solver'"):
        odeint_adjoint(f, y0.requires_grad_(), t, method="scipy_solver", strategy="checkpoint")


def test_callbacks_are_not_called_and_say_so():
    class F(torch.nn.Module):
        def forward(self, t, y):
            return -y

        def callback_step(self, t0, y0, dt):
            raise AssertionError("scipy never calls it")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        odeint(F(), torch.ones(1), torch.tensor([0.0, 1.0]), method="scipy_solver")
    assert any("never calls the step callbacks" in str(w.message) for w in caught)


# (torchdiffeq passes min_step=0 to every scipy solver, and scipy warns that only LSODA uses it)
@pytest.mark.filterwarnings("ignore:The following arguments have no effect")
def test_agrees_with_torchdiffeq():
    torchdiffeq = pytest.importorskip("torchdiffeq")
    f = lambda t, y: torch.stack([y[1], (1 - y[0] ** 2) * y[1] - y[0]])
    y0 = torch.tensor([2.0, 0.0], dtype=torch.float64)
    t = torch.linspace(0.0, 5.0, 6, dtype=torch.float64)
    for solver in ("RK45", "LSODA"):
        options = {"solver": solver}
        ours = odeint(f, y0, t, method="scipy_solver", options=options)
        theirs = torchdiffeq.odeint(f, y0, t, method="scipy_solver", options=options)
        # the same call of solve_ivp: identical up to float64 rounding in f
        assert torch.allclose(ours, theirs, rtol=1e-12, atol=1e-12), (ours - theirs).abs().max()
