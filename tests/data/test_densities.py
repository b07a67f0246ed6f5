"""Target densities, data sets and plotting helpers (nodelib.data.densities, nodelib.data.samples, nodelib.plotting)."""
import math

import numpy as np
import pytest
import torch

from nodelib.data.densities import (ENERGY_NAMES, energy, log_normalizer,
    log_soft_box, target_log_prob)
from nodelib.data.samples import DATASETS, two_circles, two_moons

F64 = torch.float64


# Rezende & Mohamed (2015), Table 1, written out again in numpy: an independent implementation.
def reference_energy(name, z):
    z1, z2 = z[..., 0], z[..., 1]
    w1 = np.sin(2 * np.pi * z1 / 4)
    w2 = 3 * np.exp(-0.5 * ((z1 - 1) / 0.6) ** 2)
    w3 = 3 / (1 + np.exp(-(z1 - 1) / 0.3))
    if name == "U1":
        r = np.sqrt(z1 ** 2 + z2 ** 2)
        return 0.5 * ((r - 2) / 0.4) ** 2 - np.log(np.exp(-0.5 * ((z1 - 2) / 0.6) ** 2)
                                                   + np.exp(-0.5 * ((z1 + 2) / 0.6) ** 2))
    if name == "U2":
        return 0.5 * ((z2 - w1) / 0.4) ** 2
    if name == "U3":
        return -np.log(np.exp(-0.5 * ((z2 - w1) / 0.35) ** 2)
                       + np.exp(-0.5 * ((z2 - w1 + w2) / 0.35) ** 2))
    return -np.log(np.exp(-0.5 * ((z2 - w1) / 0.4) ** 2)
                   + np.exp(-0.5 * ((z2 - w1 + w3) / 0.35) ** 2))


def grid(lo, hi, n, device=None):
    g = torch.linspace(lo, hi, n, dtype=F64, device=device)
    yy, xx = torch.meshgrid(g, g, indexing="ij")
    return g, torch.stack([xx, yy], dim=-1)


def mass(log_p, g):
    return torch.trapezoid(torch.trapezoid(log_p.exp(), g, dim=1), g).item()


