"""Integrated regularisers (nodelib.models.regularisation): closed forms on linear fields, Hutchinson's
Frobenius estimate, solver steps, gradients, STEER end times and errors."""
import math

import pytest
import torch
from torch import nn

from nodelib import CNF, MLPField, ODEBlock
from nodelib.models.blocks import AugmentedODEBlock
from nodelib.models.flows import standard_normal_log_prob
from nodelib.models.traces import sample_noise
from nodelib.models.regularisation import (RegularisedBlock, RegularisedCNF,
    RegularisedDynamics, odeint_with_penalties, steer_end_time)
from nodelib.models.traces import (frobenius_exact, frobenius_hutchinson,
    jacobian_rows)

from problems import Linear  # noqa: E402

F64 = torch.float64
TIGHT = dict(rtol=1e-10, atol=1e-10)


def diag_case():
    a = torch.tensor([0.7, -1.3], dtype=F64)
    z0 = torch.tensor([[1.0, -2.0], [0.5, 0.25], [-1.5, 1.0]], dtype=F64)
    return a, z0


def kinetic_diag(a, z0, T):
    # ∫_0^T Σ_i a_i² z0_i² e^{2 a_i t} dt = Σ_i a_i z0_i² (e^{2 a_i T} - 1) / 2
    return (a * z0.square() * (torch.exp(2 * a * T) - 1) / 2).sum(-1)


# --------------------------------------------------------------------------- closed forms
@pytest.mark.parametrize("frobenius", ["exact", "hutchinson"])
def test_block_penalties_match_closed_form_on_diagonal_field(frobenius):
    a, z0 = diag_case()
    T = 0.8
    block = ODEBlock(Linear(torch.diag(a)), t1=T, adjoint=False, **TIGHT)
    z1, pen = RegularisedBlock(block, frobenius=frobenius)(z0)
    # dopri5 at 1e-10 on a smooth linear ODE: errors ~1e-10 relative, so 1e-8 is safe
    assert torch.allclose(z1, z0 * torch.exp(a * T), rtol=1e-8, atol=1e-8)
    assert torch.allclose(pen[:, 0], kinetic_diag(a, z0, T), rtol=1e-8, atol=1e-8)
    # ∫ ‖A‖_F² dt = T Σ a_i²; for diagonal A and Rademacher ε, ‖εᵀA‖² = Σ a_i² ε_i² is exact too
    assert torch.allclose(pen[:, 1], T * a.square().sum().expand(3), rtol=1e-8)


def test_hutchinson_penalty_is_the_probes_value_on_a_full_matrix():
    A = torch.tensor([[0.3, -1.1], [0.8, -0.4]], dtype=F64)
    z0 = torch.randn(5, 2, dtype=F64, generator=torch.Generator().manual_seed(1))
    T = 1.3
    dyn = RegularisedDynamics(Linear(A), ["jacobian"], noise="gaussian")
    _, pen = odeint_with_penalties(dyn, z0, [0.0, T], generator=torch.Generator().manual_seed(2),
                                   **TIGHT)
    eps = dyn.noise
    # the probe is fixed during the solve, and εᵀA is constant: the integral is T ‖εᵀA‖²,
    # which differs from T ‖A‖_F² (so a wrong, exact-norm implementation would fail here)
    expected = T * (eps @ A).square().sum(-1)
    assert torch.allclose(pen[-1, :, 0], expected, rtol=1e-8)
    assert not torch.allclose(expected, T * A.square().sum().expand(5), rtol=1e-2)


