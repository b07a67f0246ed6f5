"""Integrated regularisers for ODE blocks and CNFs (RNODE, Finlay et al. 2020; STEER, Ghosh et al.
2020).

A penalty on the whole trajectory, ``R = ∫_0^T r(t, z(t)) dt``, is computed by the solver itself:
append ``R`` to the state, with ``dR/dt = r(t, z)`` and ``R(0) = 0``, and read it off at ``T``
next to the solution. Two integrands are built in:

- ``"kinetic"``: ``‖f(t, z)‖²``, the kinetic energy of the flow;
- ``"jacobian"``: ``‖∂f/∂z‖_F²``, the squared Frobenius norm of the field's Jacobian, estimated
  by Hutchinson's ``‖εᵀ ∂f/∂z‖²`` (``E[εεᵀ] = I``) from one vector–Jacobian product, or computed
  exactly (one reverse pass per dimension).

Any callable ``term(t, z, f) -> (batch,)`` is a third kind. :class:`RegularisedDynamics` is the
right-hand side on the tuple state ``(z, R)`` of an ODE block, or ``(z, log p, R)`` of a CNF; for
a CNF with Hutchinson's trace, the trace ``εᵀ(∂f/∂z)ε`` and the Frobenius estimate ``‖εᵀ∂f/∂z‖²``
come from the *same* vector–Jacobian product with the same probe ε, so the penalty costs no
extra reverse pass. :func:`odeint_with_penalties` runs the solve and returns
``(solution, penalties)``; :class:`RegularisedBlock` and :class:`RegularisedCNF` wrap an existing
:class:`~nodelib.models.blocks.ODEBlock` or :class:`~nodelib.models.flows.CNF` (sharing its
parameters and solver settings). :func:`steer_end_time` draws STEER's random end time.

By default the penalty components are left out of the adaptive solver's error control
(``control_penalties=False``): the norm is the largest RMS over the solution's tensors (z, or z
and log p), as for the solve without penalties. The penalties never feed back into the
dynamics, so controlling their error buys z nothing and changes the steps (usually adding
some); left out, the steps are exactly those of the unregularised solve of the same field —
with backprop and with the adjoint alike (whose backward solve also measures z and a with that
norm). ``control_penalties=True`` measures the penalty tensor R, all its terms together, as one
more tensor of the state. Penalties have shape ``(batch, n_terms)`` and are positive whichever
direction the solve runs in. Everything follows the input tensor's device and dtype.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..gradients import gradient_mode, solve_with_gradient
from ..solvers.controllers import rms_norm
from ..solvers.solution import SolverStats
from .blocks import ODEBlock, ReportsNFE, augment
from .flows import CNF, ProbedDynamics
from .traces import NOISE_KINDS, TRACE_METHODS, exact_trace, jacobian_rows, jacobian_vjp

BUILT_IN_TERMS = ("kinetic", "jacobian")
FROBENIUS_METHODS = ("hutchinson", "exact")


# --------------------------------------------------------------------------- integrands
def kinetic_energy(f: torch.Tensor) -> torch.Tensor:
    """``‖f‖²`` per sample (summed over every axis but the first)."""
    return f.reshape(f.shape[0], -1).square().sum(-1)


def steer_end_time(t1: float, b: float, generator: torch.Generator | None = None) -> float:
    """STEER (Ghosh et al. 2020): an end time drawn uniformly from ``[t1 - b, t1 + b]``.

    Needs ``0 <= b < t1``, so the interval stays positive. ``generator`` is a CPU generator (the
    draw does not depend on the device).
    """
    if not 0 <= b < t1:
        raise ValueError(f"STEER needs 0 <= b < t1, got t1={t1}, b={b}")
    u = torch.rand((), generator=generator, dtype=torch.float64).item()
    return t1 - b + 2 * b * u


# --------------------------------------------------------------------------- dynamics
def _term_name(term) -> str:
    return term if isinstance(term, str) else getattr(term, "__name__", type(term).__name__)


class RegularisedDynamics(ProbedDynamics):
    """Right-hand side on ``(z, R)`` (``trace=None``: an ODE block) or ``(z, log p, R)`` (a CNF):
    ``dz/dt = f``, ``d log p/dt = -tr ∂f/∂z``, ``dR_k/dt = r_k(t, z)``.

    ``terms`` lists the integrands: ``"kinetic"``, ``"jacobian"``, or callables
    ``term(t, z, f) -> (batch,)``. ``frobenius`` chooses Hutchinson's estimate (default) or the
    exact norm for ``"jacobian"``. ``trace`` is the CNF's trace method (as in
    :class:`~nodelib.models.flows.CNFDynamics`); with ``"hutchinson"`` one vector–Jacobian product
    with the probe ``self.noise`` gives both the trace and the Frobenius estimate, with
    ``"exact"`` and ``frobenius="exact"`` the same Jacobian rows give both exactly. The probe is
    drawn by :meth:`draw_noise` once per solve and held fixed during it, so the integrands are
    smooth in t.
    """

    def __init__(self, field: nn.Module, terms=BUILT_IN_TERMS, *, trace: str | None = None,
                 frobenius: str = "hutchinson", noise: str = "rademacher"):
        super().__init__()
        terms = (terms,) if isinstance(terms, str) or callable(terms) else tuple(terms)
        if not terms:
            raise ValueError("terms is empty: give at least one of "
                             f"{', '.join(BUILT_IN_TERMS)} or a callable term(t, z, f)")
        for term in terms:
            if not (callable(term) or term in BUILT_IN_TERMS):
                raise ValueError(f"unknown term {term!r}; built-in terms are "
                                 f"{', '.join(BUILT_IN_TERMS)}, or pass a callable term(t, z, f)")
        if trace is not None and trace not in TRACE_METHODS:
            raise ValueError(f"unknown trace {trace!r}; known: exact, hutchinson, closed_form "
                             "(or None for an ODE block without log-density)")
        if frobenius not in FROBENIUS_METHODS:
            raise ValueError(f"unknown frobenius {frobenius!r}; known: "
                             f"{', '.join(FROBENIUS_METHODS)}")
        if trace == "closed_form" and not hasattr(field, "with_divergence"):
            raise ValueError("trace='closed_form' needs a field with with_divergence(t, z)")
        if noise not in NOISE_KINDS:
            raise ValueError(f"unknown noise {noise!r}; known: {', '.join(NOISE_KINDS)}")
        self.field, self.terms, self.trace = field, terms, trace
        self.frobenius, self.noise_kind = frobenius, noise
        self.names = tuple(_term_name(t) for t in terms)
        self.noise: torch.Tensor | None = None

    @property
    def needs_noise(self) -> bool:
        return self.trace == "hutchinson" or (
            "jacobian" in self.terms and self.frobenius == "hutchinson")

    def rates(self, t, z, create_graph):
        if self.trace == "closed_form":
            f, tr = self.field.with_divergence(t, z)
        else:
            f, tr = self.field(t, z), None
        vjp = rows = None
        if self.needs_noise:
            vjp = jacobian_vjp(f, z, self.probe(z, "odeint_with_penalties"), create_graph)
        if self.frobenius == "exact" and "jacobian" in self.terms:
            rows = jacobian_rows(f, z, create_graph)     # the exact trace reuses them
        if self.trace == "hutchinson":
            tr = (vjp * self.noise).reshape(z.shape[0], -1).sum(-1)
        elif self.trace == "exact":
            tr = (torch.diagonal(rows, dim1=-2, dim2=-1).sum(-1) if rows is not None
                  else exact_trace(f, z, create_graph))
        rates = []
        for term in self.terms:
            if term == "kinetic":
                rates.append(kinetic_energy(f))
            elif term == "jacobian":
                rates.append(rows.square().sum((-2, -1)) if self.frobenius == "exact"
                             else vjp.reshape(z.shape[0], -1).square().sum(-1))
            else:
                rates.append(term(t, z, f))
        out = (f,) if self.trace is None else (f, -tr)
        return out + (torch.stack(rates, dim=-1),)


# --------------------------------------------------------------------------- solves
def odeint_with_penalties(dynamics: RegularisedDynamics, y0, t, *, adjoint: bool = False,
                          control_penalties: bool = False,
                          generator: torch.Generator | None = None, rtol: float = 1e-5,
                          atol: float = 1e-5, method: str = "dopri5",
                          options: dict | None = None, adjoint_options: dict | None = None,
                          stats: SolverStats | None = None):
    """Solve ``dynamics`` from ``y0`` (``z0``, or ``(z0, logp0)`` for a CNF) through the times
    ``t`` and return ``(solution, penalties)``.

    ``solution`` is what ``odeint`` returns without the penalties (a tensor, or the tuple
    ``(zs, logps)``), with a leading time axis. ``penalties[i]`` (shape ``(batch, n_terms)``) is
    ``∫ r_k dt`` from ``t[0]`` to ``t[i]``, positive whichever way ``t`` runs. A fresh probe is
    drawn from ``generator`` when the dynamics need one. With ``control_penalties=False`` the
    error norm sees only the solution's components (see the module docstring).
    """
    parts = tuple(y0) if isinstance(y0, (tuple, list)) else (y0,)
    expected = 1 if dynamics.trace is None else 2
    if len(parts) != expected:
        raise ValueError(f"y0 must be {'z0' if expected == 1 else '(z0, logp0)'} for "
                         f"trace={dynamics.trace!r}, got {len(parts)} tensors")
    z0 = parts[0]
    # times given as Python floats go straight to z0's dtype (a float32 detour would move an end
    # time such as 0.8 by ~1e-8, visible in float64)
    t = (t.to(device=z0.device, dtype=z0.dtype) if isinstance(t, torch.Tensor)
         else torch.as_tensor(t, device=z0.device, dtype=z0.dtype))
    options = dict(options or {})
    if not control_penalties and "norm" in options:
        raise ValueError("options['norm'] and control_penalties=False both set the error "
                         "norm; pass control_penalties=True to use your own norm")
    if dynamics.needs_noise:
        dynamics.draw_noise(z0, generator)
    r0 = z0.new_zeros(z0.shape[0], len(dynamics.terms))
    if not control_penalties:
        # the norm sees the tuple state (as torchdiffeq calls it): the largest RMS of its
        # solution parts, as the default norm takes over every part
        n_parts = len(parts)
        options["norm"] = lambda x: torch.stack([rms_norm(p) for p in x[:n_parts]]).max()
    # the backward solve gets its own (default) options, not a copy of the forward ones
    out = solve_with_gradient(
        dynamics, parts + (r0,), t, gradient=gradient_mode(adjoint), rtol=rtol, atol=atol,
        method=method, options=options, stats=stats,
        adjoint_options={} if adjoint_options is None else adjoint_options)
    sign = 1.0 if float(t[-1]) > float(t[0]) else -1.0
    solution = out[0] if expected == 1 else out[:2]
    return solution, sign * out[-1]


def _check_t1(t1) -> float:
    t1 = float(t1)
    if not (math.isfinite(t1) and t1 > 0):
        raise ValueError(f"the end time must be finite and positive, got {t1}")
    return t1


class RegularisedBlock(ReportsNFE, nn.Module):
    """An :class:`~nodelib.models.blocks.ODEBlock` whose forward pass also returns its penalties:
    ``x ↦ (z(t1), R)`` with ``R`` of shape ``(batch, n_terms)``.

    Shares the block's field, end time and solver settings, and fills the block's ``stats`` (so
    ``block.nfe_forward`` and ``nfe_forward`` here count the regularised solve). A block with an
    ``augment_dim`` (:class:`~nodelib.models.blocks.AugmentedODEBlock`) has its input padded first.
    """

    def __init__(self, block: ODEBlock, terms=BUILT_IN_TERMS, *, frobenius: str = "hutchinson",
                 noise: str = "rademacher", control_penalties: bool = False):
        super().__init__()
        self.block: ODEBlock = block
        self.dynamics = RegularisedDynamics(block.field, terms, frobenius=frobenius, noise=noise)
        self.control_penalties = control_penalties

    @property
    def names(self) -> tuple[str, ...]:
        return self.dynamics.names

    def trajectory(self, x: torch.Tensor, t, generator: torch.Generator | None = None):
        """``(states, penalties)`` at every time in ``t``."""
        x = augment(x, getattr(self.block, "augment_dim", 0))
        b = self.block
        b.stats = SolverStats()
        return odeint_with_penalties(
            self.dynamics, x, t, adjoint=b.adjoint, control_penalties=self.control_penalties,
            generator=generator, rtol=b.rtol, atol=b.atol, method=b.method, options=b.options,
            adjoint_options=b.adjoint_options, stats=b.stats)

    def forward(self, x: torch.Tensor, t1: float | None = None,
                generator: torch.Generator | None = None):
        t1 = self.block.t1 if t1 is None else _check_t1(t1)
        zs, penalties = self.trajectory(x, [0.0, t1], generator)
        return zs[-1], penalties[-1]

    @property
    def stats(self) -> SolverStats:  # type: ignore[override]  # (the wrapped block's)
        return self.block.stats


class RegularisedCNF(ReportsNFE, nn.Module):
    """A :class:`~nodelib.models.flows.CNF` whose solves also return their penalties.

    Shares the CNF's field, trace method, probe kind, end time and solver settings, and fills the
    CNF's ``stats``. With ``trace="hutchinson"`` the Frobenius estimate reuses the trace's probe.
    """

    def __init__(self, cnf: CNF, terms=BUILT_IN_TERMS, *, frobenius: str = "hutchinson",
                 control_penalties: bool = False):
        super().__init__()
        self.cnf: CNF = cnf
        d = cnf.dynamics
        self.dynamics = RegularisedDynamics(d.field, terms, trace=d.trace, frobenius=frobenius,
                                            noise=d.noise_kind)
        self.control_penalties = control_penalties

    @property
    def names(self) -> tuple[str, ...]:
        return self.dynamics.names

    def integrate(self, z: torch.Tensor, logp: torch.Tensor, t,
                  generator: torch.Generator | None = None):
        """``((zs, logps), penalties)`` at every time in ``t``."""
        c = self.cnf
        c.stats = SolverStats()
        return odeint_with_penalties(
            self.dynamics, (z, logp), t, adjoint=c.adjoint,
            control_penalties=self.control_penalties, generator=generator, rtol=c.rtol,
            atol=c.atol, method=c.method, options=c.options, adjoint_options=c.adjoint_options,
            stats=c.stats)

    def log_prob(self, x: torch.Tensor, t1: float | None = None,
                 generator: torch.Generator | None = None):
        """``(log p_{t1}(x), R)``: the backward solve of :meth:`CNF.log_prob`, with penalties."""
        t1 = self.cnf.t1 if t1 is None else _check_t1(t1)
        (zs, deltas), penalties = self.integrate(x, x.new_zeros(x.shape[:-1]), [t1, 0.0],
                                                 generator)
        return self.cnf.base_log_prob(zs[-1]) - deltas[-1], penalties[-1]

    def forward(self, z0: torch.Tensor, logp0: torch.Tensor | None = None,
                t1: float | None = None, generator: torch.Generator | None = None):
        """``(z(t1), log p(z(t1)), R)`` for base points ``z0``."""
        t1 = self.cnf.t1 if t1 is None else _check_t1(t1)
        if logp0 is None:
            logp0 = self.cnf.base_log_prob(z0)
        (zs, logps), penalties = self.integrate(z0, logp0, [0.0, t1], generator)
        return zs[-1], logps[-1], penalties[-1]

    @property
    def stats(self) -> SolverStats:  # type: ignore[override]  # (the wrapped CNF's)
        return self.cnf.stats
