"""Solver statistics for teaching plots: function evaluations, accepted/rejected steps, step trace.

Pass ``stats=SolverStats()`` to :func:`nodelib.odeint` or :func:`nodelib.odeint_adjoint`. The
forward solve fills ``stats.forward``; for the adjoint, ``loss.backward()`` later fills
``stats.backward``. Recording the trace costs one Python tuple per step and nothing when no
``stats`` object is passed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np


class StepRecord(NamedTuple):
    t: float            # time at the start of the attempted step
    h: float            # signed step size attempted
    error_ratio: float  # ||error / (atol + rtol |y|)||_rms; <= 1 means accepted (nan: fixed step)
    accepted: bool


@dataclass
class PassStats:
    """What one solve (the forward pass, or the adjoint's backward pass) did."""
    nfe: int = 0
    n_accepted: int = 0
    n_rejected: int = 0
    # implicit methods: Jacobian evaluations (each costs one vector–Jacobian product per state
    # component, not counted in nfe), LU factorisations, Newton iterations (each iteration is
    # one evaluation of f, counted in nfe)
    n_jacobians: int = 0
    n_lu: int = 0
    n_newton_iterations: int = 0
    trace: list[StepRecord] = field(default_factory=list)

    def trace_arrays(self) -> dict[str, np.ndarray]:
        """The step trace as numpy arrays ``t``, ``h``, ``error_ratio``, ``accepted``."""
        cols = list(zip(*self.trace)) if self.trace else [(), (), (), ()]
        return {
            "t": np.asarray(cols[0], dtype=float),
            "h": np.asarray(cols[1], dtype=float),
            "error_ratio": np.asarray(cols[2], dtype=float),
            "accepted": np.asarray(cols[3], dtype=bool),
        }

    def reset(self) -> None:
        self.nfe = self.n_accepted = self.n_rejected = 0
        self.n_jacobians = self.n_lu = self.n_newton_iterations = 0
        self.trace.clear()


@dataclass
class SolverStats:
    """Statistics of one solve: ``forward`` and (adjoint only) ``backward`` passes."""
    forward: PassStats = field(default_factory=PassStats)
    backward: PassStats = field(default_factory=PassStats)

    @property
    def nfe_forward(self) -> int:
        return self.forward.nfe

    @property
    def nfe_backward(self) -> int:
        return self.backward.nfe

    def reset(self) -> None:
        self.forward.reset()
        self.backward.reset()
