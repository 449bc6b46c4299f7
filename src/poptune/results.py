"""The SHERPA-shaped results table, the best result and the ranking that picks it, built on
demand in one place, from the history and the stored algorithm state (never by rebuilding the
study's algorithm).

Columns, in order: ``Trial-ID``, ``Status``, ``Iteration``, the trials' parameter keys sorted,
``Objective``, the context keys sorted. One ``INTERMEDIATE`` row per observation, and for each
finalized trial one row with its final status carrying its best objective (and that
observation's context) with ``Iteration`` set to the trial's highest iteration. A trial
finalized as FAILED or STOPPED without any observation gets a final row with ``Iteration`` 0
and a NaN ``Objective``. Rows are in the order the events happened.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from poptune._groups import RESULT_GROUPS, best_group
from poptune.exceptions import ConfigurationError
from poptune.history import History
from poptune.parameters import Continuous, Discrete, Parameter
from poptune.trial import _FINISHED, Observation, Trial, TrialStatus

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "RESERVED_COLUMNS",
    "RESULT_GROUPS",
    "ResultsTable",
    "best_result",
    "best_trial",
    "history_from_results",
    "read_results",
    "result_groups",
    "results_dataframe",
]

RESERVED_COLUMNS = ("Trial-ID", "Status", "Iteration", "Objective")
_EMPTY: dict[str, Any] = {}


def _pandas() -> Any:
    """pandas, imported when a table is first built: ``import poptune`` does not pay for it."""
    import pandas

    return pandas


def results_dataframe(trials: Iterable[Trial], lower_is_better: bool) -> pd.DataFrame:
    """Build the results DataFrame (see the module docstring)."""
    rows: list[tuple[int, int, str, int, dict[str, Any], float, dict[str, Any]]] = []
    param_keys: set[str] = set()
    context_keys: set[str] = set()
    for trial in trials:
        params = trial.parameters
        param_keys.update(params)
        tid = trial.id
        for it, (objective, items, seq) in trial._obs.items():
            context = dict(items) if items else _EMPTY
            rows.append((seq, tid, "INTERMEDIATE", it, params, objective, context))
            if items:
                context_keys.update(context)
        if trial.status in _FINISHED:
            best = trial.best_observation(lower_is_better)
            if best is None:
                rows.append((trial.finished_seq, tid, trial.status.value, 0, params, math.nan,
                             _EMPTY))  # fmt: skip
            else:
                rows.append((trial.finished_seq, tid, trial.status.value, max(trial._obs), params,
                             best.objective, best.context))  # fmt: skip
    rows.sort(key=lambda r: r[0])
    params_sorted = sorted(param_keys)
    context_sorted = sorted(context_keys)
    columns: dict[str, list[Any]] = {
        "Trial-ID": [r[1] for r in rows],
        "Status": [r[2] for r in rows],
        "Iteration": [r[3] for r in rows],
    }
    for key in params_sorted:
        columns[key] = [r[4].get(key) for r in rows]
    columns["Objective"] = [r[5] for r in rows]
    for key in context_sorted:
        columns[key] = [r[6].get(key) for r in rows]
    frame = _pandas().DataFrame(columns)
    frame["Objective"] = frame["Objective"].astype(float)
    return frame


def result_groups(
    state: Mapping[str, Any], algorithm: Mapping[str, Any] | None = None
) -> list[list[int]] | None:
    """The groups of trial ids the study is ranked by, or None (rank single trials).

    ``state[RESULT_GROUPS]`` (``'result_groups'``: each list the trials of one configuration,
    written by ``Repeat``) when the study's algorithm ``state`` holds it. A state
    stored before that key existed has it derived when ``algorithm`` (the stored algorithm
    config) is a top-level ``{'type': 'Repeat', 'agg': True, ...}``: its configurations with
    ``num_times`` trials, from ``state['groups']``, as that version ranked them. (Such a
    ``Repeat`` inside a ``Chain`` was then ranked by single trials, and still is until it
    suggests again.)
    """
    groups = state.get(RESULT_GROUPS)
    if groups is not None:
        return groups  # type: ignore[no-any-return]
    if (
        isinstance(algorithm, Mapping)
        and algorithm.get("type") == "Repeat"
        and algorithm.get("agg") is True
    ):
        n = algorithm.get("num_times", 5)
        return [g for g in state.get("groups", []) if len(g) >= n]
    return None


def best_trial(
    history: History, state: Mapping[str, Any], algorithm: Mapping[str, Any] | None = None
) -> Trial | None:
    """The trial :meth:`~poptune.Study.get_best_result` and the dashboard report.

    SHERPA's definition under ``Repeat`` (``agg`` True or False): the best configuration by
    the mean of its repeats, among those whose repeats have all finished.

    Without :func:`result_groups` (``state``: the study's algorithm state, ``algorithm``: its
    stored config), the COMPLETED trial holding the best single observation
    (:meth:`History.best_trial`). With them, the best configuration by the mean over its
    COMPLETED trials, once all of its trials have finished: a trial with the id, parameters
    and meta of the group's first trial, and one observation carrying the mean and the
    context ``ObjectiveVar``, ``ObjectiveCount`` and ``ObjectiveStdErr`` (ties: the one whose
    last trial finished first). Trials in no group are not ranked then.
    """
    groups = result_groups(state, algorithm)
    if groups is None and isinstance(algorithm, Mapping) and algorithm.get("type") == "Repeat":
        # Repeat(agg=False) stored before it published its groups: found from the meta
        found: dict[int, list[int]] = {}
        for trial in history:
            group = trial.meta.get("repeat_group")
            if isinstance(group, int):
                found.setdefault(group, []).append(trial.id)
        n = algorithm.get("num_times", 5)
        groups = [g for g in found.values() if len(g) >= n]
    if groups is None:
        return history.best_trial()
    return best_group(groups, history.get, history.lower_is_better)


def best_result(trial: Trial | None, lower_is_better: bool) -> dict[str, Any]:
    """The best observation of ``trial`` as a flat dict, ``{}`` for None.

    Keys: ``Trial-ID``, ``Iteration``, every key of ``trial.parameters``, ``Objective`` and the
    observation's context keys.
    """
    obs = None if trial is None else trial.best_observation(lower_is_better)
    if trial is None or obs is None:
        return {}
    out: dict[str, Any] = {"Trial-ID": trial.id, "Iteration": obs.iteration}
    out.update(trial.parameters)
    out["Objective"] = obs.objective
    out.update(obs.context)
    return out


def read_results(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a ``results.csv`` written by :meth:`~poptune.Study.save` back with its types.

    A plain ``pd.read_csv`` turns the empty ``load_from`` and ``lineage`` of PBT founders into
    NaN and then ``load_from`` into floats (``17.0``); here they stay str (``''``, ``'17'``).
    """
    text_columns = ("load_from", "save_to", "lineage")
    frame = _pandas().read_csv(path, dtype=dict.fromkeys(text_columns, str))
    for column in text_columns:
        if column in frame:
            frame[column] = frame[column].fillna("")
    return frame


