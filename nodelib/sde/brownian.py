"""``BrownianInterval``: a Brownian sample path, fixed by one seed, that can be queried again.

An SDE solver asks for increments ``W(s, t) = W(t) - W(s)`` step by step; the adjoint asks for
the same increments again, backwards. Storing a path on a fixed grid would tie it to one step
size, so instead the path is refined where it is queried (Kidger et al. 2021, "Efficient and
accurate gradients for neural SDEs", §4):

* it keeps the sorted times it has been asked about, ``t0 = p_0 < p_1 < ... < p_n = t1``, and
  the increment (and space-time Lévy area, if asked for) of each *cell* ``[p_k, p_k+1]``;
* a query at a new time ``c`` inside cell ``[a, b]`` splits it, drawing ``W(a, c)`` from the
  Brownian bridge given ``W(a, b)`` (:mod:`nodelib.sde.bridge`), with noise from a generator
  seeded by ``(entropy, c)`` alone;
* the increment over ``[s, t]`` is the sum of the cells between ``s`` and ``t``.

So every answer is consistent with every earlier one: asking for ``[s, t]`` again — before or
after any other query, forwards or backwards — returns the very same tensors (each answer is
kept, so even when later queries split ``[s, t]`` the sum of its parts, equal to rounding, is
not recomputed), and ``W(s, u) = W(s, t) + W(t, u)`` up to the rounding of one addition.
As in torchsde's ``BrownianInterval``, the path is a function of the seed *and of the order in
which new times first arrive* (a new time is drawn given its neighbours at that moment): two
intervals with the same seed agree when they are first queried in the same order, whatever
comes after. Memory grows by one cell per new time queried and one kept answer per new
interval queried (for a solver's step, the answer is the cell itself).

With ``halfway_tree=True`` (below) the path depends on the seed alone, and nothing grows: it is
a *virtual* Brownian tree (Li et al. 2020), each point recomputed from the root by bisection
when it is asked for, with a cache of the last few points: O(1) memory, whatever the number of
steps, for about log2((t1 - t0)/tol) bridge draws per new point.
"""
from __future__ import annotations

import bisect
import collections
import hashlib
import math
import struct
from typing import Any

import torch

from . import bridge

LEVY_AREA_APPROXIMATIONS = ("none", "space-time", "davie", "foster")
# what a draw of noise is for, part of its seed so that no two draws share one
_ROOT, _ROOT_AREA, _SPLIT, _AREA = range(4)
_RECENT_POINTS = 64   # halfway tree: points kept (a solver's next step starts at its last end)


