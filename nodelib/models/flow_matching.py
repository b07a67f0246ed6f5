"""Flow matching: train the vector field of a continuous flow by regression, solve only to sample.

A continuous normalizing flow (:mod:`nodelib.models.flows`) trained by maximum likelihood solves
the ODE at every training step. Conditional flow matching (CFM; Lipman et al. 2023, Liu et al. 2023,
Tong et al. 2024) instead fixes a *path* between pairs ``(x0, x1)`` of a source and a target
sample, here the straight line ``x_t = (1 - t) x0 + t x1`` (plus optional noise ``σ ε``), and
regresses the field on the path's velocity ``x1 - x0``:

    L_CFM(θ) = E_{t, (x0, x1)} ‖v_θ(t, x_t) - (x1 - x0)‖².

Its gradient equals the gradient of the regression on the intractable *marginal* field, so the
trained field transports the source distribution to the target one. How the pairs are drawn is the
*coupling*: ``"independent"`` (I-CFM: shuffle), ``"ot"`` (OT-CFM: an exact optimal-transport
permutation within each minibatch, :func:`ot_pairing`), or any fixed pairs, e.g. the
``(x0, flow(x0))`` pairs of rectified flow's *reflow* (:func:`reflow_pairs`).

- :func:`ot_pairing`: the permutation solving exact OT with squared Euclidean cost between two
  equal-size samples (``scipy.optimize.linear_sum_assignment``, imported on first use).
- :func:`wasserstein2`: the exact 2-Wasserstein distance between two equal-size samples.
- :func:`interpolate`, :func:`cfm_loss`: the straight conditional path and the CFM loss.
- :func:`sample_flow`: integrate a field with any nodelib method; reports the NFE.
- :func:`path_energy`: ``∫_0^1 ‖v(t, x(t))‖² dt`` per sample, solved with the flow itself, and
  the straightness gap ``∫‖v‖² dt - ‖x(1) - x(0)‖² ≥ 0`` (zero exactly for straight paths at
  constant speed).

Fields are called as ``field(t, x)`` with ``x`` of shape ``(batch, dim)``. During training ``t``
has shape ``(batch, 1)`` (one time per sample); during sampling it is a 0-d tensor, as in every
nodelib solve. :class:`nodelib.models.fields.MLPField` accepts both.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..gradients.backprop import odeint
from ..solvers.solution import SolverStats
from ..solvers.tableaux import ADAPTIVE_METHODS

COUPLINGS = ("independent", "ot")


# --------------------------------------------------------------------------- optimal transport
def _sq_cost(x: torch.Tensor, y: torch.Tensor):
    """Squared Euclidean cost matrix as a float64 numpy array (CPU)."""
    if len(x) != len(y):
        raise ValueError(f"need samples of equal size, got {len(x)} and {len(y)}")
    x = x.detach().to("cpu", torch.float64).reshape(len(x), -1)
    y = y.detach().to("cpu", torch.float64).reshape(len(y), -1)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"need samples of equal dimension, got {tuple(x.shape[1:])} and "
                         f"{tuple(y.shape[1:])} per point")
    return torch.cdist(x, y).square().numpy()


def _assignment(cost) -> torch.Tensor:
    """The optimal permutation for a square cost matrix (``perm[i]`` is row ``i``'s column)."""
    from scipy.optimize import linear_sum_assignment  # optional dependency: only OT needs it
    rows, cols = linear_sum_assignment(cost)
    perm = torch.empty(len(cost), dtype=torch.long)
    perm[torch.as_tensor(rows)] = torch.as_tensor(cols)
    return perm


def ot_pairing(x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    """The permutation ``π`` minimising ``Σ_i ‖x0[i] - x1[π[i]]‖²`` (exact, no regularisation).

    Between two uniform empirical measures of the same size ``n``, an optimal transport plan can
    be taken to be a permutation (the extreme points of the doubly stochastic matrices are the
    permutation matrices, Birkhoff's theorem), so OT is the linear assignment problem, solved
    exactly by ``scipy.optimize.linear_sum_assignment`` (O(n³); about 0.01 s for n = 256).
    Returns a long tensor on ``x1``'s device; ``x1[π]`` is the partner of ``x0``.
    """
    return _assignment(_sq_cost(x0, x1)).to(x1.device)


def wasserstein2(x: torch.Tensor, y: torch.Tensor) -> float:
    """Exact 2-Wasserstein distance between the empirical measures of two equal-size samples:
    ``W2 = (min_π (1/n) Σ_i ‖x[i] - y[π[i]]‖²)^{1/2}``, by the assignment of :func:`ot_pairing`
    (one cost matrix, computed in float64 on the CPU)."""
    cost = _sq_cost(x, y)
    perm = _assignment(cost)
    return float(cost[range(len(x)), perm.numpy()].mean() ** 0.5)


# --------------------------------------------------------------------------- the CFM loss
def couple(x0: torch.Tensor, x1: torch.Tensor, coupling: str = "independent",
           generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Pair a source batch with a target batch: ``"independent"`` shuffles ``x1`` (for batches
    drawn independently a shuffle changes nothing in distribution, but it breaks any order the
    caller's batches may carry); ``"ot"`` reorders ``x1`` by :func:`ot_pairing`."""
    if len(x0) != len(x1):
        raise ValueError(f"need batches of equal size, got {len(x0)} and {len(x1)}")
    if coupling == "independent":
        device = generator.device if generator is not None else "cpu"
        perm = torch.randperm(len(x1), generator=generator, device=device)
        return x0, x1[perm.to(x1.device)]
    if coupling == "ot":
        return x0, x1[ot_pairing(x0, x1)]
    raise ValueError(f"unknown coupling {coupling!r}; known: {', '.join(COUPLINGS)}")


def interpolate(x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor, sigma: float = 0.0,
                noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The straight conditional path and its velocity: ``x_t = (1 - t) x0 + t x1 + σ ε`` and
    ``u_t = x1 - x0`` (``t`` of shape ``(batch, 1)``; the noise, when ``σ > 0``, has a constant
    level and so adds nothing to the velocity)."""
    if x0.shape != x1.shape:
        raise ValueError(f"x0 and x1 must have the same shape, got {tuple(x0.shape)} and "
                         f"{tuple(x1.shape)}")
    if x0.dim() != 2 or t.shape != (len(x0), 1):
        raise ValueError(f"need x0 of shape (batch, dim) and t of shape (batch, 1) = "
                         f"({len(x0)}, 1), got x0 {tuple(x0.shape)} and t {tuple(t.shape)}")
    xt = (1 - t) * x0 + t * x1
    if sigma > 0:
        if noise is None or noise.shape != x0.shape:
            raise ValueError("sigma > 0 needs noise shaped like x0")
        xt = xt + sigma * noise
    return xt, x1 - x0


def cfm_loss(field, x0: torch.Tensor, x1: torch.Tensor, *,
             coupling: str | None = "independent",
             sigma: float = 0.0, generator: torch.Generator | None = None,
             t: torch.Tensor | None = None) -> torch.Tensor:
    """Conditional flow-matching loss on one minibatch:
    ``mean_i ‖v(t_i, x_{t_i}) - (x1_i - x0_i)‖²`` with ``t_i ~ U(0, 1)`` and the pairs from
    :func:`couple`. ``coupling="independent"`` is I-CFM (Lipman et al.'s OT path, Liu et al.'s
    1-rectified flow), ``"ot"`` is OT-CFM (Tong et al.). For fixed pairs (reflow) pass them in
    order with ``coupling=None``. ``t`` (shape ``(batch, 1)``) fixes the times instead of drawing
    them, e.g. to compare with another loss on the same points."""
    if x0.shape != x1.shape:
        raise ValueError(f"x0 and x1 must have the same shape, got {tuple(x0.shape)} and "
                         f"{tuple(x1.shape)}")
    if coupling is not None:
        x0, x1 = couple(x0, x1, coupling, generator)
    gen_device = generator.device if generator is not None else "cpu"
    if t is None:
        t = torch.rand(len(x0), 1, generator=generator, device=gen_device).to(x0)
    noise = None
    if sigma > 0:
        noise = torch.randn(x0.shape, generator=generator, device=gen_device).to(x0)
    xt, ut = interpolate(x0, x1, t, sigma, noise)
    return (field(t, xt) - ut).square().sum(-1).mean()


# --------------------------------------------------------------------------- sampling
@dataclass
class FlowSamples:
    """What :func:`sample_flow` returns: the states at ``times`` (``xs[-1]`` is the sample), the
    number of function evaluations, and the solver statistics."""
    xs: torch.Tensor
    nfe: int
    stats: SolverStats

    @property
    def x(self) -> torch.Tensor:
        return self.xs[-1]


def _solve(func, y0, *, method: str, steps: int | None, times, rtol: float, atol: float,
           options: dict | None, stats: SolverStats):
    t = times if isinstance(times, torch.Tensor) else torch.as_tensor(times)
    t = t.to(device=(y0[0] if isinstance(y0, tuple) else y0).device,
              dtype=(y0[0] if isinstance(y0, tuple) else y0).dtype)
    opts = dict(options or {})
    method = "dopri5" if method is None else method
    if steps is not None:
        if method in ADAPTIVE_METHODS:
            raise ValueError(f"steps={steps} fixes the grid of a fixed-step method, but "
                             f"{method!r} is adaptive: control it with rtol/atol, or pick a "
                             f"fixed-step method such as 'euler', 'midpoint' or 'rk4'")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
    elif (method not in ADAPTIVE_METHODS and "step_size" not in opts
          and "grid_constructor" not in opts):
        # nodelib's default for a fixed-step method is one step per output interval: for a
        # sampler that silently means a single step from noise to data
        raise ValueError(f"the fixed-step method {method!r} needs steps= (or a step_size or "
                         f"grid_constructor in options)")
    if steps is not None:                       # exactly `steps` equal steps, either direction
        opts["grid_constructor"] = lambda f, y, tt: torch.linspace(
            float(tt[0]), float(tt[-1]), steps + 1, dtype=tt.dtype, device=tt.device)
    return odeint(func, y0, t, rtol=rtol, atol=atol, method=method, options=opts or None,
                  stats=stats)


def sample_flow(field, x0: torch.Tensor, *, method: str = "dopri5", steps: int | None = None,
                times=(0.0, 1.0), rtol: float = 1e-5, atol: float = 1e-5,
                options: dict | None = None) -> FlowSamples:
    """Push ``x0`` through ``dx/dt = field(t, x)`` from ``times[0]`` to ``times[-1]`` with any
    nodelib method, without building a graph. A fixed-step method takes ``steps`` equal steps
    (on ``torch.linspace(times[0], times[-1], steps + 1)``; ``steps`` is required for it), an
    adaptive one is controlled by ``rtol``/``atol`` (and rejects ``steps``). The states at
    ``times`` are returned in ``x0``'s device and dtype; the NFE is the solver's own count
    (``SolverStats.nfe_forward``)."""
    stats = SolverStats()
    with torch.no_grad():
        xs = _solve(field, x0, method=method, steps=steps, times=times, rtol=rtol, atol=atol,
                    options=options, stats=stats)
    return FlowSamples(xs, stats.nfe_forward, stats)


def reflow_pairs(field, x0: torch.Tensor, **sample_kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """Rectified flow's reflow coupling (Liu et al. 2023): the pairs ``(x0, φ(x0))`` of a trained
    flow ``φ``. A new field trained on these fixed pairs (``cfm_loss(..., coupling=None)``)
    transports the same marginals as ``φ`` (the source, and ``φ``'s output law, errors included)
    with straighter paths."""
    return x0, sample_flow(field, x0, **sample_kwargs).x


class _EnergyDynamics(torch.nn.Module):
    def __init__(self, field):
        super().__init__()
        self.field = field

    def forward(self, t, state):
        v = self.field(t, state[0])
        return v, v.square().sum(-1)


def path_energy(field, x0: torch.Tensor, *, method: str = "rk4", steps: int | None = None,
                rtol: float = 1e-5, atol: float = 1e-5,
                options: dict | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample path energy ``E = ∫_0^1 ‖v(t, x(t))‖² dt`` along the flow from ``x0``, by
    solving ``(x, E)`` together with any nodelib method (a fixed-step one takes ``steps``
    equal steps, 32 by default; an adaptive one follows ``rtol``/``atol``). Returns
    ``(x1, E, gap)`` with the
    straightness gap ``gap = E - ‖x1 - x0‖²``, which is ``≥ 0`` by Cauchy–Schwarz
    (``‖∫v dt‖² ≤ ∫‖v‖² dt``) and zero exactly when the path is a straight line at constant
    speed. The mean of ``E`` over the source is the quantity that dynamic optimal transport
    minimises (Benamou–Brenier): its minimum is ``W2²`` of the two marginals."""
    if steps is None and method not in ADAPTIVE_METHODS:
        steps = 32
    stats = SolverStats()
    with torch.no_grad():
        xs, es = _solve(_EnergyDynamics(field), (x0, x0.new_zeros(x0.shape[:-1])),
                        method=method, steps=steps, times=(0.0, 1.0), rtol=rtol, atol=atol,
                        options=options, stats=stats)
    x1, energy = xs[-1], es[-1]
    return x1, energy, energy - (x1 - x0).square().sum(-1)


def normalised_path_energy(energy: torch.Tensor | float, w2_squared: float) -> float:
    """``|mean E - W2²| / W2²``: how far a flow's mean path energy is above the optimal-transport
    minimum ``W2²`` of its two marginals, relative to it (0 for the OT flow)."""
    e = float(energy.mean()) if isinstance(energy, torch.Tensor) else float(energy)
    return abs(e - w2_squared) / w2_squared
