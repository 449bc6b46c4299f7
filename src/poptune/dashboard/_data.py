"""What the dashboard shows, as JSON-ready dicts, read incrementally from a storage.

No web framework here: :class:`DashboardData` answers the API's questions (studies, trials,
lineage, schedules, stop requests) and is tested on its own. Each study is followed through
the storage's ``changes_since``, so a poll costs what changed since the last one, not the
size of the study.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from poptune._validation import check_choice, check_number
from poptune.dashboard._population import DEFAULT_GENERATIONS, population
from poptune.exceptions import (
    ConfigurationError,
    CorruptRowError,
    StudyNotFoundError,
    TrialFinishedError,
    UnknownTrialError,
)
from poptune.history import History
from poptune.lineage import founder_id, is_exploit, is_pbt, parent_id, schedule
from poptune.parameters import Parameter
from poptune.results import best_trial as _best_trial
from poptune.storage import MemoryStorage, Storage
from poptune.trial import Trial, TrialStatus

__all__ = ["DashboardData", "StopNotAllowedError"]

#: Keys of a trial's ``meta`` shown by the dashboard (the rest is algorithm bookkeeping).
_META_SHOWN = ("member", "parent", "explore", "error", "interrupted", "heartbeat_lost",
               "retry_of")  # fmt: skip

_STATUSES = [s.value for s in TrialStatus if s is not TrialStatus.INTERMEDIATE]

#: Most trials one page of :meth:`DashboardData.trials` holds.
MAX_PAGE = 5000
#: Learning curves: default best and most recent trials drawn, and points per curve.
CURVES_TOP, CURVES_RECENT, CURVES_POINTS = 50, 50, 200


class StopNotAllowedError(ConfigurationError):
    """The dashboard was started read-only; stopping trials needs ``allow_stop=True``."""


def _number(value: Any) -> Any:
    """A JSON-safe value: NaN and infinities become None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, float):
        return _number(value)
    try:  # numpy scalars
        return _jsonable(value.item())
    except AttributeError:
        return str(value)


class _StudyView:
    """One study as the dashboard follows it."""

    def __init__(self, storage: Storage, name: str) -> None:
        self.name = name
        self.study_id = storage.get_study_id(name)
        config = storage.get_study_config(self.study_id)
        self.config = config
        self.lower_is_better = bool(config.get("lower_is_better", True))
        self.parameters = [Parameter.from_dict(d) for d in config.get("parameters", [])]
        self.history = History(self.parameters, self.lower_is_better)
        self.changed_at: dict[int, int] = {}  # trial id -> view version of its last change
        self.lock = threading.Lock()
        # (version, query) -> result: a poll that finds nothing new costs no sort
        self._cache: dict[Any, Any] = {}

    def cached(self, key: Any, compute: Any) -> Any:
        """``compute()``, remembered until the view's version changes."""
        key = (self.version, key)
        if key not in self._cache:
            if len(self._cache) > 16 or any(k[0] != self.version for k in self._cache):
                self._cache = {k: v for k, v in self._cache.items() if k[0] == self.version}
            self._cache[key] = compute()
        return self._cache[key]

    def sync(self, storage: Storage) -> None:
        """Bring the view up to date, recording at which version each trial last changed."""
        changed = self.history.sync(storage, self.study_id)
        for trial in changed:
            self.changed_at[trial.id] = self.history.version

    @property
    def version(self) -> int:
        return self.history.version