def test_rotation_kinetic_energy_is_constant_speed():
    w, T = 2.0, 0.6
    A = torch.tensor([[0.0, -w], [w, 0.0]], dtype=F64)
    z0 = torch.tensor([[1.0, 2.0], [-0.5, 0.0]], dtype=F64)
    block = ODEBlock(Linear(A), t1=T, adjoint=False, **TIGHT)
    _, pen = RegularisedBlock(block, frobenius="exact")(z0)
    # a rotation keeps ‖z‖: ‖f‖² = w² ‖z0‖² at all times
    assert torch.allclose(pen[:, 0], T * w ** 2 * z0.square().sum(-1), rtol=1e-8)
    assert torch.allclose(pen[:, 1], torch.full((2,), 2 * w ** 2 * T, dtype=F64), rtol=1e-8)


@pytest.mark.parametrize("trace", ["exact", "hutchinson"])
def test_cnf_penalties_and_log_density_on_diagonal_field(trace):
    a, x = diag_case()
    T = 0.9
    cnf = CNF(Linear(torch.diag(a)), t1=T, trace=trace, **TIGHT)
    reg = RegularisedCNF(cnf, frobenius="exact" if trace == "exact" else "hutchinson")
    logp, pen = reg.log_prob(x)
    z0 = x * torch.exp(-a * T)                    # the backward solve ends at e^{-TA} x
    expected_logp = standard_normal_log_prob(z0) - T * a.sum()
    # for diagonal A and Rademacher ε the Hutchinson trace εᵀAε = tr A is exact as well
    assert torch.allclose(logp, expected_logp, rtol=1e-8, atol=1e-8)
    # CNF.log_prob itself passes its times through float32 (t1 = 0.9 moves by ~2e-8), hence 1e-6
    assert torch.allclose(logp, cnf.log_prob(x), rtol=1e-6, atol=1e-6)
    # the solve runs from T back to 0, yet the penalties are the positive forward integrals
    assert torch.allclose(pen[:, 0], kinetic_diag(a, z0, T), rtol=1e-8)
    assert torch.allclose(pen[:, 1], T * a.square().sum().expand(3), rtol=1e-8)


def test_cnf_trace_and_frobenius_share_one_probe():
    A = torch.tensor([[0.3, -1.1], [0.8, -0.4]], dtype=F64)
    x = torch.randn(6, 2, dtype=F64, generator=torch.Generator().manual_seed(3))
    T = 0.7
    cnf = CNF(Linear(A), t1=T, trace="hutchinson", noise="gaussian", **TIGHT)
    reg = RegularisedCNF(cnf, ["jacobian"])
    (zs, deltas), pen = reg.integrate(x, x.new_zeros(6), [T, 0.0],
                                      generator=torch.Generator().manual_seed(4))
    eps = reg.dynamics.noise
    # d(delta)/dt = -εᵀAε, integrated from T to 0: delta(0) = T εᵀAε; penalty T ‖εᵀA‖²
    assert torch.allclose(deltas[-1], T * ((eps @ A) * eps).sum(-1), rtol=1e-8)
    assert torch.allclose(pen[-1, :, 0], T * (eps @ A).square().sum(-1), rtol=1e-8)


def test_custom_term_on_diagonal_field():
    a, z0 = diag_case()
    T = 0.5

    def squared_norm(t, z, f):
        return z.square().sum(-1)

    block = ODEBlock(Linear(torch.diag(a)), t1=T, adjoint=False, **TIGHT)
    reg = RegularisedBlock(block, ["kinetic", squared_norm])
    assert reg.names == ("kinetic", "squared_norm")
    _, pen = reg(z0)
    expected = (z0.square() * (torch.exp(2 * a * T) - 1) / (2 * a)).sum(-1)
    assert torch.allclose(pen[:, 1], expected, rtol=1e-8)


