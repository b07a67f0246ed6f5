"""``method="scipy_solver"``: a thin wrapper over :func:`scipy.integrate.solve_ivp`, as
torchdiffeq's — for comparing nodelib's solvers with scipy's on the same problem.

``options={"solver": "RK45" | "RK23" | "DOP853" | "Radau" | "BDF" | "LSODA"}`` (default
``"LSODA"``, as torchdiffeq), plus ``min_step`` and ``max_step``; ``rtol``/``atol`` go to scipy
unchanged. scipy steps on NumPy float64 arrays on the CPU: every evaluation of f copies the state
to y0's device and dtype and back, under ``torch.no_grad()``.

No gradients through the solve: scipy's steps are outside autograd. An output of
:func:`nodelib.odeint` that would need one raises a clear error when backpropagated
(:mod:`nodelib.gradients.backprop`; torchdiffeq returns outputs that silently have no
gradient). :func:`nodelib.odeint_adjoint` works: its backward pass solves the adjoint ODE with
scipy too (``strategy="backsolve"``). No events, no step callbacks (a func that defines
callbacks gets a warning, as from torchdiffeq).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..errors import ODESolverError
from .solution import Solution

if TYPE_CHECKING:   # (problem.py imports config.py, which imports this module)
    from .problem import Problem

SCIPY_METHOD = "scipy_solver"
SCIPY_SOLVERS = ("RK45", "RK23", "DOP853", "Radau", "BDF", "LSODA")
SCIPY_OPTIONS = {"solver", "min_step", "max_step"}


@dataclass(frozen=True)
class ScipySettings:
    """What ``solve_ivp`` is called with besides the problem."""
    solver: str = "LSODA"
    rtol: float = 1e-7
    atol: float = 1e-9
    min_step: float = 0.0
    max_step: float = math.inf


def scipy_settings(rtol: float, atol: float, options: dict) -> ScipySettings:
    """Check ``options`` (tolerances already checked) → :class:`ScipySettings`."""
    unknown = set(options) - SCIPY_OPTIONS - {"norm"}   # (norm: ignored, as by torchdiffeq)
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(unknown)} for method 'scipy_solver'; it "
                         f"accepts {sorted(SCIPY_OPTIONS)}")
    solver = options.get("solver", "LSODA")
    if solver not in SCIPY_SOLVERS:
        raise ValueError(f"options['solver'] must be one of scipy's {', '.join(SCIPY_SOLVERS)} "
                         f"for method 'scipy_solver', got {solver!r}")
    min_step, max_step = float(options.get("min_step", 0.0)), float(options.get("max_step",
                                                                                math.inf))
    if not 0.0 <= min_step <= max_step or not max_step > 0:
        raise ValueError(f"options 'min_step' and 'max_step' must satisfy 0 <= min_step <= "
                         f"max_step and max_step > 0, got {min_step} and {max_step}")
    return ScipySettings(solver, rtol, atol, min_step, max_step)


def scipy_solve(func, y0: torch.Tensor, t: torch.Tensor, settings: ScipySettings, stats,
                callbacks=None) -> torch.Tensor:
    """The states at every ``t`` (shape ``(len(t), *y0.shape)``, y0's device and dtype) by
    ``solve_ivp``; ``stats.nfe`` gets scipy's count (it reports no steps)."""
    from scipy.integrate import solve_ivp  # (scipy only for this method)

    if callbacks is not None:
        warnings.warn("method 'scipy_solver' never calls the step callbacks of func "
                      "(callback_step, callback_accept_step, callback_reject_step)", stacklevel=4)
    if y0.is_complex():
        raise TypeError("method 'scipy_solver' needs a real state, got dtype "
                        f"{y0.dtype} (scipy's implicit solvers are real only)")
    times = t.detach().cpu().double().numpy()
    if len(times) == 1:
        return y0.detach().unsqueeze(0).clone()
    dtype, device, shape = y0.dtype, y0.device, y0.shape

    def f(s: float, y: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = func(torch.tensor(s, dtype=dtype, device=device),
                       torch.as_tensor(y, device=device).to(dtype).reshape(shape))
        return out.detach().cpu().double().numpy().reshape(-1)

    # (min_step only when set: scipy warns that only LSODA uses it)
    extra = {"min_step": settings.min_step} if settings.min_step > 0 else {}
    result = solve_ivp(f, (times[0], times[-1]), y0.detach().cpu().double().numpy().reshape(-1),
                       method=settings.solver, t_eval=times, rtol=settings.rtol,
                       atol=settings.atol, max_step=settings.max_step, **extra)
    stats.nfe += int(result.nfev)
    if not result.success or result.y.shape[1] != len(times):
        raise ODESolverError(f"scipy's solve_ivp ({settings.solver}) failed: {result.message}")
    ys = torch.as_tensor(result.y.T.copy()).to(device=device, dtype=dtype)
    return ys.reshape(len(times), *shape)


def scipy_solution(problem: Problem, stats, event_fn=None) -> Solution:
    """A prepared problem solved by scipy (the integrate loop's counterpart for this method)."""
    if event_fn is not None:
        raise ValueError("method 'scipy_solver' does not handle events (event_fn); use a "
                         "nodelib method such as 'dopri5'")
    assert problem.config.scipy is not None
    ys = scipy_solve(problem.func, problem.y0, problem.t, problem.config.scipy, stats,
                     problem.callbacks)
    return Solution(t=problem.t, ys=ys, stats=stats)   # (odeint ties ys to its inputs)


__all__ = ["SCIPY_METHOD", "SCIPY_SOLVERS", "ScipySettings", "scipy_settings", "scipy_solution",
           "scipy_solve"]
