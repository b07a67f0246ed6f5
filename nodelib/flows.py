"""``nodelib.flows`` moved to nodelib.models.flows and nodelib.models.traces in nodelib 0.3.

This module only re-exports the old names, so that ``from nodelib.flows import ...`` in
notebooks and user code keeps working. New code should import from the new home.
"""
from .models.flows import (
                           CNF,
                           CNFDynamics,
                           PlanarCNFField,
                           PlanarFlow,
                           PlanarNF,
                           standard_normal_log_prob,
)
from .models.traces import NOISE_KINDS, TRACE_METHODS, exact_trace, hutchinson_trace, sample_noise

__all__ = [
                           "CNF",
                           "NOISE_KINDS",
                           "TRACE_METHODS",
                           "CNFDynamics",
                           "PlanarCNFField",
                           "PlanarFlow",
                           "PlanarNF",
                           "exact_trace",
                           "hutchinson_trace",
                           "sample_noise",
                           "standard_normal_log_prob",
]
