"""nodelib: small, tested ODE solvers and the adjoint method in PyTorch.

    from nodelib import odeint, odeint_adjoint, SolverStats

Data flows one way: problem + options → a frozen config (:mod:`nodelib.config`) → Butcher
tableaux → one Runge–Kutta stepper → a step-size controller object → fixed-grid and adaptive
integrators returning a :class:`Solution` → ``odeint`` (backprop through the solver),
``odeint_adjoint`` (adjoint strategies; ``"backsolve"`` is Algorithm 2 of Chen et al. 2018) and
events → models, which share one gradient switch (:mod:`nodelib.gradients`).
"""
from .adjoint import STRATEGIES, odeint_adjoint
from .control import IController, PIController, PIDController, StepSizeController
from .errors import MaxStepsExceededError, NonFiniteError, ODESolverError, StepSizeUnderflowError
from .events import odeint_event
from .gradients import GRADIENTS, solve_with_gradient
from .odeint import odeint, odesolve
from .solution import Solution
from .stats import PassStats, SolverStats, StepRecord
from .tableaux import ADAPTIVE_METHODS, FIXED_STEP_METHODS, TABLEAUX, ButcherTableau

METHODS = tuple(TABLEAUX)

__all__ = [
    "odeint", "odeint_adjoint", "odesolve", "odeint_event", "Solution", "SolverStats",
    "PassStats", "StepRecord", "METHODS", "TABLEAUX", "FIXED_STEP_METHODS", "ADAPTIVE_METHODS",
    "ButcherTableau", "ODESolverError", "StepSizeUnderflowError", "MaxStepsExceededError",
    "NonFiniteError", "StepSizeController", "IController", "PIController", "PIDController",
    "STRATEGIES", "GRADIENTS", "solve_with_gradient",
]
__version__ = "0.2.0"

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

from .datasets import (DampedPendulum, Observations, SpiralField, observe,  # noqa: E402
                       spiral_trajectory)
from .training import (FitHistory, Windows, fit_trajectories,  # noqa: E402
                       odeint_per_sample, sample_windows)

__all__ += ["DampedPendulum", "Observations", "SpiralField", "observe", "spiral_trajectory",
            "FitHistory", "Windows", "fit_trajectories", "odeint_per_sample", "sample_windows"]

from .latent import (ELBO, GapRNN, LatentODE, MLPDynamics, ODERNN,  # noqa: E402
                     RecognitionRNN, SpiralData, gaussian_kl, gaussian_log_likelihood,
                     observation_mask, reparameterize, spirals, union_grid)

__all__ += ["ELBO", "GapRNN", "LatentODE", "MLPDynamics", "ODERNN", "RecognitionRNN",
            "SpiralData", "gaussian_kl", "gaussian_log_likelihood", "observation_mask",
            "reparameterize", "spirals", "union_grid"]

from .memory import KeptBySolve, SavedTensorMeter, kept_by_solve  # noqa: E402

__all__ += ["KeptBySolve", "SavedTensorMeter", "kept_by_solve"]

from .flow_matching import (FlowSamples, cfm_loss, couple, interpolate,  # noqa: E402
                            normalised_path_energy, ot_pairing, path_energy, reflow_pairs,
                            sample_flow, wasserstein2)

__all__ += ["FlowSamples", "cfm_loss", "couple", "interpolate", "normalised_path_energy",
            "ot_pairing", "path_energy", "reflow_pairs", "sample_flow", "wasserstein2"]
