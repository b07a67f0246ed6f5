"""Outputs between the grid points of a fixed-step method (bug 1 of issue 20: a cubic Hermite
through stiff slopes overshot without bound: implicit_euler returned -11.87 between grid values
1 and 0.0099)."""
from __future__ import annotations

import pytest
import torch

from nodelib import odeint
from nodelib.solvers.tableaux import FIXED_STEP_METHODS, TABLEAUX

F64 = torch.float64
IMPLICIT_FIXED = [m for m in FIXED_STEP_METHODS if TABLEAUX[m].implicit]


@pytest.mark.parametrize("method", IMPLICIT_FIXED)
@pytest.mark.parametrize("h_lambda", [1.0, 10.0, 1e2, 1e3, 1e4])
def test_implicit_outputs_between_grid_points_stay_between_grid_values(method, h_lambda):
    """y' = -λy with h = 0.1: every output inside a step lies between the values at the step's
    two grid points (the interpolant is a convex combination of them), whatever h·|λ|."""
    lam, h = h_lambda / 0.1, 0.1
    grid = torch.linspace(0.0, 1.0, 11, dtype=F64)
    inside = torch.linspace(0.0, 1.0, 41, dtype=F64)           # 3 outputs inside every step
    f = lambda t, y: -lam * y
    y0 = torch.ones(1, dtype=F64)
    at_grid = odeint(f, y0, grid, method=method, options={"step_size": h})[:, 0]
    ys = odeint(f, y0, inside, method=method, options={"step_size": h})[:, 0]
    for k in range(10):
        lo, hi = sorted((at_grid[k].item(), at_grid[k + 1].item()))
        for y in ys[4 * k:4 * k + 5]:
            # (1e-12: rounding of the convex combination)
            assert lo - 1e-12 <= y.item() <= hi + 1e-12, (method, h_lambda, k, y.item(), lo, hi)


def test_the_issue_example():
    ys = odeint(lambda t, y: -1000.0 * y, torch.ones(1, dtype=F64),
                torch.tensor([0.0, 0.05, 0.1], dtype=F64), method="implicit_euler",
                options={"step_size": 0.1})
    assert 0.0099 <= ys[1].item() <= 1.0


@pytest.mark.parametrize("method", IMPLICIT_FIXED)
def test_explicit_cubic_request_is_honoured(method):
    """``interp="cubic"`` stays available (accurate on non-stiff problems); only the default of
    the implicit methods changed to the line."""
    t = torch.tensor([0.0, 0.05, 0.1], dtype=F64)
    f = lambda t, y: -y
    line = odeint(f, torch.ones(1, dtype=F64), t, method=method, options={"step_size": 0.1})
    cubic = odeint(f, torch.ones(1, dtype=F64), t, method=method,
                   options={"step_size": 0.1, "interp": "cubic"})
    assert torch.equal(line[-1], cubic[-1]) and not torch.equal(line[1], cubic[1])
