"""nodelib vs torchdiffeq vs torchode, side by side in one process, against a floor.

Each case runs the same problem, method and tolerances through the three libraries (torchode
only where it has the method), plus a "floor": the same number of evaluations of f alone. All
four are interleaved (the order rotates and reverses from repeat to repeat) so that machine
noise hits them alike; we report medians, and ratios taken within each repeat (median over the
repeats). We also report the number of function evaluations (forward / backward) and each
library's error against a tight-tolerance float64 reference (the solution and the gradient of
the loss).

    python benchmarks/run.py [--repeats 21] [--device cpu|cuda] [--cases TEXT] [--skip TEXT]

torchdiffeq and torchode are benchmark-only dependencies (see benchmarks/README.md).
"""
from __future__ import annotations

import argparse
import copy
import math
import statistics
import time
from dataclasses import dataclass

import torch
import torchdiffeq
from torch import nn

import nodelib

try:
    import torchode
except ImportError:   # the table then shows "—" in torchode's columns
    torchode = None

LIBS = ("nodelib", "torchdiffeq", "torchode")


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


@dataclass
class Case:
    name: str
    field: nn.Module
    y0: torch.Tensor
    t: torch.Tensor
    method: str
    mode: str | None                  # None (forward only), "adjoint" or "backprop"
    rtol: float | None = None         # adaptive methods
    atol: float | None = None
    step_size: float | None = None    # fixed-step methods
    norm: str = "rms"                 # "rms" (one RMS over the batch) or "per_sample"
    error: str = "rel"                # "rel": ||y - y_ref|| / ||y_ref||; "max": max |y - y_ref|


def make_cases(device):
    torch.manual_seed(0)
    mlp = MLPField().to(device)
    y_mlp = torch.randn(256, 2, device=device)
    t_mlp = torch.tensor([0.0, 1.0], device=device)
    spiral = Spiral().to(device)
    y_sp = torch.tensor([[2.0, 0.0]], device=device)
    t_sp = torch.linspace(0.0, 25.0, 1000, device=device)
    radii = torch.linspace(0.2, 2.0, 64, device=device)
    y_batch = torch.stack([radii, torch.zeros_like(radii)], dim=1)
    t_batch = torch.linspace(0.0, 25.0, 100, device=device)
    tol = dict(rtol=1e-6, atol=1e-8)
    loose = dict(rtol=1e-5, atol=1e-5)
    return [
        Case("MLP 256x2, dopri5, adjoint", mlp, y_mlp, t_mlp, "dopri5", "adjoint", **tol),
        Case("MLP 256x2, dopri5, backprop", mlp, y_mlp, t_mlp, "dopri5", "backprop", **tol),
        Case("spiral, 1000 outputs, dopri5, fwd", spiral, y_sp, t_sp, "dopri5", None, **tol),
        Case("spiral, 1000 outputs, dopri5, adjoint", spiral, y_sp, t_sp, "dopri5", "adjoint",
             **tol),
        Case("spiral, 1000 outputs, rk4 h=0.025, backprop", spiral, y_sp, t_sp, "rk4",
             "backprop", step_size=0.025),
        Case("MLP 256x2, rk4 h=0.05, backprop", mlp, y_mlp, t_mlp, "rk4", "backprop",
             step_size=0.05),
        Case("64 spirals, 100 outputs, dopri5, fwd, norm rms", spiral, y_batch, t_batch,
             "dopri5", None, norm="rms", error="max", **tol),
        Case("64 spirals, 100 outputs, dopri5, fwd, norm per_sample", spiral, y_batch, t_batch,
             "dopri5", None, norm="per_sample", error="max", **tol),
    ]


# --- error norms for the peers ----------------------------------------------------------------
def per_sample_norm(x):
    """max over the batch (dim 0) of each sample's RMS: nodelib's options["norm"]="per_sample",
    written as a torchdiffeq norm (called on the scaled error, shaped like the state)."""
    return torch.linalg.vector_norm(x.reshape(x.shape[0], -1), dim=1).max() / math.sqrt(
        x[0].numel())


def torchode_global_rms(x):
    """One RMS over the whole (batch, features) error, handed to every sample: torchode then
    accepts/rejects all samples together and they keep one shared step, as in nodelib's and
    torchdiffeq's default norm."""
    return (torch.linalg.vector_norm(x) / math.sqrt(x.numel())).expand(x.shape[0])


