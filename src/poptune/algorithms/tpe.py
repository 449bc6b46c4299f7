"""The Tree-structured Parzen Estimator (Bergstra, Bardenet, Bengio and Kégl, NeurIPS 2011).

TPE models p(x | y) instead of p(y | x): the completed trials are split by a quantile of
their objective into a *good* group (the best ``gamma`` fraction) and a *bad* group, one
density is fitted per group — ``l(x)`` to the good configurations, ``g(x)`` to the bad ones —
and the next configuration is the candidate drawn from ``l`` with the largest ``l(x) / g(x)``
(which maximises expected improvement under the model).

Written from the paper's description. Each density is a Parzen estimator. Multivariate (the
default): a mixture with one component per configuration, a product of one kernel per
parameter (a Gaussian truncated to the range with the normal reference bandwidth; for a
Choice or Ordinal most of the mass on the configuration's value), plus a wide *prior*
component. Independent (the paper's): one mixture per parameter — for a numeric parameter
Gaussians truncated to the range (in log space for log scale), one per observed value with a
bandwidth equal to the larger of the distances to its neighbours (clipped), plus the prior;
for a Choice or Ordinal a categorical distribution whose counts start at
``prior_weight / n_values`` per value.

Nothing is kept in the algorithm object between suggestions: the number of suggestions made
is in ``history.state`` and the densities are refitted from the history each time, so any
process sharing a study can make the next suggestion and a resumed study goes on exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from poptune._validation import check_bool, check_fraction, check_int, check_number
from poptune.algorithms.base import Algorithm, Suggestion, SuggestResult
from poptune.exceptions import ConfigurationError
from poptune.history import History
from poptune.parameters import Continuous, Discrete, Parameter
from poptune.trial import AlgorithmState

__all__ = ["TPE"]

_FLOOR = 1e-300  # densities are clipped here before the logarithm


class TPE(Algorithm):
    """Tree-structured Parzen Estimator (Bergstra et al. 2011), Optuna's default sampler.

    The first ``n_startup_trials`` suggestions are random (the same draws as
    :class:`RandomSearch`). After that, the completed trials — each one's best objective,
    respecting ``lower_is_better``, at most the ``window`` that finished last — are split:
    the ``min(ceil(gamma * n), max_good)`` best are *good*, the others *bad*. A density ``l``
    is fitted to the good configurations and ``g`` to the bad ones; ``n_ei_candidates``
    configurations are drawn from ``l`` and the one with the largest ``log l(x) - log g(x)``
    is suggested.

    Densities (``multivariate=True``, the default): one mixture component per configuration,
    a product of one kernel per parameter, plus a prior component of weight
    ``prior_weight``; a candidate draws every parameter from one component, so values that
    were good together are proposed together. Numeric kernels are Gaussians truncated to the
    range (log space for log scale; a Discrete over ``[low - 0.5, high + 0.5]``, its draws
    rounded and its density the mass of the value's bin) with the normal reference bandwidth
    ``1.06 · std · m^(-1/(d + 4))`` (m configurations, d parameters; clipped to
    ``[width / min(100, m + 1), width]``), the prior's centred with the range's width; a
    Choice's or an Ordinal's puts ``(1 + prior_weight / k) / (1 + prior_weight)`` on its own
    value, the prior's is uniform. ``multivariate=False`` is the paper's independent TPE: one
    mixture per parameter, its components' bandwidths from the distances to their
    neighbours, Choice and Ordinal as observed frequencies with ``prior_weight`` spread over
    the values, the log ratios summed over the parameters.

    Parallel workers (*constant liar*): trials still running count as bad observations, so
    workers asking at once are steered away from each other's points.

    Cost: at most ``window`` completed trials are used, so a suggestion costs
    O(n_ei_candidates · window) per parameter (vectorised) plus a pass over the history.

    Args:
        n_startup_trials: random suggestions before the model is used (>= 1). The model also
            needs two completed trials; until then suggestions stay random.
        n_ei_candidates: candidates drawn from ``l`` per suggestion (>= 1).
        gamma: the fraction of completed trials that are good, in (0, 1] (the paper's 0.15).
        max_good: the most good trials (>= 1), so ``l`` stays focused in long studies.
        prior_weight: weight of the prior component in both densities (> 0).
        window: the most completed trials (the most recently finished) used (>= 2).
        max_num_trials: DONE after this many suggestions; None (default) never ends.
        multivariate: the joint density (default True) or one per parameter (False). A TPE
            stored without this argument (before it existed) is rebuilt with False.

    Every suggestion's ``trial.meta['phase']`` is ``'random'`` or ``'model'`` (then
    ``trial.meta['log_ratio']`` is the chosen ``log l(x) - log g(x)``).

    Raises:
        ConfigurationError: an argument out of range (ArgumentTypeError, a TypeError, for a
            wrong type).
    """

    def __init__(
        self,
        n_startup_trials: int = 10,
        n_ei_candidates: int = 24,
        gamma: float = 0.15,
        max_good: int = 25,
        prior_weight: float = 1.0,
        window: int = 1000,
        max_num_trials: int | None = None,
        multivariate: bool = True,
    ) -> None:
        owner = "TPE"
        self.n_startup_trials = check_int(owner, "n_startup_trials", n_startup_trials, 1)
        self.n_ei_candidates = check_int(owner, "n_ei_candidates", n_ei_candidates, 1)
        self.gamma = check_fraction(owner, "gamma", gamma, 0.0, 1.0, low_open=True)
        self.max_good = check_int(owner, "max_good", max_good, 1)
        self.prior_weight = check_number(owner, "prior_weight", prior_weight, 0.0, min_open=True)
        self.window = check_int(owner, "window", window, 2)
        self.max_num_trials = check_int(owner, "max_num_trials", max_num_trials, 1, True)
        self.multivariate = check_bool(owner, "multivariate", multivariate)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> TPE:
        """Rebuild a stored TPE; one stored before ``multivariate`` existed has none and goes
        on with the independent TPE it ran with (``multivariate=False``)."""
        try:
            return cls(**{"multivariate": False, **config})
        except TypeError as exc:
            raise ConfigurationError(f"cannot rebuild TPE from {config!r}: {exc}") from None

    def n_good(self, n: int) -> int:
        """How many of ``n`` completed trials are good: ``min(ceil(gamma * n), max_good)``."""
        return max(1, min(math.ceil(self.gamma * n - 1e-9), self.max_good))

    def suggest(self, history: History, rng: np.random.Generator) -> SuggestResult:
        state = history.state
        n = int(state.get("n", 0))
        if self.max_num_trials is not None and n >= self.max_num_trials:
            return AlgorithmState.DONE
        parameters = history.parameters
        result: tuple[dict[str, Any], dict[str, Any]] | None = None
        if n >= self.n_startup_trials:
            result = self._model_suggestion(history, rng)
        if result is None:
            result = ({p.name: p.sample(rng) for p in parameters}, {"phase": "random"})
        state["n"] = n + 1
        return Suggestion(*result)

    def _model_suggestion(
        self, history: History, rng: np.random.Generator
    ) -> tuple[dict[str, Any], dict[str, Any]] | None:
        parameters = history.parameters
        configs, y = training_data(history, self.window)
        if len(y) < 2:
            return None
        order = np.argsort(y, kind="stable")
        n_good = self.n_good(len(y))
        good = [configs[i] for i in order[:n_good]]
        bad = [configs[i] for i in order[n_good:]]
        bad += _running(history)  # the constant liar: running trials count as bad
        if self.multivariate:
            params, score = _joint_candidates(
                parameters, good, bad, self.n_ei_candidates, self.prior_weight, rng
            )
            best = int(np.argmax(score))
            chosen = {p.name: params[j][best] for j, p in enumerate(parameters)}
            return chosen, {"phase": "model", "log_ratio": float(score[best])}
        score = np.zeros(self.n_ei_candidates)
        columns: list[list[Any]] = []
        for p in parameters:
            values, log_ratio = _parameter_candidates(
                p,
                [c[p.name] for c in good],
                [c[p.name] for c in bad],
                self.n_ei_candidates,
                self.prior_weight,
                rng,
            )
            columns.append(values)
            score += log_ratio
        best = int(np.argmax(score))
        params = {p.name: columns[j][best] for j, p in enumerate(parameters)}
        return params, {"phase": "model", "log_ratio": float(score[best])}


def training_data(history: History, window: int) -> tuple[list[dict[str, Any]], np.ndarray]:
    """The configurations and objectives to minimise of the completed trials TPE fits: at
    most the ``window`` that finished last, in the order they finished."""
    lower = history.lower_is_better
    parameters = history.parameters
    rows = []
    for trial in history.completed:
        obs = trial.best_observation(lower)
        if obs is None:
            continue
        config = history.hyperparameters(trial)
        if not _valid(parameters, config):
            continue
        rows.append(
            (trial.finished_seq, trial.id, config, obs.objective if lower else -obs.objective)
        )
    rows.sort(key=lambda r: (r[0], r[1]))
    rows = rows[-window:]
    return [r[2] for r in rows], np.array([r[3] for r in rows], dtype=float)


def _running(history: History) -> list[dict[str, Any]]:
    """The configurations of the trials still running (the constant liar's bad points)."""
    configs = (history.hyperparameters(t) for t in history.unfinished)
    return [c for c in configs if _valid(history.parameters, c)]


def _valid(parameters: Sequence[Parameter], config: dict[str, Any]) -> bool:
    return all(p.name in config and p.contains(config[p.name]) for p in parameters)


# -- the Parzen estimators -------------------------------------------------------------------
def _parameter_candidates(
    p: Parameter,
    good: list[Any],
    bad: list[Any],
    n: int,
    prior_weight: float,
    rng: np.random.Generator,
) -> tuple[list[Any], np.ndarray]:
    """``n`` values drawn from ``l`` (fitted to ``good``) and their ``log l - log g``."""
    if isinstance(p, (Continuous, Discrete)):
        return _numeric_candidates(p, good, bad, n, prior_weight, rng)
    k = len(p.range)
    l_prob = _categorical(p, good, prior_weight)
    g_prob = _categorical(p, bad, prior_weight)
    index = rng.choice(k, size=n, p=l_prob)
    ratio = np.log(l_prob[index]) - np.log(g_prob[index])
    return [p.range[int(i)] for i in index], ratio


def _categorical(p: Parameter, values: list[Any], prior_weight: float) -> np.ndarray:
    k = len(p.range)
    counts = np.full(k, prior_weight / k)
    for v in values:
        counts[p.index(v)] += 1.0  # type: ignore[attr-defined]
    return counts / counts.sum()


class _Mixture:
    """A mixture of Gaussians truncated to ``[low, high]`` (the internal domain)."""

    def __init__(self, points: np.ndarray, low: float, high: float, prior_weight: float):
        width = high - low
        mu = np.append(points, 0.5 * (low + high))
        order = np.argsort(points, kind="stable")
        sorted_points = points[order]
        sigma_sorted = np.empty(len(points))
        if len(points):
            edges = np.concatenate([[low], sorted_points, [high]])
            left = sorted_points - edges[:-2]
            right = edges[2:] - sorted_points
            sigma_sorted = np.maximum(left, right)
        sigma = np.empty(len(points))
        sigma[order] = sigma_sorted
        min_sigma = width / min(100.0, 1.0 + len(points))
        sigma = np.clip(sigma, min_sigma, width)
        self.mu = mu
        self.sigma = np.append(sigma, width)
        weights = np.append(np.ones(len(points)), prior_weight)
        self.weights = weights / weights.sum()
        self.low, self.high = low, high
        self.mass = _phi((high - self.mu) / self.sigma) - _phi((low - self.mu) / self.sigma)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        component = rng.choice(len(self.mu), size=n, p=self.weights)
        return _truncated(self.mu[component], self.sigma[component], self.low, self.high, rng)

    def log_pdf(self, x: np.ndarray) -> np.ndarray:
        z = (x[:, None] - self.mu[None, :]) / self.sigma[None, :]
        dens = np.exp(-0.5 * z * z) / (math.sqrt(2 * math.pi) * self.sigma * self.mass)
        return np.log(np.maximum(dens @ self.weights, _FLOOR))

    def log_mass(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        upper = _phi((b[:, None] - self.mu[None, :]) / self.sigma[None, :])
        lower = _phi((a[:, None] - self.mu[None, :]) / self.sigma[None, :])
        mass = ((upper - lower) / self.mass) @ self.weights
        return np.log(np.maximum(mass, 1e-12))  # the CDF's error is ~1e-7


def _numeric_candidates(
    p: Continuous | Discrete,
    good: list[Any],
    bad: list[Any],
    n: int,
    prior_weight: float,
    rng: np.random.Generator,
) -> tuple[list[Any], np.ndarray]:
    log, discrete = p.scale == "log", isinstance(p, Discrete)
    low, high = _domain(p)

    def encode(values: list[Any]) -> np.ndarray:
        arr = np.asarray(values, dtype=float)
        return np.log(arr) if log else arr

    l_model = _Mixture(encode(good), low, high, prior_weight)
    g_model = _Mixture(encode(bad), low, high, prior_weight)
    x = l_model.sample(n, rng)
    if not discrete:
        values = np.exp(x) if log else x
        values = np.clip(values, p.low, p.high)
        xs = np.log(values) if log else values
        return [float(v) for v in values], l_model.log_pdf(xs) - g_model.log_pdf(xs)
    ints = np.clip(np.rint(np.exp(x) if log else x), p.low, p.high).astype(int)
    a, b = ints - 0.5, ints + 0.5
    if log:
        a = np.log(np.maximum(a, math.exp(low)))
        b = np.log(b)
    ratio = l_model.log_mass(a, b) - g_model.log_mass(a, b)
    return [int(v) for v in ints], ratio


def _domain(p: Continuous | Discrete) -> tuple[float, float]:
    """A numeric parameter's internal domain: its range (a Discrete's widened by half a bin
    each side), in log space for log scale."""
    half = 0.5 if isinstance(p, Discrete) else 0.0
    low, high = p.low - half, p.high + half
    if p.scale == "log":
        return (math.log(low) if low > 0 else math.log(p.low)), math.log(high)
    return low, high


def _truncated(
    mu: np.ndarray, sigma: np.ndarray, low: float, high: float, rng: np.random.Generator
) -> np.ndarray:
    """One draw of N(mu, sigma) per entry, truncated to ``[low, high]`` (rejection, then a
    clip: each component keeps at least a third of its mass there)."""
    out = mu + sigma * rng.standard_normal(len(mu))
    for _ in range(100):
        outside = (out < low) | (out > high)
        if not outside.any():
            break
        out[outside] = mu[outside] + sigma[outside] * rng.standard_normal(int(outside.sum()))
    return np.clip(out, low, high)


def _phi(z: np.ndarray) -> np.ndarray:
    """The standard normal CDF (vectorised; erf by Abramowitz and Stegun 7.1.26, error below
    1.5e-7, plenty for the ratio of two densities)."""
    x = np.abs(z) / math.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * x)
    poly = t * (
        0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
    )
    erf = 1.0 - poly * np.exp(-x * x)
    return 0.5 * (1.0 + np.sign(z) * erf)


# -- multivariate TPE ------------------------------------------------------------------------
def _joint_candidates(
    parameters: Sequence[Parameter],
    good: list[dict[str, Any]],
    bad: list[dict[str, Any]],
    n: int,
    prior_weight: float,
    rng: np.random.Generator,
) -> tuple[list[list[Any]], np.ndarray]:
    """Multivariate TPE: ``l`` and ``g`` are mixtures of product kernels, one component per
    configuration (every parameter at once) plus a prior component; ``n`` configurations
    drawn from ``l`` (one component each, then every parameter from that component) and
    their ``log l - log g``, as columns per parameter."""
    dims = len(parameters)
    l_weights = _component_weights(len(good), prior_weight)
    g_weights = _component_weights(len(bad), prior_weight)
    component = rng.choice(len(l_weights), size=n, p=l_weights)
    log_l = np.tile(np.log(l_weights), (n, 1))
    log_g = np.tile(np.log(g_weights), (n, 1))
    columns = []
    for p in parameters:
        l_kernels = _Kernels(p, [c[p.name] for c in good], dims, prior_weight)
        g_kernels = _Kernels(p, [c[p.name] for c in bad], dims, prior_weight)
        values, x = l_kernels.sample(component, rng)
        columns.append(values)
        log_l += l_kernels.log_density(x)
        log_g += g_kernels.log_density(x)
    return columns, _logsumexp(log_l) - _logsumexp(log_g)


def _component_weights(m: int, prior_weight: float) -> np.ndarray:
    weights = np.append(np.ones(m), prior_weight)
    return weights / weights.sum()


def _logsumexp(a: np.ndarray) -> np.ndarray:
    top = a.max(axis=1)
    return top + np.log(np.exp(a - top[:, None]).sum(axis=1))


class _Kernels:
    """One parameter's kernels in a multivariate TPE density: one per configuration and,
    last, the prior's. A numeric parameter's are Gaussians truncated to the internal domain
    (log space for log scale; a Discrete's over its bins), centred on the values, with the
    normal reference bandwidth for ``dims`` dimensions (``1.06 · std · m^(-1/(dims + 4))``,
    clipped to ``[width / min(100, m + 1), width]``); the prior's is centred on the domain
    with its width. A Choice's or an Ordinal's put ``(1 + prior_weight / k) / (1 +
    prior_weight)`` on their value and spread the rest; the prior's is uniform."""

    def __init__(self, p: Parameter, values: list[Any], dims: int, prior_weight: float):
        self.p, m = p, len(values)
        self.numeric = isinstance(p, (Continuous, Discrete))
        if not self.numeric:
            k = len(p.range)
            own = np.zeros((m + 1, k))
            own[np.arange(m), [p.index(v) for v in values]] = 1.0  # type: ignore[attr-defined]
            self.prob = (own + prior_weight / k) / (1.0 + prior_weight)
            self.prob[m] = 1.0 / k
            return
        self.log_scale, self.discrete = p.scale == "log", isinstance(p, Discrete)
        low, high = _domain(p)  # type: ignore[arg-type]
        self.low, self.high, width = low, high, high - low
        points = self.encode(values)
        spread = float(np.std(points)) if m > 1 else width
        sigma = 1.06 * spread * max(m, 1) ** (-1.0 / (dims + 4))
        sigma = min(max(sigma, width / min(100.0, m + 1.0)), width)
        self.mu = np.append(points, 0.5 * (low + high))
        self.sigma = np.append(np.full(m, sigma), width)
        mass = _phi((high - self.mu) / self.sigma) - _phi((low - self.mu) / self.sigma)
        self.log_mass = np.log(np.maximum(mass, 1e-12))

    def encode(self, values: Any) -> np.ndarray:
        arr = np.asarray(values, dtype=float)
        return np.log(arr) if self.log_scale else arr

    def sample(self, component: np.ndarray, rng: np.random.Generator) -> tuple[list[Any], Any]:
        """A value from each candidate's component: (the values, what :meth:`log_density`
        takes)."""
        p = self.p
        if not self.numeric:
            u = rng.random(len(component))[:, None]
            index = (u > np.cumsum(self.prob[component], axis=1)).sum(axis=1)
            index = np.minimum(index, len(p.range) - 1)
            return [p.range[int(i)] for i in index], index
        x = _truncated(self.mu[component], self.sigma[component], self.low, self.high, rng)
        if not self.discrete:
            values = np.clip(np.exp(x) if self.log_scale else x, p.low, p.high)
            return [float(v) for v in values], self.encode(values)
        ints = np.clip(np.rint(np.exp(x) if self.log_scale else x), p.low, p.high).astype(int)
        return [int(v) for v in ints], ints

    def log_density(self, x: Any) -> np.ndarray:
        """``log`` of every kernel at every candidate: an (n, m + 1) array."""
        if not self.numeric:
            return np.log(self.prob[:, x].T)
        if not self.discrete:
            z = (x[:, None] - self.mu[None, :]) / self.sigma[None, :]
            return -0.5 * z * z - np.log(math.sqrt(2 * math.pi) * self.sigma) - self.log_mass
        a, b = x - 0.5, x + 0.5
        if self.log_scale:
            a, b = np.log(np.maximum(a, math.exp(self.low))), np.log(b)
        upper = _phi((b[:, None] - self.mu[None, :]) / self.sigma[None, :])
        lower = _phi((a[:, None] - self.mu[None, :]) / self.sigma[None, :])
        return np.log(np.maximum(upper - lower, 1e-12)) - self.log_mass
