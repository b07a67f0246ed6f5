"""Every model differentiates through the one gradient switch (issue 20: ``LatentODE(adjoint=
"checkpoint")`` silently ran backsolve, and ``adjoint="backprop"`` — truthy — ran it too)."""
from __future__ import annotations

import pytest
import torch

from nodelib import LatentODE

F64 = torch.float64


@pytest.mark.parametrize("gradient, backward_nfe", [
    ("backprop", False), (False, False), ("backsolve", True), (True, True), ("checkpoint", True)])
def test_latent_ode_uses_the_strategy_it_is_given(gradient, backward_nfe):
    torch.manual_seed(0)
    model = LatentODE(obs_dim=2, latent_dim=3, adjoint=gradient, method="rk4",
                      options={"step_size": 0.25}).double()
    z0 = torch.randn(4, 3, dtype=F64)
    t = torch.linspace(0.0, 1.0, 5, dtype=F64)
    model.decode(z0, t).square().sum().backward()
    # backprop replays the graph (no backward evaluations); both adjoints evaluate f backwards
    assert (model.stats.nfe_backward > 0) == backward_nfe


def test_checkpoint_gradient_is_backprops():
    """The checkpointed gradient is the exact gradient of the discrete solve: backprop's."""
    grads = {}
    for gradient in ("backprop", "checkpoint", "backsolve"):
        torch.manual_seed(0)
        model = LatentODE(obs_dim=2, latent_dim=3, adjoint=gradient, method="rk4",
                          options={"step_size": 0.25}).double()
        z0 = torch.randn(4, 3, dtype=F64)
        model.decode(z0, torch.linspace(0.0, 1.0, 5, dtype=F64)).square().sum().backward()
        grads[gradient] = torch.cat([p.grad.reshape(-1) for p in model.dynamics.parameters()])
    # (1e-10: rounding of two orders of the same sums)
    assert torch.allclose(grads["checkpoint"], grads["backprop"], rtol=1e-10, atol=1e-12)
    assert not torch.allclose(grads["backsolve"], grads["backprop"], rtol=1e-10, atol=1e-12)


def test_unknown_gradient_is_refused_at_construction():
    with pytest.raises(ValueError, match="unknown gradient mode"):
        LatentODE(adjoint="adjoint")


@pytest.mark.parametrize("adjoint", [False, True, "backprop", "backsolve"])
def test_one_gradient_switch_for_models(adjoint):
    """ODEBlock and CNF choose odeint or odeint_adjoint through nodelib.solve_with_gradient:
    the same gradients either way, and backward NFE only for an adjoint strategy."""
    from nodelib import CNF, MLPField, ODEBlock
    torch.manual_seed(0)
    field = MLPField(2, hidden=8).double()
    x = torch.randn(4, 2, dtype=F64)
    grads = []
    for mode in (False, adjoint):
        block = ODEBlock(field, adjoint=mode, rtol=1e-9, atol=1e-9)
        field.zero_grad()
        block(x).pow(2).sum().backward()
        grads.append([p.grad.clone() for p in field.parameters()])
        assert (block.nfe_backward > 0) == (mode in (True, "backsolve"))
    # backprop and the adjoint agree to the solver tolerance
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-8) for a, b in zip(*grads))
    cnf = CNF(MLPField(2, hidden=8).double(), adjoint=adjoint)
    logp = cnf.log_prob(x)
    logp.sum().backward()
    assert logp.shape == (4,) and (cnf.stats.nfe_backward > 0) == (adjoint in (True, "backsolve"))