def torchode_seminorm(n):
    """The seminorm on torchode's augmented state [a_t, z, a, a_θ] (per sample): z and a only."""
    def norm(x):
        za = x[:, 1:1 + 2 * n]
        return (torch.linalg.vector_norm(za) / math.sqrt(za.numel())).expand(x.shape[0])
    return norm


# --- the three libraries ----------------------------------------------------------------------
def loss_of(ys):
    return (ys ** 2).mean()


class _TorchodeField(nn.Module):
    """torchode calls f(t, y) with t of shape (batch,); its BacksolveAdjoint calls it per sample
    (under vmap: t 0-d, y 1-D). Our fields take a 0-d or column t and a (batch, features) y."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, t, y):
        if y.dim() == 1:
            return self.inner(t, y[None])[0]
        return self.inner(t[:, None], y)


class TorchodeRunner:
    """torchode set up once per case (building its objects is not timed): Dopri5, a PID
    controller with nodelib's PI gains, AutoDiffAdjoint (backprop) or BacksolveAdjoint."""

    def __init__(self, case: Case):
        self.case = case
        self.available = torchode is not None and case.method == "dopri5"
        if not self.available:
            return
        n = case.y0[0].numel()
        term = torchode.ODETerm(_TorchodeField(case.field), with_stats=False)
        step = torchode.Dopri5(term=term)
        # nodelib's default PI: h·0.9·r^(-1/5)·r_prev^0.04  <=>  torchode's PID with
        # (k_I + k_P)/5 = 1/5 and k_P/5 = 0.04, i.e. pcoeff 0.2, icoeff 0.8, dcoeff 0
        norm = torchode_global_rms if case.norm == "rms" else torchode.step_size_controllers.rms_norm

        def controller(norm):
            return torchode.PIDController(case.atol, case.rtol, 0.2, 0.8, 0.0, term=term,
                                          norm=norm)
        if case.mode == "adjoint":
            self.solver = torchode.BacksolveAdjoint(term, step, controller(norm))
            # its constructor takes one controller for both passes; give the backward pass the
            # seminorm (z and a only), as nodelib and torchdiffeq get it here
            self.solver.backward_adjoint = torchode.AutoDiffAdjoint(
                step, controller(torchode_seminorm(n)))
        else:
            self.solver = torchode.AutoDiffAdjoint(step, controller(norm))

    def __call__(self, y0, t):
        t_eval = t.expand(y0.shape[0], -1)
        problem = torchode.InitialValueProblem(y0, t_eval=t_eval)
        sol = self.solver.solve(problem)
        return sol.ys.transpose(0, 1)          # (batch, time, ...) -> (time, batch, ...)


def library_call(lib, case: Case, torchode_runner):
    """``solve(y0) -> ys`` for this library, with the case's settings."""
    if lib == "torchode":
        return lambda y0: torchode_runner(y0, case.t)
    odeint, odeint_adjoint = {"nodelib": (nodelib.odeint, nodelib.odeint_adjoint),
                              "torchdiffeq": (torchdiffeq.odeint, torchdiffeq.odeint_adjoint)}[lib]
    if case.step_size is not None:
        kw = dict(method=case.method, options=dict(step_size=case.step_size))
    else:
        kw = dict(method=case.method, rtol=case.rtol, atol=case.atol)
        if case.norm == "per_sample":
            kw["options"] = dict(norm="per_sample" if lib == "nodelib" else per_sample_norm)
    solver = odeint
    if case.mode == "adjoint":
        solver = odeint_adjoint
        kw = dict(kw, adjoint_options=dict(norm="seminorm"))
    return lambda y0: solver(case.field, y0, case.t, **kw)


def run_once(solve, case: Case):
    """One timed call. Returns (seconds, ys, grads, nfe_forward, nfe_backward)."""
    field, mode = case.field, case.mode
    params = list(field.parameters())
    y0 = case.y0.detach().requires_grad_(mode is not None)
    field.nfe = 0
    sync(y0)
    start = time.perf_counter()
    if mode is None:
        with torch.no_grad():
            ys = solve(y0)
        grads = None
        nfe_f = field.nfe
    else:
        ys = solve(y0)
        nfe_f = field.nfe
        grads = torch.autograd.grad(loss_of(ys), [y0, *params])
    sync(y0)
    elapsed = time.perf_counter() - start
    return elapsed, ys.detach(), grads, nfe_f, field.nfe - nfe_f


