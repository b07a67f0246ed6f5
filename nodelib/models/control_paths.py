"""Control paths: observations of a time series turned into a continuous path ``X(t)``.

A neural CDE (:mod:`nodelib.models.cde`) is driven by ``dX/dt``, so the data must first become a
path that can be evaluated and differentiated at any time. Every path here is piecewise cubic
in the local time ``s = t - t_k`` on each interval ``[t_k, t_{k+1}]`` between knots,

    X(t) = a_k + b_k s + c_k s^2 + d_k s^3,

and only the coefficients differ between the schemes (Kidger et al. 2020; Morrill et al. 2021):

* :func:`linear_path` — straight lines between observations; continuous, ``dX/dt`` jumps at
  every knot;
* :func:`natural_cubic_path` — the natural cubic spline (zero second derivative at both ends);
  twice continuously differentiable, but *not causal*: a new observation changes the path on
  every earlier interval, so it cannot be used online;
* :func:`hermite_path` — Hermite cubics whose slope at each knot is the backward difference
  ``(x_k - x_{k-1}) / (t_k - t_{k-1})``; continuously differentiable and causal: the path up
  to ``t_k`` depends only on the observations up to ``t_k``;
* :func:`rectilinear_path` — first time moves with the values held, then the values jump with
  time held (a staircase, in a virtual time that counts half-steps); causal in the strict sense
  that the value observed at ``t_k`` enters the path only after time has reached ``t_k``.

Data come as ``t`` (T,), one grid shared by the batch, and ``x`` (..., T, C), batched over the
leading axes. Missing values are NaN: each channel of each series is filled by linear
interpolation between its own observations (constant before the first and after the last one),
as torchcde does, so a batch of series observed at different times, or of different lengths,
shares one grid. :func:`observation_channels` adds the time itself and the cumulative count of
observations (the *observational intensity*) as channels, so the model can tell an observed
value from a filled one. Everything follows ``x``'s device and dtype.
"""
from __future__ import annotations

import torch

KINDS = ("linear", "natural_cubic", "hermite", "rectilinear")


class ControlPath:
    """A piecewise-cubic path through the knots ``knots`` (K,), with coefficients ``a, b, c, d``
    (..., K - 1, C) of ``X = a + b s + c s² + d s³`` on each interval (``s = t - knots[k]``).

    ``evaluate(t)`` and ``derivative(t)`` take a time (float or 0-d tensor: result (..., C)) or a
    1-D tensor of times (result (..., n, C)). Each interval is closed on the left: at a knot the
    path uses the piece that starts there, and times outside the knots extrapolate the first or
    last piece. ``kind`` names the scheme; ``smooth`` says whether ``dX/dt`` is continuous.
    Even when it is, a higher derivative jumps at the knots (the second for Hermite cubics, the
    third for the natural spline), which is what a high-order solver's error estimate sees:
    :attr:`jumps` lists the interior knots, where an adaptive solve should stop.
    """

    def __init__(self, knots: torch.Tensor, a, b, c, d, *, kind: str, smooth: bool):
        if knots.dim() != 1 or knots.numel() < 2:
            raise ValueError(f"a path needs at least 2 knots in a 1-D tensor, got shape "
                             f"{tuple(knots.shape)}")
        self.knots, self.kind, self.smooth = knots, kind, smooth
        self.a, self.b, self.c, self.d = a, b, c, d

    @property
    def interval(self) -> torch.Tensor:
        """``[t_first, t_last]``, the times a CDE solve runs over."""
        return self.knots[[0, -1]]

    @property
    def jumps(self) -> tuple[float, ...]:
        """The interior knots, where ``dX/dt`` or one of its derivatives jumps."""
        return tuple(self.knots[1:-1].tolist())

    @property
    def channels(self) -> int:
        return self.a.shape[-1]

    def __getitem__(self, index) -> ControlPath:
        """The paths of some series: ``index`` selects along the leading batch axis (a
        minibatch is sliced from the coefficients, not interpolated again)."""
        if self.a.dim() < 3:
            raise IndexError("this path has no batch axis to index")
        a, b, c, d = (v[index] for v in (self.a, self.b, self.c, self.d))
        return ControlPath(self.knots, a, b, c, d, kind=self.kind, smooth=self.smooth)

    def _locate(self, t):
        t = torch.as_tensor(t, dtype=self.knots.dtype, device=self.knots.device)
        flat = t.reshape(-1)
        # the piece whose left knot is the last one <= t (closed on the left)
        k = torch.searchsorted(self.knots, flat.detach(), right=True) - 1
        k = k.clamp(0, len(self.knots) - 2)
        s = (flat - self.knots[k])[:, None]                       # (n, 1)
        return t.dim() == 0, k, s

    def evaluate(self, t) -> torch.Tensor:
        """``X(t)``."""
        scalar, k, s = self._locate(t)
        a, b, c, d = (v[..., k, :] for v in (self.a, self.b, self.c, self.d))
        out = a + s * (b + s * (c + s * d))
        return out.squeeze(-2) if scalar else out

    def derivative(self, t) -> torch.Tensor:
        """``dX/dt(t)`` (the right-hand derivative at a knot)."""
        scalar, k, s = self._locate(t)
        b, c, d = (v[..., k, :] for v in (self.b, self.c, self.d))
        out = b + s * (2 * c + 3 * s * d)
        return out.squeeze(-2) if scalar else out


