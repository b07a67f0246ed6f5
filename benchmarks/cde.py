"""Neural CDEs: nodelib against torchcde (the reference implementation), in one process.

    python benchmarks/cde.py [--repeats 21] [--batch 128] [--length 100] [--threads 1]

The same model (one ``nodelib.CDEField``, shared), the same data (random walks with a time
channel, on a uniform grid) and the same solver settings run through

* **torchcde**: its own interpolation (``natural_cubic_coeffs`` / ``linear_interpolation_coeffs``)
  and ``torchcde.cdeint``, which solves with torchdiffeq;
* **nodelib**: ``nodelib.make_path`` and ``nodelib.NeuralCDE`` (its knots as ``jump_t`` for
  dopri5, as the rk4 grid);
* **mixed**: torchcde's path object driving nodelib's solver (``nodelib.models.cde.DrivenField``
  only needs ``path.derivative(t)``), which separates the cost of the path from the solver's.

First the answers: in float64, the largest difference between the final hidden states of
torchcde and nodelib (fixed-step cases: the same arithmetic; dopri5: the two step-size
controllers' step sequences differ, so the states agree to about the tolerance), and between
their gradients. Then the timing, in float32: in every repeat each variant runs once (forward and
backward), the order rotating from repeat to repeat, and the table gives the median over repeats
of the per-repeat ratios ``nodelib / torchcde`` and ``mixed / torchcde``.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torchcde
import torchdiffeq

from nodelib import NeuralCDE, make_path
from nodelib.gradients import solve_with_gradient
from nodelib.models.cde import DrivenField, cde_options
from nodelib.solvers.solution import SolverStats

# (name, path kind, method, gradient): the cases; tolerances below
CASES = [
    ("natural cubic, rk4 on the knots, backprop", "natural_cubic", "rk4", "backprop"),
    ("linear, rk4 on the knots (perturb), backprop", "linear", "rk4", "backprop"),
    ("natural cubic, dopri5 + jump_t, backprop", "natural_cubic", "dopri5", "backprop"),
    ("natural cubic, dopri5 + jump_t, adjoint", "natural_cubic", "dopri5", "backsolve"),
]
RTOL = ATOL = 1e-5


def data(batch, length, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 1, length, dtype=dtype)
    walk = (torch.randn(batch, length, 3, generator=g, dtype=dtype) / length ** 0.5).cumsum(1)
    x = torch.cat([t.view(1, -1, 1).expand(batch, -1, 1), walk], dim=-1)
    return t, x


class TorchcdeField(torch.nn.Module):
    """torchcde calls ``func(t, z)`` and expects the (hidden × channels) matrix."""

    def __init__(self, field):
        super().__init__()
        self.field, self.calls = field, 0

    def forward(self, t, z):
        self.calls += 1          # every evaluation of the CDE's vector field, for the NFE
        return self.field(z)


def runners(kind, method, gradient, t, x, model: NeuralCDE):
    """Three closures, each returning the final hidden state (with a graph)."""
    if kind == "natural_cubic":
        X = torchcde.CubicSpline(torchcde.natural_cubic_coeffs(x, t), t)
    else:
        X = torchcde.LinearInterpolation(torchcde.linear_interpolation_coeffs(x, t), t)
    if method == "rk4":
        # the knots themselves as the grid: a grid of step_size = t[1] - t[0] lies up to an ulp
        # off the knots, and perturb then nudges the stages onto the wrong piece of a linear
        # path (an error of ~0.1 in z here, against ~1e-7 on the exact knots)
        td_options = dict(grid_constructor=lambda func, y0, tt: t, perturb=kind == "linear")
    else:
        td_options = dict(jump_t=t[1:-1])
    func = TorchcdeField(model.field)
    adjoint = gradient != "backprop"
    td_kw = dict(method=method, options=td_options, rtol=RTOL, atol=ATOL, adjoint=adjoint)
    if adjoint:
        td_kw.update(adjoint_params=tuple(model.field.parameters()),
                     adjoint_options=dict(norm="seminorm", jump_t=t[1:-1]))

    def run_torchcde():
        z0 = model.initial(X.evaluate(t[0]))
        return torchcde.cdeint(X=X, func=func, z0=z0, t=t[[0, -1]], **td_kw)[:, -1]

    model.adjoint = gradient if adjoint else False
    # the backward solve stops at the knots too (adjoint_options replace the forward options)
    ad = dict(adjoint_options=dict(norm="seminorm", jump_t=t[1:-1])) if adjoint else {}

    path = make_path(kind, t, x)        # both libraries interpolate once, outside the timing
    options = cde_options(path, method, None)
    solve_kw = dict(gradient=model.adjoint or "backprop", method=method, options=options,
                    rtol=RTOL, atol=ATOL,
                    adjoint_params=tuple(model.field.parameters()) if adjoint else None, **ad)

    def run_nodelib():
        z0 = model.initial(path.evaluate(t[0]))
        return solve_with_gradient(DrivenField(model.field, path), z0, t[[0, -1]],
                                   **solve_kw)[-1]

    def run_mixed():
        z0 = model.initial(X.evaluate(t[0]))
        return solve_with_gradient(DrivenField(model.field, X), z0, t[[0, -1]], **solve_kw)[-1]

    def nfe():
        """Field evaluations (forward + backward) of one run of torchcde and of nodelib."""
        counted = {}
        for name, run in (("torchcde", run_torchcde), ("nodelib", run_nodelib)):
            func.calls, stats = 0, SolverStats()
            if name == "nodelib":
                solve_kw["stats"] = stats
            model.zero_grad()
            run().square().mean().backward()
            solve_kw.pop("stats", None)
            counted[name] = (func.calls if name == "torchcde"
                             else stats.nfe_forward + stats.nfe_backward)
        return counted

    return {"torchcde": run_torchcde, "nodelib": run_nodelib, "mixed": run_mixed}, nfe


def used(model):
    """The parameters the final state depends on (the read-out is not used here)."""
    return tuple(model.initial.parameters()) + tuple(model.field.parameters())


def grads(model, z):
    model.zero_grad()
    z.square().mean().backward()
    return torch.cat([p.grad.reshape(-1) for p in used(model)])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--length", type=int, default=100)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torchcde {torchcde.__version__} (torchdiffeq {torchdiffeq.__version__}); batch "
          f"{args.batch}, {args.length} points, 4 channels, hidden {args.hidden}, field width "
          f"{args.width}; rtol = atol = {RTOL:g}; {args.repeats} interleaved repeats, "
          f"{args.threads} thread(s)\n")
    print("| case | largest state gap, nodelib | largest state gap, mixed "
          "| gradient rel. gap | NFE torchcde / nodelib | torchcde ms | nodelib / torchcde "
          "| mixed / torchcde |")
    print("|---|---|---|---|---|---|---|---|")
    for name, kind, method, gradient in CASES:
        # answers, in float64
        torch.manual_seed(0)
        model = NeuralCDE(4, args.hidden, 1, width=args.width).double()
        t, x = data(args.batch, args.length, torch.float64)
        run, count = runners(kind, method, gradient, t, x, model)
        z = {k: f().detach() for k, f in run.items()}
        nfe = count()
        g_cde, g_nl = grads(model, run["torchcde"]()), grads(model, run["nodelib"]())
        gap = float((g_nl - g_cde).norm() / g_cde.norm())
        dz = float((z["nodelib"] - z["torchcde"]).abs().max())
        dm = float((z["mixed"] - z["torchcde"]).abs().max())
        # timing, in float32
        torch.manual_seed(0)
        model = NeuralCDE(4, args.hidden, 1, width=args.width)
        t, x = data(args.batch, args.length, torch.float32)
        run, _ = runners(kind, method, gradient, t, x, model)
        names = list(run)
        times: dict[str, list[float]] = {k: [] for k in names}
        for r in range(args.repeats + 1):           # the first repeat warms up
            order = names[r % 3:] + names[:r % 3]
            for k in (order if r % 2 else order[::-1]):
                start = time.perf_counter()
                model.zero_grad()
                run[k]().square().mean().backward()
                if r:
                    times[k].append(time.perf_counter() - start)
        ratio = {k: statistics.median(a / b for a, b in zip(times[k], times["torchcde"]))
                 for k in ("nodelib", "mixed")}
        print(f"| {name} | {dz:.1e} | {dm:.1e} | {gap:.1e} | "
              f"{nfe['torchcde']} / {nfe['nodelib']} | "
              f"{1e3 * statistics.median(times['torchcde']):.1f} | {ratio['nodelib']:.2f} | "
              f"{ratio['mixed']:.2f} |")


if __name__ == "__main__":
    main()
