"""Two-dimensional toy targets for flows: the four energies of Rezende & Mohamed (2015, Table 1).
(The point-cloud data sets are in :mod:`nodelib.data.samples`.)

The energies ``U1 … U4`` are unnormalised: the target density is ``p(z) ∝ exp(-U(z))``.
``U1`` (a ring with two lobes) is normalisable on ℝ²; ``U2``–``U4`` depend on ``z1`` only through
bounded functions, so ``exp(-U)`` does not decay along ``z1`` and has infinite mass. The paper
shows them on the square ``[-4, 4]²``; :func:`target_log_prob` makes that explicit by multiplying
them with a smoothed box in ``z1`` whose integral is known exactly, which turns every target into a
proper density with a known normaliser, so that a flow's reverse KL can be reported in nats.
"""
from __future__ import annotations

import math

import torch
from torch.nn import functional as F

ENERGY_NAMES = ("U1", "U2", "U3", "U4")
BOX_HALF_WIDTH = 4.0   # the square [-4, 4]² of the paper's figures
BOX_EDGE = 0.25        # width of the smoothed edges of the box in z1


def _w1(z):
    return torch.sin(2 * math.pi * z[..., 0] / 4)


def _w2(z):
    return 3 * torch.exp(-0.5 * ((z[..., 0] - 1) / 0.6) ** 2)


def _w3(z):
    return 3 * torch.sigmoid((z[..., 0] - 1) / 0.3)


def _neg_logsumexp(*terms):
    return -torch.logsumexp(torch.stack(terms), dim=0)


def energy_u1(z: torch.Tensor) -> torch.Tensor:
    """A ring of radius 2 with two lobes on the z1 axis."""
    ring = 0.5 * ((torch.linalg.vector_norm(z, dim=-1) - 2) / 0.4) ** 2
    return ring + _neg_logsumexp(-0.5 * ((z[..., 0] - 2) / 0.6) ** 2,
                                 -0.5 * ((z[..., 0] + 2) / 0.6) ** 2)


def energy_u2(z: torch.Tensor) -> torch.Tensor:
    """A sine wave."""
    return 0.5 * ((z[..., 1] - _w1(z)) / 0.4) ** 2


def energy_u3(z: torch.Tensor) -> torch.Tensor:
    """A sine wave that splits in two around z1 = 1."""
    return _neg_logsumexp(-0.5 * ((z[..., 1] - _w1(z)) / 0.35) ** 2,
                          -0.5 * ((z[..., 1] - _w1(z) + _w2(z)) / 0.35) ** 2)


def energy_u4(z: torch.Tensor) -> torch.Tensor:
    """A sine wave with a second, shifted branch for z1 > 1."""
    return _neg_logsumexp(-0.5 * ((z[..., 1] - _w1(z)) / 0.4) ** 2,
                          -0.5 * ((z[..., 1] - _w1(z) + _w3(z)) / 0.35) ** 2)


ENERGIES = {"U1": energy_u1, "U2": energy_u2, "U3": energy_u3, "U4": energy_u4}


def energy(name: str):
    """The energy function ``U`` called ``name`` (``"U1"`` … ``"U4"``)."""
    if name not in ENERGIES:
        raise ValueError(f"unknown energy {name!r}; known: {', '.join(ENERGY_NAMES)}")
    return ENERGIES[name]


def log_soft_box(x: torch.Tensor, half_width: float = BOX_HALF_WIDTH,
                 edge: float = BOX_EDGE) -> torch.Tensor:
    """``log[(σ((x + a)/τ) - σ((x - a)/τ)) / 2a]``: a box on ``[-a, a]`` with logistic edges.

    A difference of two shifted sigmoids integrates to the shift, ``2a``, so this is a normalised
    log-density on ℝ. It is even in x; for ``x ≥ 0`` it equals ``σ(p) - σ(q)`` with
    ``p = (a - x)/τ > q = (-a - x)/τ``, computed in log space so that the far tails do not cancel.
    """
    x = x.abs()
    log_p, log_q = F.logsigmoid((half_width - x) / edge), F.logsigmoid((-half_width - x) / edge)
    return log_p + torch.log1p(-torch.exp(log_q - log_p)) - math.log(2 * half_width)


# ∫ exp(-U(z)) dz2 for fixed z1: each Gaussian bump exp(-(z2 - μ)²/2s²) contributes s√(2π).
_Z2_MASS = {"U2": 0.4, "U3": 0.35 + 0.35, "U4": 0.4 + 0.35}


def _log_normalizer_u1() -> float:
    """log ∫ exp(-U1) over ℝ² by the trapezoidal rule in polar coordinates (float64).

    exp(-U1) is smooth and periodic in the angle (the rule converges geometrically there) and
    below e^-50 for r > 6; 4001 radii on [0, 6] make the radial error ~1e-9 relative.
    """
    r = torch.linspace(0, 6, 4001, dtype=torch.float64)
    theta = torch.linspace(0, 2 * math.pi, 1025, dtype=torch.float64)[:-1]
    rr, tt = torch.meshgrid(r, theta, indexing="ij")
    z = torch.stack([rr * torch.cos(tt), rr * torch.sin(tt)], dim=-1)
    integrand = torch.exp(-energy_u1(z)) * rr
    radial = integrand.mean(dim=1) * 2 * math.pi          # periodic rule in θ
    return math.log(torch.trapezoid(radial, r).item())


_LOG_Z: dict[str, float] = {}


def log_normalizer(name: str) -> float:
    """``log Z`` of :func:`target_log_prob` before normalisation: for ``U1`` the integral of
    ``exp(-U1)`` (by quadrature), for ``U2``–``U4`` the exact ``log(mass in z2)`` (the box in z1
    is already normalised)."""
    energy(name)
    if name not in _LOG_Z:
        _LOG_Z[name] = (_log_normalizer_u1() if name == "U1"
                        else math.log(_Z2_MASS[name] * math.sqrt(2 * math.pi)))
    return _LOG_Z[name]


def target_log_prob(name: str, z: torch.Tensor) -> torch.Tensor:
    """The normalised log-density of target ``name`` at ``z`` (shape ``(..., 2)``).

    ``U1``: ``-U1(z) - log Z``. ``U2``–``U4``: ``-U(z)`` times the smoothed box in ``z1``
    (:func:`log_soft_box`), divided by the exact z2-mass, so it integrates to 1 over ℝ².
    """
    log_p = -energy(name)(z) - log_normalizer(name)
    if name != "U1":
        log_p = log_p + log_soft_box(z[..., 0])
    return log_p
