"""Layer 3, stochastic differential equations, above the gradients and below the models.

The same path as an ODE solve, one concept per module:

* :mod:`~nodelib.sde.bridge` and :mod:`~nodelib.sde.brownian`: a Brownian sample path fixed
  by one seed, refined where it is queried, returning the same increment whenever asked;
* :mod:`~nodelib.sde.functions`: the user's SDE object (torchsde's convention) behind one
  interface, its shapes checked once;
* :mod:`~nodelib.sde.steppers`, :mod:`~nodelib.sde.srk`: one step of each method (Euler–
  Maruyama, Milstein, SRK, midpoint, Heun, Euler–Heun, reversible Heun, log-ODE midpoint);
  :mod:`~nodelib.sde.methods`: the methods as data (which SDEs each solves, its orders);
* :mod:`~nodelib.sde.integrate`: the time grid and the loop;
* :mod:`~nodelib.sde.sdeint`: ``sdeint`` (backprop through the steps);
  :mod:`~nodelib.sde.adjoint`: ``sdeint_adjoint`` (the stochastic adjoint, and the exact
  reversal of reversible Heun); :mod:`~nodelib.sde.logqp`: the KL term of a latent SDE;
  :mod:`~nodelib.sde.adaptive`: ``adaptive=True`` (step doubling).

Where nodelib differs from torchsde (0.2.6), on purpose or not yet:

* the grid steps onto every output time instead of interpolating between steps (the same grid
  when the outputs are multiples of ``dt``), and the adjoint retraces the forward grid, so
  reversible Heun's adjoint is exact for any ``ts`` and with ``adaptive=True``;
* Brownian motion: only the Brownian interval (no ``BrownianPath`` or ``BrownianTree``:
  ``halfway_tree=True`` plays the virtual tree's part, a path that depends on the seed alone,
  in O(1) memory); a query outside ``[t0, t1]`` is an error, not a warning and a clamp;
* methods: Milstein, SRK and the log-ODE method cannot solve the adjoint SDE (its noise is
  general and its diffusion is never formed), so the default ``adjoint_method`` after Itô
  Milstein is Euler–Maruyama;
* errors are raised before the first step, and an Itô-only method given a Stratonovich SDE
  (or the reverse) is refused before any warning about adaptive steps.
"""
from __future__ import annotations

from .adjoint import sdeint_adjoint
from .brownian import LEVY_AREA_APPROXIMATIONS, BrownianInterval
from .methods import METHODS as SDE_METHODS
from .methods import SDEMethod, default_method
from .sdeint import sdeint

__all__ = ["LEVY_AREA_APPROXIMATIONS", "SDE_METHODS", "BrownianInterval", "SDEMethod",
           "default_method", "sdeint", "sdeint_adjoint"]
