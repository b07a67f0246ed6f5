"""``nodelib.newton`` moved to nodelib.solvers.newton in nodelib 0.3.

This module only re-exports the old names, so that ``from nodelib.newton import ...`` in
notebooks and user code keeps working. New code should import from the new home.
"""
from .solvers.newton import Newton, NewtonFailure, implicit_stage, jacobian

__all__ = ["Newton", "NewtonFailure", "implicit_stage", "jacobian"]
