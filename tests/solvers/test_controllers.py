"""Step-size controllers: I, PI and PID meet the tolerance; a controller object carries its own
limits; the Solution's step record agrees with the statistics."""
import pytest
import torch

from nodelib import PIDController, odeint, odesolve

F64 = torch.float64


def decay(t, y):
    return -y


@pytest.mark.parametrize("controller", ["I", "PI", "PID"])
def test_controllers_meet_the_tolerance(controller):
    f = lambda t, y: torch.stack([y[1], -y[0]])
    t = torch.linspace(0, 10, 5, dtype=F64)
    ys = odeint(f, torch.tensor([1.0, 0.0], dtype=F64), t, rtol=1e-8, atol=1e-8,
                options={"controller": controller})
    exact = torch.stack([torch.cos(t), -torch.sin(t)], dim=1)
    assert (ys - exact).abs().max().item() < 50 * 1e-8   # global error: modest multiple of tol


def test_controller_object_and_its_limits():
    control = PIDController(1e-6, 1e-6, gains=PIDController.H211PI, max_step=0.1)
    sol = odesolve(decay, torch.ones(1, dtype=F64), torch.tensor([0.0, 2.0], dtype=F64),
                   options={"controller": control})
    assert max(abs(h) for h in sol.step_h) <= 0.1 + 1e-15
    with pytest.raises(ValueError, match="to the controller object itself"):
        odeint(decay, torch.ones(1), torch.tensor([0.0, 1.0]),
               options={"controller": control, "max_step": 1.0})


def test_solution_agrees_with_stats():
    sol = odesolve(lambda t, y: torch.cos(t) * y, torch.ones(2, dtype=F64),
                   torch.linspace(0, 3, 4, dtype=F64))
    assert sol.n_steps == sol.stats.n_accepted == int(sol.stats.trace_arrays()["accepted"].sum())
    assert sum(sol.step_h) == pytest.approx(3.0) and sol.h_next > 0
    assert sol.ys.shape == (4, 2)
