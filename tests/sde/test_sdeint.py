"""sdeint / sdeint_adjoint: torchsde's calling conventions, shapes, devices, defaults."""
import pytest
import torch
from torch import nn

from nodelib import BrownianInterval, sdeint, sdeint_adjoint
from nodelib.sde.methods import default_method


class Linear(nn.Module):
    """dY = a Y dt + b Y dW, diagonal noise; a and b learnable."""

    noise_type = "diagonal"

    def __init__(self, sde_type="ito", d=2):
        super().__init__()
        self.sde_type = sde_type
        self.a = nn.Parameter(torch.full((d,), 0.3))
        self.b = nn.Parameter(torch.full((d,), 0.5))

    def f(self, t, y):
        return self.a * y

    def g(self, t, y):
        return self.b * y


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shape_device_dtype_follow_y0(device, dtype):
    sde = Linear().to(device, dtype)
    y0 = torch.ones(5, 2, device=device, dtype=dtype)
    ts = torch.linspace(0, 1, 4, device=device, dtype=dtype)
    ys = sdeint(sde, y0, ts, dt=0.05)
    assert ys.shape == (4, 5, 2) and ys.device.type == device.type and ys.dtype == dtype
    assert torch.equal(ys[0], y0)


def test_defaults_are_torchsdes():
    assert default_method("ito", "diagonal") == "srk"
    assert default_method("ito", "additive") == "srk"
    assert default_method("ito", "scalar") == "srk"
    assert default_method("ito", "general") == "euler"
    assert default_method("stratonovich", "general") == "midpoint"


def test_same_bm_same_answer_and_ts_as_list():
    torch.manual_seed(0)
    sde, y0 = Linear(), torch.ones(3, 2)
    bm = BrownianInterval(0.0, 1.0, size=(3, 2), entropy=7)
    a = sdeint(sde, y0, [0.0, 0.5, 1.0], bm=bm, method="euler", dt=0.1)
    b = sdeint(sde, y0, torch.tensor([0.0, 0.5, 1.0]), bm=bm, method="euler", dt=0.1)
    assert torch.equal(a, b)   # the same path, queried again, gives the same increments


def test_adjoint_forward_is_sdeint():
    sde, y0 = Linear("stratonovich"), torch.ones(3, 2)
    bm = BrownianInterval(0.0, 1.0, size=(3, 2), entropy=3)
    ts = torch.tensor([0.0, 1.0])
    for method in ("midpoint", "reversible_heun"):
        a = sdeint(sde, y0, ts, bm=bm, method=method, dt=0.1)
        b = sdeint_adjoint(sde, y0, ts, bm=bm, method=method, dt=0.1)
        assert torch.equal(a, b)


def test_the_optional_forms_of_an_sde_give_the_same_solve():
    """f + g, f_and_g, f + g_prod and f_and_g_prod describe one SDE (general noise here):
    the same path gives the same solution, bit for bit, and gradients through the adjoint."""
    A = torch.tensor([[0.5, -0.2], [0.1, 0.3], [0.0, 0.4]], dtype=torch.float64)
    f = lambda t, y: -y
    g = lambda t, y: torch.tanh(y).unsqueeze(-1) * A   # (batch, 3, 2)

    def sde(**methods):
        return type("S", (), {"noise_type": "general", "sde_type": "stratonovich",
                              **{k: staticmethod(v) for k, v in methods.items()}})()

    g_prod = lambda t, y, v: (g(t, y) @ v.unsqueeze(-1)).squeeze(-1)
    forms = [sde(f=f, g=g), sde(f_and_g=lambda t, y: (f(t, y), g(t, y))),
             sde(f=f, g_prod=g_prod), sde(f_and_g_prod=lambda t, y, v: (f(t, y), g_prod(t, y, v)))]
    y0 = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    answers = []
    for form in forms:
        bm = BrownianInterval(0.0, 1.0, size=(4, 2), dtype=torch.float64, entropy=9)
        ys = sdeint_adjoint(form, y0, [0.0, 1.0], bm=bm, method="midpoint", dt=0.1)
        answers.append((ys, torch.autograd.grad(ys.sum(), y0)[0]))
    for ys, grad in answers[1:]:
        torch.testing.assert_close(ys, answers[0][0], rtol=0, atol=1e-15)
        torch.testing.assert_close(grad, answers[0][1], rtol=0, atol=1e-14)
    with pytest.raises(ValueError, match="pass bm"):
        sdeint(forms[2], y0, [0.0, 1.0], method="midpoint", dt=0.1)
    bm = BrownianInterval(0.0, 1.0, size=(4, 2), dtype=torch.float64, entropy=9)
    with pytest.raises(ValueError, match=r"needs the diffusion matrix g\(t, y\)"):
        sdeint(forms[2], y0, [0.0, 1.0], bm=bm, method="reversible_heun", dt=0.1)
