"""``adaptive=True``: the step size chosen by step doubling, as in torchsde.

Each attempt takes one step of size h and two of size h/2 over the same interval, on the same
Brownian path (the Brownian interval refines itself at the midpoint). Their difference estimates
the error of the two half steps, scaled per component by ``atol + rtol·|y|``; its RMS below 1
accepts the two half steps. The next step is ``h · safety · error^(-1/(p + ½))`` (clipped to
[0.2, 1.4] times h, never growing after a rejection), where p is the method's strong order: the
local error of a strong-order-p method scales like h^(p + ½). Steps end on every output time.
Steps shorter than ``dt_min`` are accepted whatever their error (with a warning).

The steps depend on the path, and the path on the order in which points were first queried:
a repeated solve on the same Brownian interval makes the same queries, gets the same (kept)
answers and takes the same steps; so does a solve on a fresh interval with the same seed.

Note: Euler–Maruyama with adaptive steps chosen from the path itself can converge to the wrong
solution for non-additive noise (Gaines & Lyons 1997); torchsde warns about it, and so does this.
"""
from __future__ import annotations

import warnings

import torch

from .integrate import Grid, check_finite, query
from .methods import SDEMethod

SAFETY, SHRINK_MOST, GROW_MOST = 0.9, 0.2, 1.4


def integrate_adaptive(sde, y0: torch.Tensor, ts: torch.Tensor, bm, method: SDEMethod,
                       options: dict, dt: float, rtol: float, atol: float, dt_min: float,
                       state=None):
    """Like :func:`~nodelib.sde.integrate.integrate` with the step chosen as it goes; also
    returns the :class:`~nodelib.sde.integrate.Grid` of the steps taken (the accepted half
    steps; the adjoint retraces them)."""
    if method.name == "euler" and sde.noise_type != "additive":
        warnings.warn("adaptive Euler–Maruyama is not guaranteed to converge to the right "
                      "solution for non-additive noise", stacklevel=3)
    order = method.strong_order_additive if sde.noise_type == "additive" else method.strong_order
    exponent = -1.0 / (order + 0.5)
    kwargs = {k: options[k] for k in method.options if k in options}
    points = ts.tolist()
    as_time = lambda t: torch.tensor(t, dtype=ts.dtype, device=ts.device)
    if state is None:
        state = method.init(sde, ts[0], y0) if method.init is not None else ()
    y, h, times, outputs, ys = y0, float(dt), [points[0]], [0], [y0]

    def step(a, b, y, state):
        return method.step(sde, as_time(a), as_time(b), b - a, y, query(bm, method, a, b),
                           state, **kwargs)

    for target in points[1:]:
        t = times[-1]
        while t < target:
            b = min(t + h, target)
            mid = 0.5 * (t + b)
            full, _ = step(t, b, y, state)
            half, half_state = step(t, mid, y, state)
            two, two_state = step(mid, b, half, half_state)
            scale = atol + rtol * torch.maximum(full.abs(), two.abs())
            error = float(((full - two) / scale).detach().pow(2).mean().sqrt())
            too_small = b - t <= dt_min
            if error <= 1 or too_small:
                if too_small and error > 1:
                    warnings.warn(f"adaptive SDE step at the minimum dt_min={dt_min:g} at "
                                  f"t={t:.6g} (error ratio {error:.3g})", stacklevel=3)
                t, y, state = b, two, two_state
                times += [mid, b]   # the steps taken: the two halves
            if error != error:   # NaN: name the time
                check_finite(torch.stack([y, full, two]), [t, b, b], sde)
            grow = SAFETY * max(error, 1e-10) ** exponent
            h = (b - t if error > 1 else h) * min(GROW_MOST if error <= 1 else 1.0,
                                                  max(SHRINK_MOST, grow))
            h = max(h, dt_min)
        outputs.append(len(times) - 1)
        ys.append(y)
    out = torch.stack(ys)
    check_finite(out, points, sde)
    tensor = torch.tensor(times, dtype=ts.dtype, device=ts.device)
    return out, state, Grid(times, tensor, outputs)
