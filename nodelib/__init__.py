"""nodelib: small, tested ODE solvers and the adjoint method in PyTorch.

    from nodelib import odeint, odeint_adjoint, SolverStats

Data flows one way: Butcher tableaux → one Runge–Kutta stepper → fixed-grid and adaptive
integrators → ``odeint`` (backprop through the solver) and ``odeint_adjoint`` (the continuous
adjoint, Algorithm 2 of Chen et al. 2018).
"""
from .adjoint import odeint_adjoint
from .errors import MaxStepsExceededError, NonFiniteError, ODESolverError, StepSizeUnderflowError
from .odeint import odeint
from .stats import PassStats, SolverStats, StepRecord
from .tableaux import ADAPTIVE_METHODS, FIXED_STEP_METHODS, TABLEAUX, ButcherTableau

METHODS = tuple(TABLEAUX)

__all__ = [
    "odeint", "odeint_adjoint", "SolverStats", "PassStats", "StepRecord", "METHODS",
    "TABLEAUX", "FIXED_STEP_METHODS", "ADAPTIVE_METHODS", "ButcherTableau", "ODESolverError",
    "StepSizeUnderflowError", "MaxStepsExceededError", "NonFiniteError",
]
__version__ = "0.1.0"

from .layers import ConcatConv2d, ConvField, MLPField, ODEBlock, ResidualBlock  # noqa: E402

__all__ += ["ODEBlock", "MLPField", "ConvField", "ConcatConv2d", "ResidualBlock"]

from .densities import (ENERGY_NAMES, energy, log_normalizer, target_log_prob,  # noqa: E402
                        two_circles, two_moons)
from .flows import (CNF, CNFDynamics, PlanarCNFField, PlanarFlow, PlanarNF,  # noqa: E402
                    exact_trace, hutchinson_trace, sample_noise, standard_normal_log_prob)

__all__ += ["ENERGY_NAMES", "energy", "log_normalizer", "target_log_prob", "two_circles",
            "two_moons", "CNF", "CNFDynamics", "PlanarCNFField", "PlanarFlow", "PlanarNF",
            "exact_trace", "hutchinson_trace", "sample_noise", "standard_normal_log_prob"]

from .augmented import AugmentedNeuralODE, AugmentedODEBlock, augment  # noqa: E402
from .datasets import flip_1d, nested_spheres, nested_spheres_target  # noqa: E402

__all__ += ["AugmentedNeuralODE", "AugmentedODEBlock", "augment", "flip_1d", "nested_spheres",
            "nested_spheres_target"]

from .progress import progress  # noqa: E402

__all__ += ["progress"]

from .regularisation import (RegularisedBlock, RegularisedCNF,  # noqa: E402
                             RegularisedDynamics, frobenius_exact, frobenius_hutchinson,
                             kinetic_energy, odeint_with_penalties, steer_end_time)

__all__ += ["RegularisedBlock", "RegularisedCNF", "RegularisedDynamics", "frobenius_exact",
            "frobenius_hutchinson", "kinetic_energy", "odeint_with_penalties", "steer_end_time"]
