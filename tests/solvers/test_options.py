"""torchdiffeq's options, as torchdiffeq's users pass them: a one-point t, norms (called with
the error shaped like the state), step callbacks, perturb, jump_t, step_t, min_step /
max_step and grid_constructor."""
import math
import warnings

import pytest
import torch
from torch import nn

from nodelib import SolverStats, odeint, odeint_adjoint, odesolve

F64 = torch.float64


def decay(t, y):
    return -y


@pytest.mark.parametrize("solver", [odeint, odeint_adjoint])
def test_single_time_returns_y0_and_its_gradient(solver):
    y0 = torch.tensor([1.0, 2.0], dtype=F64, requires_grad=True)
    ys = solver(decay, y0, torch.tensor([0.3], dtype=F64))
    assert ys.shape == (1, 2) and torch.equal(ys[0], y0.detach())
    (3 * ys).sum().backward()
    assert torch.equal(y0.grad, torch.full((2,), 3.0, dtype=F64))


def test_single_time_tuple_state():
    y0 = (torch.ones(2, dtype=F64), torch.zeros((), dtype=F64))
    a, b = odeint(lambda t, s: (s[0], s[1]), y0, torch.tensor([0.0], dtype=F64))
    assert a.shape == (1, 2) and b.shape == (1,)


def test_norm_receives_state_shaped_error():
    shapes = []

    def norm(err):
        shapes.append(tuple(err.shape))
        return err.pow(2).mean().sqrt()
    odeint(decay, torch.ones(3, 2, dtype=F64), torch.tensor([0.0, 1.0], dtype=F64),
           options={"norm": norm})
    assert shapes and set(shapes) == {(3, 2)}


def test_norm_receives_tuple_for_tuple_state():
    seen = []

    def norm(err):
        seen.append(tuple(tuple(e.shape) for e in err))
        return err[0].abs().max()
    y0 = (torch.tensor(1.0, dtype=F64), torch.ones(2, 2, dtype=F64))
    odeint(lambda t, s: (-s[0], -s[1]), y0, torch.tensor([0.0, 1.0], dtype=F64),
           options={"norm": norm})
    assert seen and set(seen) == {((), (2, 2))}


def test_larger_norm_costs_more_steps():
    """A norm 10x larger means a 10x tighter tolerance: more evaluations, never fewer."""
    f = lambda t, y: torch.sin(3 * t) * y
    y0, t = torch.ones(2, dtype=F64), torch.tensor([0.0, 3.0], dtype=F64)
    small, large = SolverStats(), SolverStats()
    odeint(f, y0, t, options={"norm": lambda e: e.abs().max()}, stats=small)
    odeint(f, y0, t, options={"norm": lambda e: 10 * e.abs().max()}, stats=large)
    assert large.nfe_forward > small.nfe_forward


def test_per_sample_norm_bounds_every_sample():
    """torchdiffeq's spiral y' = y³A from 64 radii: the large ones turn much faster. One RMS
    over the batch lets them hide behind the many easy ones; the per-sample norm holds each
    sample to the tolerance (at the price of more steps)."""
    A = torch.tensor([[-0.1, 2.0], [-2.0, -0.1]], dtype=F64)
    f = lambda t, y: (y ** 3) @ A
    radii = torch.linspace(0.2, 2.0, 64, dtype=F64)
    y0 = torch.stack([radii, torch.zeros_like(radii)], dim=1)
    t = torch.tensor([0.0, 5.0], dtype=F64)
    ref = odeint(f, y0, t, rtol=1e-12, atol=1e-12, options={"norm": "per_sample"})[-1]
    err, nfe = {}, {}
    for norm in ("rms", "per_sample"):
        stats = SolverStats()
        ys = odeint(f, y0, t, rtol=1e-5, atol=1e-5, options={"norm": norm}, stats=stats)
        err[norm], nfe[norm] = (ys[-1] - ref).abs().max().item(), stats.nfe_forward
    # measured: 1.5e-3 against 2.0e-4 (7x); 3x leaves room for platform rounding
    assert err["per_sample"] < err["rms"] / 3
    assert nfe["per_sample"] > nfe["rms"]


def _oscillator_and_bystander(n_bystander):
    """A tuple state: an oscillating pair, then n_bystander components that never move (their
    error estimate is exactly zero)."""
    def f(t, s):
        q, rest = s
        return torch.stack([q[1], -25 * q[0]]), torch.zeros_like(rest)
    y0 = (torch.tensor([1.0, 0.0], dtype=F64), torch.ones(n_bystander, dtype=F64))
    return f, y0


