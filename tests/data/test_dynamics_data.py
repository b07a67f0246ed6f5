"""nodelib.data.systems: the spiral, the damped pendulum and noisy observations."""
import math

import pytest
import torch

from nodelib.data.systems import (DampedPendulum, SpiralField, observe,
    spiral_trajectory)

F64 = torch.float64


def test_spiral_is_the_demo_system(device):
    t, y = spiral_trajectory(device=device, dtype=F64)
    assert t.shape == (1000,) and y.shape == (1000, 2) and y.device.type == device.type
    assert t[0] == 0 and abs(t[-1].item() - 25) < 1e-12
    assert y[0].tolist() == [2.0, 0.0]
    # (y^3) A with A = [[-0.1, 2], [-2, -0.1]] at y = (1, 2): (1, 8) A = (-16.1, 1.2)
    f = SpiralField()(None, torch.tensor([[1.0, 2.0]], dtype=F64))
    assert torch.allclose(f, torch.tensor([[-0.1 - 16.0, 2.0 - 0.8]], dtype=F64))
    # the states solve the ODE: central differences of the data match the field to O(dt^2)
    dt = (t[1] - t[0]).item()
    slope = (y[2:] - y[:-2]) / (2 * dt)
    field = SpiralField()(None, y[1:-1])
    # the third derivative is at most ~|f|^3 ~ 1e4 near y0, so dt^2/6 * 1e4 ~ 1 there; relative
    # to |f| ~ 16 the bound 0.1 is met everywhere, and wrong data would be off by O(1)
    assert ((slope - field).norm(dim=1) / field.norm(dim=1)).max() < 0.1
    # an inward spiral: the radius shrinks overall
    assert y[-1].norm() < 0.5 * y[0].norm()


def test_pendulum_field_and_friction():
    p = DampedPendulum(omega0=2.0, c=0.1, k=0.3)
    omega = torch.tensor([-2.0, 0.0, 1.0], dtype=F64)
    assert torch.allclose(p.friction(omega), torch.tensor([0.2 + 1.2, 0.0, -0.1 - 0.3],
                                                          dtype=F64))
    y = torch.tensor([[math.pi / 2, 1.0]], dtype=F64)
    assert torch.allclose(p(None, y), torch.tensor([[1.0, -4.0 - 0.4]], dtype=F64))
    with pytest.raises(ValueError):
        DampedPendulum(c=-1.0)


def test_observe_irregular_noisy_and_seeded(device):
    pend = DampedPendulum(c=0.0, k=0.0)                  # frictionless: energy is conserved
    y0 = [[1.0, 0.0], [0.0, 1.5]]
    obs = observe(pend, y0, 10.0, 30, noise_std=0.1, seed=3, device=device, dtype=F64)
    assert obs.t.shape == (2, 30) and obs.y.shape == obs.y_true.shape == (2, 30, 2)
    assert obs.t.device.type == device.type and obs.y.dtype == F64
    assert (obs.t[:, 0] == 0).all() and (obs.t[:, 1:] > obs.t[:, :-1]).all()
    assert obs.t.max() <= 10.0 and not torch.equal(obs.t[0], obs.t[1])     # own times each
    assert torch.equal(obs.y_true[:, 0], obs.y0)
    energy = 0.5 * obs.y_true[..., 1] ** 2 - 4.0 * torch.cos(obs.y_true[..., 0])
    # solved at 1e-10: the energy drifts by ~1e-9 at most over 10 s
    assert (energy - energy[:, :1]).abs().max() < 1e-7
    noise = (obs.y - obs.y_true).flatten()
    # 120 N(0, 0.1^2) draws: the sample std is within 25% of 0.1 with probability > 0.999
    assert abs(noise.std().item() - 0.1) < 0.025 and abs(noise.mean().item()) < 0.04
    again = observe(pend, y0, 10.0, 30, noise_std=0.1, seed=3, device=device, dtype=F64)
    assert torch.equal(again.t, obs.t) and torch.equal(again.y, obs.y)
    other = observe(pend, y0, 10.0, 30, noise_std=0.1, seed=4, dtype=F64)
    assert not torch.equal(other.t.to(device), obs.t)


def test_observe_rejects_bad_input():
    with pytest.raises(ValueError, match="n_obs"):
        observe(DampedPendulum(), [[1.0, 0.0]], 10.0, 1)
    with pytest.raises(ValueError, match="noise_std"):
        observe(DampedPendulum(), [[1.0, 0.0]], 10.0, 5, noise_std=-1)
    with pytest.raises(ValueError, match="shape"):
        observe(DampedPendulum(), [1.0, 0.0], 10.0, 5)
