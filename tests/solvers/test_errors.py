"""Bad input fails fast with a message that names the problem (and the time t)."""
import math
import time

import pytest
import torch

from nodelib import (MaxStepsExceededError, NonFiniteError, StepSizeUnderflowError, odeint,
                     odeint_adjoint)

Y0 = torch.ones(2)
T = torch.linspace(0, 1, 3)


def decay(t, y):
    return -y


@pytest.mark.parametrize("solver", [odeint, odeint_adjoint])
def test_unknown_method_lists_known(solver):
    with pytest.raises(ValueError, match="unknown method 'rk45'.*euler.*dopri5.*tsit5"):
        solver(decay, Y0, T, method="rk45")


@pytest.mark.parametrize("t, msg", [
    (torch.tensor([0.0, 1.0, 0.5]), r"strictly increasing or strictly decreasing; t\[1\]=1"),
    (torch.tensor([0.0, 0.0, 1.0]), r"strictly.*t\[0\]=0"),
    (torch.zeros(2, 2), "1-D"),
    (torch.tensor([]), "at least one"),
    (torch.tensor([0.0, float("nan")]), "NaN"),
])
def test_bad_times(t, msg):
    with pytest.raises(ValueError, match=msg):
        odeint(decay, Y0, t)


@pytest.mark.parametrize("solver", [odeint, odeint_adjoint])
def test_wrong_shape_from_func(solver):
    with pytest.raises(ValueError, match=r"returned shape \(3,\) but the state has shape \(2,\) \(at t=0\)"):
        solver(lambda t, y: torch.ones(3), Y0, T)


def test_wrong_dtype_from_func():
    with pytest.raises(TypeError, match="returned dtype torch.float64 but the state is torch.float32"):
        odeint(lambda t, y: (-y).double(), Y0, T)


def test_non_tensor_from_func():
    with pytest.raises(TypeError, match="must return a tensor"):
        odeint(lambda t, y: [1.0, 2.0], Y0, T)


def test_nan_initial_state():
    with pytest.raises(NonFiniteError, match="y0 contains NaN"):
        odeint(decay, torch.tensor([1.0, float("nan")]), T)


def test_nan_from_func_adaptive():
    f = lambda t, y: torch.where(t > 0.5, torch.full_like(y, float("nan")), -y)
    with pytest.raises(NonFiniteError, match=r"NaN/inf.*t=(0\.4999|0\.5)"):
        odeint(f, Y0, T)


def test_nan_in_fixed_step_solution_names_time():
    # explicit Euler on y' = -1000 y with h = 0.1 overflows; the error names the first bad t
    with pytest.raises(NonFiniteError, match=r"first non-finite output is at t=\d"):
        odeint(lambda t, y: -1000 * y, Y0, torch.linspace(0, 200, 2001), method="euler")


def test_blow_up_stops_quickly_with_time():
    """y' = y², y(0) = 1 blows up at t = 1: the solver must stop near t = 1, fast."""
    start = time.perf_counter()
    with pytest.raises(StepSizeUnderflowError, match=r"step size underflow at t=(0\.99|1\.0)"):
        odeint(lambda t, y: y ** 2, torch.ones(1, dtype=torch.float64),
               torch.tensor([0.0, 2.0], dtype=torch.float64))
    assert time.perf_counter() - start < 5.0


def test_max_num_steps():
    with pytest.raises(MaxStepsExceededError, match=r"max_num_steps=10 at t=0\.\d+"):
        odeint(lambda t, y: torch.cos(50 * t) * y, Y0, torch.tensor([0.0, 10.0]),
               options={"max_num_steps": 10})


@pytest.mark.parametrize("kwargs, msg", [
    (dict(method="rk4", options={"step_size": -0.1}), "step_size.. must be a positive"),
    (dict(method="rk4", options={"first_step": 0.1}), r"unknown option\(s\) \['first_step'\]"),
    (dict(method="dopri5", options={"step_size": 0.1}), r"unknown option\(s\) \['step_size'\]"),
    (dict(rtol=-1.0), "rtol and atol must be non-negative"),
])
def test_bad_options(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        odeint(decay, Y0, T, **kwargs)


def test_bad_state_types():
    with pytest.raises(TypeError, match="floating-point"):
        odeint(decay, torch.ones(2, dtype=torch.int64), T)
    with pytest.raises(TypeError, match="tensor or a .*tuple"):
        odeint(decay, [1.0, 2.0], T)
    with pytest.raises(TypeError, match="share dtype and device"):
        odeint(lambda t, s: s, (torch.ones(1), torch.ones(1, dtype=torch.float64)), T)


def test_bad_seminorm_option():
    with pytest.raises(ValueError, match="seminorm"):
        odeint_adjoint(decay, Y0, T, adjoint_options={"norm": "max"})


@pytest.mark.parametrize("scale", [1e-6, 1.0, 1e6])
def test_the_time_unit_does_not_matter_in_float32(scale):
    """y' = -y/scale on [0, scale] is the same problem in another time unit: the step-size
    guard is relative to t, so a microsecond problem in float32 solves as the unit one does
    (a guard floored at |t| = 1 stopped it at once: its steps are ~1e-7 < 8 eps(float32))."""
    t = torch.tensor([0.0, scale])
    ys = odeint(lambda t, y: -y / scale, torch.ones(1), t, rtol=1e-5, atol=1e-6)
    # the tolerance 1e-5 and float32 rounding (1e-7 per step, ~30 steps)
    assert abs(ys[-1].item() - math.exp(-1)) < 1e-4
