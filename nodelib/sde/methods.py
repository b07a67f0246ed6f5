"""The SDE methods as data: which SDEs each one solves, what it needs from the Brownian motion,
its orders of convergence, and its stepper (:mod:`nodelib.sde.steppers`,
:mod:`nodelib.sde.srk`).

A method refuses, before the first step, an SDE it would solve wrongly: Euler–Maruyama applied
to a Stratonovich SDE converges — to the Itô solution of the same ``f`` and ``g``, which is a
different process. ``default_method`` is torchsde's choice.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from . import srk, steppers

_ALL_NOISE = ("diagonal", "additive", "scalar", "general")
_COMMUTATIVE = ("diagonal", "additive", "scalar")


@dataclass(frozen=True)
class SDEMethod:
    """An SDE method: its name, the SDE types and noise types it solves, the Lévy area it needs
    (``"none"``, ``"space-time"``, or ``"foster"``: an approximate full area, Davie's or
    Foster's), its strong order (general, additive noise), weak order,
    its stepper and, for a method that carries state between steps, how to start it."""
    name: str
    sde_types: tuple[str, ...]
    noise_types: tuple[str, ...]
    strong_order: float
    strong_order_additive: float
    weak_order: float
    step: Callable
    levy_area: str = "none"
    init: Callable | None = None
    options: tuple[str, ...] = ()

    def check(self, sde_type: str, noise_type: str) -> None:
        if sde_type not in self.sde_types:
            others = [m.name for m in METHODS.values()
                      if sde_type in m.sde_types and noise_type in m.noise_types]
            raise ValueError(f"method {self.name!r} solves {' and '.join(self.sde_types)} "
                             f"SDEs, not {sde_type!r} ones (it would converge to the solution "
                             f"of a different SDE); for this SDE use one of {', '.join(others)}")
        if noise_type not in self.noise_types:
            raise ValueError(f"method {self.name!r} handles noise types "
                             f"{', '.join(self.noise_types)}, not {noise_type!r}")


METHODS = {m.name: m for m in (
    SDEMethod("euler", ("ito",), _ALL_NOISE, 0.5, 1.0, 1.0, steppers.euler),
    SDEMethod("milstein", ("ito", "stratonovich"), _COMMUTATIVE, 1.0, 1.0, 1.0,
              steppers.milstein, options=("grad_free",)),
    SDEMethod("srk", ("ito",), _COMMUTATIVE, 1.5, 1.5, 1.5, srk.srk_step,
              levy_area="space-time"),
    SDEMethod("midpoint", ("stratonovich",), _ALL_NOISE, 0.5, 1.0, 1.0, steppers.midpoint),
    SDEMethod("heun", ("stratonovich",), _ALL_NOISE, 0.5, 1.0, 1.0, steppers.heun),
    SDEMethod("euler_heun", ("stratonovich",), _ALL_NOISE, 0.5, 1.0, 1.0, steppers.euler_heun),
    SDEMethod("log_ode", ("stratonovich",), _ALL_NOISE, 0.5, 1.0, 1.0,
              steppers.log_ode_midpoint, levy_area="foster"),
    SDEMethod("reversible_heun", ("stratonovich",), _ALL_NOISE, 0.5, 1.0, 1.0,
              steppers.reversible_heun, init=steppers.reversible_heun_init),
)}
# strong orders for the commutative noise types (diagonal, scalar, additive) of the
# Stratonovich two-stage methods are 1.0; "general" is the 0.5 above.


def default_method(sde_type: str, noise_type: str) -> str:
    """torchsde's default: SRK for Itô SDEs with commutative noise, Euler–Maruyama for Itô
    with general noise, the midpoint method for Stratonovich SDEs."""
    if sde_type == "stratonovich":
        return "midpoint"
    return "euler" if noise_type == "general" else "srk"


def get_method(name: str | None, sde_type: str, noise_type: str) -> SDEMethod:
    """The method called ``name`` (default: :func:`default_method`), checked against the SDE."""
    name = name or default_method(sde_type, noise_type)
    if name not in METHODS:
        raise ValueError(f"unknown SDE method {name!r}; known: {', '.join(METHODS)}")
    method = METHODS[name]
    method.check(sde_type, noise_type)
    return method