class DashboardData:
    """The dashboard's view of every study in one storage.

    Thread-safe: the web server answers requests from a thread pool.

    Args:
        storage: the storage to show (shared with the process's studies where it is one).
        allow_stop: whether :meth:`request_stop` may write (the dashboard's only write).
    """

    def __init__(self, storage: Storage, allow_stop: bool = False) -> None:
        self.storage = storage
        self.allow_stop = bool(allow_stop)
        url = getattr(storage, "url", None)
        if isinstance(url, str):
            from poptune.storage.sql import safe_url

            self.label = safe_url(url)
        else:
            self.label = "memory" if isinstance(storage, MemoryStorage) else repr(storage)
        self._views: dict[str, _StudyView] = {}
        self._lock = threading.Lock()

    # -- internals -------------------------------------------------------------------------
    @contextmanager
    def _view(self, name: str) -> Iterator[_StudyView]:
        """The study's view, synced now, held under its lock (and, for a memory storage whose
        trial objects the training thread mutates in place, under the study lock too)."""
        study_id = self.storage.get_study_id(name)  # StudyNotFoundError for an unknown name
        with self._lock:
            view = self._views.get(name)
            if view is None or view.study_id != study_id:  # new, or deleted and made again
                view = self._views[name] = _StudyView(self.storage, name)
        memory = isinstance(self.storage, MemoryStorage)
        with view.lock, self.storage.transaction(view.study_id) if memory else nullcontext():
            view.sync(self.storage)
            yield view

    def forget(self, name: str) -> None:
        with self._lock:
            self._views.pop(name, None)

    # -- studies ---------------------------------------------------------------------------
    def studies(self) -> list[dict[str, Any]]:
        """Every study: name, direction, algorithm, trials by status, best objective."""
        out = []
        for name in self.storage.list_studies():
            try:
                out.append(self.study_summary(name))
            except StudyNotFoundError:  # deleted meanwhile
                self.forget(name)
            except CorruptRowError as exc:  # listed with its error; the others stay readable
                self.forget(name)
                out.append({
                    "name": name, "error": str(exc), "direction": "", "algorithm": "",
                    "trials": None, "counts": dict.fromkeys(_STATUSES, 0), "best": None,
                    "best_trial": None, "version": None, "pbt": False,
                })  # fmt: skip
        return out

    def study_summary(self, name: str) -> dict[str, Any]:
        """One study's summary (see :meth:`studies`).

        Raises:
            StudyNotFoundError: no such study.
        """
        with self._view(name) as view:
            return _summary(view, self.storage)

    def study(self, name: str) -> dict[str, Any]:
        """A study's summary plus its parameters (name, type, range, scale) and algorithm."""
        with self._view(name) as view:
            out = _summary(view, self.storage)
            out["parameters"] = [p.to_dict() for p in view.parameters]
            out["algorithm_config"] = _jsonable_tree(view.config.get("algorithm"))
            return out

    # -- trials ----------------------------------------------------------------------------
    def trials(
        self,
        name: str,
        *,
        since: int = 0,
        status: str | None = None,
        generation: int | None = None,
        sort: str = "id",
        descending: bool = False,
        offset: int = 0,
        limit: int | None = None,
        observations: bool = True,
    ) -> dict[str, Any]:
        """Trials changed after view version ``since`` (0: all), filtered, sorted and paged.

        Returns ``{'version': v, 'total': n, 'offset': o, 'generations': [...], 'trials':
        [...]}``: ``total`` trials match (before paging), ``trials`` holds at most ``limit``
        of them from position ``offset`` (``limit=None``: all); ``generations`` lists the
        study's PBT generations (for a filter). Pass ``v`` back as ``since`` to get only what
        changed meanwhile. Each trial: ``id``, ``status``, ``parameters`` (study parameters
        only), ``generation``, ``member``, ``parent``, ``load_from``, ``lineage``,
        ``explore``, ``meta``, ``stop_requested``, ``iterations``, ``last``, ``best`` and,
        unless ``observations=False``, ``observations`` (``[[iteration, objective], ...]``
        in iteration order). Sorting puts trials without a value (no ``best`` yet) last in
        either order, and ties in id order.

        Raises:
            StudyNotFoundError: no such study.
            ConfigurationError: an unknown ``status`` or ``sort`` key, a negative ``since``
                or ``offset``, a ``limit`` outside 1..:data:`MAX_PAGE`.
        """
        check_number("dashboard", "since", since, minimum=0)
        check_number("dashboard", "offset", offset, minimum=0)
        if limit is not None:
            check_number("dashboard", "limit", limit, minimum=1, maximum=MAX_PAGE)
        if status is not None:
            check_choice("dashboard", "status", status, _STATUSES)
        with self._view(name) as view:
            names = [p.name for p in view.parameters]
            keys = {"id", "status", "generation", "member", "iterations", "last", "best", *names}
            check_choice("dashboard", "sort", sort, sorted(keys))

            def select() -> list[Trial]:
                chosen = [
                    trial
                    for trial in view.history
                    if (not since or view.changed_at.get(trial.id, 0) > since)
                    and (status is None or trial.status.value == status)
                    and (generation is None or trial.generation == generation)
                ]
                if sort != "id" or descending:
                    chosen = _sorted(view, chosen, sort, descending)
                return chosen

            chosen = view.cached(("trials", since, status, generation, sort, descending), select)
            generations = view.cached(("generations",), lambda: sorted(
                {t.generation for t in view.history if t.generation is not None}))  # fmt: skip
            page = chosen[offset:] if limit is None else chosen[offset : offset + limit]
            return {
                "version": view.version,
                "total": len(chosen),
                "offset": offset,
                "generations": generations,
                "trials": [_trial_dict(view, t, observations) for t in page],
            }

    def curves(
        self,
        name: str,
        *,
        top: int = CURVES_TOP,
        recent: int = CURVES_RECENT,
        max_points: int = CURVES_POINTS,
    ) -> dict[str, Any]:
        """The learning curves worth drawing: the ``top`` trials with the best objective and
        the ``recent`` newest other trials (running ones first), each with at most
        ``max_points`` observations (evenly spaced, always the first, the last and the best).

        In a PBT study the ``top`` are the best trial and its ancestors (newest first), so
        that its lineage is drawn as one line from its founder on.

        Returns ``{'version': v, 'total': n, 'trials': [{'id', 'status', 'best', 'member',
        'generation', 'parent', 'start', 'observations': [[iteration, objective], ...]},
        ...]}`` where ``total`` counts the trials with an observation and ``start`` is the
        parent's last observation ``[iteration, objective]`` (None without one), where a
        PBT trial's curve continues its parent's.

        Raises:
            StudyNotFoundError: no such study.
            ConfigurationError: a negative ``top`` or ``recent``, ``max_points`` below 2.
        """
        check_number("dashboard", "top", top, minimum=0)
        check_number("dashboard", "recent", recent, minimum=0)
        check_number("dashboard", "max_points", max_points, minimum=2)
        with self._view(name) as view:

            def compute() -> dict[str, Any]:
                observed = [t for t in view.history if t.observations]
                ranked = _sorted(view, observed, "best", not view.lower_is_better)[:top]
                if ranked and is_pbt(view.history, view.history.parameter_names):
                    ranked = _lines_of(view, ranked[0], top)
                chosen = {t.id for t in ranked}
                rest = [t for t in observed if t.id not in chosen]
                rest.sort(key=lambda t: (not t.is_finished, t.id), reverse=True)
                picked = sorted([*ranked, *rest[:recent]], key=lambda t: t.id)
                return {
                    "version": view.version,
                    "total": len(observed),
                    "trials": [_curve(view, t, max_points) for t in picked],
                }

            result: dict[str, Any] = view.cached(("curves", top, recent, max_points), compute)
            return result

    def trial(self, name: str, trial_id: int) -> dict[str, Any]:
        """One trial (as in :meth:`trials`) with its ``schedule`` (see ``Study.schedule``).

        Raises:
            StudyNotFoundError, UnknownTrialError.
        """
        with self._view(name) as view:
            trial = view.history.get(trial_id)
            if trial is None:
                raise UnknownTrialError(f"trial {trial_id!r} does not exist in study {name!r}")
            out = _trial_dict(view, trial)
            out["schedule"] = _jsonable_tree(schedule(view.history, trial_id))
            out["context"] = {
                str(it): _jsonable_tree(obs.context) for it, obs in trial.observations.items()
            }
            return out

    def lineage(self, name: str) -> dict[str, Any]:
        """The PBT family tree: ``nodes`` (one per trial: id, generation, member, founder,
        objective = last observation, status) and ``edges`` (parent -> child, ``exploit`` when
        the child continues a different member's weights: :func:`poptune.lineage.is_exploit`).

        Raises:
            StudyNotFoundError: no such study.
        """
        with self._view(name) as view:
            nodes, edges = [], []
            for trial in view.history:
                pid = parent_id(trial)
                parent = view.history.get(pid) if pid is not None else None
                last = trial.last_observation
                nodes.append({
                    "id": trial.id,
                    "generation": trial.generation,
                    "member": trial.member,
                    "founder": founder_id(trial),
                    "objective": None if last is None else _number(last.objective),
                    "status": trial.status.value,
                })  # fmt: skip
                if parent is not None:
                    exploit = is_exploit(trial, parent)
                    edges.append({"source": parent.id, "target": trial.id, "exploit": exploit})
            return {"version": view.version, "nodes": nodes, "edges": edges}

    def population(
        self,
        name: str,
        *,
        start: int | None = None,
        count: int = DEFAULT_GENERATIONS,
        value: str = "last",
        since: int | None = None,
    ) -> dict[str, Any]:
        """The population lanes of a PBT study: one lane per member over a window of
        generations, with the exploit arrows (:func:`poptune.dashboard._population.population`).

        Raises:
            StudyNotFoundError: no such study.
            ConfigurationError: a bad ``start``, ``count``, ``value`` or ``since``.
        """
        with self._view(name) as view:
            return population(view, start=start, count=count, value=value, since=since)

    # -- the one write -----------------------------------------------------------------------
    def request_stop(self, name: str, trial_id: int) -> None:
        """Ask a running trial to stop (``should_trial_stop`` then answers True).

        Raises:
            StopNotAllowedError: the dashboard is read-only.
            StudyNotFoundError, UnknownTrialError: no such study or trial.
            TrialFinishedError: the trial has already finished.
        """
        if not self.allow_stop:
            raise StopNotAllowedError(
                "this dashboard is read-only: start it with allow_stop=True "
                "(poptune dashboard --allow-stop) to stop trials"
            )
        with self._view(name) as view:
            trial = view.history.get(trial_id)
            if trial is None:
                raise UnknownTrialError(f"trial {trial_id!r} does not exist in study {name!r}")
            if trial.is_finished:
                raise TrialFinishedError(
                    f"trial {trial_id} of study {name!r} has already finished ({trial.status})"
                )
            self.storage.request_stop(view.study_id, trial_id)


