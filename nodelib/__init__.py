"""nodelib: small, tested ODE solvers and the adjoint method in PyTorch.

    from nodelib import odeint, odeint_adjoint, SolverStats

Data flows one way, and the folders show it (a test fails when a lower layer imports a higher
one):

* :mod:`nodelib.solvers` — problem + options → a frozen config → Butcher tableaux → one
  Runge–Kutta stepper → a step-size controller object → one integrate loop → a
  :class:`Solution`;
* :mod:`nodelib.gradients` — ``odeint`` (backprop through the solver), ``odeint_adjoint``
  (``"backsolve"``, Algorithm 2 of Chen et al. 2018, or ``"checkpoint"``), ``odeint_event``,
  the one gradient switch the models share, and a meter of the memory autograd saves;
* :mod:`nodelib.sde` — a Brownian interval, SDE steppers (Euler–Maruyama, Milstein, SRK,
  midpoint, Heun, reversible Heun), ``sdeint`` and ``sdeint_adjoint`` with torchsde's API;
* :mod:`nodelib.models` — vector fields, ODE blocks, CNFs, regularisation, latent ODEs, flow
  matching, neural CDEs and the control paths that drive them;
* :mod:`nodelib.data` and :mod:`nodelib.training` — data sets, training loops, progress bars;
* ``errors`` (shared by every layer) and ``plotting`` (on top of everything).

Every public name is importable from here.
"""
# The imports go in layer order, lowest first (so the sorter is told to leave them).
# isort: off
# errors, shared by every layer
from .errors import (
                     MaxStepsExceededError,
                     NewtonConvergenceError,
                     NonFiniteError,
                     ODESolverError,
                     StepSizeUnderflowError,
                     StiffnessError,
)
# solvers: the numerics
from .solvers.controllers import IController, PIController, PIDController, StepSizeController
from .solvers.solution import PassStats, Solution, SolverStats, StepRecord
from .solvers.tableaux import ADAPTIVE_METHODS, FIXED_STEP_METHODS, TABLEAUX, ButcherTableau
# gradients
from .gradients import GRADIENTS, solve_with_gradient
from .gradients.adjoint import STRATEGIES, odeint_adjoint
from .gradients.backprop import odeint, odeint_per_sample, odesolve
from .gradients.events import odeint_event
from .gradients.memory import KeptBySolve, SavedTensorMeter, kept_by_solve
# sde: Brownian interval, SDE steppers, sdeint / sdeint_adjoint (torchsde's API)
from .sde import SDE_METHODS, BrownianInterval, sdeint, sdeint_adjoint
# models
from .models.blocks import AugmentedNeuralODE, AugmentedODEBlock, ODEBlock, ResidualBlock, augment
from .models.cde import CDEField, NeuralCDE
from .models.control_paths import (
                     ControlPath,
                     fill_missing,
                     hermite_path,
                     linear_path,
                     make_path,
                     natural_cubic_path,
                     observation_channels,
                     rectilinear_path,
)
from .models.fields import ConcatConv2d, ConvField, MLPDynamics, MLPField
from .models.flow_matching import (
                     FlowSamples,
                     cfm_loss,
                     couple,
                     interpolate,
                     normalised_path_energy,
                     ot_pairing,
                     path_energy,
                     reflow_pairs,
                     sample_flow,
                     wasserstein2,
)
from .models.flows import (
                     CNF,
                     CNFDynamics,
                     PlanarCNFField,
                     PlanarFlow,
                     PlanarNF,
                     standard_normal_log_prob,
)
from .models.latent import (
                     ELBO,
                     ODERNN,
                     GapRNN,
                     LatentODE,
                     RecognitionRNN,
                     gaussian_kl,
                     gaussian_log_likelihood,
                     reparameterize,
)
from .models.latent_sde import ContextEncoder, DiagonalDiffusion, LatentSDE, LatentSDEELBO
from .models.regularisation import (
                     RegularisedBlock,
                     RegularisedCNF,
                     RegularisedDynamics,
                     kinetic_energy,
                     odeint_with_penalties,
                     steer_end_time,
)
from .models.traces import (
                     exact_trace,
                     frobenius_exact,
                     frobenius_hutchinson,
                     hutchinson_trace,
                     sample_noise,
)
# data
from .data.densities import ENERGY_NAMES, energy, log_normalizer, target_log_prob
from .data.samples import two_circles, two_moons
from .data.series import SpiralData, observation_mask, spirals, union_grid
from .data.stochastic import (
                     StochasticSeries,
                     stochastic_oscillator,
                     stochastic_oscillator_covariance,
)
from .data.systems import DampedPendulum, Observations, SpiralField, observe, spiral_trajectory
from .data.toy import flip_1d, nested_spheres, nested_spheres_target
# training
from .training.loops import FitHistory, fit_trajectories
from .training.progress import progress
from .training.windows import Windows, sample_windows
# isort: on

