"""What the steppers call: the user's SDE object behind one small interface, checked once.

torchsde's convention: an SDE is any object with ``f(t, y)`` (the drift, shape ``(batch, d)``)
and ``g(t, y)`` (the diffusion), plus the attributes ``noise_type`` and ``sde_type``
(``"ito"`` or ``"stratonovich"``). The shape of ``g`` says how the ``m`` Brownian channels
drive the state, ``dy = f dt + g dW``:

=========== =================== =====================================================
noise_type  shape of ``g``       meaning
=========== =================== =====================================================
diagonal    ``(batch, d)``       channel i drives y_i alone; ``g_i`` depends on ``y_i`` only
additive    ``(batch, d, m)``    ``g`` does not depend on ``y``
scalar      ``(batch, d, 1)``    one channel drives every component
general     ``(batch, d, m)``    anything
=========== =================== =====================================================

:class:`SDEFunctions` exposes ``f``, ``g``, ``g_prod(t, y, v)`` (the diffusion applied to a
Brownian increment: ``g * v`` for diagonal noise, a batched matrix–vector product otherwise),
their fused forms and, for Milstein, the product ``(∂g/∂y · g)`` that the Itô–Stratonovich
correction is made of. Optional methods of the user's object are used when present:
``f_and_g(t, y)`` (one call for both) and ``h(t, y)`` (the prior drift of ``logqp``).
"""
from __future__ import annotations

import torch

from ..errors import NonFiniteError

NOISE_TYPES = ("diagonal", "additive", "scalar", "general")
SDE_TYPES = ("ito", "stratonovich")
_RENAMES = {"drift": "f", "diffusion": "g", "prior_drift": "h", "drift_and_diffusion": "f_and_g"}


class SDEFunctions:
    """The drift and diffusion of ``sde`` (renamed by ``names``, torchsde's keys ``"drift"``,
    ``"diffusion"``, ``"prior_drift"``, ``"drift_and_diffusion"``), as the steppers use them."""

    def __init__(self, sde, names: dict | None = None):
        for attribute, choices in (("noise_type", NOISE_TYPES), ("sde_type", SDE_TYPES)):
            value = getattr(sde, attribute, None)
            if value not in choices:
                raise ValueError(f"sde.{attribute} must be one of {', '.join(choices)}; got "
                                 f"{value!r}")
        self.sde = sde
        self.noise_type: str = sde.noise_type
        self.sde_type: str = sde.sde_type
        names = dict(names or {})
        unknown = set(names) - set(_RENAMES)
        if unknown:
            raise ValueError(f"unknown keys in names: {sorted(unknown)}; known: "
                             f"{', '.join(_RENAMES)}")
        lookup = {ours: names.get(theirs, ours) for theirs, ours in _RENAMES.items()}
        self._f = getattr(sde, lookup["f"], None)
        self._g = getattr(sde, lookup["g"], None)
        self.h = getattr(sde, lookup["h"], None)
        self._f_and_g = getattr(sde, lookup["f_and_g"], None)
        if self._f_and_g is None and (self._f is None or self._g is None):
            raise ValueError(f"the sde needs a drift {lookup['f']!r} and a diffusion "
                             f"{lookup['g']!r} method (or {lookup['f_and_g']!r})")
        self.diagonal = self.noise_type == "diagonal"

    def f(self, t, y):
        return self._f(t, y) if self._f is not None else self._f_and_g(t, y)[0]

    def g(self, t, y):
        return self._g(t, y) if self._g is not None else self._f_and_g(t, y)[1]

    def f_and_g(self, t, y):
        if self._f_and_g is not None:
            return self._f_and_g(t, y)
        return self._f(t, y), self._g(t, y)

    def prod(self, g: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """The diffusion ``g`` applied to ``v`` (a Brownian increment, shape ``(batch, m)``)."""
        return g * v if self.diagonal else torch.bmm(g, v.unsqueeze(-1)).squeeze(-1)

    def g_prod(self, t, y, v):
        return self.prod(self.g(t, y), v)

    def f_and_g_prod(self, t, y, v):
        f, g = self.f_and_g(t, y)
        return f, self.prod(g, v)

    def increment(self, t, y, h: float, v):
        """``f h + g v``: one Euler–Maruyama step's change (the adjoint SDE computes it with
        one vector–Jacobian product instead of two)."""
        f, gv = self.f_and_g_prod(t, y, v)
        return f * h + gv

    def dg_g(self, t, y, create_graph: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """``(g, Σ_k ∂g/∂y_k g_k)`` for diagonal or scalar noise (shapes ``(batch, d)``): the
        term of Milstein's method and of the Itô–Stratonovich drift correction ``-½ dg_g``.
        For diagonal noise it is one vector–Jacobian product (the Jacobian is diagonal); for
        scalar noise one Jacobian–vector product, by the double-vjp trick."""
        with torch.enable_grad():
            y = y if y.requires_grad else y.detach().requires_grad_(True)
            g = self.g(t, y)
            if self.noise_type == "additive" or not g.requires_grad:
                return g, torch.zeros_like(y)
            if self.diagonal:
                dg_g, = torch.autograd.grad(g, y, g, create_graph=create_graph,
                                            allow_unused=True)
                return g, _zero_if_none(dg_g, y)
            if self.noise_type != "scalar":
                raise ValueError(f"this needs diagonal, additive or scalar noise, not "
                                 f"{self.noise_type!r}")
            column = g[..., 0]
            u = torch.zeros_like(column, requires_grad=True)   # d(u·column)/dy = column'ᵀu
            vjp, = torch.autograd.grad(column, y, u, create_graph=True, allow_unused=True)
            if vjp is None:
                return g, torch.zeros_like(y)
            dg_g, = torch.autograd.grad(vjp, u, column, create_graph=create_graph)
            return g, dg_g


def _zero_if_none(x, like):
    return torch.zeros_like(like) if x is None else x


def check_shapes(sde: SDEFunctions, t0: torch.Tensor, y0: torch.Tensor) -> int:
    """Evaluate ``f`` and ``g`` once at ``(t0, y0)``; raise a clear error for a wrong shape or a
    NaN; return ``m``, the number of Brownian channels."""
    with torch.no_grad():
        f, g = sde.f_and_g(t0, y0)
    batch, d = y0.shape
    if tuple(f.shape) != (batch, d):
        raise ValueError(f"the drift f(t, y) must have the shape of y, {(batch, d)}; got "
                         f"{tuple(f.shape)}")
    if sde.diagonal:
        if tuple(g.shape) != (batch, d):
            raise ValueError(f"noise_type='diagonal' needs g(t, y) of shape (batch, d) = "
                             f"{(batch, d)}; got {tuple(g.shape)}")
        m = d
    else:
        if g.dim() != 3 or tuple(g.shape[:2]) != (batch, d):
            raise ValueError(f"noise_type={sde.noise_type!r} needs g(t, y) of shape "
                             f"(batch, d, m) = ({batch}, {d}, m); got {tuple(g.shape)}")
        m = g.shape[2]
        if sde.noise_type == "scalar" and m != 1:
            raise ValueError(f"noise_type='scalar' needs g(t, y) of shape (batch, d, 1); got "
                             f"{tuple(g.shape)}")
    for name, value in (("f", f), ("g", g)):
        if not bool(torch.isfinite(value).all()):
            raise NonFiniteError(f"{name}(t, y) returned NaN/inf at t={float(t0):.6g} (the "
                             f"initial state)")
    return m
