"""strategy="checkpoint": the exact gradient of the discrete forward solve, in bounded memory."""
import pytest
import torch
from torch import nn

from nodelib import SolverStats, odeint, odeint_adjoint
from nodelib.gradients.checkpoint import Checkpoints

F64 = torch.float64


class Field(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 2)).double()

    def forward(self, t, y):
        return self.net(y) * torch.cos(t)


def _gradients(f, mode, method, options, checkpoints=3):
    y0 = torch.randn(3, 2, dtype=F64, generator=torch.Generator().manual_seed(1))
    y0.requires_grad_()
    t = torch.linspace(0, 3, 7, dtype=F64, requires_grad=True)
    f.zero_grad()
    kw = dict(method=method, options=options, rtol=1e-6, atol=1e-8)
    if mode == "backprop":
        ys = odeint(f, y0, t, **kw)
    else:
        ys = odeint_adjoint(f, y0, t, strategy=mode,
                            adjoint_options={"checkpoints": checkpoints}, **kw)
    ys.pow(2).sum().backward()
    return torch.cat([y0.grad.reshape(-1), t.grad] + [p.grad.reshape(-1) for p in f.parameters()])


@pytest.mark.parametrize("method, options", [
    ("dopri5", None), ("tsit5", None), ("bosh3", None), ("fehlberg2", None),
    ("rk4", {"step_size": 0.05}), ("midpoint", {"step_size": 0.1}),
    ("kvaerno3", None), ("implicit_euler", {"step_size": 0.1})])
def test_checkpoint_equals_backprop(method, options):
    f = Field()
    exact = _gradients(f, "backprop", method, options)
    ckpt = _gradients(f, "checkpoint", method, options)
    scale = exact.abs().max().item()
    # explicit methods replay the forward's operations exactly: rounding only. Implicit ones
    # re-solve each stage by Newton (from a fresh Jacobian): agreement to Newton's tolerance
    # (min(0.03, √rtol) × the error scale per stage), amplified over the solve: bound 1e-5
    tol = 1e-12 if method not in ("kvaerno3", "implicit_euler") else 1e-5
    assert (exact - ckpt).abs().max().item() <= tol * scale


def test_checkpoint_more_exact_than_backsolve():
    """On a long solve the continuous adjoint's gradient carries the backward solve's error;
    the checkpointed one is the discrete solve's own gradient."""
    f = Field()
    exact = _gradients(f, "backprop", "dopri5", None)
    ckpt = _gradients(f, "checkpoint", "dopri5", None)
    back = _gradients(f, "backsolve", "dopri5", None)
    assert (ckpt - exact).abs().max() < (back - exact).abs().max() / 100


def test_checkpoints_are_bounded_and_thinned():
    keep = Checkpoints(4)
    for i in range(100):
        keep.offer(i, float(i), torch.zeros(1), None)
    assert len(keep.kept) <= 4 and keep.every == 32
    assert [k[0] for k in keep.kept] == [0, 32, 64, 96]


def test_memory_bounded_by_checkpoints():
    """Saved-for-backward bytes: backprop's grow with the steps, the checkpointed solve's
    forward keeps only the outputs (its segments' graphs live during backward only)."""
    f = Field()
    y0 = torch.randn(64, 2, dtype=F64, requires_grad=True)
    t = torch.tensor([0.0, 10.0], dtype=F64)
    saved = {}
    for mode in ("backprop", "checkpoint"):
        total = [0]

        def pack(x):
            total[0] += x.numel() * x.element_size()
            return x
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
            kw = dict(method="rk4", options={"step_size": 0.01})
            if mode == "backprop":
                odeint(f, y0, t, **kw)
            else:
                odeint_adjoint(f, y0, t, strategy="checkpoint", **kw)
        saved[mode] = total[0]
    assert saved["checkpoint"] * 100 < saved["backprop"]


def test_checkpoint_stats_and_errors():
    f = Field()
    stats = SolverStats()
    ys = odeint_adjoint(f, torch.ones(1, 2, dtype=F64), torch.tensor([0.0, 1.0], dtype=F64),
                        strategy="checkpoint", stats=stats)
    ys.sum().backward()
    # the backward pass re-runs the forward's steps: as many evaluations again, plus f0 at
    # each segment start
    assert stats.nfe_backward >= stats.nfe_forward - 2
    with pytest.raises(ValueError, match="at least 2 or 'sqrt'"):
        odeint_adjoint(f, torch.ones(1, 2, dtype=F64), torch.tensor([0.0, 1.0], dtype=F64),
                       strategy="checkpoint", adjoint_options={"checkpoints": 1})


