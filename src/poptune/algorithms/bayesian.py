"""Bayesian optimization: a Gaussian process over the mixed space and expected improvement.

The search space is encoded into a box ``[0, 1]^D``: a Continuous parameter is one dimension
(its logarithm for log scale), a Discrete parameter one dimension rounded to an integer on
decoding, an Ordinal its index divided by ``n - 1``, a Choice one dimension per value
(one-hot, decoded by the largest coordinate). A Gaussian process (scikit-learn's
``GaussianProcessRegressor``: a constant times a Matérn 5/2 kernel with one length scale per
dimension, plus a white-noise kernel, ``normalize_y=True``) is fitted to the completed trials
and the next configuration maximises an acquisition function (expected improvement by
default), found by L-BFGS-B started from the best of many random candidates. With
``hyperparameters='mcmc'`` (GPyOpt's ``GP_MCMC``) the kernel hyperparameters are sampled
from their posterior instead (:mod:`poptune.algorithms._gp_mcmc`) and the acquisition is
averaged over the samples.

Nothing is kept in the algorithm object but its configuration: the number of suggestions
made and the last fitted kernel hyperparameters (``refit_every > 1``) live in
``history.state`` and the model is rebuilt from the history at each suggestion, so any
process sharing a study can make the next one and a resumed study goes on exactly. The
encoding, the model and the acquisitions are in :mod:`poptune.algorithms._gp` (shared with
PB2); this module is the algorithm: which trials the model sees, the batch's
constant liar, the candidates and their polish, and SHERPA's ``GPyOpt``.
"""

from __future__ import annotations

import heapq
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from poptune._validation import (
    check_bool,
    check_choice,
    check_instance,
    check_int,
    is_int,
    reject,
)
from poptune.algorithms._gp import (
    ACQUISITIONS,
    Posterior,
    Space,
    acquisition,
    acquisition_gradient,
    hyperparameters_from_state,
    hyperparameters_to_state,
    import_sklearn,
    matern_hyperparameters,
    maximize,
    one_blas_thread,
)
from poptune.algorithms._gp_mcmc import (
    N_BURNIN,
    N_SAMPLES,
    SUBSAMPLE_INTERVAL,
    averaged_acquisition,
    averaged_acquisition_gradient,
    mixture_prediction,
    posteriors,
    sample_hyperparameters,
)
from poptune.algorithms.base import Algorithm, Suggestion, SuggestResult
from poptune.exceptions import ConfigurationError, InvalidParameterError
from poptune.history import History
from poptune.parameters import Parameter
from poptune.trial import AlgorithmState, Trial

__all__ = ["BayesianOptimization", "GPyOpt"]

logger = logging.getLogger("poptune.bayes")

