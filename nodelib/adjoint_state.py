"""The adjoint's augmented state: its layout, its dynamics and its error norm.

The backward pass of the continuous adjoint integrates, from t_N down to t_0,

    s = [z, a, a_θ, a_t],   ds/dt = [f, -aᵀ ∂f/∂z, -aᵀ ∂f/∂θ, -aᵀ ∂f/∂t],

stored as one flat vector. :class:`AdjointLayout` says where each part sits, :class:`AdjointDynamics`
is the right-hand side (vector–Jacobian products: one reverse-mode pass through ``func`` per
evaluation, never a Jacobian) and :func:`adjoint_norm` the error norm of the backward solve.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .control import rms_norm


@dataclass(frozen=True)
class AdjointLayout:
    """Flat order ``[z (n), a (n), a_θ (Σ numel θ), a_t (1, only when t needs a gradient)]``."""
    shape: torch.Size                       # shape of z (the solver's state)
    param_shapes: tuple[torch.Size, ...]
    want_t: bool

    @property
    def param_numels(self) -> tuple[int, ...]:
        return tuple(math.prod(s) for s in self.param_shapes)

    @property
    def n(self) -> int:
        return math.prod(self.shape)

    @property
    def n_params(self) -> int:
        return sum(self.param_numels)

    @property
    def size(self) -> int:
        return 2 * self.n + self.n_params + int(self.want_t)

    def pack(self, z, a, a_params, a_t) -> torch.Tensor:
        parts = [z.reshape(-1), a.reshape(-1), a_params] + ([a_t.reshape(1)] if self.want_t else [])
        return torch.cat(parts)

    def unpack(self, s: torch.Tensor):
        """Views ``(z, a, a_params, a_t)``; z and a shaped like the state, a_t 0-d (``None``
        when t needs no gradient: called at every evaluation, so nothing is allocated)."""
        n, p = self.n, self.n_params
        z, a = s[:n].view(self.shape), s[n:2 * n].view(self.shape)
        a_params = s[2 * n:2 * n + p]
        a_t = s[-1] if self.want_t else None
        return z, a, a_params, a_t

    def split_params(self, a_params: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """a_θ as one tensor per parameter, each shaped like its parameter."""
        if not self.param_shapes:
            return ()
        chunks = torch.split(a_params, list(self.param_numels))
        return tuple(c.view(s) for c, s in zip(chunks, self.param_shapes))


class AdjointDynamics:
    """``(t, s) ↦ ds/dt`` of the augmented state, with ``func``'s parameters ``params``."""

    def __init__(self, func, params: tuple[torch.Tensor, ...], layout: AdjointLayout):
        self.func, self.params, self.layout = func, params, layout

    def __call__(self, t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        layout = self.layout
        z, a, _, _ = layout.unpack(s)
        # An implicit adjoint_method differentiates these dynamics (Newton's Jacobian): then
        # they must stay differentiable in s, so z is not cut off and the VJP keeps its graph.
        differentiable = s.requires_grad
        with torch.enable_grad():
            if not differentiable:
                z = z.detach().requires_grad_(True)
            t = t.detach().requires_grad_(layout.want_t)
            f = self.func(t, z)
            inputs = (z, t, *self.params) if layout.want_t else (z, *self.params)
            if f.requires_grad:
                vjps = torch.autograd.grad(f, inputs, -a, allow_unused=True,
                                           create_graph=differentiable)
            else:   # f depends on none of them (e.g. on t only, with no gradient wanted)
                vjps = (None,) * len(inputs)
        sizes = [layout.n] + ([1] if layout.want_t else []) + list(layout.param_numels)
        parts = [f.reshape(-1)] + [s.new_zeros(m) if v is None else v.reshape(-1)
                                   for v, m in zip(vjps, sizes)]
        if layout.want_t:   # computed as [f, z, t, θ]; stored as [z, a, a_θ, a_t]
            parts.append(parts.pop(2))
        return torch.cat(parts)


def adjoint_norm(layout: AdjointLayout, state_norm=rms_norm, choice=None, unflatten=None):
    """The error norm of the backward solve, on the flat augmented state.

    * default: the largest of ``|a_t|``, ``state_norm(z)``, ``state_norm(a)`` and the RMS of all
      of a_θ — no part's error is diluted by another's size (``state_norm`` is the forward
      solve's norm);
    * ``"seminorm"``: z and a only. a_θ and a_t never feed back into the dynamics, so
      controlling their error only costs steps (Kidger et al. 2021);
    * a callable: called as torchdiffeq calls it, on the tuple ``(a_t, z, a, *a_params)`` (z and
      a shaped like the state, expanded into their parts for a tuple state via ``unflatten``).
    """
    def parts(s):
        return layout.unpack(s)

    if choice is None:
        def norm(s):
            z, a, a_params, a_t = parts(s)
            values = [state_norm(z), state_norm(a)] + ([a_t.abs()] if a_t is not None else [])
            if a_params.numel():
                values.append(rms_norm(a_params))
            return torch.stack(values).max()
    elif choice == "seminorm":
        def norm(s):
            z, a, _, _ = parts(s)
            return torch.maximum(state_norm(z), state_norm(a))
    elif callable(choice):
        def norm(s):
            z, a, a_params, a_t = parts(s)
            expand = (lambda x: (x,)) if unflatten is None else unflatten
            a_t = s.new_zeros(()) if a_t is None else a_t
            return choice((a_t, *expand(z), *expand(a), *layout.split_params(a_params)))
    else:
        raise ValueError(f"adjoint_options['norm'] must be 'seminorm' or a callable, "
                         f"got {choice!r}")
    return norm
