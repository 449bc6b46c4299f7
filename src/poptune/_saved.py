"""Saving a study to a directory and reading it back (``Study.save`` / ``Study.load``).

``study.json`` holds everything needed to resume: the configuration (parameters, algorithm,
direction, seed), the algorithm's JSON state and every trial with its observations.
``results.csv`` is SHERPA's results table, for people and spreadsheets.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from poptune.exceptions import StorageError, StudyMismatchError, StudyNotFoundError
from poptune.trial import Trial, TrialStatus

FORMAT = "poptune.study"
VERSION = 1


def write_saved(
    target: Path,
    *,
    name: str,
    config: Mapping[str, Any],
    algorithm_state: Mapping[str, Any],
    trials: Iterable[Trial],
    results: pd.DataFrame,
) -> Path:
    """Write ``study.json`` and ``results.csv`` into ``target`` (created), atomically each."""
    target.mkdir(parents=True, exist_ok=True)
    try:
        payload = json.dumps(
            {
                "format": FORMAT,
                "version": VERSION,
                "name": name,
                "config": config,
                "algorithm_state": algorithm_state,
                "trials": [t.to_dict() for t in trials],
            },
            allow_nan=False,
        )
    except (TypeError, ValueError) as exc:
        raise StorageError(f"cannot save study {name!r} as JSON: {exc}") from None
    write_atomic(target / "study.json", payload)
    write_atomic(target / "results.csv", results.to_csv(index=False))
    return target


def read_saved(path: str | os.PathLike[str]) -> tuple[Path, dict[str, Any]]:
    """Read and check a saved study; return its file and its content.

    Raises:
        StudyNotFoundError: no saved study at ``path``.
        StudyMismatchError: not a poptune study, or a newer format.
    """
    file = Path(path)
    if file.is_dir():
        file = file / "study.json"
    if not file.is_file():
        raise StudyNotFoundError(f"no saved study at {str(path)!r} (looked for {file})")
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise StudyMismatchError(f"{file} is not a readable poptune study: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise StudyMismatchError(f"{file} is not a poptune study file")
    if data.get("version", 0) > VERSION:
        raise StudyMismatchError(
            f"{file} has format version {data['version']}; this poptune reads up to "
            f"{VERSION}: upgrade poptune"
        )
    return file, data


def saved_trials(data: Mapping[str, Any]) -> tuple[list[Trial], list[int]]:
    """The saved trials, with those that were running marked FAILED (and their ids)."""
    trials = [Trial.from_dict(record) for record in data["trials"]]
    last_seq = max(
        [t.finished_seq for t in trials] + [rec[2] for t in trials for rec in t._obs.values()],
        default=0,
    )
    interrupted = []
    for trial in trials:
        if trial.status is TrialStatus.RUNNING:
            interrupted.append(trial.id)
            last_seq += 1
            trial.status = TrialStatus.FAILED
            trial.finished_seq = last_seq
            trial.meta["interrupted"] = True
    return trials, interrupted


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
