"""What a solve returns: the states at the output times and how the solver got there."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .stats import PassStats


@dataclass
class Solution:
    """The result of one solve (see :func:`nodelib.odesolve`).

    ``ys[i]`` is the state at ``t[i]`` (a tuple of such stacks for a tuple state). The accepted
    steps are listed by their start times ``step_t`` and signed sizes ``step_h``; ``h_next`` is
    the step size the controller proposed after the last step (``None`` for fixed-step methods),
    which lets a following solve continue without re-estimating a first step. ``event_t`` is the
    time at which ``event_fn`` crossed zero, in event mode.
    """
    t: torch.Tensor
    ys: torch.Tensor | tuple[torch.Tensor, ...]
    step_t: list[float] = field(default_factory=list)
    step_h: list[float] = field(default_factory=list)
    h_next: float | None = None
    stats: PassStats = field(default_factory=PassStats)
    event_t: torch.Tensor | None = None

    @property
    def n_steps(self) -> int:
        return len(self.step_h)

    def step_arrays(self) -> dict[str, np.ndarray]:
        """The accepted steps as numpy arrays: start times ``t`` and sizes ``h``."""
        return {"t": np.asarray(self.step_t, dtype=float),
                "h": np.asarray(self.step_h, dtype=float)}
