"""Keras 3: PBT with whole models in the ``.keras`` format, kept in the study's checkpoints.

::

    import os
    os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is first imported
    import keras
    from poptune.integrations.keras import PoptuneCallback

    def objective(trial):
        model = make_model()  # compiled, e.g. with keras.optimizers.Adam()
        model.fit(x, y, epochs=2, validation_split=0.2, verbose=0,
                  callbacks=[PoptuneCallback(trial, monitor="val_accuracy")])

    study.optimize(objective, n_workers=2)

:class:`PoptuneCallback`, when ``fit`` begins, loads the checkpoint the trial starts from
(``load_from``: the weights and the optimizer's state, its iteration count included) into the
model, then applies the trial's hyperparameters to the optimizer and reads them back
(:func:`apply_hyperparameters`); after each epoch it reports ``logs[monitor]`` (``iteration``:
epochs trained in total, across segments) and ends ``fit`` when ``trial.should_stop()`` says
so; when ``fit`` ends it saves the whole model as ``save_to`` (:func:`save_model`).

The SHERPA notebook's own pattern works too, with the library's checkpoints in place of a
directory of its own: :func:`load_model` (``keras.saving.load_model`` of what the trial starts
from, hyperparameters applied) and :func:`save_model` (``model.save``).

A checkpoint is the file ``model.save`` writes (a ``.keras`` zip archive: the model's config,
its weights and its optimizer's state), plus an entry ``poptune.json`` holding the epochs
trained so far and who saved it; ``keras.saving.load_model`` reads it as any ``.keras`` file
(copy it to a name ending in ``.keras``). It goes through the study's checkpoint store
(``trial.checkpoint_store``): a local ``checkpoint_dir``, an fsspec URL or ``"database://"``
alike, through a local temporary file.

**Safe loading.** :func:`load_model` calls ``keras.saving.load_model(..., safe_mode=True)``
unless the study allows pickle (``allow_pickle=True``, the project's switch for formats that
run code when read): in safe mode Keras refuses to deserialize a ``Lambda`` layer's Python
code. The callback reads only weights (``model.load_weights``: no config is deserialized).
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any

from poptune._checkpoint_format import PICKLE_HINT
from poptune.exceptions import (
    ArgumentTypeError,
    CheckpointError,
    ConfigurationError,
    MissingDependencyError,
)
from poptune.integrations._hyperparameters import (
    HyperparameterNotAppliedError,
    check_callback_arguments,
    optimizer_keys,
    parameters_of,
)

_INSTALL = 'pip install "poptune[keras]" torch==2.13.0 (and KERAS_BACKEND=torch)'
try:
    import keras
except ImportError as exc:  # pragma: no cover - exercised by simulating a missing keras
    raise MissingDependencyError(
        f"poptune.integrations.keras needs Keras 3 ({exc.name} is not installed): {_INSTALL}"
    ) from None
if int(str(keras.__version__).split(".")[0]) < 3:  # pragma: no cover - Keras 2 is not tested
    raise MissingDependencyError(
        f"poptune.integrations.keras needs Keras 3, found keras {keras.__version__}: {_INSTALL}"
    )

__all__ = [
    "DEFAULT_KERAS_KEYS",
    "FORMAT",
    "HyperparameterNotAppliedError",
    "KerasState",
    "PoptuneCallback",
    "apply_hyperparameters",
    "load_model",
    "load_weights",
    "read_model",
    "save_model",
]

#: The ``format`` entry of ``poptune.json`` in every checkpoint this module writes.
FORMAT = "poptune.keras/1"
_META = "poptune.json"
_WEIGHTS = "model.weights.h5"

#: Trial parameter name -> Keras optimizer attribute, used unless a ``mapping`` overrides it.
DEFAULT_KERAS_KEYS: Mapping[str, str] = MappingProxyType(
    {
        "learning_rate": "learning_rate",
        "lr": "learning_rate",
        "momentum": "momentum",
        "beta_1": "beta_1",
        "beta_2": "beta_2",
        "epsilon": "epsilon",
        "rho": "rho",
        "weight_decay": "weight_decay",
    }
)


@dataclass
class KerasState:
    """What :func:`load_weights` (and the callback, as ``callback.state``) loaded.

    Attributes:
        epoch: epochs trained so far, as saved with the checkpoint (0 for a fresh start or a
            ``.keras`` file written without :func:`save_model`).
        path: the checkpoint read (a Path; for a URL or the database its location str), or
            None for a fresh start.
        member: the population member that saved it (None: unknown or fresh).
        hyperparameters: ``{name: value}`` applied to the optimizer after loading.
    """

    epoch: int = 0
    path: Path | str | None = None
    member: int | None = None
    hyperparameters: dict[str, Any] = field(default_factory=dict)

    @property
    def fresh(self) -> bool:
        """True when nothing was loaded (a new population member)."""
        return self.path is None


# -- hyperparameters -------------------------------------------------------------------------
def _number(value: Any) -> float | None:
    """``value`` (a float, a Keras variable, a 0-d tensor) as a float; None if it is none."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, keras.Variable):
        value = value.value  # the backend tensor (numpy 2 warns about a Variable's __array__)
    try:
        return float(keras.ops.convert_to_numpy(value))
    except (TypeError, ValueError):
        return None