class BrownianInterval:
    """Brownian motion on ``[t0, t1]`` of shape ``size`` (batch dimensions, then the ``m``
    Brownian channels), queried as ``bm(ta, tb)`` for the increment ``W(tb) - W(ta)``.

    Args (torchsde's): ``t0, t1`` the time span; ``size``; ``dtype``, ``device`` of the samples
    (default: torch's default dtype, CPU); ``entropy`` the seed (an int; default: drawn from
    torch's global generator, so ``torch.manual_seed`` makes the path reproducible);
    ``levy_area_approximation``: ``"none"``, ``"space-time"`` (also keep the space-time Lévy
    area ``H``, needed by the SRK methods), ``"davie"`` or ``"foster"`` (also approximate the
    full Lévy area). ``seed`` is accepted as another name for ``entropy``. ``W`` (and ``H``):
    the increment (and area) over ``[t0, t1]``, instead of drawing them.

    ``halfway_tree=True`` with a resolution ``tol`` (torchsde's options) makes the path a
    function of the seed alone, whatever the order of the queries: times are rounded to the
    decimal digits of ``tol``, and a new time is reached by splitting cells at their (rounded)
    midpoints, a dyadic tree whose every point is drawn given the same two neighbours in any
    order; a time that is not such a midpoint is split off once its cell is shorter than
    ``tol``; answers are differences of the values of ``W`` (and of its integral) at their ends,
    which do not depend on the cells in between. Nothing is stored but the last few points: each
    new point is recomputed from the root, about log2((t1 - t0)/tol) draws instead of one.

    ``bm(ta, tb, return_U=False, return_A=False)`` returns ``W``, or ``(W, U)`` with ``U =
    ∫_ta^tb W(ta, u) du``, or ``(W, A)`` / ``(W, U, A)`` with ``A`` the approximate Lévy area of
    shape ``(*size, m)``. ``bm(t)`` is ``bm(t0, t)``.
    """

    def __init__(self, t0=0.0, t1=1.0, size=None, dtype=None, device=None,
                 entropy: int | None = None, levy_area_approximation: str = "none",
                 seed: int | None = None, W: torch.Tensor | None = None,
                 H: torch.Tensor | None = None, halfway_tree: bool = False, tol: float = 0.0,
                 **unused):
        t0, t1 = float(t0), float(t1)
        if not t0 < t1:
            raise ValueError(f"BrownianInterval needs t0 < t1, got t0={t0}, t1={t1}")
        if levy_area_approximation not in LEVY_AREA_APPROXIMATIONS:
            raise ValueError(f"levy_area_approximation must be one of "
                             f"{', '.join(LEVY_AREA_APPROXIMATIONS)}; got "
                             f"{levy_area_approximation!r}")
        if size is None:
            if W is None:
                raise ValueError("BrownianInterval needs `size` (or `W`)")
            size = W.shape
        if entropy is None:
            entropy = seed
        if entropy is None:   # one draw from torch's generator: torch.manual_seed fixes it
            entropy = int(torch.randint(0, 2 ** 62, ()).item())
        self._size = tuple(size)
        self._dtype = dtype if dtype is not None else (
            W.dtype if W is not None else torch.get_default_dtype())
        self._device = torch.device(device if device is not None else (
            W.device if W is not None else "cpu"))
        self._entropy = int(entropy) % 2 ** 63   # (it seeds through a signed 64-bit key)
        self._halfway, self._tol = bool(halfway_tree), float(tol)
        if self._halfway and not self._tol > 0:
            raise ValueError("halfway_tree=True needs a resolution tol > 0")
        # (torchsde's rounding: times to the decimal digits of tol)
        digits = -int(math.log10(self._tol)) if self._tol > 0 else None
        self._round = (lambda x: round(x, digits)) if digits is not None else (lambda x: x)
        self._levy = levy_area_approximation
        self._have_H = levy_area_approximation != "none"
        h = t1 - t0
        W = self._randn(_ROOT, t0, t1)[0] * h ** 0.5 if W is None else W
        H = (self._randn(_ROOT_AREA, t0, t1)[0] * (h / 12) ** 0.5 if H is None else H
             ) if self._have_H else None
        self._times = [t0, t1]
        self._cells: list[tuple] = [(W, H)]
        if self._halfway:   # W(t) and ∫_t0^t W(u) du at the ends; other points on demand
            zero = torch.zeros_like(W)
            self._ends: tuple[tuple[Any, Any], ...] = (
                (zero, zero if self._have_H else None),
                (W, h * (0.5 * W + H) if H is not None else None))
            self._recent: collections.OrderedDict = collections.OrderedDict()
        # every answer given, by (ta, tb): asked again, the same tensors come back
        self._answers: dict[tuple[float, float], list] = {}

    # -- torchsde's read-only attributes
    shape = property(lambda self: self._size)
    dtype = property(lambda self: self._dtype)
    device = property(lambda self: self._device)
    levy_area_approximation = property(lambda self: self._levy)
    t0 = property(lambda self: self._times[0])
    t1 = property(lambda self: self._times[-1])

    def size(self):
        return self._size

    def __repr__(self):
        return (f"BrownianInterval(t0={self.t0}, t1={self.t1}, size={self._size}, "
                f"dtype={self._dtype}, device={self._device}, entropy={self._entropy}, "
                f"levy_area_approximation={self._levy!r})")

    def __call__(self, ta, tb=None, return_U: bool = False, return_A: bool = False):
        if tb is None:
            ta, tb = self._times[0], ta
        ta, tb = self._round(float(ta)), self._round(float(tb))
        if not self._times[0] <= ta <= tb <= self._times[-1]:
            raise ValueError(f"Brownian query [{ta}, {tb}] must satisfy t0 <= ta <= tb <= t1 "
                             f"with [t0, t1] = [{self._times[0]}, {self._times[-1]}]")
        found = self._answers.get((ta, tb))
        if found is None:   # asked for the first time (always, for the halfway tree)
            found = [*self._increment(ta, tb), None]
            if not self._halfway:   # (the halfway tree recomputes the same tensors instead)
                self._answers[ta, tb] = found
        if return_A and found[2] is None:
            found[2] = self._area(ta, tb, found[0], found[1])
        return self._answer(found[0], found[1], tb - ta, return_U, return_A, found[2])

    def _increment(self, ta: float, tb: float) -> tuple:
        """``(W, H)`` over ``[ta, tb]``: the sum of the cells between them (usually one: a
        solver's step is one cell), splitting cells at ``ta`` and ``tb`` if they are new."""
        if ta == tb:
            W = torch.zeros(self._size, dtype=self._dtype, device=self._device)
            return W, torch.zeros_like(W) if self._have_H else None
        if self._halfway:   # differences of point values: the same whatever cells lie between
            (Wa, Ia), (Wb, Ib) = self._point(ta), self._point(tb)
            W = Wb - Wa
            H = (Ib - Ia) / (tb - ta) - Wa - 0.5 * W if self._have_H else None
            return W, H
        i, j = self._locate(ta), self._locate(tb)
        W, H = self._cells[i]
        for k in range(i + 1, j):
            W, H = bridge.join((W, H), self._cells[k], self._times[k] - ta,
                               self._times[k + 1] - self._times[k])
        return W, H

    def _area(self, ta: float, tb: float, W, H) -> torch.Tensor:
        """Davie's (or Foster's) approximate Lévy area over ``[ta, tb]`` from its ``W`` and
        ``H``, with noise seeded by ``(ta, tb)``."""
        if ta == tb or len(self._size) < 2:   # (a batch of scalar motions has no area)
            shape = (*self._size, self._size[-1]) if len(self._size) >= 2 else self._size
            return torch.zeros(shape, dtype=self._dtype, device=self._device)
        noise = self._randn(_AREA, ta, tb, shape=(*self._size, self._size[-1]))[0]
        return bridge.levy_area(W, H, tb - ta, self._levy, noise)

    def _answer(self, W, H, h, return_U, return_A, A):
        out = [W]
        if return_U:
            if H is None:
                raise ValueError("return_U=True needs levy_area_approximation='space-time' "
                                 "(or 'davie', 'foster')")
            out.append(h * (0.5 * W + H))
        if return_A:
            if self._levy not in ("davie", "foster"):
                raise ValueError("return_A=True needs levy_area_approximation 'davie' or "
                                 "'foster'")
            out.append(A)
        return out[0] if len(out) == 1 else tuple(out)

    def _locate(self, t: float) -> int:
        """The index of ``t`` among the known times, splitting the cell that holds it if ``t``
        is new."""
        k = bisect.bisect_left(self._times, t)
        if self._times[k] != t:   # t lies inside cell k - 1
            self._cells[k - 1: k] = self._split(self._times[k - 1], t, self._times[k],
                                                self._cells[k - 1])
            self._times.insert(k, t)
        return k

    def _split(self, a: float, c: float, b: float, cell: tuple) -> tuple:
        """The cell ``[a, b]`` split at ``c``: a Brownian bridge draw, noise seeded by ``c``."""
        W, H = cell
        noise = self._randn(_SPLIT, c, c)
        if H is None:
            left, right = bridge.split_increment(W, a, c, b, noise[0])
            return (left, None), (right, None)
        return bridge.split_increment_and_area(W, H, a, c, b, noise[0], noise[1])

    def _point(self, t: float) -> tuple:
        """``W(t)`` and ``∫_t0^t W(u) du`` on the halfway tree: bisect from the root cell down
        to ``t`` (at the rounded midpoints; a cell shorter than ``tol`` is split at ``t``
        itself), drawing each midpoint given its two ends. Nothing is kept on the way."""
        if t in self._recent:
            self._recent.move_to_end(t)
            return self._recent[t]
        a, b = self._times[0], self._times[-1]
        cell, value_a = self._cells[0], self._ends[0]
        value = value_a if t == a else self._ends[1] if t == b else None
        while value is None:
            c = self._round(0.5 * (a + b))
            if not a < c < b or b - a <= self._tol:   # a leaf of the dyadic tree
                c = t
            left, right = self._split(a, c, b, cell)
            (Wa, Ia), (Wl, Hl) = value_a, left
            value_c = (Wa + Wl, Ia + (c - a) * (Wa + 0.5 * Wl + Hl) if Hl is not None else None)
            if t == c:
                value = value_c
            elif t < c:
                b, cell = c, left
            else:
                a, cell, value_a = c, right, value_c
        self._recent[t] = value
        if len(self._recent) > _RECENT_POINTS:
            self._recent.popitem(last=False)
        return value

    def _randn(self, purpose: int, x: float, y: float, shape=None) -> torch.Tensor:
        """Standard normals determined by ``(entropy, purpose, x, y)`` only: of shape ``size``
        (two for a split that also draws the area ``H``), or one of ``shape``."""
        key = struct.pack("<qBdd", self._entropy, purpose, x, y)
        seed = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1
        generator = torch.Generator(device=self._device).manual_seed(seed)
        full = (1, *shape) if shape is not None else (1 + self._have_H, *self._size)
        return torch.randn(full, generator=generator, dtype=self._dtype, device=self._device)
