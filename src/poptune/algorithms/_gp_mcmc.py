"""Posterior samples of the Matérn GP's kernel hyperparameters, and acquisitions averaged
over them (BayesianOptimization's ``hyperparameters='mcmc'``, GPyOpt's ``GP_MCMC``).

Like :mod:`poptune.algorithms._gp`, this holds no state: each function takes its data.

* **The target.** The hyperparameters ``θ = (log amplitude, log length scale per dimension,
  log noise)`` of :class:`~poptune.algorithms._gp.Posterior`'s kernel, for the objective
  normalized to mean 0 and standard deviation 1 over the box ``[0, 1]^D``. Their density is
  the GP's marginal likelihood times a weak prior, independent normals in log space:

  ====================  =====================  ==============  ===================
  hyperparameter        prior median           log-space sd    support (as the fit)
  ====================  =====================  ==============  ===================
  amplitude             1 (the data's var)     1.5             [1e-3, 1e3]
  each length scale     0.5 (half the box)     1.5             [1e-3, 1e2]
  noise variance        1e-4                   3               [1e-9, 1]
  ====================  =====================  ==============  ===================

  (about ±3 decades for the noise: it lets a deterministic objective have next to no noise
  and a noisy one any level up to the data's variance; the support is the maximum-likelihood
  fit's bounds, outside it the density is 0).
* **The sampler** (:func:`sample_hyperparameters`): a random-walk Metropolis–Hastings chain
  in log space, started from the maximum-likelihood fit. During the ``n_burnin`` burn-in
  steps the (isotropic) proposal scale adapts towards an acceptance rate of 0.25; it is then
  frozen, and of the following ``n_samples * subsample_interval`` steps every
  ``subsample_interval``-th state is kept — GPyOpt's ``GP_MCMC`` arguments with the same
  meaning (GPyOpt used Hamiltonian Monte Carlo; this is a different, cheaper chain). Each step
  costs one Cholesky factorization of the ``n x n`` kernel matrix.
* **The average** (:func:`averaged_acquisition`, :func:`averaged_acquisition_gradient`):
  each sample's own :class:`~poptune.algorithms._gp.Posterior` (its own Cholesky), and the
  acquisition averaged over them — for EI and PI the mean of EI (of PI) itself, returned on
  the log scale as the plain acquisitions are (``log mean_s exp(a_s)``); for LCB the mean of
  ``−(mean − 2 std)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from poptune.algorithms._gp import (
    MaternHyperparameters,
    Posterior,
    acquisition,
    acquisition_gradient,
    matern52,
)

#: GPyOpt's defaults for its GP_MCMC model, kept as ours.
N_SAMPLES, N_BURNIN, SUBSAMPLE_INTERVAL = 10, 100, 10

#: (median, sd in log space, low, high) of each prior (see the module docstring).
PRIOR_AMPLITUDE = (1.0, 1.5, 1e-3, 1e3)
PRIOR_LENGTH_SCALE = (0.5, 1.5, 1e-3, 1e2)
PRIOR_NOISE = (1e-4, 3.0, 1e-9, 1.0)
TARGET_ACCEPTANCE = 0.25
_INITIAL_STEP = 0.3  # proposal sd in log space at the first burn-in step
_JITTER = 1e-8  # as the posterior's


class _Target:
    """The log posterior density of θ for one data set."""

    def __init__(self, X: np.ndarray, y: np.ndarray) -> None:
        self.X, self.y = X, y
        self.n, self.dim = X.shape
        priors = [PRIOR_AMPLITUDE] + [PRIOR_LENGTH_SCALE] * self.dim + [PRIOR_NOISE]
        self.mu = np.array([math.log(p[0]) for p in priors])
        self.sd = np.array([p[1] for p in priors])
        self.low = np.array([math.log(p[2]) for p in priors])
        self.high = np.array([math.log(p[3]) for p in priors])

    def __call__(self, theta: np.ndarray) -> float:
        if np.any(theta < self.low) or np.any(theta > self.high):
            return -math.inf
        log_prior = -0.5 * float(np.sum(((theta - self.mu) / self.sd) ** 2))
        return log_prior + self.log_likelihood(theta)

    def log_likelihood(self, theta: np.ndarray) -> float:
        """The GP's log marginal likelihood of ``y`` (up to the constant ``n/2 log 2π``)."""
        amplitude, noise = math.exp(theta[0]), math.exp(theta[-1])
        Xs = self.X * np.exp(-theta[1:-1])
        sq = np.sum(Xs * Xs, axis=1)
        d2 = sq[:, None] + sq[None, :] - 2.0 * Xs @ Xs.T  # as Posterior computes distances
        K = matern52(np.sqrt(np.maximum(d2, 0.0)), amplitude)
        K[np.diag_indices_from(K)] += noise + _JITTER
        try:
            L = np.linalg.cholesky(K)
        except np.linalg.LinAlgError:
            return -math.inf
        from scipy.linalg import solve_triangular

        a = solve_triangular(L, self.y, lower=True)
        return -0.5 * float(a @ a) - float(np.sum(np.log(np.diag(L))))


