"""nodelib.sde against torchsde in one process: the same SDE, method, step and Brownian path.

    python benchmarks/sde.py [--repeats 21] [--steps 128] [--batch 128] [--cases TEXT]

Each case (method × forward / backprop / adjoint) runs through ``nodelib.sdeint`` /
``sdeint_adjoint`` and ``torchsde.sdeint`` / ``sdeint_adjoint``, interleaved: in every repeat
each runs once, the order alternating between repeats, and the table reports median times and
the median over repeats of the within-repeat ratios. Both libraries are given a *fresh*
``torchsde.BrownianInterval`` with the same entropy in every call (so they integrate the same
path, and the cost of building it is in both times); a third column runs nodelib with its own
``BrownianInterval``. Before timing, one call of each with the same path checks that the
answers agree (the states, and the gradients of ``mean(ys²)`` with respect to ``y0`` and the
parameters).

The floor is what the evaluations alone cost: as many calls of ``f`` and ``g`` as nodelib made
(counted apart: those under ``no_grad``, and those recorded by autograd, each of which the floor
follows by one vector–Jacobian product), on the initial state, timed in the same interleaved
loop. torchsde's floor is the same with torchsde's counts.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torchsde
from torch import nn

import nodelib


class NeuralSDE(nn.Module):
    """Drift: an MLP of (y, t); diffusion: diagonal, g_i = sigmoid(a_i y_i + b_i). Counts its
    calls, split by whether autograd records them."""

    noise_type = "diagonal"

    def __init__(self, d=16, hidden=64, sde_type="ito"):
        super().__init__()
        self.sde_type = sde_type
        self.net = nn.Sequential(nn.Linear(d + 1, hidden), nn.Tanh(), nn.Linear(hidden, d))
        self.a = nn.Parameter(0.3 * torch.randn(d))
        self.b = nn.Parameter(0.3 * torch.randn(d))
        self.reset()

    def reset(self):
        self.calls = {"f": 0, "f_grad": 0, "g": 0, "g_grad": 0}

    def f(self, t, y):
        self.calls["f_grad" if torch.is_grad_enabled() else "f"] += 1
        return self.net(torch.cat([y, t.to(y.dtype).expand(y.shape[0], 1)], dim=1))

    def g(self, t, y):
        self.calls["g_grad" if torch.is_grad_enabled() else "g"] += 1
        return torch.sigmoid(self.a * y + self.b)


CASES = [  # (method, sde_type, adjoint_method)
    ("euler", "ito", "euler"),
    ("milstein", "ito", "euler"),
    ("reversible_heun", "stratonovich", "adjoint_reversible_heun"),
]


def call(lib, sde, y0, ts, dt, method, adjoint_method, mode, own_bm=False, entropy=0):
    """One timed solve; returns (seconds, ys, grads)."""
    size = (y0.shape[0], y0.shape[1])
    start = time.perf_counter()
    make = nodelib.BrownianInterval if own_bm else torchsde.BrownianInterval
    bm = make(t0=float(ts[0]), t1=float(ts[-1]), size=size, dtype=y0.dtype, entropy=entropy)
    y0 = y0.detach().requires_grad_(mode != "forward")
    grads = None
    if mode == "forward":
        with torch.no_grad():
            ys = lib.sdeint(sde, y0, ts, bm=bm, method=method, dt=dt)
    elif mode == "backprop":
        ys = lib.sdeint(sde, y0, ts, bm=bm, method=method, dt=dt)
        grads = torch.autograd.grad((ys ** 2).mean(), [y0, *sde.parameters()])
    else:
        ys = lib.sdeint_adjoint(sde, y0, ts, bm=bm, method=method, dt=dt,
                                adjoint_method=adjoint_method)
        grads = torch.autograd.grad((ys ** 2).mean(), [y0, *sde.parameters()])
    return time.perf_counter() - start, ys.detach(), grads


def floor_run(sde, y0, ts, calls):
    """The floor, timed: the counted calls of f and g on the initial state — plain ones under
    ``no_grad``, the others each followed by one VJP with respect to the state and the
    parameters. Returns seconds."""
    t, params = ts[0], list(sde.parameters())
    y = y0.detach().requires_grad_(True)
    start = time.perf_counter()
    for name in ("f", "g"):
        fn = getattr(sde, name)
        with torch.no_grad():
            for _ in range(calls[name]):
                fn(t, y0)
        for _ in range(calls[name + "_grad"]):
            value = fn(t, y)
            torch.autograd.grad(value, [y, *params], torch.ones_like(value), allow_unused=True)
    return time.perf_counter() - start


def max_gap(a, b):
    return max(((x - y).abs().max() / y.abs().max().clamp_min(1e-30)).item()
               for x, y in zip(a, b))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--steps", type=int, default=128)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--cases", default="")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    dt = 1.0 / args.steps   # a power of two keeps both grids identical (no rounding drift)
    ts = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    y0 = torch.randn(args.batch, 16)
    print(f"nodelib {nodelib.__version__}, torchsde {torchsde.__version__}, torch "
          f"{torch.__version__}; batch {args.batch}, d 16, {args.steps} steps, float32, "
          f"1 thread, {args.repeats} interleaved repeats\n")
    print("| case | nodelib ms | torchsde ms | nodelib (own BM) ms | floor ms | "
          "nodelib / torchsde | own BM / torchsde | nodelib / floor | torchsde / floor | "
          "f+g calls nodelib / torchsde | max rel. gap ys, grads |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for method, sde_type, adjoint_method in CASES:
        for mode in ("forward", "backprop", "adjoint"):
            if args.cases not in f"{method}, {mode}":
                continue
            print(measure(method, sde_type, adjoint_method, mode, y0, ts, dt, args.repeats),
                  flush=True)


def measure(method, sde_type, adjoint_method, mode, y0, ts, dt, repeats):
    """One row of the table."""
    name = f"{method}, {mode}"
    sde = NeuralSDE(sde_type=sde_type)
    runs = {
        "nodelib": lambda: call(nodelib, sde, y0, ts, dt, method, adjoint_method, mode),
        "torchsde": lambda: call(torchsde, sde, y0, ts, dt, method, adjoint_method, mode),
        "own": lambda: call(nodelib, sde, y0, ts, dt, method, adjoint_method, mode, own_bm=True),
    }
    calls, answers = {}, {}
    for k, run in list(runs.items()):   # warm-up, call counts, the answers compared
        sde.reset()
        _, ys, grads = run()
        calls[k], answers[k] = dict(sde.calls), (ys, grads)
    runs["floor"] = lambda: (floor_run(sde, y0, ts, calls["nodelib"]),)
    runs["floor torchsde"] = lambda: (floor_run(sde, y0, ts, calls["torchsde"]),)
    gap_ys = max_gap([answers["nodelib"][0]], [answers["torchsde"][0]])
    gap_g = (max_gap(answers["nodelib"][1], answers["torchsde"][1])
             if mode != "forward" else float("nan"))
    times: dict = {k: [] for k in runs}
    for r in range(repeats):
        for k in (list(runs) if r % 2 == 0 else list(runs)[::-1]):
            times[k].append(runs[k]()[0])
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = lambda a, b: statistics.median(x / y for x, y in zip(times[a], times[b]))
    n_calls = lambda k: sum(calls[k].values())
    return (f"| {name} | {1e3 * med['nodelib']:.1f} | {1e3 * med['torchsde']:.1f} | "
            f"{1e3 * med['own']:.1f} | {1e3 * med['floor']:.1f} | "
            f"{ratio('nodelib', 'torchsde'):.2f} | {ratio('own', 'torchsde'):.2f} | "
            f"{ratio('nodelib', 'floor'):.2f} | {ratio('torchsde', 'floor torchsde'):.2f} | "
            f"{n_calls('nodelib')} / {n_calls('torchsde')} | "
            f"{gap_ys:.1e}, {gap_g:.1e} |")


if __name__ == "__main__":
    main()