# -- SHERPA's algorithm protocol: the table a SHERPA-style algorithm reads, and back ----------
_FINAL_STATUSES = {s.value for s in _FINISHED}
#: One row of the table: trial id, status, iteration, parameters, objective, context.
_Row = tuple[int, str, int, Mapping[str, Any], float, Mapping[str, Any]]


class ResultsTable:
    """The results DataFrame of a history, kept up to date incrementally: what a SHERPA-style
    algorithm (one that implements ``get_suggestion(parameters, results, lower_is_better)``)
    receives at each suggestion.

    Each :meth:`frame` call appends only the rows of what changed since the previous call:
    the observations and final statuses of the trials that were unfinished then, and of the
    trials created since (for a base :class:`History`, O(unfinished + new trials)); the rows
    are kept as columns, and the DataFrame is made from them only when rows were added (the
    same object is returned otherwise). The rows are those :func:`results_dataframe` gives,
    in the same order, with ``Trial-ID``, ``Status``, ``Iteration``, the parameter keys sorted,
    ``Objective`` and the context keys sorted. A table shown another study's history starts
    over.
    """

    __slots__ = ("_columns", "_context", "_frame", "_next", "_open", "_params", "_source")

    def __init__(self) -> None:
        self._source: object = None
        self._reset()

    def _reset(self) -> None:
        self._columns: dict[str, list[Any]] = {
            "Trial-ID": [], "Status": [], "Iteration": [], "Objective": []
        }  # fmt: skip
        self._params: dict[str, list[Any]] = {}
        self._context: dict[str, list[Any]] = {}
        self._next = 1
        self._open: dict[int, int] = {}  # unfinished trial id -> observations already emitted
        self._frame: pd.DataFrame | None = None

    def __len__(self) -> int:
        return len(self._columns["Trial-ID"])

    def _append(self, row: _Row) -> None:
        tid, status, iteration, params, objective, context = row
        n = len(self)
        columns = self._columns
        columns["Trial-ID"].append(tid)
        columns["Status"].append(status)
        columns["Iteration"].append(iteration)
        columns["Objective"].append(objective)
        for store, values in ((self._params, params), (self._context, context)):
            for key in values:
                if key not in store:
                    store[key] = [None] * n
            for key, column in store.items():
                column.append(values.get(key))

    def follows(self, history: History) -> bool:
        """Whether this table was last made from ``history``'s study (and kind of view)."""
        source = self._source
        return (
            source is not None
            and source[0] is type(history)  # type: ignore[index]
            and source[1] is history._trials  # type: ignore[index]
            and history.next_trial_id >= self._next
        )

    def frame(self, history: History) -> pd.DataFrame:
        """The results DataFrame of ``history`` now (the same object while nothing changed;
        with a column per study parameter even before the first row)."""
        if not self.follows(history):
            self._reset()
            self._source = (type(history), history._trials)
            for name in history.parameter_names:
                self._params[name] = []
        lower = history.lower_is_better
        rows: list[tuple[int, _Row]] = []
        for tid in [*self._open, *range(self._next, history.next_trial_id)]:
            trial = history.get(tid)
            if trial is None:
                continue
            emitted = self._open.pop(tid, 0)
            params = trial.parameters
            if not emitted:  # its parameters are columns even before it has a row
                for key in params:
                    if key not in self._params:
                        self._params[key] = [None] * len(self)
            obs = trial.observations
            for k, (it, o) in enumerate(obs.items()):
                if k >= emitted:
                    rows.append((o.seq, (tid, "INTERMEDIATE", it, params, o.objective, o.context)))
            if trial.is_finished:
                best = trial.best_observation(lower)
                if best is None:
                    final = (tid, trial.status.value, 0, params, math.nan, _EMPTY)
                else:
                    final = (tid, trial.status.value, max(obs), params, best.objective,
                             best.context)  # fmt: skip
                rows.append((trial.finished_seq, final))
            else:
                self._open[tid] = len(obs)
        self._next = max(self._next, history.next_trial_id)
        if rows or self._frame is None:
            rows.sort(key=lambda r: r[0])
            start, names = len(self), (len(self._params), len(self._context))
            for _, row in rows:
                self._append(row)
            frame = self._frame
            if frame is None or names != (len(self._params), len(self._context)):
                self._frame = self._build(0)  # a new column: the whole table again
            elif len(self) > start:
                # only the new rows are converted; concat copies the old ones in C
                self._frame = self._extend(frame, start)
        return self._frame

    def _extend(self, frame: pd.DataFrame, start: int) -> pd.DataFrame:
        """``frame`` (rows before ``start``) and the rows from ``start``, with the dtypes the
        whole table built at once would have (else built at once)."""
        tail = self._build(start)
        tail.index = _pandas().RangeIndex(start, len(self))
        if not start:
            return tail
        for name in tail.columns:
            old, new = frame[name].dtype, tail[name].dtype
            if old == new:
                continue
            if tail[name].isna().all() and old.kind in "fO":  # gaps only: NaN or None
                tail[name] = tail[name].astype(old)
            else:
                return self._build(0)
        return _pandas().concat([frame, tail])

    def _build(self, start: int) -> pd.DataFrame:
        """The DataFrame of rows ``start`` onwards."""
        columns = self._columns
        out: dict[str, Any] = {
            "Trial-ID": columns["Trial-ID"][start:],
            "Status": columns["Status"][start:],
            "Iteration": columns["Iteration"][start:],
        }
        for key in sorted(self._params):
            out[key] = self._params[key][start:]
        out["Objective"] = columns["Objective"][start:]
        for key in sorted(self._context):
            out[key] = self._context[key][start:]
        frame = _pandas().DataFrame(out)
        frame["Objective"] = frame["Objective"].astype(float)
        return frame


