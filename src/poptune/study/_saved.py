"""Saving a study to a directory and reading it back: the bodies of ``Study.save`` and
``Study.load``.

``study.json`` holds everything needed to resume: the configuration (parameters, algorithm,
direction, seed), the algorithm's JSON state, every trial with its observations, and the
study object's checkpoint settings (``options``: ``checkpoint_dir`` as an absolute path and
``keep_checkpoints``; never ``allow_pickle``, a trust decision each process makes).
``results.csv`` is SHERPA's results table, for people and spreadsheets.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from poptune._config import (
    BUILTIN_STOPPING_RULES,
    check_trusted_modules,
    object_from_config,
    trusting,
)
from poptune.algorithms.base import Algorithm, algorithm_from_config
from poptune.exceptions import (
    ConfigurationError,
    InvalidParameterError,
    StorageError,
    StudyMismatchError,
    StudyNotFoundError,
)
from poptune.parameters import Parameter
from poptune.results import results_dataframe
from poptune.stopping import StoppingRule
from poptune.study._open import LAYOUT_KEY, _StoredAlgorithm, config_of
from poptune.trial import Trial, TrialStatus

if TYPE_CHECKING:
    import pandas as pd

    from poptune.study.study import Study

__all__ = [
    "load",
    "read_saved",
    "save",
    "saved_options",
    "saved_trials",
    "write_atomic",
    "write_saved",
]

logger = logging.getLogger("poptune")

FORMAT = "poptune.study"
VERSION = 1


def save(study: Study, output_dir: str | os.PathLike[str] | None) -> Path:
    """``Study.save``: write ``study.json`` and ``results.csv``; return the directory."""
    target = Path(output_dir) if output_dir is not None else study.output_dir
    if target is None:
        raise ConfigurationError("save() needs a directory: pass output_dir here or to Study(...)")
    try:
        config = config_of(study, strict=True, seed=study.seed)
    except InvalidParameterError as exc:
        raise StorageError(f"cannot save study {study.name!r} as JSON: {exc}") from None
    with study._lock:
        history = study.history
        return write_saved(
            target,
            name=study.name,
            config=config,
            algorithm_state=study._storage.get_algorithm_state(study._study_id),
            trials=history,
            results=results_dataframe(history, study.lower_is_better),
            options=saved_options(study),
        )


def saved_options(study: Study) -> dict[str, Any]:
    """The study object's settings that ``Study.load`` restores."""
    directory = study.checkpoint_dir
    if isinstance(directory, Path):  # a URL (a str) is kept as it is
        directory = str(directory.resolve())
    return {
        "checkpoint_dir": directory,
        "keep_checkpoints": study.keep_checkpoints,
    }


def _loaded_options(file: Path, data: Mapping[str, Any]) -> dict[str, Any]:
    """The saved ``options`` (absent in files of older versions: none), checked."""
    options = data.get("options") or {}
    directory = options.get("checkpoint_dir") if isinstance(options, dict) else None
    keep = options.get("keep_checkpoints") if isinstance(options, dict) else None
    if not isinstance(options, dict) or not isinstance(directory, (str, type(None))):
        raise StudyMismatchError(f"{file}: options {options!r} are not valid")
    if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int)):
        raise StudyMismatchError(f"{file}: keep_checkpoints {keep!r} is not an int")
    return {"checkpoint_dir": directory, "keep_checkpoints": keep if directory else None}


def load(
    cls: type[Study],
    path: str | os.PathLike[str],
    algorithm: Algorithm | None,
    stopping_rule: StoppingRule | None,
    trusted_modules: Sequence[str] | None = None,
    allow_pickle: bool = False,
    *,
    read_only: bool = False,
) -> Study:
    """``Study.load``: a new ``cls`` in memory holding the saved trials and algorithm state
    (a saved custom algorithm is imported only from ``trusted_modules``), with the saved
    checkpoint settings and this caller's ``allow_pickle``. ``read_only`` (the
    dashboard): import nothing but poptune's own; a custom algorithm is kept as its config,
    a custom stopping rule left out."""
    file, data = read_saved(path)
    options = _loaded_options(file, data)
    config = data["config"]
    trusted = check_trusted_modules("Study.load", trusted_modules)
    with trusting(trusted, replace=read_only):
        try:
            if algorithm is None:
                algorithm = algorithm_from_config(config["algorithm"])
            if stopping_rule is None and config.get("stopping_rule"):
                stopping_rule = object_from_config(
                    config["stopping_rule"], BUILTIN_STOPPING_RULES, StoppingRule
                )
        except ConfigurationError:
            if not read_only:
                raise
            if algorithm is None:
                algorithm = _StoredAlgorithm(config["algorithm"])
    study = cls(
        [Parameter.from_dict(d) for d in config["parameters"]],
        algorithm,
        config["lower_is_better"],
        stopping_rule=stopping_rule,
        output_dir=file.parent,
        seed=config["seed"],
        rng_stream=config.get("rng_stream", 1),  # saved before streams had versions: 1
        study_name=data.get("name"),
        trusted_modules=trusted_modules,
        allow_pickle=allow_pickle,
        **options,
    )
    if LAYOUT_KEY not in config:  # saved before checkpoints got a folder per study
        study._legacy_checkpoints = True  # type: ignore[attr-defined]
    trials, interrupted = saved_trials(data)
    with study._writing():
        for trial in trials:  # saved ids are dense from 1: each is the next id (checked)
            study._append(lambda _next_id, saved=trial: saved)
        study._storage.set_algorithm_state(study._study_id, data.get("algorithm_state") or {})
    if interrupted:
        logger.warning(
            "poptune: trial(s) %s were running when study %r was saved; marked FAILED",
            interrupted,
            study.name,
        )
    return study


def write_saved(
    target: Path,
    *,
    name: str,
    config: Mapping[str, Any],
    algorithm_state: Mapping[str, Any],
    trials: Iterable[Trial],
    results: pd.DataFrame,
    options: Mapping[str, Any] | None = None,
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
                "options": dict(options or {}),
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