@pytest.mark.parametrize("name", ENERGY_NAMES)
def test_energies_match_the_paper_formulas(device, name):
    z = 3 * torch.randn(500, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    ours = energy(name)(z.to(device)).cpu().numpy()
    # moderate points (|z| ≲ 10): the plain numpy formulas do not overflow; float64 rounding
    assert np.allclose(ours, reference_energy(name, z.numpy()), rtol=1e-12, atol=1e-12)


def test_energy_landmarks():
    # U1 is lowest on the ring r = 2 at the lobes (±2, 0); U2 vanishes on the sine z2 = sin(πz1/2)
    u1 = energy("U1")
    on_lobe, off_ring = torch.tensor([[2.0, 0.0]]), torch.tensor([[3.0, 0.0]])
    assert u1(on_lobe) < u1(off_ring)
    z1 = torch.linspace(-4, 4, 9)
    on_wave = torch.stack([z1, torch.sin(math.pi * z1 / 2)], -1)
    assert torch.allclose(energy("U2")(on_wave), torch.zeros(9), atol=1e-6)
    with pytest.raises(ValueError, match="U1"):
        energy("U5")


@pytest.mark.parametrize("name", ENERGY_NAMES)
def test_targets_normalise_to_one(device, name):
    # Cartesian trapezoid on [-8, 8]² (U1's normaliser came from a polar rule: an independent
    # quadrature). Spacing 0.02 resolves the narrowest feature (std 0.35) to ~1e-6; the
    # smoothed box and the Gaussian bumps put < 1e-9 of their mass outside ±8.
    g, z = grid(-8, 8, 801, device)
    assert abs(mass(target_log_prob(name, z), g) - 1) < 1e-5


def test_u1_is_normalisable_but_u2_to_u4_are_not_without_the_box():
    # exp(-U) for U2–U4 does not decay along z1: its mass grows linearly with the z1 range,
    # which is why target_log_prob confines z1 to the paper's [-4, 4].
    for name in ENERGY_NAMES:
        masses = []
        for half in (4.0, 8.0):
            g1 = torch.linspace(-half, half, int(200 * half) + 1, dtype=F64)
            g2 = torch.linspace(-8, 8, 1601, dtype=F64)
            z2, z1 = torch.meshgrid(g2, g1, indexing="ij")
            p = torch.exp(-energy(name)(torch.stack([z1, z2], -1)))
            masses.append(torch.trapezoid(torch.trapezoid(p, g1, dim=1), g2).item())
        if name == "U1":
            assert masses[1] == pytest.approx(masses[0], rel=1e-6)
            assert math.log(masses[1]) == pytest.approx(log_normalizer("U1"), abs=1e-6)
        else:
            # the same mass per unit of z1 everywhere: twice the range, twice the mass (the
            # range ±4 holds whole periods of the sine, ±8 twice as many)
            assert masses[1] == pytest.approx(2 * masses[0], rel=1e-2)


def test_soft_box_is_a_normalised_density():
    x = torch.linspace(-12, 12, 24001, dtype=F64)
    p = log_soft_box(x).exp()
    assert torch.trapezoid(p, x).item() == pytest.approx(1.0, abs=1e-9)
    assert p[x.abs() < 2].sub(1 / 8).abs().max() < 1e-3          # flat 1/(2a) inside
    assert p[x.abs() > 6].max() < 1e-3                           # edges of width 0.25
    assert torch.isfinite(log_soft_box(torch.tensor([1e3, -1e3], dtype=F64))).all()


def test_target_log_prob_follows_device_and_dtype(device):
    z = torch.randn(10, 2, device=device)
    for name in ENERGY_NAMES:
        out = target_log_prob(name, z)
        assert out.shape == (10,) and out.dtype == torch.float32 and out.device.type == device.type
        ref = target_log_prob(name, z.cpu().double())
        assert torch.allclose(out.cpu().double(), ref, atol=1e-4)   # float32 rounding


@pytest.mark.parametrize("sampler", list(DATASETS.values()), ids=list(DATASETS))
def test_samplers_are_seeded_and_shaped(device, sampler):
    a = sampler(300, seed=1, device=device, dtype=F64)
    b = sampler(300, seed=1, device=device, dtype=F64)
    c = sampler(300, seed=2, device=device, dtype=F64)
    assert a.shape == (300, 2) and a.dtype == F64 and a.device.type == device.type
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert sampler(5).dtype == torch.get_default_dtype()
    # centred and inside the plotting square [-4, 4]²
    assert a.mean(0).abs().max() < 0.5 and a.abs().max() < 4


def test_two_circles_radii():
    x = two_circles(2000, noise=0.0, factor=0.5, scale=2.5)
    r = x.norm(dim=-1)
    outer = r > 1.875
    assert outer.sum() == 1000                       # make_circles splits the points evenly
    assert torch.allclose(r[outer], torch.full_like(r[outer], 2.5), atol=1e-5)
    assert torch.allclose(r[~outer], torch.full_like(r[~outer], 1.25), atol=1e-5)


def test_two_moons_are_two_half_circles():
    x = two_moons(2000, noise=0.0, scale=1.0)
    # make_moons: unit half circles centred at (0, 0) (upper) and (1, 0.5) (lower), here
    # shifted by (-0.5, -0.25)
    upper = (x - torch.tensor([-0.5, -0.25])).norm(dim=-1)
    lower = (x - torch.tensor([0.5, 0.25])).norm(dim=-1)
    on_one = torch.minimum((upper - 1).abs(), (lower - 1).abs())
    assert on_one.max() < 1e-5


def test_plotting_helpers_draw_on_the_grid():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nodelib.plotting import (animate_samples, grid_mass, grid_points, log_prob_on_grid,
                                  plot_density, plot_frames, plot_samples)

    xs, ys, pts = grid_points((-1, 1, -2, 2), 5)
    assert pts.shape == (25, 2)
    assert torch.equal(pts.view(5, 5, 2)[1, 3], torch.stack([xs[3], ys[1]]))
    values = log_prob_on_grid(lambda p: target_log_prob("U1", p), (-6, 6, -6, 6), 301,
                              dtype=F64)
    assert values.shape == (301, 301)
    assert grid_mass(values, (-6, 6, -6, 6)) == pytest.approx(1.0, abs=1e-4)
    fig, (a1, a2) = plt.subplots(1, 2)
    image = plot_density(a1, values, (-6, 6, -6, 6))
    assert image.get_array().shape == (301, 301)
    plot_samples(a2, two_moons(100))
    plt.close(fig)
    traj = torch.randn(4, 50, 2)
    plt.close(plot_frames([traj, traj], torch.linspace(0, 1, 4), n_frames=3))
    anim = animate_samples([traj, traj], torch.linspace(0, 1, 4), titles=["a", "b"])
    html = anim.to_jshtml()
    assert html.count("data:image/png;base64") == 4