def test_held_memory_grows_sublinearly_with_steps():
    """What the checkpointed solve actually holds between forward and backward: the tensors
    saved for backward plus the checkpoints it keeps (attributes of its graph node, which
    saved-tensor hooks do not see). 4x the steps: backprop holds ~4x, checkpoint far less."""
    f = Field()
    y0 = torch.randn(32, 2, dtype=F64, requires_grad=True)
    t = torch.tensor([0.0, 1.0], dtype=F64)
    held = {}
    for mode in ("backprop", "checkpoint"):
        for steps in (500, 2000):
            total = [0]

            def pack(x):
                total[0] += x.numel() * x.element_size()
                return x
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
                kw = dict(method="rk4", options={"step_size": 1.0 / steps})
                if mode == "backprop":
                    ys = odeint(f, y0, t, **kw)
                else:
                    ys = odeint_adjoint(f, y0, t, strategy="checkpoint", **kw)
            if mode == "checkpoint":
                total[0] += sum(y.numel() * y.element_size()
                                for _, _, y, _ in ys.grad_fn.keep.kept)
            held[mode, steps] = total[0]
    assert held["backprop", 2000] > 3.5 * held["backprop", 500]
    assert held["checkpoint", 2000] < 1.5 * held["checkpoint", 500]
    assert held["checkpoint", 2000] < 0.15 * held["backprop", 2000]


def test_checkpoint_on_a_stiff_implicit_solve():
    """Robertson's kinetics through kvaerno3: segments replay from a Jacobian cached at another
    time, so a replayed step may need a fresh Jacobian (or full Newton) to converge."""
    logk = torch.log(torch.tensor([0.04, 1e4, 3e7], dtype=F64))
    grads = []
    for mode in ("backprop", "checkpoint"):
        p = logk.clone().requires_grad_()

        def f(t, y):
            k = torch.exp(p)
            return torch.stack([-k[0] * y[0] + k[1] * y[1] * y[2],
                                k[0] * y[0] - k[1] * y[1] * y[2] - k[2] * y[1] ** 2,
                                k[2] * y[1] ** 2])
        y0 = torch.tensor([1.0, 0.0, 0.0], dtype=F64)
        t = torch.tensor([0.0, 1e-3, 1.0, 10.0], dtype=F64)
        kw = dict(method="kvaerno3", rtol=1e-6, atol=1e-10)
        ys = (odeint(f, y0, t, **kw) if mode == "backprop" else
              odeint_adjoint(f, y0, t, strategy="checkpoint", adjoint_params=(p,),
                             adjoint_options={"checkpoints": 12}, **kw))
        (ys[:, 1] * 1e4 + ys[:, 2]).sum().backward()
        grads.append(p.grad)
    # Newton re-solves each stage to 3% of rtol: agreement to ~1e-4 relative
    assert torch.allclose(grads[0], grads[1], rtol=1e-4, atol=1e-8)


def test_sqrt_schedule_keeps_checkpoints_and_segments_near_sqrt_n():
    for n in (100, 1600, 25600):
        keep = Checkpoints("sqrt")
        for i in range(n):
            keep.offer(i, float(i), torch.zeros(1), None)
        longest = max(b - a for (a, *_), (b, *_) in zip(keep.kept, keep.kept[1:] + [(n,)]))
        # at most 2√N kept (plus rounding), segments at most ~2√N long (k doubles at most once
        # past √N): both grow like √N
        assert len(keep.kept) <= 2 * n ** 0.5 + 2
        assert longest <= 4 * n ** 0.5
    f = Field()
    exact = _gradients(f, "backprop", "rk4", {"step_size": 0.01})
    sqrt = _gradients(f, "checkpoint", "rk4", {"step_size": 0.01}, checkpoints="sqrt")
    assert (exact - sqrt).abs().max().item() <= 1e-12 * exact.abs().max().item()
