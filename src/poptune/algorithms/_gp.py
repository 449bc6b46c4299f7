"""The Gaussian-process toolkit of the model-based algorithms (BayesianOptimization, PB2).

Holds no algorithm state: each function takes its data and returns a result, so an
algorithm can rebuild its model from the History at every suggestion.

* **Dependencies.** scikit-learn (and SciPy, which it brings) are optional: nothing here
  imports them before it is called. :func:`check_sklearn` is the cheap check made when an
  algorithm is configured; :func:`import_sklearn` imports it, both with the one install hint.
  :func:`quiet` silences the fits' convergence notes; :func:`one_blas_thread` runs the
  small linear algebra on one BLAS thread.
* **The box.** :func:`unit_bounds` is the one mapping of a numeric range (linear or log) onto
  ``[0, 1]``. :class:`Space` encodes a whole mixed search space into ``[0, 1]^D`` and back
  (vectorized); :func:`to_unit` / :func:`from_unit` map one value over explicit bounds.
* **Two models.** BayesianOptimization's: a constant times a Matérn 5/2 kernel with one
  length scale per dimension plus white noise, its hyperparameters fitted by scikit-learn
  (:func:`matern_hyperparameters`), then the posterior computed here (:class:`Posterior`),
  with the gradients that the acquisition's L-BFGS-B polish uses. PB2's is a different
  model, kept distinct: an RBF kernel over (time, hyperparameters) whose time input makes it
  time-varying, fitted and predicted by scikit-learn itself (:func:`fit_time_varying`,
  :func:`condition`).
* **Acquisitions** of the Matérn model (:func:`acquisition`, :func:`acquisition_gradient`:
  expected improvement and probability of improvement on the log scale, a lower confidence
  bound), and :func:`maximize`, the L-BFGS-B polish over the box that both algorithms use.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from poptune.exceptions import ConfigurationError
from poptune.parameters import Choice, Continuous, Discrete, Ordinal, Parameter

INSTALL_HINT = "pip install scikit-learn (or pip install 'poptune[bayes]')"
ACQUISITIONS = ("EI", "MPI", "LCB")
XI = 0.01  # EI / PI margin, in units of the normalized objective
KAPPA = 2.0  # LCB: mean - KAPPA * std
_JITTER = 1e-8
_SQRT5 = math.sqrt(5.0)


# -- dependencies and the numerical environment ---------------------------------------------
def check_sklearn(owner: str) -> None:
    """Raise ConfigurationError (with the install hint) if scikit-learn is not installed;
    imports nothing."""
    if importlib.util.find_spec("sklearn") is None:
        raise ConfigurationError(
            f"{owner} needs scikit-learn for its Gaussian process: {INSTALL_HINT}"
        )


def import_sklearn(owner: str = "A Gaussian-process model") -> tuple[Any, Any]:
    """scikit-learn's ``gaussian_process`` and ``gaussian_process.kernels`` modules.

    Raises:
        ConfigurationError: scikit-learn cannot be imported (with the install hint).
    """
    try:
        from sklearn import gaussian_process
        from sklearn.gaussian_process import kernels
    except ImportError as exc:
        raise ConfigurationError(
            f"{owner} needs scikit-learn for its Gaussian process ({exc}): {INSTALL_HINT}"
        ) from None
    return gaussian_process, kernels


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Around our own fits and predictions: silence the hyperparameter optimizer's convergence
    notes and scikit-learn's "Predicted variances smaller than 0" (nothing else)."""
    import_sklearn()  # with the install hint if it is missing
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.filterwarnings("ignore", message="Predicted variances smaller than 0")
        yield


_CONTROLLER: Any = None
_CONTROLLER_LOCK = threading.Lock()


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """Run the block's linear algebra on one BLAS thread (not reentrant: do not nest).

    The matrices of a suggestion are at most a few hundred wide, where threads gain nothing
    and, on a busy machine, OpenBLAS's spinning threads made a suggestion (a 128 x 128
    Cholesky) several times slower. The lock keeps two threads of one process from
    restoring each other's limits. A no-op without threadpoolctl (it comes with scikit-learn).
    """
    global _CONTROLLER
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        yield
        return
    with _CONTROLLER_LOCK:
        if _CONTROLLER is None:
            _CONTROLLER = ThreadpoolController()
        with _CONTROLLER.limit(limits=1, user_api="blas"):
            yield


