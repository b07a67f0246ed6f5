"""``nodelib.densities`` moved to nodelib.data.densities and nodelib.data.samples in nodelib 0.3.

This module only re-exports the old names, so that ``from nodelib.densities import ...`` in
notebooks and user code keeps working. New code should import from the new home.
"""
from .data.densities import (
                             ENERGIES,
                             ENERGY_NAMES,
                             energy,
                             energy_u1,
                             energy_u2,
                             energy_u3,
                             energy_u4,
                             log_normalizer,
                             log_soft_box,
                             target_log_prob,
)
from .data.samples import DATASETS, two_circles, two_moons

__all__ = ["DATASETS", "ENERGIES", "ENERGY_NAMES", "energy", "energy_u1", "energy_u2",
           "energy_u3", "energy_u4", "log_normalizer", "log_soft_box", "target_log_prob",
           "two_circles", "two_moons"]
