"""TensorBoard: event files per trial, read by ``tensorboard --logdir``.

::

    from poptune.integrations.tensorboard import TensorBoardCallback

    study = poptune.Study(parameters, algorithm, True, callbacks=[TensorBoardCallback("tb")])
    study.optimize(objective, n_workers=4)
    # tensorboard --logdir tb

:class:`TensorBoardCallback` writes, for every trial, one event-file folder
``<log_dir>/<study>/<trial id>`` (the study's name made a safe folder name: letters, digits,
``._-``, else cleaned and followed by a hash of the name), in the process that runs the
trial:

* the objective as the scalar ``metric_name`` at every observation (``global_step`` = the
  observation's iteration), and every numeric context value as a scalar of its own name;
* at the end of the trial, its **hyperparameters** for TensorBoard's HParams tab: the study's
  parameters, ``status`` and, for a PBT segment, ``member``, ``generation`` and ``parent``
  (-1 for a founder), with ``metric_name`` as the metric (its last value); what explore
  changed as the text ``poptune/explore``.

A PBT member is a chain of trials (segments): its curve is the trials' folders read one after
another, which the iterations (the steps) already order.

Writes through ``torch.utils.tensorboard`` (PyTorch with the ``tensorboard`` package), else
``tensorboardX``. Raises :class:`~poptune.exceptions.MissingDependencyError` at import when
neither is installed (``pip install "poptune[tensorboard]"``).
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from poptune._validation import check_str, reject
from poptune.exceptions import MissingDependencyError
from poptune.lineage import parent_id
from poptune.trial import Observation, Trial, TrialStatus

try:
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams as _hparams
except ImportError as _torch_missing:
    try:
        from tensorboardX import SummaryWriter
        from tensorboardX.summary import hparams as _hparams
    except ImportError:
        raise MissingDependencyError(
            "poptune.integrations.tensorboard needs torch.utils.tensorboard (PyTorch and the "
            f"tensorboard package; {_torch_missing.name or 'tensorboard'} is not installed) or "
            'tensorboardX: pip install "poptune[tensorboard]"'
        ) from None

if TYPE_CHECKING:
    from poptune.study import Study

__all__ = ["TensorBoardCallback", "trial_log_dir"]

_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")


def _folder(name: str) -> str:
    """A study name as one folder name (never a path)."""
    if _SAFE_NAME.fullmatch(name) and name not in (".", ".."):
        return name
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._-")[:40] or "study"
    return f"{cleaned}-{hashlib.sha256(name.encode()).hexdigest()[:10]}"


def trial_log_dir(log_dir: str | os.PathLike[str], study_name: str, trial_id: int) -> Path:
    """Where :class:`TensorBoardCallback` writes trial ``trial_id`` of study ``study_name``:
    ``<log_dir>/<study folder>/<trial id>``."""
    return Path(log_dir) / _folder(study_name) / str(int(trial_id))


class TensorBoardCallback:
    """A study callback writing TensorBoard event files per trial (see the module docstring).

    Args:
        log_dir: the root folder (created when needed); give the same one to every worker
            (a shared disk for workers on other machines).
        metric_name: the scalar tag of the objective. Default ``"objective"``.

    Raises:
        ConfigurationError / ArgumentTypeError: a bad argument, naming it.
    """

    def __init__(self, log_dir: str | os.PathLike[str], metric_name: str = "objective") -> None:
        if not isinstance(log_dir, (str, os.PathLike)) or not os.fspath(log_dir):
            reject("TensorBoardCallback", "log_dir", "a folder path", log_dir, wrong_type=True)
        self.log_dir = Path(log_dir)
        self.metric_name = check_str("TensorBoardCallback", "metric_name", metric_name,
                                     nonempty=True)  # fmt: skip
        self._writers: dict[tuple[str, int], Any] = {}  # this process's open writers
        self._last: dict[tuple[str, int], float] = {}
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"log_dir": self.log_dir, "metric_name": self.metric_name}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["log_dir"], state["metric_name"])  # type: ignore[misc]

    def _writer(self, study: Study, trial: Trial) -> Any:
        key = (study.name, trial.id)
        with self._lock:
            writer = self._writers.get(key)
            if writer is None:
                folder = trial_log_dir(self.log_dir, study.name, trial.id)
                writer = self._writers[key] = SummaryWriter(log_dir=str(folder))
            return writer

    def on_trial_start(self, study: Study, trial: Trial) -> None:
        self._writer(study, trial)

    def on_observation(self, study: Study, trial: Trial, observation: Observation) -> None:
        writer = self._writer(study, trial)
        step = int(observation.iteration)
        writer.add_scalar(self.metric_name, float(observation.objective), global_step=step)
        for key, value in observation.context.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                writer.add_scalar(key, float(value), global_step=step)
        self._last[(study.name, trial.id)] = float(observation.objective)

    def on_trial_end(self, study: Study, trial: Trial, status: TrialStatus) -> None:
        writer = self._writer(study, trial)
        try:
            last = self._last.get((study.name, trial.id))
            if last is None and trial.last_observation is not None:
                last = float(trial.last_observation.objective)
            params = _hyperparameters(study, trial, status)
            metrics = {} if last is None else {self.metric_name: last}
            for summary in _hparams(params, metrics):
                writer.file_writer.add_summary(summary)
            if trial.explore:
                writer.add_text("poptune/explore", trial.explore)
            writer.flush()
        finally:
            writer.close()
            with self._lock:
                self._writers.pop((study.name, trial.id), None)
                self._last.pop((study.name, trial.id), None)

    def on_study_end(self, study: Study) -> None:
        """Close the writers of trials that never ended here (flushing what they wrote)."""
        with self._lock:
            left = [k for k in self._writers if k[0] == study.name]
            writers = [self._writers.pop(k) for k in left]
        for writer in writers:
            writer.close()


def _hyperparameters(study: Study, trial: Trial, status: TrialStatus) -> dict[str, Any]:
    """What the HParams tab shows: int, float, str or bool values only."""
    out: dict[str, Any] = {}
    for parameter in study.parameters:
        value = trial.parameters.get(parameter.name)
        if value is None:
            continue
        kind = (bool, int, float, str)
        out[parameter.name] = value if isinstance(value, kind) else _scalar(value)
    out["status"] = status.value
    if trial.generation is not None:
        parent = parent_id(trial)
        out["member"] = -1 if trial.member is None else int(trial.member)
        out["generation"] = int(trial.generation)
        out["parent"] = -1 if parent is None else int(parent)
    return out


def _scalar(value: Any) -> Any:
    """A numpy scalar as a Python one; anything else as its str."""
    item = getattr(value, "item", None)
    if callable(item):
        try:
            converted = item()
        except (TypeError, ValueError):
            return str(value)
        if isinstance(converted, (bool, int, float, str)):
            return converted
    return str(value)
