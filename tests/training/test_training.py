"""nodelib.training: windows, per-sample output times and the trajectory-fitting loop."""
import math

import pytest
import torch
from torch import nn

from nodelib import odeint, odeint_adjoint
from nodelib.training import (FitHistory, fit_trajectories, odeint_per_sample,
                              sample_windows)

F64 = torch.float64


def _data(device, n_traj=3, n_obs=12):
    gen = torch.Generator().manual_seed(1)
    t = torch.rand(n_traj, n_obs, generator=gen, dtype=F64).sort(dim=1).values
    t[:, 0] = 0.0
    y = torch.randn(n_traj, n_obs, 2, generator=gen, dtype=F64)
    return t.to(device), y.to(device)


def test_windows_are_consecutive_observations(device):
    t, y = _data(device)
    win = sample_windows(t, y, 4, 50, generator=torch.Generator().manual_seed(0))
    assert win.t.shape == (50, 4) and win.y.shape == (50, 4, 2) and win.y0.shape == (50, 2)
    assert win.t.device.type == device.type and win.y.dtype == F64
    assert (win.t[:, 0] == 0).all() and (win.t[:, 1:] > win.t[:, :-1]).all()
    assert torch.equal(win.y[:, 0], win.y0)
    for k in range(50):
        traj, first = win.index[k].tolist()
        assert 0 <= first <= 12 - 4          # room for the whole window
        assert torch.equal(win.y[k], y[traj, first:first + 4])
        assert torch.equal(win.t[k] + win.start[k], t[traj, first:first + 4])


def test_windows_reach_every_start_and_are_seeded():
    t, y = _data("cpu", n_traj=2, n_obs=6)
    win = sample_windows(t, y, 3, 400, generator=torch.Generator().manual_seed(0))
    # 2 trajectories x 4 starts, 400 uniform draws: each pair is missed with probability
    # (7/8)^400 ~ 1e-23, so every one appears
    assert {tuple(r) for r in win.index.tolist()} == {(i, s) for i in range(2) for s in range(4)}
    again = sample_windows(t, y, 3, 400, generator=torch.Generator().manual_seed(0))
    assert torch.equal(win.index, again.index)
    whole = sample_windows(t, y, 6, 5)                    # length = n_obs: from t[0] only
    assert (whole.index[:, 1] == 0).all() and torch.equal(whole.t[0], t[whole.index[0, 0]])


def test_one_trajectory_layout_and_bad_input():
    t = torch.linspace(0, 1, 10)
    y = torch.randn(10, 3)
    win = sample_windows(t, y, 5, 7)
    assert win.y.shape == (7, 5, 3) and (win.index[:, 0] == 0).all()
    with pytest.raises(ValueError, match="between 2 and"):
        sample_windows(t, y, 11, 2)
    with pytest.raises(ValueError, match="shape"):
        sample_windows(t, y.unsqueeze(0), 3, 2)
    with pytest.raises(ValueError, match="increasing"):
        sample_windows(t.flip(0), y, 3, 2)
    with pytest.raises(ValueError, match="batch_size"):
        sample_windows(t, y, 3, 0)


class Linear(nn.Module):
    """dy/dt = -k y with one rate per sample row (a batch of different decays)."""

    def __init__(self, k):
        super().__init__()
        self.k = nn.Parameter(k)

    def forward(self, t, y):
        return -self.k.unsqueeze(1) * y


@pytest.mark.parametrize("solver", [odeint, odeint_adjoint])
def test_per_sample_times_match_exact_solution(solver, device):
    k = torch.tensor([0.5, 1.0, 2.0], dtype=F64, device=device)
    y0 = torch.tensor([[1.0, -2.0], [0.5, 3.0], [-1.0, 1.0]], dtype=F64, device=device)
    t = torch.tensor([[0.0, 0.3, 0.9], [0.0, 0.1, 2.0], [0.0, 0.3, 0.5]], dtype=F64,
                     device=device)
    func = Linear(k)
    ys = odeint_per_sample(func, y0, t, solver=solver, rtol=1e-10, atol=1e-12)
    exact = y0.unsqueeze(1) * torch.exp(-k[:, None, None] * t.unsqueeze(2))
    assert ys.shape == (3, 3, 2) and ys.device.type == device.type
    # dopri5 at rtol 1e-10: global error ~1e-10 on these O(1) states; 1e-8 is a wide margin,
    # while a mix-up of rows or times would be off by O(0.1)
    assert torch.allclose(ys, exact, atol=1e-8, rtol=0)
    # gradients reach the field's parameters: d/dk of sum y(t) = -t y(t)
    ys.sum().backward()
    grad = (-t.unsqueeze(2) * exact).sum(dim=(1, 2))
    assert torch.allclose(func.k.grad, grad, atol=1e-6)