@pytest.mark.parametrize("norm", ["rms", "per_sample"])
def test_each_tensor_of_a_tuple_state_meets_the_tolerance(norm):
    """A named norm is taken on each tensor of a tuple state and the largest kept (torchdiffeq's
    mixed norm): 1000 components that never move do not dilute the moving pair's error, so the
    solve takes exactly the steps of the pair alone. (One RMS over the flat state would divide
    the pair's error by sqrt(501) and take far fewer, far less accurate steps.) The first step
    is given: the starting-step heuristic looks at the size of y0, which the bystanders change."""
    t = torch.tensor([0.0, 3.0], dtype=F64)
    f, y0 = _oscillator_and_bystander(1000)
    pair_f = lambda t, q: f(t, (q, y0[1]))[0]
    pair_y0 = y0[0] if norm == "rms" else y0[0][None]   # per_sample: a batch of one pair
    alone, joint = SolverStats(), SolverStats()
    q_alone = odeint(pair_f if norm == "rms" else (lambda t, q: pair_f(t, q[0])[None]),
                     pair_y0, t, rtol=1e-6, atol=1e-8, options={"norm": norm, "first_step": 1e-3},
                     stats=alone)
    opts = {"norm": norm, "first_step": 1e-3}
    if norm == "per_sample":   # every tensor needs the batch dimension: one row each
        f2 = lambda t, s: tuple(p[None] for p in f(t, (s[0][0], s[1][0])))
        q_joint, _ = odeint(f2, (y0[0][None], y0[1][None]), t, rtol=1e-6, atol=1e-8,
                            options=opts, stats=joint)
    else:
        q_joint, _ = odeint(f, y0, t, rtol=1e-6, atol=1e-8, options=opts, stats=joint)
    assert joint.forward.n_accepted == alone.forward.n_accepted
    assert joint.nfe_forward == alone.nfe_forward
    assert torch.equal(q_joint, q_alone)


def test_the_tuple_norm_holds_the_small_part_to_the_tolerance():
    """The accuracy the mixed norm buys: the pair's end error, next to 1000 bystanders, is
    that of the pair alone, not sqrt(501)x looser."""
    t = torch.tensor([0.0, 3.0], dtype=F64)
    f, y0 = _oscillator_and_bystander(1000)
    exact = torch.stack([torch.cos(5 * t[-1]), -5 * torch.sin(5 * t[-1])])
    q, _ = odeint(f, y0, t, rtol=1e-6, atol=1e-8)
    flat = odeint(lambda t, y: torch.cat([f(t, (y[:2], y[2:]))[0], torch.zeros(1000,
                                                                             dtype=F64)]),
                  torch.cat(y0), t, rtol=1e-6, atol=1e-8)
    err_tuple = (q[-1] - exact).abs().max().item()
    err_flat = (flat[-1, :2] - exact).abs().max().item()
    # dopri5 at rtol 1e-6 over 2.4 periods: a global error of order 1e-5 (measured 7e-6); the
    # flat RMS holds the pair to a tolerance sqrt(501) = 22x looser (measured 2e-4, 29x)
    assert err_tuple < 5e-5 and err_flat > 10 * err_tuple


def test_per_sample_norm_on_a_tuple_state_needs_a_batch_dimension_everywhere():
    y0 = (torch.ones(4, 2, dtype=F64), torch.zeros((), dtype=F64))
    with pytest.raises(ValueError, match=r"batch dimension.*y0\[1\] is 0-d"):
        odeint(lambda t, s: (-s[0], s[1]), y0, torch.tensor([0.0, 1.0], dtype=F64),
               options={"norm": "per_sample"})


class _Counted(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 2).double()
        self.counts = {}
        for name in ("callback_step", "callback_accept_step", "callback_reject_step",
                     "callback_step_adjoint", "callback_accept_step_adjoint",
                     "callback_reject_step_adjoint"):
            setattr(self, name, self._counter(name))

    def _counter(self, name):
        def callback(t0, y0, dt):
            assert isinstance(t0, torch.Tensor) and isinstance(dt, torch.Tensor)
            self.counts[name] = self.counts.get(name, 0) + 1
        return callback

    def forward(self, t, y):
        return torch.tanh(self.lin(y)) * torch.sin(20 * t)


def test_callbacks_adaptive_forward_and_adjoint():
    f = _Counted()
    stats = SolverStats()
    ys = odeint_adjoint(f, torch.ones(2, dtype=F64), torch.tensor([0.0, 1.0], dtype=F64),
                        rtol=1e-8, atol=1e-8, stats=stats)
    c = f.counts
    assert c["callback_step"] == stats.forward.n_accepted + stats.forward.n_rejected
    assert c["callback_accept_step"] == stats.forward.n_accepted
    assert c.get("callback_reject_step", 0) == stats.forward.n_rejected
    ys.sum().backward()
    assert c["callback_step_adjoint"] == stats.backward.n_accepted + stats.backward.n_rejected
    assert c["callback_accept_step_adjoint"] == stats.backward.n_accepted


def test_callbacks_fixed_step_and_warning():
    f = _Counted()
    with pytest.warns(UserWarning, match="never calls callback_accept_step"):
        odeint(f, torch.ones(2, dtype=F64), torch.tensor([0.0, 1.0], dtype=F64),
               method="rk4", options={"step_size": 0.1})
    assert f.counts["callback_step"] == 10