# --------------------------------------------------------------------------- Hutchinson
@pytest.mark.parametrize("kind", ["gaussian", "rademacher"])
def test_hutchinson_mean_and_variance_match_exact_frobenius(kind):
    torch.manual_seed(0)
    field = MLPField(3, hidden=16).to(F64)
    with torch.no_grad():                      # a less trivial Jacobian than the default init
        for p in field.parameters():
            p.mul_(2.0)
    z = torch.randn(2, 3, dtype=F64, requires_grad=True)
    t = torch.tensor(0.3, dtype=F64)
    J = jacobian_rows(field(t, z), z)
    ref = torch.stack([torch.autograd.functional.jacobian(lambda v: field(t, v[None])[0], zi)
                       for zi in z.detach()])
    assert torch.allclose(J, ref, atol=1e-12)
    exact = frobenius_exact(field(t, z), z)
    assert torch.allclose(exact, ref.square().sum((-2, -1)), atol=1e-12)

    n = 20000
    zr = z.detach().repeat(n, 1).requires_grad_(True)          # sample i*2 + b is point b
    eps = sample_noise(zr.shape, kind, generator=torch.Generator().manual_seed(5), dtype=F64)
    est = frobenius_hutchinson(field(t, zr), zr, eps).detach().reshape(n, 2)
    # closed-form variance of ‖εᵀJ‖² = εᵀMε, M = JJᵀ: 2‖M‖_F² (Gaussian) and
    # 2(‖M‖_F² - Σ M_ii²) (Rademacher)
    M = J @ J.transpose(-1, -2)
    var = 2 * M.square().sum((-2, -1))
    if kind == "rademacher":
        var = var - 2 * torch.diagonal(M, dim1=-2, dim2=-1).square().sum(-1)
    se = (var / n).sqrt()
    # unbiased: the mean is within 5 standard errors (a false alarm has odds ~1e-6)
    assert ((est.mean(0) - exact).abs() < 5 * se).all()
    # the sample variance agrees with the closed form to within 10 % (its own relative error is
    # about sqrt(kurtosis/n) ≈ 2 % here)
    assert torch.allclose(est.var(0), var, rtol=0.1)
    # and the estimator is genuinely random (not the exact norm in disguise)
    assert (est.std(0) > 0.05 * exact).all()


# --------------------------------------------------------------------------- solver behaviour
def test_penalties_do_not_change_the_steps():
    torch.manual_seed(1)
    field = MLPField(2, 16)
    with torch.no_grad():   # weights x4: a field that bends (8 steps, not 3)
        for p in field.parameters():
            p.mul_(4.0)
    block = ODEBlock(field, adjoint=False, rtol=1e-5, atol=1e-5)
    x = torch.randn(32, 2)
    z_plain = block(x)
    steps_plain = block.stats.forward.trace_arrays()
    z_reg, pen = RegularisedBlock(block)(x, generator=torch.Generator().manual_seed(0))
    steps_reg = block.stats.forward.trace_arrays()
    # the error norm sees only z: the same steps, the same solution
    assert block.nfe_forward > 0 and len(steps_plain["h"]) == len(steps_reg["h"])
    assert torch.equal(torch.as_tensor(steps_plain["h"]), torch.as_tensor(steps_reg["h"]))
    assert torch.allclose(z_plain, z_reg, atol=1e-6)       # float32 rounding of one concatenation
    assert pen.dtype == x.dtype and pen.shape == (32, 2) and (pen > 0).all()
    # controlling the penalties too adds steps (the norm is the largest over z and the
    # penalties, and here the penalties' error is the larger), not z: both solutions are within
    # the tolerance 1e-5 of each other (5e-4 is a loose bound)
    z_ctrl, pen_ctrl = RegularisedBlock(block, control_penalties=True)(
        x, generator=torch.Generator().manual_seed(0))
    assert len(block.stats.forward.trace_arrays()["h"]) > len(steps_plain["h"])
    assert torch.allclose(z_ctrl, z_plain, atol=5e-4)
    ref_block = ODEBlock(field, adjoint=False, rtol=1e-7, atol=1e-7)
    _, pen_ref = RegularisedBlock(ref_block, control_penalties=True)(
        x, generator=torch.Generator().manual_seed(0))
    err_plain = ((pen - pen_ref).abs() / pen_ref.abs()).max().item()
    err_ctrl = ((pen_ctrl - pen_ref).abs() / pen_ref.abs()).max().item()
    # controlled, the penalties' global error is a few times the local tolerance 1e-5 over ~20
    # steps (measured 4e-4 relative at worst); uncontrolled, they get only the steps z needs,
    # about 50x worse here (measured 2e-2)
    assert err_ctrl < 2e-3 and err_plain > 10 * err_ctrl


