"""Latent SDEs (nodelib.models.latent_sde): the context encoder, the SDE object, the ELBO with
the path KL, and prediction. Small and fast: a handful of steps on a few series."""
import pytest
import torch

from nodelib.data.series import observation_mask
from nodelib.data.stochastic import stochastic_oscillator
from nodelib.models.latent_sde import ContextEncoder, DiagonalDiffusion, LatentSDE

F64 = torch.float64


def _gen(seed=0, device="cpu"):
    return torch.Generator(device=device).manual_seed(seed)


def _batch(device, n=5, n_times=10, dtype=F64):
    t = torch.linspace(0, 2, n_times, dtype=dtype, device=device)
    x = stochastic_oscillator(n, t, generator=_gen(0)).noisy
    mask = observation_mask(n, n_times, (2, n_times), generator=_gen(1), device=device)
    return t, x, mask


def _model(device, dtype=F64, **kw):
    torch.manual_seed(0)
    return LatentSDE(2, 3, 4, 8, encoder_hidden=6, dt=0.1, **kw).to(device, dtype)


def test_context_reads_only_what_comes_later(device):
    t, x, mask = _batch(device)
    enc = ContextEncoder(2, 6, 4, 3).to(device, F64)
    with torch.no_grad():
        mean, logvar, ctx = enc(t, x, mask)
    assert mean.shape == logvar.shape == (5, 3) and ctx.shape == (5, 10, 4 + 2 + 2)
    # changing the data before grid point k leaves the context from k on unchanged
    k = 6
    x2 = x.clone()
    x2[:, :k] += 1.0
    with torch.no_grad():
        _, _, ctx2 = enc(t, x2, mask)
    assert torch.equal(ctx[:, k:], ctx2[:, k:])
    # the context carries the next observation and its time
    b = 0
    nxt = int(mask[b].nonzero()[0])            # first observed point of series 0
    assert torch.equal(ctx[b, 0, 4:6], x[b, nxt]) and float(ctx[b, 0, 6]) == float(t[nxt])
    # unobserved values are never read
    x3 = torch.where(mask[..., None], x, torch.full_like(x, 1e6))
    with torch.no_grad():
        assert torch.equal(enc(t, x3, mask)[2], ctx)


def test_diffusion_is_bounded_and_coordinatewise():
    g = DiagonalDiffusion(3, hidden=5, scale=0.7).double()
    z = torch.randn(50, 3, dtype=F64) * 10
    out = g(z)
    assert out.shape == (50, 3) and (out > 0).all() and (out < 0.7).all()
    z2 = z.clone()
    z2[:, 1] += 1.0                             # moving coordinate 1 changes g_1 only
    assert torch.equal(g(z2)[:, [0, 2]], out[:, [0, 2]])
    with pytest.raises(ValueError, match="scale"):
        DiagonalDiffusion(2, scale=0.0)


def test_elbo_terms_shapes_and_gradients(device):
    t, x, mask = _batch(device)
    model = _model(device)
    out = model.elbo(t, x, mask, n_samples=3, generator=_gen(2, device))
    for term in out:
        assert term.shape == (5,) and torch.isfinite(term).all()
    assert (out.kl_path >= 0).all() and (out.kl_z0 >= 0).all()
    assert torch.allclose(out.elbo, out.log_likelihood - out.kl_z0 - out.kl_path)
    out.elbo.sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    # the context is cleared after the solve: f is the prior drift again
    z = torch.randn(4, 3, dtype=F64, device=device)
    assert torch.equal(model.f(t[0], z), model.h(t[0], z))


def test_the_path_kl_vanishes_when_the_posterior_is_the_prior(device):
    t, x, mask = _batch(device)
    model = _model(device)
    # the posterior drift is h + (linear + MLP) correction: zero both last layers
    with torch.no_grad():
        for last in (model.posterior_drift.linear, model.posterior_drift.mlp[-1]):
            last.weight.zero_()
            last.bias.zero_()
    out = model.elbo(t, x, mask, generator=_gen(3, device))
    assert torch.equal(out.kl_path, torch.zeros_like(out.kl_path))


def test_the_path_kl_stops_after_the_encoded_window():
    t, x, mask = _batch("cpu")
    model = _model("cpu")
    k = 4
    model.contextualize(t[:k], model.encoder(t[:k], x[:, :k], mask[:, :k])[2])
    z = torch.randn(5, 3, dtype=F64)
    try:
        # inside the window the posterior differs from the prior; from t[k-1] on it is the prior
        assert not torch.equal(model.f(t[0], z), model.h(t[0], z))
        for tt in (t[k - 1], t[k], t[-1]):
            assert torch.equal(model.f(tt, z), model.h(tt, z))
        # a time given as a Python float works as well (inside and after the window)
        assert torch.equal(model.f(float(t[0]), z), model.f(t[0], z))
        assert torch.equal(model.f(float(t[-1]), z), model.h(t[-1], z))
    finally:
        model.contextualize(None, None)


def test_predict_shapes_determinism_and_noise(device):
    t, x, mask = _batch(device)
    model = _model(device)
    t_pred = torch.linspace(0, 3, 16, dtype=F64, device=device)
    a = model.predict(t, x, mask, t_pred, n_samples=4, generator=_gen(5, device))
    b = model.predict(t, x, mask, t_pred, n_samples=4, generator=_gen(5, device))
    assert a.shape == (4, 5, 16, 2) and a.device == x.device and a.dtype == F64
    assert torch.equal(a, b)
    noisy = model.predict(t, x, mask, t_pred, n_samples=4, generator=_gen(5, device),
                          with_noise=True)
    assert not torch.equal(noisy, a)
    with pytest.raises(ValueError, match="must start"):
        model.predict(t, x, mask, t_pred + 0.5)


def test_learned_observation_noise_and_bad_arguments():
    model = _model("cpu", learn_obs_std=True, obs_std=0.3)
    assert any(p is model.log_obs_std for p in model.parameters())
    # the log is stored at the default dtype (float32) before the model is cast: 1e-6
    assert abs(model.obs_std.item() - 0.3) < 1e-6
    t, x, mask = _batch("cpu")
    with pytest.raises(ValueError, match="n_encode"):
        model.elbo(t, x, mask, n_encode=0)
    with pytest.raises(ValueError, match="positive"):
        LatentSDE(obs_std=0.0)
