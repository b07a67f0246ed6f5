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
``f_and_g(t, y)`` (one call for both), ``g_prod(t, y, v)`` and ``f_and_g_prod(t, y, v)``
(products computed without forming ``g``: enough for Euler, midpoint, Heun and Euler–Heun) and
``h(t, y)`` (the prior drift of ``logqp``).
"""
from __future__ import annotations

import torch

from ..errors import NonFiniteError

NOISE_TYPES = ("diagonal", "additive", "scalar", "general")
SDE_TYPES = ("ito", "stratonovich")
_RENAMES = {"drift": "f", "diffusion": "g", "prior_drift": "h", "drift_and_diffusion": "f_and_g",
            "diffusion_prod": "g_prod", "drift_and_diffusion_prod": "f_and_g_prod"}


class SDEFunctions:
    """The drift and diffusion of ``sde`` (renamed by ``names``, torchsde's keys ``"drift"``,
    ``"diffusion"``, ``"prior_drift"``, ``"drift_and_diffusion"``, ``"diffusion_prod"``,
    ``"drift_and_diffusion_prod"``), as the steppers use them."""

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
        found = {ours: getattr(sde, name, None) for ours, name in lookup.items()}
        self._f, self._g, self.h = found["f"], found["g"], found["h"]
        self._f_and_g, self._g_prod = found["f_and_g"], found["g_prod"]
        self._f_and_g_prod = found["f_and_g_prod"]
        self.has_g = self._g is not None or self._f_and_g is not None
        has_f = any(found[k] is not None for k in ("f", "f_and_g", "f_and_g_prod"))
        has_g_prod = self.has_g or self._g_prod is not None or self._f_and_g_prod is not None
        if not (has_f and has_g_prod):
            raise ValueError(f"the sde needs a drift {lookup['f']!r} and a diffusion "
                             f"{lookup['g']!r} method (or {lookup['f_and_g']!r}; or, for the "
                             f"methods that only apply g to increments, "
                             f"{lookup['g_prod']!r} / {lookup['f_and_g_prod']!r})")
        self.diagonal = self.noise_type == "diagonal"
        self.m: int | None = None   # the number of Brownian channels, once known

    def f(self, t, y):
        if self._f is not None:
            return self._f(t, y)
        if self._f_and_g is not None:
            return self._f_and_g(t, y)[0]
        return self._f_and_g_prod(t, y, y.new_zeros(y.shape[0], self.m))[0]

    def g(self, t, y):
        if self._g is not None:
            return self._g(t, y)
        if self._f_and_g is not None:
            return self._f_and_g(t, y)[1]
        raise ValueError("this method needs the diffusion matrix g(t, y); the sde defines only "
                         "its products with increments (g_prod): use euler, midpoint, heun or "
                         "euler_heun")

    def f_and_g(self, t, y):
        if self._f_and_g is not None:
            return self._f_and_g(t, y)
        return self.f(t, y), self.g(t, y)

    def prod(self, g: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """The diffusion ``g`` applied to ``v`` (a Brownian increment, shape ``(batch, m)``)."""
        return g * v if self.diagonal else torch.bmm(g, v.unsqueeze(-1)).squeeze(-1)

    def g_prod(self, t, y, v):
        if self._g_prod is not None:
            return self._g_prod(t, y, v)
        if self._f_and_g_prod is not None and not self.has_g:
            return self._f_and_g_prod(t, y, v)[1]
        return self.prod(self.g(t, y), v)

    def f_and_g_prod(self, t, y, v):
        if self._f_and_g_prod is not None:
            return self._f_and_g_prod(t, y, v)
        if self._g_prod is not None:
            return self.f(t, y), self._g_prod(t, y, v)
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


    def dg_ga(self, t, y, A, create_graph: bool) -> torch.Tensor:
        """``Σ_l ∂g_l/∂y · (g A)_l`` (``g_l`` the l-th column of ``g``, ``A`` a Lévy area of
        shape ``(batch, m, m)``): the log-ODE method's term, one Jacobian–vector product per
        column, by the double-vjp trick."""
        with torch.enable_grad():
            y = y if y.requires_grad else y.detach().requires_grad_(True)
            g = self.g(t, y)
            directions = torch.bmm(g, A)
            total = torch.zeros_like(y)
            for column, direction in zip(g.unbind(-1), directions.unbind(-1)):
                if not column.requires_grad:
                    continue
                u = torch.zeros_like(column, requires_grad=True)
                vjp, = torch.autograd.grad(column, y, u, create_graph=True, allow_unused=True)
                if vjp is not None:
                    jvp, = torch.autograd.grad(vjp, u, direction, create_graph=create_graph)
                    total = total + jvp
            return total


def _zero_if_none(x, like):
    return torch.zeros_like(like) if x is None else x


def check_shapes(sde: SDEFunctions, t0: torch.Tensor, y0: torch.Tensor,
                 m: int | None = None) -> int:
    """Evaluate ``f`` and ``g`` (or ``g_prod``) once at ``(t0, y0)``; raise a clear error for a
    wrong shape or a NaN; return ``m``, the number of Brownian channels (``m`` from the
    Brownian motion, when given, is needed for an SDE without ``g``)."""
    batch, d = y0.shape
    with torch.no_grad():
        if sde.has_g:
            f, g = sde.f_and_g(t0, y0)
            m = _diffusion_channels(sde, g, batch, d)
        elif m is None:
            raise ValueError("the number of Brownian channels cannot be inferred from an sde "
                             "without g: pass bm")
        else:
            sde.m = m
            f, g = sde.f_and_g_prod(t0, y0, y0.new_zeros(batch, m))
            if tuple(g.shape) != (batch, d):
                raise ValueError(f"g_prod(t, y, v) must have the shape of y, {(batch, d)}; got "
                                 f"{tuple(g.shape)}")
    if tuple(f.shape) != (batch, d):
        raise ValueError(f"the drift f(t, y) must have the shape of y, {(batch, d)}; got "
                         f"{tuple(f.shape)}")
    for name, value in (("f", f), ("g", g)):
        if not bool(torch.isfinite(value).all()):
            raise NonFiniteError(f"{name}(t, y) returned NaN/inf at t={float(t0):.6g} (the "
                                 f"initial state)")
    sde.m = m
    return m


def _diffusion_channels(sde: SDEFunctions, g: torch.Tensor, batch: int, d: int) -> int:
    if sde.diagonal:
        if tuple(g.shape) != (batch, d):
            raise ValueError(f"noise_type='diagonal' needs g(t, y) of shape (batch, d) = "
                             f"{(batch, d)}; got {tuple(g.shape)}")
        return d
    if g.dim() != 3 or tuple(g.shape[:2]) != (batch, d):
        raise ValueError(f"noise_type={sde.noise_type!r} needs g(t, y) of shape "
                         f"(batch, d, m) = ({batch}, {d}, m); got {tuple(g.shape)}")
    if sde.noise_type == "scalar" and g.shape[2] != 1:
        raise ValueError(f"noise_type='scalar' needs g(t, y) of shape (batch, d, 1); got "
                         f"{tuple(g.shape)}")
    return g.shape[2]
