"""``odeint_adjoint``: the forward solve without a graph, gradients by an adjoint strategy.

* ``strategy="backsolve"`` (the default) is the continuous adjoint of Chen et al. 2018
  (Algorithm 2): the forward pass keeps only the outputs, so memory does not grow with the number
  of solver steps, and the backward pass integrates the augmented state of
  :mod:`nodelib.gradients.backsolve` from t_N down to t_0, interval by interval, adding
  ∂L/∂z(t_i) to ``a`` at each output time and restarting z from the stored forward output there.
* ``strategy="checkpoint"`` (:mod:`nodelib.gradients.checkpoint`) gives the exact gradient of the
  discrete forward solve, re-running it segment by segment from stored checkpoints.
"""
from __future__ import annotations

from torch import nn

from ..solvers.config import SolveConfig, get_tableau, make_config
from ..solvers.problem import find_callbacks, prepare
from ..solvers.solution import SolverStats
from .backsolve import BacksolveSettings, _BacksolveAdjoint
from .checkpoint import DEFAULT_CHECKPOINTS, _CheckpointAdjoint

STRATEGIES = ("backsolve", "checkpoint")


def odeint_adjoint(func, y0, t, *, rtol: float = 1e-7, atol: float = 1e-9,
                   method: str | None = None, options: dict | None = None, event_fn=None,
                   adjoint_rtol: float | None = None, adjoint_atol: float | None = None,
                   adjoint_method: str | None = None, adjoint_options: dict | None = None,
                   adjoint_params=None, strategy: str = "backsolve",
                   stats: SolverStats | None = None):
    """Same result as :func:`nodelib.odeint`; gradients by the adjoint ``strategy``.

    Gradients reach ``y0``, every ``t[i]`` and ``adjoint_params`` (default: ``func.parameters()``
    when ``func`` is an ``nn.Module``, else none — tensors that ``func`` merely closes over get no
    gradient). The backward solve uses ``adjoint_rtol/atol/method/options`` (default: the forward
    ones, without the forward ``norm``). Its error norm (``adjoint_options["norm"]``): by default
    the largest of the forward norm of z and of a (tensor by tensor for a tuple state), the RMS
    of a_θ and |a_t|; ``"seminorm"`` leaves a_θ and a_t out (Kidger et al. 2021): they never
    feed back into the dynamics, so controlling their error only costs steps; or a callable,
    called as torchdiffeq calls it on the tuple ``(a_t, z, a, *a_params)``.
    ``strategy="checkpoint"`` keeps at most ``adjoint_options["checkpoints"]`` states (default
    64; ``"sqrt"``: about 2√N of them).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown adjoint strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
    problem = prepare(func, y0, t, rtol=rtol, atol=atol, method=method, options=options)
    norm_choice = (adjoint_options or {}).get("norm")
    if not (norm_choice is None or norm_choice == "seminorm" or callable(norm_choice)):
        raise ValueError(f"adjoint_options['norm'] must be 'seminorm' or a callable, "
                         f"got {norm_choice!r}")
    if adjoint_params is None:
        adjoint_params = tuple(func.parameters()) if isinstance(func, nn.Module) else ()
    params = tuple(p for p in adjoint_params if p.requires_grad)
    settings = BacksolveSettings(
        problem=problem, params=params, stats=stats,
        backward_config=_backward_config(problem, method, adjoint_method, adjoint_rtol,
                                         adjoint_atol, rtol, atol, options, adjoint_options),
        norm_choice=norm_choice,
        backward_callbacks=find_callbacks(func, None, problem.y0, suffix="_adjoint"),
        event_fn=event_fn)
    if strategy == "checkpoint":
        if event_fn is not None:
            raise ValueError("strategy='checkpoint' does not handle events yet; use backsolve")
        _check_replayable(problem.config, method)
        count = (adjoint_options or {}).get("checkpoints", DEFAULT_CHECKPOINTS)
        ys = _CheckpointAdjoint.apply(problem, params, stats, count, problem.y0, problem.t,
                                      *params)
        return problem.unflatten(ys)
    if event_fn is not None:
        event_t, ys = _BacksolveAdjoint.apply(settings, problem.y0, problem.t, *params)
        return event_t, problem.unflatten(ys)
    ys = _BacksolveAdjoint.apply(settings, problem.y0, problem.t, *params)
    return problem.unflatten(ys)


def _check_replayable(config: SolveConfig, method) -> None:
    """The checkpoint strategy re-runs segments of the forward solve from single states: an
    Adams method would need its history of slopes too, and scipy's steps cannot be replayed."""
    if config.multistep is not None or config.scipy is not None:
        raise ValueError(f"strategy='checkpoint' cannot replay method {method!r} (a multistep "
                         "method's steps depend on the slopes before its checkpoints; scipy's "
                         "steps are not nodelib's); use strategy='backsolve' or odeint")


def _backward_config(problem, method, adjoint_method, adjoint_rtol, adjoint_atol, rtol, atol,
                     options, adjoint_options) -> SolveConfig:
    get_tableau(adjoint_method)   # (an unknown name fails here, before the forward solve)
    same_method = (adjoint_method or method or "dopri5") == (method or "dopri5")
    if adjoint_options is None:   # inherit the forward options, but not the forward norm
        adjoint_options = dict(options or {}) if same_method else {}
        adjoint_options.pop("norm", None)
    adjoint_options = {k: v for k, v in adjoint_options.items()
                       if k not in ("norm", "checkpoints")}
    a_rtol = rtol if adjoint_rtol is None else adjoint_rtol
    a_atol = atol if adjoint_atol is None else adjoint_atol
    return make_config(adjoint_method or method, a_rtol, a_atol, adjoint_options)