# --------------------------------------------------------------------------- missing values
def _check(t: torch.Tensor, x: torch.Tensor) -> None:
    if t.dim() != 1 or x.dim() < 2 or x.shape[-2] != t.shape[0]:
        raise ValueError(f"expected t (T,) and x (..., T, C); got t {tuple(t.shape)} and "
                         f"x {tuple(x.shape)}")
    if t.numel() < 2 or not bool((t[1:] > t[:-1]).all()):
        raise ValueError("t must hold at least 2 strictly increasing times")


def fill_missing(t: torch.Tensor, x: torch.Tensor, *, forward: bool = False) -> torch.Tensor:
    """``x`` (..., T, C) with every NaN replaced by linear interpolation in ``t`` between the
    channel's own observations, held constant before the first and after the last one; with
    ``forward``, by the last observation before it (forward fill, which never looks ahead; a
    NaN before the first observation still takes the first one). A channel with no observation
    at all raises a ValueError (there is nothing to fill it from)."""
    _check(t, x)
    missing = torch.isnan(x)
    if not bool(missing.any()):
        return x
    if bool(missing.all(dim=-2).any()):
        raise ValueError("a channel of some series has no observation at all (all NaN): "
                         "drop the series or fill that channel first")
    T = x.shape[-2]
    index = torch.arange(T, device=x.device).view(-1, 1).expand(x.shape[-2:])
    index = index.expand(x.shape)
    seen = ~missing
    # index of the last observation at or before k, and of the first at or after k
    prev = torch.where(seen, index, torch.full_like(index, -1)).cummax(dim=-2).values
    rev = torch.where(seen, T - 1 - index, torch.full_like(index, -1)).flip(-2)
    nxt = T - 1 - rev.cummax(dim=-2).values.flip(-2)
    prev = torch.where(prev < 0, nxt, prev)           # before the first: the first
    nxt = torch.where(nxt > T - 1, prev, nxt)          # after the last: the last
    x0 = torch.where(seen, x, torch.zeros_like(x))
    if forward:
        return torch.where(seen, x, x0.gather(-2, prev))
    x_prev, x_next = x0.gather(-2, prev), x0.gather(-2, nxt)
    t_prev, t_next, tk = t[prev], t[nxt], t[index]
    gap = t_next - t_prev
    w = torch.where(gap > 0, (tk - t_prev) / torch.where(gap > 0, gap, 1), 0)
    return torch.where(seen, x, x_prev + w * (x_next - x_prev))


def observation_channels(t: torch.Tensor, x: torch.Tensor, *, time: bool = True,
                         intensity: bool = True, per_channel: bool = False) -> torch.Tensor:
    """``x`` (..., T, C, NaN where missing) with channels put in front of it: the time ``t``
    (``time``) and the *observational intensity* (``intensity``), the running count of
    observations, either of whole points (a point counts if any channel is observed) or, with
    ``per_channel``, of each channel. NaNs are kept: the path constructors fill them.

    Without the time channel a CDE cannot tell how fast the data moved (see
    :mod:`nodelib.models.cde`); without the intensity channel it cannot tell an observation from
    a filled-in value, which matters when *whether* a value was measured is informative."""
    _check(t, x)
    parts = []
    if time:
        parts.append(t.to(x).view(-1, 1).expand(*x.shape[:-1], 1))
    if intensity:
        seen = ~torch.isnan(x)
        seen = seen if per_channel else seen.any(-1, keepdim=True)
        parts.append(seen.to(x.dtype).cumsum(dim=-2))
    return torch.cat(parts + [x], dim=-1)


# --------------------------------------------------------------------------- the four schemes
def _slopes(t, x):
    h = (t[1:] - t[:-1]).to(x)[:, None]                  # (K-1, 1)
    return h, (x[..., 1:, :] - x[..., :-1, :]) / h


def linear_path(t: torch.Tensor, x: torch.Tensor) -> ControlPath:
    """Straight lines between consecutive observations (NaNs filled first)."""
    x = fill_missing(t, x)
    _, delta = _slopes(t, x)
    zero = torch.zeros_like(delta)
    return ControlPath(t.to(x), x[..., :-1, :], delta, zero, zero, kind="linear", smooth=False)


