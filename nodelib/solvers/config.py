"""One place where a solve's settings are checked: method, tolerances and options → a frozen
:class:`SolveConfig`.

``odeint``, ``odeint_adjoint`` (for its forward and its backward solve) and :func:`odesolve` all
call :func:`make_config`; the integrators read the config and never parse options themselves.
Options and their names are torchdiffeq's, plus ``controller`` (``"PI"`` by default, ``"I"``,
``"PID"`` or a :class:`~nodelib.StepSizeController`) and ``norm="per_sample"``.

Methods: the Runge–Kutta tableaux of :mod:`~nodelib.solvers.tableaux`, the Adams methods of
:mod:`~nodelib.solvers.multistep` (run by the same loop, on a fixed grid) and ``scipy_solver``
(:mod:`~nodelib.solvers.scipy_solver`: scipy takes the steps, no integrate loop).
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .controllers import CONTROLLERS, NORMS, StepSizeController
from .multistep import ADAMS_METHODS, ADAMS_OPTIONS, AdamsMethod, adams_with_options
from .scipy_solver import SCIPY_METHOD, SCIPY_SOLVERS, ScipySettings, scipy_settings
from .tableaux import ADAPTIVE_METHODS, FIXED_STEP_METHODS, TABLEAUX, ButcherTableau

DEFAULT_MAX_NUM_STEPS = 100_000
# a fixed-step event search (unbounded grid) stops after this many steps without an event
DEFAULT_EVENT_MAX_STEPS = 2_000

FIXED_OPTIONS = {"step_size", "grid_constructor", "perturb", "interp", "max_num_steps"}
ADAPTIVE_OPTIONS = {"first_step", "max_num_steps", "norm", "controller", "step_t", "jump_t",
                    "min_step", "max_step", "safety", "ifactor", "dfactor", "detect_stiffness"}


@dataclass(frozen=True)
class SolveConfig:
    """Everything an integrator needs besides the problem itself."""
    tableau: ButcherTableau
    controller: StepSizeController | None = None   # None: a fixed-step method
    step_size: float | None = None                 # fixed step: grid spacing
    grid_constructor: Callable | None = None       # fixed step: (func, y0, t) -> grid tensor
    perturb: bool = False                          # fixed step: nudge t off the grid points
    interp: str = "cubic"                          # fixed step: between grid points
    first_step: float | None = None
    max_num_steps: int = DEFAULT_MAX_NUM_STEPS     # (fixed step: caps an event search only)
    step_t: tuple[float, ...] = ()                 # times every step must land on
    jump_t: tuple[float, ...] = ()                 # ... and where f jumps (re-evaluate f)
    newton_tolerances: tuple[float, float] = (1e-7, 1e-9)   # implicit methods: (rtol, atol)
    detect_stiffness: bool = True                  # explicit FSAL methods (solvers.stiffness)
    # an Adams method: its formulas (``tableau`` is then its start-up method, rk4)
    multistep: AdamsMethod | None = None
    # scipy_solver: solve_ivp takes every step (``tableau`` is then unused: dopri5's, a stand-in)
    scipy: ScipySettings | None = None

    @property
    def adaptive(self) -> bool:
        return self.tableau.adaptive


def get_tableau(method: str | None) -> ButcherTableau:
    """The Runge–Kutta tableau the integrate loop steps with (an Adams method's: its start-up
    method; scipy_solver's: a stand-in, never stepped with)."""
    method = "dopri5" if method is None else method
    if method in ADAMS_METHODS:
        return ADAMS_METHODS[method].startup
    if method == SCIPY_METHOD:
        return TABLEAUX["dopri5"]
    if method not in TABLEAUX:
        raise ValueError(
            f"unknown method {method!r}; known methods are: fixed step "
            f"{', '.join(FIXED_STEP_METHODS)}; adaptive {', '.join(ADAPTIVE_METHODS)}; "
            f"fixed-step multistep {', '.join(ADAMS_METHODS)}; and {SCIPY_METHOD} "
            f"(scipy's solve_ivp, options['solver'] one of {', '.join(SCIPY_SOLVERS)})")
    return TABLEAUX[method]


def check_tolerances(rtol, atol) -> tuple[float, float]:
    for name, tol in (("rtol", rtol), ("atol", atol)):
        if isinstance(tol, torch.Tensor) and tol.numel() != 1:
            raise ValueError(f"{name} must be a number: per-component tolerances are not "
                             "supported (scale the state instead)")
    rtol, atol = float(rtol), float(atol)
    if not (rtol >= 0 and atol >= 0 and rtol + atol > 0):
        raise ValueError(f"rtol and atol must be non-negative and not both zero, "
                         f"got rtol={rtol}, atol={atol}")
    return rtol, atol


def make_config(method: str | None, rtol, atol, options: dict | None, *,
                layout=None) -> SolveConfig:
    """Check and normalise. ``layout`` (a :class:`~nodelib.solvers.problem.TupleLayout`, for a
    tuple state) turns the norm into one on the solver's flat state: a named norm is taken on
    each tensor and the largest kept; a user norm is called with the error shaped like the
    user's state, a tuple."""
    tableau = get_tableau(method)
    options = dict(options or {})
    if method == SCIPY_METHOD:
        return SolveConfig(tableau, scipy=scipy_settings(*check_tolerances(rtol, atol), options))
    adams = ADAMS_METHODS.get(method) if method is not None else None
    allowed = ADAPTIVE_OPTIONS if tableau.adaptive else FIXED_OPTIONS
    if adams is not None:
        allowed = allowed | ADAMS_OPTIONS
    # norm and tolerances mean nothing to a fixed-step method; torchdiffeq ignores them there
    ignorable = {"norm"} if not tableau.adaptive else set()
    unknown = set(options) - allowed - ignorable
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(unknown)} for method "
                         f"{method or tableau.name!r}; it accepts {sorted(allowed)}")
    if tableau.adaptive:
        config = _adaptive_config(tableau, rtol, atol, options, layout)
    else:
        config = _fixed_config(tableau, options)
    if adams is not None:   # the corrector's iteration stops at the solve's tolerances
        config = dataclasses.replace(config, multistep=adams_with_options(
            adams, *check_tolerances(rtol, atol), options))
    if tableau.implicit:   # Newton's iteration stops at a fraction of these tolerances
        config = dataclasses.replace(config, newton_tolerances=check_tolerances(rtol, atol))
    return config


