"""PyTorch: a whole training state saved and loaded in one call, hyperparameters verified.

::

    from poptune.integrations import torch as pt_torch

    def objective(trial):
        model = Net()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=10)
        state = pt_torch.load_checkpoint(trial, model, optimizer, scheduler)
        # the optimizer now trains with trial.parameters["learning_rate"] (and momentum),
        # whatever the loaded checkpoint's param groups said
        for epoch in range(state.epoch, state.epoch + 2):
            accuracy = train_one_epoch(model, optimizer, scheduler)
            trial.report(accuracy, iteration=epoch + 1)
        pt_torch.save_checkpoint(trial, model, optimizer, scheduler, epoch=epoch + 1)

A checkpoint holds the model's ``state_dict``, every optimizer's and LR scheduler's, the AMP
``GradScaler``'s, the RNG states of torch (and CUDA), numpy's global generator and Python's
``random`` (as tensors, lists and ints), ``epoch``, ``step`` and the user's ``extra`` dict.
It is written with ``torch.save``, atomically (a temporary name, then a rename), and read with
``torch.load(weights_only=True)``: loading a checkpoint never runs code from it, so ``extra``
holds tensors, numbers, strings, None and lists/tuples/dicts of them.

Where: :func:`save_checkpoint` and :func:`load_checkpoint` go through the study's checkpoint
store (``trial.checkpoint_store``): a local ``checkpoint_dir``, an fsspec URL
(``s3://bucket/run``) or ``"database://"`` alike, with its name checks and a
``CheckpointError`` for a checkpoint that should be there and is not. :func:`save_state`
and :func:`load_state` do the same with a local path of your choosing.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from poptune._checkpoint_files import write_file_atomically
from poptune.exceptions import ArgumentTypeError, CheckpointError, MissingDependencyError
from poptune.integrations._hyperparameters import (
    DEFAULT_OPTIMIZER_KEYS,
    HyperparameterNotAppliedError,
    apply_hyperparameters,
    as_list,
)

try:
    import numpy as np
    import torch
except ImportError as exc:  # pragma: no cover - exercised by simulating a missing torch
    raise MissingDependencyError(
        f"poptune.integrations.torch needs PyTorch ({exc.name} is not installed): "
        'pip install "poptune[torch]" torch==2.13.0'
    ) from None

__all__ = [
    "DEFAULT_OPTIMIZER_KEYS",
    "FORMAT",
    "HyperparameterNotAppliedError",
    "TrainingState",
    "apply_hyperparameters",
    "capture_rng",
    "load_checkpoint",
    "load_state",
    "restore_rng",
    "restore_state",
    "save_checkpoint",
    "save_state",
    "training_state",
]

#: The ``format`` entry of every checkpoint this module writes.
FORMAT = "poptune.torch/1"


@dataclass
class TrainingState:
    """What :func:`load_checkpoint` / :func:`load_state` restored.

    Attributes:
        epoch: the ``epoch`` saved with the checkpoint (0 for a fresh start): the number of
            epochs trained so far, so the next one is ``epoch + 1``.
        step: the ``step`` saved (0 for a fresh start).
        extra: the user's ``extra`` dict ({} for a fresh start).
        path: the checkpoint read (a Path; for a URL or the database its location str), or
            None for a fresh start.
        rng_restored: whether the RNG states were set from the checkpoint.
        hyperparameters: ``{name: value}`` applied to the optimizers after loading.
    """

    epoch: int = 0
    step: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    path: Path | str | None = None
    rng_restored: bool = False
    hyperparameters: dict[str, Any] = field(default_factory=dict)

    @property
    def fresh(self) -> bool:
        """True when nothing was loaded (a new population member)."""
        return self.path is None


# -- RNG states as plain values ----------------------------------------------------------------
def capture_rng() -> dict[str, Any]:
    """The RNG states of torch (CPU, and every CUDA device once CUDA is initialised), numpy's
    global generator and Python's ``random``, as tensors, lists and ints (loadable with
    ``weights_only=True``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    rng: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "bit_generator": str(kind),
            "keys": [int(k) for k in keys],
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {"version": int(version), "state": list(internal), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        rng["cuda"] = list(torch.cuda.get_rng_state_all())
    return rng


def restore_rng(rng: Mapping[str, Any]) -> None:
    """Set the RNG states captured by :func:`capture_rng`."""
    torch.set_rng_state(rng["torch"])
    cuda = rng.get("cuda")
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    n = rng["numpy"]
    np.random.set_state(
        (
            n["bit_generator"],
            np.asarray(n["keys"], dtype=np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )
    p = rng["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss_next"]))


# -- the state as a dict ---------------------------------------------------------------------------
def _check_plain(value: Any, where: str) -> None:
    """Raise unless ``value`` is something ``torch.load(weights_only=True)`` reads back."""
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, (str, int)):
                raise ArgumentTypeError(f"save_checkpoint: {where} has a key {k!r}: str or int")
            _check_plain(v, f"{where}[{k!r}]")
        return
    raise ArgumentTypeError(
        f"save_checkpoint: {where} is {type(value).__name__} ({value!r:.60}), which "
        "torch.load(weights_only=True) does not read back: use tensors, numbers, str, None "
        "and lists/tuples/dicts of them (numpy arrays: torch.from_numpy or .tolist())"
    )


