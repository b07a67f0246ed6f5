"""ODEs shared by the tests: problems with closed-form solutions, and the stiff benchmarks."""
import math

import torch


class Problem:
    def __init__(self, name, f, exact, y0, t1=1.0):
        self.name, self.f, self.exact, self.y0_values, self.t1 = name, f, exact, y0, t1

    def y0(self, dtype=torch.float64, device="cpu"):
        return torch.tensor(self.y0_values, dtype=dtype, device=device)


def _rotation(t, y):
    return torch.stack([y[1], -y[0]])


PROBLEMS = [
    # y' = -y: y = e^{-t}
    Problem("decay", lambda t, y: -y, lambda t: torch.exp(-t)[:, None], [1.0]),
    # y' = y cos t: y = exp(sin t)
    Problem("exp_sin", lambda t, y: y * torch.cos(t), lambda t: torch.exp(torch.sin(t))[:, None],
            [1.0], t1=2.0),
    # harmonic oscillator y'' = -y as a first-order system: (cos t, -sin t)
    Problem("oscillator", _rotation, lambda t: torch.stack([torch.cos(t), -torch.sin(t)], 1),
            [1.0, 0.0], t1=2 * math.pi),
    # logistic y' = y (1 - y), y0 = 0.1
    Problem("logistic", lambda t, y: y * (1 - y),
            lambda t: (1.0 / (1.0 + 9.0 * torch.exp(-t)))[:, None], [0.1], t1=5.0),
    # y' = -2 t y: y = exp(-t²)
    Problem("gaussian", lambda t, y: -2 * t * y, lambda t: torch.exp(-t**2)[:, None], [1.0],
            t1=2.0),
]


class Linear(torch.nn.Module):
    """dz/dt = A z: z(t) = e^{tA} z(0), ∂f/∂z = A everywhere, so the flow map's log|det| is
    t tr(A) exactly (used by the flow and the regularisation tests)."""

    def __init__(self, A):
        super().__init__()
        self.A = torch.nn.Parameter(A)

    def forward(self, t, z):
        return z @ self.A.T


# --- stiff problems, written on the last axis (so radau5 can stack its stages in one call)
def robertson(t, y):
    """Robertson's chemical kinetics: rates 0.04, 1e4 and 3e7."""
    y1, y2, y3 = y[..., 0], y[..., 1], y[..., 2]
    return torch.stack([-0.04 * y1 + 1e4 * y2 * y3,
                        0.04 * y1 - 1e4 * y2 * y3 - 3e7 * y2 ** 2,
                        3e7 * y2 ** 2], dim=-1)


def van_der_pol(t, y, mu=1000.0):
    return torch.stack([y[..., 1], mu * (1 - y[..., 0] ** 2) * y[..., 1] - y[..., 0]], dim=-1)