def to_theta(h: MaternHyperparameters) -> np.ndarray:
    """Hyperparameters to the chain's coordinates (logarithms)."""
    return np.log(np.concatenate([[h.amplitude], h.length_scale, [h.noise]]))


def from_theta(theta: np.ndarray) -> MaternHyperparameters:
    """The chain's coordinates back to hyperparameters."""
    values = np.exp(theta)
    return MaternHyperparameters(float(values[0]), values[1:-1].copy(), float(values[-1]))


def sample_hyperparameters(
    X: np.ndarray,
    y: np.ndarray,
    start: MaternHyperparameters,
    rng: np.random.Generator,
    *,
    n_samples: int = N_SAMPLES,
    n_burnin: int = N_BURNIN,
    subsample_interval: int = SUBSAMPLE_INTERVAL,
) -> tuple[list[MaternHyperparameters], float]:
    """``n_samples`` draws of the kernel hyperparameters from their posterior given the
    normalized data ``(X, y)``, and the chain's acceptance rate after burn-in.

    The chain starts at ``start`` (the maximum-likelihood fit, moved inside the prior's
    support if needed), runs ``n_burnin`` adaptive steps, then ``n_samples *
    subsample_interval`` steps with the proposal frozen, keeping every
    ``subsample_interval``-th. Deterministic given ``rng`` (it draws from it).
    """
    target = _Target(X, y)
    theta = np.clip(to_theta(start), target.low, target.high)
    log_p = target(theta)
    log_step = math.log(_INITIAL_STEP)
    dim = len(theta)
    samples: list[MaternHyperparameters] = []
    accepted = 0
    total = n_burnin + n_samples * subsample_interval
    for step in range(total):
        proposal = theta + math.exp(log_step) * rng.standard_normal(dim)
        log_q = target(proposal)
        log_u = math.log(rng.random() or 1e-300)
        accept = math.isfinite(log_q) and (not math.isfinite(log_p) or log_u < log_q - log_p)
        if accept:
            theta, log_p = proposal, log_q
        if step < n_burnin:  # Robbins-Monro: towards the target acceptance rate
            log_step += (float(accept) - TARGET_ACCEPTANCE) / math.sqrt(step + 1.0)
            log_step = min(max(log_step, math.log(1e-3)), math.log(3.0))
        else:
            accepted += accept
            if (step - n_burnin + 1) % subsample_interval == 0:
                samples.append(from_theta(theta))
    rate = accepted / max(1, n_samples * subsample_interval)
    return samples, rate


def posteriors(
    X: np.ndarray, y: np.ndarray, samples: Sequence[MaternHyperparameters]
) -> list[Posterior]:
    """One :class:`Posterior` (its own Cholesky) per hyperparameter sample."""
    return [Posterior(X, y, h.amplitude, h.length_scale, h.noise) for h in samples]


def _average(kind: str, values: np.ndarray) -> np.ndarray:
    """The mean over axis 0 of per-sample acquisitions: of the values themselves for LCB,
    of ``exp(values)`` (EI, PI) on the log scale otherwise."""
    if kind == "LCB":
        return values.mean(axis=0)
    from scipy.special import logsumexp

    with np.errstate(divide="ignore", invalid="ignore"):
        return logsumexp(values, axis=0) - math.log(len(values))


def averaged_acquisition(
    kind: str, models: Sequence[Posterior], Z: np.ndarray, best: float
) -> np.ndarray:
    """The acquisition (``'EI'``, ``'MPI'``, ``'LCB'``) at the rows of ``Z`` averaged over
    ``models`` (see the module docstring for the scale)."""
    values = np.stack([acquisition(kind, *m.predict(Z), best) for m in models])
    return _average(kind, values)


def averaged_acquisition_gradient(
    kind: str, models: Sequence[Posterior], x: np.ndarray, best: float
) -> tuple[float, np.ndarray]:
    """:func:`averaged_acquisition` at one point ``x``, and its gradient."""
    pairs = [acquisition_gradient(kind, m, x, best) for m in models]
    values = np.array([v for v, _ in pairs], dtype=float)
    grads = np.stack([g for _, g in pairs])
    value = float(_average(kind, values))
    if kind == "LCB":
        return value, grads.mean(axis=0)
    if not math.isfinite(value):
        return value, np.zeros_like(x)
    weights = np.exp(values - value) / len(values)  # softmax of the per-sample log values
    return value, weights @ grads


def mixture_prediction(models: Sequence[Posterior], Z: np.ndarray) -> tuple[np.ndarray, ...]:
    """Mean and standard deviation of the equal mixture of ``models`` at the rows of ``Z``."""
    preds = [m.predict(Z) for m in models]
    means = np.stack([m for m, _ in preds])
    second = np.stack([s * s + m * m for m, s in preds])
    mean = means.mean(axis=0)
    return mean, np.sqrt(np.maximum(second.mean(axis=0) - mean * mean, 1e-18))