def _holder(optimizer: Any, attr: str) -> Any:
    """The optimizer that has ``attr``: ``optimizer``, or the one a LossScaleOptimizer wraps."""
    if hasattr(optimizer, attr):
        return optimizer
    inner = getattr(optimizer, "inner_optimizer", None)
    return inner if inner is not None and hasattr(inner, attr) else None


def _hyperparameter_names(optimizer: Any) -> list[str]:
    try:
        config = optimizer.get_config()
    except Exception:  # noqa: BLE001 - only for the message
        return []
    return sorted(k for k, v in config.items() if isinstance(v, (int, float, type(None))))


def apply_hyperparameters(
    optimizer: Any,
    parameters: Any,
    mapping: Mapping[str, str | None] | None = None,
) -> dict[str, Any]:
    """Set the trial's optimizer hyperparameters on a Keras optimizer, then read them back.

    Call it after loading (a loaded optimizer holds its donor's learning rate);
    :func:`load_model`, :func:`load_weights` and :class:`PoptuneCallback` call it for you.

    Args:
        optimizer: a Keras 3 optimizer (``model.optimizer``; a ``LossScaleOptimizer``'s inner
            optimizer is reached through it).
        parameters: the trial, or its ``parameters`` dict; only the names in the mapping are
            applied (``load_from``, ``generation`` and model parameters are left alone).
        mapping: ``{parameter name: optimizer attribute}`` over :data:`DEFAULT_KERAS_KEYS`
            (``learning_rate``/``lr`` → ``learning_rate``, ``momentum``, ``beta_1``,
            ``beta_2``, ``epsilon``, ``rho``, ``weight_decay``); None as a value removes a
            default (``{"momentum": None}`` when the trial's momentum is not the optimizer's).

    Returns:
        ``{parameter name: value}`` of what was applied.

    Raises:
        HyperparameterNotAppliedError: a mapped parameter's attribute is missing from the
            optimizer (Adam has no ``momentum``), the learning rate is a
            ``LearningRateSchedule``, there is no optimizer (the model is not compiled), or
            the value read back is not the trial's (float32 precision).
        ArgumentTypeError: a value is not a number, or ``mapping`` is not a dict.
        ConfigurationError: two parameters map to one attribute with different values.
    """
    params = parameters_of(parameters)
    keys = optimizer_keys(mapping, DEFAULT_KERAS_KEYS)
    chosen = {name: (keys[name], params[name]) for name in params if name in keys}
    if not chosen:
        return {}
    listed = ", ".join(f"{n}={v!r}" for n, (_, v) in chosen.items())
    if optimizer is None:
        raise HyperparameterNotAppliedError(
            f"{listed} did not reach any optimizer: the model has none (compile it first, or "
            "leave a parameter out with mapping={NAME: None})"
        )
    by_attr: dict[str, tuple[str, Any]] = {}
    for name, (attr, value) in chosen.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ArgumentTypeError(
                f"apply_hyperparameters: {name}={value!r} must be a number to go into an optimizer"
            )
        if attr in by_attr and by_attr[attr][1] != value:
            other, was = by_attr[attr]
            raise ConfigurationError(
                f"apply_hyperparameters: {other}={was!r} and {name}={value!r} both map to the "
                f"optimizer attribute {attr!r}; remove one from the mapping"
            )
        by_attr[attr] = (name, value)
    kind = type(optimizer).__name__
    for name, (attr, value) in chosen.items():
        holder = _holder(optimizer, attr)
        if holder is None:
            raise HyperparameterNotAppliedError(
                f"{name}={value!r} did not reach the optimizer: {kind} has no {attr!r} "
                f"(its hyperparameters: {_hyperparameter_names(optimizer)}); map it to one of "
                f"them with mapping={{{name!r}: ATTRIBUTE}}, or mapping={{{name!r}: None}} if "
                "it is not an optimizer hyperparameter"
            )
        current = getattr(holder, attr)
        try:
            if attr != "learning_rate" and hasattr(current, "assign"):
                current.assign(value)  # a hyperparameter kept in a variable
            else:
                setattr(holder, attr, float(value))
        except (TypeError, AttributeError, ValueError) as exc:
            raise HyperparameterNotAppliedError(
                f"{name}={value!r} did not reach the optimizer: {kind} refused to set {attr!r} "
                f"({type(exc).__name__}: {exc}); a LearningRateSchedule cannot be set: build "
                "the optimizer with a float learning rate for PBT to tune it"
            ) from exc
    for name, (attr, value) in chosen.items():
        got = _number(getattr(_holder(optimizer, attr), attr))
        if got is None or not math.isclose(got, float(value), rel_tol=1e-6, abs_tol=1e-12):
            raise HyperparameterNotAppliedError(
                f"{name}={value!r} did not reach the optimizer: {kind}.{attr} reads {got!r} "
                "after it was set"
            )
    return {name: params[name] for name in chosen}