def _fixed_config(tableau, options) -> SolveConfig:
    step = options.get("step_size")
    if step is not None:
        step = _positive("step_size", step)
    grid = options.get("grid_constructor")
    if grid is not None and step is not None:
        raise ValueError("options 'step_size' and 'grid_constructor' are mutually exclusive")
    if grid is not None and not callable(grid):
        raise TypeError("options['grid_constructor'] must be a callable (func, y0, t) -> grid")
    # implicit methods default to the line: a cubic through stiff slopes is unbounded (see
    # nodelib.solvers.integrate._GridInterpolant)
    interp = options.get("interp", "linear" if tableau.implicit else "cubic")
    if interp not in ("cubic", "linear"):
        raise ValueError(f"options['interp'] must be 'cubic' or 'linear', got {interp!r}")
    return SolveConfig(tableau, step_size=step, grid_constructor=grid,
                       perturb=bool(options.get("perturb", False)), interp=interp,
                       max_num_steps=_max_steps(options, DEFAULT_EVENT_MAX_STEPS))


def _adaptive_config(tableau, rtol, atol, options, layout) -> SolveConfig:
    rtol, atol = check_tolerances(rtol, atol)
    norm = _make_norm(options.get("norm"), layout)
    controller = options.get("controller", "PI")
    if isinstance(controller, StepSizeController):
        if any(k in options for k in ("min_step", "max_step", "safety", "ifactor", "dfactor")):
            raise ValueError("give min_step/max_step/safety/ifactor/dfactor to the controller "
                             "object itself, not in options")
    elif controller in CONTROLLERS:
        limits = {"min_step": _non_negative("min_step", options.get("min_step", 0.0)),
                  "max_step": _positive("max_step", options.get("max_step", math.inf)),
                  "safety": _positive("safety", options.get("safety", 0.9)),
                  "max_factor": _positive("ifactor", options.get("ifactor", 10.0)),
                  "min_factor": _positive("dfactor", options.get("dfactor", 0.2))}
        controller = CONTROLLERS[controller](rtol, atol, norm, **limits)
    else:
        raise ValueError(f"options['controller'] must be one of {sorted(CONTROLLERS)} or a "
                         f"StepSizeController, got {controller!r}")
    first = options.get("first_step")
    max_steps = _max_steps(options, DEFAULT_MAX_NUM_STEPS)
    step_t = _times("step_t", options.get("step_t"))
    jump_t = _times("jump_t", options.get("jump_t"))
    if set(step_t) & set(jump_t):
        raise ValueError("options 'step_t' and 'jump_t' must not share any time")
    return SolveConfig(tableau, controller=controller,
                       first_step=None if first is None else _positive("first_step", first),
                       max_num_steps=max_steps, step_t=step_t, jump_t=jump_t,
                       detect_stiffness=bool(options.get("detect_stiffness", True)))


def _max_steps(options, default: int) -> int:
    value = options.get("max_num_steps", default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) \
            or value < 1:
        raise ValueError(f"options['max_num_steps'] must be a whole number of at least 1, "
                         f"got {value!r}")
    return int(value)


def _make_norm(norm, layout):
    if norm is None:
        norm = "rms"
    if isinstance(norm, str):
        if norm not in NORMS:
            raise ValueError(f"options['norm'] must be a callable or one of {sorted(NORMS)}, "
                             f"got {norm!r} ('seminorm' is an adjoint_options setting)")
        return NORMS[norm] if layout is None else layout.norm_per_part(norm, NORMS[norm])
    if not callable(norm):
        raise TypeError(f"options['norm'] must be callable, got {type(norm).__name__}")
    return norm if layout is None else layout.adapt_norm(norm)


def _positive(name, value) -> float:
    value = float(value)
    if not value > 0 or math.isnan(value):
        raise ValueError(f"options[{name!r}] must be a positive number, got {value}")
    return value


def _non_negative(name, value) -> float:
    value = float(value)
    if not value >= 0:
        raise ValueError(f"options[{name!r}] must be non-negative, got {value}")
    return value


def _times(name, values) -> tuple[float, ...]:
    if values is None:
        return ()
    if not isinstance(values, torch.Tensor):   # Python numbers keep their float64 precision
        values = torch.as_tensor(values, dtype=torch.float64)
    values = values.detach().reshape(-1).cpu().double().tolist()
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"options[{name!r}] must hold finite times")
    return tuple(sorted(set(values)))
