"""Sending ``study.optimize``'s objective to worker processes and Dask tasks, and the
temporary home of an in-memory study while they run.

An objective that a fresh process can import by name (a function at module level of an
installed module or of the script being run) travels by reference, as pickle sends it. One
that cannot — defined in a notebook cell or an interactive session (``__main__`` without a
file), a lambda, a closure, a function made inside another, or one that Dask workers could not
find in their own ``__main__`` — is serialized by value with cloudpickle (its code and the
values it uses). Either way the worker receives bytes and loads them itself, inside poptune's
code: a failure there is one line naming the objective, not a raw traceback per spawned
process. An objective that cannot be serialized at all (it uses a lock, an open file, a
database connection) is refused before any worker starts, naming the variable at fault.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import pickle
import shutil
import sys
import tempfile
import types
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from poptune.exceptions import ConfigurationError
from poptune.storage import Storage, copy_study, get_storage
from poptune.study._open import config_of

if TYPE_CHECKING:
    from poptune.study._worker import Objective
    from poptune.study.study import Study

__all__ = ["ShippedObjective", "TemporaryHome", "describe", "load_objective", "ship"]

logger = logging.getLogger("poptune")


@dataclass(frozen=True)
class ShippedObjective:
    """An objective on its way to a worker: its pickle (``by_value``: made by cloudpickle)
    and its name for messages. Unpickling this object never fails; :meth:`load` may."""

    name: str
    payload: bytes
    by_value: bool
    kind: str = "objective"  # or "callback": what messages call it

    def load(self) -> Objective:
        """The objective, in the worker. Raises ConfigurationError (one line) when it cannot
        be loaded here (a module missing on this machine, a name not found)."""
        try:
            objective = pickle.loads(self.payload)  # noqa: S301 - our own process sent it
        except Exception as exc:  # noqa: BLE001 - whatever it is, one line naming it
            how = "by value (cloudpickle)" if self.by_value else "by reference (module:name)"
            raise ConfigurationError(
                f"{self.kind} {self.name} could not be loaded in worker process {os.getpid()} "
                f"(sent {how}): {_first_line(exc)}"
            ) from None
        return objective  # type: ignore[no-any-return]


def load_objective(objective: Any) -> Objective:
    """What a worker runs: the loaded objective of a :class:`ShippedObjective`, or ``objective``
    itself (a plan made by hand)."""
    return objective.load() if isinstance(objective, ShippedObjective) else objective  # type: ignore[no-any-return]


def describe(objective: Any) -> str:
    """``'objective' (from __main__)``: the objective's name and module, for messages."""
    target = objective.func if isinstance(objective, functools.partial) else objective
    name = getattr(target, "__qualname__", None) or f"{type(target).__qualname__} instance"
    module = getattr(target, "__module__", None) or type(target).__module__
    return f"{name!r} (from {module})"


def ship(objective: Any, *, remote: bool, kind: str = "objective") -> ShippedObjective:
    """Serialize ``objective`` for worker processes (``remote=False``: spawned on this
    machine, which re-import the script being run) or Dask tasks (``remote=True``).

    By reference when every module it names can be imported by name there; by value
    (cloudpickle) otherwise. Raises ConfigurationError (one line, naming the objective and the
    value at fault) when neither works. ``kind``: what it is called in messages (a study
    callback travels the same way)."""
    name = describe(objective)
    problem = _by_reference_problem(objective, remote)
    if problem is None:
        return ShippedObjective(name, pickle.dumps(objective), False, kind)
    try:
        import cloudpickle
    except ImportError:
        raise ConfigurationError(
            f"{kind} {name} cannot be sent to worker processes by name ({problem}) and "
            "cloudpickle, which sends it by value, is not installed: pip install cloudpickle"
        ) from None
    try:
        payload = cloudpickle.dumps(objective)
    except Exception as exc:  # noqa: BLE001 - any failure means the same to the user
        culprit = _culprit(objective, cloudpickle.dumps)
        raise ConfigurationError(
            f"{kind} {name} cannot be sent to worker processes: {culprit}cannot be "
            f"pickled ({_first_line(exc)}); create it inside the objective, or run with "
            "n_workers=1 and no executor"
        ) from None
    logger.debug("poptune: %s %s is sent by value (%s)", kind, name, problem)
    return ShippedObjective(name, payload, True, kind)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _by_reference_problem(objective: Any, remote: bool) -> str | None:
    """Why pickling ``objective`` by reference fails or would fail where it goes (None: it
    works). Protocol 2 names every module in GLOBAL opcodes, which are read here."""
    try:
        data = pickle.dumps(objective, protocol=2)
    except Exception as exc:  # noqa: BLE001 - a lambda, a closure, a local function...
        return _first_line(exc)
    import pickletools  # here: only a study that ships an objective needs it

    for opcode, arg, _ in pickletools.genops(data):
        if opcode.name == "GLOBAL":
            problem = _unimportable(str(arg).split(" ", 1)[0], remote)
            if problem is not None:
                return problem
    return None


