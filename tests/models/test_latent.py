"""Latent ODE building blocks: data, Gaussian algebra, encoders, models (nodelib.models.latent, nodelib.data.series)."""
import math

import pytest
import torch

from nodelib.data.series import observation_mask, spirals, union_grid
from nodelib.models.latent import (ELBO, GapRNN, LatentODE, ODERNN,
    RecognitionRNN, gaussian_kl, gaussian_log_likelihood, reparameterize)

F64 = torch.float64


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _batch(device, n=6, n_times=12, n_obs=(2, 12), dtype=F64, seed=0):
    t = torch.linspace(0, 1.5, n_times, dtype=dtype, device=device)
    data = spirals(n, t, generator=_gen(seed))
    mask = observation_mask(n, n_times, n_obs, generator=_gen(seed + 1), device=device)
    return t, data.noisy, mask


# --------------------------------------------------------------------------- data
def test_spirals_shapes_dtype_device_and_determinism(device):
    t = torch.linspace(0, 2, 30, dtype=F64, device=device)
    a = spirals(50, t, generator=_gen(3))
    b = spirals(50, t, generator=_gen(3))
    assert a.clean.shape == a.noisy.shape == (50, 30, 2)
    assert a.clean.device == t.device and a.clean.dtype == F64
    assert torch.equal(a.noisy, b.noisy) and torch.equal(a.clockwise, b.clockwise)
    assert not torch.equal(a.noisy, spirals(50, t, generator=_gen(4)).noisy)


def test_spirals_follow_their_formula():
    t = torch.linspace(0, 2, 40, dtype=F64)
    d = spirals(200, t, noise_std=0.1, a=0.3, b=0.25, omega=1.2, generator=_gen(0))
    theta = d.theta0[:, None] + 1.2 * t[None, :]
    # the radius is a + b*theta exactly (float64 round-off only)
    assert torch.allclose(d.clean.norm(dim=-1), 0.3 + 0.25 * theta, atol=1e-12)
    # clockwise spirals turn the other way: the sign of the angular velocity x*y' - y*x'
    x, y = d.clean[..., 0], d.clean[..., 1]
    spin = x[:, :-1] * y[:, 1:] - y[:, :-1] * x[:, 1:]
    assert torch.equal((spin < 0).all(1), d.clockwise) and ((spin > 0).all(1) | d.clockwise).all()
    # 200 spirals: the clockwise fraction is 0.5 +- 0.035 (1 sd); 0.3..0.7 is > 5 sd
    assert 0.3 < d.clockwise.double().mean() < 0.7
    # noise: 16000 draws, the sample sd is within 3% of 0.1 (its sd is ~0.6%)
    assert abs((d.noisy - d.clean).std().item() - 0.1) < 0.003
    lo, hi = math.pi, 2 * math.pi
    assert ((d.theta0 >= lo) & (d.theta0 <= hi)).all()


def test_observation_mask_counts_and_window():
    m = observation_mask(40, 100, 30, n_times=250, generator=_gen(0))
    assert m.shape == (40, 250) and m.dtype == torch.bool
    assert (m.sum(1) == 30).all() and not m[:, 100:].any()
    r = observation_mask(500, 100, (10, 100), generator=_gen(1))
    counts = r.sum(1)
    assert counts.min() >= 10 and counts.max() <= 100
    # 500 uniform counts on 10..100: both ends of the range are reached to within 5
    assert counts.min() <= 15 and counts.max() >= 95
    # rows differ: the positions are random, not the first n
    assert not torch.equal(m[0], m[1])
    with pytest.raises(ValueError, match="n_obs"):
        observation_mask(3, 10, 11)
    with pytest.raises(ValueError, match="n_window"):
        observation_mask(3, 10, 2, n_times=5)


def test_union_grid_round_trip():
    t1 = torch.tensor([0.0, 0.3, 1.0])
    t2 = torch.tensor([0.1, 0.3, 0.7, 2.0])
    x1, x2 = torch.randn(3, 2), torch.randn(4, 2)
    t, x, mask = union_grid([t1, t2], [x1, x2])
    assert torch.equal(t, torch.tensor([0.0, 0.1, 0.3, 0.7, 1.0, 2.0]))
    assert mask.sum().item() == 7
    assert torch.equal(x[0][mask[0]], x1) and torch.equal(x[1][mask[1]], x2)
    assert torch.equal(t[mask[1]], t2)
    with pytest.raises(ValueError, match="increasing"):
        union_grid([torch.tensor([1.0, 0.0])], [torch.randn(2, 2)])


