"""Checking and normalising the user's problem before the first step.

The problem — func, y0, t — arrives here: a tensor state (a tuple state is flattened into one
vector, as torchdiffeq does), the output times, and func wrapped so that its first output is
checked and its step callbacks are found; each bad input is rejected with a message that names
it. (The method and options are checked in :mod:`nodelib.solvers.config`.)
"""
from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch

from ..errors import NonFiniteError
from .config import SolveConfig, make_config


def time_factory(like: torch.Tensor):
    """Build the 0-d time tensors handed to ``func``, on y's device and in y's dtype."""
    dtype, device = like.dtype, like.device
    return lambda value: torch.full((), value, dtype=dtype, device=device)


@dataclass
class TupleLayout:
    """How a tuple state sits inside one flat vector."""
    shapes: list[torch.Size]
    numels: list[int]

    def flatten(self, ys) -> torch.Tensor:
        return torch.cat([y.reshape(-1) for y in ys])

    def unflatten(self, y: torch.Tensor, lead: tuple = ()) -> tuple[torch.Tensor, ...]:
        parts = torch.split(y, self.numels, dim=-1)
        return tuple(p.reshape(*lead, *s) if (lead or s) else p.reshape(())
                     for p, s in zip(parts, self.shapes))

    def adapt_norm(self, norm):
        """A user norm called on a tuple shaped like the state, as torchdiffeq calls it."""
        return lambda flat: norm(self.unflatten(flat))

    def norm_per_part(self, name: str, norm):
        """A named norm on a tuple state: its largest value over the tensors, so that each
        tensor meets the tolerances on its own (torchdiffeq's ``_mixed_norm``). One norm of the flat
        vector would weigh each tensor by its size: a CNF's log-densities, one per sample next
        to d coordinates each, would hide behind the coordinates."""
        if name == "per_sample":
            for i, shape in enumerate(self.shapes):
                if len(shape) == 0:
                    raise ValueError(f"the 'per_sample' norm needs a batch dimension (dim 0) in "
                                     f"every tensor of a tuple state; y0[{i}] is 0-d")
        return lambda flat: torch.stack([norm(part) for part in self.unflatten(flat)]).max()


def check_state(y0):
    """Returns ``(flat_or_tensor_y0, layout or None)``."""
    if isinstance(y0, (tuple, list)):
        if len(y0) == 0 or not all(isinstance(y, torch.Tensor) for y in y0):
            raise TypeError("y0 must be a tensor or a non-empty tuple of tensors")
        for i, y in enumerate(y0):
            if y.dtype != y0[0].dtype or y.device != y0[0].device:
                raise TypeError(f"all tensors of a tuple state must share dtype and device: "
                                f"y0[{i}] is {y.dtype} on {y.device}, y0[0] is "
                                f"{y0[0].dtype} on {y0[0].device}")
        layout = TupleLayout([y.shape for y in y0], [y.numel() for y in y0])
        flat = layout.flatten(y0)
    elif isinstance(y0, torch.Tensor):
        layout, flat = None, y0
    else:
        raise TypeError(f"y0 must be a tensor or a tuple of tensors, got {type(y0).__name__}")
    if not flat.is_floating_point():
        raise TypeError(f"y0 must have a floating-point dtype, got {flat.dtype}")
    if not bool(torch.isfinite(flat.detach()).all()):
        raise NonFiniteError("y0 contains NaN or inf")
    return flat, layout


def check_times(t, like: torch.Tensor) -> torch.Tensor:
    """``t`` as a 1-D tensor on y0's device and in y0's dtype (gradient preserved), checked to be
    strictly monotone."""
    if not isinstance(t, torch.Tensor):
        t = torch.as_tensor(t, dtype=like.dtype)
    if t.dim() != 1:
        raise ValueError(f"t must be a 1-D tensor of output times, got shape {tuple(t.shape)}")
    if t.numel() < 1:
        raise ValueError("t must hold at least one time (the start)")
    if t.is_complex() or not (t.is_floating_point() or t.dtype in (torch.int32, torch.int64)):
        raise TypeError(f"t must be real, got {t.dtype}")
    t = t.to(device=like.device, dtype=like.dtype)
    values = t.detach().cpu().double()
    if not bool(torch.isfinite(values).all()):
        raise ValueError("t contains NaN or inf")
    steps = values[1:] - values[:-1]
    if not (bool((steps > 0).all()) or bool((steps < 0).all())):
        bad = int(((steps <= 0) if steps[0] > 0 else (steps >= 0)).nonzero()[0])
        raise ValueError(
            f"t must be strictly increasing or strictly decreasing; "
            f"t[{bad}]={values[bad].item():.6g} and t[{bad + 1}]={values[bad + 1].item():.6g} "
            "break the order")
    return t


