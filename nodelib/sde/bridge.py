"""The Gaussian facts a Brownian interval is built from: how to split an interval's increment.

Given Brownian motion's increment ``W`` over ``[a, b]`` (length ``h``), its increment over the
left part ``[a, c]`` is Gaussian with mean ``(c - a)/h · W`` and variance ``(c - a)(b - c)/h``
(the Brownian bridge); the right part gets the rest, ``W - W_left``, so that increments add up
exactly. Higher-order SDE methods also need the *space-time Lévy area*

    H = (1/h) ∫_a^b (W(a, u) - (u - a)/h · W) du,    H ~ N(0, h/12), independent of W,

and then the split draws ``(W_left, H_left)`` given ``(W, H)``: a 2-D Gaussian conditional, whose
coefficients are below (they match torchsde's, Foster 2020, §2.2). ``U = ∫_a^b W(a, u) du =
h (W/2 + H)`` is the form the solvers use. :func:`levy_area` gives Davie's (or Foster's)
approximation of the full Lévy area from ``(W, H)`` for methods that need it.
"""
from __future__ import annotations

import math

import torch

_RSQRT3 = 1 / math.sqrt(3)


def split_increment(W: torch.Tensor, a: float, c: float, b: float,
                    noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(W over [a, c], W over [c, b])`` given ``W`` over ``[a, b]``; ``noise`` ~ N(0, I)."""
    h, left, right = b - a, c - a, b - c
    W_left = W * (left / h) + noise * math.sqrt(left * right / h)
    return W_left, W - W_left


def split_increment_and_area(W: torch.Tensor, H: torch.Tensor, a: float, c: float, b: float,
                             X1: torch.Tensor, X2: torch.Tensor):
    """``((W, H) over [a, c], (W, H) over [c, b])`` given ``(W, H)`` over ``[a, b]``.

    ``X1, X2`` ~ N(0, I) independent. The left increment's mean now also depends on ``H``
    (a positive area means the path ran high early), and each part's area is the parent's,
    rescaled, plus fresh noise.
    """
    h, left, right = b - a, c - a, b - c
    v = 0.5 * math.sqrt(left * right / (left ** 3 + right ** 3))
    a_left, a_right, a_mid = v * left ** 2 / h, v * right ** 2 / h, v * _RSQRT3
    shared = 2 * (a_left * left + a_right * right) / h
    p, q = left / h, right / h
    W_left = p * W + 6 * p * q * H + shared * X1
    H_left = p ** 2 * H - a_left * X1 + a_mid * right * X2
    W_right = W - W_left   # exactly: increments add up
    H_right = q ** 2 * H - a_right * X1 - a_mid * left * X2
    return (W_left, H_left), (W_right, H_right)


def join(first: tuple, second: tuple, h1: float, h2: float) -> tuple:
    """``(W, H)`` over ``[s, u]`` from ``(W, H)`` over ``[s, t]`` (length h1) and ``[t, u]``
    (length h2); ``H`` may be ``None`` (increments only)."""
    (W1, H1), (W2, H2) = first, second
    W = W1 + W2
    if H1 is None:
        return W, None
    # h·H is ∫ W(s, r) dr minus its linear part; integrate each half and re-centre
    H = (h2 * (H2 + 0.5 * W1) + h1 * (H1 - 0.5 * W2)) / (h1 + h2)
    return W, H


def levy_area(W: torch.Tensor, H: torch.Tensor, h: float, kind: str,
              noise: torch.Tensor) -> torch.Tensor:
    """Davie's (``kind="davie"``) or Foster's (``"foster"``) approximation of the Lévy area
    ``A_ij = ½ ∫ (W_i dW_j - W_j dW_i)`` from the increment ``W`` and space-time area ``H``
    (shapes ``(..., m)``); ``noise`` ~ N(0, I) of shape ``(..., m, m)``. Returns ``(..., m, m)``,
    antisymmetric."""
    if W.dim() <= 1:   # a scalar (or a batch of scalar) motions has no area
        return torch.zeros_like(W)
    A = H.unsqueeze(-1) * W.unsqueeze(-2) - W.unsqueeze(-1) * H.unsqueeze(-2)
    noise = noise - noise.transpose(-1, -2)   # antisymmetric, variance 2 off the diagonal
    if kind == "foster":
        tenth = 0.1 * h
        Hsq = H ** 2
        std = (tenth * (tenth + Hsq.unsqueeze(-1) + Hsq.unsqueeze(-2))).sqrt()
    else:
        std = math.sqrt(h * h / 12)   # type: ignore[assignment]
    return A + std * noise