def test_no_warning_for_adaptive_callbacks():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        odeint(_Counted(), torch.ones(2, dtype=F64), torch.tensor([0.0, 0.1], dtype=F64))


@pytest.mark.parametrize("adjoint", [False, True])
def test_perturb_avoids_grid_points(adjoint):
    times = []

    def f(t, x):
        times.append(t.item())
        return -x
    y0 = torch.tensor([1.0, 2.0], dtype=F64, requires_grad=True)
    solver = odeint_adjoint if adjoint else odeint
    kw = dict(adjoint_params=()) if adjoint else {}
    for perturb in (False, True):
        times.clear()
        ys = solver(f, y0, torch.tensor([0.0, 1.0], dtype=F64), method="rk4",
                    options={"step_size": 0.5, "perturb": perturb}, **kw)
        grid_hit = {0.0, 0.5} & set(times)
        assert bool(grid_hit) != perturb
        if adjoint:
            times.clear()
            ys.sum().backward()
            assert bool({1.0, 0.5} & set(times)) != perturb


class _Jump(nn.Module):
    """x' = -x/2 before t = 0.5, x² after: a jump in f at 0.5."""

    def __init__(self):
        super().__init__()
        self.nfe = 0

    def forward(self, t, x):
        self.nfe += 1
        return -0.5 * x if t < 0.5 else x ** 2


@pytest.mark.parametrize("method", ["dopri5", "tsit5", "bosh3", "fehlberg2"])
def test_jump_t_saves_evaluations(method):
    y0, t = torch.tensor([1.0, 2.0], dtype=F64), torch.tensor([0.0, 1.0], dtype=F64)
    blind, told = _Jump(), _Jump()
    odeint(blind, y0, t, rtol=1e-6, atol=1e-6, method=method)
    b = odeint(told, y0, t, rtol=1e-6, atol=1e-6, method=method,
               options={"jump_t": torch.tensor([0.5])})
    assert told.nfe < blind.nfe
    exact_half = y0 * math.exp(-0.25)      # then x' = x²: x(1) = x(½) / (1 - x(½)/2)
    # x' = x² near blow-up amplifies earlier errors ~20x (dx(1)/dx(½) = 1/(1 - x(½)/2)²):
    # 5e-3 relative at rtol 1e-6 over ~100 steps
    assert torch.allclose(b[-1], exact_half / (1 - exact_half / 2), rtol=5e-3)


def test_step_t_steps_land_on_given_times():
    sol = odesolve(lambda t, y: torch.cos(t) * y, torch.ones(1, dtype=F64),
                   torch.tensor([0.0, 5.0], dtype=F64), options={"step_t": [1.234, 3.5]})
    ends = torch.tensor([t + h for t, h in zip(sol.step_t, sol.step_h)], dtype=F64)
    for landmark in (1.234, 3.5):
        assert (ends - landmark).abs().min().item() < 1e-14


def test_min_and_max_step():
    f = lambda t, y: torch.sin(5 * t) * y
    y0, t = torch.ones(1, dtype=F64), torch.tensor([0.0, 10.0], dtype=F64)
    capped = odesolve(f, y0, t, options={"max_step": 0.05})
    assert max(abs(h) for h in capped.step_h) <= 0.05 + 1e-15
    floored = odesolve(f, y0, t, options={"min_step": 2.0})
    # every step but possibly the last (which lands on t=10) is at least min_step, accepted
    # whatever its error
    assert all(abs(h) >= 2.0 - 1e-12 for h in floored.step_h[:-1])
    assert floored.stats.n_rejected == 0 and floored.stats.nfe < 50


@pytest.mark.parametrize("adjoint", [False, True])
def test_grid_constructor(adjoint):
    seen = []

    def grid(func, y0, t):
        seen.append(t.tolist())
        return torch.linspace(float(t[0]), float(t[-1]), 11)
    x0 = torch.tensor(1.0, dtype=F64, requires_grad=True)
    solver = odeint_adjoint if adjoint else odeint
    kw = dict(adjoint_params=()) if adjoint else {}
    xs = solver(lambda t, x: x, x0, torch.tensor([0.0, 1.0], dtype=F64), method="euler",
                options={"grid_constructor": grid}, **kw)
    # Euler with 10 steps of 0.1 on x' = x: exactly 1.1^10 up to rounding
    assert abs(xs[1].item() - 1.1 ** 10) < 1e-12
    xs[1].backward()
    assert abs(x0.grad.item() - 1.1 ** 10) < 1e-12
    assert seen[0] == [0.0, 1.0] and (not adjoint or seen[1] == [1.0, 0.0])


def test_grid_constructor_must_span_t():
    with pytest.raises(ValueError, match="grid_constructor must return a grid"):
        odeint(decay, torch.ones(1), torch.tensor([0.0, 1.0]), method="euler",
               options={"grid_constructor": lambda f, y0, t: torch.linspace(0, 0.5, 3)})
