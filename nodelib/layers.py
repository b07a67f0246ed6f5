"""``nodelib.layers`` moved to nodelib.models.blocks and nodelib.models.fields in nodelib 0.3.

This module only re-exports the old names, so that ``from nodelib.layers import ...`` in
notebooks and user code keeps working. New code should import from the new home.
"""
from .models.blocks import ODEBlock, ResidualBlock
from .models.fields import ConcatConv2d, ConvField, MLPField

__all__ = ["ConcatConv2d", "ConvField", "MLPField", "ODEBlock", "ResidualBlock"]
