"""Flow matching (nodelib.models.flow_matching): OT pairing, W2, the CFM loss and its gradient, the
sampler's NFE, path energy."""
import itertools
import math
import subprocess
import sys

import pytest
import torch

from nodelib import MLPField, SolverStats, odeint
from nodelib.models.flow_matching import (couple, cfm_loss, interpolate, normalised_path_energy,
                                   ot_pairing, path_energy, reflow_pairs, sample_flow,
                                   wasserstein2)

DT = torch.float64


def test_import_nodelib_does_not_import_scipy():
    code = "import sys, nodelib; print('scipy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False"


def test_ot_pairing_equals_brute_force():
    gen = torch.Generator().manual_seed(1)
    for _ in range(5):
        x0, x1 = torch.randn(6, 2, generator=gen, dtype=DT), torch.randn(6, 2, generator=gen,
                                                                          dtype=DT)
        cost = torch.cdist(x0, x1).square()
        best = min(sum(cost[i, p[i]].item() for i in range(6))
                   for p in itertools.permutations(range(6)))
        perm = ot_pairing(x0, x1)
        assert sorted(perm.tolist()) == list(range(6))        # a permutation
        got = cost[torch.arange(6), perm].sum().item()
        assert got == pytest.approx(best, rel=1e-12)           # and an optimal one
        # W2 is the root mean optimal cost
        assert wasserstein2(x0, x1) == pytest.approx(math.sqrt(best / 6), rel=1e-12)


def test_w2_of_a_shifted_copy_is_the_shift():
    # Σ‖x_i - x_π(i) - c‖² = Σ‖x_i - x_π(i)‖² + n‖c‖² (the cross term sums to zero for every π),
    # minimised by the identity: W2 = ‖c‖ exactly.
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(300, 2, generator=gen, dtype=DT)
    c = torch.tensor([0.7, -1.9], dtype=DT)
    assert wasserstein2(x, x + c) == pytest.approx(c.norm().item(), rel=1e-10)
    assert torch.equal(ot_pairing(x, x + c), torch.arange(300))
    # symmetric, invariant under reordering either sample, and zero for the same sample
    y = torch.randn(300, 2, generator=gen, dtype=DT)
    assert wasserstein2(x, y) == pytest.approx(wasserstein2(y, x[torch.randperm(300)]),
                                               rel=1e-10)
    # zero up to the square root of rounding in the cost (~1e-16 -> ~1e-8)
    assert wasserstein2(x, x[torch.randperm(300)]) == pytest.approx(0.0, abs=1e-7)


def test_ot_pairing_rejects_unequal_sizes_and_unknown_coupling():
    with pytest.raises(ValueError, match="equal size"):
        ot_pairing(torch.zeros(3, 2), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="unknown coupling"):
        couple(torch.zeros(3, 2), torch.zeros(3, 2), "sinkhorn")


def test_ot_coupling_makes_the_translation_loss_vanish():
    # Target = source shifted by c: the OT pairs are (x, x + c), every path has velocity c, and
    # the constant field v = c has zero OT-CFM loss; with independent pairs it does not.
    gen = torch.Generator().manual_seed(3)
    x0 = torch.randn(128, 2, generator=gen, dtype=DT)
    c = torch.tensor([2.0, 1.0], dtype=DT)
    x1 = (x0 + c)[torch.randperm(128, generator=gen)]
    field = lambda t, x: c.expand_as(x)                      # noqa: E731
    assert cfm_loss(field, x0, x1, coupling="ot", generator=gen).item() < 1e-20
    assert cfm_loss(field, x0, x1, coupling="independent", generator=gen).item() > 1.0


def test_interpolate_ends_and_velocity():
    x0, x1 = torch.randn(5, 2, dtype=DT), torch.randn(5, 2, dtype=DT)
    for tv, end in ((0.0, x0), (1.0, x1)):
        xt, ut = interpolate(x0, x1, torch.full((5, 1), tv, dtype=DT))
        assert torch.equal(xt, end) and torch.equal(ut, x1 - x0)


def gaussian_marginal_field(t, x, mu, s):
    """Source N(0, I), target N(mu, s² I), independent pairs, straight path: x_t ~ N(t mu, v_t I)
    with v_t = (1-t)² + t² s², and u_t(x) = E[x1 - x0 | x_t = x] = mu + (t s² - (1-t))/v_t (x - t mu)
    (Gaussian conditioning: Cov(x1 - x0, x_t) = (t s² - (1 - t)) I)."""
    v = (1 - t) ** 2 + t ** 2 * s ** 2
    return mu + (t * s ** 2 - (1 - t)) / v * (x - t * mu)


def flat_grad(loss, params):
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)])