def _unimportable(module: str, remote: bool) -> str | None:
    if module in ("__main__", "__mp_main__"):
        if remote:
            return "it is defined in __main__, which Dask workers do not have"
        if _main_is_reimported():
            return None
        return "it is defined in __main__ of an interactive session or notebook"
    loaded = sys.modules.get(module)
    if loaded is not None and getattr(loaded, "__spec__", None) is None:
        if module not in sys.builtin_module_names:
            return f"its module {module!r} was made at run time and cannot be imported"
    return None


def _main_is_reimported() -> bool:
    """Whether a spawned process re-imports this process's ``__main__`` (a script run by
    path or with ``-m``), as ``multiprocessing`` does; not a notebook's or a REPL's."""
    main = sys.modules.get("__main__")
    if main is None:
        return False
    spec = getattr(main, "__spec__", None)
    if spec is not None and getattr(spec, "name", None):
        return not str(spec.name).startswith(("ipykernel", "IPython"))
    path = getattr(main, "__file__", None)
    return bool(path) and str(path).endswith(".py") and os.path.isfile(str(path))


def _culprit(objective: Any, dumps: Any) -> str:
    """``"its variable 'lock' (a _thread.lock) "``: the first value the objective uses that
    cannot be serialized, or ``"it "`` when none is found."""
    target = objective.func if isinstance(objective, functools.partial) else objective
    named: dict[str, Any] = {}
    if isinstance(objective, functools.partial):
        named.update({f"argument {i}": v for i, v in enumerate(objective.args)})
        named.update({f"argument {k!r}": v for k, v in objective.keywords.items()})
    if inspect.isfunction(target) or inspect.ismethod(target):
        function = target.__func__ if inspect.ismethod(target) else target
        try:
            found = inspect.getclosurevars(function)
        except (TypeError, ValueError):
            found = None
        if found is not None:
            named.update({f"variable {k!r}": v for k, v in found.nonlocals.items()})
            named.update({f"global {k!r}": v for k, v in found.globals.items()})
        if inspect.ismethod(target):
            named["its object"] = target.__self__
    elif hasattr(target, "__dict__"):
        named.update({f"attribute {k!r}": v for k, v in vars(target).items()})
    for label, value in named.items():
        if isinstance(value, types.ModuleType):
            continue
        try:
            dumps(value)
        except Exception:  # noqa: BLE001, S112 - this is the one
            what = type(value)
            kind = f"{what.__module__}.{what.__qualname__}".removeprefix("builtins.")
            return f"its {label} (a {kind}) "
    return "it "


def _follow(study: Study, storage: Storage) -> None:
    """Point the dashboard this study object runs (``show_dashboard``, ``dashboard_port``) at
    ``storage``, so that it shows the run live while the study lives in its temporary home."""
    data = getattr(study._dashboard, "data", None)
    if data is not None and hasattr(data, "forget"):
        data.storage = storage
        data.forget(study.name)


class TemporaryHome:
    """Where the worker processes of an ``optimize`` call find the study.

    :meth:`url` is the storage's own URL, or, for a study kept in memory, that of a temporary
    SQLite copy (logged) which the study then works on. :meth:`close` (after the workers
    ended: success, failure or Ctrl-C) copies the study back into its memory storage and
    removes the temporary folder (a dashboard this study object runs follows it there and
    back); should that copy fail, the folder is kept and its path
    logged, as it then holds the only copy of the run.
    """

    def __init__(self, study: Study) -> None:
        self.study = study
        self.directory: str | None = None
        self.memory: Storage | None = None

    def url(self) -> str:
        study = self.study
        url = getattr(study._storage, "url", None)
        if url is not None:
            return str(url)
        # Named for nothing the user chose: a study name like '../../x' must not become a path.
        self.directory = tempfile.mkdtemp(prefix="poptune-")
        weakref.finalize(self, shutil.rmtree, self.directory, True)
        path = Path(self.directory) / "study.db"
        logger.warning(
            "poptune: study %r lives in memory; its worker processes share a temporary SQLite "
            "file, %s, removed when they are done (pass storage='sqlite:///...' to choose "
            "where it lives)",
            study.name,
            path,
        )
        url = f"sqlite:///{path}"
        with study._lock:
            config = config_of(study, strict=True, seed=study.seed)
            new_id = copy_study(study._storage, study._study_id, url, name=study.name,
                                config=config)  # fmt: skip
            self.memory = study._storage
            study._rebind(get_storage(url), new_id)
            _follow(study, study._storage)
        return url

    def close(self) -> None:
        if self.directory is None or self.memory is None:
            return
        study, memory, shared = self.study, self.memory, self.study._storage
        try:
            with study._lock:
                if study._heartbeat is not None:
                    study._heartbeat.stop()
                memory.delete_study(study.name)
                new_id = copy_study(shared, study._study_id, memory, name=study.name)
                study._rebind(memory, new_id)
                _follow(study, memory)
        except BaseException:
            logger.warning(
                "poptune: study %r could not be copied back into memory; it is kept in %s",
                study.name,
                self.directory,
            )
            raise
        close = getattr(shared, "close", None)
        if callable(close):
            close()
        shutil.rmtree(self.directory, ignore_errors=True)
        self.directory = None
