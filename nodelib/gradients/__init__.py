"""Layer 2, how a solve is differentiated, above the solvers and below the models.

* :mod:`~nodelib.gradients.backprop`: ``odeint``/``odesolve``, backpropagation through the
  solver's operations, plus ``odeint_per_sample``;
* :mod:`~nodelib.gradients.adjoint`: ``odeint_adjoint`` and its strategies,
  :mod:`~nodelib.gradients.backsolve` (the continuous adjoint) and
  :mod:`~nodelib.gradients.checkpoint` (the exact gradient of the discrete solve, replayed);
* :mod:`~nodelib.gradients.time_gradient`: the gradient with respect to the output times;
* :mod:`~nodelib.gradients.events`: ``odeint_event``, the gradient through an event time.

This module is also the one switch for how a model's solve is differentiated, shared by every
model in nodelib.

``gradient="backprop"`` differentiates through the solver's operations (:func:`nodelib.odeint`:
exact gradients of the discrete solve, memory growing with the steps); an adjoint strategy such
as ``"backsolve"`` uses :func:`nodelib.odeint_adjoint` (memory flat in the steps). Models take
``adjoint=True/False`` for short: ``True`` means ``"backsolve"``.
"""
from __future__ import annotations

from .adjoint import STRATEGIES, odeint_adjoint
from .backprop import odeint, odesolve
from .events import odeint_event

GRADIENTS = ("backprop",) + STRATEGIES

__all__ = ["GRADIENTS", "STRATEGIES", "gradient_mode", "odeint", "odeint_adjoint", "odeint_event",
           "odesolve", "solve_with_gradient"]


def gradient_mode(adjoint) -> str:
    """``True``/``False`` or a name from :data:`GRADIENTS` → the name."""
    if adjoint is True:
        return "backsolve"
    if adjoint is False or adjoint is None:
        return "backprop"
    if adjoint not in GRADIENTS:
        raise ValueError(f"unknown gradient mode {adjoint!r}; choose one of {GRADIENTS}")
    return adjoint


def solve_with_gradient(func, y0, t, *, gradient, adjoint_options=None, adjoint_params=None,
                        **kwargs):
    """``odeint`` or ``odeint_adjoint(strategy=gradient)``; ``kwargs`` go to either."""
    gradient = gradient_mode(gradient)
    if gradient == "backprop":
        return odeint(func, y0, t, **kwargs)
    return odeint_adjoint(func, y0, t, strategy=gradient, adjoint_options=adjoint_options,
                          adjoint_params=adjoint_params, **kwargs)