def training_state(
    model: Any,
    optimizer: Any = None,
    scheduler: Any = None,
    scaler: Any = None,
    *,
    epoch: int = 0,
    step: int = 0,
    extra: Mapping[str, Any] | None = None,
    member: int | None = None,
    trial_id: int | None = None,
) -> dict[str, Any]:
    """The checkpoint dict :func:`save_state` writes (see the module docstring).

    ``optimizer`` and ``scheduler`` are one object or a list (Lightning's several
    optimizers); ``scaler`` an AMP ``GradScaler``; ``epoch``/``step`` ints; ``extra`` a
    dict of plain values; ``member``/``trial_id`` who saved it (set by
    :func:`save_checkpoint`).

    Raises:
        ArgumentTypeError: ``epoch``/``step`` is not an int, or ``extra`` is not a dict of
            values ``weights_only`` loading reads back.
    """
    for name, value in (("epoch", epoch), ("step", step)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise ArgumentTypeError(f"save_checkpoint: {name} must be an int, got {value!r}")
    extra = dict(extra or {})
    _check_plain(extra, "extra")
    return {
        "format": FORMAT,
        "model": model.state_dict(),
        "optimizers": [o.state_dict() for o in as_list(optimizer, "optimizer")],
        "schedulers": [s.state_dict() for s in as_list(scheduler, "scheduler")],
        "scaler": None if scaler is None else scaler.state_dict(),
        "rng": capture_rng(),
        "epoch": epoch,
        "step": step,
        "extra": extra,
        "member": member,
        "trial": trial_id,
    }


def restore_state(
    state: Mapping[str, Any],
    model: Any,
    optimizer: Any = None,
    scheduler: Any = None,
    scaler: Any = None,
    *,
    rng: bool = True,
    where: str = "the checkpoint",
) -> TrainingState:
    """Load ``state`` (from :func:`training_state`) into the objects given.

    Raises:
        CheckpointError: ``state`` is not a poptune torch checkpoint, or holds a different
            number of optimizers or schedulers than given, or the model's keys differ.
    """
    if not isinstance(state, Mapping) or state.get("format") != FORMAT:
        raise CheckpointError(
            f"{where} is not a checkpoint of poptune.integrations.torch (format {FORMAT!r}); "
            "was it written by trial.save_checkpoint? Read it with trial.load_checkpoint()"
        )
    optimizers = as_list(optimizer, "optimizer")
    schedulers = as_list(scheduler, "scheduler")
    for what, given, saved in (
        ("optimizer", optimizers, state["optimizers"]),
        ("scheduler", schedulers, state["schedulers"]),
    ):
        if given and len(given) != len(saved):
            raise CheckpointError(
                f"{where} holds {len(saved)} {what} state(s), {len(given)} {what}(s) were given"
            )
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"{where} does not fit the model: {exc}") from exc
    for obj, saved in zip(optimizers, state["optimizers"], strict=False):
        obj.load_state_dict(saved)
    for obj, saved in zip(schedulers, state["schedulers"], strict=False):
        obj.load_state_dict(saved)
    if scaler is not None and state.get("scaler") is not None:
        scaler.load_state_dict(state["scaler"])
    if rng:
        restore_rng(state["rng"])
    return TrainingState(
        epoch=int(state["epoch"]), step=int(state["step"]), extra=dict(state["extra"]),
        rng_restored=rng,
    )  # fmt: skip


# -- files -----------------------------------------------------------------------------------------
def _write_atomically(obj: Any, target: Path) -> Path:
    return write_file_atomically(target, lambda fh: torch.save(obj, fh))


