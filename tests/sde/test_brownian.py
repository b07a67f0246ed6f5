"""BrownianInterval: the law of its increments, their consistency, reproducibility, dtype/device.

Statistical checks use n independent samples (the batch) and a fixed seed. A sample mean of
N(0, σ²) has standard error σ/√n and a sample variance has relative standard error √(2/n), so
tolerances of 5 standard errors fail for a correct sampler with probability below 1e-6 (and,
the seed being fixed, never flake); a wrong variance, mean or correlation of a few percent
fails them.
"""
import itertools
import math

import pytest
import torch

from nodelib import BrownianInterval

N = 40_000
SE5 = 5 / math.sqrt(N)   # 5 standard errors of a correlation or of a normalised mean


def normal_cdf(x):
    return 0.5 * (1 + torch.erf(x / math.sqrt(2)))


def test_increments_are_normal_with_variance_dt():
    bm = BrownianInterval(0.0, 2.0, size=(N,), dtype=torch.float64, entropy=1)
    for ta, tb in [(0.0, 2.0), (0.3, 0.7), (1.2, 1.2001), (0.7, 1.9)]:
        dW = bm(ta, tb) / math.sqrt(tb - ta)   # should be N(0, 1)
        assert abs(dW.mean().item()) < SE5
        assert abs(dW.var().item() - 1) < 5 * math.sqrt(2 / N)
        # Kolmogorov–Smirnov: P(sup |F_n - Φ| > x/√n) ≈ 2 exp(-2x²) = 1e-6 at x = 2.7
        x = dW.sort().values
        ecdf = torch.arange(1, N + 1, dtype=x.dtype) / N
        assert (ecdf - normal_cdf(x)).abs().max().item() < 2.7 / math.sqrt(N)


def test_disjoint_increments_are_uncorrelated():
    bm = BrownianInterval(0.0, 1.0, size=(N,), dtype=torch.float64, entropy=2)
    pieces = [bm(a, b) for a, b in [(0.0, 0.1), (0.1, 0.35), (0.35, 0.9), (0.9, 1.0)]]
    z = torch.stack([p / p.std() for p in pieces])
    corr = z @ z.T / N
    off = corr - torch.diag(corr.diag())
    assert off.abs().max().item() < SE5


def test_splitting_is_consistent_to_rounding():
    bm = BrownianInterval(0.0, 1.0, size=(4, 3), dtype=torch.float64, entropy=3)
    whole = bm(0.1, 0.8)
    parts = bm(0.1, 0.45) + bm(0.45, 0.8)
    torch.testing.assert_close(parts, whole, rtol=0, atol=1e-15)   # one rounding
    # asking again, after the split, returns the very same tensor (answers are kept)
    assert bm(0.1, 0.8) is whole
    # a point query is the increment from t0
    torch.testing.assert_close(bm(0.8) - bm(0.1), whole, rtol=0, atol=1e-15)


def test_same_answers_whatever_the_order_of_later_queries():
    grid = torch.linspace(0, 1, 33).tolist()
    steps = list(itertools.pairwise(grid))
    bm = BrownianInterval(0.0, 1.0, size=(5, 2), dtype=torch.float64, entropy=4)
    forward = [bm(a, b) for a, b in steps]
    backward = [bm(a, b) for a, b in reversed(steps)][::-1]   # the adjoint's order
    assert all(torch.equal(x, y) for x, y in zip(forward, backward))
    # a second interval with the same seed, same first queries, then other queries in a
    # shuffled order: every increment agrees
    other = BrownianInterval(0.0, 1.0, size=(5, 2), dtype=torch.float64, entropy=4)
    again = [other(a, b) for a, b in steps]
    order = torch.randperm(len(steps), generator=torch.Generator().manual_seed(0)).tolist()
    for k in order:
        other(steps[k][0] + 0.25 / 32, steps[k][1])   # new points, in a random order
    assert all(torch.equal(x, y) for x, y in zip(forward, again))
    assert all(torch.equal(bm(a, b), other(a, b)) for a, b in steps)   # (answers are kept)


def test_reproducible_from_the_seed():
    make = lambda **kw: BrownianInterval(0.0, 1.0, size=(3, 2), **kw)
    assert torch.equal(make(entropy=5)(0.2, 0.6), make(entropy=5)(0.2, 0.6))
    assert not torch.equal(make(entropy=5)(0.2, 0.6), make(entropy=6)(0.2, 0.6))
    torch.manual_seed(11)
    a = make()(0.2, 0.6)
    torch.manual_seed(11)   # the default seed comes from torch's generator
    assert torch.equal(a, make()(0.2, 0.6))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_and_device(device, dtype):
    bm = BrownianInterval(0.0, 1.0, size=(3, 2), dtype=dtype, device=device, entropy=0,
                          levy_area_approximation="davie")
    W, U, A = bm(0.25, 0.5, return_U=True, return_A=True)
    for x in (W, U, A):
        assert x.dtype == dtype and x.device.type == device.type
    assert W.shape == U.shape == (3, 2) and A.shape == (3, 2, 2)
    torch.testing.assert_close(A, -A.transpose(-1, -2), rtol=0, atol=0)   # antisymmetric


