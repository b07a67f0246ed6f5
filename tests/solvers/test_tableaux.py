"""The tableaux are data: check them against the Runge–Kutta order conditions directly."""
import numpy as np
import pytest

from nodelib import TABLEAUX


def _arrays(tab):
    c = np.array(tab.c)
    A = np.zeros((tab.stages, tab.stages))
    for i, row in enumerate(tab.a):
        A[i, : len(row)] = row
        A[i, i] = tab.diag(i)   # the diagonal of an implicit method
    return c, A


def order_conditions(b, c, A):
    """Residuals of the order conditions up to order 4 (the 8 rooted trees)."""
    return [b.sum() - 1, b @ c - 1 / 2, b @ c**2 - 1 / 3, b @ A @ c - 1 / 6, b @ c**3 - 1 / 4,
            (b * c) @ A @ c - 1 / 8, b @ A @ c**2 - 1 / 12, b @ A @ A @ c - 1 / 24]


N_CONDITIONS = {1: 1, 2: 2, 3: 4, 4: 8}


@pytest.mark.parametrize("name", list(TABLEAUX))
def test_row_sums_equal_nodes(name):
    c, A = _arrays(TABLEAUX[name])
    # the coefficients are given to ~16 digits: residuals at rounding level
    assert np.allclose(A.sum(axis=1), c, atol=1e-14)


@pytest.mark.parametrize("name", list(TABLEAUX))
def test_order_conditions(name):
    tab = TABLEAUX[name]
    c, A = _arrays(tab)
    k = N_CONDITIONS[min(tab.order, 4)]
    assert np.allclose(order_conditions(np.array(tab.b), c, A)[:k], 0, atol=1e-13)
    if tab.adaptive:
        b_low = np.array(tab.b) - np.array(tab.b_error)
        k_low = N_CONDITIONS[min(tab.embedded_order, 4)]
        res = order_conditions(b_low, c, A)
        assert np.allclose(res[:k_low], 0, atol=1e-13)
        # ... and the embedded method is genuinely of lower order (else the estimate is ~0)
        assert np.abs(res).max() > 1e-6 or tab.embedded_order >= 4


@pytest.mark.parametrize("name", [n for n, t in TABLEAUX.items() if t.adaptive])
def test_dense_output_order(name):
    """The dense-output weights b_i(θ) satisfy Σ b_i(θ) c_i^(k-1) = θ^k / k up to their order
    (4 for dopri5 and tsit5, 3 for bosh3's cubic Hermite) and reduce to b at θ = 1."""
    tab = TABLEAUX[name]
    c, _ = _arrays(tab)
    b = np.array(tab.b)
    if not tab.fsal:   # the extra slope f(t + h, y1) sits at node 1 and has weight 0 in b
        c, b = np.append(c, 1.0), np.append(b, 0.0)
    # a cubic Hermite interpolant is 3rd order, but never more accurate than the method
    dense_order = min(tab.order, 3 if tab.dense.shape[1] == 3 else 4)
    for theta in (0.1, 0.37, 0.5, 0.9):
        w = (tab.dense * theta ** np.arange(1, tab.dense.shape[1] + 1)).sum(axis=1)
        for k in range(1, dense_order + 1):
            # tsit5's published interpolant coefficients carry ~15 significant digits
            assert abs(w @ c ** (k - 1) - theta**k / k) < 1e-13
    assert np.allclose(tab.dense.sum(axis=1), b, atol=1e-13)


def test_adaptive_tableau_without_dense_output_is_refused():
    from nodelib.solvers.tableaux import ButcherTableau
    with pytest.raises(ValueError, match="needs dense-output"):
        ButcherTableau("bad", 2, c=(0.0, 1.0), a=((), (1.0,)), b=(0.5, 0.5),
                       b_error=(-0.5, 0.5), embedded_order=1)
