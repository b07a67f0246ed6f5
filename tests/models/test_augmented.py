"""Augmented ODE blocks, the augmented Neural ODE model and the NFE-recording training loop."""
import math

import pytest
import torch
from torch import nn

from nodelib import MLPField, ODEBlock, odeint
from nodelib.models.blocks import (AugmentedNeuralODE, AugmentedODEBlock,
    augment)
from nodelib.training.loops import History, fit

F64 = torch.float64


def test_augment_appends_zeros_on_the_inputs_device(device):
    x = torch.randn(5, 3, dtype=F64, device=device)
    z = augment(x, 4)
    assert z.shape == (5, 7) and z.device == x.device and z.dtype == x.dtype
    assert torch.equal(z[:, :3], x) and torch.equal(z[:, 3:], torch.zeros_like(z[:, 3:]))
    assert augment(x, 0) is x
    # works for any leading shape: only the last axis grows
    assert augment(torch.ones(2, 4, 3, device=device), 1).shape == (2, 4, 4)
    with pytest.raises(ValueError, match="augment_dim"):
        augment(x, -1)


def test_p0_is_exactly_the_plain_ode_block(device):
    torch.manual_seed(0)
    field = MLPField(2, hidden=16).to(device, F64)
    x = torch.randn(8, 2, dtype=F64, device=device)
    outs, grads, nfes = [], [], []
    for block in (ODEBlock(field, t1=0.7), AugmentedODEBlock(field, 0, t1=0.7)):
        xi = x.clone().requires_grad_(True)
        out = block(xi)
        out.square().sum().backward()
        outs.append(out.detach())
        grads.append([xi.grad] + [p.grad.clone() for p in field.parameters()])
        nfes.append((block.nfe_forward, block.nfe_backward))
        field.zero_grad()
    # the same solver on the same tensors: equal bit for bit, not merely close
    assert torch.equal(outs[0], outs[1])
    assert all(torch.equal(a, b) for a, b in zip(*grads))
    assert nfes[0] == nfes[1] and nfes[0][1] > 0


@pytest.mark.parametrize("adjoint", [True, False])
def test_augmented_block_solves_from_x_and_zeros(device, adjoint):
    torch.manual_seed(0)
    d, p = 2, 3
    field = MLPField(d + p, hidden=16).to(device, F64)
    block = AugmentedODEBlock(field, p, t1=1.0, rtol=1e-9, atol=1e-9, adjoint=adjoint)
    x = torch.randn(6, d, dtype=F64, device=device, requires_grad=True)
    t = torch.linspace(0, 1, 5, dtype=F64, device=device)
    zs = block.trajectory(x, t)
    assert zs.shape == (5, 6, d + p)
    # a(0) = 0 and h(0) = x
    assert torch.equal(zs[0, :, :d], x.detach()) and torch.equal(zs[0, :, d:], torch.zeros(6, p, dtype=F64, device=device))
    # the solve is the ODE in R^{d+p} from the padded state
    padded = torch.cat([x.detach(), torch.zeros(6, p, dtype=F64, device=device)], dim=1)
    ref = odeint(field, padded, t, rtol=1e-9, atol=1e-9)
    assert torch.allclose(zs.detach(), ref, atol=1e-12)   # same solver, same settings: rounding only
    # the augmented coordinates move (f's last p outputs are not 0), so the extra room is used
    assert zs[-1, :, d:].abs().max() > 1e-3
    # gradients reach x and every parameter of the field
    zs[-1].square().sum().backward()
    assert x.grad is not None and x.grad.abs().max() > 0
    assert all(q.grad is not None and q.grad.abs().max() > 0 for q in field.parameters())
    assert (block.nfe_backward > 0) == adjoint


def test_adjoint_and_backprop_gradients_agree_for_augmented_block():
    torch.manual_seed(1)
    field = MLPField(3, hidden=8).double()
    x = torch.randn(4, 1, dtype=F64)
    grads = []
    for adjoint in (True, False):
        xi = x.clone().requires_grad_(True)
        AugmentedODEBlock(field, 2, rtol=1e-10, atol=1e-10, adjoint=adjoint)(xi).sum().backward()
        grads.append(torch.cat([xi.grad.reshape(-1)] + [q.grad.reshape(-1) for q in field.parameters()]))
        field.zero_grad()
    # both are accurate to ~1e-10 (the tolerances); 1e-6 tells "both right" from a wrong formula
    assert torch.allclose(grads[0], grads[1], rtol=1e-6, atol=1e-8)


