"""Stiff problems and gradient strategies: nodelib against scipy (and torchdiffeq) in one process.

    python benchmarks/stiff.py [--repeats 3] [--rtols 1e-3,...,1e-9] [--skip-gradients]

1. A work–precision sweep on Robertson's kinetics to t = 1e5 and Van der Pol with μ = 1000 to
   t = 1000, rtol = 1e-3 … 1e-9 (atol = 1e-4·rtol on Robertson, whose y2 is ~1e-5, and
   atol = rtol on Van der Pol): nodelib's adaptive implicit methods (kvaerno3, kvaerno5,
   radau5) against scipy's BDF, Radau and LSODA — CPU time (one thread; the median over
   repeats, every repeat running all solvers in a rotating order), calls of f, Jacobians, LU
   factorisations, and the error at the end against a tight scipy Radau reference (rtol 1e-13).
   Saves benchmarks/stiff_work_precision.png (error against time and against calls of f) and
   prints the rtol = 1e-6 rows as the summary table (with torchdiffeq's dopri5, explicit: it
   cannot finish; we report where it stands after a step budget).
   The fields are written on the last axis (y[..., 0], not y[0]) so that radau5 evaluates its
   three stages in one call; scipy calls the same torch function through a NumPy wrapper.
2. Gradient strategies on 2000 rk4 steps of an MLP field on a 256×32 float64 state: backprop,
   backsolve and checkpoint — time of forward + backward relative to backprop, and the memory
   each holds between forward and backward (saved tensors plus what the checkpointed solve keeps
   on its node) and at its peak during backward, both by nodelib's ``SavedTensorMeter``.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from scipy.integrate import solve_ivp
from torch import nn

import nodelib

F64 = torch.float64
NODELIB = ("kvaerno3", "kvaerno5", "radau5")
SCIPY = ("BDF", "Radau", "LSODA")
RTOLS = (1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9)


def robertson(t, y):
    y1, y2, y3 = y[..., 0], y[..., 1], y[..., 2]
    return torch.stack([-0.04 * y1 + 1e4 * y2 * y3,
                        0.04 * y1 - 1e4 * y2 * y3 - 3e7 * y2 ** 2, 3e7 * y2 ** 2], dim=-1)


def van_der_pol(t, y, mu=1000.0):
    return torch.stack([y[..., 1], mu * (1 - y[..., 0] ** 2) * y[..., 1] - y[..., 0]], dim=-1)


# name: (f, y0, t_end, atol as a multiple of rtol)
PROBLEMS = {"Robertson, t=1e5": (robertson, [1.0, 0.0, 0.0], 1e5, 1e-4),
            "Van der Pol mu=1000, t=1000": (van_der_pol, [2.0, 0.0], 1000.0, 1.0)}


def _numpy(f):
    return lambda t, y: f(t, torch.as_tensor(y)).numpy()


def _solver(kind, f, y0, t_end, rtol, atol):
    """A callable running one solve, returning (y_end, calls of f, Jacobians, LUs)."""
    if kind in SCIPY:
        def run():
            r = solve_ivp(_numpy(f), (0, t_end), y0, method=kind, rtol=rtol, atol=atol)
            return r.y[:, -1], r.nfev, r.njev, r.nlu
        return run

    def run():
        stats = nodelib.SolverStats()
        ys = nodelib.odeint(f, torch.tensor(y0, dtype=F64), torch.tensor([0.0, t_end], dtype=F64),
                            rtol=rtol, atol=atol, method=kind, stats=stats)
        s = stats.forward
        return ys[-1].numpy(), s.nfe, s.n_jacobians, s.n_lu
    return run


def work_precision(repeats, rtols):
    """Rows (problem, solver, rtol, median CPU s, calls of f, Jacobians, LUs, error)."""
    rows = []
    for name, (f, y0, t_end, atol_factor) in PROBLEMS.items():
        ref = solve_ivp(_numpy(f), (0, t_end), y0, method="Radau", rtol=1e-13,
                        atol=atol_factor * 1e-17).y[:, -1]
        for rtol in rtols:
            atol = atol_factor * rtol
            err = lambda y: float(np.max(np.abs(np.asarray(y) - ref) / (np.abs(ref) + atol)))
            kinds = [*(f"scipy {k}" for k in SCIPY), *(f"nodelib {k}" for k in NODELIB)]
            runs = {k: _solver(k.split()[1], f, y0, t_end, rtol, atol) for k in kinds}
            times = {k: [] for k in kinds}
            results = {}
            for r in range(repeats):   # interleaved: every solver once per repeat, rotated
                for k in kinds[r % len(kinds):] + kinds[:r % len(kinds)]:
                    start = time.process_time()
                    results[k] = runs[k]()
                    times[k].append(time.process_time() - start)
            for k in kinds:
                y, nfe, njev, nlu = results[k]
                rows.append((name, k, rtol, statistics.median(times[k]), nfe, njev, nlu,
                             err(y)))
            print(f"# {name} rtol={rtol:g} done", flush=True)
    return rows


def at_equal_error(rows, name, solver):
    """The CPU time ``solver`` needs for the error scipy BDF reaches at rtol 1e-6: log-log
    interpolation between the two sweep points that bracket it (None outside the sweep)."""
    target = next(r[7] for r in rows if r[0] == name and r[1] == "scipy BDF" and r[2] == 1e-6)
    points = sorted((r[7], r[3]) for r in rows if r[0] == name and r[1] == solver)
    for (e0, t0), (e1, t1) in zip(points, points[1:]):
        if e0 <= target <= e1 and e1 > e0:
            w = np.log(target / e0) / np.log(e1 / e0)
            return float(np.exp((1 - w) * np.log(t0) + w * np.log(t1)))
    return None


def plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    problems = list(PROBLEMS)
    fig, axes = plt.subplots(2, len(problems), figsize=(11, 8))
    for col, name in enumerate(problems):
        for kind in sorted({r[1] for r in rows if r[0] == name}):
            mine = [r for r in rows if r[0] == name and r[1] == kind]
            style = "-o" if kind.startswith("nodelib") else "--s"
            for row, (x_index, label) in enumerate(((3, "CPU time (s)"), (4, "calls of f"))):
                ax = axes[row, col]
                ax.loglog([r[x_index] for r in mine], [r[7] for r in mine], style, label=kind,
                          markersize=4)
                ax.set_xlabel(label)
                ax.set_ylabel("max relative error at t_end")
                ax.set_title(name)
                ax.grid(True, which="major", alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("Work-precision, rtol 1e-3 ... 1e-9 (one thread)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def summary_rows(rows, repeats):
    """The rtol = 1e-6 rows, with torchdiffeq's dopri5 attempt."""
    out = [r for r in rows if r[2] == 1e-6]
    for name, (f, y0, t_end, atol_factor) in PROBLEMS.items():
        out.append((name, "torchdiffeq dopri5", 1e-6,
                    *_torchdiffeq_attempt(f, y0, t_end, atol_factor * 1e-6)))
    return out


