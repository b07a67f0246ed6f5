"""Against torchsde (a benchmark-only dependency: skipped without it): on the same Brownian path
(torchsde's own interval, given to both), the same SDE and method give the same solution and
the same gradients, to float64 rounding."""
import pytest
import torch
from torch import nn

from nodelib import sdeint, sdeint_adjoint

torchsde = pytest.importorskip("torchsde")


class General(nn.Module):
    """Non-commuting general noise (3 states, 2 channels), Stratonovich."""

    noise_type, sde_type = "general", "stratonovich"

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.drift, self.diffusion = nn.Linear(3, 3), nn.Linear(3, 6)
        self.double()

    def f(self, t, y):
        return torch.tanh(self.drift(y)) - y

    def g(self, t, y):
        return torch.tanh(self.diffusion(y)).view(-1, 3, 2)


class Diagonal(General):
    noise_type, sde_type = "diagonal", "ito"

    def g(self, t, y):
        return torch.sigmoid(self.diffusion.weight[:3, 0] * y + self.diffusion.bias[:3])


@pytest.mark.parametrize("sde_class, method, levy, adjoint", [
    (Diagonal, "euler", "none", "euler"),
    (Diagonal, "milstein", "none", "euler"),
    (Diagonal, "srk", "space-time", None),
    (General, "midpoint", "none", "midpoint"),
    (General, "reversible_heun", "none", "adjoint_reversible_heun"),
    (General, "log_ode", "foster", None),
])
def test_same_path_same_answers(sde_class, method, levy, adjoint):
    sde = sde_class()
    m = 3 if sde.noise_type == "diagonal" else 2
    ts = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    y0 = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    results = []
    for forward, with_adjoint in ((torchsde.sdeint, torchsde.sdeint_adjoint),
                                  (sdeint, sdeint_adjoint)):
        bm = torchsde.BrownianInterval(0.0, 1.0, size=(4, m), dtype=torch.float64, entropy=3,
                                       levy_area_approximation=levy)
        kwargs = dict(bm=bm, method=method, dt=2.0 ** -5)   # (a power of two: same grid)
        if adjoint is None:
            ys = forward(sde, y0, ts, **kwargs)
        else:
            ys = with_adjoint(sde, y0, ts, adjoint_method=adjoint, **kwargs)
        grads = torch.autograd.grad((ys ** 2).sum(), (y0, *sde.parameters()))
        results.append((ys, grads))
    (ys_t, grads_t), (ys_n, grads_n) = results
    torch.testing.assert_close(ys_n, ys_t, rtol=1e-12, atol=1e-12)   # float64 rounding
    for a, b in zip(grads_n, grads_t):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)   # (64 steps of rounding)
