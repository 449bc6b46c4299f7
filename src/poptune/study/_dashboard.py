"""The dashboard lifecycle of a Study: ``Study(dashboard_port=...)``, ``start_dashboard``,
``load_dashboard`` and ``run_dashboard``. (:mod:`poptune.dashboard` imports its extra,
``poptune[dashboard]``, only when a server starts; this module imports
:mod:`poptune.dashboard` itself only when one is asked for: it brings asyncio and the plot
package, some 6,000 objects the cyclic GC would track in every study that starts no
dashboard; see ``docs/topics/memory-floor.md``.)"""

from __future__ import annotations

import importlib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from poptune.exceptions import ConfigurationError, MissingDependencyError, StudyNotFoundError
from poptune.storage import resolve
from poptune.study import _saved
from poptune.study._open import read_only

if TYPE_CHECKING:
    from poptune.study.study import Study

__all__ = ["close_for_study", "load", "open_for_dashboard", "restart", "run", "start_for_study"]

logger = logging.getLogger("poptune.dashboard")


def start_dashboard(*args: Any, **kwargs: Any) -> Any:
    """:func:`poptune.dashboard.start_dashboard`, the package imported now (see above)."""
    return importlib.import_module("poptune.dashboard").start_dashboard(*args, **kwargs)


def run_dashboard(*args: Any, **kwargs: Any) -> Any:
    """:func:`poptune.dashboard.run_dashboard`, the package imported now (see above)."""
    return importlib.import_module("poptune.dashboard").run_dashboard(*args, **kwargs)


def start_for_study(study: Study, port: int, host: str = "127.0.0.1", keep: bool = False) -> Any:
    """``Study(dashboard_port=..., keep_dashboard=...)``: start the dashboard, or warn and go
    on without it (a training script should not die because the port is taken or the extra
    is missing)."""

    try:
        return start_dashboard(
            study._storage, port=port, host=host, study_name=study.name, keep=keep
        )
    except (ConfigurationError, MissingDependencyError) as exc:
        logger.warning("poptune: dashboard not started: %s", exc)
        return None


def restart(study: Study, port: int, host: str, allow_stop: bool) -> str:
    """``Study.start_dashboard``: stop the one this object started, start another."""

    if study._dashboard is not None:
        study._dashboard.stop()
        study._dashboard = None
    study._dashboard = start_dashboard(
        study._storage, port=port, host=host, allow_stop=allow_stop, study_name=study.name,
        keep=getattr(study, "keep_dashboard", False),
    )  # fmt: skip
    return str(study._dashboard.url)


def close_for_study(study: Study) -> None:
    """``Study.close``: stop the dashboard this object started; one started with
    ``keep_dashboard=True`` first serves on, printing its URL, until Ctrl-C."""
    server, study._dashboard = study._dashboard, None
    if server is None:
        return
    if server.keep:
        server.keep_serving()
    else:
        server.stop()


def load(
    cls: type[Study],
    path: str | os.PathLike[str],
    study_name: str | None,
    port: int,
    host: str,
    allow_stop: bool,
) -> Study:
    """``Study.load_dashboard``."""

    study = open_for_dashboard(cls, path, study_name, writable=allow_stop)
    study._dashboard = start_dashboard(
        study._storage, port=port, host=host, allow_stop=allow_stop, study_name=study.name
    )
    return study


def run(
    cls: type[Study],
    path: str | os.PathLike[str],
    study_name: str | None,
    port: int,
    host: str,
    allow_stop: bool,
    banner: Any,
) -> None:
    """``Study.run_dashboard``."""

    study = open_for_dashboard(cls, path, study_name, writable=allow_stop)
    run_dashboard(study._storage, port=port, host=host, allow_stop=allow_stop,
                  study_name=study.name, banner=banner)  # fmt: skip


def open_for_dashboard(
    cls: type[Study], path: str | os.PathLike[str], study_name: str | None, writable: bool = False
) -> Study:
    """A read-only study from a saved directory (or its ``.json``), or from a database URL or
    an SQLite file (:func:`poptune.storage.resolve`, never creating one; opened read-only
    unless ``writable``, which the Stop buttons need). No user module is imported."""
    text = os.fspath(path)
    if "://" not in text and (Path(text).is_dir() or text.endswith(".json")):
        study = _saved.load(cls, text, None, None, read_only=True)
        study._read_only = True
        return study
    if "://" not in text and not Path(text).is_file():
        raise StudyNotFoundError(f"no saved study, database URL or SQLite file at {text!r}")
    storage = resolve(text, must_exist=True, read_only=not writable)
    if study_name is None:
        names = storage.list_studies()
        if len(names) != 1:
            raise StudyNotFoundError(f"{text} holds {len(names)} studies {names}: pass study_name")
        study_name = names[0]
    return read_only(cls, storage, study_name)
