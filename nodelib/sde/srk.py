"""Stochastic Runge–Kutta methods of Rößler (2010, "Runge–Kutta methods for the strong
approximation of solutions of stochastic differential equations"), as tableaux run by one
stepper per noise structure.

They need more of the Brownian path than its increment ``I = dW = W(t0, t1)``: also
``U = ∫_t0^t1 W(t0, u) du`` (so the Brownian interval must keep the space-time Lévy area,
``levy_area_approximation="space-time"``). From ``I`` and ``U`` come the iterated integrals
the order conditions are built from: ``I_k0 = U``, ``I_kk = (I² - h)/2``,
``I_kkk = (I³ - 3hI)/6``.

* **SRA1**, additive noise: two stages, strong order 1.5 (measured in tests/sde/test_orders);
* **SRID2**, diagonal (and scalar) noise: four stages, strong order 1.5 for diagonal noise.

Each stage evaluates ``f`` (and, for SRID2, ``g``) once; the stages' values are reused.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class SRKTableau:
    """Stage nodes ``c0`` (drift) / ``c1`` (diffusion), stage matrices ``a0, a1, b0, b1``
    (row i has i entries), drift weights ``alpha`` and the diffusion weights ``beta1..4`` of
    ``I, I_kk/√h, I_k0/h, I_kkk/h``."""
    name: str
    c0: tuple
    c1: tuple
    a0: tuple
    b0: tuple
    alpha: tuple
    beta1: tuple
    beta2: tuple
    a1: tuple = ()
    b1: tuple = ()
    beta3: tuple = ()
    beta4: tuple = ()


SRA1 = SRKTableau(
    "SRA1", c0=(0, 3 / 4), c1=(1, 0), a0=((), (3 / 4,)), b0=((), (3 / 2,)),
    alpha=(1 / 3, 2 / 3), beta1=(1, 0), beta2=(-1, 1))

SRID2 = SRKTableau(
    "SRID2", c0=(0, 1, 1 / 2, 0), c1=(0, 1 / 4, 1, 1 / 4),
    a0=((), (1,), (1 / 4, 1 / 4), (0, 0, 0)),
    a1=((), (1 / 4,), (1, 0), (0, 0, 1 / 4)),
    b0=((), (0,), (1, 1 / 2), (0, 0, 0)),
    b1=((), (-1 / 2,), (1, 0), (2, -1, 1 / 2)),
    alpha=(1 / 6, 1 / 6, 2 / 3, 0),
    beta1=(-1, 4 / 3, 2 / 3, 0), beta2=(1, -4 / 3, 1 / 3, 0),
    beta3=(2, -4 / 3, -2 / 3, 0), beta4=(-2, 5 / 3, -2 / 3, 1))


def srk_step(sde, t0, t1, h, y, noise, state):
    """One SRK step: SRA1 for additive noise, SRID2 for diagonal or scalar noise. ``noise``
    is ``(I, U)`` from ``bm(t0, t1, return_U=True)``."""
    dW, U = noise
    if sde.noise_type == "additive":
        return _additive(sde, t0, t1, h, y, dW, U, SRA1), state
    return _diagonal(sde, t0, t1, h, y, dW, U, SRID2), state


def _additive(sde, t0, t1, h, y, dW, U, tab: SRKTableau):
    # g does not depend on y: every diffusion term is g(t) applied to a weight
    dt = t1 - t0
    fs: list = []
    y1 = y
    for i in range(len(tab.c0)):
        stage = y
        for j, (a, b) in enumerate(zip(tab.a0[i], tab.b0[i])):
            stage = stage + a * h * fs[j] + sde.g_prod(t0 + tab.c1[j] * dt, y, b * U / h)
        fs.append(sde.f(t0 + tab.c0[i] * dt, stage))
        weight = tab.beta1[i] * dW + tab.beta2[i] * U / h
        y1 = y1 + tab.alpha[i] * h * fs[i] + sde.g_prod(t0 + tab.c1[i] * dt, y, weight)
    return y1


def _diagonal(sde, t0, t1, h, y, dW, U, tab: SRKTableau):
    dt, root_h = t1 - t0, math.sqrt(h)
    I_kk = (dW * dW - h) * 0.5
    I_kkk = (dW * dW * dW - 3 * h * dW) / 6
    fs: list = []
    gs: list = []
    y1 = y
    for i in range(len(tab.c0)):
        drift_stage, diffusion_stage = y, y
        for j in range(i):
            drift_stage = (drift_stage + tab.a0[i][j] * h * fs[j]
                           + tab.b0[i][j] / h * gs[j] * U)
            diffusion_stage = (diffusion_stage + tab.a1[i][j] * h * fs[j]
                               + tab.b1[i][j] * root_h * gs[j])
        fs.append(sde.f(t0 + tab.c0[i] * dt, drift_stage))
        g = sde.g(t0 + tab.c1[i] * dt, diffusion_stage)
        gs.append(g if sde.diagonal else g[..., 0])   # scalar noise: (batch, d, 1) -> (batch, d)
        weight = (tab.beta1[i] * dW + tab.beta2[i] / root_h * I_kk
                  + tab.beta3[i] / h * U + tab.beta4[i] / h * I_kkk)
        y1 = y1 + tab.alpha[i] * h * fs[i] + gs[i] * weight
    return y1
