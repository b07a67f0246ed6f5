"""``grad_fn.adjoint_options["norm"]``: the backward norm of odeint_adjoint, exposed on the
output's autograd node as torchdiffeq exposes it (read, or replaced before backward())."""
import torch

from nodelib import SolverStats, odeint_adjoint


class Field(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(),
                                       torch.nn.Linear(16, 2))

    def forward(self, t, y):
        return self.net(y)


def _solve(stats=None, **kwargs):
    y0 = torch.tensor([[1.0, -0.5]], requires_grad=True)
    return odeint_adjoint(Field(), y0, torch.tensor([0.0, 1.0]), rtol=1e-6, atol=1e-8,
                          stats=stats, **kwargs)


def test_the_exposed_norm_is_the_backward_norm():
    ys = _solve()
    norm = ys.grad_fn.adjoint_options["norm"]
    calls = []

    def spy(parts):
        a_t, z, a, *a_params = parts
        assert z.shape == a.shape == (1, 2) and a_t.shape == ()
        assert [p.shape for p in a_params] == [(16, 2), (16,), (2, 16), (2,)]
        value = norm(parts)
        # the default: max(|a_t|, RMS z, RMS a, RMS of all of a_θ)
        flat = torch.cat([p.reshape(-1) for p in a_params])
        expected = torch.stack([a_t.abs(), z.pow(2).mean().sqrt(), a.pow(2).mean().sqrt(),
                                flat.pow(2).mean().sqrt()]).max()
        assert torch.allclose(value, expected, rtol=1e-6)   # float32 sums in another order
        calls.append(1)
        return value

    ys.grad_fn.adjoint_options["norm"] = spy
    ys.sum().backward()
    assert calls


def test_a_replaced_norm_changes_the_backward_solve():
    counts = []
    for scale in (1.0, 100.0):
        stats = SolverStats()
        ys = _solve(stats)
        norm = ys.grad_fn.adjoint_options["norm"]
        ys.grad_fn.adjoint_options["norm"] = lambda parts, norm=norm, scale=scale: (
            scale * norm(parts))
        ys.sum().backward()
        counts.append(stats.backward.nfe)
    default_stats = SolverStats()
    _solve(default_stats).sum().backward()
    assert counts[0] == default_stats.backward.nfe   # the same norm: the same steps
    assert counts[1] > counts[0]                     # 100× stricter: more steps


def test_seminorm_is_exposed_too():
    ys = _solve(adjoint_options={"norm": "seminorm"})
    parts = (torch.tensor(5.0), torch.ones(1, 2), 2 * torch.ones(1, 2), 100 * torch.ones(16, 2))
    # z and a only (a_t and a_θ left out)
    assert ys.grad_fn.adjoint_options["norm"](parts).item() == 2.0
