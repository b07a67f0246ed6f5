"""Latent ODEs (Chen et al. 2018, Section 5) and ODE-RNN encoders (Rubanova et al. 2019).

A latent ODE is a variational autoencoder for time series whose decoder is an ODE::

    z0 ~ q(z0 | x_1..N)                  (recognition network, run backwards in time)
    z(t) = ODESolve(z0, f, t0, t)        (one solve yields the latent state at any time)
    x_i ~ N(decoder(z(t_i)), sigma^2 I)

and it is trained by maximising the evidence lower bound (ELBO)

    E_q[log p(x | z0)] - KL(q(z0 | x) || N(0, I)).

Data come as a batch on one shared time grid ``t`` (for example the union of every series'
observation times, see :func:`union_grid`) with a boolean ``mask`` saying which grid points each
series observed. Unobserved points are never read: they are multiplied by the mask before any
network sees them, and the likelihood counts observed points only.

Building blocks, each usable on its own:

* data (in :mod:`nodelib.data.series`): :func:`~nodelib.data.series.spirals` (the paper's
  two-direction spirals), :func:`~nodelib.data.series.observation_mask`,
  :func:`~nodelib.data.series.union_grid`;
* Gaussian algebra: :func:`reparameterize`, :func:`gaussian_kl`,
  :func:`gaussian_log_likelihood`;
* encoders returning ``(mean, logvar)`` of ``q(z0 | x)``: :class:`RecognitionRNN` (a GRU that
  is told the time gaps) and :class:`ODERNN` (the hidden state follows an ODE between
  observations);
* models: :class:`LatentODE`, and :class:`GapRNN`, the RNN baseline that forecasts the next
  observation from the past and the time gap to it.

Everything follows the device and dtype of the input tensors.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from ..gradients import gradient_mode, odeint, solve_with_gradient
from ..solvers.solution import SolverStats
from .fields import MLPDynamics

LOG_2PI = math.log(2 * math.pi)




# --------------------------------------------------------------------------- Gaussians
def reparameterize(mean: torch.Tensor, logvar: torch.Tensor, n_samples: int | None = None,
                   *, generator: torch.Generator | None = None) -> torch.Tensor:
    """``mean + exp(logvar / 2) * eps`` with ``eps ~ N(0, I)``: a sample that is a
    differentiable function of the parameters. ``n_samples`` adds a leading sample axis."""
    shape = mean.shape if n_samples is None else (n_samples, *mean.shape)
    eps = torch.randn(shape, generator=generator, dtype=mean.dtype, device=mean.device)
    return mean + torch.exp(0.5 * logvar) * eps


def gaussian_kl(mean_q: torch.Tensor, logvar_q: torch.Tensor, mean_p=0.0,
                logvar_p=0.0) -> torch.Tensor:
    """``KL(N(mean_q, diag e^logvar_q) || N(mean_p, diag e^logvar_p))``, summed over the last
    axis: ``1/2 Σ [logvar_p - logvar_q + (e^logvar_q + (mean_q - mean_p)^2) / e^logvar_p - 1]``.
    The defaults make p the standard normal prior."""
    mean_p = torch.as_tensor(mean_p, dtype=mean_q.dtype, device=mean_q.device)
    logvar_p = torch.as_tensor(logvar_p, dtype=mean_q.dtype, device=mean_q.device)
    terms = (logvar_p - logvar_q
             + (torch.exp(logvar_q) + (mean_q - mean_p) ** 2) * torch.exp(-logvar_p) - 1)
    return 0.5 * terms.sum(-1)


def gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, std,
                            mask: torch.Tensor | None = None) -> torch.Tensor:
    """``Σ log N(x | mean, std^2)`` over the observed entries: (..., T, d) → (...).

    ``mask`` (..., T) selects the observed time points; entries of ``x`` where it is False are
    ignored whatever they hold."""
    std = torch.as_tensor(std, dtype=mean.dtype, device=mean.device)
    z = (x - mean) / std
    logp = -0.5 * (z ** 2 + LOG_2PI) - torch.log(std)
    if mask is not None:
        logp = torch.where(mask[..., None], logp, torch.zeros_like(logp))
    return logp.sum((-2, -1))


# --------------------------------------------------------------------------- helpers
def _check_batch(t: torch.Tensor, x: torch.Tensor, mask: torch.Tensor) -> None:
    if t.dim() != 1 or x.dim() != 3 or mask.shape != x.shape[:2] or x.shape[1] != len(t):
        raise ValueError(f"expected t (T,), x (B, T, d) and mask (B, T); got t "
                         f"{tuple(t.shape)}, x {tuple(x.shape)}, mask {tuple(mask.shape)}")


# --------------------------------------------------------------------------- encoders
class RecognitionRNN(nn.Module):
    """The recognition network q(z0 | x): a GRU run backwards in time over the observations.

    Going from ``t[-1]`` down to ``t[0]``, at each observed grid point the cell reads
    ``[x_k, Δ_k]``, where ``Δ_k`` is the time to the observation it read before (``t[-1] -
    t[k]`` for the first one); at unobserved points the state is carried over unchanged. The
    final state, together with the time from the earliest observation back to ``t[0]``, gives
    the mean and log-variance of ``z0 = z(t[0])``.
    """

    def __init__(self, obs_dim: int = 2, hidden: int = 25, latent_dim: int = 4):
        super().__init__()
        self.hidden = hidden
        self.cell = nn.GRUCell(obs_dim + 1, hidden)
        self.out = nn.Linear(hidden + 1, 2 * latent_dim)

    def forward(self, t, x, mask):
        _check_batch(t, x, mask)
        h = x.new_zeros(x.shape[0], self.hidden)
        # time of the observation read last (the earliest so far); t[-1] before the first
        last = t[-1].expand(x.shape[0])
        for k in range(len(t) - 1, -1, -1):
            m = mask[:, k, None]
            inp = torch.cat([x[:, k] * m, (last - t[k])[:, None]], dim=-1)
            h = torch.where(m, self.cell(inp, h), h)
            last = torch.where(m[:, 0], t[k], last)
        lead = (last - t[0])[:, None]
        mean, logvar = self.out(torch.cat([h, lead], dim=-1)).chunk(2, dim=-1)
        return mean, logvar


class ODERNN(nn.Module):
    """An ODE-RNN (Rubanova et al. 2019) run backwards in time, as a recognition network.

    Between grid points the hidden state follows ``dh/dt = f(h)`` (an MLP), solved with
    nodelib's ``odeint``; at each observation a GRU cell updates it with ``x_k``. The gaps between
    observations are thus handled by the ODE instead of being fed in as inputs. The state at
    ``t[0]`` gives the mean and log-variance of ``z0``. ``method`` and ``options`` choose the
    solver of each interval (default: one Euler step per grid interval, cheap because grid
    intervals are short); ``self.stats`` accumulates its statistics over a forward pass.
    """

    def __init__(self, obs_dim: int = 2, hidden: int = 25, latent_dim: int = 4,
                 ode_hidden: int = 25, *, method: str = "euler",
                 options: dict | None = None):
        super().__init__()
        self.hidden, self.method, self.options = hidden, method, options
        self.dynamics = MLPDynamics(hidden, ode_hidden)
        self.cell = nn.GRUCell(obs_dim, hidden)
        self.out = nn.Linear(hidden, 2 * latent_dim)
        self.stats = SolverStats()

    def forward(self, t, x, mask):
        _check_batch(t, x, mask)
        self.stats = SolverStats()
        h = x.new_zeros(x.shape[0], self.hidden)
        for k in range(len(t) - 1, -1, -1):
            if k < len(t) - 1:
                span = t[k:k + 2].flip(0)          # from t[k+1] back to t[k]
                h = odeint(self.dynamics, h, span, method=self.method,
                           options=self.options, stats=self.stats)[-1]
            m = mask[:, k, None]
            h = torch.where(m, self.cell(x[:, k] * m, h), h)
        mean, logvar = self.out(h).chunk(2, dim=-1)
        return mean, logvar


# --------------------------------------------------------------------------- models
class ELBO(NamedTuple):
    """Per-series terms (B,) of one Monte Carlo estimate of the ELBO."""
    elbo: torch.Tensor
    log_likelihood: torch.Tensor
    kl: torch.Tensor


class LatentODE(nn.Module):
    """A latent ODE: recognition network → ``z0`` → ODE solve → decoder.

    ``encoder`` is any module mapping ``(t, x, mask)`` to ``(mean, logvar)`` of ``z0``
    (default: a :class:`RecognitionRNN`). The latent dynamics are an autonomous
    :class:`~nodelib.models.fields.MLPDynamics`, solved with ``method``, ``options``, ``rtol``
    and ``atol`` and differentiated through the one gradient switch of :mod:`nodelib.gradients`:
    ``adjoint=False`` (backpropagation through the solver), ``True`` (the backsolve adjoint) or
    a strategy name (``"backsolve"``, ``"checkpoint"``), as for every model. The decoder is an
    MLP with one hidden layer; ``obs_std`` is the fixed standard
    deviation of the Gaussian observation model. ``self.stats`` holds the statistics of the
    last decoding solve.
    """

    def __init__(self, obs_dim: int = 2, latent_dim: int = 4, hidden: int = 20,
                 dec_hidden: int = 20, encoder: nn.Module | None = None, *,
                 obs_std: float = 0.1, method: str = "rk4", options: dict | None = None,
                 rtol: float = 1e-3, atol: float = 1e-4, adjoint: bool | str = False):
        super().__init__()
        if obs_std <= 0:
            raise ValueError(f"obs_std must be positive, got {obs_std}")
        self.latent_dim, self.obs_std = latent_dim, float(obs_std)
        self.encoder = encoder if encoder is not None else RecognitionRNN(
            obs_dim, 25, latent_dim)
        self.dynamics = MLPDynamics(latent_dim, hidden)
        self.decoder = nn.Sequential(nn.Linear(latent_dim, dec_hidden), nn.ReLU(),
                                     nn.Linear(dec_hidden, obs_dim))
        self.method, self.options, self.rtol, self.atol = method, options, rtol, atol
        self.adjoint = adjoint
        gradient_mode(adjoint)   # an unknown gradient is refused here, not at the first solve
        self.stats = SolverStats()

    def encode(self, t, x, mask):
        """Mean and log-variance (B, latent_dim) of q(z0 | observations)."""
        return self.encoder(t, x, mask)

    def latent_trajectory(self, z0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``z(t)`` for every time in ``t`` (which starts at ``z0``'s time): (T, *z0.shape)."""
        self.stats = SolverStats()
        kw = dict(method=self.method, options=self.options, rtol=self.rtol, atol=self.atol,
                  stats=self.stats)
        t = t.to(dtype=z0.dtype, device=z0.device)
        return solve_with_gradient(self.dynamics, z0, t, gradient=gradient_mode(self.adjoint),
                                   **kw)

    def decode(self, z0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Mean observation at every time in ``t``: (*z0.shape[:-1], T, obs_dim)."""
        z = self.latent_trajectory(z0, t)           # (T, ..., latent)
        return self.decoder(z).movedim(0, -2)

    def elbo(self, t, x, mask, *, n_encode: int | None = None, n_samples: int = 1,
             generator: torch.Generator | None = None) -> ELBO:
        """Reparameterised Monte Carlo estimate of the ELBO of every series in the batch.

        The encoder sees the first ``n_encode`` grid points (default: all of them); the
        likelihood counts every observed point of the grid. Any ``q`` gives a lower bound on
        ``log p(x)``, so one that reads only the first part still does, and maximising it
        trains the model to forecast the rest. ``n_samples`` posterior samples are averaged
        in the likelihood term (they share one batched ODE solve)."""
        _check_batch(t, x, mask)
        k = len(t) if n_encode is None else int(n_encode)
        if not 1 <= k <= len(t):
            raise ValueError(f"n_encode must lie in 1..{len(t)}, got {n_encode}")
        mean, logvar = self.encode(t[:k], x[:, :k], mask[:, :k])
        z0 = reparameterize(mean, logvar, n_samples, generator=generator)
        x_mean = self.decode(z0, t)                               # (S, B, T, d)
        log_lik = gaussian_log_likelihood(x, x_mean, self.obs_std, mask).mean(0)
        kl = gaussian_kl(mean, logvar)
        return ELBO(log_lik - kl, log_lik, kl)

    @torch.no_grad()
    def predict(self, t_obs, x, mask, t_pred: torch.Tensor | None = None, *,
                n_samples: int | None = None, generator: torch.Generator | None = None):
        """Decoded trajectories at ``t_pred`` (default ``t_obs``; it must start at
        ``t_obs[0]``): from the posterior mean when ``n_samples`` is None, (B, T, d); else from
        ``n_samples`` posterior samples, (n_samples, B, T, d)."""
        t_pred = t_obs if t_pred is None else t_pred
        if float(t_pred[0]) != float(t_obs[0]):
            raise ValueError("t_pred must start at t_obs[0], the time of z0")
        mean, logvar = self.encode(t_obs, x, mask)
        z0 = mean if n_samples is None else reparameterize(
            mean, logvar, n_samples, generator=generator)
        return self.decode(z0, t_pred)


class GapRNN(nn.Module):
    """The RNN baseline: a GRU that reads the observations forwards in time and, at every grid
    time, forecasts the observation there from the observations *before* it and the time gap
    since the last one.

    It reads ``[x_i, Δ_i]``, with ``Δ_i`` the gap to the previous observation (to ``t[0]`` for
    the first). The forecast at ``t[k]`` is ``MLP([h, t[k] - t_last])``, where ``h`` is the state
    after the last observation before ``t[k]`` (at time ``t_last``).
    """

    def __init__(self, obs_dim: int = 2, hidden: int = 25, readout_hidden: int = 25):
        super().__init__()
        self.hidden = hidden
        self.cell = nn.GRUCell(obs_dim + 1, hidden)
        self.readout = nn.Sequential(nn.Linear(hidden + 1, readout_hidden), nn.Tanh(),
                                     nn.Linear(readout_hidden, obs_dim))

    def forward(self, t, x, mask):
        """Forecasts (B, T, d) and a mask (B, T) of the grid times that come after the
        series' first observation (before it there is nothing to forecast from)."""
        _check_batch(t, x, mask)
        h = x.new_zeros(x.shape[0], self.hidden)
        last = t[0].expand(x.shape[0])          # time of the last observation read
        states, gaps = [], []
        for k in range(len(t)):
            gap = (t[k] - last)[:, None]
            states.append(h)
            gaps.append(gap)
            m = mask[:, k, None]
            if bool(m.any()):                   # nothing to read here: skip the cell
                inp = torch.cat([x[:, k] * m, gap], dim=-1)
                h = torch.where(m, self.cell(inp, h), h)
                last = torch.where(m[:, 0], t[k], last)
        # one read-out call for all grid times (B, T, hidden + 1) -> (B, T, d)
        inputs = torch.cat([torch.stack(states, 1), torch.stack(gaps, 1)], dim=-1)
        after_first = (torch.cumsum(mask, dim=1) - mask.long()) > 0
        return self.readout(inputs), after_first

    def log_likelihood(self, t, x, mask, std: float,
                       target_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Gaussian log-likelihood (B,) of the observations in ``target_mask`` (default:
        ``mask``) that come after the first one read, under the forecasts made before them.
        The network reads only the observations in ``mask``."""
        preds, after_first = self(t, x, mask)
        target = mask if target_mask is None else target_mask
        return gaussian_log_likelihood(x, preds, std, target & after_first)