# --- the floor: f alone ----------------------------------------------------------------------
def floor_counts(mode, nfe_f, nfe_b):
    """(plain evaluations, evaluations with a VJP) that the floor times for these NFE."""
    if mode is None:
        return nfe_f, 0
    if mode == "backprop":
        return 0, nfe_f
    return nfe_f, nfe_b


def floor_once(case: Case, n_plain: int, n_vjp: int):
    """Times f alone: ``n_plain`` evaluations without a graph and ``n_vjp`` evaluations each
    with one vector–Jacobian product for the state and the parameters. Backprop (the VJPs of
    all evaluations in one backward call, after all the forward calls) and the adjoint (one
    evaluation + VJP at a time, as its backward dynamics do) order them differently; the work
    is the same. Returns (seconds plain, seconds with VJP)."""
    field, y0 = case.field, case.y0.detach()
    params = [p for p in field.parameters() if p.requires_grad]
    t = torch.zeros((), dtype=y0.dtype, device=y0.device)
    cot = torch.ones_like(y0)
    sync(y0)
    start = time.perf_counter()
    with torch.no_grad():
        for _ in range(n_plain):
            field(t, y0)
    sync(y0)
    mid = time.perf_counter()
    if n_vjp and case.mode == "backprop":
        y = y0.requires_grad_(True)
        outs = [field(t, y) for _ in range(n_vjp)]
        torch.autograd.grad(outs, [y, *params], [cot] * n_vjp)
    elif n_vjp:
        for _ in range(n_vjp):
            z = y0.detach().requires_grad_(True)
            torch.autograd.grad(field(t, z), [z, *params], cot)
    sync(y0)
    return mid - start, time.perf_counter() - mid


def sync(x):
    if x.is_cuda:
        torch.cuda.synchronize()


# --- reference and errors ---------------------------------------------------------------------
def reference(case: Case):
    """Tight float64 solution (and gradient by backprop) with torchdiffeq's 8th-order dopri8."""
    f64 = copy.deepcopy(case.field).double()
    y0 = case.y0.double().detach().requires_grad_(case.mode is not None)
    ys = torchdiffeq.odeint(f64, y0, case.t.double(), rtol=1e-12, atol=1e-12, method="dopri8")
    grads = (torch.autograd.grad(loss_of(ys), [y0, *f64.parameters()]) if case.mode
             else None)
    return ys.detach(), grads


def sol_err(a, b, kind):
    if kind == "max":
        return (a.double() - b).abs().max().item()
    return ((a.double() - b).norm() / b.norm()).item()


def grad_err(g, g_ref):
    num = sum(((a.double() - b) ** 2).sum() for a, b in zip(g, g_ref)) ** 0.5
    den = sum((b ** 2).sum() for b in g_ref) ** 0.5
    return (num / den).item()


