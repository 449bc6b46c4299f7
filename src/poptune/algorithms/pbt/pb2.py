"""PB2: Population Based Bandits (Parker-Holder et al. 2020).

PB2 is PBT whose *explore* step is a time-varying Gaussian-process bandit instead of a random
perturbation: a member that is exploited copies the donor's checkpoint as in PBT, then takes
the numeric hyperparameters that a GP model of "how much does a segment trained with these
hyperparameters, at this point of training, improve the objective" rates best.

The model (rebuilt from the History at every explore; nothing but PBT's JSON is kept):

* **Data**: every COMPLETED segment ``T`` whose parent (the trial whose checkpoint it
  loaded) COMPLETED gives one point: inputs ``(τ, u)`` and target ``y``, where ``τ`` is the
  segment's generation normalized to [0, 1] over the data's first generation .. the
  generation being planned, ``u`` are ``T``'s Continuous and Discrete hyperparameters
  normalized to [0, 1] over their explore bounds (``parameter_range``, or the parameter's
  own range; log-scale parameters in log space), and ``y`` is the change of the objective
  over the segment: ``T``'s last objective minus its parent's, negated when
  ``lower_is_better`` (so a larger ``y`` is always better). The ``max_data`` most recently
  finished segments are used. Founders (no parent) give no point; with fewer than two points
  (the first exploit) PB2 explores as PBT does.
* **GP**: scikit-learn's ``GaussianProcessRegressor`` on the standardized targets, kernel
  ``ConstantKernel * RBF(anisotropic over (τ, u)) + WhiteKernel``, its hyperparameters fit
  by maximum likelihood. The time input with its own length-scale is what makes the model
  time-varying: an improvement observed long ago weighs less than a recent one (the paper
  uses a fixed-form time kernel with a forgetting rate; here that decay is learned).
* **Batch**: the segments that run alongside the one being chosen (the members that continue
  and those already explored in the same synchronous plan; the other members' running
  segments in asynchronous mode) are added at their generation with the GP's own mean as
  target (the "believer" trick of GP-BUCB, Desautels et al. 2014): that shrinks the
  uncertainty there, so two members exploited at once are not sent to the same point.
* **Acquisition**: UCB ``mean + kappa * std`` at ``τ`` of the generation being planned,
  maximized over ``u`` in [0, 1]^d: ``n_candidates`` (512) uniform random points plus the
  donor's values, the best of them polished by L-BFGS-B. The point is mapped back to the
  parameter's scale, rounded for a Discrete parameter, and clipped to the bounds.

Choice and Ordinal parameters are explored by PBT's rules (resampled / one step), and
exploit is PBT's (truncation by default). The explore record reads
``lr: 0.0034 -> 0.0071 (ucb)``.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from poptune._validation import check_int, check_number
from poptune.algorithms._gp import (
    check_sklearn,
    condition,
    fit_time_varying,
    from_unit,
    maximize,
    one_blas_thread,
    quiet,
    to_unit,
)
from poptune.algorithms.pbt.algorithm import (
    InitialPopulation,
    PopulationBasedTraining,
    ResampleDistributions,
)
from poptune.algorithms.pbt.explore import RunningConfigs, explore, format_value
from poptune.algorithms.pbt.hooks import ExploreFn
from poptune.history import History
from poptune.parameters import Continuous, Discrete, Parameter
from poptune.trial import Trial, TrialStatus

__all__ = ["PB2"]

_N_CANDIDATES = 512


class PB2(PopulationBasedTraining):
    """Population Based Bandits: PBT with a GP-bandit explore step (see the module docstring).

    Takes PBT's arguments (same defaults, except ``population_size=4`` and
    ``quantile_fraction=0.25``, the paper's small populations) and the same bookkeeping keys
    (``generation``, ``load_from``, ``save_to``, ``lineage``); works synchronously and
    asynchronously. ``perturbation_factors`` and ``resample_probability`` apply to Choice and
    Ordinal parameters (and to the first exploit, before the model has data), as do
    ``resample_distributions``. ``hyperparameters`` limits the explored parameters (the GP
    models only the numeric ones among them) and ``explore_fn`` sees the GP's proposal, as
    in PBT.

    Args:
        kappa: UCB's weight of the standard deviation (exploration), a number >= 0; default
            2.0 (targets are standardized, so this is in units of the observed spread).
        max_data: the GP is fit to at most this many of the most recently finished segments
            (int >= 2; default 128): a fit costs O(max_data³), about 10-50 ms at 128.

    Raises:
        ConfigurationError: as PBT, a bad ``kappa`` or ``max_data``, or scikit-learn is not
            installed (``pip install scikit-learn``).
    """

    def __init__(
        self,
        num_generations: int,
        population_size: int = 4,
        parameter_range: Mapping[str, Sequence[Any]] | None = None,
        quantile_fraction: float = 0.25,
        synchronous: bool = True,
        *,
        kappa: float = 2.0,
        max_data: int = 128,
        perturbation_factors: Sequence[float] = (0.8, 1.2),
        resample_probability: float = 0.0,
        rank_by: str = "last",
        burn_in: int = 0,
        exploit: str = "truncation",
        ttest_window: int = 4,
        initial_population: InitialPopulation = None,
        hyperparameters: Sequence[str] | None = None,
        explore_fn: ExploreFn | str | None = None,
        resample_distributions: ResampleDistributions = None,
        ranking: str = "latest",
    ) -> None:
        super().__init__(
            num_generations,
            population_size,
            parameter_range,
            perturbation_factors,
            quantile_fraction=quantile_fraction,
            resample_probability=resample_probability,
            rank_by=rank_by,
            synchronous=synchronous,
            burn_in=burn_in,
            exploit=exploit,
            ttest_window=ttest_window,
            initial_population=initial_population,
            hyperparameters=hyperparameters,
            explore_fn=explore_fn,
            resample_distributions=resample_distributions,
            ranking=ranking,
        )
        self.kappa = check_number("PB2", "kappa", kappa, minimum=0)
        self.max_data = check_int("PB2", "max_data", max_data, 2)
        check_sklearn("PB2")
        # A cache of the last fit: (data key, fitted kernel). Fitting is deterministic, so it
        # only saves time (several members explored in one plan share the data).
        self._fitted: tuple[Any, Any] | None = None

    # -- explore ---------------------------------------------------------------------------
    def explore(
        self,
        history: History,
        donor: Trial,
        generation: int,
        rng: np.random.Generator,
        running: RunningConfigs,
    ) -> tuple[dict[str, Any], list[str]]:
        """PB2's explore hook: the numeric hyperparameters the GP bandit's UCB rates best
        (PBT's perturbation before the model has two points), the others by PBT's rules."""
        explored = self.explored_parameters(history.parameters)
        numeric = [p for p in explored if isinstance(p, (Continuous, Discrete))]
        if not numeric:
            return super().explore(history, donor, generation, rng, running)
        others = [p for p in explored if not isinstance(p, (Continuous, Discrete))]
        base = history.hyperparameters(donor)
        resamplers = self.resamplers(history.parameters)
        config, other_records = explore(
            base,
            others,
            rng,
            self.perturbation_factors,
            self.resample_probability,
            self.parameter_range,
            resamplers,
        )
        bounds = [self._bounds(p) for p in numeric]
        data = self._data(history, numeric, bounds)
        if len(data[0]) < 2:  # nothing to learn from yet: PBT's perturbation
            new, numeric_records = explore(
                base,
                numeric,
                rng,
                self.perturbation_factors,
                self.resample_probability,
                self.parameter_range,
                resamplers,
            )
            config.update({p.name: new[p.name] for p in numeric})
        else:
            point = self._ucb_point(history, data, numeric, bounds, base, generation, rng, running)
            numeric_records = []
            for p, (low, high, log), u in zip(numeric, bounds, point, strict=True):
                value = from_unit(float(u), low, high, log)
                value = p.clip(value, (low, high)) if isinstance(p, Discrete) else value
                value = min(max(value, low), high)
                old = base[p.name]
                config[p.name] = value
                numeric_records.append(
                    f"{p.name}: {format_value(old)} -> {format_value(value)} (ucb)"
                )
        # one record per explored parameter, in the study's order
        by_name = dict(zip([p.name for p in others if p.name in base], other_records, strict=True))
        by_name.update(zip([p.name for p in numeric], numeric_records, strict=True))
        return config, [by_name[p.name] for p in history.parameters if p.name in by_name]

    def _bounds(self, p: Parameter) -> tuple[float, float, bool]:
        allowed = self.parameter_range.get(p.name)
        low, high = (p.low, p.high) if allowed is None else (allowed[0], allowed[1])  # type: ignore[attr-defined]
        return float(low), float(high), p.scale == "log"

    def _data(
        self,
        history: History,
        numeric: list[Parameter],
        bounds: list[tuple[float, float, bool]],
    ) -> tuple[list[int], np.ndarray, np.ndarray, np.ndarray]:
        """(trial ids, generations, unit hyperparameters, reward changes) of the most recently
        finished segments whose parent completed."""
        lower = history.lower_is_better
        usable: list[tuple[Trial, float]] = []
        for trial in history.completed:
            parent_id = trial.parent
            if type(parent_id) is not int or trial.generation is None:
                continue
            parent = history.get(parent_id)
            if parent is None or parent.status is not TrialStatus.COMPLETED:
                continue
            change = trial.score(lower, "last") - parent.score(lower, "last")
            if math.isfinite(change):
                usable.append((trial, change))
        # the most recently finished ones, in id order: the same data (and so the same fit)
        # in every process, whatever order its History learnt of the finished trials in
        recent = heapq.nlargest(
            self.max_data, usable, key=lambda item: (item[0].finished_seq, item[0].id)
        )
        recent.sort(key=lambda item: item[0].id)
        ids: list[int] = []
        times: list[float] = []
        units: list[list[float]] = []
        ys: list[float] = []
        for trial, change in recent:
            generation = trial.generation
            assert generation is not None
            params = trial.parameters
            ids.append(trial.id)
            times.append(float(generation))
            units.append(
                [to_unit(float(params[p.name]), *b) for p, b in zip(numeric, bounds, strict=True)]
            )
            ys.append(-change if lower else change)
        return ids, np.array(times), np.array(units).reshape(len(ys), len(numeric)), np.array(ys)

    def _ucb_point(
        self,
        history: History,
        data: tuple[list[int], np.ndarray, np.ndarray, np.ndarray],
        numeric: list[Parameter],
        bounds: list[tuple[float, float, bool]],
        base: dict[str, Any],
        generation: int,
        rng: np.random.Generator,
        pending: RunningConfigs,
    ) -> np.ndarray:
        """The unit hyperparameters maximizing UCB at ``generation``."""
        ids, times, units, ys = data
        t0 = float(times.min())
        span = max(float(generation) - t0, 1.0)
        X = np.column_stack([(times - t0) / span, units])
        mean, std = float(ys.mean()), float(ys.std())
        y = (ys - mean) / (std if std > 1e-12 else 1.0)
        d = len(numeric)

        key = (tuple(ids), generation, tuple(bounds))
        with quiet(), one_blas_thread():
            if self._fitted is not None and self._fitted[0] == key:
                gp = condition(self._fitted[1], X, y)
            else:
                gp = fit_time_varying(X, y)
                self._fitted = (key, gp.kernel_)
            running = pending()
            if running:  # believers: the running segments at the GP's own mean
                P = np.array(
                    [
                        [(g - t0) / span]
                        + [
                            to_unit(float(c[p.name]), *b)
                            for p, b in zip(numeric, bounds, strict=True)
                        ]
                        for g, c in running
                    ]
                )
                believed = gp.predict(P)
                gp = condition(gp.kernel_, np.vstack([X, P]), np.concatenate([y, believed]))

            tau = (generation - t0) / span
            kappa = self.kappa

            def ucb(u: np.ndarray) -> np.ndarray:
                Z = np.column_stack([np.full(len(u), tau), u])
                mu, sigma = gp.predict(Z, return_std=True)
                return mu + kappa * sigma

            donor_u = [
                min(max(to_unit(float(base[p.name]), *b), 0.0), 1.0)
                for p, b in zip(numeric, bounds, strict=True)
            ]
            candidates = np.vstack([rng.random((_N_CANDIDATES, d)), [donor_u]])
            scores = ucb(candidates)
            best = candidates[int(np.argmax(scores))]
            best_score = float(scores.max())
            polished = maximize(lambda u: float(ucb(u[None, :])[0]), best, maxiter=50)
            if polished is not None and polished[1] > best_score:
                best = polished[0]
        return np.clip(best, 0.0, 1.0)
