"""``sdeint``: solve an SDE, differentiating by backpropagation through the solver, with
torchsde's signature, defaults and return values."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .adaptive import integrate_adaptive
from .brownian import BrownianInterval
from .functions import SDEFunctions, check_shapes
from .integrate import Grid, integrate, make_grid
from .logqp import LogqpSDE, split_logqp
from .methods import SDEMethod, get_method


@dataclass
class SDEProblem:
    """A checked solve: the SDE behind :class:`SDEFunctions` (augmented for ``logqp``), the
    initial state, the grid, the Brownian motion and the method."""
    sde: SDEFunctions
    y0: torch.Tensor
    ts: torch.Tensor
    grid: Grid
    bm: Any   # called as bm(ta, tb)
    method: SDEMethod
    options: dict
    logqp: bool
    adaptive: tuple | None = None   # (dt, rtol, atol, dt_min) for adaptive=True


def solve(problem: SDEProblem, state=None):
    """Run the loop: the fixed grid, or adaptive steps (which then become the grid)."""
    if problem.adaptive is None:
        return integrate(problem.sde, problem.y0, problem.grid, problem.bm, problem.method,
                         problem.options, state)
    dt, rtol, atol, dt_min = problem.adaptive
    ys, state, problem.grid = integrate_adaptive(
        problem.sde, problem.y0, problem.ts, problem.bm, problem.method, problem.options, dt,
        rtol, atol, dt_min, state)
    return ys, state


def prepare(sde, y0, ts, bm=None, method=None, dt=1e-3, adaptive=False, options=None,
            names=None, logqp=False, rtol=1e-5, atol=1e-4, dt_min=1e-5) -> SDEProblem:
    """Check everything once, before the first step (every error names what is wrong)."""
    functions = SDEFunctions(sde, names)
    if not torch.is_tensor(y0) or y0.dim() != 2:
        raise ValueError(f"y0 must be a tensor of shape (batch, d); got "
                         f"{tuple(y0.shape) if torch.is_tensor(y0) else type(y0).__name__}")
    if not torch.is_tensor(ts):
        ts = torch.tensor(ts, dtype=y0.dtype, device=y0.device)
    if ts.dim() != 1 or len(ts) < 1:
        raise ValueError(f"ts must be a 1-D tensor of times, got shape {tuple(ts.shape)}")
    if ts.requires_grad:
        raise ValueError("gradients with respect to ts are not supported (as in torchsde); "
                         "pass ts.detach()")
    if len(ts) > 1 and not bool((ts[1:] > ts[:-1]).all()):
        bad = int((ts[1:] <= ts[:-1]).nonzero()[0])
        raise ValueError(f"ts must be strictly increasing; ts[{bad + 1}] = "
                         f"{float(ts[bad + 1]):.6g} <= ts[{bad}] = {float(ts[bad]):.6g}")
    if logqp:
        functions = SDEFunctions(LogqpSDE(functions))
        y0 = torch.cat([y0, y0.new_zeros(y0.shape[0], 1)], dim=1)
    channels = tuple(getattr(bm, "shape", ()))[-1:] if bm is not None else ()
    m = check_shapes(functions, ts[0], y0, channels[0] if channels else None)
    chosen = get_method(method, functions.sde_type, functions.noise_type)
    if bm is None:   # (one output time: no step, but the interval needs t0 < t1)
        t1 = ts[-1] if len(ts) > 1 else ts[0] + 1
        bm = BrownianInterval(t0=ts[0], t1=t1, size=(y0.shape[0], m), dtype=y0.dtype,
                              device=y0.device, levy_area_approximation=chosen.levy_area)
    else:
        _check_brownian(bm, chosen, (y0.shape[0], m))
    grid = make_grid(ts, float(dt))
    return SDEProblem(functions, y0, ts, grid, bm, chosen, dict(options or {}), logqp,
                      (float(dt), float(rtol), float(atol), float(dt_min)) if adaptive else None)


def _check_brownian(bm, method: SDEMethod, size: tuple) -> None:
    shape = tuple(getattr(bm, "shape", size))
    if shape != size:
        raise ValueError(f"bm has shape {shape}, the SDE needs (batch, m) = {size}")
    have = getattr(bm, "levy_area_approximation", "none")
    if method.levy_area == "space-time" and have == "none":
        raise ValueError(f"method {method.name!r} needs the space-time Lévy area: create the "
                         f"Brownian motion with levy_area_approximation='space-time'")
    if method.levy_area == "foster" and have not in ("davie", "foster"):
        raise ValueError(f"method {method.name!r} needs a Lévy area: create the Brownian "
                         f"motion with levy_area_approximation='davie' or 'foster'")


def sdeint(sde, y0, ts, bm=None, method: str | None = None, dt: float = 1e-3,
           adaptive: bool = False, rtol: float = 1e-5, atol: float = 1e-4,
           dt_min: float = 1e-5, options: dict | None = None, names: dict | None = None,
           logqp: bool = False, extra: bool = False, extra_solver_state=None, **unused):
    """Solve the SDE ``dy = f(t, y) dt + g(t, y) dW`` (Itô or Stratonovich) from
    ``y(ts[0]) = y0`` and return the states at every ``ts[i]``; torchsde's API.

    Args:
        sde: an object with ``f(t, y)`` (drift, shape ``(batch, d)``), ``g(t, y)`` (diffusion;
            ``(batch, d)`` for diagonal noise, ``(batch, d, m)`` otherwise),
            ``noise_type`` (``"diagonal"``, ``"additive"``, ``"scalar"``, ``"general"``) and
            ``sde_type`` (``"ito"``, ``"stratonovich"``); see :mod:`nodelib.sde.functions`.
        y0: initial state, shape ``(batch, d)``.
        ts: strictly increasing output times (a tensor or a list of floats).
        bm: the Brownian motion, called as ``bm(ta, tb)`` (default: a new
            :class:`~nodelib.BrownianInterval` on ``[ts[0], ts[-1]]``, seeded from torch's
            global generator).
        method: ``"euler"``, ``"milstein"``, ``"srk"`` (Itô); ``"milstein"``, ``"midpoint"``,
            ``"heun"``, ``"euler_heun"``, ``"reversible_heun"``, ``"log_ode"``
            (Stratonovich); default as
            torchsde: ``"srk"`` for Itô SDEs with diagonal/additive/scalar noise,
            ``"euler"`` for Itô with general noise, ``"midpoint"`` for Stratonovich.
        dt: the step (see :mod:`nodelib.sde.integrate` for the grid), or the first step with
            ``adaptive=True``.
        options: method options, e.g. ``{"grad_free": True}`` for Milstein.
        names: other names for the sde's methods, e.g. ``{"drift": "f_post"}`` (keys
            ``drift``, ``diffusion``, ``prior_drift``, ``drift_and_diffusion``).
        logqp: also return the KL increments of :mod:`nodelib.sde.logqp` (needs ``sde.h``).
        extra: also return the method's final state (reversible Heun's ``(f, g, z)``).
        extra_solver_state: start the method from this state instead of its default.
        adaptive, rtol, atol, dt_min: step-size control by step doubling
            (:mod:`nodelib.sde.adaptive`).

    Returns:
        ``ys`` of shape ``(len(ts), batch, d)`` on ``y0``'s device and dtype; with ``logqp``,
        ``(ys, log_ratio)`` where ``log_ratio`` has shape ``(len(ts) - 1, batch)``; with
        ``extra``, the method's state appended.

    Gradients reach ``y0`` and everything ``f`` and ``g`` use, by backpropagation through the
    steps (memory grows with the number of steps; see :func:`nodelib.sdeint_adjoint`).
    """
    _no_unknown(unused, "sdeint")
    problem = prepare(sde, y0, ts, bm, method, dt, adaptive, options, names, logqp, rtol, atol,
                      dt_min)
    ys, state = solve(problem, _as_state(extra_solver_state))
    return finish(ys, state, logqp, extra)


def _as_state(extra_solver_state):
    return tuple(extra_solver_state) if extra_solver_state is not None else None


def finish(ys, state, logqp: bool, extra: bool):
    """torchsde's return value: ``ys``, then the log-ratio (``logqp``), then the state."""
    out = list(split_logqp(ys)) if logqp else [ys]
    if extra:
        out.append(state)
    return out[0] if len(out) == 1 else tuple(out)


def _no_unknown(unused: dict, name: str) -> None:
    if unused:
        raise TypeError(f"{name}() got unexpected keyword arguments: {', '.join(unused)}")