# -- the box ---------------------------------------------------------------------------------
def unit_bounds(low: float, high: float, log: bool) -> tuple[float, float]:
    """``(offset, span)`` that map ``[low, high]`` onto ``[0, 1]``: a value ``v`` goes to
    ``(v - offset) / span``, or ``(log(v) - offset) / span`` on a log scale."""
    if log:
        low, high = math.log(low), math.log(high)
    return low, high - low


def to_unit(value: float, low: float, high: float, log: bool) -> float:
    """One value of ``[low, high]`` (log-scaled if ``log``) to ``[0, 1]`` (not clipped)."""
    offset, span = unit_bounds(low, high, log)
    return ((math.log(value) if log else value) - offset) / span


def from_unit(u: float, low: float, high: float, log: bool) -> float:
    """The inverse of :func:`to_unit` (not clipped, not rounded)."""
    offset, span = unit_bounds(low, high, log)
    x = offset + u * span
    return math.exp(x) if log else x


class Space:
    """Maps configurations of a mixed search space to points of ``[0, 1]^D`` and back.

    A Continuous parameter is one dimension (its logarithm for log scale); a Discrete one
    dimension in which each integer owns a cell of width 1 (in log space for log scale),
    rounded on decoding; an Ordinal its index divided by ``n - 1``; a Choice one dimension
    per value (one-hot, decoded by the largest coordinate). All methods are vectorized.
    """

    def __init__(self, parameters: Sequence[Parameter]) -> None:
        self.parameters = list(parameters)
        self.columns: list[slice] = []
        # (offset, span) of each parameter's coordinate before scaling to [0, 1]
        self.bounds: list[tuple[float, float]] = []
        start = 0
        for p in self.parameters:
            width = len(p.range) if isinstance(p, Choice) else 1
            self.columns.append(slice(start, start + width))
            start += width
            if isinstance(p, Continuous):
                self.bounds.append(unit_bounds(p.low, p.high, p.scale == "log"))
            elif isinstance(p, Discrete):
                self.bounds.append(unit_bounds(p.low - 0.5, p.high + 0.5, p.scale == "log"))
            else:
                self.bounds.append((0.0, 1.0))
        self.dim = start

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
        """The encoding of the configuration each point decodes to."""
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
        """Whether ``params`` has a value in range for every parameter of the space."""
        return all(p.name in params and p.contains(params[p.name]) for p in self.parameters)


# -- BayesianOptimization's model: Matérn 5/2, posterior computed here ----------------------
class MaternHyperparameters(NamedTuple):
    """A fit's kernel hyperparameters, for the objective normalized to mean 0, std 1."""

    amplitude: float
    length_scale: np.ndarray
    noise: float


def matern_hyperparameters(
    X: np.ndarray, y: np.ndarray, rng: np.random.Generator
) -> MaternHyperparameters:
    """Fit scikit-learn's GP (constant x ARD Matérn 5/2 + white noise, ``normalize_y``) to
    ``(X, y)`` by maximum likelihood, one start, seeded from ``rng`` (one draw).

    The fit always starts from the same hyperparameters (not from the last fit's: that was
    faster but got stuck more often), so it depends on the data alone.
    """
    gaussian_process, kernels = import_sklearn()
    kernel = kernels.ConstantKernel(1.0, (1e-3, 1e3)) * kernels.Matern(
        length_scale=np.full(X.shape[1], 0.5), length_scale_bounds=(1e-3, 1e2), nu=2.5
    ) + kernels.WhiteKernel(1e-4, (1e-9, 1.0))
    gp = gaussian_process.GaussianProcessRegressor(
        kernel=kernel,
        normalize_y=True,
        n_restarts_optimizer=0,
        random_state=int(rng.integers(2**31 - 1)),
    )
    with quiet():
        gp.fit(X, y)
    fitted = gp.kernel_
    amplitude = float(fitted.k1.k1.constant_value)
    length_scale = np.atleast_1d(np.asarray(fitted.k1.k2.length_scale, dtype=float))
    if length_scale.size == 1 and X.shape[1] > 1:
        length_scale = np.full(X.shape[1], float(length_scale[0]))
    noise = float(fitted.k2.noise_level)
    return MaternHyperparameters(amplitude, length_scale, noise)


