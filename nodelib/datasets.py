"""``nodelib.datasets`` moved to nodelib.data.toy and nodelib.data.systems in nodelib 0.3.

This module only re-exports the old names, so that ``from nodelib.datasets import ...`` in
notebooks and user code keeps working. New code should import from the new home.
"""
from .data.systems import (
                           SPIRAL_A,
                           DampedPendulum,
                           Observations,
                           SpiralField,
                           observe,
                           spiral_trajectory,
)
from .data.toy import flip_1d, nested_spheres, nested_spheres_target, uniform_shell

__all__ = ["SPIRAL_A", "DampedPendulum", "Observations", "SpiralField", "flip_1d",
           "nested_spheres", "nested_spheres_target", "observe", "spiral_trajectory",
           "uniform_shell"]
