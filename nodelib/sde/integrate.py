"""The fixed-step loop of an SDE solve: a time grid, one Brownian query and one step per
interval of it.

The grid: from each output time ``ts[i]``, steps of ``dt`` until ``ts[i+1]``, the last one
shortened to land on it (a remainder below ``1e-6·dt`` is rounding, not a step, and is merged
into the step before). Every output is therefore a solver state, never an interpolation; when
the outputs are multiples of ``dt`` the grid is torchsde's. A reader following one
Euler–Maruyama step: :func:`integrate` asks ``bm(t_k, t_k+1)`` for the increment
(:class:`~nodelib.sde.brownian.BrownianInterval`), then calls the method's stepper
(:func:`nodelib.sde.steppers.euler`), which evaluates ``f`` and ``g`` through
:class:`~nodelib.sde.functions.SDEFunctions`.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch

from ..errors import NonFiniteError
from .methods import SDEMethod

_MERGE = 1e-6   # a last step shorter than this fraction of dt is rounding error


@dataclass
class Grid:
    """The step times (Python floats, for the Brownian motion), the same as a tensor (for
    ``f`` and ``g``), and where on the grid each output time sits."""
    times: list[float]
    tensor: torch.Tensor
    outputs: list[int]


def make_grid(ts: torch.Tensor, dt: float) -> Grid:
    points = ts.tolist()   # one host sync for the whole solve
    if not (isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0):
        raise ValueError(f"dt must be a positive finite number, got {dt!r}")
    times, outputs = [points[0]], [0]
    for a, b in itertools.pairwise(points):
        t = a
        while b - t > _MERGE * dt:
            t = t + dt if b - (t + dt) > _MERGE * dt else b
            times.append(t)
        outputs.append(len(times) - 1)
    tensor = torch.tensor(times, dtype=ts.dtype, device=ts.device)
    return Grid(times, tensor, outputs)


def query(bm, method: SDEMethod, a: float, b: float):
    """The Brownian increment over ``[a, b]`` (and ``U`` or ``A`` for a method that needs
    it)."""
    if method.levy_area == "space-time":
        return bm(a, b, return_U=True)
    if method.levy_area == "foster":
        return bm(a, b, return_A=True)
    return bm(a, b)


def integrate(sde, y0: torch.Tensor, grid: Grid, bm, method: SDEMethod, options: dict,
              state=None):
    """Step ``y0`` over the whole grid; return the states at the output times, stacked, and
    the method's final state (reversible Heun's ``(f, g, z)``)."""
    times, tt = grid.times, grid.tensor.unbind(0)
    step = method.step
    kwargs = {k: options[k] for k in method.options if k in options}
    if state is None:
        state = method.init(sde, tt[0], y0) if method.init is not None else ()
    outputs, y = [y0], y0
    next_output = 1
    for k in range(len(times) - 1):
        noise = query(bm, method, times[k], times[k + 1])
        y, state = step(sde, tt[k], tt[k + 1], times[k + 1] - times[k], y, noise, state,
                        **kwargs)
        if next_output < len(grid.outputs) and grid.outputs[next_output] == k + 1:
            outputs.append(y)
            next_output += 1
    ys = torch.stack(outputs)
    check_finite(ys, [times[i] for i in grid.outputs], sde)
    return ys, state


def check_finite(ys: torch.Tensor, out_times: list[float], sde) -> None:
    """One check (one host sync) for the whole solve; the first bad output is named, and if
    ``f`` or ``g`` is already NaN/inf at the last good output, that is said instead."""
    finite = torch.isfinite(ys.detach().reshape(len(ys), -1)).all(dim=1)
    if bool(finite.all()):
        return
    i = int((~finite).nonzero()[0])
    t_bad, t_good = out_times[i], out_times[max(i - 1, 0)]
    t = torch.tensor(t_good, dtype=ys.dtype, device=ys.device)
    y = ys[max(i - 1, 0)]
    with torch.no_grad():   # (an sde given by g_prod alone has no g to check)
        values = [("f", sde.f(t, y))] + ([("g", sde.g(t, y))] if sde.has_g else [])
    for name, value in values:
        if not bool(torch.isfinite(value).all()):
            raise NonFiniteError(f"{name}(t, y) returned NaN/inf at t={t_good:.6g}; the "
                                 f"solution is NaN/inf from t={t_bad:.6g}")
    raise NonFiniteError(f"the SDE solution became NaN/inf between t={t_good:.6g} and "
                         f"t={t_bad:.6g} (output index {i}); a smaller dt may help")
