"""Layer 4, training helpers: loops that record the solver's cost, windows of observed
trajectories, and progress bars.

``nodelib.training`` was a module in 0.2; its names are all still importable from here.
"""
from ..gradients.backprop import odeint_per_sample
from .loops import FitHistory, History, fit, fit_trajectories
from .progress import progress
from .windows import Windows, as_trajectories, sample_windows

__all__ = ["FitHistory", "History", "Windows", "as_trajectories", "fit", "fit_trajectories",
           "odeint_per_sample", "progress", "sample_windows"]
