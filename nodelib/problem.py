"""Checking and normalising the user's problem before the first step.

Everything an integrator needs arrives here: a tensor state (a tuple state is flattened into one
vector, as torchdiffeq does), the output times as floats, the tableau and the options — each bad
input rejected with a message that names it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .errors import NonFiniteError
from .tableaux import ADAPTIVE_METHODS, FIXED_STEP_METHODS, TABLEAUX, ButcherTableau

_FIXED_OPTIONS = {"step_size"}
_ADAPTIVE_OPTIONS = {"first_step", "max_num_steps", "norm"}


def get_tableau(method: str) -> ButcherTableau:
    if method not in TABLEAUX:
        raise ValueError(
            f"unknown method {method!r}; known methods are: fixed step "
            f"{', '.join(FIXED_STEP_METHODS)}; adaptive {', '.join(ADAPTIVE_METHODS)}")
    return TABLEAUX[method]


def check_options(tableau: ButcherTableau, options: dict | None) -> dict:
    options = dict(options or {})
    allowed = _ADAPTIVE_OPTIONS if tableau.adaptive else _FIXED_OPTIONS
    unknown = set(options) - allowed
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(unknown)} for method {tableau.name!r}; "
                         f"it accepts {sorted(allowed)}")
    if "step_size" in options and options["step_size"] is not None:
        step = float(options["step_size"])
        if not (step > 0 and math.isfinite(step)):
            raise ValueError(f"options['step_size'] must be a positive number, got {step}")
        options["step_size"] = step
    if "first_step" in options and not float(options["first_step"]) > 0:
        raise ValueError(f"options['first_step'] must be positive, got {options['first_step']}")
    if "max_num_steps" in options and int(options["max_num_steps"]) < 1:
        raise ValueError("options['max_num_steps'] must be at least 1")
    return options


def check_tolerances(rtol, atol) -> tuple[float, float]:
    rtol, atol = float(rtol), float(atol)
    if not (rtol >= 0 and atol >= 0 and rtol + atol > 0):
        raise ValueError(f"rtol and atol must be non-negative and not both zero, "
                         f"got rtol={rtol}, atol={atol}")
    return rtol, atol


@dataclass
class TupleLayout:
    """How a tuple state sits inside one flat vector."""
    shapes: list[torch.Size]
    numels: list[int]

    def flatten(self, ys) -> torch.Tensor:
        return torch.cat([y.reshape(-1) for y in ys])

    def unflatten(self, y: torch.Tensor, lead: tuple = ()) -> tuple[torch.Tensor, ...]:
        parts = torch.split(y, self.numels, dim=-1)
        return tuple(p.reshape(*lead, *s) if (lead or s) else p.reshape(()) for p, s in zip(parts, self.shapes))


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
    if t.numel() < 2:
        raise ValueError(f"t must hold at least two times (start and end), got {t.numel()}")
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
            f"t must be strictly increasing or strictly decreasing; t[{bad}]={values[bad].item():.6g}"
            f" and t[{bad + 1}]={values[bad + 1].item():.6g} break the order")
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
