"""The Gaussian-process toolkit shared by BayesianOptimization and PB2 (algorithms/_gp.py)."""

from __future__ import annotations

import math
import sys
import warnings

import numpy as np
import pytest

from poptune import Choice, Continuous, Discrete, Ordinal
from poptune.algorithms import _gp
from poptune.exceptions import ConfigurationError

pytest.importorskip("sklearn")

MIXED = [
    Continuous("lr", [1e-4, 1e-1], "log"),
    Continuous("dropout", [0.0, 0.5]),
    Discrete("units", [8, 64]),
    Discrete("batch", [4, 512], "log"),
    Ordinal("depth", [1, 2, 4, 8]),
    Choice("act", ["relu", "tanh", "gelu"]),
]


# -- the box ---------------------------------------------------------------------------------
@pytest.mark.parametrize("log", [False, True])
def test_to_unit_and_from_unit_are_inverse_and_map_the_ends_to_0_and_1(log):
    low, high = 1e-3, 0.5
    assert _gp.to_unit(low, low, high, log) == 0.0
    assert _gp.to_unit(high, low, high, log) == pytest.approx(1.0, abs=1e-15)
    assert _gp.from_unit(0.0, low, high, log) == pytest.approx(low, rel=1e-15)
    for value in np.linspace(low, high, 17):
        u = _gp.to_unit(float(value), low, high, log)
        assert 0.0 <= u <= 1.0 + 1e-15
        assert _gp.from_unit(u, low, high, log) == pytest.approx(value, rel=1e-12)
    # not clipped: values outside the bounds map outside [0, 1]
    assert _gp.to_unit(high * 1.5, low, high, log) > 1.0
    middle = math.sqrt(low * high) if log else (low + high) / 2
    assert _gp.from_unit(0.5, low, high, log) == pytest.approx(middle, rel=1e-12)


def test_unit_bounds_is_the_offset_and_span_of_the_range():
    assert _gp.unit_bounds(2.0, 10.0, False) == (2.0, 8.0)
    offset, span = _gp.unit_bounds(1e-4, 1e-1, True)
    assert offset == math.log(1e-4) and span == math.log(1e-1) - math.log(1e-4)


def test_space_columns_and_dimension():
    space = _gp.Space(MIXED)
    assert space.dim == 5 + 3  # five one-column parameters and a three-value Choice
    assert space.columns[-1] == slice(5, 8)
    # Continuous coordinates use the same bounds as to_unit
    assert space.bounds[0] == _gp.unit_bounds(1e-4, 1e-1, True)
    # a Discrete value owns a cell of width 1
    assert space.bounds[2] == (7.5, 57.0)


def test_space_encode_decode_round_trip_and_snap_is_idempotent():
    space = _gp.Space(MIXED)
    rng = np.random.default_rng(0)
    configs = [{p.name: p.sample(rng) for p in MIXED} for _ in range(50)]
    X = space.encode(configs)
    assert X.shape == (50, space.dim)
    assert np.all((X >= 0.0) & (X <= 1.0))
    decoded = space.decode(X)
    for got, want in zip(decoded, configs, strict=True):
        for p in MIXED:
            if isinstance(p, Continuous):
                assert got[p.name] == pytest.approx(want[p.name], rel=1e-12)
            else:
                assert got[p.name] == want[p.name]
    np.testing.assert_allclose(space.snap(X), X, atol=1e-12)
    # any real point snaps to the encoding of what it decodes to
    Z = rng.random((40, space.dim)) * 1.4 - 0.2
    S = space.snap(Z)
    np.testing.assert_array_equal(space.snap(S), S)
    np.testing.assert_allclose(space.encode(space.decode(Z)), S, atol=1e-12)
    assert all(space.valid(c) for c in space.decode(Z))


def test_space_sample_is_snapped_and_covers_every_choice():
    space = _gp.Space(MIXED)
    X = space.sample(np.random.default_rng(1), 300)
    np.testing.assert_array_equal(space.snap(X), X)
    acts = {c["act"] for c in space.decode(X)}
    depths = {c["depth"] for c in space.decode(X)}
    assert acts == {"relu", "tanh", "gelu"} and depths == {1, 2, 4, 8}
    assert not space.valid({"lr": 1e-3})  # missing parameters
    assert not space.valid({**space.decode(X[:1])[0], "units": 65})  # out of range


