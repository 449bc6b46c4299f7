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
from typing import Any

import pandas as pd

from poptune._groups import RESULT_GROUPS, best_group
from poptune.history import History
from poptune.trial import _FINISHED, Trial

__all__ = [
    "RESERVED_COLUMNS",
    "RESULT_GROUPS",
    "best_result",
    "best_trial",
    "read_results",
    "result_groups",
    "results_dataframe",
]

RESERVED_COLUMNS = ("Trial-ID", "Status", "Iteration", "Objective")
_EMPTY: dict[str, Any] = {}


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
    frame = pd.DataFrame(columns)
    frame["Objective"] = frame["Objective"].astype(float)
    return frame


def result_groups(
    state: Mapping[str, Any], algorithm: Mapping[str, Any] | None = None
) -> list[list[int]] | None:
    """The groups of trial ids the study is ranked by, or None (rank single trials).

    ``state[RESULT_GROUPS]`` (``'result_groups'``: each list the trials of one configuration,
    written by ``Repeat(agg=True)``) when the study's algorithm ``state`` holds it. A state
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

    Without :func:`result_groups` (``state``: the study's algorithm state, ``algorithm``: its
    stored config), the COMPLETED trial holding the best single observation
    (:meth:`History.best_trial`). With them, the best configuration by the mean over its
    COMPLETED trials, once all of its trials have finished: a trial with the id, parameters
    and meta of the group's first trial, and one observation carrying the mean and the
    context ``ObjectiveVar``, ``ObjectiveCount`` and ``ObjectiveStdErr`` (ties: the one whose
    last trial finished first). Trials in no group are not ranked then.
    """
    groups = result_groups(state, algorithm)
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
    frame = pd.read_csv(path, dtype=dict.fromkeys(text_columns, str))
    for column in text_columns:
        if column in frame:
            frame[column] = frame[column].fillna("")
    return frame
