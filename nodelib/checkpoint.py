"""``nodelib.checkpoint`` moved to nodelib.gradients.checkpoint in nodelib 0.3.

This module only re-exports the old names, so that ``from nodelib.checkpoint import ...`` in
notebooks and user code keeps working. New code should import from the new home.
"""
from .gradients.checkpoint import DEFAULT_CHECKPOINTS, Checkpoints

__all__ = ["DEFAULT_CHECKPOINTS", "Checkpoints"]
