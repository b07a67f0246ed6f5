"""Errors that say what happened (bug 5 of issue 20)."""
from __future__ import annotations

import re

import pytest
import torch

from nodelib import odeint, odeint_adjoint
from nodelib.errors import NonFiniteError

F64 = torch.float64


@pytest.mark.parametrize("count", [2.5, float("nan"), float("inf"), [3], None, True, "3", 1])
def test_bad_checkpoint_counts_are_refused(count):
    """0.2 truncated 2.5 to 2 silently and gave raw int() errors for the others."""
    with pytest.raises(ValueError, match=r"checkpoints'\] must be a whole number of at least 2"):
        odeint_adjoint(lambda t, y: -y, torch.ones(1, dtype=F64),
                       torch.tensor([0.0, 1.0], dtype=F64), strategy="checkpoint",
                       adjoint_options={"checkpoints": count})


@pytest.mark.parametrize("count", [2, 3.0, 1e3, "sqrt"])
def test_good_checkpoint_counts_are_accepted(count):
    y = odeint_adjoint(lambda t, y: -y, torch.ones(1, dtype=F64),
                       torch.tensor([0.0, 1.0], dtype=F64), strategy="checkpoint",
                       adjoint_options={"checkpoints": count})
    assert abs(y[-1].item() - 0.36787944) < 1e-6


def test_nan_in_f_under_an_implicit_method_is_reported_as_nan():
    """0.2 blamed a finite-time singularity (a step-size underflow) for a NaN in f."""
    f = lambda t, y: y * float("nan") if t > 0.5 else -y
    with pytest.raises(NonFiniteError, match="NaN/inf") as failure:
        odeint(f, torch.ones(1, dtype=F64), torch.tensor([0.0, 1.0], dtype=F64),
               method="kvaerno3")
    # the solve stops where f turns NaN: the stage times of the last tries straddle t = 0.5
    t_failed = float(re.search(r"at t=([0-9.e+-]+)", str(failure.value)).group(1))
    assert abs(t_failed - 0.5) < 1e-3


@pytest.mark.parametrize("method", ["kvaerno3", "dopri5"])
def test_nan_from_the_start_is_reported_as_nan(method):
    with pytest.raises(NonFiniteError, match="NaN"):
        odeint(lambda t, y: y * float("nan"), torch.ones(1, dtype=F64),
               torch.tensor([0.0, 1.0], dtype=F64), method=method)
