"""Layer 3, stochastic differential equations, above the gradients and below the models.

The same path as an ODE solve, one concept per module:

* :mod:`~nodelib.sde.bridge` and :mod:`~nodelib.sde.brownian`: a Brownian sample path fixed
  by one seed, refined where it is queried, returning the same increment whenever asked;
* :mod:`~nodelib.sde.functions`: the user's SDE object (torchsde's convention) behind one
  interface, its shapes checked once;
* :mod:`~nodelib.sde.steppers`, :mod:`~nodelib.sde.srk`: one step of each method;
  :mod:`~nodelib.sde.methods`: the methods as data (which SDEs each solves, its orders);
* :mod:`~nodelib.sde.integrate`: the time grid and the loop;
* :mod:`~nodelib.sde.sdeint`: ``sdeint`` (backprop through the steps);
  :mod:`~nodelib.sde.adjoint`: ``sdeint_adjoint`` (the stochastic adjoint, and the exact
  reversal of reversible Heun); :mod:`~nodelib.sde.logqp`: the KL term of a latent SDE.
"""
from __future__ import annotations

from .adjoint import sdeint_adjoint
from .brownian import LEVY_AREA_APPROXIMATIONS, BrownianInterval
from .methods import METHODS as SDE_METHODS
from .methods import SDEMethod, default_method
from .sdeint import sdeint

__all__ = ["LEVY_AREA_APPROXIMATIONS", "SDE_METHODS", "BrownianInterval", "SDEMethod",
           "default_method", "sdeint", "sdeint_adjoint"]
