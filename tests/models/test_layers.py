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


def test_odeblock_settings_take_effect_on_the_next_call(device):
    # Chapter 05 re-evaluates one trained block at many tolerances, step counts and gradient modes
    # by assigning its attributes; each forward must use the settings current at that call.
    torch.manual_seed(0)
    field = MLPField(3, hidden=16).to(device)
    x = torch.randn(8, 3, device=device)
    block = ODEBlock(field, rtol=1e-2, atol=1e-2)
    block(x)
    loose = block.nfe_forward
    block.rtol = block.atol = 1e-7
    block(x)
    assert block.nfe_forward > loose            # tighter tolerance: more evaluations
    block.method, block.options = "rk4", {"step_size": 0.25}
    block(x)
    assert block.nfe_forward == 4 * 4           # 4 fixed steps of 4 stages each
    for adjoint in (False, True):
        block.adjoint = adjoint
        block(x.requires_grad_(True)).sum().backward()
        assert (block.nfe_backward > 0) == adjoint


def _saved_bytes(make_output):
    """Bytes of the distinct storages autograd saves while ``make_output()`` runs."""
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        make_output()
    return sum(storages.values())


def test_odeblock_memory_constant_with_adjoint_growing_with_backprop():
    torch.manual_seed(0)
    field = MLPField(4, hidden=32)
    x = torch.randn(16, 4, requires_grad=True)
    adjoint = [_saved_bytes(lambda: ODEBlock(field, method="rk4", options={"step_size": 1 / n})(x))
               for n in (2, 8)]
    backprop = [_saved_bytes(lambda: ODEBlock(field, method="rk4", options={"step_size": 1 / n},
                                              adjoint=False)(x)) for n in (2, 8)]
    # Exact byte counts: the adjoint keeps the same tensors (its outputs) at any step count ...
    assert adjoint[0] == adjoint[1]
    # ... backprop keeps each step's activations: 4x the steps, at least 3x the bytes.
    assert backprop[1] > 3 * backprop[0] and backprop[0] > adjoint[0]
