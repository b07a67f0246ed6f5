"""Planar flows, trace estimators and continuous normalizing flows (nodelib.models.flows, nodelib.models.traces)."""
import math

import pytest
import torch
from torch import nn

from nodelib import odeint
from nodelib.plotting import grid_mass, log_prob_on_grid
from nodelib.models.flows import (CNF, CNFDynamics, PlanarCNFField,
    PlanarFlow, PlanarNF, standard_normal_log_prob)
from nodelib.models.traces import exact_trace, hutchinson_trace, sample_noise

from problems import Linear  # noqa: E402

F64 = torch.float64


class Tanh(nn.Module):
    """A small nonlinear, time-dependent field with every sample handled independently."""

    def __init__(self, dim, hidden=8):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim + 1, hidden), nn.Tanh(), nn.Linear(hidden, dim))

    def forward(self, t, z):
        return self.net(torch.cat([z, t.expand(*z.shape[:-1], 1)], dim=-1))


def random_planar(dim, scale, device, seed):
    torch.manual_seed(seed)
    layer = PlanarFlow(dim).to(device, F64)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(scale * torch.randn_like(p))
    return layer


# --------------------------------------------------------------------------- planar flow
@pytest.mark.parametrize("dim", [1, 2, 5])
def test_planar_logdet_matches_autograd_jacobian(device, dim):
    for seed in range(5):
        layer = random_planar(dim, 2.0, device, seed)
        z = torch.randn(6, dim, dtype=F64, device=device)
        _, logdet = layer(z)
        for i in range(len(z)):
            J = torch.autograd.functional.jacobian(lambda x: layer(x[None])[0][0], z[i])
            # both are exact formulas evaluated in float64: agreement to rounding
            assert torch.allclose(logdet[i], torch.linalg.slogdet(J)[1], atol=1e-12, rtol=0)


def set_w_dot_u(layer, value):
    # move u along w so that wᵀu = value (before the reparametrisation)
    with torch.no_grad():
        w = layer.w
        layer.u.add_((value - w @ layer.u) * w / w.square().sum())


def test_planar_reparametrisation_keeps_it_invertible(device):
    # wᵀu far below -1, where the raw planar map would fold space: wᵀû = m(wᵀu) stays above -1.
    # (Below about -36 float64 cannot represent the margin softplus(wᵀu); see the docstring.)
    for seed in range(50):
        layer = random_planar(3, 2.0, device, seed)
        w_dot_u = -20 + 19 * seed / 49
        set_w_dot_u(layer, w_dot_u)
        with torch.no_grad():
            c = layer.w @ layer.u_hat()
            assert c > -1
            # the worst point, wᵀz + b = 0, has tanh' = 1, so det = 1 + wᵀû = softplus(wᵀu) > 0
            z = 3 * torch.randn(200, 3, dtype=F64, device=device)
            z[0] = -layer.b * layer.w / layer.w.square().sum()
            _, logdet = layer(z)
            assert bool(torch.isfinite(logdet).all())
            margin = torch.nn.functional.softplus(torch.tensor(w_dot_u, dtype=F64))
            # 1 + c loses ~1e-16/margin ≤ 1e-7 relative accuracy to rounding at wᵀu = -20
            assert abs(logdet[0].item() - math.log(margin)) < 1e-6
            assert bool((logdet >= logdet[0] - 1e-9).all())   # no point has a smaller det


def test_planar_inverse_recovers_points_and_logdet(device):
    # moderate wᵀu ∈ [-8, 8]: the inverse is well conditioned (1 + wᵀû ≥ 3e-4)
    for seed in range(50):
        layer = random_planar(3, 2.0, device, seed)
        set_w_dot_u(layer, -8 + 16 * seed / 49)
        z = 3 * torch.randn(200, 3, dtype=F64, device=device)
        with torch.no_grad():
            y, logdet = layer(z)
            x, logdet_inv = layer.inverse(y)
        # bisection to float64 resolution, amplified at most 1/(1 + wᵀû) ≤ 3e3 times
        assert torch.allclose(x, z, atol=1e-10, rtol=0)
        assert torch.allclose(logdet_inv, logdet, atol=1e-9, rtol=0)


def test_planar_reparametrisation_only_moves_u_along_w(device):
    # û - u is parallel to w, so the part of u orthogonal to w is a free parameter
    for seed in range(10):
        layer = random_planar(4, 1.0, device, seed)
        set_w_dot_u(layer, -10 + 2 * seed)
        with torch.no_grad():
            shift, w = layer.u_hat() - layer.u, layer.w
            orthogonal = shift - (shift @ w) * w / w.square().sum()
            assert orthogonal.abs().max() < 1e-12
            # and wᵀû = m(wᵀu) = -1 + softplus(wᵀu)
            m = -1 + torch.nn.functional.softplus(w @ layer.u)
            assert torch.allclose(w @ layer.u_hat(), m, atol=1e-12)