def _torchdiffeq_attempt(f, y0, t_end, atol, budget=20000):
    import torchdiffeq
    calls = [0]

    def counted(t, y):
        calls[0] += 1
        return f(t, y)
    start = time.process_time()
    try:
        torchdiffeq.odeint(counted, torch.tensor(y0, dtype=F64),
                           torch.tensor([0.0, t_end], dtype=F64), rtol=1e-6, atol=atol,
                           method="dopri5", options={"max_num_steps": budget})
        note = "finished"
    except AssertionError as e:   # torchdiffeq signals max_num_steps with an assert
        note = f"stopped: {str(e)[:40]}"
    return time.process_time() - start, calls[0], 0, 0, note


class MLP(nn.Module):
    def __init__(self, dim=32, hidden=64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, dim))

    def forward(self, t, y):
        return self.net(y)


def gradient_rows(repeats):
    torch.manual_seed(0)
    f = MLP().double()
    y0 = torch.randn(256, 32, dtype=F64)
    t = torch.tensor([0.0, 1.0], dtype=F64)
    kw = dict(method="rk4", options={"step_size": 1.0 / 2000})
    rows = {}
    for mode in ("backprop", "backsolve", "checkpoint"):
        times = []
        for _ in range(repeats):
            y = y0.clone().requires_grad_()
            start = time.perf_counter()
            # nodelib's meter: distinct saved storages, current and peak (chapters 4 and 11)
            with nodelib.SavedTensorMeter() as meter:
                if mode == "backprop":
                    ys = nodelib.odeint(f, y, t, **kw)
                else:
                    ys = nodelib.odeint_adjoint(f, y, t, strategy=mode, **kw)
                # held between the passes: saved tensors, plus what a checkpointed solve keeps
                # on its node (checkpoints, outputs, step log), which the hooks do not see
                kept = nodelib.kept_by_solve(ys).total
                held = meter.current + kept
                meter.reset_peak()
                ys[-1].pow(2).mean().backward()
            times.append(time.perf_counter() - start)
        rows[mode] = (statistics.median(times), held, meter.peak + kept)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rtols", default=",".join(f"{r:g}" for r in RTOLS))
    ap.add_argument("--skip-gradients", action="store_true")
    ap.add_argument("--skip-torchdiffeq", action="store_true")
    ap.add_argument("--plot", default=str(Path(__file__).with_name("stiff_work_precision.png")))
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = work_precision(args.repeats, [float(r) for r in args.rtols.split(",")])
    plot(rows, args.plot)
    print("\n| problem | solver | rtol | CPU s | calls of f | Jacobians | LU | max rel. error |")
    print("|---|---|---|---|---|---|---|---|")
    for name, solver, rtol, cpu, nfe, njev, nlu, err in rows:
        print(f"| {name} | {solver} | {rtol:g} | {cpu:.3f} | {nfe} | {njev} | {nlu} | "
              f"{err:.1e} |")
    print("\nrtol = 1e-6, time / scipy BDF's (same rtol, same process); last column: the "
          "time at BDF's error (log-log interpolation along the sweep) / BDF's time:")
    print("| problem | solver | CPU s | / BDF | calls of f | Jacobians | LU | max rel. error "
          "| / BDF at BDF's error |")
    print("|---|---|---|---|---|---|---|---|---|")
    summary = [r for r in rows if r[2] == 1e-6]
    if not args.skip_torchdiffeq:
        summary = summary_rows(rows, args.repeats)
    for name, solver, _, cpu, nfe, njev, nlu, err in summary:
        bdf = next(r[3] for r in rows if r[0] == name and r[1] == "scipy BDF" and r[2] == 1e-6)
        err = err if isinstance(err, str) else f"{err:.1e}"
        matched = at_equal_error(rows, name, solver)
        matched = "—" if matched is None else f"{matched / bdf:.2f}"
        print(f"| {name} | {solver} | {cpu:.3f} | {cpu / bdf:.2f} | {nfe} | {njev} | {nlu} "
              f"| {err} | {matched} |", flush=True)
    if args.skip_gradients:
        return
    rows = gradient_rows(max(1, args.repeats // 2))
    base_t, base_held, base_peak = rows["backprop"]
    print("\n| gradient (2000 rk4 steps, 256x32 float64) | time / backprop | held MiB "
          "| held / backprop | peak MiB |")
    print("|---|---|---|---|---|")
    for mode, (wall, held, peak) in rows.items():
        print(f"| {mode} | {wall / base_t:.2f} | {held / 2**20:.1f} | "
              f"{held / base_held:.3f} | {peak / 2**20:.1f} |")


if __name__ == "__main__":
    main()
