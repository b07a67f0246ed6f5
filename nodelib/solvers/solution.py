"""What a solve returns: a :class:`Solution` (states, accepted steps, final step size) and its
statistics (function evaluations, accepted/rejected steps, the step trace), for teaching plots.

Pass ``stats=SolverStats()`` to :func:`nodelib.odeint` or :func:`nodelib.odeint_adjoint`. The
forward solve fills ``stats.forward``; for the adjoint, ``loss.backward()`` later fills
``stats.backward``. Recording the trace costs one Python tuple per step and nothing when no
``stats`` object is passed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch


class StepRecord(NamedTuple):
    t: float            # time at the start of the attempted step
    h: float            # signed step size attempted
    error_ratio: float  # ||error / (atol + rtol |y|)||, the solve's norm; <= 1: accepted (nan:
    #                     a fixed step)
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

@dataclass
class Solution:
    """The result of one solve (see :func:`nodelib.odesolve`).

    ``ys[i]`` is the state at ``t[i]`` (a tuple of such stacks for a tuple state). The accepted
    steps are listed by their start times ``step_start`` and signed sizes ``step_h``; ``h_next``
    is the step size the controller proposed after the last step (``None`` for fixed-step
    methods), which lets a following solve continue without re-estimating a first step.
    ``event_t`` is the time at which ``event_fn`` crossed zero, in event mode. ``y_last`` and
    ``f_last`` are the (flat) state after the last step and the first slope of the step that
    would follow (``None`` when not yet evaluated): the checkpoint replay chains its segments
    with them.
    """
    t: torch.Tensor | None
    ys: Any   # a tensor; odesolve hands back a tuple of them for a tuple state
    step_start: list[float] = field(default_factory=list)
    step_h: list[float] = field(default_factory=list)
    h_next: float | None = None
    stats: PassStats = field(default_factory=PassStats)
    event_t: torch.Tensor | None = None
    y_last: torch.Tensor | None = field(default=None, repr=False)
    f_last: torch.Tensor | None = field(default=None, repr=False)

    @property
    def step_t(self) -> list[float]:
        """The 0.2 name of :attr:`step_start` (not ``options["step_t"]``, the times every step
        must end on)."""
        return self.step_start

    @property
    def n_steps(self) -> int:
        return len(self.step_h)

    def step_arrays(self) -> dict[str, np.ndarray]:
        """The accepted steps as numpy arrays: start times ``t`` and sizes ``h``."""
        return {"t": np.asarray(self.step_start, dtype=float),
                "h": np.asarray(self.step_h, dtype=float)}