def test_cfm_gradient_equals_marginal_fm_gradient_in_expectation():
    # ∇L_CFM - ∇L_FM = (2/N) Σ_i J_θ v(t_i, x_i)ᵀ (u_t(x_i) - (x1_i - x0_i)) has mean zero, since
    # E[x1 - x0 | x_t] = u_t(x_t). On the same N points, the relative difference of the two
    # gradients is O(N^-1/2); with a wrong marginal field it stays O(1).
    torch.manual_seed(0)
    field = MLPField(2, hidden=16).to(DT)
    params = list(field.parameters())
    mu, s = torch.tensor([1.0, -0.5], dtype=DT), 0.3
    gen = torch.Generator().manual_seed(4)
    n = 50_000
    x0 = torch.randn(n, 2, generator=gen, dtype=DT)
    x1 = mu + s * torch.randn(n, 2, generator=gen, dtype=DT)
    t = torch.rand(n, 1, generator=gen, dtype=DT)
    g_cfm = flat_grad(cfm_loss(field, x0, x1, coupling=None, t=t), params)
    xt = (1 - t) * x0 + t * x1

    def fm_grad(u):
        return flat_grad((field(t, xt) - u).square().sum(-1).mean(), params)

    g_fm = fm_grad(gaussian_marginal_field(t, xt, mu, s))
    rel = ((g_cfm - g_fm).norm() / g_fm.norm()).item()
    # a wrong marginal field: the source scale s replaced by 1 (the field of N(mu, I))
    g_wrong = fm_grad(gaussian_marginal_field(t, xt, mu, 1.0))
    rel_wrong = ((g_cfm - g_wrong).norm() / g_wrong.norm()).item()
    # observed: rel ≈ 3e-3 at N = 2e4 and 1e-3 at N = 2e5 (O(N^-1/2)); the wrong field stays
    # ≈ 0.11 away at every N. 0.01 and 0.05 separate the two by a factor 3 or more each side.
    assert rel < 0.01 and rel_wrong > 0.05


def test_cfm_rejects_sigma_without_noise():
    with pytest.raises(ValueError, match="noise"):
        interpolate(torch.zeros(2, 2), torch.ones(2, 2), torch.zeros(2, 1), sigma=0.1)


class Counting(torch.nn.Module):
    def __init__(self, field):
        super().__init__()
        self.field, self.calls = field, 0

    def forward(self, t, x):
        self.calls += 1
        return self.field(t, x)


@pytest.mark.parametrize("method,steps,per_step", [("euler", 1, 1), ("euler", 8, 1),
                                                   ("midpoint", 4, 2), ("heun2", 3, 2),
                                                   ("rk4", 2, 4)])
def test_sampler_nfe_matches_solver_stats_fixed(method, steps, per_step):
    torch.manual_seed(0)
    field = Counting(MLPField(2, hidden=8))
    out = sample_flow(field, torch.randn(7, 2), method=method, steps=steps)
    assert out.nfe == out.stats.nfe_forward == field.calls == per_step * steps
    assert out.stats.forward.n_accepted == steps
    assert out.xs.shape == (2, 7, 2)


def test_sampler_nfe_adaptive_and_euler_is_euler():
    torch.manual_seed(0)
    field = Counting(MLPField(2, hidden=8).to(DT))
    x0 = torch.randn(7, 2, dtype=DT)
    out = sample_flow(field, x0, method="dopri5", rtol=1e-8, atol=1e-8)
    assert out.nfe == out.stats.nfe_forward == field.calls > 6
    # one Euler step is x0 + v(0, x0); two steps go through t = 0.5
    one = sample_flow(field, x0, method="euler", steps=1).x
    with torch.no_grad():
        assert torch.allclose(one, x0 + field(torch.tensor(0.0, dtype=DT), x0), atol=1e-15)
        half = x0 + 0.5 * field(torch.tensor(0.0, dtype=DT), x0)
        two = half + 0.5 * field(torch.tensor(0.5, dtype=DT), half)
    assert torch.allclose(sample_flow(field, x0, method="euler", steps=2).x, two, atol=1e-15)
    # backwards in time (1 -> 0) with a fixed number of steps
    back = sample_flow(field, x0, method="euler", steps=3, times=(1.0, 0.0))
    assert back.nfe == 3
    # reflow pairs are (x0, flow(x0))
    p0, p1 = reflow_pairs(field, x0, method="rk4", steps=4)
    assert torch.equal(p0, x0) and torch.allclose(p1, sample_flow(field, x0, method="rk4",
                                                                   steps=4).x)