def _summary(view: _StudyView, storage: Storage) -> dict[str, Any]:
    counts = dict.fromkeys(_STATUSES, 0)
    for trial in view.history:
        counts[trial.status.value] += 1
    algorithm = view.config.get("algorithm")
    # ranked as get_best_result ranks: from the trials and the stored state, no algorithm built
    best_trial = _best_trial(view.history, storage.get_algorithm_state(view.study_id), algorithm)
    best = None if best_trial is None else best_trial.best_observation(view.lower_is_better)
    return {
        "name": view.name,
        "direction": "minimize" if view.lower_is_better else "maximize",
        "algorithm": _algorithm_name(algorithm),
        "trials": view.history.n_trials,
        "counts": counts,
        "best": None if best is None else _number(best.objective),
        "best_trial": None if best_trial is None else best_trial.id,
        "version": view.version,
        "pbt": is_pbt(view.history, view.history.parameter_names),
    }


def _algorithm_name(config: Any) -> str:
    if isinstance(config, dict):
        cls = config.get("type")  # what _config.to_config writes: "Name" or "module:Class"
        if isinstance(cls, str):
            return cls.rsplit(":", 1)[-1].rsplit(".", 1)[-1]
    return str(config) if config is not None else ""


def _trial_dict(view: _StudyView, trial: Trial, observations: bool = True) -> dict[str, Any]:
    lower = view.lower_is_better
    last = trial.last_observation
    best = trial.best_observation(lower)
    observed = trial.observations
    out = {
        "id": trial.id,
        "status": trial.status.value,
        "parameters": {k: _jsonable(v) for k, v in view.history.hyperparameters(trial).items()},
        "generation": trial.generation,
        "member": trial.member,
        "parent": parent_id(trial),
        "load_from": trial.load_from,
        "lineage": trial.ancestors if trial.lineage else [],
        "explore": trial.explore,
        "meta": {k: _jsonable(trial.meta[k]) for k in _META_SHOWN if k in trial.meta},
        "stop_requested": bool(trial.stop_requested),
        "iterations": len(observed),
        "last": None if last is None else _number(last.objective),
        "best": None if best is None else _number(best.objective),
    }
    if observations:
        out["observations"] = [[it, _number(observed[it].objective)] for it in sorted(observed)]
    return out