# -- the Matérn model --------------------------------------------------------------------------
def _direct_posterior(X, y, amplitude, length_scale, noise, Z):
    """The textbook GP posterior, written out with plain numpy."""

    def kernel(A, B):
        diff = A[:, None, :] / length_scale - B[None, :, :] / length_scale
        r = np.sqrt(np.sum(diff**2, axis=2))
        s = math.sqrt(5.0) * r
        return amplitude * (1.0 + s + s * s / 3.0) * np.exp(-s)

    K = kernel(X, X) + (noise + 1e-8) * np.eye(len(X))
    k = kernel(Z, X)
    mean = k @ np.linalg.solve(K, y)
    var = amplitude - np.sum(k * np.linalg.solve(K, k.T).T, axis=1)
    return mean, np.sqrt(np.maximum(var, 1e-18))


def test_posterior_matches_a_direct_numpy_computation():
    rng = np.random.default_rng(2)
    X = rng.random((6, 2))
    y = np.sin(3 * X[:, 0]) + X[:, 1]
    length_scale = np.array([0.3, 0.7])
    posterior = _gp.Posterior(X, y, 1.3, length_scale, 1e-3)
    Z = rng.random((9, 2))
    mean, std = posterior.predict(Z)
    want_mean, want_std = _direct_posterior(X, y, 1.3, length_scale, 1e-3, Z)
    np.testing.assert_allclose(mean, want_mean, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(std, want_std, rtol=1e-7, atol=1e-9)
    # near-interpolation at the training points with little noise
    np.testing.assert_allclose(posterior.predict(X)[0], y, atol=1e-2)


def test_predict_with_gradient_agrees_with_predict_and_finite_differences():
    rng = np.random.default_rng(3)
    X = rng.random((8, 3))
    y = rng.standard_normal(8)
    posterior = _gp.Posterior(X, y, 0.8, np.array([0.4, 0.9, 0.6]), 1e-2)
    z = np.array([0.31, 0.52, 0.77])
    mean, std, dmean, dstd = posterior.predict_with_gradient(z)
    m, s = posterior.predict(z[None, :])
    assert mean == pytest.approx(m[0], rel=1e-10) and std == pytest.approx(s[0], rel=1e-8)
    h = 1e-6
    for j in range(3):
        e = np.zeros(3)
        e[j] = h
        (m1,), (s1,) = posterior.predict((z + e)[None, :])
        (m0,), (s0,) = posterior.predict((z - e)[None, :])
        assert dmean[j] == pytest.approx((m1 - m0) / (2 * h), rel=1e-5, abs=1e-7)
        assert dstd[j] == pytest.approx((s1 - s0) / (2 * h), rel=1e-4, abs=1e-6)


def test_matern_kernel_at_zero_and_decreasing():
    r = np.array([0.0, 0.1, 0.5, 2.0])
    k = _gp.matern52(r, 2.0)
    assert k[0] == 2.0
    assert np.all(np.diff(k) < 0)


def test_matern_hyperparameters_are_deterministic_and_bounded():
    rng = np.random.default_rng(4)
    X = rng.random((12, 2))
    y = np.cos(4 * X[:, 0]) + 0.1 * X[:, 1]
    first = _gp.matern_hyperparameters(X, y, np.random.default_rng(9))
    again = _gp.matern_hyperparameters(X, y, np.random.default_rng(9))
    assert first.amplitude == again.amplitude and first.noise == again.noise
    np.testing.assert_array_equal(first.length_scale, again.length_scale)
    assert first.length_scale.shape == (2,)
    assert 1e-3 <= first.amplitude <= 1e3 and 1e-9 <= first.noise <= 1.0
    # the input that matters has the shorter length scale
    assert first.length_scale[0] < first.length_scale[1]


# -- acquisitions -----------------------------------------------------------------------------
def test_log_h_matches_its_definition_and_stays_finite_far_out():
    from scipy.stats import norm

    z = np.linspace(-8.0, 5.0, 131)
    value, derivative = _gp.log_h(z)
    np.testing.assert_allclose(value, np.log(z * norm.cdf(z) + norm.pdf(z)), rtol=1e-9)
    np.testing.assert_allclose(derivative, norm.cdf(z) / np.exp(value), rtol=1e-8)
    far, dfar = _gp.log_h(np.array([-50.0, -1e3, -1e6]))
    assert np.all(np.isfinite(far)) and np.all(np.isfinite(dfar))
    assert far[0] > far[1] > far[2]
    # log h(z) ~ log phi(z) - 2 log(-z) for z << 0
    assert far[1] == pytest.approx(-0.5e6 - 0.5 * math.log(2 * math.pi) - 2 * math.log(1e3))


@pytest.mark.parametrize("kind", _gp.ACQUISITIONS)
def test_acquisition_gradient_matches_the_vectorized_value_and_finite_differences(kind):
    rng = np.random.default_rng(5)
    X = rng.random((7, 2))
    y = rng.standard_normal(7)
    posterior = _gp.Posterior(X, y, 1.0, np.array([0.5, 0.5]), 1e-3)
    best = float(y.min())
    x = np.array([0.42, 0.61])
    value, gradient = _gp.acquisition_gradient(kind, posterior, x, best)
    direct = _gp.acquisition(kind, *posterior.predict(x[None, :]), best)[0]
    assert value == pytest.approx(direct, rel=1e-8, abs=1e-10)
    h = 1e-6
    for j in range(2):
        e = np.zeros(2)
        e[j] = h
        plus = _gp.acquisition(kind, *posterior.predict((x + e)[None, :]), best)[0]
        minus = _gp.acquisition(kind, *posterior.predict((x - e)[None, :]), best)[0]
        assert gradient[j] == pytest.approx((plus - minus) / (2 * h), rel=1e-4, abs=1e-6)


def test_acquisitions_prefer_a_lower_mean_and_a_larger_spread():
    mean = np.array([0.0, -1.0, 0.0])
    std = np.array([0.5, 0.5, 1.0])
    for kind in _gp.ACQUISITIONS:
        a = _gp.acquisition(kind, mean, std, 0.0)
        assert a[1] > a[0] and a[2] > a[0], kind


# -- the polish -----------------------------------------------------------------------------
@pytest.mark.parametrize("gradient", [False, True])
def test_maximize_finds_the_top_of_a_bowl_and_stays_in_the_box(gradient):
    top = np.array([0.3, 0.8])

    def bowl(u):
        value = -float(np.sum((u - top) ** 2))
        return (value, -2.0 * (u - top)) if gradient else value

    point, value = _gp.maximize(bowl, np.array([0.9, 0.1]), maxiter=50, gradient=gradient)
    np.testing.assert_allclose(point, top, atol=1e-4)
    assert value == pytest.approx(0.0, abs=1e-7)

    def outside(u):  # its top is outside the box: the answer is on the boundary
        value = -float(np.sum((u - 2.0) ** 2))
        return (value, -2.0 * (u - 2.0)) if gradient else value

    point, _ = _gp.maximize(outside, np.array([0.5, 0.5]), maxiter=50, gradient=gradient)
    np.testing.assert_allclose(point, [1.0, 1.0])


def test_maximize_gives_none_for_a_non_finite_point(monkeypatch):
    import scipy.optimize

    class Result:
        x = np.array([np.nan])
        fun = 0.0

    monkeypatch.setattr(scipy.optimize, "minimize", lambda *a, **k: Result())
    assert _gp.maximize(lambda u: 0.0, np.array([0.5]), maxiter=5) is None


# -- PB2's model -----------------------------------------------------------------------------
def test_time_varying_fit_and_condition_on_its_kernel_predict_the_same():
    rng = np.random.default_rng(6)
    X = rng.random((15, 3))
    y = np.sin(3 * X[:, 1]) - X[:, 0]
    y = (y - y.mean()) / y.std()
    with _gp.quiet():
        gp = _gp.fit_time_varying(X, y)
        again = _gp.condition(gp.kernel_, X, y)
        Z = rng.random((5, 3))
        np.testing.assert_array_equal(gp.predict(Z), again.predict(Z))
        # conditioning keeps the kernel fixed
        np.testing.assert_array_equal(again.kernel_.theta, gp.kernel_.theta)
    assert len(gp.kernel_.k1.k2.length_scale) == 3  # one length scale per input


# -- dependencies and the numerical environment ---------------------------------------------
def test_missing_scikit_learn_gives_the_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    with pytest.raises(ConfigurationError, match=r"^PB2 needs scikit-learn.*pip install scikit"):
        _gp.check_sklearn("PB2")
    with pytest.raises(ConfigurationError, match=r"^X needs .*pip install 'poptune\[bayes\]'"):
        _gp.import_sklearn("X")
    with pytest.raises(ConfigurationError, match="pip install scikit-learn"):
        with _gp.quiet():
            pass  # pragma: no cover


def test_quiet_silences_convergence_notes_only():
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with _gp.quiet():
            warnings.warn("optimizer stopped", ConvergenceWarning, stacklevel=1)
            warnings.warn("Predicted variances smaller than 0. Setting those to 0.", stacklevel=1)
            warnings.warn("something else", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["something else"]


def test_one_blas_thread_limits_blas_inside_the_block():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with _gp.one_blas_thread():
        inside = [
            p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"
        ]
    assert all(n == 1 for n in inside)
