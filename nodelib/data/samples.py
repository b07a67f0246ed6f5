"""Two-dimensional point clouds for density estimation with flows: two data sets from
scikit-learn (generated, never downloaded; scikit-learn is imported only when they are drawn).
"""
from __future__ import annotations

import torch


def _as_tensor(x, device, dtype) -> torch.Tensor:
    return torch.as_tensor(x, dtype=dtype or torch.get_default_dtype(), device=device)


def two_circles(n: int, *, noise: float = 0.06, factor: float = 0.5, scale: float = 2.5,
                seed: int | None = 0, device=None, dtype=None) -> torch.Tensor:
    """``n`` points on two concentric circles of radii ``scale`` and ``factor·scale``
    (:func:`sklearn.datasets.make_circles`, Gaussian noise of std ``noise`` before scaling);
    shape ``(n, 2)``. The same ``seed`` gives the same points."""
    from sklearn.datasets import make_circles  # optional dependency: only the samplers need it
    x, _ = make_circles(n_samples=n, noise=noise, factor=factor, random_state=seed)
    return _as_tensor(x * scale, device, dtype)


def two_moons(n: int, *, noise: float = 0.06, scale: float = 1.6, seed: int | None = 0,
              device=None, dtype=None) -> torch.Tensor:
    """``n`` points on two interleaved half circles (:func:`sklearn.datasets.make_moons`),
    centred at the origin and multiplied by ``scale``; shape ``(n, 2)``."""
    from sklearn.datasets import make_moons
    x, _ = make_moons(n_samples=n, noise=noise, random_state=seed)
    return _as_tensor((x - [0.5, 0.25]) * scale, device, dtype)


DATASETS = {"two circles": two_circles, "two moons": two_moons}