# --------------------------------------------------------------------------- Gaussians
def test_gaussian_kl_against_closed_form_and_torch(device):
    torch.manual_seed(0)
    mq, lq = torch.randn(7, 3, dtype=F64, device=device), torch.randn(7, 3, dtype=F64,
                                                                       device=device)
    mp, lp = torch.randn(7, 3, dtype=F64, device=device), torch.randn(7, 3, dtype=F64,
                                                                       device=device)
    q = torch.distributions.Normal(mq, torch.exp(0.5 * lq))
    p = torch.distributions.Normal(mp, torch.exp(0.5 * lp))
    ref = torch.distributions.kl_divergence(q, p).sum(-1)
    assert torch.allclose(gaussian_kl(mq, lq, mp, lp), ref, rtol=1e-12, atol=1e-12)
    # against the standard normal prior: 1/2 sum(e^lq + mq^2 - 1 - lq), written out
    closed = 0.5 * (torch.exp(lq) + mq ** 2 - 1 - lq).sum(-1)
    assert torch.allclose(gaussian_kl(mq, lq), closed, rtol=1e-12, atol=1e-12)
    # KL(q || q) = 0 up to float64 round-off of exp(lq) * exp(-lq)
    assert gaussian_kl(mq, lq, mq, lq).abs().max() < 1e-14
    assert (gaussian_kl(mq, lq) > 0).all()


def test_gaussian_log_likelihood_against_torch_and_mask(device):
    torch.manual_seed(0)
    x, mean = torch.randn(4, 9, 2, dtype=F64, device=device), torch.randn(4, 9, 2, dtype=F64,
                                                                           device=device)
    mask = torch.rand(4, 9, device=device) < 0.5
    ref = torch.distributions.Normal(mean, 0.3).log_prob(x)
    ref = (ref * mask[..., None]).sum((-2, -1))
    assert torch.allclose(gaussian_log_likelihood(x, mean, 0.3, mask), ref, rtol=1e-12)
    # entries outside the mask are never read, whatever they hold
    x_bad = torch.where(mask[..., None], x, torch.full_like(x, float("nan")))
    assert torch.allclose(gaussian_log_likelihood(x_bad, mean, 0.3, mask), ref, rtol=1e-12)
    full = torch.distributions.Normal(mean, 0.3).log_prob(x).sum((-2, -1))
    assert torch.allclose(gaussian_log_likelihood(x, mean, 0.3), full, rtol=1e-12)


def test_reparameterize_moments_determinism_and_gradients(device):
    mean = torch.tensor([1.0, -2.0], dtype=F64, device=device, requires_grad=True)
    logvar = torch.tensor([0.0, math.log(0.25)], dtype=F64, device=device,
                          requires_grad=True)
    gen = torch.Generator(device=device)
    z = reparameterize(mean, logvar, 100_000, generator=gen.manual_seed(0))
    assert z.shape == (100_000, 2)
    # 1e5 samples: standard errors 0.003 (mean) and 0.002 (sd); 0.02 is > 6 of them
    assert torch.allclose(z.mean(0), mean.detach(), atol=0.02)
    assert torch.allclose(z.std(0), torch.tensor([1.0, 0.5], dtype=F64, device=device),
                          atol=0.02)
    z2 = reparameterize(mean, logvar, 100_000, generator=gen.manual_seed(0))
    assert torch.equal(z, z2)
    z.mean(0).sum().backward()
    # d mean(z)/d mean = 1 exactly; d/d logvar = mean(eps) e^{logvar/2} / 2, small
    assert torch.allclose(mean.grad, torch.ones(2, dtype=F64, device=device))
    assert logvar.grad.abs().max() < 0.02


# --------------------------------------------------------------------------- encoders
@pytest.mark.parametrize("make", [lambda: RecognitionRNN(2, 8, 3),
                                  lambda: ODERNN(2, 8, 3, 8)])
def test_encoders_ignore_unobserved_values(device, make):
    torch.manual_seed(0)
    enc = make().to(device, F64)
    t, x, mask = _batch(device)
    mean, logvar = enc(t, x, mask)
    assert mean.shape == logvar.shape == (6, 3)
    x_changed = torch.where(mask[..., None], x, torch.randn_like(x) * 100)
    mean2, logvar2 = enc(t, x_changed, mask)
    assert torch.equal(mean, mean2) and torch.equal(logvar, logvar2)
    # ... but they do read the observed ones
    mean3, _ = enc(t, x + 0.1 * mask[..., None], mask)
    assert not torch.allclose(mean, mean3)


def test_recognition_rnn_sees_the_time_gaps(device):
    torch.manual_seed(0)
    enc = RecognitionRNN(2, 8, 3).to(device, F64)
    t, x, mask = _batch(device)
    # the same values at stretched times give another posterior: the gaps are inputs
    assert not torch.allclose(enc(t, x, mask)[0], enc(2 * t, x, mask)[0])


def test_odernn_solves_one_euler_step_per_interval(device):
    torch.manual_seed(0)
    enc = ODERNN(2, 8, 3, 8).to(device, F64)
    t, x, mask = _batch(device, n_times=12)
    enc(t, x, mask)
    assert enc.stats.forward.n_accepted == 11 and enc.stats.nfe_forward == 11
    # every step goes backwards in time
    assert all(r.h < 0 for r in enc.stats.forward.trace)