def test_per_sample_solve_is_one_shared_solve():
    """Asking for 100 more output times adds no steps: dense output, not extra steps."""
    from nodelib import SolverStats
    k = torch.ones(4, dtype=F64)
    y0 = torch.ones(4, 1, dtype=F64)
    few = torch.tensor([0.0, 1.0], dtype=F64).expand(4, 2)
    gen = torch.Generator().manual_seed(0)
    many = torch.cat([torch.zeros(4, 1, dtype=F64),
                      torch.rand(4, 25, generator=gen, dtype=F64).sort(1).values,
                      torch.ones(4, 1, dtype=F64)], 1)
    counts = []
    for t in (few, many):
        stats = SolverStats()
        odeint_per_sample(Linear(k), y0, t, rtol=1e-6, atol=1e-8, stats=stats)
        counts.append(stats.forward.n_accepted)
    assert counts[0] == counts[1] > 0


def test_per_sample_rejects_bad_times():
    y0 = torch.zeros(2, 1)
    f = Linear(torch.ones(2))
    with pytest.raises(ValueError, match="same time"):
        odeint_per_sample(f, y0, torch.tensor([[0.0, 1.0], [0.1, 1.0]]))
    with pytest.raises(ValueError, match="increasing"):
        odeint_per_sample(f, y0, torch.tensor([[0.0, 1.0], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="shape"):
        odeint_per_sample(f, y0, torch.tensor([0.0, 1.0]))


class Rotation(nn.Module):
    """dy/dt = w J y: a rotation at an unknown rate w (one parameter)."""

    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(float(w), dtype=F64))

    def forward(self, t, y):
        return self.w * torch.stack([-y[..., 1], y[..., 0]], dim=-1)


def test_fit_recovers_a_rotation_rate_and_records_history():
    t = torch.linspace(0, 3, 31, dtype=F64)
    y = torch.stack([torch.cos(1.5 * t), torch.sin(1.5 * t)], dim=-1)   # w = 1.5
    model = Rotation(1.0)
    seen = []
    history = fit_trajectories(model, t, y, iterations=150, length=5, batch_size=8, lr=5e-2,
                               solver_kwargs=dict(rtol=1e-7, atol=1e-9),
                               generator=torch.Generator().manual_seed(0),
                               callback=lambda i, f: seen.append(i))
    assert isinstance(history, FitHistory) and seen == list(range(150))
    arrays = history.as_arrays()
    assert arrays["loss"].shape == (150,) and (arrays["length"] == 5).all()
    assert (arrays["nfe_forward"] > 0).all() and (arrays["nfe_backward"] == 0).all()
    # a one-parameter least-squares problem with exact data: Adam from 1.0 ends within 1e-2
    # of 1.5 (5e-4 in our runs), while not moving at all would leave an error of 0.5
    assert abs(model.w.item() - 1.5) < 1e-2
    assert history.loss[-1] < 0.1 * history.loss[0]


def test_fit_growing_horizon_and_adjoint():
    t = torch.linspace(0, 3, 31, dtype=F64)
    y = torch.stack([torch.cos(t), torch.sin(t)], dim=-1)
    history = fit_trajectories(Rotation(1.2), t, y, iterations=6,
                               length=lambda i: 3 + 5 * i, batch_size=2, lr=1e-2,
                               solver=odeint_adjoint, solver_kwargs=dict(rtol=1e-6, atol=1e-8))
    assert history.length == [3, 8, 13, 18, 23, 28]
    # the adjoint integrates backwards, so its backward NFE are counted
    assert all(n > 0 for n in history.nfe_backward)
    assert all(math.isfinite(v) for v in history.loss)
    with pytest.raises(ValueError, match="iterations"):
        fit_trajectories(Rotation(1.0), t, y, iterations=-1, length=3, batch_size=1)


def test_near_duplicate_times_are_merged():
    """0.1 + 0.2 and 0.3 differ in the last bit; the adjoint must not be asked to step
    across that gap (it would underflow), and both rows get the same output."""
    y0 = torch.ones(2, 1, dtype=F64)
    t = torch.tensor([[0.0, 0.3, 1.0], [0.0, 0.1 + 0.2, 1.0]], dtype=F64)
    assert t[0, 1] != t[1, 1]
    func = Linear(torch.ones(2, dtype=F64))
    ys = odeint_per_sample(func, y0, t, solver=odeint_adjoint, rtol=1e-8, atol=1e-10)
    assert torch.equal(ys[0], ys[1])
    ys.sum().backward()                                   # no StepSizeUnderflowError
    assert torch.isfinite(func.k.grad).all()
