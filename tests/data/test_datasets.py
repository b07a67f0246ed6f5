"""The toy data sets: labels match the radii, and the points are uniform in volume.

Uniformity is tested with the Dvoretzky–Kiefer–Wolfowitz inequality (with Massart's constant):
for n i.i.d. samples of a continuous distribution F with empirical CDF F_n,

    P( sup_u |F_n(u) - F(u)| > ε ) ≤ 2 exp(-2 n ε²)     for every n and ε > 0.

With ε = sqrt(ln(2/δ) / (2n)) a correct sampler fails with probability at most δ = 1e-6 (and the
samples are seeded, so a pass is reproducible). Uniform in volume in {r_min ≤ ‖x‖ ≤ r_max} ⊂ ℝ^d
means that U = (‖x‖^d - r_min^d) / (r_max^d - r_min^d) is Uniform(0, 1), so F(u) = u.
"""
import math

import numpy as np
import pytest
import torch

from nodelib.data.toy import (flip_1d, nested_spheres, nested_spheres_target,
    uniform_shell)

DELTA = 1e-6


def dkw_bound(n: int, delta: float = DELTA) -> float:
    return math.sqrt(math.log(2 / delta) / (2 * n))


def ks_uniform(u: np.ndarray) -> float:
    """sup_u |F_n(u) - u| for samples u in [0, 1] (the two-sided Kolmogorov–Smirnov statistic)."""
    u = np.sort(u)
    n = len(u)
    i = np.arange(1, n + 1)
    return float(max(np.max(i / n - u), np.max(u - (i - 1) / n)))


def test_flip_data(device):
    x, y = flip_1d(device=device, dtype=torch.float64)
    assert x.shape == y.shape == (2, 1) and x.device.type == device.type and x.dtype == torch.float64
    assert x.flatten().tolist() == [-1.0, 1.0] and y.flatten().tolist() == [1.0, -1.0]


@pytest.mark.parametrize("dim", [1, 2, 3, 10])
def test_labels_match_radii(dim):
    r1, r2, r3 = 0.5, 1.0, 1.5
    x, y = nested_spheres(300, 700, dim=dim, seed=3, dtype=torch.float64)
    assert x.shape == (1000, dim) and y.shape == (1000, 1)
    r = x.norm(dim=1)
    inner = y[:, 0] == -1
    assert inner.sum() == 300 and (y[~inner] == 1).all()
    assert (r[inner] <= r1).all()
    assert ((r[~inner] >= r2) & (r[~inner] <= r3)).all()
    # the labelling function agrees with the labels on the sample, and is 0 in the gap
    assert torch.equal(nested_spheres_target(x, r1, r2, r3), y)
    gap = torch.tensor([[0.75] + [0.0] * (dim - 1), [2.0] + [0.0] * (dim - 1)], dtype=torch.float64)
    assert nested_spheres_target(gap).flatten().tolist() == [0.0, 0.0]


def test_custom_radii_and_bad_radii():
    x, y = nested_spheres(50, 50, r1=0.2, r2=0.3, r3=0.4, seed=0, dtype=torch.float64)
    r = x.norm(dim=1)
    assert r[:50].max() <= 0.2 and r[50:].min() >= 0.3 and r[50:].max() <= 0.4
    for radii in [(0.5, 0.5, 1.0), (1.0, 0.5, 1.5), (0.0, 1.0, 1.5), (0.5, 1.5, 1.0)]:
        with pytest.raises(ValueError, match="r1 < r2 < r3"):
            nested_spheres(10, 10, r1=radii[0], r2=radii[1], r3=radii[2])
    with pytest.raises(ValueError):
        uniform_shell(10, 2, 1.0, 0.5)


def test_seeded_and_device_independent(device):
    a = nested_spheres(100, 100, seed=7)
    b = nested_spheres(100, 100, seed=7, device=device)
    c = nested_spheres(100, 100, seed=8)
    # sampled on the CPU in float64, then moved: the same points on every device
    assert torch.equal(a[0], b[0].cpu()) and torch.equal(a[1], b[1].cpu())
    assert b[0].device.type == device.type and b[0].dtype == torch.float32
    assert not torch.equal(a[0], c[0])


@pytest.mark.parametrize("dim, r_min, r_max", [(1, 0.0, 0.5), (2, 0.0, 0.5), (2, 1.0, 1.5),
                                               (3, 1.0, 1.5), (5, 0.0, 2.0)])
def test_radius_is_uniform_in_volume(dim, r_min, r_max):
    n = 20_000
    x = uniform_shell(n, dim, r_min, r_max, generator=torch.Generator().manual_seed(11))
    r = x.norm(dim=1).numpy()
    u = (r ** dim - r_min ** dim) / (r_max ** dim - r_min ** dim)
    assert ks_uniform(u) < dkw_bound(n)          # 0.019 for n = 20 000


def test_the_uniformity_test_catches_a_uniform_radius():
    # The test above has power: drawing the radius itself uniformly in [0, 0.5] (the mistake the
    # volume transform avoids) gives U = (r / 0.5)^2 with CDF sqrt(u), at KS distance 1/4 from
    # the uniform one — thirteen times the bound.
    n = 20_000
    r = 0.5 * torch.rand(n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    u = ((r / 0.5) ** 2).numpy()
    assert ks_uniform(u) > 10 * dkw_bound(n)


def test_directions_are_uniform_on_the_circle_and_centred():
    n = 20_000
    x = uniform_shell(n, 2, 1.0, 1.5, generator=torch.Generator().manual_seed(5))
    angle = torch.atan2(x[:, 1], x[:, 0]).numpy()
    assert ks_uniform((angle + math.pi) / (2 * math.pi)) < dkw_bound(n)
    # in 3-D the mean of the unit directions is 0 with standard error 1/sqrt(3n) per coordinate;
    # 6 standard errors fail with probability ~1e-8 per coordinate
    y = uniform_shell(n, 3, 0.0, 1.0, generator=torch.Generator().manual_seed(6))
    u = y / y.norm(dim=1, keepdim=True)
    assert (u.mean(dim=0).abs() < 6 / math.sqrt(3 * n)).all()
