"""Clear errors, raised before the first step, each naming what is wrong."""
import math

import pytest
import torch

from nodelib import BrownianInterval, sdeint, sdeint_adjoint
from nodelib.errors import NonFiniteError


class Toy:
    def __init__(self, noise_type="diagonal", sde_type="ito", g_shape=None, nan_after=None):
        self.noise_type, self.sde_type = noise_type, sde_type
        self.g_shape, self.nan_after = g_shape, nan_after

    def f(self, t, y):
        if self.nan_after is not None and float(t) > self.nan_after:
            return y * math.nan
        return -y

    def g(self, t, y):
        shape = self.g_shape or ((y.shape[0], y.shape[1]) if self.noise_type == "diagonal"
                                 else (y.shape[0], y.shape[1], 1))
        return 0.1 * torch.ones(shape, dtype=y.dtype)


Y0, TS = torch.ones(4, 2), torch.tensor([0.0, 1.0])


@pytest.mark.parametrize("noise_type, shape, message", [
    ("diagonal", (4, 2, 1), r"diagonal.*\(batch, d\)"),
    ("general", (4, 2), r"general.*\(batch, d, m\)"),
    ("additive", (4, 3, 2), r"additive.*\(batch, d, m\)"),
    ("scalar", (4, 2, 3), r"scalar.*\(batch, d, 1\)"),
])
def test_wrong_shape_of_g_for_the_noise_type(noise_type, shape, message):
    with pytest.raises(ValueError, match=message):
        sdeint(Toy(noise_type, g_shape=shape), Y0, TS, method="euler", dt=0.1)


def test_method_for_the_other_sde_type():
    with pytest.raises(ValueError, match=r"'euler' solves ito SDEs, not 'stratonovich'.*midpoint"):
        sdeint(Toy(sde_type="stratonovich"), Y0, TS, method="euler", dt=0.1)
    with pytest.raises(ValueError, match=r"'midpoint' solves stratonovich SDEs, not 'ito'"):
        sdeint(Toy(), Y0, TS, method="midpoint", dt=0.1)
    with pytest.raises(ValueError, match=r"'srk' handles noise types .* not 'general'"):
        sdeint(Toy("general"), Y0, TS, method="srk", dt=0.1)


def test_unknown_method_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown SDE method 'rk4'; known: euler, milstein"):
        sdeint(Toy(), Y0, TS, method="rk4", dt=0.1)


@pytest.mark.parametrize("ts", [[0.0, 0.5, 0.5], [0.0, 1.0, 0.5]])
def test_times_must_increase_strictly(ts):
    with pytest.raises(ValueError, match=r"strictly increasing; ts\[2\]"):
        sdeint(Toy(), Y0, ts, dt=0.1)


def test_nan_in_the_drift_names_the_time():
    with pytest.raises(NonFiniteError, match=r"f\(t, y\) returned NaN/inf at t=0\.5"):
        sdeint(Toy(nan_after=0.45), Y0, torch.linspace(0, 1, 5), method="euler", dt=0.05)
    with pytest.raises(NonFiniteError, match=r"f\(t, y\) returned NaN/inf at t=0 "):
        sdeint(Toy(nan_after=-1.0), Y0, TS, method="euler", dt=0.05)


def test_other_bad_input():
    with pytest.raises(ValueError, match=r"y0 must be a tensor of shape \(batch, d\)"):
        sdeint(Toy(), torch.ones(2), TS, dt=0.1)
    with pytest.raises(ValueError, match=r"sde\.noise_type must be one of"):
        sdeint(Toy(noise_type="vector"), Y0, TS, dt=0.1)
    with pytest.raises(ValueError, match="dt must be a positive"):
        sdeint(Toy(), Y0, TS, method="euler", dt=0.0)
    with pytest.raises(ValueError, match="levy_area_approximation='space-time'"):
        bm = BrownianInterval(0.0, 1.0, size=(4, 2), entropy=0)
        sdeint(Toy(), Y0, TS, bm=bm, method="srk", dt=0.1)
    with pytest.raises(ValueError, match=r"bm has shape \(4, 3\)"):
        sdeint(Toy(), Y0, TS, bm=BrownianInterval(0.0, 1.0, size=(4, 3)), dt=0.1)
    with pytest.raises(ValueError, match="prior drift h"):
        sdeint(Toy(), Y0, TS, dt=0.1, logqp=True)
    with pytest.raises(TypeError, match="unexpected keyword arguments: step"):
        sdeint(Toy(), Y0, TS, dt=0.1, step=3)
    with pytest.raises(ValueError, match="adjoint_reversible_heun' needs"):
        sdeint_adjoint(Toy(sde_type="stratonovich"), Y0, TS, method="midpoint",
                       adjoint_method="adjoint_reversible_heun", dt=0.1)
    with pytest.raises(ValueError, match="needs a Lévy area"):
        bm = BrownianInterval(0.0, 1.0, size=(4, 2), entropy=0)
        sdeint(Toy(sde_type="stratonovich"), Y0, TS, bm=bm, method="log_ode", dt=0.1)
    with pytest.raises(ValueError, match="never forms"):
        sdeint_adjoint(Toy(sde_type="stratonovich"), Y0, TS, method="midpoint",
                       adjoint_method="log_ode", dt=0.1)
    with pytest.raises(ValueError, match="'milstein' handles noise types"):   # adjoint noise
        sdeint_adjoint(Toy(), Y0, TS, method="milstein", adjoint_method="milstein", dt=0.1)