class CheckedFunc:
    """Wraps ``func`` for the solver: unflattens tuple states, and checks the first output's
    shape and dtype (then gets out of the way)."""

    def __init__(self, func, y0_flat: torch.Tensor, layout: TupleLayout | None):
        self.func, self.layout = func, layout
        self.shape, self.dtype = y0_flat.shape, y0_flat.dtype
        self.checked = False

    def __call__(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.layout is None:
            out = self.func(t, y)
        else:
            out = self.func(t, self.layout.unflatten(y))
            if not self.checked:
                self._check_tuple(t, out)
            out = self.layout.flatten(out)
        if not self.checked:
            self._check(t, out)
        return out

    def _check_tuple(self, t, out):
        if not isinstance(out, (tuple, list)) or len(out) != len(self.layout.shapes):
            raise TypeError(f"func(t, y) must return a tuple of {len(self.layout.shapes)} "
                            f"tensors for a tuple state (at t={float(t):.6g})")
        for i, (o, s) in enumerate(zip(out, self.layout.shapes)):
            if not isinstance(o, torch.Tensor) or o.shape != s:
                got = tuple(o.shape) if isinstance(o, torch.Tensor) else type(o).__name__
                raise ValueError(f"func(t, y)[{i}] has shape {got} but y0[{i}] has shape "
                                 f"{tuple(s)} (at t={float(t):.6g})")

    def _check(self, t, out):
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"func(t, y) must return a tensor, got {type(out).__name__} "
                            f"(at t={float(t):.6g})")
        if out.shape != self.shape:
            raise ValueError(f"func(t, y) returned shape {tuple(out.shape)} but the state has "
                             f"shape {tuple(self.shape)} (at t={float(t):.6g})")
        if out.dtype != self.dtype:
            raise TypeError(f"func(t, y) returned dtype {out.dtype} but the state is "
                            f"{self.dtype} (at t={float(t):.6g})")
        self.checked = True


class Callbacks(NamedTuple):
    """torchdiffeq's step callbacks of ``func``, each called as ``callback(t0, y0, dt)`` with
    tensors: before every step attempt, and after its acceptance or rejection."""
    step: object
    accept: object
    reject: object


def find_callbacks(func, layout: TupleLayout | None, like: torch.Tensor, suffix: str = ""):
    """The callbacks ``callback_step{suffix}``, ``callback_accept_step{suffix}`` and
    ``callback_reject_step{suffix}`` defined on ``func``, or ``None`` when it has none.
    (The adjoint's backward solve looks for the ``_adjoint`` ones.)"""
    names = ("callback_step", "callback_accept_step", "callback_reject_step")
    found = [getattr(func, name + suffix, None) for name in names]
    if not any(callable(cb) for cb in found):
        return None
    time = time_factory(like)

    def wrap(cb):
        if not callable(cb):
            return lambda t0, y0, dt: None
        if layout is None:
            return lambda t0, y0, dt: cb(time(t0), y0, time(dt))
        return lambda t0, y0, dt: cb(time(t0), layout.unflatten(y0), time(dt))
    return Callbacks(*(wrap(cb) for cb in found))


def warn_unsupported_callbacks(func, adaptive: bool, method: str) -> None:
    """A fixed-step method never accepts or rejects: say so, as torchdiffeq does."""
    if adaptive:
        return
    names = [n for n in ("callback_accept_step", "callback_reject_step")
             if callable(getattr(func, n, None))]
    if names:
        warnings.warn(f"method {method!r} takes fixed steps and never calls "
                      f"{' or '.join(names)}", stacklevel=3)


@dataclass
class Problem:
    """A checked problem: func wrapped, the state flat (for a tuple), the times, the config."""
    func: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]   # (a CheckedFunc for users' f)
    y0: torch.Tensor
    layout: TupleLayout | None
    t: torch.Tensor
    config: SolveConfig
    callbacks: Callbacks | None

    @property
    def times(self) -> list[float]:
        return self.t.detach().tolist()

    def unflatten(self, ys: torch.Tensor):
        return ys if self.layout is None else self.layout.unflatten(ys, lead=(len(ys),))


def prepare(func, y0, t, *, rtol, atol, method, options) -> Problem:
    """Everything checked once, before the first step; both entry points start here."""
    y0_flat, layout = check_state(y0)
    t = check_times(t, y0_flat)
    config = make_config(method, rtol, atol, options, layout=layout)
    warn_unsupported_callbacks(func, config.adaptive, config.tableau.name)
    return Problem(CheckedFunc(func, y0_flat, layout), y0_flat, layout, t, config,
                   find_callbacks(func, layout, y0_flat))