METHODS = tuple(TABLEAUX)
__version__ = "0.3.0"

__all__ = [
                     # solvers
                     "ADAPTIVE_METHODS",
                     "CNF",
                     "ELBO",
                     "ENERGY_NAMES",
                     "FIXED_STEP_METHODS",
                     # gradients
                     "GRADIENTS",
                     "METHODS",
                     "ODERNN",
                     "STRATEGIES",
                     "TABLEAUX",
                     # models
                     "AugmentedNeuralODE",
                     "AugmentedODEBlock",
                     "ButcherTableau",
                     "CNFDynamics",
                     "ConcatConv2d",
                     "ConvField",
                     # data and training
                     "DampedPendulum",
                     "FitHistory",
                     "GapRNN",
                     "IController",
                     "LatentODE",
                     "MLPDynamics",
                     "MLPField",
                     "MaxStepsExceededError",
                     "NewtonConvergenceError",
                     "NonFiniteError",
                     "ODEBlock",
                     "ODESolverError",
                     "Observations",
                     "PIController",
                     "PIDController",
                     "PassStats",
                     "PlanarCNFField",
                     "PlanarFlow",
                     "PlanarNF",
                     "RecognitionRNN",
                     "RegularisedBlock",
                     "RegularisedCNF",
                     "RegularisedDynamics",
                     "ResidualBlock",
                     "Solution",
                     "SolverStats",
                     "SpiralData",
                     "SpiralField",
                     "StepRecord",
                     "StepSizeController",
                     "StepSizeUnderflowError",
                     "StiffnessError",
                     "Windows",
                     "augment",
                     "energy",
                     "exact_trace",
                     "fit_trajectories",
                     "flip_1d",
                     "frobenius_exact",
                     "frobenius_hutchinson",
                     "gaussian_kl",
                     "gaussian_log_likelihood",
                     "hutchinson_trace",
                     "kinetic_energy",
                     "log_normalizer",
                     "nested_spheres",
                     "nested_spheres_target",
                     "observation_mask",
                     "observe",
                     "odeint",
                     "odeint_adjoint",
                     "odeint_event",
                     "odeint_per_sample",
                     "odeint_with_penalties",
                     "odesolve",
                     "progress",
                     "reparameterize",
                     "sample_noise",
                     "sample_windows",
                     "solve_with_gradient",
                     "spiral_trajectory",
                     "spirals",
                     "standard_normal_log_prob",
                     "steer_end_time",
                     "target_log_prob",
                     "two_circles",
                     "two_moons",
                     "union_grid",
]
__all__ += ["SDE_METHODS", "BrownianInterval", "sdeint", "sdeint_adjoint"]
__all__ += ["KeptBySolve", "SavedTensorMeter", "kept_by_solve",
            "FlowSamples", "cfm_loss", "couple", "interpolate", "normalised_path_energy",
            "ot_pairing", "path_energy", "reflow_pairs", "sample_flow", "wasserstein2"]

# neural CDEs and their control paths
__all__ += ["CDEField", "ControlPath", "NeuralCDE", "fill_missing", "hermite_path",
            "linear_path", "make_path", "natural_cubic_path", "observation_channels",
            "rectilinear_path"]
__all__ += ["ContextEncoder", "DiagonalDiffusion", "LatentSDE", "LatentSDEELBO",
            "StochasticSeries", "stochastic_oscillator", "stochastic_oscillator_covariance"]
