"""The stochastic adjoint: the SDE that carries gradients backwards in time (Li et al. 2020,
"Scalable gradients for SDEs").

Run backwards from ``T``, the augmented state ``z = (y, a, a_θ)`` — the state, the gradient of
the loss with respect to it, and with respect to the parameters — solves, with the *same*
Brownian path,

    dy   =  f dt + g ∘ dW                      (the forward SDE, retraced)
    da   = -a·∂f/∂y dt - a·∂g/∂y ∘ dW          (a row vector times Jacobians)
    da_θ = -a·∂f/∂θ dt - a·∂g/∂θ ∘ dW

in Stratonovich form: a Stratonovich SDE reverses by flipping signs alone. The steppers run it
with negative steps and increments ``W(t_next) - W(t)``. An Itô SDE reversed in time is still
an Itô SDE for a left-point method such as Euler–Maruyama, but with the drift
``f - Σ_j ∂g_j/∂y · g_j`` (twice the Itô–Stratonovich correction: one to reach
Stratonovich form, one to come back in the reversed direction), and the adjoint of that drift
gains ``Σ_j (a·∂g_j/∂y)·∂g_j/∂(y, θ)``. The products ``a·∂(·)`` are vector–Jacobian
products; the diffusion is never formed as a matrix, only applied to an increment, so the
adjoint SDE has ``noise_type="general"`` and offers ``g_prod``, not ``g``.
"""
from __future__ import annotations

import torch


class AdjointSDE:
    """The reversed augmented SDE of ``sde`` (an :class:`~nodelib.sde.functions.SDEFunctions`)
    on the flat state ``z = cat(y, a, a_θ...)``; ``shape`` is the shape of ``y``."""

    noise_type = "general"
    diagonal = False

    def __init__(self, sde, params: tuple, shape: torch.Size):
        self.forward = sde
        self.sde_type = sde.sde_type
        self.params = params
        self.shape = shape
        self.sizes = [shape.numel(), shape.numel()] + [p.numel() for p in params]
        self.corrected = sde.sde_type == "ito" and sde.noise_type != "additive"

    def pack(self, y, a, a_params) -> torch.Tensor:
        return torch.cat([y.reshape(-1), a.reshape(-1)] + [p.reshape(-1) for p in a_params])

    def unpack(self, z: torch.Tensor):
        y, a, *a_params = z.split(self.sizes)
        return (y.view(self.shape), a.view(self.shape),
                [p.view_as(q) for p, q in zip(a_params, self.params)])

    # -- the pieces: drift (Itô-corrected if needed), diffusion applied to v, their vjps
    def _pieces(self, t, y, a, v):
        """``(drift, extra, g v)``: the reversed drift of ``y``, the additional term of its
        adjoint (``Σ_j (a·∂g_j/∂y)·∂g_j/∂(y, θ)`` for an Itô SDE, else ``None``) and the
        diffusion applied to ``v``, from one call of ``f`` and ``g``."""
        if not self.corrected:
            f, g_v = self.forward.f_and_g_prod(t, y, v)
            return f, None, g_v
        f, g = self.forward.f_and_g(t, y)
        if not g.requires_grad:   # a diffusion that depends on nothing learnable
            return f, None, self.forward.prod(g, v)
        columns = [g] if self.forward.diagonal else list(g.unbind(-1))
        dg_g = 0
        extra = None
        for column in columns:
            dg_g = dg_g + _jvp(column, y, column, self.forward.diagonal)
            a_dg, = torch.autograd.grad(column, y, a, create_graph=True, retain_graph=True,
                                        allow_unused=True)
            if a_dg is not None:
                part = _vjp(column, (y, *self.params), a_dg)
                extra = part if extra is None else [e + p for e, p in zip(extra, part)]
        return f - dg_g, extra, self.forward.prod(g, v)

    def _augment(self, y_out, vjps, extra=None, h=1.0):
        """Pack ``(y_out, -vjps - h·extra)`` as the change of ``z``."""
        if extra is not None:
            vjps = [v + h * e for v, e in zip(vjps, extra)]
        return torch.cat([y_out.reshape(-1)] + [-v.reshape(-1) for v in vjps])

    def _leaf(self, z):
        y, a, _ = self.unpack(z)
        return y.detach().requires_grad_(True), a

    def f_and_g_prod(self, t, z, v):
        y, a = self._leaf(z)
        with torch.enable_grad():
            drift, extra, g_v = self._pieces(t, y, a, v)
            drift_vjp = _vjp(drift, (y, *self.params), a)
            g_vjp = _vjp(g_v, (y, *self.params), a)
        return (self._augment(drift.detach(), drift_vjp, extra),
                self._augment(g_v.detach(), g_vjp))

    def g_prod(self, t, z, v):
        y, a = self._leaf(z)
        with torch.enable_grad():
            g_v = self.forward.g_prod(t, y, v)
            g_vjp = _vjp(g_v, (y, *self.params), a)
        return self._augment(g_v.detach(), g_vjp)

    def increment(self, t, z, h: float, v):
        """One Euler step's change ``F h + G v``, with one vector–Jacobian product for
        ``f h + g v`` instead of one for each."""
        y, a = self._leaf(z)
        with torch.enable_grad():
            drift, extra, g_v = self._pieces(t, y, a, v)
            change = drift * h + g_v
            vjps = _vjp(change, (y, *self.params), a)
        return self._augment(change.detach(), vjps, extra, h)


def _vjp(output, inputs, a):
    if not output.requires_grad:
        return [torch.zeros_like(x) for x in inputs]
    grads = torch.autograd.grad(output, inputs, a, retain_graph=True, allow_unused=True)
    return [torch.zeros_like(x) if g is None else g for g, x in zip(grads, inputs)]


def _jvp(column, y, v, diagonal: bool):
    """``∂column/∂y · v`` keeping the graph: a vjp when the Jacobian is diagonal, else the
    double-vjp trick."""
    if diagonal:
        out, = torch.autograd.grad(column, y, v, create_graph=True, allow_unused=True)
        return torch.zeros_like(y) if out is None else out
    u = torch.zeros_like(column, requires_grad=True)
    vjp, = torch.autograd.grad(column, y, u, create_graph=True, allow_unused=True)
    if vjp is None:
        return torch.zeros_like(y)
    out, = torch.autograd.grad(vjp, u, v, create_graph=True)
    return out
