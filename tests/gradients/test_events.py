"""Events: a ball dropped from height h0 (h'' = -g) hits the ground at sqrt(2 h0 / g); the event
time and its gradient by backprop and by the adjoint; reverse time; the t it needs."""
import math

import pytest
import torch

from nodelib import odeint, odeint_adjoint, odeint_event

F64 = torch.float64


def decay(t, y):
    return -y


G = 9.81


def _ball(t, state):
    v = state[..., 1]
    return torch.stack([v, torch.full_like(v, -G)], dim=-1)


def _ground(t, state):
    return state[..., 0]


@pytest.mark.parametrize("interface", ["odeint", "odeint_adjoint"])
@pytest.mark.parametrize("method", ["dopri5", "bosh3", "rk4"])
def test_bouncing_ball_event_time_and_gradient(interface, method):
    h0 = torch.tensor(2.0, dtype=F64, requires_grad=True)
    y0 = torch.stack([h0, torch.zeros((), dtype=F64)])
    options = {"step_size": 0.01} if method == "rk4" else None
    kw = dict(adjoint_params=()) if interface == "odeint_adjoint" else {}
    solver = odeint if interface == "odeint" else odeint_adjoint
    event_t, ys = odeint_event(_ball, y0, torch.tensor(0.0, dtype=F64), event_fn=_ground,
                               odeint_interface=solver, method=method, options=options,
                               rtol=1e-9, atol=1e-9, **kw)
    exact = math.sqrt(2 * 2.0 / G)
    # bisection to atol on an interpolant of a method exact for this quadratic trajectory
    assert abs(event_t.item() - exact) < 1e-6
    assert ys.shape == (2, 2) and abs(ys[-1, 0].item()) < 1e-6
    event_t.backward()
    # d t*/d h0 = 1 / sqrt(2 g h0)
    assert abs(h0.grad.item() - 1 / math.sqrt(2 * G * 2.0)) < 1e-5


def test_event_reverse_time():
    """Backwards from t0 = 0 with y' = 1, y(0) = 0: y = t crosses -1 at t = -1."""
    event_t, ys = odeint_event(lambda t, y: torch.ones_like(y), torch.zeros(1, dtype=F64),
                               torch.tensor(0.0, dtype=F64), event_fn=lambda t, y: y + 1.0,
                               reverse_time=True)
    assert abs(event_t.item() + 1.0) < 1e-8 and abs(ys[-1].item() + 1.0) < 1e-8


def test_event_mode_needs_two_times():
    with pytest.raises(ValueError, match="event handling needs t"):
        odeint(decay, torch.ones(1), torch.tensor([0.0, 1.0, 2.0]), event_fn=lambda t, y: y)
