"""Opening a study: create-or-join by name, config matching, and the stored-study openers.

:func:`create_or_join` is what ``Study(...)`` runs against its storage: it creates the study
or, when one of that name exists, checks that its configuration matches (:func:`check_same`;
an algorithm config is compared as this version writes it, :func:`normalized`). The bodies of
``load_study`` (:func:`read_only`) and ``join_study`` (:func:`join`) rebuild a study from its
stored configuration; they receive the class to build, so this module never imports the face.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from poptune._config import (
    BUILTIN_STOPPING_RULES,
    check_trusted_modules,
    modules_of_config,
    object_from_config,
    trusting,
)
from poptune._rng import default_seed, stream_for
from poptune._validation import (
    check_bool,
    check_instance,
    check_int,
    check_positive,
    check_str,
)
from poptune.algorithms.base import Algorithm, algorithm_from_config, as_algorithm
from poptune.checkpoints import CheckpointStore, check_location
from poptune.exceptions import (
    CheckpointError,
    ConfigurationError,
    InvalidParameterError,
    PoptuneError,
    ReadOnlyStudyError,
    StudyMismatchError,
    StudyNotFoundError,
)
from poptune.history import History
from poptune.parameters import Parameter
from poptune.results import RESERVED_COLUMNS
from poptune.stopping import StoppingRule
from poptune.storage import MemoryStorage, Storage, get_storage, resolve
from poptune.trial import AlgorithmState

if TYPE_CHECKING:
    from poptune.study.study import Study

__all__ = [
    "LAYOUT_KEY",
    "WorkerOptions",
    "check_arguments",
    "checkpoint_folder",
    "checkpoint_layout",
    "checkpoint_store",
    "check_parameters",
    "check_same",
    "config_of",
    "create_or_join",
    "default_name",
    "join",
    "read_only",
]


@dataclass(frozen=True)
class WorkerOptions:
    """A study object's own settings, checked: not stored with the study (each worker passes
    its own to ``join_study``; ``Study.optimize`` gives its workers the caller's).

    Raises:
        ConfigurationError: a value out of range, ``grace_period`` not longer than
            ``heartbeat_interval``, ``keep_checkpoints`` without a ``checkpoint_dir``.
    """

    heartbeat_interval: float | None = 10.0
    grace_period: float | None = None  # default: 4 x heartbeat_interval
    retry_failed_trials: int = 0
    checkpoint_dir: str | None = None
    keep_checkpoints: int | None = None
    #: modules a stored config may import (see :mod:`poptune._config`); a worker this study
    #: starts (``optimize``) trusts them too.
    trusted_modules: Sequence[str] | None = ()
    allow_pickle: bool = False  # a trust decision of this process: never stored
    #: the checkpoint file system's options (credentials, endpoint): never stored
    checkpoint_options: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        interval = check_positive(
            "Study", "heartbeat_interval", self.heartbeat_interval, allow_none=True
        )
        grace = check_positive("Study", "grace_period", self.grace_period, allow_none=True)
        if grace is None and interval is not None:
            grace = 4.0 * interval
        if interval is not None and grace <= interval:  # type: ignore[operator]
            raise ConfigurationError(
                f"grace_period ({grace!r} s) must be longer than heartbeat_interval "
                f"({interval!r} s)"
            )
        retry = check_int("Study", "retry_failed_trials", self.retry_failed_trials, 0)
        keep = check_int("Study", "keep_checkpoints", self.keep_checkpoints, 0, allow_none=True)
        if keep is not None and self.checkpoint_dir is None:
            raise ConfigurationError("keep_checkpoints needs a checkpoint_dir")
        trusted = check_trusted_modules("Study", self.trusted_modules)
        pickle_ok = check_bool("Study", "allow_pickle", self.allow_pickle)
        options = self.checkpoint_options
        if options is not None and self.checkpoint_dir is None:
            raise ConfigurationError("checkpoint_options needs a checkpoint_dir")
        if self.checkpoint_dir is not None:  # a URL's file system known, options that fit
            check_location(self.checkpoint_dir, options, None)
        options = None if options is None else dict(options)
        checked = {"heartbeat_interval": interval, "grace_period": grace,
                   "retry_failed_trials": retry, "keep_checkpoints": keep,
                   "trusted_modules": trusted, "allow_pickle": pickle_ok,
                   "checkpoint_options": options}  # fmt: skip
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    def as_kwargs(self) -> dict[str, Any]:
        """The keyword arguments a worker joins with."""
        return asdict(self)


def check_arguments(
    algorithm: Any, lower_is_better: Any, stopping_rule: Any, seed: Any, study_name: Any
) -> tuple[Algorithm, bool, int | None]:
    """Check the Study arguments that are not settings; return the algorithm (an object with
    SHERPA's ``get_suggestion`` wrapped in :class:`~poptune.algorithms.base.SherpaAlgorithm`),
    ``lower_is_better`` and ``seed`` as they are used."""
    algorithm = as_algorithm("Study", algorithm)
    lower_is_better = check_bool("Study", "lower_is_better", lower_is_better)
    check_instance(
        "Study", "stopping_rule", stopping_rule, StoppingRule, "a poptune StoppingRule", True
    )
    seed = check_int("Study", "seed", seed, 0, allow_none=True)
    check_str("Study", "study_name", study_name, allow_none=True, nonempty=True)
    return algorithm, lower_is_better, seed


def check_parameters(parameters: Sequence[Parameter]) -> list[Parameter]:
    """The ``parameters`` argument of a Study as a list, or InvalidParameterError."""
    if isinstance(parameters, Parameter) or not isinstance(parameters, Sequence):
        raise InvalidParameterError(
            f"parameters must be a list of Parameter objects, got {parameters!r}"
        )
    seen: set[str] = set()
    for p in parameters:
        if not isinstance(p, Parameter):
            raise InvalidParameterError(
                f"parameters must be Parameter objects (Continuous, Discrete, Choice, "
                f"Ordinal), got {p!r}"
            )
        if p.name in seen:
            raise InvalidParameterError(f"duplicate parameter name {p.name!r}")
        if p.name in RESERVED_COLUMNS:
            raise InvalidParameterError(
                f"parameter name {p.name!r} is reserved for the results table; "
                f"reserved: {list(RESERVED_COLUMNS)}"
            )
        seen.add(p.name)
    return list(parameters)


def config_of(study: Study, strict: bool, seed: int | None) -> dict[str, Any]:
    """The configuration a study is stored with (``strict``: JSON values only, else a
    parameter whose range is not JSON is written as its repr)."""
    params = []
    for p in study.parameters:
        try:
            params.append(p.to_dict())
        except InvalidParameterError:
            if strict:
                raise
            params.append(
                {"name": p.name, "type": p.type, "range": repr(p.range), "scale": p.scale}
            )
    rule = study.stopping_rule
    config = {
        "parameters": params,
        "algorithm": study.algorithm.to_config(),
        "lower_is_better": study.lower_is_better,
        "stopping_rule": None if rule is None else rule.to_config(),
        "seed": seed,
    }
    if hasattr(study, "_rng"):  # a copy or a save keeps the random stream
        config["rng_stream"] = study._rng.stream
    if hasattr(study, "_study_id"):  # a copy or a save keeps where the checkpoints are
        layout = checkpoint_layout(study)
        if layout is not None:
            config[LAYOUT_KEY] = layout
    return config


def create_or_join(study: Study, config: dict[str, Any], seed: int | None) -> tuple[int, int]:
    """Create ``study``'s study in its storage, or join the one stored under its name; return
    its id and seed (:func:`_create_or_join`), and set ``study._rng`` to the random stream of
    the stored study (``config['rng_stream']`` for a new one, 1 for one stored without).
    First the modules of the objects the user passed
    (those the ``config`` they wrote names, already imported) join ``study._options.
    trusted_modules``: a stored config naming them is rebuilt here and in the workers the
    study starts (see :mod:`poptune._config`).

    Raises:
        StudyMismatchError: the stored study's configuration differs.
    """
    options = study._options
    own = sorted(modules_of_config([config.get("algorithm"), config.get("stopping_rule")]))
    trusted = tuple(dict.fromkeys((*options.trusted_modules, *own)))
    study._options = replace(options, trusted_modules=trusted)
    with trusting(trusted):
        if not study.name:  # no study_name given
            study.name = default_name(study._storage, config)
        study_id, chosen = _create_or_join(study._storage, study.name, config, seed)
    study._rng = stream_for(chosen, config["rng_stream"])
    return study_id, chosen


def default_name(storage: Storage, config: Mapping[str, Any]) -> str:
    """The study a ``Study(..., storage=...)`` without ``study_name`` opens, so that running
    the same script again resumes its study:

    * the one study in ``storage`` whose configuration matches (:func:`check_same`: the
      parameters, the algorithm's config, ``lower_is_better``, and the seed when one is
      given), whatever its name;
    * none: ``study-<12 hex digits>``, a hash of those same values (the same in every run
      and process, so concurrent first runs create one study);
    * a :class:`~poptune.storage.MemoryStorage`, which no re-run can see: a random name.

    Raises:
        StudyMismatchError: several stored studies match; the message lists their names
            (pass ``study_name=`` to choose one).
    """
    if isinstance(storage, MemoryStorage):
        return f"study-{uuid.uuid4().hex[:12]}"
    matching = []
    for name in storage.list_studies():
        try:
            check_same(name, storage.get_study_config(storage.get_study_id(name)), config)
        except (StudyMismatchError, StudyNotFoundError):  # another study, or just deleted
            continue
        matching.append(name)
    if len(matching) > 1:
        raise StudyMismatchError(
            f"no study_name given and {len(matching)} studies in this storage match this "
            f"configuration: {sorted(matching)!r}; pass study_name= to choose one (or a new "
            "name for a new study)"
        )
    if matching:
        return matching[0]
    keyed = {key: config.get(key) for key in ("parameters", "algorithm", "lower_is_better")}
    if config.get("seed") is not None:
        keyed["seed"] = config["seed"]
    text = json.dumps(keyed, sort_keys=True, default=repr)
    return f"study-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def _create_or_join(
    storage: Storage, name: str, config: dict[str, Any], seed: int | None
) -> tuple[int, int]:
    """Create the study ``name`` or join the one stored under that name; return its id and
    seed (a new study without ``seed`` draws one from ``poptune.rng``)."""
    for _ in range(2):  # another process may create it between our look and our insert
        try:
            study_id = storage.get_study_id(name)
        except StudyNotFoundError:
            chosen = int(seed) if seed is not None else default_seed()
            stored = {LAYOUT_KEY: PER_STUDY, **config, "seed": chosen}
            try:
                return storage.create_study(name, stored), chosen
            except StudyMismatchError:
                continue
        stored = storage.get_study_config(study_id)
        check_same(name, stored, config)
        config["rng_stream"] = stored.get("rng_stream", 1)  # stored without one: stream 1
        return study_id, int(stored["seed"])
    raise StudyMismatchError(f"study {name!r} could not be created nor found")


def check_same(name: str, stored: Mapping[str, Any], config: Mapping[str, Any]) -> None:
    """Raise StudyMismatchError unless ``config`` matches the ``stored`` one."""
    stored = {**stored, "algorithm": normalized(stored.get("algorithm"))}
    for key in ("parameters", "algorithm", "lower_is_better"):
        if json.dumps(stored.get(key), sort_keys=True, default=repr) != json.dumps(
            config.get(key), sort_keys=True, default=repr
        ):
            raise StudyMismatchError(
                f"study {name!r} already exists with a different {key}: "
                f"stored {stored.get(key)!r}, given {config.get(key)!r}"
            )
    if config.get("seed") is not None and config["seed"] != stored.get("seed"):
        raise StudyMismatchError(
            f"study {name!r} already exists with seed {stored.get('seed')!r}, "
            f"given {config['seed']!r}"
        )


def normalized(config: Any) -> Any:
    """An algorithm config as this version writes it: a study stored before an algorithm got
    a new argument (with a default) still matches."""
    if not isinstance(config, Mapping):
        return config
    try:
        return algorithm_from_config(config).to_config()
    except PoptuneError:  # not importable here: compare it as stored
        return config


class _StoredAlgorithm(Algorithm):
    """Stands in for an algorithm that cannot be rebuilt here (a read-only study needs none)."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self._stored = dict(config)

    def to_config(self) -> dict[str, Any]:
        return dict(self._stored)

    def suggest(self, history: History, rng: np.random.Generator) -> AlgorithmState:
        raise ReadOnlyStudyError("this study's algorithm is not available in this process")


def read_only(
    cls: type[Study],
    storage: Storage | str,
    study_name: str,
    checkpoint_dir: str | os.PathLike[str] | None = None,
) -> Study:
    """``load_study``: a ``cls`` opened read-only from its stored configuration. A storage
    given as text is opened read-only (:func:`poptune.storage.resolve`: nothing created,
    migrated or written). Only poptune's built-in algorithms are rebuilt: any other stored
    ``module:Class`` is kept as data (:class:`_StoredAlgorithm`), never imported."""
    store = (
        storage
        if isinstance(storage, Storage)
        else resolve(storage, must_exist=True, read_only=True)
    )
    config = store.get_study_config(store.get_study_id(study_name))
    parameters = [Parameter.from_dict(d) for d in config["parameters"]]
    try:
        with trusting((), replace=True):  # read means read: import no user module
            algorithm: Algorithm = algorithm_from_config(config["algorithm"])
    except ConfigurationError:  # a custom algorithm: shown as its stored config
        algorithm = _StoredAlgorithm(config["algorithm"])
    study = cls(
        parameters,
        algorithm,
        config["lower_is_better"],
        storage=store,
        study_name=study_name,
        checkpoint_dir=checkpoint_dir,
    )
    study._read_only = True
    return study


def join(cls: type[Study], storage: Storage | str, study_name: str, **options: Any) -> Study:
    """``join_study``: a ``cls`` rebuilt from its stored configuration, with this worker's
    ``options``."""
    store = get_storage(storage)
    config = store.get_study_config(store.get_study_id(study_name))
    stopping = config.get("stopping_rule")
    trusted = check_trusted_modules("join_study", options.get("trusted_modules"))
    with trusting(trusted):
        algorithm = algorithm_from_config(config["algorithm"])
        rule = (
            object_from_config(stopping, BUILTIN_STOPPING_RULES, StoppingRule) if stopping else None
        )
    return cls(
        [Parameter.from_dict(d) for d in config["parameters"]],
        algorithm,
        config["lower_is_better"],
        stopping_rule=rule,
        storage=store,
        study_name=study_name,
        **options,
    )


# -- where a study's checkpoints live -------------------------------------------------------
#: Stored in the configuration of every study created since checkpoints got a folder per
#: study: ``"per-study"``. A study stored without it keeps them directly in ``checkpoint_dir``.
LAYOUT_KEY = "checkpoint_layout"
PER_STUDY = "per-study"
#: In a study's own folder: the study it belongs to (two names one folder: refused).
FOLDER_MARKER = ".poptune-study.json"
#: In a ``checkpoint_dir`` an older study uses directly: that study (a second one: refused).
FLAT_MARKER = ".poptune-flat-study.json"
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")


def checkpoint_store(study: Study) -> CheckpointStore:
    """Open the :class:`~poptune.checkpoints.CheckpointStore` of ``study``'s checkpoints: its
    own folder in ``checkpoint_dir`` (:func:`checkpoint_folder`).

    Raises:
        ConfigurationError: the study has no ``checkpoint_dir``.
        CheckpointError: the folder belongs to another study.
    """
    if study.checkpoint_dir is None:
        raise ConfigurationError(
            f"study {study.name!r} has no checkpoint_dir: pass Study(..., "
            "checkpoint_dir='checkpoints') to use trial checkpoints"
        )
    return CheckpointStore(
        checkpoint_folder(study),
        allow_pickle=study._options.allow_pickle,
        options=study._options.checkpoint_options,
        storage=study._storage,
        study_id=study._study_id,
    )


def checkpoint_layout(study: Study) -> str | None:
    """``"per-study"``, or None for a study created before checkpoints got a folder per study
    (its stored configuration has no :data:`LAYOUT_KEY`; ``Study.load`` of an older save sets
    ``_legacy_checkpoints``)."""
    if getattr(study, "_legacy_checkpoints", False):
        return None
    layout = study._storage.get_study_config(study._study_id).get(LAYOUT_KEY)
    return None if layout is None else str(layout)


def folder_name(name: str) -> str:
    """The folder of study ``name`` inside ``checkpoint_dir``: the name itself when it is a
    plain file name (letters, digits, ``._-``, at most 80, not all digits: a trial's own
    checkpoint is named by digits), else a cleaned name and a hash of the name
    (``my_study-3f2a9c01d4``): a study name is never a path."""
    if _SAFE_NAME.fullmatch(name) and not name.isdigit() and not name.endswith(".tmp"):
        return name
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._-")[:40] or "study"
    return f"{cleaned}-{hashlib.sha256(name.encode()).hexdigest()[:10]}"


def checkpoint_folder(study: Study) -> Path | str:
    """Where ``study``'s checkpoints live: ``<checkpoint_dir>/<folder_name(name)>/``, so two
    studies given one ``checkpoint_dir`` never share a file; a study created before that
    (:func:`checkpoint_layout` None) keeps ``checkpoint_dir`` itself. ``"database://"`` (the
    study's own database) is given as it is. A local folder is claimed for its study by a
    marker file, so that two studies that would share one (a name that differs only in case
    on a case-insensitive disk; two older studies in one directory) are refused, loudly.

    Raises:
        CheckpointError: the folder belongs to another study.
    """
    root = study.checkpoint_dir
    assert root is not None
    text = os.fspath(root)
    if text.startswith("database:"):
        return root
    per_study = checkpoint_layout(study) == PER_STUDY
    if "://" in text:  # an fsspec URL: its own file system, no markers
        return text.rstrip("/") + "/" + folder_name(study.name) if per_study else text
    folder = Path(root) / folder_name(study.name) if per_study else Path(root)
    if not study._read_only:
        _claim(folder / (FOLDER_MARKER if per_study else FLAT_MARKER), study.name, per_study)
    return folder


def _claim(marker: Path, name: str, per_study: bool) -> None:
    """Write ``marker`` naming study ``name`` unless it exists; refuse another study's."""
    marker.parent.mkdir(parents=True, exist_ok=True)
    payload = json.dumps({"study": name})
    try:
        with open(marker, "x", encoding="utf-8") as fh:
            fh.write(payload)
        return
    except FileExistsError:
        pass
    try:
        owner = json.loads(marker.read_text(encoding="utf-8")).get("study")
    except (OSError, ValueError, AttributeError):
        return  # half written by a concurrent first claim, or not ours to judge
    if owner == name:
        return
    if per_study:
        raise CheckpointError(
            f"checkpoint folder {marker.parent} belongs to study {owner!r}, not {name!r} (their "
            "names differ only where this disk does not tell them apart); give this study "
            "another name or checkpoint_dir"
        )
    raise CheckpointError(
        f"checkpoint_dir {marker.parent} holds the checkpoints of study {owner!r} directly (the "
        f"layout of studies created before poptune kept a folder per study); study {name!r} is "
        "as old and would overwrite them, trial id by trial id: give it another "
        "checkpoint_dir (or move its checkpoints into a directory of its own)"
    )