_BATCH_STRATEGIES = ("constant_liar",)
_HYPERPARAMETERS = ("fit", "mcmc")
_MCMC_ACQUISITIONS = tuple(f"{kind}_MCMC" for kind in ACQUISITIONS)
#: Below this many training points the kernel hyperparameters are refitted at every
#: suggestion whatever ``refit_every`` says: there each point moves them most, and a fit
#: costs little.
REFIT_ALWAYS_BELOW = 50


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
    O(w³) with w = min(n, window) (plus O(n_candidates · w²) to score the candidates and a
    linear pass over the history), not O(n³) in the number of trials. The maximum-likelihood
    fit of the kernel hyperparameters, tens of O(w³) likelihood evaluations, is most of it;
    it is done every ``refit_every`` suggestions (and at every one while there are fewer
    than 50 training points), the suggestions in between reusing the last fit's
    hyperparameters (one O(w³) Cholesky factorization each).

    Nothing but the configuration is kept in the object: the number of suggestions made and
    the last fit are in ``history.state`` and the model is rebuilt from the history at every
    suggestion,
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
        hyperparameters: ``'fit'`` (default): the kernel's hyperparameters (amplitude, one
            length scale per dimension, noise) are fitted by maximum likelihood. ``'mcmc'``:
            they are sampled from their posterior (marginal likelihood times a weak
            log-normal prior, by an adaptive Metropolis–Hastings chain in log space started
            at the maximum-likelihood fit; see :mod:`poptune.algorithms._gp_mcmc`), each
            sample gets its own posterior, and the acquisition is averaged over the samples
            (EI and PI as probabilities/expectations, then logged; LCB as is). GPyOpt's
            ``model_type='GP_MCMC'``. Costs about ``n_burnin + n_samples *
            subsample_interval`` extra Cholesky factorizations and ``n_samples`` times the
            acquisition's work per suggestion.
        n_samples: hyperparameter samples kept (>= 1; default 10).
        n_burnin: chain steps discarded first, while the proposal adapts (>= 0; default 100).
        subsample_interval: steps between two kept samples (>= 1; default 10).
        refit_every: fit the kernel hyperparameters by maximum likelihood at every
            ``refit_every``-th model-based suggestion (>= 1; default 10) and reuse the last
            fit's (kept in ``history.state``) in between, once there are 50 or more training
            points. 1 refits at every suggestion, as before this option existed: a config
            stored without it (a study saved by an earlier version) is rebuilt with 1, so it
            goes on as it began. With ``'mcmc'`` the chain starts from the kept fit.

    Every suggestion's ``trial.meta['phase']`` says where it came from: ``'initial'``,
    ``'random'`` or ``'model'`` (then ``trial.meta['acquisition']`` is the acquisition
    value: log EI, log PI, or minus the LCB, for the normalized objective; with
    ``hyperparameters='mcmc'`` the log of the averaged EI or PI, or the averaged minus LCB,
    and ``trial.meta['mcmc_acceptance']`` the chain's acceptance rate after burn-in).

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
        hyperparameters: str = "fit",
        n_samples: int = N_SAMPLES,
        n_burnin: int = N_BURNIN,
        subsample_interval: int = SUBSAMPLE_INTERVAL,
        refit_every: int = 10,
    ) -> None:
        owner = type(self).__name__
        if not (isinstance(num_initial_data_points, str) and num_initial_data_points == "infer"):
            if not is_int(num_initial_data_points) or num_initial_data_points < 1:
                reject(
                    owner,
                    "num_initial_data_points",
                    "'infer' or an int >= 1",
                    num_initial_data_points,
                    wrong_type=not isinstance(num_initial_data_points, str)
                    and not is_int(num_initial_data_points),
                )
            num_initial_data_points = int(num_initial_data_points)
        self.num_initial_data_points = num_initial_data_points
        self.max_num_trials = check_int(owner, "max_num_trials", max_num_trials, 1, True)
        self.max_concurrent = check_int(owner, "max_concurrent", max_concurrent, 1)
        self.acquisition_type = check_choice(
            owner,
            "acquisition_type",
            acquisition_type,
            list(ACQUISITIONS),
            note="(the _MCMC variants are GPyOpt's names; here use hyperparameters='mcmc')"
            if acquisition_type in _MCMC_ACQUISITIONS
            else "",
        )
        self._kind: str = acquisition_type  # the acquisition computed (GPyOpt renames it)
        self.hyperparameters = check_choice(
            owner, "hyperparameters", hyperparameters, list(_HYPERPARAMETERS)
        )
        self.n_samples = check_int(owner, "n_samples", n_samples, 1)
        self.n_burnin = check_int(owner, "n_burnin", n_burnin, 0)
        self.subsample_interval = check_int(owner, "subsample_interval", subsample_interval, 1)
        self.refit_every = check_int(owner, "refit_every", refit_every, 1)
        self.batch_strategy = check_choice(
            owner, "batch_strategy", batch_strategy, list(_BATCH_STRATEGIES)
        )
        self.window = check_int(owner, "window", window, 10)
        self.n_candidates = check_int(owner, "n_candidates", n_candidates, 1)
        self.n_restarts = check_int(owner, "n_restarts", n_restarts, 0)
        self.verbosity = check_bool(owner, "verbosity", verbosity)
        self.initial_data_points = _initial_points(owner, initial_data_points)

    # -- configuration ---------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> BayesianOptimization:
        """Rebuild from a stored config; one without ``refit_every`` (written before it
        existed) refits at every suggestion, as it did then."""
        kwargs = {"refit_every": 1, **config}
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise ConfigurationError(
                f"cannot rebuild {cls.__name__} from {kwargs!r}: {exc}"
            ) from None

    def setup(self, parameters: Sequence[Parameter], lower_is_better: bool) -> None:
        super().setup(parameters, lower_is_better)
        import_sklearn(type(self).__name__)
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
        space = Space(history.parameters)
        X, y, _ = _training_data(history, space, self.window)
        if len(y) < 2:
            return None
        fitted = self._fit(history.state, X, y, rng)
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
        kind = self._kind
        meta: dict[str, Any] = {"phase": "model"}
        if self.hyperparameters == "mcmc":
            # Hyperparameters from their posterior given the real observations only.
            samples, rate = self._posterior_samples(X, yn, fitted, rng)
            models = posteriors(X_all, y_all, samples)
            meta["mcmc_acceptance"] = rate

            def score(Z: np.ndarray) -> np.ndarray:
                return averaged_acquisition(kind, models, Z, best)

            def value_and_gradient(x: np.ndarray) -> tuple[float, np.ndarray]:
                return averaged_acquisition_gradient(kind, models, x, best)

        else:
            posterior = Posterior(X_all, y_all, *fitted)

            def score(Z: np.ndarray) -> np.ndarray:
                return acquisition(kind, *posterior.predict(Z), best)

            def value_and_gradient(x: np.ndarray) -> tuple[float, np.ndarray]:
                return acquisition_gradient(kind, posterior, x, best)

        n_local = self.n_candidates // 10
        candidates = [space.sample(rng, self.n_candidates - n_local)]
        if n_local:
            local = incumbent + 0.05 * rng.standard_normal((n_local, space.dim))
            candidates.append(space.snap(local))
        candidates.append(incumbent[None, :])
        C = np.vstack(candidates)
        scores = score(C)
        order = np.argsort(-scores, kind="stable")

        points = [C]
        if self.n_restarts:
            starts: list[np.ndarray] = []
            for i in order:
                if len(starts) == self.n_restarts:
                    break
                if not any(np.array_equal(C[i], s) for s in starts):
                    starts.append(C[i])
            found = []
            for x0 in starts:
                polished = maximize(value_and_gradient, x0, maxiter=200, gradient=True)
                if polished is not None:
                    found.append(polished[0])
            if found:
                points.insert(0, space.snap(np.vstack(found)))
        P = np.vstack(points)
        values = score(P)
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

    def _fit(self, state: dict[str, Any], X: np.ndarray, y: np.ndarray, rng: Any) -> Any:
        """The kernel hyperparameters for this suggestion: the kept fit while it is younger
        than ``refit_every`` suggestions (and there are enough points), else a new fit."""
        if self.refit_every == 1:
            return matern_hyperparameters(X, y, rng)
        n, kept = int(state.get("n", 0)), state.get("gp")
        at = kept.get("at") if isinstance(kept, dict) else None
        if len(y) >= REFIT_ALWAYS_BELOW and is_int(at) and 0 <= n - at < self.refit_every:
            restored = hyperparameters_from_state(kept, X.shape[1])
            if restored is not None:
                return restored
        fitted = matern_hyperparameters(X, y, rng)
        state["gp"] = {"at": n, **hyperparameters_to_state(fitted)}
        return fitted

    # -- SHERPA's GPyOpt.get_best_pred ------------------------------------------------------
    def _posterior_samples(
        self, X: np.ndarray, yn: np.ndarray, fitted: Any, rng: np.random.Generator
    ) -> tuple[Any, float]:
        """``hyperparameters='mcmc'``: kernel hyperparameters drawn from their posterior given
        ``(X, yn)``, started at the fit, with this algorithm's chain settings; and the chain's
        acceptance rate."""
        return sample_hyperparameters(
            X, yn, fitted, rng, n_samples=self.n_samples, n_burnin=self.n_burnin,
            subsample_interval=self.subsample_interval,
        )  # fmt: skip

    def get_best_pred(self, history: Any) -> dict[str, Any]:
        """The completed configuration with the best *predicted* objective.

        A Gaussian process is fitted, as for a suggestion, to the completed trials (at most
        ``window`` of them); among those trials' configurations the one whose posterior mean
        is best (lowest, or highest when ``lower_is_better`` is False) is returned. With a
        noisy objective this is a more reliable pick than the best observed value. With
        ``hyperparameters='mcmc'`` (GPyOpt's ``GP_MCMC``) the prediction is that of the equal
        mixture of the posterior samples' models (a chain seeded with 0, so it is
        reproducible).

        Args:
            history: a :class:`~poptune.history.History` or a :class:`~poptune.Study`.

        Returns:
            ``{'parameters': {...}, 'predicted': mean objective, 'std': posterior standard
            deviation}`` in the objective's units; ``{}`` when no trial has completed.
        """
        if not isinstance(history, History):
            given, history = history, getattr(history, "history", None)
            if not isinstance(history, History):
                owner = f"{type(self).__name__}.get_best_pred"
                reject(owner, "history", "a History or a Study", given, wrong_type=True)
        space = Space(history.parameters)
        X, y, configs = _training_data(history, space, self.window)
        sign = 1.0 if history.lower_is_better else -1.0
        if len(y) == 0:
            return {}
        if len(y) == 1:
            return {"parameters": configs[0], "predicted": sign * float(y[0]), "std": 0.0}
        with one_blas_thread():
            rng = np.random.default_rng(0)
            fitted = matern_hyperparameters(X, y, rng)
            y_mean = float(np.mean(y))
            y_std = float(np.std(y)) or 1.0
            yn = (y - y_mean) / y_std
            if self.hyperparameters == "mcmc":
                samples, _ = self._posterior_samples(X, yn, fitted, rng)
                mean, std = mixture_prediction(posteriors(X, yn, samples), X)
            else:
                mean, std = Posterior(X, yn, *fitted).predict(X)
        i = int(np.argmin(mean))
        return {
            "parameters": configs[i],
            "predicted": sign * (y_mean + y_std * float(mean[i])),
            "std": y_std * float(std[i]),
        }


