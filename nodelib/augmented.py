"""``nodelib.augmented`` moved to nodelib.models.blocks and nodelib.training.loops in nodelib 0.3.

This module only re-exports the old names, so that ``from nodelib.augmented import ...`` in
notebooks and user code keeps working. New code should import from the new home.
"""
from .models.blocks import AugmentedNeuralODE, AugmentedODEBlock, augment
from .training.loops import History, fit

__all__ = ["AugmentedNeuralODE", "AugmentedODEBlock", "History", "augment", "fit"]