def test_planar_nf_density_is_consistent_and_normalised(device):
    for seed in range(3):
        torch.manual_seed(seed)
        nf = PlanarNF(2, 6, init_scale=0.6).to(device, F64)
        for k, layer in enumerate(nf.layers):
            set_w_dot_u(layer, 0.5 * (-1) ** k)    # alternately stretch and squeeze
        x, log_q = nf.sample(50)
        # the density of a sample computed forwards equals the one from inverting the stack
        assert torch.allclose(nf.log_prob(x), log_q, atol=1e-9)
        mass = _grid_mass(nf.log_prob, 241, device)
        # trapezoid rule, spacing 0.06: ~3e-4 here (checked against spacing 0.03); tails beyond
        # ±7 hold < 1e-9; a wrong log-det sign would be off by O(1)
        assert abs(mass - 1) < 2e-3, mass


# --------------------------------------------------------------------------- traces
def test_exact_trace_matches_jacobian_trace(device):
    torch.manual_seed(0)
    field = Tanh(5).to(device, F64)
    z = torch.randn(7, 5, dtype=F64, device=device, requires_grad=True)
    t = torch.tensor(0.3, dtype=F64, device=device)
    tr = exact_trace(field(t, z), z)
    for i in range(len(z)):
        J = torch.autograd.functional.jacobian(lambda x: field(t, x[None])[0], z[i].detach())
        assert torch.allclose(tr[i], torch.trace(J), atol=1e-13, rtol=0)


@pytest.mark.parametrize("kind", ["gaussian", "rademacher"])
def test_hutchinson_is_unbiased_within_clt_bound(device, kind):
    torch.manual_seed(0)
    field = Tanh(6, hidden=16).to(device, F64)
    t = torch.tensor(0.2, dtype=F64, device=device)
    z_point = torch.randn(1, 6, dtype=F64, device=device)
    n = 20000
    exact = exact_trace(field(t, z_point.requires_grad_()), z_point).item()
    for seed in range(5):
        z = z_point.detach().expand(n, 6).clone().requires_grad_(True)
        g = torch.Generator(device=device).manual_seed(seed)
        eps = sample_noise(z.shape, kind, generator=g, device=device, dtype=F64)
        est = hutchinson_trace(field(t, z), z, eps)
        # CLT: the mean of n iid estimates is within 4 standard errors except with prob 6e-5
        assert abs(est.mean().item() - exact) < 4 * est.std().item() / math.sqrt(n)


def test_hutchinson_variance_formulas():
    # Var εᵀAε = 2‖A_s‖_F² (Gaussian) and 2(‖A_s‖_F² - Σ A_ii²) (Rademacher), A_s = (A + Aᵀ)/2.
    torch.manual_seed(1)
    A = torch.randn(5, 5, dtype=F64)
    As = (A + A.T) / 2
    theory = {"gaussian": 2 * As.square().sum(),
              "rademacher": 2 * (As.square().sum() - A.diagonal().square().sum())}
    n = 200000
    for kind, var in theory.items():
        eps = sample_noise((n, 5), kind, generator=torch.Generator().manual_seed(0), dtype=F64)
        est = ((eps @ A) * eps).sum(-1)
        # the sample variance of n draws has relative std ≈ sqrt((kurtosis - 1)/n) < 1% here
        assert abs(est.var().item() / var.item() - 1) < 0.05
    assert theory["rademacher"] <= theory["gaussian"]


def test_sample_noise_kinds(device):
    g = torch.Generator(device=device).manual_seed(0)
    r = sample_noise((1000, 3), "rademacher", generator=g, device=device, dtype=F64)
    assert r.dtype == F64 and r.device.type == device.type
    assert set(r.unique().tolist()) == {-1.0, 1.0}
    gauss = sample_noise((1000, 3), "gaussian", generator=g, device=device, dtype=torch.float32)
    assert gauss.dtype == torch.float32 and gauss.shape == (1000, 3)
    with pytest.raises(ValueError, match="rademacher"):
        sample_noise((2, 2), "uniform")