def natural_cubic_path(t: torch.Tensor, x: torch.Tensor) -> ControlPath:
    """The natural cubic spline through the observations: C² with zero second derivative at
    both ends. NaNs are filled linearly first, so a missing value becomes a knot on the line
    between its neighbours (torchcde instead fits each channel's spline through its own
    observations only: the two agree when nothing is missing). Its second derivatives ``M_k``
    at the interior knots solve the tridiagonal system
    ``h_{k-1} M_{k-1} + 2 (h_{k-1} + h_k) M_k + h_k M_{k+1} = 6 (δ_k - δ_{k-1})``,
    solved densely once for the whole batch (T is small)."""
    x = fill_missing(t, x)
    h, delta = _slopes(t, x)
    T = x.shape[-2]
    M = torch.zeros_like(x)
    if T > 2:
        hv = h[:, 0]
        A = torch.diag(2 * (hv[:-1] + hv[1:]))
        A = A + torch.diag(hv[1:-1], 1) + torch.diag(hv[1:-1], -1)
        rhs = 6 * (delta[..., 1:, :] - delta[..., :-1, :])
        M[..., 1:-1, :] = torch.linalg.solve(A, rhs)
    b = delta - h * (2 * M[..., :-1, :] + M[..., 1:, :]) / 6
    c = M[..., :-1, :] / 2
    d = (M[..., 1:, :] - M[..., :-1, :]) / (6 * h)
    return ControlPath(t.to(x), x[..., :-1, :], b, c, d, kind="natural_cubic", smooth=True)


def hermite_path(t: torch.Tensor, x: torch.Tensor) -> ControlPath:
    """Hermite cubics with backward differences (NaNs filled first): the slope at knot ``t_k``
    is ``(x_k - x_{k-1}) / (t_k - t_{k-1})`` (at ``t_0``, the first interval's slope), so the
    piece on ``[t_k, t_{k+1}]`` uses ``x_{k-1}, x_k, x_{k+1}`` only: causal, and C¹."""
    x = fill_missing(t, x)
    h, delta = _slopes(t, x)
    m = torch.cat([delta[..., :1, :], delta], dim=-2)     # (..., T, C): slope at each knot
    m0, m1 = m[..., :-1, :], m[..., 1:, :]
    c = (3 * delta - 2 * m0 - m1) / h
    d = (m0 + m1 - 2 * delta) / h ** 2
    return ControlPath(t.to(x), x[..., :-1, :], m0, c, d, kind="hermite", smooth=True)


def rectilinear_path(x: torch.Tensor, time_channel: int = 0) -> ControlPath:
    """The rectilinear (staircase) path of ``x`` (..., T, C), whose channel ``time_channel``
    holds the observation times (see :func:`observation_channels`); other NaNs are filled
    forward first (the last observation is held, so nothing is read ahead of time, except
    that a channel's NaNs before its first observation take that first value). From
    ``(t_k, x_k)`` the path first moves time to ``t_{k+1}`` with the values held, then moves
    the values to ``x_{k+1}`` with time held. It is linear in a virtual time
    ``0, 1, ..., 2(T - 1)`` (the knots), which is what a CDE solve runs over."""
    if x.dim() < 2 or not -x.shape[-1] <= time_channel < x.shape[-1]:
        raise ValueError(f"expected x (..., T, C) with a time channel {time_channel}; got x "
                         f"{tuple(x.shape)}")
    times = x[..., time_channel]
    if bool(torch.isnan(times).any()):
        raise ValueError("the time channel of a rectilinear path must not be missing")
    T = x.shape[-2]
    virtual = torch.arange(2 * T - 1, dtype=x.dtype, device=x.device)
    x = fill_missing(virtual[::2].contiguous(), x, forward=True)
    held = x[..., :-1, :].clone()                        # values held, time moved on
    held[..., time_channel] = x[..., 1:, time_channel]
    points = torch.stack([x[..., :-1, :], held], dim=-2).flatten(-3, -2)
    points = torch.cat([points, x[..., -1:, :]], dim=-2)  # (..., 2T - 1, C)
    path = linear_path(virtual, points)
    path.kind = "rectilinear"
    return path


def make_path(kind: str, t: torch.Tensor, x: torch.Tensor) -> ControlPath:
    """The path of scheme ``kind`` (one of :data:`KINDS`); for ``"rectilinear"``, ``t`` is
    put in front of ``x`` as its time channel."""
    if kind == "linear":
        return linear_path(t, x)
    if kind == "natural_cubic":
        return natural_cubic_path(t, x)
    if kind == "hermite":
        return hermite_path(t, x)
    if kind == "rectilinear":
        return rectilinear_path(observation_channels(t, x, intensity=False))
    raise ValueError(f"unknown path kind {kind!r}; known: {', '.join(KINDS)}")