# -- files -----------------------------------------------------------------------------------
@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Keras 3.15 saving and loading on numpy 2 warns that its variables' ``__array__`` lacks
    a ``copy`` keyword: Keras' own deprecation, not the user's to act on."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
        yield


def _copy_to(fh: IO[bytes], target: Path) -> Path:
    with open(target, "wb") as out:
        shutil.copyfileobj(fh, out)
    return target


def _metadata(path: Path, where: Any) -> dict[str, Any]:
    """The ``poptune.json`` entry of a ``.keras`` file ({} when it has none); CheckpointError
    naming ``where`` when the file is not a ``.keras`` archive."""
    if not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"checkpoint {where} is not a Keras .keras file (was it saved with "
            "poptune.integrations.keras.save_model or model.save?)"
        )
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        if _WEIGHTS not in names or "config.json" not in names:
            raise CheckpointError(
                f"checkpoint {where} is a zip archive but not a Keras .keras file (it lacks "
                f"{_WEIGHTS} or config.json; was it written by another integration?)"
            )
        if _META not in names:
            return {}
        try:
            meta = json.loads(zf.read(_META))
        except ValueError as exc:
            raise CheckpointError(f"checkpoint {where}: {_META} is not JSON: {exc}") from None
    return meta if isinstance(meta, dict) and meta.get("format") == FORMAT else {}


def _fetch(trial: Any, folder: Path) -> tuple[Path, Any, dict[str, Any]] | None:
    """Copy the checkpoint ``trial`` starts from into ``folder`` as a ``.keras`` file: (local
    file, its location, metadata), or None for a fresh start."""
    store = trial.checkpoint_store
    local = store.load_with(trial, lambda fh: _copy_to(fh, folder / "checkpoint.keras"))
    if local is None:
        return None
    where = store.path(trial.load_from)
    return local, where, _metadata(local, f"{where} (load_from={trial.load_from!r})")


