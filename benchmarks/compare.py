"""This nodelib against another version of itself, on the cases of run.py, interleaved.

"No row may get slower" compares ratios measured on different days; on a shared machine those
drift by more than the ±0.05 they are held to. This script measures the change directly: the
``nodelib`` importable here and a baseline copy (e.g. an older commit exported with
``git archive <commit> nodelib | tar -x -C /tmp/base``) run the same cases in one process,
alternating, and we report the median over the repeats of new time / baseline time.

    python benchmarks/compare.py --baseline /tmp/base/nodelib [--repeats 41] [--cases TEXT]
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (the cases and the timing of run.py)


def load_as(name: str, package_dir: str):
    """Import the package in ``package_dir`` under another name (it imports itself
    relatively, so both versions can live in one process)."""
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(package_dir, "__init__.py"), submodule_search_locations=[package_dir])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def solver_for(lib, case):
    kw = (dict(method=case.method, options=dict(step_size=case.step_size))
          if case.step_size is not None else dict(method=case.method, rtol=case.rtol,
                                                 atol=case.atol))
    if case.norm == "per_sample":
        kw["options"] = dict(norm="per_sample")
    if case.mode == "adjoint":
        return lambda y0: lib.odeint_adjoint(case.field, y0, case.t,
                                             adjoint_options=dict(norm="seminorm"), **kw)
    return lambda y0: lib.odeint(case.field, y0, case.t, **kw)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", required=True, help="path of the baseline nodelib package")
    ap.add_argument("--repeats", type=int, default=41)
    ap.add_argument("--cases", default="")
    ap.add_argument("--skip", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    base = load_as("nodelib_baseline", os.path.abspath(args.baseline))
    new = run.nodelib
    print(f"new: nodelib {new.__version__} from {new.__file__}; baseline: nodelib "
          f"{base.__version__} from {base.__file__}; {args.repeats} interleaved repeats\n")
    print("| case | new ms | baseline ms | new / baseline |")
    print("|---|---|---|---|")
    for case in run.make_cases(torch.device("cpu")):
        if args.cases not in case.name or (args.skip and args.skip in case.name):
            continue
        solves = {"new": solver_for(new, case), "baseline": solver_for(base, case)}
        try:
            for s in solves.values():
                run.run_once(s, case)                      # warm-up
        except (ValueError, TypeError) as e:               # e.g. an option the baseline lacks
            print(f"| {case.name} | — | — | — ({type(e).__name__}: {e}) |")
            continue
        times = {k: [] for k in solves}
        for r in range(args.repeats):
            for k in (("new", "baseline") if r % 2 == 0 else ("baseline", "new")):
                times[k].append(run.run_once(solves[k], case)[0])
        ratio = statistics.median(a / b for a, b in zip(times["new"], times["baseline"]))
        print(f"| {case.name} | {1e3 * statistics.median(times['new']):.1f} | "
              f"{1e3 * statistics.median(times['baseline']):.1f} | {ratio:.2f} |", flush=True)


if __name__ == "__main__":
    main()
