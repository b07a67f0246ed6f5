"""``nodelib.regularisation`` moved to
nodelib.models.regularisation and nodelib.models.traces in nodelib 0.3.

This module only re-exports the old names, so that ``from nodelib.regularisation import ...`` in
notebooks and user code keeps working. New code should import from the new home.
"""
from .models.regularisation import (
                                    BUILT_IN_TERMS,
                                    FROBENIUS_METHODS,
                                    RegularisedBlock,
                                    RegularisedCNF,
                                    RegularisedDynamics,
                                    kinetic_energy,
                                    odeint_with_penalties,
                                    steer_end_time,
)
from .models.traces import frobenius_exact, frobenius_hutchinson, jacobian_rows, jacobian_vjp

__all__ = ["BUILT_IN_TERMS", "FROBENIUS_METHODS", "RegularisedBlock", "RegularisedCNF",
           "RegularisedDynamics", "frobenius_exact", "frobenius_hutchinson", "jacobian_rows",
           "jacobian_vjp", "kinetic_energy", "odeint_with_penalties", "steer_end_time"]