def test_space_time_area_law_and_splits():
    """(W, H) over each part of a split interval: W ~ N(0, h), H ~ N(0, h/12), all four
    uncorrelated (the conditional formulas of nodelib.sde.bridge, checked by their result);
    U = h(W/2 + H) has variance h³/3."""
    bm = BrownianInterval(0.0, 1.0, size=(N,), dtype=torch.float64, entropy=7,
                          levy_area_approximation="space-time")
    pieces = []
    for a, b in [(0.0, 0.3), (0.3, 1.0)]:
        h = b - a
        W, U = bm(a, b, return_U=True)
        H = U / h - 0.5 * W
        pieces += [W / math.sqrt(h), H / math.sqrt(h / 12)]
        assert abs(U.var().item() / (h ** 3 / 3) - 1) < 5 * math.sqrt(2 / N)
    z = torch.stack(pieces)
    cov = z @ z.T / N
    assert (cov - torch.eye(4, dtype=cov.dtype)).abs().max().item() < 5 * math.sqrt(2 / N)


def test_area_of_joined_cells_equals_the_area_of_the_whole():
    """H over [0, 0.5] asked before and after [0, 0.5] is split into two cells: the join
    formula gives back the same area (to rounding)."""
    bm = BrownianInterval(0.0, 1.0, size=(6,), dtype=torch.float64, entropy=8,
                          levy_area_approximation="space-time")
    W, U = bm(0.0, 0.5, return_U=True)
    bm(0.0, 0.2)   # splits [0, 0.5]
    W2, U2 = bm(0.0, 0.5, return_U=True)   # now the join of two cells
    torch.testing.assert_close(W2, W, rtol=0, atol=1e-15)
    torch.testing.assert_close(U2, U, rtol=0, atol=1e-15)


def test_bad_queries_are_refused():
    bm = BrownianInterval(0.0, 1.0, size=(2,), entropy=0)
    with pytest.raises(ValueError, match="t0 <= ta <= tb <= t1"):
        bm(0.5, 1.5)
    with pytest.raises(ValueError, match="t0 <= ta <= tb <= t1"):
        bm(0.6, 0.5)
    with pytest.raises(ValueError, match="space-time"):
        bm(0.0, 0.5, return_U=True)
    with pytest.raises(ValueError, match="levy_area_approximation"):
        BrownianInterval(0.0, 1.0, size=(2,), levy_area_approximation="exact")
    assert torch.equal(bm(0.3, 0.3), torch.zeros(2))


def test_halfway_tree_is_independent_of_the_query_order():
    """With halfway_tree=True (and a resolution tol) the path is a function of the seed alone:
    two intervals queried at the same 100 intervals in two different orders agree exactly,
    and the increments keep their law."""
    points = torch.rand(100, 2, generator=torch.Generator().manual_seed(1)).sort(dim=1).values
    make = lambda: BrownianInterval(0.0, 1.0, size=(N // 10,), dtype=torch.float64, entropy=9,
                                    halfway_tree=True, tol=1e-6,
                                    levy_area_approximation="space-time")
    first, second = make(), make()
    answers = [first(a, b, return_U=True) for a, b in points.tolist()]
    order = torch.randperm(100, generator=torch.Generator().manual_seed(2)).tolist()
    again = {k: second(*points[k].tolist(), return_U=True) for k in order}
    for k, (W, U) in enumerate(answers):
        assert torch.equal(W, again[k][0]) and torch.equal(U, again[k][1])
    a, b = points[0].tolist()
    z = answers[0][0] / math.sqrt(round(b, 6) - round(a, 6))   # (times rounded to tol)
    assert abs(z.mean().item()) < 5 / math.sqrt(N // 10)
    assert abs(z.var().item() - 1) < 5 * math.sqrt(2 / (N // 10))


def test_halfway_tree_keeps_nothing_but_a_few_recent_points():
    """The halfway tree is a virtual Brownian tree: after 500 solver-like steps it holds the
    same few tensors as after 100 (O(1) memory), and an interval asked again once its points
    have left the cache is recomputed to the very same tensors."""
    bm = BrownianInterval(0.0, 1.0, size=(4, 3), dtype=torch.float64, entropy=3,
                          halfway_tree=True, tol=1e-6, levy_area_approximation="space-time")
    first = bm(0.0, 0.002, return_U=True)

    def held():
        return len(bm._times) + len(bm._cells) + len(bm._answers) + len(bm._recent)
    h = 1 / 500
    for k in range(500):
        bm(k * h, (k + 1) * h)
        if k == 99:   # (the cache of recent points is full by now)
            after_100 = held()
    assert held() == after_100
    again = bm(0.0, 0.002, return_U=True)   # (0.002 left the cache long ago)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
