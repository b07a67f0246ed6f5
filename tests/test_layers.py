"""The neural-network building blocks."""
import torch
from torch import nn

from nodelib import ConvField, MLPField, ODEBlock, ResidualBlock, odeint


def test_odeblock_matches_odeint_and_counts_nfe(device):
    torch.manual_seed(0)
    field = MLPField(3, hidden=16).double().to(device)
    x = torch.randn(10, 3, dtype=torch.float64, device=device, requires_grad=True)
    for adjoint in (True, False):
        block = ODEBlock(field, t1=0.5, rtol=1e-8, atol=1e-8, adjoint=adjoint)
        out = block(x)
        ref = odeint(field, x, torch.tensor([0.0, 0.5], dtype=torch.float64, device=device),
                     rtol=1e-8, atol=1e-8)[-1]
        # identical solver and settings: the forward values agree to rounding
        assert torch.allclose(out, ref, atol=1e-12)
        assert block.nfe_forward > 0 and block.nfe_backward == 0
        out.pow(2).sum().backward()
        assert (block.nfe_backward > 0) == adjoint


def test_odeblock_gradients_adjoint_vs_backprop():
    torch.manual_seed(0)
    field = ConvField(4, activation=torch.tanh).double()
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64)
    grads = []
    for adjoint in (True, False):
        block = ODEBlock(field, rtol=1e-9, atol=1e-9, adjoint=adjoint)
        block(x).pow(2).sum().backward()
        grads.append([p.grad.clone() for p in field.parameters()])
        field.zero_grad()
    for a, b in zip(*grads):
        # both ~1e-9 accurate; the conv biases feed a GroupNorm that removes them, so their true
        # gradient is 0 and only an absolute tolerance makes sense there
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-8)


def test_fields_use_time_and_keep_shape():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 5, 5)
    conv = ConvField(4)
    assert conv(torch.tensor(0.0), x).shape == x.shape
    assert not torch.allclose(conv(torch.tensor(0.0), x), conv(torch.tensor(1.0), x))
    mlp = MLPField(2)
    z = torch.randn(7, 2)
    assert mlp(torch.tensor(0.3), z).shape == z.shape
    assert not torch.allclose(mlp(torch.tensor(0.0), z), mlp(torch.tensor(1.0), z))


def test_residual_block_is_an_euler_step_of_its_residual():
    torch.manual_seed(0)
    block = ResidualBlock(4)
    x = torch.randn(2, 4, 5, 5)
    residual = block(x) - x
    assert residual.abs().max() > 0
    # zeroing the last conv makes F ≡ 0: the block is the identity
    nn.init.zeros_(block.conv2.weight)
    nn.init.zeros_(block.conv2.bias)
    assert torch.equal(block(x), x)
