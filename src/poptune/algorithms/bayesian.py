"""Bayesian optimization: a Gaussian process over the mixed space and expected improvement.

The search space is encoded into a box ``[0, 1]^D``: a Continuous parameter is one dimension
(its logarithm for log scale), a Discrete parameter one dimension rounded to an integer on
decoding, an Ordinal its index divided by ``n - 1``, a Choice one dimension per value
(one-hot, decoded by the largest coordinate). A Gaussian process (scikit-learn's
``GaussianProcessRegressor``: a constant times a Matérn 5/2 kernel with one length scale per
dimension, plus a white-noise kernel, ``normalize_y=True``) is fitted to the completed trials
and the next configuration maximises an acquisition function (expected improvement by
default), found by L-BFGS-B started from the best of many random candidates.

Nothing is kept in the algorithm object but its configuration: the number of suggestions
made lives in ``history.state`` and the model is refitted from the history at each
suggestion, so any process sharing a study can make the next one and a resumed study goes on
exactly.
"""

from __future__ import annotations

import heapq
import logging
import math
import numbers
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from poptune._validation import check_int
from poptune.algorithms._blas import one_blas_thread
from poptune.algorithms.base import Algorithm, Suggestion, SuggestResult
from poptune.exceptions import ConfigurationError, InvalidParameterError
from poptune.history import History
from poptune.parameters import Choice, Continuous, Discrete, Ordinal, Parameter
from poptune.trial import AlgorithmState, Trial

__all__ = ["BayesianOptimization", "GPyOpt"]

logger = logging.getLogger("poptune.bayes")

_INSTALL_HINT = "pip install 'poptune[bayes]'"
_ACQUISITIONS = ("EI", "MPI", "LCB")
_BATCH_STRATEGIES = ("constant_liar",)
_XI = 0.01  # EI / PI margin, in units of the normalized objective
_KAPPA = 2.0  # LCB: mean - kappa * std
_JITTER = 1e-8
_SQRT5 = math.sqrt(5.0)