def _training_data(
    history: History, space: Space, window: int
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
        reject(owner, "initial_data_points", "a list of dicts", points, wrong_type=True)
    out = []
    for i, point in enumerate(points):
        check_instance(owner, f"initial_data_points[{i}]", point, Mapping, "a dict")
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
        model_type: ``'GP'`` (the kernel hyperparameters fitted by maximum likelihood) or
            ``'GP_MCMC'`` (sampled from their posterior: BayesianOptimization's
            ``hyperparameters='mcmc'``).
        num_initial_data_points: ``'infer'`` or an int, as for BayesianOptimization.
        initial_data_points: configurations (a list of dicts or a DataFrame) suggested first.
        acquisition_type: with ``model_type='GP'``: ``'EI'``, ``'MPI'`` or ``'LCB'``; with
            ``'GP_MCMC'``: ``'EI_MCMC'``, ``'MPI_MCMC'`` or ``'LCB_MCMC'``, the same
            acquisition averaged over the hyperparameter samples (as GPyOpt, each kind of
            model takes only its own acquisitions).
        max_concurrent: at most this many trials unfinished at once (WAIT beyond).
        verbosity: log each model-based suggestion at INFO level.
        max_num_trials: DONE after this many suggestions.
        batch_strategy, window, n_candidates, n_restarts, refit_every: keyword-only, as
            for :class:`BayesianOptimization`.
        n_samples, n_burnin, subsample_interval: keyword-only, GPyOpt's ``GP_MCMC``
            arguments with GPyOpt's defaults (10, 100, 10) and meaning: the chain runs
            ``n_burnin + n_samples * subsample_interval`` steps and keeps every
            ``subsample_interval``-th after the burn-in. Used with ``'GP_MCMC'`` only.
            (GPyOpt's HMC ``step_size`` and ``leapfrog_steps`` have no counterpart: the
            chain here is an adaptive Metropolis–Hastings one.)

    Raises:
        ConfigurationError: ``model_type`` other than ``'GP'`` or ``'GP_MCMC'``, an
            acquisition of the other kind of model (naming both values), or any argument
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
        n_samples: int = N_SAMPLES,
        n_burnin: int = N_BURNIN,
        subsample_interval: int = SUBSAMPLE_INTERVAL,
        refit_every: int = 10,
    ) -> None:
        self.model_type = check_choice("GPyOpt", "model_type", model_type, ["GP", "GP_MCMC"])
        mcmc = model_type == "GP_MCMC"
        own = _MCMC_ACQUISITIONS if mcmc else ACQUISITIONS
        if acquisition_type not in own:
            other = ACQUISITIONS if mcmc else _MCMC_ACQUISITIONS
            if isinstance(acquisition_type, str) and acquisition_type in other:
                raise ConfigurationError(
                    f"GPyOpt: acquisition_type {acquisition_type!r} does not go with "
                    f"model_type {model_type!r}; with {model_type!r} use one of "
                    + ", ".join(repr(a) for a in own)
                )
            check_choice("GPyOpt", "acquisition_type", acquisition_type, list(own))
        super().__init__(
            num_initial_data_points=num_initial_data_points,
            max_num_trials=max_num_trials,
            max_concurrent=max_concurrent,
            acquisition_type=acquisition_type.removesuffix("_MCMC"),
            batch_strategy=batch_strategy,
            window=window,
            n_candidates=n_candidates,
            n_restarts=n_restarts,
            verbosity=verbosity,
            initial_data_points=initial_data_points,
            hyperparameters="mcmc" if mcmc else "fit",
            n_samples=n_samples,
            n_burnin=n_burnin,
            subsample_interval=subsample_interval,
            refit_every=refit_every,
        )
        self.acquisition_type = acquisition_type  # SHERPA's name, for the config
