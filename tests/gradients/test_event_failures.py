"""Events (bugs 2-5 of issue 20): the gradient with respect to t0, an event that never
happens, an event function that returns NaN or something that is not a tensor."""
from __future__ import annotations

import pytest
import torch

from nodelib import ODESolverError, SolverStats, odeint, odeint_adjoint, odeint_event
from nodelib.errors import EventNotFoundError, NonFiniteError

F64 = torch.float64


INTERFACES = pytest.mark.parametrize("interface", [odeint, odeint_adjoint],
                                     ids=["backprop", "adjoint"])


@INTERFACES
def test_t0_gradient_of_a_threshold_event(interface):
    """y' = 0.7y, y(t0) = 1 crosses 2 at t* = t0 + ln 2 / 0.7: dt*/dt0 = 1 (torchdiffeq: 1.0)."""
    t0 = torch.tensor(0.3, dtype=F64, requires_grad=True)
    event_t, _ = odeint_event(lambda t, y: 0.7 * y, torch.ones(1, dtype=F64), t0,
                              event_fn=lambda t, y: y[0] - 2.0, rtol=1e-10, atol=1e-12,
                              odeint_interface=interface)
    event_t.backward()
    assert t0.grad is not None and abs(t0.grad.item() - 1.0) < 1e-7


@INTERFACES
def test_t0_gradient_of_a_time_dependent_field(interface):
    """y' = y/t, y(t0) = 1: y = t/t0 crosses 2 at t* = 2 t0, so dt*/dt0 = t*/t0 = 2. (The
    adjoint gets it only by integrating a·∂f/∂t: the field's time dependence matters.)"""
    t0 = torch.tensor(1.0, dtype=F64, requires_grad=True)
    event_t, _ = odeint_event(lambda t, y: y / t, torch.ones(1, dtype=F64), t0,
                              event_fn=lambda t, y: y[0] - 2.0, rtol=1e-10, atol=1e-12,
                              odeint_interface=interface)
    event_t.backward()
    assert abs(t0.grad.item() - event_t.item() / 1.0) < 1e-6


def test_event_that_never_happens_fixed_step():
    """y' = -y from 1 never reaches 2: the fixed-step search stops at its step cap
    (options['max_num_steps'], 2000 by default) and says so."""
    stats = SolverStats()
    with pytest.raises(EventNotFoundError, match="never happened.*t=200"):
        odeint_event(lambda t, y: -y, torch.ones(1, dtype=F64), torch.tensor(0.0, dtype=F64),
                     event_fn=lambda t, y: y[0] - 2, method="rk4", options={"step_size": 0.1},
                     stats=stats)
    assert stats.forward.n_accepted == 2000
    with pytest.raises(EventNotFoundError, match="in 30 steps"):
        odeint_event(lambda t, y: -y, torch.ones(1, dtype=F64), torch.tensor(0.0, dtype=F64),
                     event_fn=lambda t, y: y[0] - 2, method="rk4",
                     options={"step_size": 0.1, "max_num_steps": 30})


def test_event_that_never_happens_adaptive():
    """f ≡ 0: every step is exact, so the step grows tenfold each time until time overflows
    (0.2 then rejected ~100 000 steps at t = 9.6e307); now it stops at once, in ~315 steps."""
    stats = SolverStats()
    with pytest.raises(EventNotFoundError, match="never happened.*overflowed"):
        odeint_event(lambda t, y: torch.zeros_like(y), torch.ones(1, dtype=F64),
                     torch.tensor(0.0, dtype=F64), event_fn=lambda t, y: y[0] - 2, stats=stats)
    assert stats.forward.n_accepted < 400 and stats.forward.n_rejected == 0


def test_event_that_never_happens_on_a_decaying_solution():
    """y' = -y from 1 never reaches 2. Once y is below atol, dopri5's step is held at its
    stability limit (h|λ| ≈ 3.3), which the stiffness detector reports: the error says first
    that the event never happened, and keeps the reason the search stopped."""
    with pytest.raises(EventNotFoundError, match="never happened.*appears stiff at t="):
        odeint_event(lambda t, y: -y, torch.ones(1, dtype=F64), torch.tensor(0.0, dtype=F64),
                     event_fn=lambda t, y: y[0] - 2)


def test_nan_event_function_is_an_error_not_an_event():
    """log(y - 0.5) is NaN once y < 0.5 (at t = ln 2): 0.2 returned that time as the event."""
    with pytest.raises(ValueError, match=r"event_fn.*NaN at t=0\.7\b"):   # (first step past ln 2)
        odeint_event(lambda t, y: -y, torch.ones(1, dtype=F64), torch.tensor(0.0, dtype=F64),
                     event_fn=lambda t, y: torch.log(y[0] - 0.5), method="rk4",
                     options={"step_size": 0.01})


@pytest.mark.parametrize("value", [None, 1.0, [1.0], torch.zeros(0)])
def test_event_function_must_return_a_tensor(value):
    with pytest.raises((TypeError, ValueError), match="event_fn.*must return"):
        odeint_event(lambda t, y: -y, torch.ones(1, dtype=F64), torch.tensor(0.0, dtype=F64),
                     event_fn=lambda t, y: value)


def test_errors_are_solver_errors():
    assert issubclass(EventNotFoundError, ODESolverError)
    assert issubclass(NonFiniteError, ODESolverError)
