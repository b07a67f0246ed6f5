"""Stiff problems and gradient strategies: nodelib against scipy (and torchdiffeq) in one process.

    python benchmarks/stiff.py [--repeats 5]

1. Robertson's kinetics to t = 1e5 and Van der Pol with μ = 1000 to t = 1000, rtol = 1e-6:
   nodelib's kvaerno3 against scipy's BDF and Radau (wall time, NFE, Jacobians, LU
   factorisations, error against a tight Radau reference), and torchdiffeq's best available
   adaptive method (dopri5, explicit: it cannot finish; we report where it stands after a step
   budget).
2. Gradient strategies on 2000 rk4 steps of an MLP field on a 256×32 float64 state: backprop,
   backsolve and checkpoint — time of forward + backward relative to backprop, and the memory
   each holds between forward and backward (saved tensors plus what the checkpointed solve keeps
   on its node) and at its peak during backward, both by nodelib's ``SavedTensorMeter``.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from scipy.integrate import solve_ivp
from torch import nn

import nodelib

F64 = torch.float64


def robertson(t, y):
    y1, y2, y3 = y[0], y[1], y[2]
    return torch.stack([-0.04 * y1 + 1e4 * y2 * y3,
                        0.04 * y1 - 1e4 * y2 * y3 - 3e7 * y2 ** 2, 3e7 * y2 ** 2])


def van_der_pol(t, y, mu=1000.0):
    return torch.stack([y[1], mu * (1 - y[0] ** 2) * y[1] - y[0]])


PROBLEMS = {"Robertson, t=1e5": (robertson, [1.0, 0.0, 0.0], 1e5, 1e-10),
            "Van der Pol mu=1000, t=1000": (van_der_pol, [2.0, 0.0], 1000.0, 1e-6)}


def _numpy(f):
    return lambda t, y: f(t, torch.as_tensor(y)).numpy()


def stiff_rows(repeats):
    rows = []
    for name, (f, y0, t_end, atol) in PROBLEMS.items():
        ref = solve_ivp(_numpy(f), (0, t_end), y0, method="Radau", rtol=1e-12,
                        atol=atol * 1e-4).y[:, -1]
        err = lambda y: float(np.max(np.abs(np.asarray(y) - ref) / (np.abs(ref) + atol)))
        for method in ("BDF", "Radau"):
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                r = solve_ivp(_numpy(f), (0, t_end), y0, method=method, rtol=1e-6, atol=atol)
                times.append(time.perf_counter() - start)
            rows.append((name, f"scipy {method}", statistics.median(times), r.nfev, r.njev,
                         r.nlu, err(r.y[:, -1])))
        times = []
        for _ in range(repeats):
            stats = nodelib.SolverStats()
            start = time.perf_counter()
            ys = nodelib.odeint(f, torch.tensor(y0, dtype=F64),
                                torch.tensor([0.0, t_end], dtype=F64), rtol=1e-6, atol=atol,
                                method="kvaerno3", stats=stats)
            times.append(time.perf_counter() - start)
        s = stats.forward
        rows.append((name, "nodelib kvaerno3", statistics.median(times), s.nfe, s.n_jacobians,
                     s.n_lu, err(ys[-1].tolist())))
        rows.append((name, "torchdiffeq dopri5", *_torchdiffeq_attempt(f, y0, t_end, atol)))
    return rows


def _torchdiffeq_attempt(f, y0, t_end, atol, budget=20000):
    import torchdiffeq
    calls = [0]

    def counted(t, y):
        calls[0] += 1
        return f(t, y)
    start = time.perf_counter()
    try:
        torchdiffeq.odeint(counted, torch.tensor(y0, dtype=F64),
                           torch.tensor([0.0, t_end], dtype=F64), rtol=1e-6, atol=atol,
                           method="dopri5", options={"max_num_steps": budget})
        note = "finished"
    except AssertionError as e:   # torchdiffeq signals max_num_steps with an assert
        note = f"stopped: {str(e)[:40]}"
    return time.perf_counter() - start, calls[0], 0, 0, note


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
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print("| problem | solver | wall s | NFE | Jacobians | LU | max rel. error |")
    print("|---|---|---|---|---|---|---|")
    for name, solver, wall, nfe, njev, nlu, err in stiff_rows(args.repeats):
        err = err if isinstance(err, str) else f"{err:.1e}"
        print(f"| {name} | {solver} | {wall:.2f} | {nfe} | {njev} | {nlu} | {err} |",
              flush=True)
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
