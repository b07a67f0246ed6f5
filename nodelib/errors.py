"""Exceptions raised by the solvers. Each message says what went wrong and at which time."""


class ODESolverError(RuntimeError):
    """Base class: the solve could not continue."""


class StepSizeUnderflowError(ODESolverError):
    """The adaptive step size shrank below what the time variable can resolve."""


class MaxStepsExceededError(ODESolverError):
    """More than ``max_num_steps`` steps were attempted."""


class NonFiniteError(ODESolverError, FloatingPointError):
    """NaN or inf appeared in the state or in the vector field."""


class NewtonConvergenceError(ODESolverError):
    """Newton's method failed on the implicit stages, even after shrinking the step."""


class StiffnessError(ODESolverError):
    """An explicit method's steps are held at its stability limit: the problem is stiff."""


class EventNotFoundError(MaxStepsExceededError):
    """An event search ended without ``event_fn`` crossing zero (step cap, or time overflow)."""
