"""odeint_adjoint's options: the forward norm reaches the backward solve, a callable adjoint
norm sees torchdiffeq's tuple, a field that depends on t only, an unknown strategy."""
import math

import pytest
import torch
from torch import nn

from nodelib import SolverStats, odeint, odeint_adjoint

F64 = torch.float64


def decay(t, y):
    return -y


class _Linear(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([[-0.5, 1.0], [-1.0, -0.2]], dtype=F64))
        self.b = nn.Parameter(torch.tensor(0.3, dtype=F64))

    def forward(self, t, y):
        return y @ self.w.T + self.b


def test_forward_norm_works_with_odeint_adjoint():
    """A forward norm in ``options`` is used by the forward solve and, for z and a, by the
    backward one — with or without explicit adjoint_options (it is never silently dropped)."""
    f, t = _Linear(), torch.tensor([0.0, 2.0], dtype=F64)
    calls = {"n": 0}

    def norm(err):
        calls["n"] += 1
        return 10 * err.abs().max()
    for adjoint_options in (None, {}, {"norm": "seminorm"}):
        calls["n"] = 0
        y0 = torch.ones(2, dtype=F64, requires_grad=True)
        stats = SolverStats()
        ys = odeint_adjoint(f, y0, t, options={"norm": norm}, adjoint_options=adjoint_options,
                            stats=stats)
        forward_calls = calls["n"]
        assert forward_calls >= stats.forward.n_accepted + stats.forward.n_rejected
        ys.sum().backward()
        assert calls["n"] > forward_calls      # the backward solve measured z and a with it
        plain = SolverStats()
        odeint(f, y0.detach(), t, stats=plain)
        assert stats.nfe_forward > plain.nfe_forward   # the 10x norm tightened the forward solve


def test_callable_adjoint_norm_gets_torchdiffeq_tuple():
    f, y0 = _Linear(), torch.ones(3, 2, dtype=F64, requires_grad=True)
    seen = []

    def adjoint_norm(parts):
        seen.append(tuple(tuple(p.shape) for p in parts))
        return torch.stack([p.abs().max() for p in parts]).max()
    t = torch.tensor([0.0, 1.0], dtype=F64, requires_grad=True)
    odeint_adjoint(f, y0, t, adjoint_options={"norm": adjoint_norm}).sum().backward()
    # (a_t, z, a, dL/dw, dL/db): z and a shaped like the state, each parameter like itself
    assert seen and set(seen) == {((), (3, 2), (3, 2), (2, 2), ())}


@pytest.mark.parametrize("fixed_forward", [False, True])
def test_backward_norm_measures_each_tensor_of_a_tuple_state(fixed_forward):
    """The backward solve measures z and a part by part, as the forward solve does: 1000
    components that never move (and get no adjoint) leave the pair's backward steps and
    gradient exactly as without them — also after a fixed-step forward method, whose own solve
    has no norm. The first steps are given: their heuristic looks at the state's size."""
    t = torch.tensor([0.0, 3.0], dtype=F64)
    forward = ({"method": "rk4", "options": {"step_size": 0.01}} if fixed_forward
               else {"method": "dopri5", "options": {"first_step": 1e-3}})
    backward = {"adjoint_method": "dopri5", "adjoint_options": {"first_step": 1e-3}}
    A = torch.tensor([[0.0, 1.0], [-25.0, -0.1]], dtype=F64)

    def pair_f(t, q):
        return q @ A.T
    q0 = torch.tensor([1.0, 0.0], dtype=F64, requires_grad=True)
    alone = SolverStats()
    odeint_adjoint(pair_f, q0, t, rtol=1e-6, atol=1e-8, stats=alone, adjoint_params=(),
                   **forward, **backward)[-1].square().sum().backward()
    g_alone = q0.grad.clone()
    q0.grad = None
    joint = SolverStats()
    ys = odeint_adjoint(lambda t, s: (pair_f(t, s[0]), torch.zeros_like(s[1])),
                        (q0, torch.ones(1000, dtype=F64)), t, rtol=1e-6, atol=1e-8,
                        stats=joint, adjoint_params=(), **forward, **backward)
    ys[0][-1].square().sum().backward()
    assert joint.backward.n_accepted == alone.backward.n_accepted > 5
    assert torch.equal(q0.grad, g_alone)


def test_adjoint_time_only_field():
    """f = -0.1 e^{-0.1 t}: y(T) = y0 + e^{-0.1 T} - 1, so dL/dy0 = 1 and dL/dT = f(T)."""
    f = lambda t, y: -0.1 * torch.exp(-0.1 * t) * torch.ones_like(y)
    y0 = torch.tensor([2.0], dtype=F64, requires_grad=True)
    t = torch.tensor([0.0, 3.0], dtype=F64, requires_grad=True)
    ys = odeint_adjoint(f, y0, t, adjoint_params=())
    assert abs(ys[-1].item() - (2.0 + math.exp(-0.3) - 1)) < 1e-7
    ys[-1].sum().backward()
    assert abs(y0.grad.item() - 1.0) < 1e-12
    assert abs(t.grad[1].item() - (-0.1 * math.exp(-0.3))) < 1e-9


def test_unknown_strategy():
    with pytest.raises(ValueError, match="unknown adjoint strategy 'bogus'"):
        odeint_adjoint(decay, torch.ones(1), torch.tensor([0.0, 1.0]), strategy="bogus")
