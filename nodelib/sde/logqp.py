"""``logqp=True``: the path-space KL divergence of a latent SDE, integrated alongside it.

A latent SDE has a posterior ``dY = f dt + g dW`` and a prior ``dY = h dt + g dW`` with the
same diffusion. By Girsanov's theorem the KL divergence between their path laws is

    KL = E ∫ ½ ‖u(t, Y)‖² dt,    g u = f - h,

(Li et al. 2020, "Scalable gradients for SDEs", §5). Following torchsde, the state gets one
more column ``L`` with ``dL = ½‖u‖² dt`` and no noise, and ``sdeint`` returns the increments
of ``L`` between output times, shape ``(len(ts) - 1, batch)``. ``u = (f - h)/g`` for diagonal
noise; otherwise the least-squares solution through ``g``'s pseudo-inverse.
"""
from __future__ import annotations

import torch
from torch import nn


class LogqpSDE(nn.Module):
    """``sde`` (an :class:`~nodelib.sde.functions.SDEFunctions` with a prior drift ``h``)
    augmented by the KL rate. Its parameters are those of the user's SDE."""

    def __init__(self, sde):
        super().__init__()
        if sde.h is None:
            raise ValueError("logqp=True needs the sde to define the prior drift h(t, y) "
                             "(or names={'prior_drift': ...})")
        self.base = sde
        self.noise_type, self.sde_type = sde.noise_type, sde.sde_type
        if isinstance(sde.sde, nn.Module):
            self.inner = sde.sde   # registered, so parameters() reaches the user's SDE

    def f_and_g(self, t, y_aug):
        y = y_aug[:, :-1]
        f, g = self.base.f_and_g(t, y)
        h = self.base.h(t, y)
        if self.noise_type == "diagonal":
            u = _stable_division(f - h, g)
            g_aug = torch.cat([g, g.new_zeros(g.shape[0], 1)], dim=1)
        else:
            u = torch.linalg.lstsq(g, (f - h).unsqueeze(-1)).solution.squeeze(-1)
            g_aug = torch.cat([g, g.new_zeros(g.shape[0], 1, g.shape[2])], dim=1)
        rate = 0.5 * (u * u).sum(dim=1, keepdim=True)
        return torch.cat([f, rate], dim=1), g_aug

    def f(self, t, y_aug):
        return self.f_and_g(t, y_aug)[0]

    def g(self, t, y_aug):
        return self.f_and_g(t, y_aug)[1]


def _stable_division(a: torch.Tensor, b: torch.Tensor, epsilon: float = 1e-7) -> torch.Tensor:
    """``a / b`` with ``|b|`` kept at least ``epsilon`` (as torchsde): a diffusion that
    touches zero makes the KL infinite, and a finite large value trains better than NaN."""
    b = torch.where(b.abs().detach() > epsilon, b, torch.full_like(b, epsilon) * b.sign())
    b = torch.where(b == 0, torch.full_like(b, epsilon), b)
    return a / b


def split_logqp(ys_aug: torch.Tensor):
    """``(ys, log-ratio increments)`` from the augmented solution."""
    ys, log_ratio = ys_aug[..., :-1], ys_aug[..., -1]
    return ys, log_ratio[1:] - log_ratio[:-1]
