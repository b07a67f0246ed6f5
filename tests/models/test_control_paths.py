"""Control paths (nodelib.models.control_paths) against scipy's splines, and their causality and
missing-value handling."""
import numpy as np
import pytest
import torch
from scipy.interpolate import CubicHermiteSpline, CubicSpline

from nodelib.models.control_paths import (
    KINDS,
    fill_missing,
    hermite_path,
    linear_path,
    make_path,
    natural_cubic_path,
    observation_channels,
    rectilinear_path,
)

# float64 throughout: the coefficients are a few arithmetic operations (and one small dense
# solve) away from scipy's, so they agree to ~1e-12 relative; 1e-9 leaves room for the
# conditioning of the spline system on uneven knots.
TOL = 1e-9


def data(batch=3, T=12, C=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.sort(torch.rand(T, generator=g, dtype=torch.float64) * 5).values
    x = torch.randn(batch, T, C, generator=g, dtype=torch.float64)
    return t, x


def query(t, n=301):
    return torch.linspace(float(t[0]), float(t[-1]), n, dtype=torch.float64)


def test_natural_cubic_matches_scipy():
    t, x = data()
    q = query(t)
    path = natural_cubic_path(t, x)
    for b in range(x.shape[0]):
        ref = CubicSpline(t.numpy(), x[b].numpy(), bc_type="natural")
        np.testing.assert_allclose(path.evaluate(q)[b].numpy(), ref(q.numpy()), atol=TOL)
        np.testing.assert_allclose(path.derivative(q)[b].numpy(), ref(q.numpy(), 1), atol=TOL)


def test_hermite_matches_scipy_with_backward_differences():
    t, x = data()
    q = query(t)
    path = hermite_path(t, x)
    for b in range(x.shape[0]):
        xb, tb = x[b].numpy(), t.numpy()
        slopes = np.diff(xb, axis=0) / np.diff(tb)[:, None]
        ref = CubicHermiteSpline(tb, xb, np.concatenate([slopes[:1], slopes]))
        np.testing.assert_allclose(path.evaluate(q)[b].numpy(), ref(q.numpy()), atol=TOL)
        np.testing.assert_allclose(path.derivative(q)[b].numpy(), ref(q.numpy(), 1), atol=TOL)


def test_linear_matches_numpy_interp_and_its_slopes():
    t, x = data()
    q = query(t)
    path = linear_path(t, x)
    for b in range(x.shape[0]):
        for c in range(x.shape[2]):
            ref = np.interp(q.numpy(), t.numpy(), x[b, :, c].numpy())
            np.testing.assert_allclose(path.evaluate(q)[b, :, c].numpy(), ref, atol=TOL)
    # on the open interval k the derivative is the chord slope
    mid = (t[:-1] + t[1:]) / 2
    slopes = (x[:, 1:] - x[:, :-1]) / (t[1:] - t[:-1])[:, None]
    torch.testing.assert_close(path.derivative(mid), slopes)


@pytest.mark.parametrize("kind", ["linear", "natural_cubic", "hermite"])
def test_paths_pass_through_the_data_and_scalar_times_work(kind):
    t, x = data()
    path = make_path(kind, t, x)
    torch.testing.assert_close(path.evaluate(t), x)
    # a 0-d time gives (..., C); the same value as in a batch of times
    torch.testing.assert_close(path.evaluate(t[3]), x[:, 3])
    assert path.derivative(float(t[3])).shape == (3, 2)


def test_smoothness_of_each_scheme():
    t, x = data()
    eps = 1e-10
    for kind, continuous in (("linear", False), ("natural_cubic", True), ("hermite", True)):
        path = make_path(kind, t, x)
        left, right = path.derivative(t[1:-1] - eps), path.derivative(t[1:-1])
        jump = (left - right).abs().max().item()
        # 1e-6: eps times the second derivative (< 1e4 on these knots); a kink jumps by O(1)
        assert (jump < 1e-6) == continuous, (kind, jump)
        assert path.smooth == continuous
        assert path.jumps == tuple(t[1:-1].tolist())   # a higher derivative jumps anyway


@pytest.mark.parametrize("kind", KINDS)
def test_causality(kind):
    """Built from the first k observations, a causal path agrees with the full path up to t_k;
    the natural cubic spline does not (a later point moves every earlier piece)."""
    t, x = data(T=10)
    k = 6
    full, part = make_path(kind, t, x), make_path(kind, t[:k], x[:, :k])
    end = part.knots[-1]
    q = torch.linspace(float(part.knots[0]), float(end), 101, dtype=torch.float64)
    gap = (full.evaluate(q) - part.evaluate(q)).abs().max().item()
    causal = kind != "natural_cubic"
    assert (gap < TOL) == causal, (kind, gap)


def test_fill_missing_is_linear_between_own_observations_and_constant_outside():
    t = torch.arange(6, dtype=torch.float64)
    x = torch.tensor([[[np.nan], [1.0], [np.nan], [np.nan], [4.0], [np.nan]]],
                     dtype=torch.float64)
    filled = fill_missing(t, x)
    torch.testing.assert_close(filled[0, :, 0], torch.tensor([1.0, 1, 2, 3, 4, 4],
                                                             dtype=torch.float64))
    forward = fill_missing(t, x, forward=True)
    torch.testing.assert_close(forward[0, :, 0], torch.tensor([1.0, 1, 1, 1, 4, 4],
                                                              dtype=torch.float64))
    with pytest.raises(ValueError, match="no observation"):
        fill_missing(t, torch.full((1, 6, 1), np.nan, dtype=torch.float64))


def test_missing_points_give_the_path_of_the_observed_points_alone():
    """A linear path with NaNs equals the linear path through the observed points only."""
    t, x = data(batch=1, T=12)
    keep = torch.tensor([0, 2, 3, 7, 8, 11])
    xn = torch.full_like(x, np.nan)
    xn[:, keep] = x[:, keep]
    q = query(t)
    torch.testing.assert_close(linear_path(t, xn).evaluate(q),
                               linear_path(t[keep], x[:, keep]).evaluate(q))


def test_observation_channels():
    t = torch.tensor([0.0, 0.5, 2.0], dtype=torch.float64)
    x = torch.tensor([[[1.0, np.nan], [np.nan, np.nan], [3.0, 2.0]]], dtype=torch.float64)
    out = observation_channels(t, x)
    assert out.shape == (1, 3, 4)
    torch.testing.assert_close(out[0, :, 0], t)
    torch.testing.assert_close(out[0, :, 1], torch.tensor([1.0, 1, 2], dtype=torch.float64))
    per = observation_channels(t, x, time=False, per_channel=True)
    torch.testing.assert_close(per[0, :, :2], torch.tensor([[1.0, 0], [1, 0], [2, 1]],
                                                           dtype=torch.float64))
    assert torch.isnan(out[0, 1, 2:]).all()   # values stay missing until a path fills them


def test_rectilinear_is_a_staircase():
    t = torch.tensor([0.0, 1.0, 3.0], dtype=torch.float64)
    x = torch.tensor([[[5.0], [7.0], [6.0]]], dtype=torch.float64)
    path = rectilinear_path(observation_channels(t, x, intensity=False))
    expected = [[0, 5], [1, 5], [1, 7], [3, 7], [3, 6]]
    torch.testing.assert_close(path.evaluate(path.knots)[0],
                               torch.tensor(expected, dtype=torch.float64))
    assert not path.smooth and path.interval.tolist() == [0.0, 4.0]


def test_batch_indexing_device_dtype_and_errors():
    t, x = data(batch=4)
    path = hermite_path(t.float(), x.float())
    assert path.evaluate(t.float()).dtype == torch.float32
    torch.testing.assert_close(path[1:3].evaluate(t[5]), path.evaluate(t[5])[1:3])
    with pytest.raises(ValueError, match="strictly increasing"):
        linear_path(t.flip(0), x)
    with pytest.raises(ValueError, match="expected t"):
        linear_path(t, x[:, :-1])
    with pytest.raises(ValueError, match="unknown path kind"):
        make_path("quintic", t, x)