# --------------------------------------------------------------------------- CNF
@pytest.mark.parametrize("adjoint", [False, True])
def test_cnf_linear_field_log_density_change_is_minus_t_trace(device, adjoint):
    torch.manual_seed(0)
    A = torch.randn(3, 3, dtype=F64, device=device)
    cnf = CNF(Linear(A), rtol=1e-10, atol=1e-10, adjoint=adjoint)
    z0 = torch.randn(4, 3, dtype=F64, device=device)
    times = torch.tensor([0.0, 0.5, 1.0, 2.0], dtype=F64, device=device)
    zs, logps = cnf.integrate(z0, torch.zeros(4, dtype=F64, device=device), times)
    # the integrand -tr(A) is constant, which every Runge–Kutta method integrates exactly
    expected = -times[:, None] * torch.trace(A)
    assert torch.allclose(logps, expected.expand(4, 4), atol=1e-12, rtol=1e-12)
    assert torch.allclose(zs[-1], z0 @ torch.linalg.matrix_exp(2 * A).T, atol=1e-8)


def test_cnf_hutchinson_probe_is_fixed_for_the_whole_solve(device):
    # With one probe ε per solve, the estimate for dz/dt = Az is exactly -t εᵀAε per sample.
    torch.manual_seed(0)
    A = torch.randn(3, 3, dtype=F64, device=device)
    for kind in ("gaussian", "rademacher"):
        cnf = CNF(Linear(A), trace="hutchinson", noise=kind, rtol=1e-10, atol=1e-10)
        z0 = torch.randn(8, 3, dtype=F64, device=device)
        _, logps = cnf.integrate(z0, torch.zeros(8, dtype=F64, device=device), [0.0, 1.5])
        eps = cnf.dynamics.noise
        assert torch.allclose(logps[-1], -1.5 * ((eps @ A.T) * eps).sum(-1), atol=1e-12)


def test_cnf_rademacher_is_exact_for_diagonal_jacobians(device):
    # εᵀ diag(d) ε = Σ d_i ε_i² = tr(diag(d)) when ε_i = ±1: zero variance
    A = torch.diag(torch.tensor([0.3, -1.2, 0.5], dtype=F64, device=device))
    cnf = CNF(Linear(A), trace="hutchinson", noise="rademacher", rtol=1e-10, atol=1e-10)
    z0 = torch.randn(5, 3, dtype=F64, device=device)
    _, logp1 = cnf(z0, torch.zeros(5, dtype=F64, device=device))
    assert torch.allclose(logp1, torch.full_like(logp1, -torch.trace(A).item()), atol=1e-12)


def test_cnf_nonlinear_log_density_matches_flow_jacobian(device):
    torch.manual_seed(0)
    field = Tanh(2, hidden=16).to(device, F64)
    with torch.no_grad():
        for p in field.parameters():
            p.mul_(3)   # a strongly nonlinear flow: log|det| of order 1
    tol = dict(rtol=1e-10, atol=1e-10)
    cnf = CNF(field, **tol)
    z0 = torch.randn(5, 2, dtype=F64, device=device)
    _, delta = cnf(z0, torch.zeros(5, dtype=F64, device=device))
    t = torch.tensor([0.0, 1.0], dtype=F64, device=device)
    for i in range(5):
        J = torch.autograd.functional.jacobian(lambda x: odeint(field, x, t, **tol)[-1], z0[i])
        logdet = torch.linalg.slogdet(J)[1]
        # two different computations, each accurate to ~1e-10: agreement to 1e-7
        assert torch.allclose(delta[i], -logdet, atol=1e-7, rtol=0)
    assert delta.abs().max() > 1   # the flow changes volume by O(1): the check is not vacuous


def _steep_tanh(dim, device):
    """A Tanh field with doubled weights: a flow that changes volume by O(1) over [0, 1]."""
    field = Tanh(dim, hidden=8).to(device, F64)
    with torch.no_grad():
        for p in field.parameters():
            p.mul_(2)
    return field


def test_cnf_hutchinson_solve_is_unbiased(device):
    # One point replicated n times: each row has its own probe, so one solve gives n iid estimates
    torch.manual_seed(0)
    field = _steep_tanh(3, device)
    point = torch.randn(1, 3, dtype=F64, device=device)
    zeros = torch.zeros(1, dtype=F64, device=device)
    _, exact = CNF(field, rtol=1e-8, atol=1e-8)(point, zeros)
    n = 4000
    for kind in ("gaussian", "rademacher"):
        cnf = CNF(field, trace="hutchinson", noise=kind, rtol=1e-8, atol=1e-8)
        g = torch.Generator(device=device).manual_seed(1)
        _, est = cnf.integrate(point.expand(n, 3), zeros.expand(n), [0.0, 1.0], generator=g)
        est = est[-1]
        # CLT bound, 4 standard errors (solver error ~1e-8 is negligible next to it)
        assert abs(est.mean() - exact[0]).item() < 4 * est.std().item() / math.sqrt(n)
        assert est.std() > 0


