"""Neural controlled differential equations (Kidger, Morrill, Foster & Lyons 2020).

A neural CDE reads a time series as a continuous path ``X`` (a
:class:`~nodelib.models.control_paths.ControlPath`) and lets its increments drive the state:

    z(t0) = ζ(X(t0)),    dz = f_θ(z) dX,    output = ℓ(z(t_N)),

where ``f_θ(z)`` is a (hidden × channels) matrix. Once ``X`` is interpolated the CDE is an ODE,

    dz/dt = f_θ(z) dX/dt(t),

so any solver of nodelib integrates it, and the one gradient switch of
:mod:`nodelib.gradients` differentiates it (backprop, backsolve adjoint or checkpoints). The
field ``f_θ`` never sees ``t`` itself: time enters only through ``dX``, so the model sees time
only if time is a channel of ``X`` (see :func:`~nodelib.models.control_paths.
observation_channels`).

Where ``dX/dt`` or a derivative of it jumps (at the knots of every piecewise-cubic path) a
solver's error estimate is wrong across the jump, and where ``dX/dt`` itself jumps (linear and
rectilinear paths) an RK stage at a knot may read the wrong piece. :class:`NeuralCDE` therefore
tells adaptive solvers to stop at the knots (``options["jump_t"]``) and gives fixed-step
solvers the knots as their grid (``grid_constructor``), evaluating each step's end stages just
inside it (``perturb``) when ``dX/dt`` jumps, unless the caller chose a grid or step size.
"""
from __future__ import annotations

import torch
from torch import nn

from ..gradients import gradient_mode, solve_with_gradient
from ..solvers.solution import SolverStats
from ..solvers.tableaux import TABLEAUX
from .control_paths import ControlPath


class CDEField(nn.Module):
    """``f_θ(z)``: an MLP from the state (…, hidden) to a matrix (…, hidden, channels), with a
    ``tanh`` at the end, as in Kidger et al. (it keeps ``f_θ`` bounded, so ``z`` cannot blow up
    faster than ``|dX|``). The hidden ``activation`` defaults to Softplus rather than the paper's
    ReLU: a smooth field keeps the backsolve adjoint's gradient close to backprop's (ReLU's
    kinks put the adjoint's Jacobian products off by far more than the tolerance)."""

    def __init__(self, hidden: int, channels: int, width: int = 32, depth: int = 1,
                 activation: type[nn.Module] = nn.Softplus):
        super().__init__()
        self.hidden, self.channels = hidden, channels
        layers, w = [], hidden
        for _ in range(depth):
            layers += [nn.Linear(w, width), activation()]
            w = width
        layers += [nn.Linear(w, hidden * channels), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(*z.shape[:-1], self.hidden, self.channels)


class DrivenField(nn.Module):
    """The CDE as an ODE: ``(t, z) ↦ f_θ(z) dX/dt(t)`` for one path ``X``. An ``nn.Module`` so
    that the adjoint finds ``f_θ``'s parameters (the path's coefficients get no gradient)."""

    def __init__(self, field: nn.Module, path: ControlPath):
        super().__init__()
        self.field, self.path = field, path

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        dX = self.path.derivative(t).to(z)                 # (..., channels)
        return (self.field(z) @ dX.unsqueeze(-1)).squeeze(-1)


def cde_options(path: ControlPath, method: str, options: dict | None) -> dict:
    """``options`` completed so that a solve does not step across a knot: for an adaptive
    ``method``, ``jump_t`` at the interior knots (a piecewise cubic's derivatives jump there,
    and an error estimate across the jump forces rejected steps, even for the C² natural
    spline at tight tolerances); for a fixed-step one without ``step_size`` or
    ``grid_constructor``, one step per interval between knots (and output times), with
    ``perturb`` unless ``dX/dt`` is continuous. Options the caller set are kept."""
    options = dict(options or {})
    if TABLEAUX[method].adaptive:
        options.setdefault("jump_t", path.jumps)
    elif "step_size" not in options and "grid_constructor" not in options:
        knots = path.knots.detach()

        def knot_grid(func, y0, t):
            lo, hi = torch.minimum(t[0], t[-1]), torch.maximum(t[0], t[-1])
            inside = knots[(knots > lo) & (knots < hi)].to(t)
            grid = torch.unique(torch.cat([t, inside]))            # sorted, increasing
            return grid if bool(t[-1] >= t[0]) else grid.flip(0)

        options["grid_constructor"] = knot_grid
        if not path.smooth:
            options.setdefault("perturb", True)
    return options


class NeuralCDE(nn.Module):
    """A neural CDE classifier/regressor: ``z0 = ζ(X(t0))`` (linear), ``dz = f_θ(z) dX``
    (:class:`CDEField`, ``width`` and ``depth``), output ``ℓ(z(t_N))`` (linear, ``out``
    features).

    ``method``, ``options``, ``rtol`` and ``atol`` choose the solver (default: ``rk4`` on the
    knots of the path, see :func:`cde_options`); ``adjoint`` is the one gradient switch
    (``False``: backprop through the solver; ``True``/``"backsolve"``; ``"checkpoint"``). In the
    adjoint's backward solve the path is evaluated again, backwards: the data enter both solves.
    ``self.stats`` holds the last solve's statistics.
    """

    def __init__(self, channels: int, hidden: int, out: int, width: int = 32, depth: int = 1,
                 *, method: str = "rk4", options: dict | None = None, rtol: float = 1e-3,
                 atol: float = 1e-4, adjoint: bool | str = False):
        super().__init__()
        if method not in TABLEAUX:
            raise ValueError(f"unknown method {method!r}; known: {', '.join(TABLEAUX)}")
        self.channels, self.hidden = channels, hidden
        self.initial = nn.Linear(channels, hidden)
        self.field = CDEField(hidden, channels, width, depth)
        self.readout = nn.Linear(hidden, out)
        self.method, self.options, self.rtol, self.atol = method, options, rtol, atol
        self.adjoint = adjoint
        gradient_mode(adjoint)   # an unknown gradient is refused here, not at the first solve
        self.stats = SolverStats()

    def trajectory(self, path: ControlPath, t: torch.Tensor | None = None) -> torch.Tensor:
        """The hidden state ``z`` at the times ``t`` (default: the ends of the path's interval):
        (len(t), ..., hidden)."""
        if path.channels != self.channels:
            raise ValueError(f"the path has {path.channels} channels, the model expects "
                             f"{self.channels}")
        t = path.interval if t is None else t
        z0 = self.initial(path.evaluate(path.knots[0]))
        self.stats = SolverStats()
        options = cde_options(path, self.method, self.options)
        return solve_with_gradient(
            DrivenField(self.field, path), z0, t.to(z0), gradient=gradient_mode(self.adjoint),
            method=self.method, options=options, rtol=self.rtol, atol=self.atol,
            stats=self.stats)

    def forward(self, path: ControlPath) -> torch.Tensor:
        """``ℓ(z(t_N))``: (..., out)."""
        return self.readout(self.trajectory(path)[-1])
