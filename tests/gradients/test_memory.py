"""nodelib.gradients.memory: live saved-tensor bytes (current and peak), and what a checkpointed solve keeps
on its graph node."""
import gc

import pytest
import torch
from torch import nn

from nodelib import KeptBySolve, SavedTensorMeter, kept_by_solve, odeint, odeint_adjoint

F64 = torch.float64


def test_known_sizes_of_an_op_chain(device):
    x = torch.randn(1000, dtype=F64, device=device, requires_grad=True)
    with SavedTensorMeter() as meter:
        y = x.exp()            # exp saves its output y: 8000 B
        assert meter.current == 8000
        z = y.sin()            # sin saves its input, y again: the same storage, counted once
        assert meter.current == 8000
        w = z.exp()            # a new output saved: 8000 B more
        assert meter.current == 16000 and meter.n_saved == 3
        w.sum().backward()     # backward frees every saved tensor
    assert meter.current == 0
    assert meter.peak == 16000
    assert torch.allclose(x.grad, w * torch.cos(y) * y, rtol=1e-14, atol=0)


def test_a_view_counts_its_whole_storage():
    x = torch.randn(100, 10, dtype=F64, requires_grad=True)
    big = x * 2
    with SavedTensorMeter() as meter:
        small = big[:1].exp()  # exp saves its output, a fresh 10-element tensor
        other = big[:1].sin()  # sin saves the view big[:1], which keeps all of big alive
    assert meter.current == 10 * 8 + 100 * 10 * 8
    del small, other
    assert meter.current == 0   # outputs dropped: their graphs are freed


def test_peak_is_kept_and_reset_peak_restarts_it():
    x = torch.randn(500, dtype=F64, requires_grad=True)
    with SavedTensorMeter() as meter:
        a = x.exp().exp()      # two saved outputs: 8000 B
        assert meter.peak == meter.current == 8000
        b = x.sin()            # saves x: 4000 B
        del b                  # dropping the output frees its graph
        assert meter.current == 8000 and meter.peak == 12000
        meter.reset_peak()
        assert meter.peak == meter.current == 8000
        a.sum().backward()
    assert meter.current == 0 and meter.peak >= meter.current


class _HoldsTheTensor(SavedTensorMeter):
    """The bug this meter avoids: the packed value holds t itself, not t.detach()."""

    def _pack(self, t):
        packed = super()._pack(t)
        packed.tensor = t
        return packed


@pytest.mark.parametrize("meter_class, leaked", [(SavedTensorMeter, 0),
                                                 (_HoldsTheTensor, 100 * 8)])
def test_a_graph_dropped_without_backward_is_released(meter_class, leaked):
    # exp saves its own output; holding that output in the packed value closes a cycle
    # output -> grad_fn -> packed -> output through C++ objects that gc cannot collect. With
    # t.detach() the graph is freed as soon as its output is dropped. (The second case shows
    # this test catches the bug: 100 float64 scalars stay counted.)
    p = torch.tensor(1.0, dtype=F64, requires_grad=True)
    with meter_class() as meter:
        for _ in range(100):
            p.exp()
    gc.collect()
    assert meter.current == leaked


def test_gradients_unchanged_also_the_second_derivative():
    x = torch.randn(50, dtype=F64, requires_grad=True)
    with SavedTensorMeter() as meter:
        y = (x.exp() * x.tanh()).sum()
        g, = torch.autograd.grad(y, x, create_graph=True)
        gg, = torch.autograd.grad(g.sum(), x)
    t = x.detach()
    th = torch.tanh(t)
    sech2 = 1 - th**2
    # d²/dx² of e^x tanh x = e^x (tanh + 2 sech² - 2 tanh sech²), to rounding
    want = t.exp() * (th + 2 * sech2 - 2 * th * sech2)
    assert torch.allclose(gg, want, rtol=1e-12, atol=1e-14)
    del y, g, gg
    gc.collect()
    assert meter.current == 0


def test_entering_twice_is_an_error():
    meter = SavedTensorMeter()
    with meter:
        with pytest.raises(RuntimeError, match="twice"):
            meter.__enter__()


class _Field(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 2)).double()

    def forward(self, t, y):
        return self.net(y)


def _measure(strategy, n_steps, checkpoints=8):
    f = _Field()
    y0 = torch.randn(32, 2, dtype=F64, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([0.0, 1.0], dtype=F64)
    kw = dict(method="rk4", options={"step_size": 1.0 / n_steps})
    with SavedTensorMeter() as meter:
        if strategy == "backprop":
            ys = odeint(f, y0, t, **kw)
        else:
            ys = odeint_adjoint(f, y0, t, strategy=strategy,
                                adjoint_options={"checkpoints": checkpoints}, **kw)
        kept = kept_by_solve(ys)
        forward = meter.peak
        meter.reset_peak()
        ys[-1].square().sum().backward()
    assert meter.current == 0   # everything freed by the backward pass
    return dict(forward=forward, backward=meter.peak, kept=kept, state=y0.numel() * 8)


def test_checkpointed_backward_peak_is_one_segment_of_backprop():
    n = 64
    bp, ck = _measure("backprop", n), _measure("checkpoint", n, checkpoints=8)
    per_step = bp["forward"] / n
    # checkpointing records no graph in the forward pass; its backward peak is one replayed
    # segment of `every` steps (16 here), i.e. that many steps of backprop's graph (the weights,
    # < 1% of it, shared by every step, and the loss's own saved tensors make up the 2%)
    assert ck["forward"] == 0
    assert ck["kept"].every == 16
    assert abs(ck["backward"] / (16 * per_step) - 1) < 0.02


def test_kept_by_solve():
    assert kept_by_solve(torch.ones(3)) == KeptBySolve()
    for strategy in ("backprop", "backsolve"):
        assert _measure(strategy, 16)["kept"] == KeptBySolve()
    for n in (64, 128):
        r = _measure("checkpoint", n, checkpoints=8)
        kept = r["kept"]
        assert kept.checkpoints <= 8 and kept.every * (kept.checkpoints - 1) <= n
        # the checkpoints and the two outputs (a fixed-step method keeps no slopes)
        assert kept.tensor_bytes == (kept.checkpoints + 2) * r["state"]
        # two Python floats per step (24 B each, plus an 8 B pointer in its list), the lists'
        # headers and their over-allocation (at most 1/8): 64 to 72 B per step
        assert 64 <= kept.step_log_bytes / n <= 72
        assert kept.total == kept.tensor_bytes + kept.step_log_bytes