def _load(source: Any, map_location: Any, where: Any) -> Any:
    """``torch.load(weights_only=True)`` of a path or a binary file; CheckpointError naming
    ``where`` when it fails."""
    try:
        return torch.load(source, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {where} does not exist") from None
    except Exception as exc:  # noqa: BLE001 - any reader failure means a corrupt or foreign file
        raise CheckpointError(
            f"checkpoint {where} cannot be read with torch.load(weights_only=True): "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def _read(path: Path, map_location: Any) -> Any:
    return _load(path, map_location, path)


def save_state(
    path: str | os.PathLike[str],
    model: Any,
    optimizer: Any = None,
    scheduler: Any = None,
    scaler: Any = None,
    *,
    epoch: int = 0,
    step: int = 0,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write the training state to ``path`` atomically; return the path.

    See :func:`training_state` for the arguments and errors.
    """
    state = training_state(model, optimizer, scheduler, scaler, epoch=epoch, step=step, extra=extra)
    return _write_atomically(state, Path(path))


def load_state(
    path: str | os.PathLike[str],
    model: Any,
    optimizer: Any = None,
    scheduler: Any = None,
    scaler: Any = None,
    *,
    rng: bool = True,
    map_location: Any = "cpu",
) -> TrainingState:
    """Read ``path`` (``weights_only=True``) into the objects given; no hyperparameters are
    applied (:func:`load_checkpoint` does that for a trial).

    Raises:
        CheckpointError: the file is missing, unreadable or not such a checkpoint.
    """
    path = Path(path)
    state = restore_state(
        _read(path, map_location), model, optimizer, scheduler, scaler, rng=rng,
        where=f"checkpoint {path}",
    )  # fmt: skip
    state.path = path
    return state


def save_checkpoint(
    trial: Any,
    model: Any,
    optimizer: Any = None,
    scheduler: Any = None,
    scaler: Any = None,
    *,
    epoch: int = 0,
    step: int = 0,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write the training state as ``trial``'s checkpoint (``trial.checkpoint_path``)
    atomically, through the study's checkpoint store; return its location (a Path for a
    local directory, a str for a URL or the database).

    Args:
        trial: the trial being trained (its study needs a ``checkpoint_dir``).
        model: an ``nn.Module`` (anything with ``state_dict``).
        optimizer, scheduler: one object or a list of them.
        scaler: a ``torch.amp.GradScaler`` or None.
        epoch: epochs trained so far *in total* (the next segment continues from it).
        step: optimizer steps so far, if you count them.
        extra: your own values (tensors, numbers, str, None, lists/dicts of them).

    Raises:
        ConfigurationError: the study has no ``checkpoint_dir``.
        ArgumentTypeError: ``epoch``/``step`` not an int, or ``extra`` holds a value that
            ``weights_only`` loading would refuse (named).
    """
    state = training_state(
        model, optimizer, scheduler, scaler, epoch=epoch, step=step, extra=extra,
        member=trial.member, trial_id=trial.id,
    )  # fmt: skip
    return trial.checkpoint_store.save_with(trial, lambda fh: torch.save(state, fh))


def load_checkpoint(
    trial: Any,
    model: Any,
    optimizer: Any = None,
    scheduler: Any = None,
    scaler: Any = None,
    *,
    mapping: Mapping[str, str | None] | None = None,
    restore_rng: bool | None = None,
    map_location: Any = "cpu",
) -> TrainingState:
    """Load what ``trial`` starts from, then apply its hyperparameters to the optimizers.

    For a fresh member (``trial.load_path`` is None) nothing is loaded and the objects keep
    their initial state; the hyperparameters are applied either way, so the optimizer always
    trains with ``trial.parameters`` (see :func:`apply_hyperparameters` for the mapping and
    the checks).

    Args:
        trial: the trial being trained.
        model, optimizer, scheduler, scaler: as given to :func:`save_checkpoint`.
        mapping: parameter name → param-group key, over :data:`DEFAULT_OPTIMIZER_KEYS`.
        restore_rng: None (default): restore the RNG states when the checkpoint was saved by
            the same population member (a continuation, bit-identical to not stopping), and
            leave them alone when the trial exploits another member (so that the copy does
            not replay its donor's data order and dropout masks); True or False to decide.
        map_location: where tensors are read to before going into the objects (default
            ``"cpu"``; ``load_state_dict`` moves them to the parameters' device).

    Returns:
        A :class:`TrainingState` (``epoch``, ``step``, ``extra``, ``path``, ...).

    Raises:
        CheckpointError: the checkpoint to start from is missing or unreadable.
        HyperparameterNotAppliedError: a mapped hyperparameter did not reach the optimizer.
    """
    store = trial.checkpoint_store  # the name checked, a missing checkpoint a CheckpointError
    saved = store.load_with(trial, lambda fh: _load(fh, map_location, store.path(trial.load_from)))
    if saved is None:
        state = TrainingState()
    else:
        path = store.path(trial.load_from)
        rng = restore_rng
        if rng is None:
            rng = isinstance(saved, Mapping) and saved.get("member") == trial.member
        state = restore_state(
            saved, model, optimizer, scheduler, scaler, rng=rng,
            where=f"checkpoint {path} (load_from={trial.load_from!r} of trial {trial.id})",
        )  # fmt: skip
        state.path = path
    state.hyperparameters = apply_hyperparameters(optimizer, trial, mapping, schedulers=scheduler)
    return state
