"""Latent SDEs (Li, Wong, Chen & Duvenaud 2020): a latent ODE whose latent state is also driven
by noise, so that the model can say how uncertain the *future* is, not only the start.

Two SDEs share one diagonal diffusion ``g``::

    prior       dz = h_θ(z) dt          + g(z) dW     (the generative model)
    posterior   dz = f_φ(z, c(t)) dt    + g(z) dW     (inference: it has read the data)

The posterior drift reads a context ``c(t)`` from a GRU run backwards over the observations
(:class:`ContextEncoder`): at time ``t`` it summarises what is observed after ``t``, and holds
the next observation itself, which is what a drift must know to steer a path towards the data.
The initial state has a Gaussian posterior ``q(z0 | x)`` from the same GRU. The ELBO is

    E_q[ Σ_i log N(x_i | decoder(z(t_i)), σ²) ] - KL(q(z0) || N(0, I)) - E_q[ ½ ∫ |u|² dt ],
    u = (f_φ - h_θ) / g,

the last term being the KL divergence between the two path measures (Girsanov), estimated
along the sampled posterior paths by ``sdeint(..., logqp=True)``. With a shared diffusion it is
finite; with different diffusions it would be infinite.

After the last time the encoder read (``n_encode``), the posterior drift *is* the prior drift:
the context is exhausted, ``u = 0`` and the path KL stops growing. :meth:`LatentSDE.predict`
forecasts that way: posterior paths through the observed window, prior paths beyond it. Train
with the encoder reading every observation (``n_encode=None``, as Li et al. do): a ``q`` that
follows the prior over observed points is still a valid bound, but there the expected
log-likelihood ``-(|x - E z|² + Var z) / (2σ²)`` rewards a *small* spread of the prior's paths,
so it teaches the diffusion to shrink, the opposite of what a forecast needs.

The SDE object follows torchsde's conventions (``f``, ``g``, ``h``, ``noise_type``,
``sde_type``) and is solved by :func:`nodelib.sde.sdeint` with a fixed step ``dt``. Everything
follows the device and dtype of the input tensors.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from ..sde import BrownianInterval, sdeint
from .latent import _check_batch, gaussian_kl, gaussian_log_likelihood, reparameterize

__all__ = ["ContextEncoder", "DiagonalDiffusion", "LatentSDE", "LatentSDEELBO"]


class ContextEncoder(nn.Module):
    """A GRU run backwards over the observations, returning ``q(z0)`` and a context per time.

    As :class:`~nodelib.models.latent.RecognitionRNN`: from ``t[-1]`` down to ``t[0]``, at each
    observed grid point it reads ``[x_k, Δ_k]`` (``Δ_k`` the time to the observation read
    before, 0 for the first) and elsewhere keeps its state. The context ``c_k`` at grid point
    ``k`` describes what is observed at ``t[k]`` or later: the GRU's state after that point,
    mapped to ``context_dim`` numbers, followed by the next observation itself, its time, and a
    flag that one exists (``obs_dim + 2`` numbers): a posterior drift can then steer straight
    towards the next data point, as a Brownian bridge does. The final state and the lead time
    from the earliest observation back to ``t[0]`` give ``(mean, logvar)`` of ``z0``.
    Returns ``mean, logvar`` (B, latent_dim) and ``context`` (B, T, context_dim + obs_dim + 2).
    """

    def __init__(self, obs_dim: int = 2, hidden: int = 25, context_dim: int = 16,
                 latent_dim: int = 4):
        super().__init__()
        self.hidden = hidden
        self.cell = nn.GRUCell(obs_dim + 1, hidden)
        self.context = nn.Linear(hidden, context_dim)
        self.out = nn.Linear(hidden + 1, 2 * latent_dim)

    def forward(self, t, x, mask):
        _check_batch(t, x, mask)
        h = x.new_zeros(x.shape[0], self.hidden)
        last = t[-1].expand(x.shape[0])                  # time of the observation read last
        nxt = x.new_zeros(x.shape[0], x.shape[-1])       # that observation
        seen = x.new_zeros(x.shape[0], 1)                # 1 once one has been read
        states, nexts = [], []
        for k in range(len(t) - 1, -1, -1):
            m = mask[:, k, None]
            # the gap to the observation read before; 0 for the first one, so that the
            # context does not depend on how far the grid runs past the last observation
            inp = torch.cat([x[:, k] * m, (last - t[k])[:, None] * seen], dim=-1)
            h = torch.where(m, self.cell(inp, h), h)
            last = torch.where(m[:, 0], t[k], last)
            nxt = torch.where(m, x[:, k], nxt)
            seen = torch.where(m, torch.ones_like(seen), seen)
            states.append(h)
            nexts.append(torch.cat([nxt * seen, last[:, None] * seen, seen], dim=-1))
        context = torch.cat([self.context(torch.stack(states[::-1], dim=1)),
                             torch.stack(nexts[::-1], dim=1)], dim=-1)
        lead = (last - t[0])[:, None]
        mean, logvar = self.out(torch.cat([h, lead], dim=-1)).chunk(2, dim=-1)
        return mean, logvar, context


class DiagonalDiffusion(nn.Module):
    """``g(z)_i = scale · sigmoid(MLP_i(z_i))``: each latent coordinate's noise depends on that
    coordinate only (one small MLP per coordinate, batched), bounded in ``(0, scale)``.

    Depending on its own coordinate only makes the noise *commutative*, the case in which
    Milstein's method needs no Lévy areas; the positive bound keeps ``u = (f - h) / g`` finite.
    """

    def __init__(self, latent_dim: int, hidden: int = 16, scale: float = 1.0):
        super().__init__()
        if scale <= 0:
            raise ValueError(f"scale must be positive, got {scale}")
        self.scale = float(scale)
        bound = 1.0                                  # nn.Linear's init for one input
        self.w1 = nn.Parameter(torch.empty(latent_dim, hidden).uniform_(-bound, bound))
        self.b1 = nn.Parameter(torch.empty(latent_dim, hidden).uniform_(-bound, bound))
        bound2 = 1 / math.sqrt(hidden)
        self.w2 = nn.Parameter(torch.empty(latent_dim, hidden).uniform_(-bound2, bound2))
        self.b2 = nn.Parameter(torch.zeros(latent_dim))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        hidden = F.softplus(z[..., None] * self.w1 + self.b1)      # (..., L, H)
        return self.scale * torch.sigmoid((hidden * self.w2).sum(-1) + self.b2)


class LatentSDEELBO(NamedTuple):
    """Per-series terms (B,) of one Monte Carlo estimate of a latent SDE's ELBO:
    ``elbo = log_likelihood - kl_z0 - kl_path``."""
    elbo: torch.Tensor
    log_likelihood: torch.Tensor
    kl_z0: torch.Tensor
    kl_path: torch.Tensor


def _mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.Softplus(), nn.Linear(hidden, hidden),
                         nn.Softplus(), nn.Linear(hidden, n_out))


class LinearPlusMLP(nn.Module):
    """``A x + b + MLP(x)``, with ``A``, ``b`` starting at zero: a linear map learned in a few
    steps (a pull towards the next observation is linear in the distance to it), and a
    nonlinear correction for what is left."""

    def __init__(self, n_in: int, hidden: int, n_out: int):
        super().__init__()
        self.linear = nn.Linear(n_in, n_out)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        self.mlp = _mlp(n_in, hidden, n_out)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.linear(z) + self.mlp(z)


class LatentSDE(nn.Module):
    """A latent SDE: context encoder → ``z0`` → posterior SDE (then prior SDE) → decoder.

    ``latent_dim`` latent coordinates; prior drift ``h`` and posterior drift ``f`` are MLPs with
    two hidden layers of ``hidden`` Softplus units (``f`` also reads the ``context_dim``
    context); the diffusion is a :class:`DiagonalDiffusion` bounded by ``diffusion_scale``; the
    decoder is linear, so the latent paths carry all the structure. ``obs_std`` is the standard
    deviation of the Gaussian observation noise; ``learn_obs_std=True`` makes it a parameter
    (initialised at ``obs_std``). Paths are solved by :func:`nodelib.sde.sdeint` with ``method``
    (an Itô method: the model is an Itô SDE) and the fixed step ``dt``, and differentiated by
    backpropagation through the solver.

    As an SDE object (torchsde's conventions): ``f`` is the posterior drift while a context is
    set (:meth:`contextualize`) and the prior drift otherwise, ``h`` the prior drift, ``g`` the
    diffusion; diagonal noise, Itô.
    """

    noise_type = "diagonal"
    sde_type = "ito"

    def __init__(self, obs_dim: int = 2, latent_dim: int = 4, context_dim: int = 16,
                 hidden: int = 32, encoder_hidden: int = 25, *, obs_std: float = 0.1,
                 learn_obs_std: bool = False, diffusion_scale: float = 1.0,
                 dt: float = 0.05, method: str = "euler"):
        super().__init__()
        if obs_std <= 0 or dt <= 0:
            raise ValueError(f"obs_std and dt must be positive, got {obs_std}, {dt}")
        self.latent_dim, self.dt, self.method = latent_dim, float(dt), method
        self.encoder = ContextEncoder(obs_dim, encoder_hidden, context_dim, latent_dim)
        self.prior_drift = _mlp(latent_dim, hidden, latent_dim)
        # reads z, the GRU context, the gap between the next observation and the decoded
        # state (raw and divided by the time left to it, a Brownian bridge's drift), the time
        # to it and whether one is left
        self.posterior_drift = LinearPlusMLP(latent_dim + context_dim + 2 * obs_dim + 2,
                                             hidden, latent_dim)
        self.diffusion = DiagonalDiffusion(latent_dim, scale=diffusion_scale)
        self.decoder = nn.Linear(latent_dim, obs_dim)
        if latent_dim >= obs_dim:   # start by observing the first coordinates of z
            with torch.no_grad():
                self.decoder.weight.copy_(torch.eye(obs_dim, latent_dim))
                self.decoder.bias.zero_()
        log_std = torch.tensor(math.log(obs_std))
        if learn_obs_std:
            self.log_obs_std = nn.Parameter(log_std)
        else:
            self.register_buffer("log_obs_std", log_std)
        self._context: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def obs_std(self) -> torch.Tensor:
        return self.log_obs_std.exp()

    # ------------------------------------------------------------------ the SDE object
    def contextualize(self, t: torch.Tensor | None, context: torch.Tensor | None) -> None:
        """Set the grid ``t`` (T,) and context (batch, T, C) that ``f`` reads; ``None`` clears
        them (``f`` is then the prior drift)."""
        self._context = None if t is None or context is None else (t, context)

    def h(self, t, z):
        """Prior drift ``h_θ(z)``."""
        return self.prior_drift(z)

    def f(self, t, z):
        """Posterior drift ``h_θ(z) + r_φ(z, c_{k+1})`` for ``t`` in ``[t_k, t_{k+1})`` (the
        context of what comes after ``t``: the GRU's summary, and the distance from the
        decoded state to the next observation, also divided by the time left to reach it),
        the prior drift from the last encoded time on. Written as a correction ``r_φ`` of the
        prior drift, so that ``u = r_φ / g`` and an untrained posterior starts near the prior."""
        if self._context is None:
            return self.h(t, z)
        grid, context = self._context
        now = torch.as_tensor(t, dtype=grid.dtype, device=grid.device).reshape(1)
        k = int(torch.searchsorted(grid, now, right=True))
        if k >= len(grid):
            return self.h(t, z)
        c = context[:, k]
        d = self.decoder.out_features
        seen = c[:, -1:]
        gap = (c[:, -2:-1] - t) * seen                  # time to the next observation
        miss = (c[:, -2 - d:-2] - self.decoder(z)) * seen
        inputs = torch.cat([z, c[:, :-2 - d], miss, miss / (gap + self.dt), gap, seen],
                           dim=-1)
        return self.h(t, z) + self.posterior_drift(inputs)

    def g(self, t, z):
        """Diagonal diffusion ``g(z)``, the same for prior and posterior."""
        return self.diffusion(z)

    # ------------------------------------------------------------------ solving
    def _solve(self, z0: torch.Tensor, t: torch.Tensor, generator, logqp: bool):
        device = generator.device if generator is not None else None
        seed = int(torch.randint(2 ** 62, (1,), generator=generator, device=device))
        # with logqp, sdeint integrates the KL rate as one more (noiseless) coordinate, and
        # the Brownian motion has a channel for it, as in torchsde
        size = (z0.shape[0], z0.shape[1] + int(logqp))
        bm = BrownianInterval(t0=float(t[0]), t1=float(t[-1]), size=size, dtype=z0.dtype,
                              device=z0.device, entropy=seed)
        return sdeint(self, z0, t, bm=bm, method=self.method, dt=self.dt, logqp=logqp)

    def _encode(self, t, x, mask, n_encode):
        k = len(t) if n_encode is None else int(n_encode)
        if not 1 <= k <= len(t):
            raise ValueError(f"n_encode must lie in 1..{len(t)}, got {n_encode}")
        return k, self.encoder(t[:k], x[:, :k], mask[:, :k])

    def elbo(self, t, x, mask, *, n_encode: int | None = None, n_samples: int = 1,
             generator: torch.Generator | None = None) -> LatentSDEELBO:
        """Reparameterised Monte Carlo estimate of the ELBO of every series in the batch.

        The encoder reads the first ``n_encode`` grid points (default: all); the likelihood
        counts every observed point of ``mask``. ``n_samples`` posterior paths per series are
        solved in one batch. ``generator`` (on ``x``'s device) seeds ``z0``'s noise and the
        Brownian path."""
        _check_batch(t, x, mask)
        t = t.to(dtype=x.dtype)
        k, (mean, logvar, context) = self._encode(t, x, mask, n_encode)
        z0 = reparameterize(mean, logvar, n_samples, generator=generator)     # (S, B, L)
        S, B = n_samples, x.shape[0]
        self.contextualize(t[:k], context.repeat(S, 1, 1))
        try:
            zs, log_ratio = self._solve(z0.reshape(S * B, -1), t, generator, logqp=True)
        finally:
            self.contextualize(None, None)
        x_mean = self.decoder(zs).reshape(len(t), S, B, -1).permute(1, 2, 0, 3)
        log_lik = gaussian_log_likelihood(x, x_mean, self.obs_std, mask).mean(0)
        kl_path = log_ratio.sum(0).reshape(S, B).mean(0)
        kl_z0 = gaussian_kl(mean, logvar)
        return LatentSDEELBO(log_lik - kl_z0 - kl_path, log_lik, kl_z0, kl_path)

    @torch.no_grad()
    def predict(self, t_obs, x, mask, t_pred: torch.Tensor | None = None, *,
                n_samples: int = 100, generator: torch.Generator | None = None,
                with_noise: bool = False) -> torch.Tensor:
        """Sampled trajectories (n_samples, B, T, d) at ``t_pred`` (default ``t_obs``; it must
        start at ``t_obs[0]``): posterior paths while the context lasts, prior paths after.
        ``with_noise`` adds the observation noise: samples of the posterior predictive."""
        t_pred = t_obs if t_pred is None else t_pred
        if float(t_pred[0]) != float(t_obs[0]):
            raise ValueError("t_pred must start at t_obs[0], the time of z0")
        t_obs, t_pred = t_obs.to(dtype=x.dtype), t_pred.to(dtype=x.dtype)
        mean, logvar, context = self.encoder(t_obs, x, mask)
        z0 = reparameterize(mean, logvar, n_samples, generator=generator)
        B = x.shape[0]
        self.contextualize(t_obs, context.repeat(n_samples, 1, 1))
        try:
            zs = self._solve(z0.reshape(n_samples * B, -1), t_pred, generator, logqp=False)
        finally:
            self.contextualize(None, None)
        out = self.decoder(zs).reshape(len(t_pred), n_samples, B, -1).permute(1, 2, 0, 3)
        if with_noise:
            eps = torch.randn(out.shape, generator=generator, dtype=out.dtype,
                              device=out.device)
            out = out + self.obs_std * eps
        return out