# --------------------------------------------------------------------------- models
def test_latent_ode_elbo_terms(device):
    torch.manual_seed(0)
    model = LatentODE(2, 3, 8, 8, RecognitionRNN(2, 8, 3), obs_std=0.2).to(device, F64)
    t, x, mask = _batch(device)
    gen = torch.Generator(device=device)
    out = model.elbo(t, x, mask, generator=gen.manual_seed(1))
    assert isinstance(out, ELBO) and out.elbo.shape == (6,)
    assert torch.allclose(out.elbo, out.log_likelihood - out.kl, rtol=0, atol=1e-12)
    # the same terms rebuilt by hand from the same posterior sample
    mean, logvar = model.encode(t, x, mask)
    z0 = reparameterize(mean, logvar, 1, generator=gen.manual_seed(1))
    x_mean = model.decode(z0, t)[0]
    ll = torch.distributions.Normal(x_mean, 0.2).log_prob(x)
    ll = (ll * mask[..., None]).sum((-2, -1))
    assert torch.allclose(out.log_likelihood, ll, rtol=1e-10)
    assert torch.allclose(out.kl, gaussian_kl(mean, logvar), rtol=1e-12)
    # determinism under a seed
    again = model.elbo(t, x, mask, generator=gen.manual_seed(1))
    assert torch.equal(out.elbo, again.elbo)


def test_latent_ode_gradients_reach_every_part(device):
    torch.manual_seed(0)
    for encoder in (RecognitionRNN(2, 8, 3), ODERNN(2, 8, 3, 8)):
        model = LatentODE(2, 3, 8, 8, encoder).to(device, F64)
        t, x, mask = _batch(device)
        (-model.elbo(t, x, mask, n_samples=3).elbo.mean()).backward()
        for name, p in model.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_latent_ode_adjoint_matches_backprop(device):
    torch.manual_seed(0)
    grads = []
    for adjoint in (False, True):
        torch.manual_seed(0)
        model = LatentODE(2, 3, 8, 8, RecognitionRNN(2, 8, 3), method="rk4",
                          options={"step_size": 0.05}, adjoint=adjoint).to(device, F64)
        t, x, mask = _batch(device)
        out = model.elbo(t, x, mask, generator=torch.Generator(device=device).manual_seed(0))
        (-out.elbo.sum()).backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.dynamics.parameters()]))
        assert (model.stats.nfe_backward > 0) == adjoint
    # rk4 with h = 0.05: the adjoint's backward solve differs from the exact gradient of the
    # discrete solve by O(h^4) ~ 1e-5 relative; 1e-3 leaves a wide margin
    assert torch.allclose(grads[0], grads[1], rtol=1e-3, atol=1e-6 * grads[0].abs().max())


def test_latent_ode_decodes_on_a_coarse_rk4_grid(device):
    torch.manual_seed(0)
    model = LatentODE(2, 3, 8, 8, options={"step_size": 0.1}).to(device, F64)
    z0 = torch.randn(5, 3, dtype=F64, device=device)
    t = torch.linspace(0, 2.0, 81, dtype=F64, device=device)
    x = model.decode(z0, t)
    assert x.shape == (5, 81, 2)
    # 81 outputs, 20 steps: outputs between steps come from interpolation
    assert model.stats.forward.n_accepted == 20
    samples = model.predict(t, torch.zeros(5, 81, 2, dtype=F64, device=device),
                            torch.ones(5, 81, dtype=torch.bool, device=device),
                            n_samples=4)
    assert samples.shape == (4, 5, 81, 2)
    with pytest.raises(ValueError, match="t_pred"):
        model.predict(t, x, torch.ones(5, 81, dtype=torch.bool, device=device), t[1:])


def test_gap_rnn_is_causal(device):
    torch.manual_seed(0)
    rnn = GapRNN(2, 8, 8).to(device, F64)
    t, x, mask = _batch(device, n_obs=(4, 12))
    preds, after_first = rnn(t, x, mask)
    assert preds.shape == (6, 12, 2)
    k = 6
    x_future = x.clone()
    x_future[:, k:] += 5.0                 # change the present and the future only
    preds2, _ = rnn(t, x_future, mask)
    assert torch.equal(preds[:, :k + 1], preds2[:, :k + 1])
    assert not torch.allclose(preds[:, k + 1:], preds2[:, k + 1:])
    first = mask.float().argmax(1)
    for i in range(6):
        assert torch.equal(after_first[i], torch.arange(12, device=device) > first[i])
    ll = rnn.log_likelihood(t, x, mask, 0.1)
    ref = torch.distributions.Normal(preds, 0.1).log_prob(x)
    ref = (ref * (mask & after_first)[..., None]).sum((-2, -1))
    assert torch.allclose(ll, ref, rtol=1e-10)


def test_bad_batches_are_rejected():
    model = LatentODE()
    t = torch.linspace(0, 1, 5)
    with pytest.raises(ValueError, match="expected t"):
        model.elbo(t, torch.zeros(2, 4, 2), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="obs_std"):
        LatentODE(obs_std=0.0)
    with pytest.raises(ValueError, match="n_encode"):
        model.elbo(t, torch.zeros(2, 5, 2), torch.ones(2, 5, dtype=torch.bool), n_encode=9)