def test_path_energy_straight_and_curved():
    x0 = torch.randn(50, 2, dtype=DT)
    c = torch.tensor([1.5, -0.5], dtype=DT)
    x1, e, gap = path_energy(lambda t, x: c.expand_as(x), x0, method="euler", steps=3)
    assert torch.allclose(e, c.square().sum().expand(50)) and gap.abs().max() < 1e-12
    assert torch.allclose(x1, x0 + c)
    # rotation at angular speed w: speed w|x|, E = w²|x|², chord² = 2|x|²(1 - cos w)
    w = 2.0
    rot = torch.tensor([[0.0, -w], [w, 0.0]], dtype=DT)
    _, e, gap = path_energy(lambda t, x: x @ rot.T, x0, method="dopri5", steps=None,
                            rtol=1e-10, atol=1e-10)
    r2 = x0.square().sum(-1)
    assert torch.allclose(e, w ** 2 * r2, rtol=1e-7)
    assert torch.allclose(gap, r2 * (w ** 2 - 2 * (1 - math.cos(w))), rtol=1e-6, atol=1e-9)
    assert normalised_path_energy(e, float((w ** 2 * r2).mean())) < 1e-7


def test_path_energy_matches_a_separate_solve():
    torch.manual_seed(0)
    field = MLPField(2, hidden=8).to(DT)
    x0 = torch.randn(20, 2, dtype=DT)
    x1, e, gap = path_energy(field, x0, method="rk4", steps=64)
    with torch.no_grad():
        ref = odeint(field, x0, torch.tensor([0.0, 1.0], dtype=DT), method="rk4",
                     options={"step_size": 1 / 64}, stats=SolverStats())[-1]
    assert torch.allclose(x1, ref, atol=1e-12)
    assert (gap > -1e-9).all()                                # Cauchy–Schwarz


def test_sampler_rejects_a_missing_or_a_meaningless_step_count():
    field = lambda t, x: -x                                  # noqa: E731
    x0 = torch.ones(3, 2)
    # a fixed-step method without steps would silently take one step per output interval
    with pytest.raises(ValueError, match="needs steps="):
        sample_flow(field, x0, method="euler")
    with pytest.raises(ValueError, match="is adaptive"):
        sample_flow(field, x0, method="dopri5", steps=8)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="positive integer"):
            sample_flow(field, x0, method="euler", steps=bad)
    # an explicit step size in options is the caller's choice
    out = sample_flow(field, x0, method="euler", options={"step_size": 0.25})
    assert out.nfe == 4
    # path_energy: 32 steps by default for a fixed-step method, tolerances for an adaptive one
    _, e_rk4, _ = path_energy(field, x0.double())
    _, e_dp, _ = path_energy(field, x0.double(), method="dopri5", rtol=1e-10, atol=1e-10)
    exact = 2 * (1 - math.exp(-2.0)) / 2                      # ∫ |x0|² e^{-2t} dt, |x0|² = 2
    assert torch.allclose(e_rk4, torch.full((3,), exact, dtype=DT), rtol=1e-6)
    assert torch.allclose(e_dp, torch.full((3,), exact, dtype=DT), rtol=1e-8)


def test_shape_errors_are_clear():
    field = lambda t, x: x                                   # noqa: E731
    x0 = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="same shape"):       # would broadcast silently
        cfm_loss(field, x0, torch.zeros(1, 2), coupling=None)
    with pytest.raises(ValueError, match="same shape"):
        cfm_loss(field, x0, torch.zeros(5, 2), coupling="independent")
    with pytest.raises(ValueError, match="equal size"):
        couple(x0, torch.zeros(5, 2), "independent")
    with pytest.raises(ValueError, match=r"t of shape \(batch, 1\)"):
        cfm_loss(field, torch.zeros(2, 2), torch.ones(2, 2), coupling=None,
                 t=torch.zeros(2))                            # (2,) would broadcast as a row
    with pytest.raises(ValueError, match="equal dimension"):
        wasserstein2(torch.zeros(3, 2), torch.zeros(3, 3))


def test_independent_coupling_is_a_permutation_and_draws_follow_the_input():
    gen = torch.Generator().manual_seed(5)
    x0, x1 = torch.randn(64, 2, dtype=DT), torch.randn(64, 2, dtype=DT)
    p0, p1 = couple(x0, x1, "independent", gen)
    assert torch.equal(p0, x0)
    assert torch.equal(p1[p1[:, 0].argsort()], x1[x1[:, 0].argsort()])   # same rows, reordered
    assert not torch.equal(p1, x1)
    # the loss with σ > 0 is reproducible from the generator and follows the input's dtype
    field = MLPField(2, hidden=8).to(DT)
    for dtype in (torch.float32, DT):
        f = field.to(dtype)
        a, b = x0.to(dtype), x1.to(dtype)
        l1 = cfm_loss(f, a, b, sigma=0.1, generator=torch.Generator().manual_seed(6))
        l2 = cfm_loss(f, a, b, sigma=0.1, generator=torch.Generator().manual_seed(6))
        l3 = cfm_loss(f, a, b, sigma=0.0, generator=torch.Generator().manual_seed(6))
        assert l1.dtype == dtype and torch.equal(l1, l2) and not torch.equal(l1, l3)
        out = sample_flow(f, a, method="rk4", steps=2)
        assert out.x.dtype == dtype and out.x.device == a.device
