"""Gradients: gradcheck, adjoint vs backprop, a closed form, and the adjoint's flat memory."""
import math

import pytest
import torch
from torch import nn

from nodelib import SolverStats, odeint, odeint_adjoint

TIGHT = dict(rtol=1e-11, atol=1e-11)


class Field(nn.Module):
    """A small time-dependent MLP vector field."""

    def __init__(self, dim=2, hidden=8):
        super().__init__()
        self.lin1 = nn.Linear(dim, hidden)
        self.lin2 = nn.Linear(hidden, dim)

    def forward(self, t, y):
        return self.lin2(torch.tanh(self.lin1(y))) * torch.cos(t)


def _field(device):
    torch.manual_seed(0)
    return Field().double().to(device)


@pytest.mark.parametrize("solver", [odeint, odeint_adjoint])
def test_gradcheck_y0_t_params(solver, device):
    """Finite differences of the numerical solution vs autograd, in float64. At rtol = atol
    = 1e-11 the solution's dependence on the inputs is smooth to ~1e-10, so central differences
    with gradcheck's eps = 1e-6 agree to ~1e-4 relative, inside gradcheck's rtol = 1e-3."""
    kw = dict(dtype=torch.float64, device=device)
    W = (0.5 * torch.randn(2, 2, generator=torch.Generator().manual_seed(1))).to(**kw)
    W.requires_grad_(True)
    y0 = torch.tensor([[0.3, -0.4], [1.0, 0.2]], **kw, requires_grad=True)
    t = torch.tensor([0.1, 0.6, 1.2], **kw, requires_grad=True)

    def run(y0, t, W):
        f = lambda t, y: torch.tanh(y @ W) * (1 + t)
        extra = dict(adjoint_params=(W,)) if solver is odeint_adjoint else {}
        return solver(f, y0, t, **TIGHT, **extra)

    assert torch.autograd.gradcheck(run, (y0, t, W))


def test_adjoint_agrees_with_backprop(device):
    f = _field(device)
    kw = dict(dtype=torch.float64, device=device)
    y0 = torch.randn(6, 2, **kw, requires_grad=True)
    t = torch.tensor([0.0, 0.4, 1.0, 1.7], **kw, requires_grad=True)
    grads = []
    for solver in (odeint, odeint_adjoint):
        ys = solver(f, y0, t, **TIGHT)
        loss = (ys ** 2).sum() + ys[1, :, 0].sum()
        grads.append(torch.autograd.grad(loss, [y0, t, *f.parameters()]))
    for g_backprop, g_adjoint in zip(*grads):
        # both are accurate to ~tol relative to gradients of O(1): 1e-7 leaves a margin for the
        # error amplification over t in [0, 1.7]
        assert torch.allclose(g_backprop, g_adjoint, rtol=1e-7, atol=1e-7)


def test_seminorm_same_gradient_fewer_or_equal_steps():
    f = _field("cpu")
    y0 = torch.randn(32, 2, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0.0, 2.0], dtype=torch.float64)
    results = {}
    for norm in (None, "seminorm"):
        stats = SolverStats()
        opts = {"norm": norm} if norm else None
        ys = odeint_adjoint(f, y0, t, rtol=1e-7, atol=1e-9, adjoint_options=opts, stats=stats)
        g = torch.autograd.grad(ys[-1].pow(2).sum(), [y0, *f.parameters()])
        results[norm] = (g, stats.nfe_backward)
    (g_full, nfe_full), (g_semi, nfe_semi) = results[None], results["seminorm"]
    assert nfe_semi <= nfe_full
    for a, b in zip(g_full, g_semi):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)   # both within ~tol of the truth


@pytest.mark.parametrize("solver", [odeint, odeint_adjoint])
def test_analytic_gradient_linear_ode(solver, device):
    """y' = a y, L = y(t1): dL/dy0 = e^{aT}, dL/da = y0 T e^{aT}, dL/dt1 = a y(t1),
    dL/dt0 = -a y0 e^{aT}, with T = t1 - t0."""
    kw = dict(dtype=torch.float64, device=device)
    a = torch.tensor(0.7, **kw, requires_grad=True)
    y0 = torch.tensor([1.3], **kw, requires_grad=True)
    t = torch.tensor([0.2, 1.5], **kw, requires_grad=True)
    f = lambda t, y: a * y
    extra = dict(adjoint_params=(a,)) if solver is odeint_adjoint else {}
    yT = solver(f, y0, t, **TIGHT, **extra)[-1, 0]
    g_y0, g_a, g_t = torch.autograd.grad(yT, [y0, a, t])
    T, A, Y0 = 1.3, 0.7, 1.3
    expected = {"y0": math.exp(A * T), "a": Y0 * T * math.exp(A * T),
                "t1": A * Y0 * math.exp(A * T), "t0": -A * Y0 * math.exp(A * T)}
    got = {"y0": g_y0.item(), "a": g_a.item(), "t1": g_t[1].item(), "t0": g_t[0].item()}
    for k in expected:   # tolerance 1e-11 relative per step, O(10) steps: 1e-8 is safe
        assert abs(got[k] - expected[k]) < 1e-8 * abs(expected[k]), (k, got[k], expected[k])


def test_adjoint_gradient_for_tuple_state():
    a = torch.tensor(-0.5, dtype=torch.float64, requires_grad=True)
    y0 = (torch.tensor([1.0], dtype=torch.float64, requires_grad=True),
          torch.tensor([2.0, 3.0], dtype=torch.float64, requires_grad=True))
    f = lambda t, s: (a * s[0], a * s[1] + s[0])
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    grads = []
    for solver, extra in ((odeint, {}), (odeint_adjoint, dict(adjoint_params=(a,)))):
        x, v = solver(f, y0, t, **TIGHT, **extra)
        loss = x[-1].sum() + (v[-1] ** 2).sum()
        grads.append(torch.autograd.grad(loss, [*y0, a]))
    for g1, g2 in zip(*grads):
        assert torch.allclose(g1, g2, rtol=1e-8)


def _saved_bytes(fn):
    """Bytes of all tensors autograd saves for backward while running ``fn``."""
    total = 0

    def pack(x):
        nonlocal total
        total += x.numel() * x.element_size()
        return x
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        out = fn()
    return total, out


@pytest.mark.parametrize("method, steps", [("rk4", [10, 40, 160]), ("dopri5", [1e-2, 1e-6, 1e-10])])
def test_adjoint_memory_flat_in_steps(method, steps, device):
    f = _field(device)
    y0 = torch.randn(64, 2, dtype=torch.float64, device=device, requires_grad=True)
    t = torch.tensor([0.0, 1.0], dtype=torch.float64, device=device)
    sizes = {"adjoint": [], "backprop": []}
    nfes = []
    for s in steps:
        kw = (dict(method="rk4", options={"step_size": 1.0 / s}) if method == "rk4"
              else dict(method="dopri5", rtol=s, atol=s))
        stats = SolverStats()
        sizes["adjoint"].append(_saved_bytes(lambda: odeint_adjoint(f, y0, t, stats=stats, **kw))[0])
        nfes.append(stats.nfe_forward)
        sizes["backprop"].append(_saved_bytes(lambda: odeint(f, y0, t, **kw))[0])
    assert nfes[-1] >= 4 * nfes[0]                        # the step count really grew ...
    assert len(set(sizes["adjoint"])) == 1                # ... the adjoint's memory did not
    assert sizes["backprop"][-1] >= 3 * sizes["backprop"][0]   # while backprop's grew with it
