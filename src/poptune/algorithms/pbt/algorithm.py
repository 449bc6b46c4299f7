"""Population Based Training: synchronous (SHERPA's generations) or asynchronous (the paper's).

The asynchronous mode lives in :mod:`poptune.algorithms.pbt.asynchronous`.
"""

from __future__ import annotations

import logging
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from poptune._validation import check_factors, check_fraction, check_int
from poptune.algorithms.base import Algorithm, Suggestion, SuggestResult, algorithm_from_config
from poptune.algorithms.pbt.asynchronous import suggest_async
from poptune.algorithms.pbt.exploit import EXPLOIT_STRATEGIES, recent_scores, select
from poptune.algorithms.pbt.explore import explore
from poptune.exceptions import ConfigurationError, InvalidParameterError
from poptune.history import History
from poptune.parameters import Choice, Ordinal, Parameter
from poptune.trial import AlgorithmState, Trial

#: A function giving ``[(generation, config), ...]``: the segments that run (or will run)
#: alongside the one being explored; PB2 uses them, plain PBT ignores them.
Pending = Callable[[], list[tuple[int, dict[str, Any]]]]
#: What ``initial_population`` accepts (a Mapping: an algorithm's config).
InitialPopulation = Sequence[Mapping[str, Any]] | Algorithm | Mapping[str, Any] | None

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
    slot, the trial whose checkpoint is loaded and the explore record.

    Args:
        num_generations: generations to run (>= 1).
        population_size: members per generation (>= 2).
        parameter_range: ``{name: [low, high]}`` (numbers) or ``{name: [values]}``
            (Choice/Ordinal) that explore may reach; default: each parameter's own range.
        perturbation_factors: factors a number is multiplied by when explored.
        quantile_fraction: share of the population in the bottom (replaced) and top (donor)
            quantiles, in (0, 0.5]; 0.2 as in SHERPA and the paper.
        resample_probability: probability that explore redraws a parameter from its prior
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

    Raises:
        ConfigurationError: any argument outside the ranges above, ``burn_in`` with
            ``synchronous=True``, more ``initial_population`` configurations than
            ``population_size``, or (checked when the study is created) a
            ``parameter_range`` or ``initial_population`` value naming a parameter the study
            does not have or outside its range.
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
        if rank_by not in _RANK_BY:
            raise ConfigurationError(f"{owner}: rank_by must be 'last' or 'best', got {rank_by!r}")
        self.rank_by = rank_by
        if parameter_range is None:
            parameter_range = {}
        if not isinstance(parameter_range, Mapping):
            raise ConfigurationError(
                f"{owner}: parameter_range must be a dict name -> range, got {parameter_range!r}"
            )
        self.parameter_range = {k: list(v) for k, v in parameter_range.items()}
        if not isinstance(synchronous, (bool, np.bool_)):
            raise ConfigurationError(
                f"{owner}: synchronous must be True or False, got {synchronous!r}"
            )
        self.synchronous = bool(synchronous)
        self.burn_in = check_int(owner, "burn_in", burn_in, 0)
        if not isinstance(exploit, str) or exploit not in _EXPLOIT:
            raise ConfigurationError(
                f"{owner}: exploit must be 'truncation' or 'tournament', got {exploit!r} "
                "(or 'ttest', the t-test selection)"
            )
        self.exploit = exploit
        self.ttest_window = check_int(owner, "ttest_window", ttest_window, 2)
        if self.synchronous and self.burn_in:
            raise ConfigurationError(
                f"{owner}: the burn_in rules apply to asynchronous PBT only "
                f"(synchronous=False); got burn_in={burn_in!r} with synchronous=True"
            )
        self.initial_population = _initial_population(owner, initial_population, population_size)

    # -- configuration -------------------------------------------------------------------
    def setup(self, parameters: Sequence[Parameter], lower_is_better: bool) -> None:
        super().setup(parameters, lower_is_better)
        by_name = {p.name: p for p in parameters}
        self._check_initial_population(parameters, lower_is_better)
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
                    raise ConfigurationError(
                        f"PopulationBasedTraining: parameter_range[{name!r}] must be a non-empty "
                        f"list of values of {p.range!r}, got {allowed!r}"
                    )
                continue
            ok = (
                len(allowed) == 2
                and all(isinstance(b, numbers.Real) and not isinstance(b, bool) for b in allowed)
                and allowed[0] < allowed[1]
                and (p.scale != "log" or allowed[0] > 0)
            )
            if not ok:
                raise ConfigurationError(
                    f"PopulationBasedTraining: parameter_range[{name!r}] must be [low, high] with "
                    f"low < high{' and low > 0 (log scale)' if p.scale == 'log' else ''}, "
                    f"got {allowed!r}"
                )

    def get_config(self) -> dict[str, Any]:
        return {
            "num_generations": self.num_generations,
            "population_size": self.population_size,
            "parameter_range": self.parameter_range,
            "perturbation_factors": list(self.perturbation_factors),
            "quantile_fraction": self.quantile_fraction,
            "resample_probability": self.resample_probability,
            "rank_by": self.rank_by,
            "synchronous": self.synchronous,
            "burn_in": self.burn_in,
            "exploit": self.exploit,
            "ttest_window": self.ttest_window,
            "initial_population": (
                self.initial_population.to_config()
                if isinstance(self.initial_population, Algorithm)
                else None
                if self.initial_population is None
                else [dict(c) for c in self.initial_population]
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
            view = _StateView(history, history.state.setdefault("initial", {}))
            result = initial.suggest(view, rng)  # type: ignore[arg-type]
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

    def _explore(
        self,
        history: History,
        donor: Trial,
        generation: int,
        rng: np.random.Generator,
        pending: Pending,
    ) -> tuple[dict[str, Any], list[str]]:
        """Explore the donor's hyperparameters for a segment of ``generation``: the copied
        configuration and its records. ``pending`` lists the segments that run alongside
        (PB2 uses them; PBT perturbs the donor's values, see
        :mod:`poptune.algorithms.pbt.explore`)."""
        return explore(
            history.hyperparameters(donor),
            history.parameters,
            rng,
            self.perturbation_factors,
            self.resample_probability,
            self.parameter_range,
        )

    def _window(self, history: History) -> Callable[[Trial], list[float]]:
        """The values the t-test compares for a member whose latest segment is ``trial``."""
        k = self.ttest_window
        return lambda trial: recent_scores(history, trial, k)

    def pending_checkpoints(self, history: History) -> set[str]:
        state = history.state
        plan = state.get("plan")
        if not plan:
            return set()
        trials = history.generation(state.get("generation", 1))
        return {entry["parameters"]["load_from"] for entry in plan[_handed(trials) :]}

    # -- decisions -----------------------------------------------------------------------
    def suggest(self, history: History, rng: np.random.Generator) -> SuggestResult:
        if not self.synchronous:
            return suggest_async(self, history, rng)
        state = history.state
        if state.get("done"):
            return AlgorithmState.DONE
        generation = state.get("generation", 1)
        trials = history.generation(generation)
        n = self.population_size
        # A trial re-queued after its worker died (meta "retry_of") is another attempt at
        # its member's slot: slots count first attempts, and each member's latest attempt
        # is the one that counts.
        handed = _handed(trials)
        if handed >= n:
            if generation >= self.num_generations:
                return AlgorithmState.DONE
            members = _latest_attempts(trials)
            if any(not t.is_finished for t in members):
                return AlgorithmState.WAIT
            plan = self._plan(history, members, generation + 1, rng)
            if plan is None:
                state["done"] = True
                return AlgorithmState.DONE
            generation += 1
            state["generation"] = generation
            state["plan"] = plan
            handed = 0
        slot = handed
        save_to = str(history.next_trial_id)
        if generation == 1:
            config = self._founder(history, slot, rng)
            config.update(generation=1, load_from="", save_to=save_to, lineage="")
            return Suggestion(config, {"member": slot})
        entry = state["plan"][slot]
        config = dict(entry["parameters"])
        lineage = config.pop("lineage")
        config.update(save_to=save_to, lineage=lineage)  # the same key order as generation 1
        return Suggestion(config, dict(entry["meta"]))

    def _plan(
        self, history: History, members: list[Trial], generation: int, rng: np.random.Generator
    ) -> list[dict[str, Any]] | None:
        """Plan every slot of ``generation`` from the finished previous generation."""
        survivors, pairs = select(
            self.exploit,
            members,
            history.lower_is_better,
            self.rank_by,
            self.quantile_fraction,
            rng,
            self._window(history),
        )
        if not survivors:
            logger.error(
                "PBT: no member of generation %d completed (statuses: %s); stopping the study",
                generation - 1,
                sorted({t.status.value for t in members}),
            )
            return None
        plan: list[dict[str, Any]] = []
        for trial in survivors:
            plan.append(
                self._entry(history, trial, trial, generation, history.hyperparameters(trial), "")
            )
        running = [(generation, entry["parameters"]) for entry in plan]

        def pending() -> list[tuple[int, dict[str, Any]]]:
            return list(running)

        for replaced, donor in pairs:
            config, records = self._explore(history, donor, generation, rng, pending)
            running.append((generation, config))
            plan.append(
                self._entry(history, replaced, donor, generation, config, "; ".join(records))
            )
        return plan

    @staticmethod
    def _entry(
        history: History,
        member_trial: Trial,
        donor: Trial,
        generation: int,
        config: dict[str, Any],
        explore_record: str,
    ) -> dict[str, Any]:
        parameters = dict(config)
        parameters.update(
            generation=generation,
            load_from=str(donor.save_to if donor.save_to is not None else donor.id),
            lineage=f"{donor.lineage or ''}{donor.id},",
        )
        meta: dict[str, Any] = {"member": member_trial.member, "parent": donor.id}
        if explore_record:
            meta["explore"] = explore_record
            meta["replaced"] = member_trial.id
        return {"parameters": parameters, "meta": meta}


def _handed(trials: list[Trial]) -> int:
    """Slots of a generation handed out: PBT's own trials (they name their member), first
    attempts only (a re-queued trial, meta ``retry_of``, is another go at its slot). A trial
    queued by the user with ``add_trial`` takes no slot, even if it copies PBT's keys."""
    return sum(1 for t in trials if t.member is not None and "retry_of" not in t.meta)


def _latest_attempts(trials: list[Trial]) -> list[Trial]:
    """One trial per member: its latest attempt (highest id); trials of no member ignored."""
    latest: dict[Any, Trial] = {}
    for trial in trials:
        key = trial.member
        if key is not None and (key not in latest or trial.id > latest[key].id):
            latest[key] = trial
    return sorted(latest.values(), key=lambda t: t.id)


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
        raise ConfigurationError(
            f"{owner}: initial_population must be a list of configurations (dicts) or an "
            f"Algorithm, got {value!r}"
        )
    configs: list[dict[str, Any]] = []
    for i, config in enumerate(value):
        if not isinstance(config, Mapping) or not all(isinstance(k, str) for k in config):
            raise ConfigurationError(
                f"{owner}: initial_population[{i}] must be a dict parameter name -> value, "
                f"got {config!r}"
            )
        configs.append(dict(config))
    if len(configs) > population_size:
        raise ConfigurationError(
            f"{owner}: initial_population has {len(configs)} configurations, more than "
            f"population_size={population_size}"
        )
    return configs


class _StateView:
    """A History whose ``state`` is another dict (the initial population algorithm's own)."""

    __slots__ = ("_history", "state")

    def __init__(self, history: History, state: dict[str, Any]) -> None:
        self._history = history
        self.state = state

    def __getattr__(self, name: str) -> Any:
        return getattr(self._history, name)

    def __getitem__(self, trial_id: int) -> Trial:
        return self._history[trial_id]

    def __iter__(self) -> Any:
        return iter(self._history)

    def __len__(self) -> int:
        return len(self._history)