class Rotation(nn.Module):
    """d/dt (h, a) = π (-a, h): a half turn in the (h, a) plane over t ∈ [0, 1]."""

    def forward(self, t, z):
        return math.pi * torch.stack([-z[..., 1], z[..., 0]], dim=-1)


def test_one_extra_dimension_represents_the_flip(device):
    # The 1-D flip g(-1) = 1, g(1) = -1 that no 1-D ODE can represent: with one augmented
    # dimension a half turn maps (x, 0) to (-x, 0).
    x = torch.tensor([[-1.0], [1.0]], dtype=F64, device=device)
    out = AugmentedODEBlock(Rotation(), 1, rtol=1e-10, atol=1e-10, adjoint=False)(x)
    # dopri5 at tolerance 1e-10 on a smooth linear ODE: the error is far below 1e-7
    assert torch.allclose(out, torch.cat([-x, torch.zeros_like(x)], dim=1), atol=1e-7)


def test_model_reads_out_linearly_and_p0_is_a_node(device):
    torch.manual_seed(0)
    model = AugmentedNeuralODE(2, 3, augment_dim=0, hidden=8).to(device, F64)
    x = torch.randn(5, 2, dtype=F64, device=device)
    assert model.readout.in_features == 2 and model.block.augment_dim == 0
    plain = ODEBlock(model.block.field)
    assert torch.equal(model(x), model.readout(plain(x)))
    assert model.nfe_forward == model.block.nfe_forward > 0
    aug = AugmentedNeuralODE(2, 3, augment_dim=5, hidden=8).to(device, F64)
    assert aug.readout.in_features == 7 and aug(x).shape == (5, 3)
    assert aug.trajectory(x, torch.tensor([0.0, 0.5, 1.0])).shape == (3, 5, 7)
    assert torch.allclose(aug.readout(aug.trajectory(x, torch.tensor([0.0, 1.0]))[-1]), aug(x))
    with pytest.raises(ValueError, match="augment_dim"):
        AugmentedODEBlock(MLPField(2), -1)


def test_fit_records_loss_and_nfe_per_epoch(device):
    torch.manual_seed(0)
    x = torch.linspace(-1, 1, 32, device=device).unsqueeze(1)
    y = 0.5 * x + 0.3
    model = AugmentedNeuralODE(1, 1, augment_dim=1, hidden=8).to(device)
    # the first epoch's forward NFE is that of a forward pass with the initial parameters
    with torch.no_grad():
        model(x)
    nfe0 = model.nfe_forward
    hist = fit(model, x, y, epochs=15, lr=2e-2, loss_fn=nn.MSELoss())
    assert isinstance(hist, History)
    assert len(hist.loss) == len(hist.nfe_forward) == len(hist.nfe_backward) == 15
    assert hist.nfe_forward[0] == nfe0
    # dopri5 without rejections costs 6 evaluations per step plus 2; never fewer than one step
    assert min(hist.nfe_forward) >= 8 and min(hist.nfe_backward) >= 8
    # an affine target is easy: 15 Adam steps at lr 2e-2 cut the MSE at least in half
    assert hist.loss[-1] < 0.5 * hist.loss[0]
    arrays = hist.as_arrays()
    assert arrays["loss"].shape == (15,)


def test_fit_minibatches_are_seeded_and_models_without_nfe_work():
    x = torch.linspace(-1, 1, 20).unsqueeze(1)
    y = torch.sin(3 * x)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1))
        runs.append(fit(net, x, y, epochs=3, batch_size=6, generator=torch.Generator().manual_seed(1)))
    assert runs[0].loss == runs[1].loss          # same seeds, same batches: identical losses
    assert runs[0].nfe_forward == [] and runs[0].nfe_backward == []
    seen = []
    fit(nn.Linear(1, 1), x, y, epochs=2, progress=lambda it: (seen.append(e) or e for e in it))
    assert seen == [0, 1]                        # progress wraps the epoch range


def test_backprop_mode_records_zero_backward_nfe():
    torch.manual_seed(0)
    model = AugmentedNeuralODE(2, 1, augment_dim=1, hidden=8, adjoint=False)
    x, y = torch.randn(16, 2), torch.randn(16, 1)
    hist = fit(model, x, y, epochs=2)
    assert all(n > 0 for n in hist.nfe_forward) and hist.nfe_backward == [0.0, 0.0]
