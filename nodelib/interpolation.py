"""Dense output: the solution anywhere inside an accepted step, for many times at once.

``y(t + θh) = y + h Σ_i P_i(θ) k_i``; for m output times in one step this is a single
(m × stages) @ (stages × n) matrix product, so output times cost no extra steps and almost no work.
"""
from __future__ import annotations

import numpy as np
import torch

from .tableaux import ButcherTableau


def dense_output(y0: torch.Tensor, ks: list[torch.Tensor], h: float, thetas: list[float],
                 tableau: ButcherTableau) -> torch.Tensor:
    """States at ``t + θh`` for each θ in ``thetas`` (in [0, 1]), stacked: (m, *y0.shape)."""
    powers = np.asarray(thetas, dtype=np.float64)[:, None] ** np.arange(1, tableau.dense.shape[1] + 1)
    weights = torch.as_tensor(h * (powers @ tableau.dense.T), dtype=y0.dtype, device=y0.device)
    K = torch.stack(ks).reshape(len(ks), -1)
    out = torch.addmm(y0.reshape(1, -1), weights, K)
    return out.view(len(thetas), *y0.shape)
