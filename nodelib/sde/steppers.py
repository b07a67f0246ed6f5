"""One step of each SDE method: ``step(sde, t0, t1, h, y, dW, state) -> (y1, state)``.

``sde`` is an :class:`~nodelib.sde.functions.SDEFunctions` (or the adjoint SDE, which has the
same methods), ``t0, t1`` are 0-d time tensors, ``h = t1 - t0`` as a float, ``dW`` the Brownian
increment over the step (for the SRK methods a pair ``(dW, U)``, see :mod:`nodelib.sde.srk`;
for the log-ODE method ``(dW, A)``), ``state`` whatever the method carries from step to step
(``()`` for all but reversible Heun). Every method here is explicit: one or two evaluations of
``f`` and ``g`` per step.
"""
from __future__ import annotations

import math

import torch


def euler(sde, t0, t1, h, y, dW, state):
    """Euler–Maruyama (Itô): ``y + f(t0, y) h + g(t0, y) dW``. Strong order 0.5 (1.0 for
    additive noise), weak order 1.0."""
    return y + sde.increment(t0, y, h, dW), state


def milstein(sde, t0, t1, h, y, dW, state, grad_free: bool = False):
    """Milstein's method for diagonal, scalar or additive noise; strong order 1.0.

    Euler–Maruyama plus the term that makes it order 1.0: ``½ (∂g/∂y · g) v`` with
    ``v = dW² - h`` for an Itô SDE (the Itô integral ∫∫dW dW = (dW² - h)/2) and ``v = dW²``
    for a Stratonovich one (∫∫∘dW∘dW = dW²/2). ``∂g/∂y · g`` comes from autograd
    (:meth:`~nodelib.sde.functions.SDEFunctions.dg_g`), or, with ``grad_free=True``, from a
    difference quotient of ``g`` along ``g √h``, at the cost of one more evaluation of ``g``.
    """
    v = dW * dW - h if sde.sde_type == "ito" else dW * dW
    if sde.noise_type == "additive":   # ∂g/∂y = 0: Milstein is Euler–Maruyama
        f, g_dW = sde.f_and_g_prod(t0, y, dW)
        return y + f * h + g_dW, state
    if grad_free:
        f, g = sde.f_and_g(t0, y)
        column = g if sde.diagonal else g[..., 0]
        root_h = math.sqrt(h)
        support = y + column * root_h + (f * h if sde.sde_type == "ito" else 0.0)
        correction = sde.prod(sde.g(t0, support) - g, v) / (2 * root_h)
        return y + f * h + sde.prod(g, dW) + correction, state
    f = sde.f(t0, y)
    g, dg_g = sde.dg_g(t0, y, create_graph=torch.is_grad_enabled())
    return y + f * h + sde.prod(g, dW) + 0.5 * dg_g * v, state


def midpoint(sde, t0, t1, h, y, dW, state):
    """The midpoint method (Stratonovich): slopes at the half-step point. Strong order 1.0
    for commutative noise (0.5 for general noise)."""
    f, g_dW = sde.f_and_g_prod(t0, y, dW)
    half = y + 0.5 * (f * h + g_dW)
    f, g_dW = sde.f_and_g_prod(t0 + 0.5 * (t1 - t0), half, dW)
    return y + f * h + g_dW, state


def heun(sde, t0, t1, h, y, dW, state):
    """Heun's method (Stratonovich): the average of the slopes at both ends of an Euler
    step. Strong order 1.0 for commutative noise (0.5 for general noise)."""
    f0, g_dW0 = sde.f_and_g_prod(t0, y, dW)
    end = y + f0 * h + g_dW0
    f1, g_dW1 = sde.f_and_g_prod(t1, end, dW)
    return y + 0.5 * ((f0 + f1) * h + g_dW0 + g_dW1), state


def log_ode_midpoint(sde, t0, t1, h, y, noise, state):
    """The log-ODE midpoint method (Stratonovich): the midpoint method plus the Lévy-area
    term ``Σ_l ∂g_l/∂y · (g A)_l`` at the midpoint, the term that distinguishes non-commuting
    noise (with Davie's or Foster's approximate area its strong order for general noise is
    still 0.5, as torchsde lists it). ``noise`` is ``(dW, A)`` from ``bm(t0, t1,
    return_A=True)``. For commutative noise (diagonal, scalar, additive) the term vanishes and
    this is the midpoint method. On the same path it matches torchsde's ``log_ode`` to
    rounding (tests/sde/test_torchsde_parity.py, general noise)."""
    dW, A = noise
    f, g_dW = sde.f_and_g_prod(t0, y, dW)
    half = y + 0.5 * (f * h + g_dW)
    t_half = t0 + 0.5 * (t1 - t0)
    f, g_dW = sde.f_and_g_prod(t_half, half, dW)
    y1 = y + f * h + g_dW
    if sde.noise_type == "general":
        y1 = y1 + sde.dg_ga(t_half, half, A, create_graph=torch.is_grad_enabled())
    return y1, state


def euler_heun(sde, t0, t1, h, y, dW, state):
    """Euler–Heun (Stratonovich): Euler's drift, Heun's average for the diffusion only."""
    f, g_dW0 = sde.f_and_g_prod(t0, y, dW)
    g_dW1 = sde.g_prod(t1, y + g_dW0, dW)
    return y + f * h + 0.5 * (g_dW0 + g_dW1), state


def reversible_heun_init(sde, t0, y0):
    """Reversible Heun's state: ``f, g`` evaluated at a second solution ``z`` (torchsde's
    order, ``(f, g, z)``), which starts at ``y0``."""
    f, g = sde.f_and_g(t0, y0)
    return (f, g, y0)


def reversible_heun(sde, t0, t1, h, y, dW, state):
    """Reversible Heun (Stratonovich; Kidger et al. 2021, "Efficient and accurate gradients
    for neural SDEs"): one evaluation per step, strong order 0.5 (1.0 for additive noise).

    It carries ``z`` next to ``y``: ``z1 = 2y - z + f(z) h + g(z) dW`` (a leapfrog), then
    ``y1 = y + ½(f(z) + f(z1)) h + ½(g(z) + g(z1)) dW``. Each line can be solved for its
    input, so the step runs backwards exactly (:func:`reversible_heun_reverse`): the adjoint
    rebuilds the forward states instead of storing them.
    """
    f, g, z = state
    z1 = 2 * y - z + f * h + sde.prod(g, dW)
    f1, g1 = sde.f_and_g(t1, z1)
    y1 = y + (f + f1) * (0.5 * h) + sde.prod(g + g1, 0.5 * dW)
    return y1, (f1, g1, z1)


def reversible_heun_reverse(sde, t0, h, y1, dW, state1):
    """Undo one reversible Heun step from ``t0 + h`` back to ``t0``: returns ``(y, state)``.

    From ``z1 = 2y - z + f(z) h + g(z) dW`` and the ``y1`` line,
    ``z = 2 y1 - z1 - f(z1) h - g(z1) dW``; then ``f(z), g(z)`` and ``y`` follow.
    """
    f1, g1, z1 = state1
    z = 2 * y1 - z1 - f1 * h - sde.prod(g1, dW)
    f, g = sde.f_and_g(t0, z)
    y = y1 - (f + f1) * (0.5 * h) - sde.prod(g + g1, 0.5 * dW)
    return y, (f, g, z)
