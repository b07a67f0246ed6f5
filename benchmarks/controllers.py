"""Step-size controllers on problems where the step size is limited by stability, not accuracy.

On a mildly stiff problem an explicit method's step is capped by its stability region: the
error estimate grows fast once h crosses the boundary, a step is rejected, h shrinks, grows back,
and so on. This is where a controller with memory (PI, PID) is supposed to help. We count
accepted and rejected steps and function evaluations for nodelib's controllers:

* options["controller"] = "I", "PI" (the default) and "PID" (Söderlind's H312PID gains);
* nodelib.control.PIDController(rtol, atol, gains=PIDController.H211PI).

    python benchmarks/controllers.py [--rtol 1e-3 --atol 1e-6]

Float64 and deterministic (no timing): the counts are the result. These problems are stiff on
purpose, so nodelib's stiffness detection (which would stop the explicit solve and suggest an
implicit method) is switched off with options["detect_stiffness"] = False.
"""
from __future__ import annotations

import argparse
import math

import torch

import nodelib
from nodelib.solvers.controllers import PIDController

F64 = torch.float64


def stiff_linear(t, y):
    """y' = -50 (y - cos t): after a short transient y follows cos t closely; dopri5's step is
    then limited by stability (|h·50| below about 3.3), not by the smooth solution."""
    return -50.0 * (y - torch.cos(t))


def van_der_pol(mu):
    def f(t, y):
        x, v = y[..., 0], y[..., 1]
        return torch.stack([v, mu * (1 - x ** 2) * v - x], dim=-1)
    return f


PROBLEMS = {
    "y' = -50(y - cos t), t in [0, 10]": (stiff_linear, torch.tensor([0.0], dtype=F64), 10.0),
    "Van der Pol mu=10, t in [0, 20]": (van_der_pol(10.0), torch.tensor([2.0, 0.0], dtype=F64),
                                        20.0),
    "Van der Pol mu=100, t in [0, 200]": (van_der_pol(100.0),
                                          torch.tensor([2.0, 0.0], dtype=F64), 200.0),
}


def controllers(rtol, atol):
    return {
        "I": "I",
        "PI (default)": "PI",
        "PID (H312PID)": "PID",
        "PIDController H211PI": PIDController(rtol, atol, gains=PIDController.H211PI),
    }


def run(method, rtol, atol):
    rows = []
    for pname, (f, y0, t_end) in PROBLEMS.items():
        t = torch.tensor([0.0, t_end], dtype=F64)
        ref = nodelib.odeint(f, y0, t, rtol=1e-12, atol=1e-12, method="dopri8")[-1]
        for cname, controller in controllers(rtol, atol).items():
            stats = nodelib.SolverStats()
            y = nodelib.odeint(f, y0, t, rtol=rtol, atol=atol, method=method,
                               options={"controller": controller, "detect_stiffness": False},
                               stats=stats)[-1]
            s = stats.forward
            trace = s.trace_arrays()
            h = trace["h"][trace["accepted"]]
            # step-size jitter: median |log(h_{n+1}/h_n)| over accepted steps
            jitter = float(sorted(abs(math.log(b / a)) for a, b in zip(h[:-1], h[1:]))
                           [len(h) // 2 - 1]) if len(h) > 2 else float("nan")
            rows.append((pname, cname, s.n_accepted, s.n_rejected, s.nfe,
                         (y - ref).abs().max().item(), jitter))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", default="dopri5")
    ap.add_argument("--rtol", type=float, default=1e-3)
    ap.add_argument("--atol", type=float, default=1e-6)
    args = ap.parse_args()
    print(f"method {args.method}, rtol {args.rtol:g}, atol {args.atol:g}, float64\n")
    print("| problem | controller | accepted | rejected | NFE | max error at t_end | "
          "median abs log(h_next / h) |")
    print("|---|---|---|---|---|---|---|")
    for p, c, acc, rej, nfe, err, jit in run(args.method, args.rtol, args.atol):
        print(f"| {p} | {c} | {acc} | {rej} | {nfe} | {err:.1e} | {jit:.3f} |")


if __name__ == "__main__":
    main()
