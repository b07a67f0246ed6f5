"""nodelib vs torchdiffeq, side by side in one process.

Each case runs the same problem, method and tolerances through both libraries, interleaved
(A B, B A, A B, ...) so that machine noise hits both alike; we report medians and their ratio,
the number of function evaluations (forward / backward) and each library's error against a
tight-tolerance float64 reference (the solution and the gradient of the loss).

    python benchmarks/run.py [--repeats 21] [--device cpu|cuda] [--markdown]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torchdiffeq
from torch import nn

import nodelib

LIBS = {"nodelib": (nodelib.odeint, nodelib.odeint_adjoint),
        "torchdiffeq": (torchdiffeq.odeint, torchdiffeq.odeint_adjoint)}


class MLPField(nn.Module):
    """A small MLP vector field f(t, y) with a time input, as in a Neural ODE layer."""

    def __init__(self, dim=2, hidden=64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim + 1, hidden), nn.Tanh(),
                                 nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, dim))
        self.nfe = 0

    def forward(self, t, y):
        self.nfe += 1
        return self.net(torch.cat([y, t.expand(y.shape[0], 1)], dim=1))


class Spiral(nn.Module):
    """The torchdiffeq demo's spiral: dy/dt = (y³) A."""

    def __init__(self):
        super().__init__()
        self.A = nn.Parameter(torch.tensor([[-0.1, 2.0], [-2.0, -0.1]]))
        self.nfe = 0

    def forward(self, t, y):
        self.nfe += 1
        return (y ** 3) @ self.A


def make_cases(device):
    torch.manual_seed(0)
    mlp = MLPField().to(device)
    y_mlp = torch.randn(256, 2, device=device)
    t_mlp = torch.tensor([0.0, 1.0], device=device)
    spiral = Spiral().to(device)
    y_sp = torch.tensor([[2.0, 0.0]], device=device)
    t_sp = torch.linspace(0.0, 25.0, 1000, device=device)
    tol = dict(rtol=1e-6, atol=1e-8)
    return [
        # name, field, y0, t, solver kwargs, gradient mode (None: forward only)
        ("MLP 256x2, dopri5, adjoint", mlp, y_mlp, t_mlp, dict(method="dopri5", **tol), "adjoint"),
        ("MLP 256x2, dopri5, backprop", mlp, y_mlp, t_mlp, dict(method="dopri5", **tol), "backprop"),
        ("spiral, 1000 outputs, dopri5, fwd", spiral, y_sp, t_sp, dict(method="dopri5", **tol), None),
        ("spiral, 1000 outputs, dopri5, adjoint", spiral, y_sp, t_sp, dict(method="dopri5", **tol), "adjoint"),
        ("spiral, 1000 outputs, rk4 h=0.025, backprop", spiral, y_sp, t_sp,
         dict(method="rk4", options=dict(step_size=0.025)), "backprop"),
        ("MLP 256x2, rk4 h=0.05, backprop", mlp, y_mlp, t_mlp,
         dict(method="rk4", options=dict(step_size=0.05)), "backprop"),
    ]


def loss_of(ys):
    return (ys ** 2).mean()


def run_once(lib, field, y0, t, kw, mode):
    """One timed call. Returns (seconds, ys, grads, nfe_forward, nfe_backward)."""
    odeint, odeint_adjoint = LIBS[lib]
    params = list(field.parameters())
    y0 = y0.detach().requires_grad_(mode is not None)
    field.nfe = 0
    sync(y0)
    start = time.perf_counter()
    if mode is None:
        with torch.no_grad():
            ys = odeint(field, y0, t, **kw)
        grads = None
    else:
        solver = odeint_adjoint if mode == "adjoint" else odeint
        if mode == "adjoint":
            kw = dict(kw, adjoint_options=dict(norm="seminorm"))
        ys = solver(field, y0, t, **kw)
        nfe_f = field.nfe
        grads = torch.autograd.grad(loss_of(ys), [y0, *params])
    sync(y0)
    elapsed = time.perf_counter() - start
    nfe_total = field.nfe
    nfe_f = nfe_total if mode is None else nfe_f
    return elapsed, ys.detach(), grads, nfe_f, nfe_total - nfe_f


def sync(x):
    if x.is_cuda:
        torch.cuda.synchronize()


def reference(field, y0, t, mode):
    """Tight float64 solution (and gradient by backprop) with torchdiffeq's 8th-order dopri8."""
    f64 = _to_double(field)
    y0 = y0.double().detach().requires_grad_(mode is not None)
    ys = torchdiffeq.odeint(f64, y0, t.double(), rtol=1e-12, atol=1e-12, method="dopri8")
    grads = torch.autograd.grad(loss_of(ys), [y0, *f64.parameters()]) if mode else None
    return ys.detach(), grads


def _to_double(module):
    import copy
    return copy.deepcopy(module).double()


def rel_err(a, b):
    return ((a.double() - b).norm() / b.norm()).item()


def grad_err(g, g_ref):
    num = sum(((a.double() - b) ** 2).sum() for a, b in zip(g, g_ref)) ** 0.5
    den = sum((b ** 2).sum() for b in g_ref) ** 0.5
    return (num / den).item()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (1: the solver overhead is what we measure)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows = []
    for name, field, y0, t, kw, mode in make_cases(device):
        ys_ref, g_ref = reference(field, y0, t, mode)
        times = {lib: [] for lib in LIBS}
        last = {}
        for lib in LIBS:                       # warm-up (allocators, caches)
            run_once(lib, field, y0, t, kw, mode)
        for r in range(args.repeats):
            order = list(LIBS) if r % 2 == 0 else list(LIBS)[::-1]
            for lib in order:
                out = run_once(lib, field, y0, t, kw, mode)
                times[lib].append(out[0])
                last[lib] = out
        row = {"case": name}
        for lib in LIBS:
            _, ys, grads, nfe_f, nfe_b = last[lib]
            row[lib] = dict(ms=1e3 * statistics.median(times[lib]), nfe=f"{nfe_f}/{nfe_b}",
                            err=rel_err(ys, ys_ref),
                            gerr=grad_err(grads, g_ref) if grads is not None else None)
        row["ratio"] = row["nodelib"]["ms"] / row["torchdiffeq"]["ms"]
        rows.append(row)
        print_row(row, header=len(rows) == 1)
    print(f"\n{args.repeats} interleaved repeats, median wall time; device={device}, "
          f"torch {torch.__version__}, torchdiffeq {torchdiffeq.__version__ if hasattr(torchdiffeq, '__version__') else ''}, "
          f"{torch.get_num_threads()} CPU thread(s). ratio = nodelib / torchdiffeq (< 1: nodelib faster).")


def print_row(row, header):
    if header:
        print("| case | nodelib ms | torchdiffeq ms | ratio | NFE fwd/bwd nodelib | NFE fwd/bwd torchdiffeq "
              "| sol. err nodelib | sol. err torchdiffeq | grad err nodelib | grad err torchdiffeq |")
        print("|---|---|---|---|---|---|---|---|---|---|")
    n, d = row["nodelib"], row["torchdiffeq"]
    fmt = lambda x: "—" if x is None else f"{x:.1e}"
    print(f"| {row['case']} | {n['ms']:.1f} | {d['ms']:.1f} | {row['ratio']:.2f} | {n['nfe']} | {d['nfe']} "
          f"| {fmt(n['err'])} | {fmt(d['err'])} | {fmt(n['gerr'])} | {fmt(d['gerr'])} |", flush=True)


if __name__ == "__main__":
    main()
