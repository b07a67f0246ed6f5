"""SolverStats reports what the solver really did."""
import numpy as np
import pytest
import torch
from torch import nn

from nodelib import TABLEAUX, SolverStats, odeint, odeint_adjoint


class Counting(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(-0.8, dtype=torch.float64))
        self.calls = 0

    def forward(self, t, y):
        self.calls += 1
        return self.w * y * torch.cos(3 * t)


@pytest.mark.parametrize("method", list(TABLEAUX))
def test_nfe_counts_real_calls(method):
    f = Counting()
    stats = SolverStats()
    opts = {"step_size": 0.1} if not TABLEAUX[method].adaptive else None
    t = torch.linspace(0, 3, 7, dtype=torch.float64)
    odeint(f, torch.ones(3, dtype=torch.float64), t, method=method, options=opts, stats=stats)
    assert stats.nfe_forward == f.calls
    tr = stats.forward.trace_arrays()
    assert len(tr["t"]) == stats.forward.n_accepted + stats.forward.n_rejected
    assert tr["accepted"].sum() == stats.forward.n_accepted
    acc = tr["accepted"]
    # accepted steps tile [0, 3] exactly
    assert tr["t"][acc][0] == 0.0
    assert np.isclose(tr["t"][acc][-1] + tr["h"][acc][-1], 3.0, atol=1e-12)
    assert np.allclose(tr["t"][acc][1:], tr["t"][acc][:-1] + tr["h"][acc][:-1])
    if TABLEAUX[method].adaptive:
        assert (tr["error_ratio"][acc] <= 1).all() and (tr["error_ratio"][~acc] > 1).all()


def test_rejections_happen_and_are_recorded():
    # a sharp pulse at t = 1 forces the controller to reject steps that jump into it
    f = lambda t, y: -50 * (t - 1) * torch.exp(-25 * (t - 1) ** 2) * torch.ones_like(y)
    stats = SolverStats()
    odeint(f, torch.zeros(1, dtype=torch.float64), torch.tensor([0.0, 3.0], dtype=torch.float64),
           rtol=1e-6, atol=1e-9, stats=stats)
    assert stats.forward.n_rejected > 0


def test_backward_nfe_counts_real_calls():
    f = Counting()
    stats = SolverStats()
    y0 = torch.ones(3, dtype=torch.float64, requires_grad=True)
    ys = odeint_adjoint(f, y0, torch.linspace(0, 2, 4, dtype=torch.float64), stats=stats)
    forward_calls = f.calls
    assert stats.nfe_forward == forward_calls and stats.nfe_backward == 0
    ys.sum().backward()
    assert stats.nfe_backward == f.calls - forward_calls > 0
    assert stats.backward.n_accepted > 0