def hyperparameters_to_state(h: MaternHyperparameters) -> dict[str, Any]:
    """``h`` as JSON values (floats round-trip exactly through JSON), for an algorithm's
    state."""
    return {
        "amplitude": float(h.amplitude),
        "length_scale": [float(v) for v in h.length_scale],
        "noise": float(h.noise),
    }


def hyperparameters_from_state(state: Any, dim: int) -> MaternHyperparameters | None:
    """The inverse of :func:`hyperparameters_to_state`; None unless ``state`` holds finite
    positive values with ``dim`` length scales (then the caller fits afresh)."""
    try:
        amplitude, noise = float(state["amplitude"]), float(state["noise"])
        length_scale = np.asarray(state["length_scale"], dtype=float)
    except (KeyError, TypeError, ValueError):
        return None
    values = np.concatenate([[amplitude, noise], length_scale])
    if length_scale.shape != (dim,) or not np.all(np.isfinite(values)) or np.any(values <= 0):
        return None
    return MaternHyperparameters(amplitude, length_scale, noise)


def matern52(r: np.ndarray, amplitude: float) -> np.ndarray:
    """The Matérn 5/2 kernel at scaled distances ``r``."""
    s = _SQRT5 * r
    return amplitude * (1.0 + s + s * s / 3.0) * np.exp(-s)


