"""Neural CDEs (nodelib.models.cde): the CDE as an ODE driven by dX/dt, options at the knots,
gradients, and agreement with torchcde where it is installed."""
import pytest
import torch

from nodelib.models.cde import CDEField, DrivenField, NeuralCDE, cde_options
from nodelib.models.control_paths import linear_path, make_path, observation_channels


def batch(B=4, T=9, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 2, T, dtype=dtype)
    x = 0.3 * torch.randn(B, T, 2, generator=g, dtype=dtype).cumsum(1)
    return t, observation_channels(t, x)


def test_one_euler_step_per_interval_is_the_discrete_update():
    """Euler on the knots of a linear path: z_{k+1} = z_k + f(z_k) (x_{k+1} - x_k) exactly."""
    torch.manual_seed(0)
    t, x = batch()
    path = linear_path(t, x)
    model = NeuralCDE(4, 5, 1, 8, method="euler").double()
    z = model.trajectory(path, t)
    ref = model.initial(x[:, 0])
    for k in range(len(t) - 1):
        ref = ref + (model.field(ref) @ (x[:, k + 1] - x[:, k]).unsqueeze(-1)).squeeze(-1)
    # a few float64 roundings per step
    torch.testing.assert_close(z[-1], ref, rtol=1e-12, atol=1e-12)
    assert model.stats.nfe_forward == len(t) - 1


def test_reparametrisation_invariance_without_a_time_channel():
    """A CDE sees only the path's trace: the same straight segments traversed on a warped time
    axis give the same final state (a linear path's trace does not depend on the knot times; a
    cubic's does)."""
    torch.manual_seed(0)
    t, x = batch()
    values = x[..., 2:]                       # no time, no intensity
    warped = t ** 2 / 2                        # a monotone change of time
    model = NeuralCDE(2, 5, 1, 8, method="dopri5", rtol=1e-10, atol=1e-10).double()
    z1 = model.trajectory(make_path("linear", t, values))[-1]
    z2 = model.trajectory(make_path("linear", warped, values))[-1]
    # both solves at 1e-10: the difference is solver error only
    torch.testing.assert_close(z1, z2, rtol=1e-7, atol=1e-7)


def test_options_stop_at_the_knots_only_where_needed():
    t, x = batch()
    kinked, smooth = make_path("linear", t, x), make_path("natural_cubic", t, x)
    assert cde_options(kinked, "dopri5", None)["jump_t"] == kinked.jumps
    assert cde_options(smooth, "dopri5", None)["jump_t"] == smooth.jumps   # a jump in d³X/dt³
    assert cde_options(smooth, "dopri5", {"jump_t": ()}) == {"jump_t": ()}
    fixed = cde_options(kinked, "rk4", None)
    assert fixed["perturb"] and callable(fixed["grid_constructor"])
    grid = fixed["grid_constructor"](None, None, t[[0, -1]])
    torch.testing.assert_close(grid, t)
    back = fixed["grid_constructor"](None, None, t[[-1, 0]])
    torch.testing.assert_close(back, t.flip(0))
    assert "perturb" not in cde_options(smooth, "rk4", None)
    assert cde_options(kinked, "rk4", {"step_size": 0.1}) == {"step_size": 0.1}


def test_jump_t_makes_dopri5_exact_on_a_linear_path_with_a_linear_field():
    """With f(z) constant the CDE's solution is z0 + A (X(t) - X(t0)), whatever the path;
    stopping at the knots, dopri5 integrates the piecewise-constant dX/dt exactly."""
    t, x = batch()
    path = linear_path(t, x)
    A = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    field = DrivenField(lambda z: A.expand(*z.shape[:-1], 3, 4), path)
    from nodelib import odeint
    z0 = torch.zeros(x.shape[0], 3, dtype=torch.float64)
    z = odeint(field, z0, t[[0, -1]], method="dopri5",
               options=cde_options(path, "dopri5", None))[-1]
    exact = (A @ (x[:, -1] - x[:, 0]).unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(z, exact, rtol=1e-12, atol=1e-12)   # exact up to rounding


@pytest.mark.parametrize("adjoint", [False, "backsolve", "checkpoint"])
def test_gradients_agree_across_the_gradient_switch(adjoint):
    torch.manual_seed(0)
    t, x = batch()
    path = make_path("hermite", t, x)
    ref_model = NeuralCDE(4, 5, 1, 8, method="dopri5", rtol=1e-9, atol=1e-9).double()
    model = NeuralCDE(4, 5, 1, 8, method="dopri5", rtol=1e-9, atol=1e-9,
                      adjoint=adjoint).double()
    model.load_state_dict(ref_model.state_dict())
    grads = []
    for m in (ref_model, model):
        m(path).square().sum().backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in m.parameters()]))
    # backsolve rebuilds z backwards in time, which amplifies the 1e-9 local errors (observed
    # gap ~1e-5); checkpoint replays the forward steps and agrees to rounding
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-3, atol=1e-4)


def test_shapes_float32_and_errors():
    torch.manual_seed(0)
    t, x = batch(dtype=torch.float32)
    model = NeuralCDE(4, 6, 3, 8)
    out = model(make_path("natural_cubic", t, x))
    assert out.shape == (4, 3) and out.dtype == torch.float32
    assert CDEField(6, 4, 8)(torch.zeros(2, 6)).shape == (2, 6, 4)
    with pytest.raises(ValueError, match="channels"):
        model(make_path("linear", t, x[..., :2]))
    with pytest.raises(ValueError, match="unknown method"):
        NeuralCDE(4, 6, 3, method="rk5")


def test_same_answer_as_torchcde():
    torchcde = pytest.importorskip("torchcde")
    torch.manual_seed(0)
    t, x = batch()
    model = NeuralCDE(4, 5, 1, 8, method="rk4").double()
    path = make_path("natural_cubic", t, x)
    X = torchcde.CubicSpline(torchcde.natural_cubic_coeffs(x, t), t)

    class Field(torch.nn.Module):
        def forward(self, s, z):
            return model.field(z)

    z0 = model.initial(X.evaluate(t[0]))
    theirs = torchcde.cdeint(X=X, func=Field(), z0=z0, t=t[[0, -1]], method="rk4",
                             options={"step_size": float(t[1] - t[0])})[:, -1]
    # same tableau (the 3/8 rule), same grid: equal up to float64 rounding
    torch.testing.assert_close(model.trajectory(path)[-1], theirs, rtol=1e-12, atol=1e-12)
