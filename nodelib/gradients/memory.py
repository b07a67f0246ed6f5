"""Measuring the memory a gradient computation holds: what autograd saves for backward, and what
a checkpointed solve keeps on its graph node.

    from nodelib import SavedTensorMeter, kept_by_solve

    with SavedTensorMeter() as meter:
        ys = odeint_adjoint(f, y0, t, strategy="checkpoint")
        kept = kept_by_solve(ys)   # checkpoints, outputs, step log: unseen by the hooks
        forward_peak = meter.peak
        meter.reset_peak()
        ys[-1].sum().backward()           # inside the block: the replayed segments are counted too
    backward_peak = meter.peak

:class:`SavedTensorMeter` counts, through ``torch.autograd.graph.saved_tensors_hooks``, the bytes
of the distinct storages that autograd holds for the backward pass, from the moment an operation
saves a tensor until the graph that saved it is freed. It keeps the current total and the peak.
A storage that several operations save (a weight matrix, a tensor saved by the op that made it
and by the one that reads it) is counted once, and every saved tensor counts its whole storage,
because that is what it keeps alive. Storages that exist anyway (parameters, the inputs) are
counted too while a graph holds them: the meter answers "what does the graph keep alive", not
"what would be freed without it".

Why the meter stores ``t.detach()``: the pack hook's return value is owned by the graph node that
saved ``t``. If it held ``t`` itself, an operation that saves its own output (``exp``, ``tanh``,
``sigmoid``) would close a cycle, output → ``grad_fn`` → packed value → output, through C++
autograd objects that Python's garbage collector cannot see. Such a graph is then never freed
unless it is backpropagated (which releases its saved tensors), and the meter would count it
forever. The detached tensor shares the storage, so the bytes are the same and autograd rebuilds
the link to the graph when it unpacks; only the cycle is gone.

:func:`kept_by_solve` reads what ``odeint_adjoint(..., strategy="checkpoint")`` keeps as plain
attributes of its graph node, which saved-tensor hooks never see: the checkpoints and the outputs
(tensors), and the log of accepted steps that the replay follows (two Python floats per step,
O(N) however few checkpoints are kept).
"""
from __future__ import annotations

import sys
from typing import NamedTuple

import torch

__all__ = ["KeptBySolve", "SavedTensorMeter", "kept_by_solve"]


def _storage_key_and_bytes(t: torch.Tensor):
    """(a key that identifies t's storage, the storage's bytes)."""
    try:
        storage = t.untyped_storage()
    except (RuntimeError, NotImplementedError):   # no single storage (sparse, nested): count
        return ("object", id(t)), t.numel() * t.element_size()   # the elements, once per tensor
    return (t.device, storage.data_ptr()), storage.nbytes()


class _Packed:
    """What the graph holds instead of a saved tensor: the tensor, detached (no cycle through
    ``grad_fn``), and a note to the meter when the graph lets it go."""
    __slots__ = ("key", "meter", "tensor")

    def __init__(self, meter: SavedTensorMeter, key, tensor: torch.Tensor):
        self.tensor, self.meter, self.key = tensor, meter, key

    def __del__(self):
        self.meter._release(self.key)


class SavedTensorMeter:
    """Live bytes of the distinct storages autograd has saved for backward, and their peak.

    Use it as a context manager around the forward pass *and* the backward pass: tensors saved
    inside the block are counted until autograd frees them, also after the block ends, but graphs
    recorded after it (for example by a checkpointed backward pass run outside) are not seen.

    ``current``: bytes held now. ``peak``: the largest ``current`` since the block was entered or
    :meth:`reset_peak` was last called. ``n_saved``: how many tensors were saved in all.
    """

    def __init__(self):
        self.current = 0
        self.peak = 0
        self.n_saved = 0
        self._users: dict = {}   # storage key -> number of live packed tensors sharing it
        self._sizes: dict = {}   # storage key -> bytes
        self._hooks = None

    def __enter__(self) -> SavedTensorMeter:
        if self._hooks is not None:
            raise RuntimeError("a SavedTensorMeter cannot be entered twice at once")
        self.peak = self.current
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        hooks, self._hooks = self._hooks, None
        hooks.__exit__(*exc)

    def reset_peak(self) -> None:
        """Start a new peak from the bytes held now (e.g. between the forward and backward pass)."""
        self.peak = self.current

    def _pack(self, t: torch.Tensor) -> _Packed:
        key, nbytes = _storage_key_and_bytes(t)
        users = self._users.get(key, 0)
        if users == 0:
            self._sizes[key] = nbytes
            self.current += nbytes
            self.peak = max(self.peak, self.current)
        self._users[key] = users + 1
        self.n_saved += 1
        return _Packed(self, key, t.detach())

    @staticmethod
    def _unpack(packed: _Packed) -> torch.Tensor:
        return packed.tensor

    def _release(self, key) -> None:
        self._users[key] -= 1
        if self._users[key] == 0:
            del self._users[key]
            self.current -= self._sizes.pop(key)


class KeptBySolve(NamedTuple):
    """What a checkpointed solve keeps on its graph node (all zero for any other output).

    ``tensor_bytes``: the distinct storages of the checkpoints and the outputs. ``step_log_bytes``:
    the lists of accepted step times and sizes (Python floats), which grow with every step.
    ``checkpoints``: how many states are kept; ``every``: they are every ``every``-th step."""
    tensor_bytes: int = 0
    step_log_bytes: int = 0
    checkpoints: int = 0
    every: int = 0

    @property
    def total(self) -> int:
        return self.tensor_bytes + self.step_log_bytes


def _list_bytes(values: list) -> int:
    """A list's own size plus each distinct object in it (Python floats: 24 bytes each)."""
    distinct = {id(v): v for v in values}.values()
    return sys.getsizeof(values) + sum(sys.getsizeof(v) for v in distinct)


def kept_by_solve(ys: torch.Tensor) -> KeptBySolve:
    """The memory that ``odeint_adjoint(..., strategy="checkpoint")`` keeps outside autograd's
    saved tensors, read off the graph node of its output ``ys``; zeros for any other tensor
    (backprop and backsolve keep nothing there)."""
    node = ys.grad_fn
    keep, solution = getattr(node, "keep", None), getattr(node, "solution", None)
    if keep is None or solution is None:
        return KeptBySolve()
    tensors = [solution.ys] if torch.is_tensor(solution.ys) else list(solution.ys)
    for _, _, y, f0 in keep.kept:
        tensors += [y] if f0 is None else [y, f0]
    storages = dict(_storage_key_and_bytes(x) for x in tensors)
    log = _list_bytes(solution.step_t) + _list_bytes(solution.step_h)
    return KeptBySolve(sum(storages.values()), log, len(keep.kept), keep.every)