def test_cnf_log_prob_inverts_sampling_and_normalises(device):
    torch.manual_seed(0)
    field = _steep_tanh(2, device)
    cnf = CNF(field, rtol=1e-8, atol=1e-8)
    z0 = torch.randn(10, 2, dtype=F64, device=device)
    x, logp = cnf(z0)
    # a backward solve retraces the forward one: agreement to ~solver tolerance
    assert torch.allclose(cnf.log_prob(x), logp, atol=1e-6)
    cnf.rtol = cnf.atol = 1e-6
    mass = _grid_mass(cnf.log_prob, 101, device)
    # a 0.14-spaced trapezoid rule on a smooth density: error ~1e-3; a wrong sign of the
    # trace term would give a mass of order e^{±2 ∫tr} instead
    assert abs(mass - 1) < 1e-2, mass


@pytest.mark.parametrize("trace", ["exact", "hutchinson"])
def test_cnf_gradients_adjoint_match_backprop(device, trace):
    torch.manual_seed(0)
    field = PlanarCNFField(2, 4, init_scale=1.0).to(device, F64)
    x = torch.randn(16, 2, dtype=F64, device=device)
    grads = []
    for adjoint in (False, True):
        cnf = CNF(field, trace=trace, rtol=1e-10, atol=1e-10, adjoint=adjoint)
        cnf.dynamics.noise = None
        g = torch.Generator(device=device).manual_seed(3)   # the same probe for both solves
        zs, deltas = cnf.integrate(x, torch.zeros(16, dtype=F64, device=device), [1.0, 0.0],
                                   generator=g)
        loss = -(standard_normal_log_prob(zs[-1]) - deltas[-1]).mean()
        grads.append(torch.autograd.grad(loss, list(field.parameters())))
    for a, b in zip(*grads):
        # the adjoint and backprop differ by discretisation error only (~1e-10)
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-8)


def test_planar_cnf_field_divergence_is_its_exact_trace(device):
    torch.manual_seed(0)
    field = PlanarCNFField(3, 5, init_scale=1.0).to(device, F64)
    z = torch.randn(9, 3, dtype=F64, device=device, requires_grad=True)
    for t in (0.0, 0.7):
        t = torch.tensor(t, dtype=F64, device=device)
        assert torch.allclose(field.divergence(t, z), exact_trace(field(t, z), z), atol=1e-13)
    gates = field.gates(torch.tensor(0.5, dtype=F64, device=device))
    assert gates.shape == (5,) and bool(((gates > 0) & (gates < 1)).all())


def test_cnf_closed_form_trace_matches_exact_trace_in_a_solve(device):
    torch.manual_seed(0)
    field = PlanarCNFField(2, 6, init_scale=1.0).to(device, F64)
    z0 = torch.randn(20, 2, dtype=F64, device=device)
    out = {trace: CNF(field, trace=trace, rtol=1e-10, atol=1e-10)(z0)
           for trace in ("exact", "closed_form")}
    # the same ODE, the same solver: the trajectories agree to rounding
    assert torch.allclose(out["exact"][0], out["closed_form"][0], atol=1e-10)
    assert torch.allclose(out["exact"][1], out["closed_form"][1], atol=1e-10)
    with pytest.raises(ValueError, match="with_divergence"):
        CNF(Linear(torch.eye(2)), trace="closed_form")


def test_cnf_follows_device_and_dtype(device):
    field = PlanarCNFField(2, 3).to(device)
    for dtype in (torch.float32, F64):
        cnf = CNF(field.to(dtype))
        x, logp = cnf.sample(7)
        assert x.shape == (7, 2) and logp.shape == (7,)
        assert x.dtype == logp.dtype == dtype and x.device.type == device.type
        assert cnf.stats.nfe_forward > 0


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="exact"):
        CNFDynamics(Linear(torch.eye(2)), trace="trace")
    with pytest.raises(ValueError, match="gaussian"):
        CNFDynamics(Linear(torch.eye(2)), noise="uniform")
    dyn = CNFDynamics(Linear(torch.eye(2)), trace="hutchinson")
    with pytest.raises(RuntimeError, match="draw_noise"):
        dyn(torch.tensor(0.0), (torch.zeros(3, 2), torch.zeros(3)))


def _grid_mass(log_prob, n, device):
    """∫ exp(log_prob) over [-7, 7]² by the trapezoid rule on an n × n grid (float64)."""
    extent = (-7.0, 7.0, -7.0, 7.0)
    return grid_mass(log_prob_on_grid(log_prob, extent, n, device=device, dtype=F64), extent)