def save_model(trial: Any, model: Any, *, epoch: int | None = None) -> Path | str:
    """Save ``model`` whole (``model.save``, ``.keras`` format: config, weights, optimizer
    state) as ``trial``'s checkpoint, through the study's checkpoint store, atomically; return
    its location (a Path for a local directory, a str for a URL or the database).

    Args:
        trial: the trial being trained (its study needs a ``checkpoint_dir``).
        model: a Keras 3 model.
        epoch: epochs trained so far *in total*, kept with the checkpoint for the next
            segment (``KerasState.epoch``); default: the trial's ``generation`` (one epoch
            per generation, as the SHERPA notebook trains), else 0.

    Raises:
        ConfigurationError: the study has no ``checkpoint_dir``.
        ArgumentTypeError: ``epoch`` is not an int >= 0, or ``model`` is not a Keras model.
        CheckpointError: a bad ``save_to``.
    """
    if epoch is None:
        epoch = trial.generation if isinstance(trial.generation, int) else 0
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise ArgumentTypeError(f"save_model: epoch must be an int >= 0, got {epoch!r}")
    if not isinstance(model, keras.Model):
        raise ArgumentTypeError(f"save_model: model must be a keras.Model, got {model!r}")
    store = trial.checkpoint_store
    store.save_path(trial)  # a bad name is refused before anything is written
    meta = {"format": FORMAT, "epoch": epoch, "member": trial.member, "trial": trial.id}
    with tempfile.TemporaryDirectory(prefix="poptune-keras-") as folder:
        local = Path(folder) / "model.keras"
        with _quiet():
            model.save(local)
        with zipfile.ZipFile(local, "a") as zf:
            zf.writestr(_META, json.dumps(meta))

        def write(fh: IO[bytes]) -> None:
            with open(local, "rb") as src:
                shutil.copyfileobj(src, fh)

        return store.save_with(trial, write)


def _safe_mode(trial: Any, safe_mode: bool | None) -> bool:
    allowed = bool(getattr(trial.checkpoint_store, "allow_pickle", False))
    if safe_mode is None:
        return not allowed
    if safe_mode is False and not allowed:
        raise CheckpointError(
            f"trial {trial.id}: load_model(safe_mode=False) lets the file run code (a Lambda "
            f"layer's): {PICKLE_HINT}"
        )
    return bool(safe_mode)


def _keras_load(path: Path, where: Any, safe_mode: bool, **kwargs: Any) -> Any:
    try:
        with _quiet():
            return keras.saving.load_model(path, safe_mode=safe_mode, **kwargs)
    except Exception as exc:  # noqa: BLE001 - any reader failure means a corrupt/unsafe file
        raise CheckpointError(
            f"checkpoint {where} cannot be loaded with keras.saving.load_model(safe_mode="
            f"{safe_mode}): {type(exc).__name__}: {exc}"
        ) from exc