def test_adjoint_and_backprop_gradients_agree():
    torch.manual_seed(2)
    field = MLPField(2, 8).to(F64)
    x = torch.randn(4, 2, dtype=F64)
    grads = {}
    for adjoint in (False, True):
        block = ODEBlock(field, adjoint=adjoint, rtol=1e-9, atol=1e-9)
        z, pen = RegularisedBlock(block)(x, generator=torch.Generator().manual_seed(0))
        loss = z.square().sum() + pen.sum()
        grads[adjoint] = torch.cat([g.reshape(-1) for g in
                                    torch.autograd.grad(loss, list(field.parameters()))])
    rel = (grads[True] - grads[False]).norm() / grads[False].norm()
    # both are accurate to about the tolerance 1e-9; a missing penalty term would be O(1)
    assert rel < 1e-6


def test_augmented_block_and_float32():
    block = AugmentedODEBlock(MLPField(5, 8), augment_dim=3, adjoint=False)
    z, pen = RegularisedBlock(block, ["kinetic"])(torch.randn(7, 2))
    assert z.shape == (7, 5) and pen.shape == (7, 1) and pen.dtype == torch.float32


def test_steer_end_times():
    g = torch.Generator().manual_seed(0)
    ts = torch.tensor([steer_end_time(1.0, 0.4, g) for _ in range(4000)])
    assert ts.min() >= 0.6 and ts.max() <= 1.4
    # uniform on [0.6, 1.4]: mean 1, std 0.8/sqrt(12) ≈ 0.23; 5 standard errors of the mean
    assert abs(ts.mean().item() - 1.0) < 5 * 0.8 / math.sqrt(12 * 4000)
    assert ts.min() < 0.62 and ts.max() > 1.38          # it fills the interval
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert steer_end_time(1.0, 0.5, g1) == steer_end_time(1.0, 0.5, g2)
    assert steer_end_time(2.0, 0.0) == 2.0
    with pytest.raises(ValueError, match="0 <= b < t1"):
        steer_end_time(1.0, 1.0)


# --------------------------------------------------------------------------- errors
def test_clear_errors():
    field = MLPField(2, 4)
    with pytest.raises(ValueError, match="unknown term"):
        RegularisedDynamics(field, ["kinetik"])
    with pytest.raises(ValueError, match="terms is empty"):
        RegularisedDynamics(field, [])
    with pytest.raises(ValueError, match="unknown frobenius"):
        RegularisedDynamics(field, frobenius="approx")
    with pytest.raises(ValueError, match="unknown trace"):
        RegularisedDynamics(field, trace="hutch")
    with pytest.raises(ValueError, match="unknown noise"):
        RegularisedDynamics(field, noise="uniform")
    dyn = RegularisedDynamics(field)
    with pytest.raises(ValueError, match="y0 must be z0"):
        odeint_with_penalties(dyn, (torch.zeros(3, 2), torch.zeros(3)), [0.0, 1.0])
    with pytest.raises(ValueError, match="control_penalties"):
        odeint_with_penalties(dyn, torch.zeros(3, 2), [0.0, 1.0], options={"norm": abs})
    with pytest.raises(RuntimeError, match="draw_noise"):
        dyn(torch.tensor(0.0), (torch.zeros(3, 2), torch.zeros(3, 2)))
    block = RegularisedBlock(ODEBlock(field, adjoint=False))
    with pytest.raises(ValueError, match="finite and positive"):
        block(torch.zeros(3, 2), t1=-1.0)