def _curve(view: _StudyView, trial: Trial, max_points: int) -> dict[str, Any]:
    observed = trial.observations
    iterations = sorted(observed)
    if len(iterations) > max_points:
        best = trial.best_observation(view.lower_is_better)
        step = (len(iterations) - 1) / (max_points - 2)
        keep = {iterations[round(i * step)] for i in range(max_points - 1)}
        keep.add(iterations[-1])
        if best is not None:
            keep.add(best.iteration)
        iterations = sorted(keep)
    best_obs = trial.best_observation(view.lower_is_better)
    parent = parent_id(trial)
    before = None if parent is None else view.history.get(parent)
    start = None if before is None else before.last_observation
    return {
        "id": trial.id,
        "status": trial.status.value,
        "member": trial.member,
        "generation": trial.generation,
        "parent": parent,
        "start": None if start is None else [start.iteration, _number(start.objective)],
        "best": None if best_obs is None else _number(best_obs.objective),
        "observations": [[it, _number(observed[it].objective)] for it in iterations],
    }


def _lines_of(view: _StudyView, best: Trial, most: int) -> list[Trial]:
    """``best`` and its ancestors with observations, newest first, at most ``most``."""
    line: list[Trial] = []
    current: Trial | None = best
    while current is not None and len(line) < most:
        if current.observations:
            line.append(current)
        parent = parent_id(current)
        current = None if parent is None else view.history.get(parent)
    return line


