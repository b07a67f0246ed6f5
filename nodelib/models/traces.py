"""Traces and Jacobian norms of a vector field, from autograd: what CNFs (``tr ∂f/∂z``) and the
Jacobian regulariser (``‖∂f/∂z‖_F²``) need.

Two kinds of tools, each exact or estimated:

* exact, one reverse pass per dimension: :func:`exact_trace`, :func:`jacobian_rows`,
  :func:`frobenius_exact`;
* Hutchinson's estimators, one vector–Jacobian product ``εᵀ ∂f/∂z`` (:func:`jacobian_vjp`) with
  a probe ε from :func:`sample_noise` (``E[εεᵀ] = I``): :func:`hutchinson_trace` ``εᵀ(∂f/∂z)ε``
  and :func:`frobenius_hutchinson` ``‖εᵀ ∂f/∂z‖²``.

``f`` must have been computed from ``z`` sample by sample (summing over the batch before
differentiating is then exact).
"""
from __future__ import annotations

import torch

TRACE_METHODS = ("exact", "hutchinson", "closed_form")


NOISE_KINDS = ("gaussian", "rademacher")


def exact_trace(f: torch.Tensor, z: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
    """``tr(∂f/∂z)`` per sample: one reverse pass per dimension, ``Σ_i ∂f_i/∂z_i``.

    ``f`` has shape ``(batch, dim)`` and was computed from ``z`` sample by sample (summing over the
    batch before differentiating is then exact). Costs ``dim`` backward passes.
    """
    tr = torch.zeros(f.shape[:-1], dtype=f.dtype, device=f.device)
    for i in range(f.shape[-1]):
        tr = tr + torch.autograd.grad(f[..., i].sum(), z, create_graph=create_graph,
                                      retain_graph=True)[0][..., i]
    return tr


def hutchinson_trace(f: torch.Tensor, z: torch.Tensor, noise: torch.Tensor,
                     create_graph: bool = False) -> torch.Tensor:
    """Hutchinson's unbiased estimate ``εᵀ(∂f/∂z)ε`` per sample, from one vector–Jacobian product.

    Unbiased when ``E[εεᵀ] = I`` (Gaussian or Rademacher ε); costs one backward pass whatever
    the dimension.
    """
    return (jacobian_vjp(f, z, noise, create_graph) * noise).sum(-1)


def sample_noise(shape, kind: str = "rademacher", *, generator: torch.Generator | None = None,
                 device=None, dtype=None) -> torch.Tensor:
    """Probe vectors with ``E[ε] = 0``, ``E[εεᵀ] = I``: standard normal, or ±1 with equal odds."""
    if kind == "gaussian":
        return torch.randn(shape, generator=generator, device=device, dtype=dtype)
    if kind == "rademacher":
        bits = torch.randint(0, 2, shape, generator=generator, device=device)
        return (2 * bits - 1).to(dtype or torch.get_default_dtype())
    raise ValueError(f"unknown noise kind {kind!r}; known kinds are {', '.join(NOISE_KINDS)}")


def jacobian_vjp(f: torch.Tensor, z: torch.Tensor, noise: torch.Tensor,
                 create_graph: bool = False) -> torch.Tensor:
    """``εᵀ ∂f/∂z`` per sample, one reverse pass (``f`` computed from ``z`` sample by sample)."""
    return torch.autograd.grad(f, z, noise, create_graph=create_graph, retain_graph=True)[0]


def frobenius_hutchinson(f: torch.Tensor, z: torch.Tensor, noise: torch.Tensor,
                         create_graph: bool = False) -> torch.Tensor:
    """Hutchinson's unbiased estimate ``‖εᵀ ∂f/∂z‖²`` of ``‖∂f/∂z‖_F²`` per sample.

    ``E[‖εᵀJ‖²] = E[εᵀJJᵀε] = tr(JJᵀ) = ‖J‖_F²`` when ``E[εεᵀ] = I``.
    """
    vjp = jacobian_vjp(f, z, noise, create_graph)
    return vjp.reshape(vjp.shape[0], -1).square().sum(-1)


def jacobian_rows(f: torch.Tensor, z: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
    """The per-sample Jacobian ``∂f/∂z`` of flat states, shape ``(batch, dim, dim)``: one reverse
    pass per dimension (for small ``dim`` and for checks)."""
    flat = f.reshape(f.shape[0], -1)
    rows = [torch.autograd.grad(flat[:, i].sum(), z, create_graph=create_graph,
                                retain_graph=True)[0].reshape(f.shape[0], -1)
            for i in range(flat.shape[1])]
    return torch.stack(rows, dim=1)


def frobenius_exact(f: torch.Tensor, z: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
    """``‖∂f/∂z‖_F²`` per sample, exactly (``dim`` reverse passes)."""
    return jacobian_rows(f, z, create_graph).square().sum((-2, -1))
