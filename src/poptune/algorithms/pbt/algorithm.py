"""Population Based Training: synchronous (SHERPA's generations) or asynchronous (the paper's).

This module holds PBT's arguments, their validation, ``setup`` and the two hooks the modes
call (the founder factory and the explore hook); the modes are peers, one module each:
:mod:`poptune.algorithms.pbt.synchronous` and :mod:`poptune.algorithms.pbt.asynchronous`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from poptune._validation import (
    check_bool,
    check_choice,
    check_factors,
    check_fraction,
    check_instance,
    check_int,
    check_list,
    check_str,
    is_real,
    reject,
)
from poptune.algorithms.base import Algorithm, Suggestion, SuggestResult, algorithm_from_config
from poptune.algorithms.pbt._mode import PBTMode
from poptune.algorithms.pbt.asynchronous import RANKINGS, AsynchronousPBT
from poptune.algorithms.pbt.exploit import EXPLOIT_STRATEGIES
from poptune.algorithms.pbt.explore import RunningConfigs, explore, format_value
from poptune.algorithms.pbt.hooks import (
    ExploreFn,
    Resampler,
    apply_explore_fn,
    callable_argument,
    callable_config,
    check_resample_distributions,
    resample_distributions_argument,
    resample_distributions_config,
    resampler,
)
from poptune.algorithms.pbt.synchronous import SynchronousPBT
from poptune.exceptions import ConfigurationError, InvalidParameterError
from poptune.history import History
from poptune.parameters import Choice, Ordinal, Parameter
from poptune.trial import Trial

#: What ``initial_population`` accepts (a Mapping: an algorithm's config).
InitialPopulation = Sequence[Mapping[str, Any]] | Algorithm | Mapping[str, Any] | None

#: What ``resample_distributions`` accepts: ``{name: Parameter | f(rng) -> value}`` (or, as a
#: config holds it, a Parameter's ``to_dict()`` and ``'module:function'`` text).
ResampleDistributions = Mapping[str, Parameter | Resampler | Mapping[str, Any] | str] | None

__all__ = ["PopulationBasedTraining"]

logger = logging.getLogger("poptune.pbt")

_RANK_BY = ("last", "best")
_EXPLOIT = EXPLOIT_STRATEGIES


class PopulationBasedTraining(Algorithm):
    """Population Based Training (Jaderberg et al. 2017), synchronous or asynchronous.

    A trial is one *segment* of one population member. Generation 1 is ``population_size``
    configurations (the founders, members 0 .. N - 1): random ones, or those of
    ``initial_population``.

    **Synchronous** (``synchronous=True``, the default; SHERPA's semantics). When every trial
    of generation g has finished, generation g + 1 is planned at once:

    * members are ranked by objective (``rank_by='last'``: the last reported value, the
      performance of the model being handed on; ``'best'``: the best value the trial
      reported, SHERPA's rule);
    * with ``exploit='truncation'`` (default) the bottom ``quantile_fraction`` (at least 1
      member, at most half) are *exploited*: they copy the weights (``load_from``) and
      hyperparameters of a member drawn from the top ``quantile_fraction``, which are then
      *explored* (see :mod:`poptune.algorithms.pbt.explore`); with ``'tournament'`` each
      member meets one other member drawn uniformly and copies it if it ranks above; with
      ``'ttest'`` it copies that member if its last ``ttest_window`` objective values are
      significantly better (Welch's t-test, p < 0.05; see
      :mod:`poptune.algorithms.pbt.exploit`). A member whose trial FAILED or was STOPPED is
      always exploited;
    * the other members continue from their own checkpoint with unchanged hyperparameters.

    While generation g has trials running, the algorithm answers ``WAIT`` (SHERPA handed out
    generation g + 1 too early). After ``num_generations`` generations it answers ``DONE``.

    **Asynchronous** (``synchronous=False``; the paper's design, see
    :mod:`poptune.algorithms.pbt.asynchronous`). There is no barrier: when a worker asks for
    a trial, the member whose latest segment finished first (among those with fewer than
    ``num_generations`` segments) gets its next segment at once, decided from the population
    as it stands: members are ranked by their latest COMPLETED segment; a member that has
    completed at least ``burn_in`` segments and loses the selection (``exploit='truncation'``:
    it is in the bottom ``quantile_fraction``; ``'tournament'``: one other member drawn
    uniformly ranks above it; ``'ttest'``: that member's recent values are significantly
    better) copies and explores a donor (truncation: drawn from the top
    ``quantile_fraction``; otherwise: that other member); a member whose segment FAILED or
    was STOPPED always does; the others continue. ``trial.generation`` is the member's segment
    number. ``WAIT`` only while every member with budget left is running; ``DONE`` once every
    member has had ``num_generations`` segments. Useful when segments take unequal time: no
    worker idles waiting for the slowest member.

    Every trial's ``parameters`` carry SHERPA's keys ``generation`` (1, 2, ...),
    ``load_from`` ('' for a fresh model, else the trial id whose checkpoint to load),
    ``save_to`` (the trial's own id, as a str) and ``lineage`` (ancestor ids, each followed by
    a comma). ``trial.member``, ``trial.parent`` and ``trial.explore`` give the population
    slot, the trial whose checkpoint is loaded and the explore record (the bookkeeping is
    built by :mod:`poptune.lineage`).

    **Explore, and its extension points.** Both modes choose the hyperparameters of an
    exploited segment in three steps, once per explore: :meth:`explore` ``(history, donor,
    generation, rng, running)`` proposes them (the default perturbs or resamples the donor's
    values of the ``hyperparameters`` it explores, drawing a redraw from
    ``resample_distributions`` where one is given, see
    :mod:`poptune.algorithms.pbt.explore`; :class:`~poptune.algorithms.PB2` overrides it with
    a GP bandit); the parameters outside ``hyperparameters`` are set back to the donor's; then
    ``explore_fn(config, donor_config)``, when given, returns the configuration to use, which
    is checked against the parameters. Overriding :meth:`explore` in a subclass is possible
    (its signature may still change before the docs document it as public); the three
    arguments are the public way. Founders (generation 1) are not passed to ``explore_fn``.

    Args:
        num_generations: generations to run (>= 1).
        population_size: members per generation (>= 2).
        parameter_range: ``{name: [low, high]}`` (numbers) or ``{name: [values]}``
            (Choice/Ordinal, in order: an Ordinal steps along this list) that explore may
            reach, perturbed values clipped to it and resampled ones drawn inside it (numbers
            on the parameter's scale); lists or tuples only; default: each parameter's own
            range.
        perturbation_factors: factors a number is multiplied by when explored.
        quantile_fraction: share of the population in the bottom (replaced) and top (donor)
            quantiles, in (0, 0.5]; 0.2 as in SHERPA and the paper.
        resample_probability: probability that explore redraws a parameter from its prior
            (inside ``parameter_range``; or from its ``resample_distributions`` entry)
            instead of perturbing it (the paper's *resample*); 0 as in SHERPA.
        rank_by: ``'last'`` (default) or ``'best'``.
        synchronous: True (default) for generations with a barrier, False for asynchronous
            PBT.
        burn_in: asynchronous mode: segments a member must have completed before it may be
            exploited (int >= 0; default 0). A member whose segment failed is replaced anyway.
        exploit: ``'truncation'`` (default), ``'tournament'`` (binary tournament) or
            ``'ttest'`` (t-test selection), in both modes.
        ttest_window: ``exploit='ttest'``: how many of a member's last objective values
            (along its lineage) the t-test compares (int >= 2; default 4).
        initial_population: the founders of generation 1: a list of configurations (dicts
            ``{parameter: value}``; a parameter left out is drawn at random; fewer dicts than
            ``population_size`` leave the other founders random), or another
            :class:`~poptune.algorithms.Algorithm` (e.g. ``GridSearch()``) whose suggestions
            fill generation 1 in order (it keeps its state in ``history.state['initial']``;
            once it answers DONE or WAIT the remaining founders are random). Default: random.
        hyperparameters: the names of the parameters explore changes (a list or tuple);
            the others are copied from the donor unchanged. Default: all of them.
        explore_fn: a constraint hook ``explore_fn(config, donor_config) -> config``, called
            once per explore with copies of the proposed configuration and the donor's (dicts
            of the study's parameters, no bookkeeping keys); it returns every parameter of
            ``config``, each value one explore may reach (a value of its parameter, or a
            number inside its ``parameter_range``; nothing is clipped: its answer is final),
            else a ConfigurationError names the hook, the parameter and the value. A value
            it changes adds ``'name: old -> new (explore_fn)'`` to ``trial.explore``. Also
            ``'module:function'`` text naming a function marked with
            :func:`~poptune.algorithms.pbt.pbt_hook`.
        resample_distributions: ``{name: distribution}``: what a redraw of the parameter
            (probability ``resample_probability``, and a Choice's perturbation) draws from
            instead of its prior: a :class:`~poptune.Continuous`, :class:`~poptune.Discrete`
            (the parameter's type), :class:`~poptune.Choice` or :class:`~poptune.Ordinal` of
            that name whose values explore may reach (inside ``parameter_range``), or a
            callable ``f(rng) -> value`` drawing only from the numpy ``rng`` it is given (its
            value is checked). Only for parameters that explore changes.
        ranking: asynchronous mode: what a member that asks is compared with.
            ``'latest'`` (default): every member's latest COMPLETED segment, however far it
            has trained (with fewer workers than members the member that asks has usually
            trained least, so it is exploited more often than a fair comparison would say);
            ``'equal_progress'``: it meets each other member at the progress (segments
            trained, along the lineage) both have reached, each scored by its segment at
            that progress; a truncation donor is drawn by the others' latest COMPLETED
            segments, the weights it copies. See :mod:`poptune.algorithms.pbt.asynchronous`
            and docs/algorithms/pbt-async.md for the measured trade-off. Synchronous mode compares a
            generation, whose members have all trained equally long: either value means the
            same there.

    **Storing the callables.** A config is JSON: ``explore_fn`` and a callable resample
    distribution are written as ``'module:function'`` when they are module-level functions
    marked with :func:`~poptune.algorithms.pbt.pbt_hook`, and rebuilt from that text only if
    it names a marked function (so a stored config cannot call ``os:system``). Any other
    callable works in memory, but a study whose config must be JSON (SQLite/PostgreSQL,
    ``Study.save``, ``study.optimize`` with worker processes) raises a StorageError naming
    it (see :mod:`poptune.algorithms.pbt.hooks`).

    Raises:
        ConfigurationError: any argument outside the ranges above (e.g. a ``ranking`` other
            than ``'latest'`` or ``'equal_progress'``; ArgumentTypeError if not a str),
            ``burn_in`` with ``synchronous=True``, more ``initial_population`` configurations than
            ``population_size``, a ``parameter_range`` value list that is not a list or
            tuple (a set has no order; ArgumentTypeError), or (checked when the study is
            created) a ``parameter_range``, ``initial_population``, ``hyperparameters`` or
            ``resample_distributions`` entry naming a parameter the study does not have or
            outside its range.
    """

    reserved_keys = ("generation", "load_from", "save_to", "lineage")

    def __init__(
        self,
        num_generations: int,
        population_size: int = 20,
        parameter_range: Mapping[str, Sequence[Any]] | None = None,
        perturbation_factors: Sequence[float] = (0.8, 1.2),
        *,
        quantile_fraction: float = 0.2,
        resample_probability: float = 0.0,
        rank_by: str = "last",
        synchronous: bool = True,
        burn_in: int = 0,
        exploit: str = "truncation",
        ttest_window: int = 4,
        initial_population: InitialPopulation = None,
        hyperparameters: Sequence[str] | None = None,
        explore_fn: ExploreFn | str | None = None,
        resample_distributions: ResampleDistributions = None,
        ranking: str = "latest",
    ) -> None:
        owner = type(self).__name__
        self.num_generations = check_int(owner, "num_generations", num_generations, 1)
        self.population_size = check_int(owner, "population_size", population_size, 2)
        self.perturbation_factors = check_factors(owner, perturbation_factors)
        self.quantile_fraction = check_fraction(
            owner, "quantile_fraction", quantile_fraction, 0.0, 0.5, low_open=True
        )
        self.resample_probability = check_fraction(
            owner, "resample_probability", resample_probability, 0.0, 1.0
        )
        self.rank_by = check_choice(owner, "rank_by", rank_by, _RANK_BY)
        if parameter_range is None:
            parameter_range = {}
        check_instance(owner, "parameter_range", parameter_range, Mapping, "a dict name -> range")
        self.parameter_range = {
            k: check_list(
                owner,
                f"parameter_range[{k!r}]",
                v,
                "a list or tuple ([low, high], or the allowed values in order)",
            )
            for k, v in parameter_range.items()
        }
        self.synchronous = check_bool(owner, "synchronous", synchronous)
        self.burn_in = check_int(owner, "burn_in", burn_in, 0)
        self.exploit = check_choice(
            owner,
            "exploit",
            exploit,
            _EXPLOIT,
            what="'truncation' or 'tournament'",
            note="(or 'ttest', the t-test selection)",
        )
        self.ttest_window = check_int(owner, "ttest_window", ttest_window, 2)
        self.ranking = check_choice(owner, "ranking", ranking, RANKINGS)
        if self.synchronous and self.burn_in:
            raise ConfigurationError(
                f"{owner}: the burn_in rules apply to asynchronous PBT only "
                f"(synchronous=False); got burn_in={burn_in!r} with synchronous=True"
            )
        self.initial_population = _initial_population(owner, initial_population, population_size)
        self.hyperparameters = _hyperparameters(owner, hyperparameters)
        self.explore_fn: ExploreFn | None = (
            None if explore_fn is None else callable_argument(owner, "explore_fn", explore_fn)
        )
        self.resample_distributions = resample_distributions_argument(owner, resample_distributions)
        self._mode = self._make_mode()

    def _make_mode(self) -> PBTMode:
        """The mode object ``suggest`` delegates to, given the current settings."""
        common: dict[str, Any] = {
            "num_generations": self.num_generations,
            "population_size": self.population_size,
            "exploit": self.exploit,
            "rank_by": self.rank_by,
            "quantile_fraction": self.quantile_fraction,
            "ttest_window": self.ttest_window,
            "founder": self._founder,
            "explore": self._explore_step,
        }
        if self.synchronous:
            return SynchronousPBT(**common)
        return AsynchronousPBT(burn_in=self.burn_in, ranking=self.ranking, **common)

    # -- configuration -------------------------------------------------------------------
    def setup(self, parameters: Sequence[Parameter], lower_is_better: bool) -> None:
        super().setup(parameters, lower_is_better)
        self._mode = self._make_mode()
        by_name = {p.name: p for p in parameters}
        self._check_initial_population(parameters, lower_is_better)
        for name in self.hyperparameters or ():
            if name not in by_name:
                raise ConfigurationError(
                    f"{type(self).__name__}: hyperparameters names {name!r}, which is not a "
                    f"parameter of the study (parameters: {sorted(by_name)})"
                )
        self._check_parameter_range(by_name)
        if self.resample_distributions:
            check_resample_distributions(
                type(self).__name__,
                self.resample_distributions,
                parameters,
                self.parameter_range,
                [p.name for p in self.explored_parameters(parameters)],
            )

    def _check_parameter_range(self, by_name: Mapping[str, Parameter]) -> None:
        for name, allowed in self.parameter_range.items():
            p = by_name.get(name)
            if p is None:
                raise ConfigurationError(
                    f"PopulationBasedTraining: parameter_range names {name!r}, which is not a "
                    f"parameter of the study (parameters: {sorted(by_name)})"
                )
            if isinstance(p, (Choice, Ordinal)):
                bad = [v for v in allowed if not p.contains(v)]
                if not allowed or bad:
                    reject(
                        "PopulationBasedTraining",
                        f"parameter_range[{name!r}]",
                        f"a non-empty list of values of {p.range!r}",
                        allowed,
                        wrong_type=False,
                    )
                continue
            numeric = len(allowed) == 2 and all(is_real(b) for b in allowed)
            if not (numeric and allowed[0] < allowed[1] and (p.scale != "log" or allowed[0] > 0)):
                log = " and low > 0 (log scale)" if p.scale == "log" else ""
                reject(
                    "PopulationBasedTraining",
                    f"parameter_range[{name!r}]",
                    f"[low, high] with low < high{log}",
                    allowed,
                    wrong_type=False,
                )

    def get_config(self) -> dict[str, Any]:
        """The constructor's arguments (derived, so subclasses such as PB2 add theirs for
        free), with ``initial_population`` as JSON: an algorithm's config or plain dicts."""
        initial = self.initial_population
        if isinstance(initial, Algorithm):
            initial = initial.to_config()
        elif initial is not None:
            initial = [dict(c) for c in initial]
        owner = type(self).__name__
        fn = self.explore_fn
        return {
            **super().get_config(),
            "initial_population": initial,
            "explore_fn": None if fn is None else callable_config(owner, "explore_fn", fn),
            "resample_distributions": resample_distributions_config(
                owner, self.resample_distributions
            ),
        }

    def _check_initial_population(
        self, parameters: Sequence[Parameter], lower_is_better: bool
    ) -> None:
        owner = type(self).__name__
        initial = self.initial_population
        if initial is None:
            return
        if isinstance(initial, Algorithm):
            initial.setup(parameters, lower_is_better)
            return
        by_name = {p.name: p for p in parameters}
        for i, config in enumerate(initial):
            for name, value in config.items():
                p = by_name.get(name)
                if p is None:
                    raise ConfigurationError(
                        f"{owner}: initial_population[{i}] names {name!r}, which is not a "
                        f"parameter of the study (parameters: {sorted(by_name)})"
                    )
                try:
                    p.validate_value(value)
                except InvalidParameterError as exc:
                    raise ConfigurationError(
                        f"{owner}: initial_population[{i}][{name!r}] = {value!r} is not a "
                        f"value of the parameter: {exc}"
                    ) from None

    def _founder(self, history: History, member: int, rng: np.random.Generator) -> dict[str, Any]:
        """Study parameters of founder ``member`` (generation 1), in the study's order."""
        initial = self.initial_population
        given: Mapping[str, Any] = {}
        if isinstance(initial, Algorithm):
            result = initial.suggest(history.scoped(history.state.setdefault("initial", {})), rng)
            if isinstance(result, Suggestion):
                given = result.parameters
            elif isinstance(result, Mapping):
                given = result
        elif initial is not None and member < len(initial):
            given = initial[member]
        return {
            p.name: p.validate_value(given[p.name]) if p.name in given else p.sample(rng)
            for p in history.parameters
        }

    # -- the hooks the modes call --------------------------------------------------------
    def explored_parameters(self, parameters: Sequence[Parameter]) -> list[Parameter]:
        """The parameters explore changes: those named by ``hyperparameters`` (default:
        all), in the study's order. An explore hook that a subclass overrides uses it too."""
        names = self.hyperparameters
        if names is None:
            return list(parameters)
        return [p for p in parameters if p.name in names]

    def resamplers(self, parameters: Sequence[Parameter]) -> dict[str, Resampler]:
        """``{name: draw(rng) -> value}`` for the parameters with a resample distribution
        (``resample_distributions``), as :func:`~poptune.algorithms.pbt.explore.explore`
        takes them."""
        by_name = {p.name: p for p in parameters}
        owner = type(self).__name__
        return {
            name: resampler(owner, name, spec, by_name[name], self.parameter_range.get(name))
            for name, spec in (self.resample_distributions or {}).items()
            if name in by_name
        }

    def _explore_step(
        self,
        history: History,
        donor: Trial,
        generation: int,
        rng: np.random.Generator,
        running: RunningConfigs,
    ) -> tuple[dict[str, Any], list[str]]:
        """What the modes call for an exploit: :meth:`explore` (which a subclass may
        override), the parameters outside ``hyperparameters`` set back to the donor's, then
        ``explore_fn`` once, its answer checked against the parameters."""
        config, records = self.explore(history, donor, generation, rng, running)
        donor_config = history.hyperparameters(donor)
        if self.hyperparameters is not None:
            explored = set(self.hyperparameters)
            config.update({k: v for k, v in donor_config.items() if k not in explored})
        if self.explore_fn is None:
            return config, records
        return apply_explore_fn(
            type(self).__name__,
            self.explore_fn,
            config,
            donor_config,
            history.parameters,
            self.parameter_range,
            records,
            format_value,
        )

    def explore(
        self,
        history: History,
        donor: Trial,
        generation: int,
        rng: np.random.Generator,
        running: RunningConfigs,
    ) -> tuple[dict[str, Any], list[str]]:
        """The explore hook: the study parameters of an exploited segment of ``generation``
        that copies ``donor``, and one record line per explored parameter (they make
        ``trial.explore``, joined by ``'; '``).

        Both modes call it; override it in a subclass to explore differently. ``running()``
        lists ``(generation, config)`` of the segments that run, or will run, alongside the
        new one (PB2 uses them; this default ignores them). The default perturbs or resamples
        the donor's values, see :mod:`poptune.algorithms.pbt.explore`. Draw randomness only
        from ``rng``, so seeded studies stay reproducible.
        """
        return explore(
            history.hyperparameters(donor),
            self.explored_parameters(history.parameters),
            rng,
            self.perturbation_factors,
            self.resample_probability,
            self.parameter_range,
            self.resamplers(history.parameters),
        )

    def pending_checkpoints(self, history: History) -> set[str]:
        return self._mode.pending_checkpoints(history)

    # -- decisions -----------------------------------------------------------------------
    def suggest(self, history: History, rng: np.random.Generator) -> SuggestResult:
        return self._mode.suggest(history, rng)


def _hyperparameters(owner: str, value: Any) -> list[str] | None:
    """Check ``hyperparameters``: None, or a non-empty list of distinct names."""
    if value is None:
        return None
    names = check_list(owner, "hyperparameters", value, "a list or tuple of parameter names")
    for i, name in enumerate(names):
        check_str(owner, f"hyperparameters[{i}]", name, nonempty=True)
    if not names or len(set(names)) != len(names):
        reject(
            owner,
            "hyperparameters",
            "a non-empty list of distinct parameter names",
            value,
            wrong_type=False,
        )
    return names


def _initial_population(
    owner: str, value: Any, population_size: int
) -> list[dict[str, Any]] | Algorithm | None:
    """Check ``initial_population``: None, an Algorithm (or its config), or a list of dicts."""
    if value is None or isinstance(value, Algorithm):
        return value
    if isinstance(value, Mapping):  # an algorithm's config, e.g. from get_config()
        if "type" not in value:
            raise ConfigurationError(
                f"{owner}: initial_population must be a list of configurations or an "
                f"Algorithm, got the dict {dict(value)!r} (a list of dicts was meant?)"
            )
        return algorithm_from_config(value)
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        reject(
            owner,
            "initial_population",
            "a list of configurations (dicts) or an Algorithm",
            value,
            wrong_type=True,
        )
    configs: list[dict[str, Any]] = []
    for i, config in enumerate(value):
        if not isinstance(config, Mapping) or not all(isinstance(k, str) for k in config):
            reject(
                owner,
                f"initial_population[{i}]",
                "a dict parameter name -> value",
                config,
                wrong_type=True,
            )
        configs.append(dict(config))
    if len(configs) > population_size:
        raise ConfigurationError(
            f"{owner}: initial_population has {len(configs)} configurations, more than "
            f"population_size={population_size}"
        )
    return configs