def _sort_value(view: _StudyView, trial: Trial, key: str) -> Any:
    if key == "id":
        return trial.id
    if key == "status":
        return trial.status.value
    if key in ("generation", "member"):
        return getattr(trial, key)
    if key == "iterations":
        return len(trial.observations)
    if key in ("last", "best"):
        obs = trial.last_observation if key == "last" else trial.best_observation(
            view.lower_is_better)  # fmt: skip
        return None if obs is None else _number(obs.objective)
    return _jsonable(trial.parameters.get(key))


def _sorted(view: _StudyView, trials: list[Trial], key: str, descending: bool) -> list[Trial]:
    """``trials`` by ``key`` (numbers before text), those without a value last in either
    order, ties by id."""
    numbers, texts, missing = [], [], []
    for trial in trials:
        value = _sort_value(view, trial, key)
        if value is None:
            missing.append(trial)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            numbers.append((value, trial))
        else:
            texts.append((str(value), trial))
    out: list[Trial] = []
    for group in (numbers, texts):
        group.sort(key=lambda pair: pair[1].id)
        group.sort(key=lambda pair: pair[0], reverse=descending)  # stable: ties stay by id
        out.extend(trial for _, trial in group)
    out.extend(sorted(missing, key=lambda t: t.id))
    return out


def _jsonable_tree(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable_tree(v) for v in value]
    return _jsonable(value)