# -- the encoded space ----------------------------------------------------------------------
class _Space:
    """Maps configurations to points of ``[0, 1]^D`` and back (vectorized)."""

    def __init__(self, parameters: Sequence[Parameter]) -> None:
        self.parameters = list(parameters)
        self.columns: list[slice] = []
        # (low, span) of each numeric parameter's coordinate before scaling to [0, 1]
        self.bounds: list[tuple[float, float]] = []
        start = 0
        for p in self.parameters:
            width = len(p.range) if isinstance(p, Choice) else 1
            self.columns.append(slice(start, start + width))
            start += width
            if isinstance(p, Continuous):
                low, high = p.low, p.high
                if p.scale == "log":
                    low, high = math.log(low), math.log(high)
            elif isinstance(p, Discrete):
                # Each integer owns a cell of width 1 (in log space for log scale).
                if p.scale == "log":
                    low, high = math.log(p.low - 0.5), math.log(p.high + 0.5)
                else:
                    low, high = p.low - 0.5, p.high + 0.5
            else:
                low, high = 0.0, 1.0
            self.bounds.append((low, high - low))
        self.dim = start

    # single values ----------------------------------------------------------------------
    def encode(self, configs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Configurations (valid values) to an ``(n, D)`` array."""
        out = np.zeros((len(configs), self.dim))
        for p, cols, (low, span) in zip(self.parameters, self.columns, self.bounds, strict=True):
            values = [c[p.name] for c in configs]
            if isinstance(p, Choice):
                for i, v in enumerate(values):
                    out[i, cols.start + p.index(v)] = 1.0
            elif isinstance(p, Ordinal):
                n = len(p.range)
                out[:, cols.start] = [p.index(v) / (n - 1) if n > 1 else 0.0 for v in values]
            else:
                x = np.asarray(values, dtype=float)
                if p.scale == "log":
                    x = np.log(x)
                out[:, cols.start] = np.clip((x - low) / span, 0.0, 1.0)
        return out

    def decode(self, X: np.ndarray) -> list[dict[str, Any]]:
        """Points (any real numbers, clipped into the box) to valid configurations."""
        X = np.clip(np.atleast_2d(X), 0.0, 1.0)
        columns: list[list[Any]] = []
        for p, cols, (low, span) in zip(self.parameters, self.columns, self.bounds, strict=True):
            if isinstance(p, Choice):
                idx = np.argmax(X[:, cols], axis=1)
                columns.append([p.range[int(i)] for i in idx])
            elif isinstance(p, Ordinal):
                n = len(p.range)
                idx = np.clip(np.rint(X[:, cols.start] * (n - 1)), 0, n - 1)
                columns.append([p.range[int(i)] for i in idx])
            else:
                x = low + X[:, cols.start] * span
                if p.scale == "log":
                    x = np.exp(x)
                if isinstance(p, Discrete):
                    x = np.rint(x) if p.scale == "log" else np.floor(x + 0.5)
                    columns.append([int(v) for v in np.clip(x, p.low, p.high)])
                else:
                    columns.append([float(v) for v in np.clip(x, p.low, p.high)])
        names = [p.name for p in self.parameters]
        return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]

    def snap(self, X: np.ndarray) -> np.ndarray:
        """The encoding of the configuration each point decodes to (vectorized)."""
        X = np.clip(np.atleast_2d(X), 0.0, 1.0).copy()
        for p, cols, (low, span) in zip(self.parameters, self.columns, self.bounds, strict=True):
            if isinstance(p, Choice):
                idx = np.argmax(X[:, cols], axis=1)
                X[:, cols] = 0.0
                X[np.arange(len(X)), cols.start + idx] = 1.0
            elif isinstance(p, Ordinal):
                n = len(p.range)
                X[:, cols.start] = np.rint(X[:, cols.start] * (n - 1)) / (n - 1) if n > 1 else 0.0
            elif isinstance(p, Discrete):
                x = low + X[:, cols.start] * span
                if p.scale == "log":
                    v = np.clip(np.rint(np.exp(x)), p.low, p.high)
                    X[:, cols.start] = (np.log(v) - low) / span
                else:
                    v = np.clip(np.floor(x + 0.5), p.low, p.high)
                    X[:, cols.start] = (v - low) / span
        return X

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` snapped points drawn from the parameters' priors (uniform in the box)."""
        X = rng.random((n, self.dim))
        for p, cols in zip(self.parameters, self.columns, strict=True):
            if isinstance(p, (Choice, Ordinal)):
                k = len(p.range)
                idx = np.minimum((rng.random(n) * k).astype(int), k - 1)
                if isinstance(p, Choice):
                    X[:, cols] = 0.0
                    X[np.arange(n), cols.start + idx] = 1.0
                else:
                    X[:, cols.start] = idx / (k - 1) if k > 1 else 0.0
        return self.snap(X)

    def valid(self, params: Mapping[str, Any]) -> bool:
        return all(p.name in params and p.contains(params[p.name]) for p in self.parameters)


# -- the Gaussian process ------------------------------------------------------------------
def _import_sklearn() -> Any:
    try:
        from sklearn import gaussian_process
        from sklearn.exceptions import ConvergenceWarning
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ConfigurationError(
            f"Bayesian optimization needs scikit-learn ({exc}); install it with {_INSTALL_HINT}"
        ) from None
    return gaussian_process, ConvergenceWarning


def _fit_hyperparameters(
    X: np.ndarray, y: np.ndarray, rng: np.random.Generator
) -> tuple[float, np.ndarray, float]:
    """Fit scikit-learn's GP to ``(X, y)``; return (amplitude, length scales, noise), all for
    the objective normalized to mean 0 and standard deviation 1.

    The fit always starts from the same hyperparameters (not from the last fit's: that was
    faster but got stuck more often), so it depends on the data alone.
    """
    gaussian_process, convergence_warning = _import_sklearn()
    kernels = gaussian_process.kernels
    kernel = kernels.ConstantKernel(1.0, (1e-3, 1e3)) * kernels.Matern(
        length_scale=np.full(X.shape[1], 0.5), length_scale_bounds=(1e-3, 1e2), nu=2.5
    ) + kernels.WhiteKernel(1e-4, (1e-9, 1.0))
    gp = gaussian_process.GaussianProcessRegressor(
        kernel=kernel,
        normalize_y=True,
        n_restarts_optimizer=0,
        random_state=int(rng.integers(2**31 - 1)),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", convergence_warning)
        gp.fit(X, y)
    fitted = gp.kernel_
    amplitude = float(fitted.k1.k1.constant_value)
    length_scale = np.atleast_1d(np.asarray(fitted.k1.k2.length_scale, dtype=float))
    if length_scale.size == 1 and X.shape[1] > 1:
        length_scale = np.full(X.shape[1], float(length_scale[0]))
    noise = float(fitted.k2.noise_level)
    return amplitude, length_scale, noise


def _matern(r: np.ndarray, amplitude: float) -> np.ndarray:
    s = _SQRT5 * r
    return amplitude * (1.0 + s + s * s / 3.0) * np.exp(-s)


class _Posterior:
    """The GP posterior of the normalized objective with fixed hyperparameters.

    Conditioned on ``X`` (training points, then pending points with their lies) and the
    normalized values ``y``; predicts the latent function (without the noise).
    """

    def __init__(
        self, X: np.ndarray, y: np.ndarray, amplitude: float, length_scale: np.ndarray, noise: float
    ) -> None:
        from scipy.linalg import cho_factor, cho_solve

        self.amplitude = amplitude
        self.length_scale = length_scale
        self.Xs = X / length_scale
        self.sq = np.sum(self.Xs**2, axis=1)
        K = _matern(self._distance(self.Xs), amplitude)
        jitter = _JITTER
        while True:
            try:
                self.chol = cho_factor(K + (noise + jitter) * np.eye(len(X)), lower=True)
                break
            except np.linalg.LinAlgError:  # pragma: no cover - needs a pathological kernel
                jitter *= 100.0
                if jitter > 1.0:
                    raise
        self.alpha = cho_solve(self.chol, y)
        self._cho_solve = cho_solve

    def _distance(self, Zs: np.ndarray) -> np.ndarray:
        d2 = np.sum(Zs**2, axis=1)[:, None] + self.sq[None, :] - 2.0 * Zs @ self.Xs.T
        return np.sqrt(np.maximum(d2, 0.0))

    def predict(self, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation at the rows of ``Z``."""
        k = _matern(self._distance(Z / self.length_scale), self.amplitude)
        mean = k @ self.alpha
        w = self._cho_solve(self.chol, k.T)
        var = self.amplitude - np.einsum("mn,nm->m", k, w)
        return mean, np.sqrt(np.maximum(var, 1e-18))

    def predict_with_gradient(self, z: np.ndarray) -> tuple[float, float, np.ndarray, np.ndarray]:
        """Mean, standard deviation and their gradients at one point ``z``."""
        zs = z / self.length_scale
        diff = zs[None, :] - self.Xs  # (n, D)
        r = np.sqrt(np.sum(diff**2, axis=1))
        s = _SQRT5 * r
        e = np.exp(-s)
        k = self.amplitude * (1.0 + s + s * s / 3.0) * e
        # d k / d z = -5/3 a (1 + sqrt5 r) exp(-sqrt5 r) (z - x) / l^2
        dk = (-5.0 / 3.0 * self.amplitude * (1.0 + s) * e)[:, None] * diff / self.length_scale
        mean = float(k @ self.alpha)
        dmean = dk.T @ self.alpha
        w = self._cho_solve(self.chol, k)
        var = self.amplitude - float(k @ w)
        if var <= 1e-18:
            return mean, 1e-9, dmean, np.zeros_like(z)
        std = math.sqrt(var)
        dstd = -(dk.T @ w) / std
        return mean, std, dmean, dstd


# -- acquisition functions (all maximised; EI and PI on the log scale) --------------------
def _log_h(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``log(z Phi(z) + phi(z))`` and its derivative ``Phi(z) / h(z)``, stable for z << 0."""
    from scipy.special import erfcx, ndtr

    z = np.asarray(z, dtype=float)
    log_h = np.empty_like(z)
    dlog_h = np.empty_like(z)
    log_phi = -0.5 * z * z - 0.5 * math.log(2.0 * math.pi)
    high = z > -1.0
    zh = z[high]
    h = np.exp(log_phi[high]) + zh * ndtr(zh)
    log_h[high] = np.log(h)
    dlog_h[high] = ndtr(zh) / h
    t = -z[~high]  # t >= 1
    mills = math.sqrt(math.pi / 2.0) * erfcx(t / math.sqrt(2.0))  # Phi(-t) / phi(t)
    # 1 - t * mills loses precision for large t: use its asymptotic series there.
    rest = np.where(t < 100.0, 1.0 - t * mills, 1.0 / t**2 - 3.0 / t**4 + 15.0 / t**6)
    log_h[~high] = log_phi[~high] + np.log(rest)
    dlog_h[~high] = mills / rest
    return log_h, dlog_h


def _acquisition(kind: str, mean: Any, std: Any, best: float) -> Any:
    """The acquisition value for minimization of the normalized objective (vectorized)."""
    mean = np.asarray(mean, dtype=float)
    std = np.asarray(std, dtype=float)
    if kind == "LCB":
        return -(mean - _KAPPA * std)
    z = (best - _XI - mean) / std
    if kind == "MPI":
        from scipy.special import log_ndtr

        return log_ndtr(z)
    return np.log(std) + _log_h(z)[0]


def _acquisition_gradient(
    kind: str, posterior: _Posterior, x: np.ndarray, best: float
) -> tuple[float, np.ndarray]:
    mean, std, dmean, dstd = posterior.predict_with_gradient(x)
    if kind == "LCB":
        return -(mean - _KAPPA * std), -(dmean - _KAPPA * dstd)
    z = (best - _XI - mean) / std
    dz = (-dmean - z * dstd) / std
    if kind == "MPI":
        from scipy.special import log_ndtr

        value = float(log_ndtr(z))
        ratio = math.exp(-0.5 * z * z - 0.5 * math.log(2.0 * math.pi) - value)
        return value, ratio * dz
    log_h, dlog_h = _log_h(np.array([z]))
    return math.log(std) + float(log_h[0]), dstd / std + float(dlog_h[0]) * dz


# -- the algorithm ---------------------------------------------------------------------------
class BayesianOptimization(Algorithm):
    """Bayesian optimization with a Gaussian process and expected improvement.

    The first ``num_initial_data_points`` suggestions are the given ``initial_data_points``
    and then random samples (the same draws as :class:`RandomSearch`). After that each
    suggestion fits a Gaussian process to the completed trials — each trial's best objective
    (respecting ``lower_is_better``) — over the encoded space (Continuous in ``[0, 1]``, in
    log space for log scale; Discrete as a continuous dimension rounded on decoding; Ordinal
    as ``index / (n - 1)``; Choice one-hot) and returns the configuration that maximises the
    acquisition function: L-BFGS-B (SciPy) runs from the ``n_restarts`` best of
    ``n_candidates`` random candidates (a tenth of them drawn around the incumbent, which is
    itself a candidate), and the best point, decoded to valid values, wins. A point equal to
    a completed or running trial's is never suggested while another candidate exists.

    Trials still running are handled by the *constant liar*: each pending configuration is
    added to the model as if it had returned the best objective seen so far, so that
    concurrent suggestions spread out instead of piling onto the same optimum. The kernel
    hyperparameters are fitted on real observations only.

    Cost: the model is fitted on at most ``window`` completed trials — the most recent ones
    (by the order they finished) plus the ``window // 10`` best ones — so a suggestion costs
    O(window³) for the Gaussian process (plus O(n_candidates · window) to score the
    candidates and a linear pass over the history), not O(n³) in the number of trials.

    Nothing but the configuration is kept in the object: the number of suggestions made is
    in ``history.state`` and the model is refitted from the history at every suggestion,
    deterministically given the study's random generator, so several processes sharing a
    study (``storage=...``) can each make the next suggestion.

    Args:
        num_initial_data_points: suggestions made before the model is used (initial points
            first, then random ones); ``'infer'`` means ``max(2 * number of parameters, 5)``.
            The model also needs two completed trials; until then suggestions stay random.
        max_num_trials: DONE after this many suggestions; None (default) never ends.
        max_concurrent: at most this many trials unfinished at once: the algorithm answers
            WAIT while ``max_concurrent`` trials are running. Set it to the number of
            workers.
        acquisition_type: ``'EI'`` (expected improvement, maximised as log EI), ``'MPI'``
            (probability of improvement) or ``'LCB'`` (lower confidence bound, mean − 2 std).
        batch_strategy: how running trials are taken into account; only ``'constant_liar'``.
        window: the most completed trials the model is fitted on (>= 10).
        n_candidates: random candidates scored before the local optimisation (>= 1).
        n_restarts: L-BFGS-B runs, from the best candidates (>= 0; 0 keeps the best
            candidate).
        verbosity: log each model-based suggestion at INFO level (logger ``poptune.bayes``)
            instead of DEBUG.
        initial_data_points: configurations (dicts giving a value to every parameter) to
            suggest first.

    Every suggestion's ``trial.meta['phase']`` says where it came from: ``'initial'``,
    ``'random'`` or ``'model'`` (then ``trial.meta['acquisition']`` is the acquisition
    value: log EI, log PI, or minus the LCB, for the normalized objective).

    Needs scikit-learn: ``pip install 'poptune[bayes]'``.

    Raises:
        ConfigurationError: an argument out of range (naming the value), an initial point
            that does not fit the study's parameters, or scikit-learn missing (at setup).
    """

    def __init__(
        self,
        num_initial_data_points: int | str = "infer",
        max_num_trials: int | None = None,
        max_concurrent: int = 1,
        acquisition_type: str = "EI",
        batch_strategy: str = "constant_liar",
        window: int = 500,
        n_candidates: int = 1000,
        n_restarts: int = 5,
        verbosity: bool = False,
        *,
        initial_data_points: Any = None,
    ) -> None:
        owner = type(self).__name__
        if num_initial_data_points != "infer":
            if (
                isinstance(num_initial_data_points, bool)
                or not isinstance(num_initial_data_points, numbers.Integral)
                or num_initial_data_points < 1
            ):
                raise ConfigurationError(
                    f"{owner}: num_initial_data_points must be 'infer' or an int >= 1, "
                    f"got {num_initial_data_points!r}"
                )
            num_initial_data_points = int(num_initial_data_points)
        self.num_initial_data_points = num_initial_data_points
        self.max_num_trials = check_int(owner, "max_num_trials", max_num_trials, 1, True)
        self.max_concurrent = check_int(owner, "max_concurrent", max_concurrent, 1)
        if acquisition_type not in _ACQUISITIONS:
            raise ConfigurationError(
                f"{owner}: acquisition_type {acquisition_type!r} is not supported; expected "
                f"one of {list(_ACQUISITIONS)}"
            )
        self.acquisition_type = acquisition_type
        if batch_strategy not in _BATCH_STRATEGIES:
            raise ConfigurationError(
                f"{owner}: batch_strategy {batch_strategy!r} is not supported; expected "
                f"one of {list(_BATCH_STRATEGIES)}"
            )
        self.batch_strategy = batch_strategy
        self.window = check_int(owner, "window", window, 10)
        self.n_candidates = check_int(owner, "n_candidates", n_candidates, 1)
        self.n_restarts = check_int(owner, "n_restarts", n_restarts, 0)
        if not isinstance(verbosity, (bool, np.bool_)):
            raise ConfigurationError(f"{owner}: verbosity must be True or False, got {verbosity!r}")
        self.verbosity = bool(verbosity)
        self.initial_data_points = _initial_points(owner, initial_data_points)

    # -- configuration ---------------------------------------------------------------------
    def setup(self, parameters: Sequence[Parameter], lower_is_better: bool) -> None:
        super().setup(parameters, lower_is_better)
        _import_sklearn()
        owner = type(self).__name__
        for i, point in enumerate(self.initial_data_points):
            for p in parameters:
                if p.name not in point:
                    raise ConfigurationError(
                        f"{owner}: initial_data_points[{i}] ({point!r}) has no value for "
                        f"parameter {p.name!r}"
                    )
                try:
                    p.validate_value(point[p.name])
                except InvalidParameterError as exc:
                    raise ConfigurationError(f"{owner}: initial_data_points[{i}]: {exc}") from None

    def get_config(self) -> dict[str, Any]:
        return {
            "num_initial_data_points": self.num_initial_data_points,
            "max_num_trials": self.max_num_trials,
            "max_concurrent": self.max_concurrent,
            "acquisition_type": self.acquisition_type,
            "batch_strategy": self.batch_strategy,
            "window": self.window,
            "n_candidates": self.n_candidates,
            "n_restarts": self.n_restarts,
            "verbosity": self.verbosity,
            "initial_data_points": [dict(p) for p in self.initial_data_points],
        }

    def num_initial(self, parameters: Sequence[Parameter]) -> int:
        """The number of suggestions made before the model is used."""
        if self.num_initial_data_points == "infer":
            return max(2 * len(parameters), 5)
        return int(self.num_initial_data_points)

    # -- suggestions -----------------------------------------------------------------------
    def suggest(self, history: History, rng: np.random.Generator) -> SuggestResult:
        state = history.state
        n = int(state.get("n", 0))
        if self.max_num_trials is not None and n >= self.max_num_trials:
            return AlgorithmState.DONE
        if history.n_unfinished >= self.max_concurrent:
            return AlgorithmState.WAIT
        parameters = history.parameters
        if n < len(self.initial_data_points):
            point = self.initial_data_points[n]
            params = {p.name: p.validate_value(point[p.name]) for p in parameters}
            meta: dict[str, Any] = {"phase": "initial"}
        else:
            params, meta = {}, {"phase": "random"}
            if n >= self.num_initial(parameters):
                try:
                    with one_blas_thread():
                        model = self._model_suggestion(history, rng)
                except np.linalg.LinAlgError as exc:  # pragma: no cover - numerical accident
                    logger.warning("poptune: the GP could not be fitted (%s); random point", exc)
                    model = None
                if model is not None:
                    params, meta = model
            if not params:
                params = {p.name: p.sample(rng) for p in parameters}
        state["n"] = n + 1
        return Suggestion(params, meta)

    def _model_suggestion(
        self, history: History, rng: np.random.Generator
    ) -> tuple[dict[str, Any], dict[str, Any]] | None:
        space = _Space(history.parameters)
        X, y, _ = _training_data(history, space, self.window)
        if len(y) < 2:
            return None
        amplitude, length_scale, noise = _fit_hyperparameters(X, y, rng)
        y_mean = float(np.mean(y))
        y_std = float(np.std(y)) or 1.0
        yn = (y - y_mean) / y_std
        best = float(np.min(yn))
        incumbent = X[int(np.argmin(yn))]
        pending = [
            history.hyperparameters(t) for t in history.unfinished if space.valid(t.parameters)
        ]
        X_pending = space.encode(pending) if pending else np.zeros((0, space.dim))
        # Constant liar: pending points "returned" the best value seen so far.
        X_all = np.vstack([X, X_pending])
        y_all = np.concatenate([yn, np.full(len(X_pending), best)])
        posterior = _Posterior(X_all, y_all, amplitude, length_scale, noise)
        kind = self.acquisition_type

        n_local = self.n_candidates // 10
        candidates = [space.sample(rng, self.n_candidates - n_local)]
        if n_local:
            local = incumbent + 0.05 * rng.standard_normal((n_local, space.dim))
            candidates.append(space.snap(local))
        candidates.append(incumbent[None, :])
        C = np.vstack(candidates)
        scores = _acquisition(kind, *posterior.predict(C), best)
        order = np.argsort(-scores, kind="stable")

        points = [C]
        if self.n_restarts:
            from scipy.optimize import minimize

            def negative(x: np.ndarray) -> tuple[float, np.ndarray]:
                value, grad = _acquisition_gradient(kind, posterior, x, best)
                return -value, -grad

            bounds = [(0.0, 1.0)] * space.dim
            starts: list[np.ndarray] = []
            for i in order:
                if len(starts) == self.n_restarts:
                    break
                if not any(np.array_equal(C[i], s) for s in starts):
                    starts.append(C[i])
            found = []
            for x0 in starts:
                result = minimize(
                    negative, x0, jac=True, method="L-BFGS-B", bounds=bounds,
                    options={"maxiter": 200},
                )  # fmt: skip
                if np.all(np.isfinite(result.x)):
                    found.append(result.x)
            if found:
                points.insert(0, space.snap(np.vstack(found)))
        P = np.vstack(points)
        values = _acquisition(kind, *posterior.predict(P), best)
        values = np.where(np.isfinite(values), values, -np.inf)
        seen = X_all
        chosen = None
        for i in np.argsort(-values, kind="stable"):
            if not np.any(np.all(np.abs(seen - P[i]) < 1e-9, axis=1)):
                chosen = int(i)
                break
        if chosen is None:  # every candidate was tried already: the space may be exhausted
            return None
        params = space.decode(P[chosen])[0]
        value = float(values[chosen])
        meta: dict[str, Any] = {"phase": "model"}
        if math.isfinite(value):
            meta["acquisition"] = value
        logger.log(
            logging.INFO if self.verbosity else logging.DEBUG,
            "poptune: %s suggests %r (%s %.4g; %d completed, %d pending)",
            type(self).__name__,
            params,
            kind,
            value,
            len(y),
            len(X_pending),
        )
        return params, meta

    # -- SHERPA's GPyOpt.get_best_pred ------------------------------------------------------
    def get_best_pred(self, history: Any) -> dict[str, Any]:
        """The completed configuration with the best *predicted* objective.

        A Gaussian process is fitted, as for a suggestion, to the completed trials (at most
        ``window`` of them); among those trials' configurations the one whose posterior mean
        is best (lowest, or highest when ``lower_is_better`` is False) is returned. With a
        noisy objective this is a more reliable pick than the best observed value.

        Args:
            history: a :class:`~poptune.history.History` or a :class:`~poptune.Study`.

        Returns:
            ``{'parameters': {...}, 'predicted': mean objective, 'std': posterior standard
            deviation}`` in the objective's units; ``{}`` when no trial has completed.
        """
        if not isinstance(history, History):
            history = getattr(history, "history", None)
            if not isinstance(history, History):
                raise ConfigurationError(
                    f"get_best_pred expects a History or a Study, got {history!r}"
                )
        space = _Space(history.parameters)
        X, y, configs = _training_data(history, space, self.window)
        sign = 1.0 if history.lower_is_better else -1.0
        if len(y) == 0:
            return {}
        if len(y) == 1:
            return {"parameters": configs[0], "predicted": sign * float(y[0]), "std": 0.0}
        with one_blas_thread():
            amplitude, length_scale, noise = _fit_hyperparameters(X, y, np.random.default_rng(0))
            y_mean = float(np.mean(y))
            y_std = float(np.std(y)) or 1.0
            posterior = _Posterior(X, (y - y_mean) / y_std, amplitude, length_scale, noise)
            mean, std = posterior.predict(X)
        i = int(np.argmin(mean))
        return {
            "parameters": configs[i],
            "predicted": sign * (y_mean + y_std * float(mean[i])),
            "std": y_std * float(std[i]),
        }


def _training_data(
    history: History, space: _Space, window: int
) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """Encoded configurations, objectives to minimize and configurations of the completed
    trials the model is fitted on: all of them, or the ``window`` most recent plus best."""
    lower = history.lower_is_better
    rows: list[tuple[Trial, float]] = []
    for trial in history.completed:
        obs = trial.best_observation(lower)
        if obs is None or not space.valid(trial.parameters):
            continue
        rows.append((trial, obs.objective if lower else -obs.objective))
    if len(rows) > window:
        n_best = max(1, window // 10)
        keep = {id(r[0]) for r in heapq.nsmallest(n_best, rows, key=lambda r: (r[1], r[0].id))}
        recent = sorted(rows, key=lambda r: (r[0].finished_seq, r[0].id), reverse=True)
        for trial, _ in recent:
            if len(keep) >= window:
                break
            keep.add(id(trial))
        rows = [r for r in rows if id(r[0]) in keep]
    rows.sort(key=lambda r: r[0].id)
    configs = [history.hyperparameters(t) for t, _ in rows]
    X = space.encode(configs) if configs else np.zeros((0, space.dim))
    return X, np.array([v for _, v in rows], dtype=float), configs


def _initial_points(owner: str, points: Any) -> list[dict[str, Any]]:
    if points is None:
        return []
    if hasattr(points, "to_dict") and hasattr(points, "columns"):  # a pandas DataFrame
        points = points.to_dict("records")
    if isinstance(points, (str, bytes, Mapping)) or not isinstance(points, Sequence):
        raise ConfigurationError(
            f"{owner}: initial_data_points must be a list of dicts, got {points!r}"
        )
    out = []
    for i, point in enumerate(points):
        if not isinstance(point, Mapping):
            raise ConfigurationError(
                f"{owner}: initial_data_points[{i}] must be a dict, got {point!r}"
            )
        out.append({k: _plain(v) for k, v in point.items()})
    return out


def _plain(value: Any) -> Any:
    """numpy scalars to Python ones (so the configuration is JSON)."""
    if isinstance(value, np.generic):
        return value.item()
    return value


class GPyOpt(BayesianOptimization):
    """SHERPA's ``GPyOpt`` algorithm, implemented by :class:`BayesianOptimization` (GPyOpt
    itself is not used).

    Args:
        model_type: only ``'GP'`` (SHERPA's other models are not available).
        num_initial_data_points: ``'infer'`` or an int, as for BayesianOptimization.
        initial_data_points: configurations (a list of dicts or a DataFrame) suggested first.
        acquisition_type: ``'EI'``, ``'MPI'`` or ``'LCB'`` (the ``_MCMC`` variants are not
            available).
        max_concurrent: at most this many trials unfinished at once (WAIT beyond).
        verbosity: log each model-based suggestion at INFO level.
        max_num_trials: DONE after this many suggestions.
        batch_strategy, window, n_candidates, n_restarts: keyword-only, as for
            :class:`BayesianOptimization`.

    Raises:
        ConfigurationError: ``model_type`` other than ``'GP'``, or any argument
            BayesianOptimization rejects.
    """

    def __init__(
        self,
        model_type: str = "GP",
        num_initial_data_points: int | str = "infer",
        initial_data_points: Any = None,
        acquisition_type: str = "EI",
        max_concurrent: int = 4,
        verbosity: bool = False,
        max_num_trials: int | None = None,
        *,
        batch_strategy: str = "constant_liar",
        window: int = 500,
        n_candidates: int = 1000,
        n_restarts: int = 5,
    ) -> None:
        if model_type != "GP":
            raise ConfigurationError(
                f"GPyOpt: model_type {model_type!r} is not supported; poptune's GPyOpt has "
                "only 'GP'"
            )
        self.model_type = model_type
        super().__init__(
            num_initial_data_points=num_initial_data_points,
            max_num_trials=max_num_trials,
            max_concurrent=max_concurrent,
            acquisition_type=acquisition_type,
            batch_strategy=batch_strategy,
            window=window,
            n_candidates=n_candidates,
            n_restarts=n_restarts,
            verbosity=verbosity,
            initial_data_points=initial_data_points,
        )

    def get_config(self) -> dict[str, Any]:
        return {"model_type": self.model_type, **super().get_config()}