def load_model(
    trial: Any,
    *,
    build: Callable[[], Any] | None = None,
    mapping: Mapping[str, str | None] | None = None,
    apply: bool = True,
    custom_objects: Mapping[str, Any] | None = None,
    compile: bool = True,
    safe_mode: bool | None = None,
) -> Any:
    """The model ``trial`` starts from: ``keras.saving.load_model`` of its ``load_from``
    checkpoint, with the trial's hyperparameters applied to its optimizer and verified.

    For a fresh member (no ``load_from``) it returns ``build()`` (hyperparameters applied
    too), or None when no ``build`` is given.

    Args:
        trial: the trial being trained.
        build: makes a new compiled model for a fresh member.
        mapping: parameter name → optimizer attribute over :data:`DEFAULT_KERAS_KEYS`.
        apply: False to leave the optimizer as loaded (set ``optimizer.learning_rate``
            yourself, as the SHERPA notebook does).
        custom_objects, compile: as ``keras.saving.load_model``.
        safe_mode: None (default): Keras' safe mode unless the study has
            ``allow_pickle=True``; False (runs a ``Lambda`` layer's code) needs
            ``allow_pickle``.

    Raises:
        CheckpointError: the checkpoint is missing, not a ``.keras`` file, Keras cannot load
            it (safe mode refused it, say), or ``safe_mode=False`` without ``allow_pickle``.
        HyperparameterNotAppliedError: a mapped hyperparameter did not reach the optimizer.
    """
    safe = _safe_mode(trial, safe_mode)
    with tempfile.TemporaryDirectory(prefix="poptune-keras-") as folder:
        fetched = _fetch(trial, Path(folder))
        if fetched is None:
            model = build() if build is not None else None
        else:
            local, where, _ = fetched
            options: dict[str, Any] = {"compile": compile}
            if custom_objects is not None:
                options["custom_objects"] = dict(custom_objects)
            model = _keras_load(local, where, safe, **options)
    if model is not None and apply:
        apply_hyperparameters(getattr(model, "optimizer", None), trial, mapping)
    return model


def load_weights(
    trial: Any, model: Any, *, mapping: Mapping[str, str | None] | None = None
) -> KerasState:
    """Load the checkpoint ``trial`` starts from *into* ``model`` (built, compiled: its
    weights and its optimizer's state, with ``model.load_weights``; no config is
    deserialized), then apply the trial's hyperparameters to the optimizer, verified. A fresh
    member keeps its initial weights; the hyperparameters are applied either way.

    Raises:
        CheckpointError: the checkpoint is missing, not a ``.keras`` file, or does not fit
            the model.
        HyperparameterNotAppliedError: a mapped hyperparameter did not reach the optimizer.
    """
    state = KerasState()
    with tempfile.TemporaryDirectory(prefix="poptune-keras-") as folder:
        fetched = _fetch(trial, Path(folder))
        if fetched is not None:
            local, where, meta = fetched
            try:
                with _quiet():
                    model.load_weights(local)
            except Exception as exc:  # noqa: BLE001 - a mismatch or a corrupt file
                raise CheckpointError(
                    f"checkpoint {where} (load_from={trial.load_from!r} of trial {trial.id}) "
                    f"does not fit the model: {type(exc).__name__}: {exc}"
                ) from exc
            epoch = meta.get("epoch", 0)
            member = meta.get("member")
            state = KerasState(
                epoch=epoch if isinstance(epoch, int) and epoch >= 0 else 0,
                path=where,
                member=member if isinstance(member, int) else None,
            )
    state.hyperparameters = apply_hyperparameters(getattr(model, "optimizer", None), trial, mapping)
    return state


def read_model(
    study: Any,
    name: str | None = None,
    *,
    custom_objects: Mapping[str, Any] | None = None,
    compile: bool = True,
    safe_mode: bool | None = None,
) -> Any:
    """A model saved by :func:`save_model`, read back from the study's checkpoints after the
    study: checkpoint ``name`` (a trial's ``save_to``), by default the best trial's.

    ``safe_mode`` as in :func:`load_model` (the study's ``allow_pickle`` decides None).

    Raises:
        CheckpointError: missing (``keep_checkpoints`` deleted it?), not a ``.keras`` file,
            or Keras cannot load it.
        NoCompletedTrialError: ``name`` is None and the study has no result yet.
    """
    store = study.checkpoints
    if name is None:
        name = store.name_of(study.best_trial)
    allowed = bool(getattr(store, "allow_pickle", False))
    if safe_mode is False and not allowed:
        raise CheckpointError(f"read_model(safe_mode=False) lets the file run code: {PICKLE_HINT}")
    safe = (not allowed) if safe_mode is None else bool(safe_mode)
    where = store.path(name)
    options: dict[str, Any] = {"compile": compile}
    if custom_objects is not None:
        options["custom_objects"] = dict(custom_objects)
    with tempfile.TemporaryDirectory(prefix="poptune-keras-") as folder:
        local = store.read_with(name, lambda fh: _copy_to(fh, Path(folder) / "model.keras"))
        _metadata(local, where)
        return _keras_load(local, where, safe, **options)


