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