# --- the benchmark loop ----------------------------------------------------------------------
def bench_case(case: Case, repeats: int):
    ys_ref, g_ref = reference(case)
    runner = TorchodeRunner(case)
    libs = [lib for lib in LIBS if lib != "torchode" or runner.available]
    solves = {lib: library_call(lib, case, runner) for lib in libs}
    last = {}
    for lib in libs:                                   # warm-up (allocators, caches), and NFE
        last[lib] = run_once(solves[lib], case)
    nfe = {lib: last[lib][3:5] for lib in libs}
    counts = {lib: floor_counts(case.mode, *nfe[lib]) for lib in libs}
    floor_once(case, *counts["nodelib"])               # warm-up
    times = {lib: [] for lib in libs}
    floors = {lib: [] for lib in libs}
    floor_ms = []
    entries = libs + ["floor"]
    for r in range(repeats):
        k = r % len(entries)
        order = entries[k:] + entries[:k]
        if r % 2:
            order = order[::-1]
        for entry in order:
            if entry == "floor":
                plain, vjp = floor_once(case, *counts["nodelib"])
            else:
                out = run_once(solves[entry], case)
                times[entry].append(out[0])
                last[entry] = out
        # one floor measurement, scaled to each library's own counts
        n_plain, n_vjp = counts["nodelib"]
        unit_plain = plain / n_plain if n_plain else 0.0
        unit_vjp = vjp / n_vjp if n_vjp else 0.0
        floor_ms.append(plain + vjp)
        for lib in libs:
            floors[lib].append(counts[lib][0] * unit_plain + counts[lib][1] * unit_vjp)
    row = {"case": case.name, "floor_ms": 1e3 * statistics.median(floor_ms), "error": case.error}
    for lib in LIBS:
        if lib not in libs:
            row[lib] = None
            continue
        _, ys, grads, nfe_f, nfe_b = last[lib]
        row[lib] = dict(
            ms=1e3 * statistics.median(times[lib]), nfe=f"{nfe_f}/{nfe_b}",
            err=sol_err(ys, ys_ref, case.error),
            gerr=grad_err(grads, g_ref) if grads is not None else None,
            vs_td=statistics.median(a / b for a, b in zip(times[lib], times["torchdiffeq"])),
            vs_floor=statistics.median(a / b for a, b in zip(times[lib], floors[lib])))
    if row["torchode"] is not None:
        row["nl_vs_to"] = statistics.median(
            a / b for a, b in zip(times["nodelib"], times["torchode"]))
    else:
        row["nl_vs_to"] = None
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (1: the solver overhead is what we measure)")
    ap.add_argument("--cases", default="", help="run only the cases whose name contains this")
    ap.add_argument("--skip", default=None, help="skip the cases whose name contains this")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows = []
    for case in make_cases(device):
        if args.cases not in case.name or (args.skip and args.skip in case.name):
            continue
        rows.append(bench_case(case, args.repeats))
        print_timing(rows[-1], header=len(rows) == 1)
    print()
    for i, row in enumerate(rows):
        print_accuracy(row, header=i == 0)
    version = lambda m: getattr(m, "__version__", "?") if m is not None else "not installed"
    print(f"\n{args.repeats} interleaved repeats; ms: median wall time; ratios: median over the "
          f"repeats of the ratio within a repeat. device={device}, torch {torch.__version__}, "
          f"nodelib {nodelib.__version__}, torchdiffeq {version(torchdiffeq)}, torchode "
          f"{version(torchode)}, {torch.get_num_threads()} CPU thread(s); nodelib from "
          f"{nodelib.__file__}.")


_fmt = lambda x, spec: "—" if x is None else format(x, spec)


def print_timing(row, header):
    if header:
        print("| case | nodelib ms | torchdiffeq ms | torchode ms | floor ms | nodelib / "
              "torchdiffeq | torchode / torchdiffeq | nodelib / torchode | nodelib / floor | "
              "torchdiffeq / floor | torchode / floor |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
    n, d, o = row["nodelib"], row["torchdiffeq"], row["torchode"]
    g = lambda lib, key, spec: _fmt(None if row[lib] is None else row[lib][key], spec)
    print(f"| {row['case']} | {n['ms']:.1f} | {d['ms']:.1f} | {g('torchode', 'ms', '.1f')} "
          f"| {row['floor_ms']:.1f} | {n['vs_td']:.2f} | {g('torchode', 'vs_td', '.2f')} "
          f"| {_fmt(row['nl_vs_to'], '.2f')} | {n['vs_floor']:.2f} | {d['vs_floor']:.2f} "
          f"| {g('torchode', 'vs_floor', '.2f')} |", flush=True)


def print_accuracy(row, header):
    if header:
        print("| case | NFE fwd/bwd nodelib | torchdiffeq | torchode | sol. err nodelib | "
              "torchdiffeq | torchode | grad err nodelib | torchdiffeq | torchode |")
        print("|---|---|---|---|---|---|---|---|---|---|")
    g = lambda lib, key: (None if row[lib] is None else row[lib][key])
    e = lambda lib, key: _fmt(g(lib, key), ".1e")
    star = " (max abs)" if row["error"] == "max" else ""
    print(f"| {row['case']}{star} | {g('nodelib', 'nfe')} | {g('torchdiffeq', 'nfe')} "
          f"| {_fmt(g('torchode', 'nfe'), 's')} | {e('nodelib', 'err')} | {e('torchdiffeq', 'err')} "
          f"| {e('torchode', 'err')} | {e('nodelib', 'gerr')} | {e('torchdiffeq', 'gerr')} "
          f"| {e('torchode', 'gerr')} |", flush=True)


if __name__ == "__main__":
    main()