class Posterior:
    """The Matérn GP's posterior of the normalized objective with fixed hyperparameters.

    Conditioned on ``X`` (for BayesianOptimization: training points, then pending points
    with their lies) and the normalized values ``y``; predicts the latent function (without
    the noise).
    """

    def __init__(
        self, X: np.ndarray, y: np.ndarray, amplitude: float, length_scale: np.ndarray, noise: float
    ) -> None:
        from scipy.linalg import cho_factor, cho_solve

        self.amplitude = amplitude
        self.length_scale = length_scale
        self.Xs = X / length_scale
        self.sq = np.sum(self.Xs**2, axis=1)
        K = matern52(self._distance(self.Xs), amplitude)
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
        k = matern52(self._distance(Z / self.length_scale), self.amplitude)
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
def log_h(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``log(z Phi(z) + phi(z))`` and its derivative ``Phi(z) / h(z)``, stable for z << 0."""
    from scipy.special import erfcx, ndtr

    z = np.asarray(z, dtype=float)
    out = np.empty_like(z)
    dout = np.empty_like(z)
    log_phi = -0.5 * z * z - 0.5 * math.log(2.0 * math.pi)
    high = z > -1.0
    zh = z[high]
    h = np.exp(log_phi[high]) + zh * ndtr(zh)
    out[high] = np.log(h)
    dout[high] = ndtr(zh) / h
    t = -z[~high]  # t >= 1
    mills = math.sqrt(math.pi / 2.0) * erfcx(t / math.sqrt(2.0))  # Phi(-t) / phi(t)
    # 1 - t * mills loses precision for large t: use its asymptotic series there.
    rest = np.where(t < 100.0, 1.0 - t * mills, 1.0 / t**2 - 3.0 / t**4 + 15.0 / t**6)
    out[~high] = log_phi[~high] + np.log(rest)
    dout[~high] = mills / rest
    return out, dout


def acquisition(kind: str, mean: Any, std: Any, best: float) -> Any:
    """The acquisition value (one of :data:`ACQUISITIONS`) for minimization of the
    normalized objective whose best value so far is ``best`` (vectorized)."""
    mean = np.asarray(mean, dtype=float)
    std = np.asarray(std, dtype=float)
    if kind == "LCB":
        return -(mean - KAPPA * std)
    z = (best - XI - mean) / std
    if kind == "MPI":
        from scipy.special import log_ndtr

        return log_ndtr(z)
    return np.log(std) + log_h(z)[0]


def acquisition_gradient(
    kind: str, posterior: Posterior, x: np.ndarray, best: float
) -> tuple[float, np.ndarray]:
    """:func:`acquisition` at one point ``x`` of ``posterior``, and its gradient."""
    mean, std, dmean, dstd = posterior.predict_with_gradient(x)
    if kind == "LCB":
        return -(mean - KAPPA * std), -(dmean - KAPPA * dstd)
    z = (best - XI - mean) / std
    dz = (-dmean - z * dstd) / std
    if kind == "MPI":
        from scipy.special import log_ndtr

        value = float(log_ndtr(z))
        ratio = math.exp(-0.5 * z * z - 0.5 * math.log(2.0 * math.pi) - value)
        return value, ratio * dz
    lh, dlh = log_h(np.array([z]))
    return math.log(std) + float(lh[0]), dstd / std + float(dlh[0]) * dz


# -- PB2's model: a time-varying RBF GP, fitted and predicted by scikit-learn ---------------
def fit_time_varying(X: np.ndarray, y: np.ndarray) -> Any:
    """A fitted ``GaussianProcessRegressor`` for PB2: inputs ``(τ, u)`` (the time first),
    targets ``y`` already standardized.

    The kernel is a constant times an RBF with one length scale per input, plus white
    noise, its hyperparameters fitted by maximum likelihood (one start, ``random_state=0``).
    The time input with its own length scale is what makes the model time-varying. This is a
    different model from :func:`matern_hyperparameters` (kernel, bounds, no normalization),
    kept as PB2 had it. Call under :func:`quiet`.
    """
    gaussian_process, kernels = import_sklearn("PB2")
    kernel = kernels.ConstantKernel(1.0, (1e-3, 1e3)) * kernels.RBF(
        np.ones(X.shape[1]), (1e-2, 1e2)
    ) + kernels.WhiteKernel(1e-2, (1e-6, 1e1))
    return gaussian_process.GaussianProcessRegressor(kernel=kernel, random_state=0).fit(X, y)


def condition(kernel: Any, X: np.ndarray, y: np.ndarray) -> Any:
    """A ``GaussianProcessRegressor`` with the fitted ``kernel`` kept fixed (no optimizer),
    conditioned on ``(X, y)``. Call under :func:`quiet`."""
    gaussian_process, _ = import_sklearn("PB2")
    return gaussian_process.GaussianProcessRegressor(kernel=kernel, optimizer=None).fit(X, y)


# -- the polish ------------------------------------------------------------------------------
def maximize(
    objective: Callable[[np.ndarray], Any],
    start: np.ndarray,
    *,
    maxiter: int,
    gradient: bool = False,
) -> tuple[np.ndarray, float] | None:
    """Maximize ``objective`` over ``[0, 1]^d`` from ``start`` with L-BFGS-B.

    ``objective(u)`` returns the value, or ``(value, gradient)`` when ``gradient`` is True
    (else the gradient is estimated by finite differences). Returns the point found (clipped
    into the box) and its value, or None if SciPy returned a non-finite point.
    """
    from scipy.optimize import minimize

    if gradient:

        def negative(u: np.ndarray) -> Any:
            value, grad = objective(u)
            return -value, -grad

    else:

        def negative(u: np.ndarray) -> Any:
            return -objective(u)

    with np.errstate(all="ignore"):
        result = minimize(
            negative,
            start,
            jac=True if gradient else None,
            method="L-BFGS-B",
            bounds=[(0.0, 1.0)] * len(start),
            options={"maxiter": maxiter},
        )
    if not np.all(np.isfinite(result.x)):
        return None
    return np.clip(result.x, 0.0, 1.0), -float(result.fun)