def _plain(value: Any) -> Any:
    """A DataFrame cell as a plain Python value (numpy scalars unwrapped)."""
    return value.item() if isinstance(value, np.generic) else value


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _typed(parameter: Parameter, value: Any) -> Any:
    """A parameter's value read from a table, in its own type (a column with a gap turns
    SHERPA's Discrete values into floats)."""
    if isinstance(parameter, Discrete) and isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(parameter, Continuous) and isinstance(value, int):
        return float(value)
    return value


def history_from_results(
    results: pd.DataFrame | None,
    parameters: Iterable[Parameter],
    lower_is_better: bool,
    suggested: Mapping[int, tuple[Mapping[str, Any], Mapping[str, Any]]] | None = None,
    extra_keys: Iterable[str] = (),
) -> History:
    """A :class:`History` read from SHERPA's results DataFrame (what a stand-alone
    ``algorithm.get_suggestion(parameters, results, lower_is_better)`` call is given).

    Rows are grouped by ``Trial-ID``. ``INTERMEDIATE`` rows are observations (``Iteration``,
    ``Objective``; without an ``Iteration`` column, 1, 2, ... in row order); a row with a
    final status (``COMPLETED``, ``FAILED``, ``STOPPED``) gives the trial its status, and is an
    observation itself only for a trial without ``INTERMEDIATE`` rows (a hand-built table of
    final rows); a trial without a final row is RUNNING. Without a ``Status`` column every row
    is a COMPLETED trial's. A column is a parameter when it names one of ``parameters`` or
    ``extra_keys`` (an algorithm's bookkeeping keys, e.g. PBT's ``generation``), else context;
    empty cells (NaN) are left out, numpy scalars become Python ones, and a Discrete value read
    as a float becomes an int again.

    ``suggested`` maps trial ids to the (parameters, meta) an algorithm suggested under them:
    their meta (and any parameter the table lacks) is added to the table's trial, and those
    not in the table yet are RUNNING trials. ``next_trial_id`` is one more than the highest id.
    """
    params = list(parameters)
    by_name = {p.name: p for p in params}
    keys = set(by_name) | set(extra_keys)
    found: dict[int, dict[str, Any]] = {}
    if results is not None and len(results):
        if "Trial-ID" not in results:
            raise ConfigurationError(
                f"a results table needs a 'Trial-ID' column, got {list(results.columns)!r}"
            )
        columns = list(results.columns)
        skip = set(RESERVED_COLUMNS)
        param_columns = [c for c in columns if c in keys]
        context_columns = [c for c in columns if c not in skip and c not in keys]
        has_status, has_iteration = "Status" in results, "Iteration" in results
        for seq, row in enumerate(results.to_dict("records"), start=1):
            tid = int(row["Trial-ID"])
            entry = found.get(tid)
            if entry is None:
                values = {c: _plain(row[c]) for c in param_columns}
                entry = found[tid] = {
                    "params": {c: _typed(by_name[c], v) if c in by_name else v
                               for c, v in values.items() if not _missing(v)},
                    "obs": [], "final": None,
                }  # fmt: skip
            status = str(row["Status"]) if has_status else "COMPLETED"
            objective = _plain(row.get("Objective", math.nan))
            iteration = int(row["Iteration"]) if has_iteration else len(entry["obs"]) + 1
            context = {c: _plain(row[c]) for c in context_columns if not _missing(row[c])}
            if status == "INTERMEDIATE":
                if not _missing(objective):
                    entry["obs"].append(Observation(iteration, float(objective), context, seq))
            elif status in _FINAL_STATUSES:
                entry["final"] = (status, iteration, objective, context, seq)
    suggested = suggested or {}
    trials = []
    for tid in sorted(set(found) | set(suggested)):
        given_params, meta = suggested.get(tid, ({}, {}))
        entry = found.get(tid)
        if entry is None:
            trials.append(Trial(tid, given_params, TrialStatus.RUNNING, meta))
            continue
        trial = Trial(tid, {**given_params, **entry["params"]}, TrialStatus.RUNNING, meta)
        for observation in entry["obs"]:
            trial._record(observation)
        final = entry["final"]
        if final is not None:
            status, iteration, objective, context, seq = final
            if not entry["obs"] and not _missing(objective):
                trial._record(Observation(iteration, float(objective), context, seq))
            trial.status = TrialStatus(status)
            trial.finished_seq = seq
        trials.append(trial)
    return History.from_trials(params, lower_is_better, trials)
