"""``nodelib.stiffness`` moved to nodelib.solvers.stiffness in nodelib 0.3.

This module only re-exports the old names, so that ``from nodelib.stiffness import ...`` in
notebooks and user code keeps working. New code should import from the new home.
"""
from .solvers.stiffness import StiffnessDetector, real_stability_boundary

__all__ = ["StiffnessDetector", "real_stability_boundary"]