# -- the callback ------------------------------------------------------------------------------
class Segment:
    """One PBT segment of a Keras model: :meth:`begin` loads and applies, :meth:`end` saves.
    What :class:`PoptuneCallback` and ``Study.keras_callback(..., checkpoints=True)`` do."""

    def __init__(self, trial: Any, mapping: Mapping[str, str | None] | None = None) -> None:
        optimizer_keys(mapping, DEFAULT_KERAS_KEYS)  # a bad mapping fails here, not in fit
        self.trial = trial
        self.mapping = mapping
        self.state = KerasState()

    def begin(self, model: Any) -> KerasState:
        """Load into ``model`` and apply the hyperparameters (:func:`load_weights`)."""
        self.state = load_weights(self.trial, model, mapping=self.mapping)
        return self.state

    def end(self, model: Any, epochs: int) -> Path | str:
        """Save ``model`` after ``epochs`` more epochs (:func:`save_model`)."""
        return save_model(self.trial, model, epoch=self.state.epoch + epochs)


class PoptuneCallback(keras.callbacks.Callback):  # type: ignore[misc,name-defined]
    """Load, apply, report, stop and save a PBT segment around ``model.fit``.

    Args:
        trial: the trial this ``fit`` trains (its study needs a ``checkpoint_dir`` unless
            ``checkpoints=False``).
        monitor: the metric reported as the objective, from Keras' epoch logs
            (``"val_loss"``, ``"val_accuracy"``, ``"loss"``).
        context: other logged metrics reported beside it.
        mapping: trial parameter name → optimizer attribute, over :data:`DEFAULT_KERAS_KEYS`
            (``learning_rate`` → ``optimizer.learning_rate``).
        checkpoints: False to neither load nor save (reporting, stopping and applying the
            hyperparameters only).

    Each epoch is reported with ``iteration`` = epochs trained in total (1 after the first
    epoch of a fresh member; continuing from the checkpoint's count). ``callback.state`` is
    the :class:`KerasState` loaded when ``fit`` began.

    Raises (during ``fit``):
        ConfigurationError: ``monitor`` (or a ``context`` name) was not logged.
        HyperparameterNotAppliedError: a mapped hyperparameter did not reach the optimizer.
        CheckpointError: the checkpoint to start from is missing, unreadable or does not fit.
    """

    def __init__(
        self,
        trial: Any,
        monitor: str,
        *,
        context: Sequence[str] = (),
        mapping: Mapping[str, str | None] | None = None,
        checkpoints: bool = True,
    ) -> None:
        super().__init__()
        check_callback_arguments(trial, "monitor", monitor, "a metric name", context)
        self.trial = trial
        self.monitor = monitor
        self.context = list(context)
        self.checkpoints = bool(checkpoints)
        self.segment = Segment(trial, mapping)
        self._epochs = 0

    @property
    def state(self) -> KerasState:
        """What the start of ``fit`` loaded."""
        return self.segment.state

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        self._epochs = 0
        if self.checkpoints:
            self.segment.begin(self.model)
        else:
            applied = apply_hyperparameters(self.model.optimizer, self.trial, self.segment.mapping)
            self.segment.state = KerasState(hyperparameters=applied)

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        logs = dict(logs or {})
        missing = [n for n in (self.monitor, *self.context) if n not in logs]
        if missing:
            raise ConfigurationError(
                f"PoptuneCallback: {missing[0]!r} is not among the metrics Keras logged: "
                f"{sorted(logs)}"
            )
        self._epochs += 1
        self.trial.report(
            float(logs[self.monitor]),
            iteration=self.state.epoch + self._epochs,
            **{name: _finite_or_none(float(logs[name])) for name in self.context},
        )
        if self.trial.should_stop():
            self.model.stop_training = True

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        if self.checkpoints:
            self.segment.end(self.model, self._epochs)


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None
