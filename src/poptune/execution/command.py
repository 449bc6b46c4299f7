"""SHERPA's parallel mode: :func:`optimize` runs every trial as a job; :class:`Client` reports.

The runner (:func:`optimize`) keeps the study in poptune's own storage (an SQLite file in the
output directory by default, or any database URL) instead of SHERPA's MongoDB. For each trial
it submits the user's command through a :mod:`~poptune.schedulers` scheduler with these
environment variables:

==================== ===================================================================
``POPTUNE_STORAGE``  the study's database URL
``POPTUNE_STUDY``    the study's name
``POPTUNE_TRIAL_ID`` the trial's id
``SHERPA_TRIAL_ID``  the same id, under SHERPA's name
``SHERPA_OUTPUT_DIR`` the output directory
==================== ===================================================================

Inside the job, the trial script (``import poptune as sherpa``) runs::

    client = sherpa.Client()
    trial = client.get_trial()
    for epoch in range(n):
        ...
        client.send_metrics(trial=trial, iteration=epoch + 1, objective=acc,
                            context={"loss": loss})

``send_metrics`` writes straight to the storage, so the job needs poptune and the database,
not the algorithm's code. The runner polls the jobs: a job that ends finalizes its trial
(COMPLETED when it exited normally after sending metrics, otherwise FAILED), a trial the
stopping rule stops is killed and finalized STOPPED.
"""

from __future__ import annotations

import datetime
import logging
import numbers
import os
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from poptune._validation import check_context, check_iteration, check_objective
from poptune.algorithms.base import Algorithm
from poptune.exceptions import (
    ConfigurationError,
    DuplicateIterationError,
    PoptuneError,
    StudyMismatchError,
    StudyNotFoundError,
    UnknownTrialError,
)
from poptune.parameters import Parameter
from poptune.results import RESERVED_COLUMNS
from poptune.schedulers import FINAL_JOB_STATES, Scheduler
from poptune.stopping import StoppingRule
from poptune.storage import Storage, get_storage
from poptune.study import Study
from poptune.trial import AlgorithmState, Observation, Trial, TrialStatus

__all__ = ["ENV_STORAGE", "ENV_STUDY", "ENV_TRIAL_ID", "Client", "optimize"]

logger = logging.getLogger("poptune")

ENV_STORAGE = "POPTUNE_STORAGE"
ENV_STUDY = "POPTUNE_STUDY"
ENV_TRIAL_ID = "POPTUNE_TRIAL_ID"
_SHERPA_TRIAL_ID = "SHERPA_TRIAL_ID"
_SHERPA_OUTPUT_DIR = "SHERPA_OUTPUT_DIR"


def optimize(
    parameters: Sequence[Parameter],
    algorithm: Algorithm,
    lower_is_better: bool,
    scheduler: Scheduler,
    command: str | None = None,
    filename: str | os.PathLike[str] | None = None,
    output_dir: str | os.PathLike[str] | None = None,
    max_concurrent: int = 1,
    db_port: int | None = None,
    stopping_rule: StoppingRule | None = None,
    dashboard_port: int | None = None,
    resubmit_failed_trials: bool = False,
    verbose: int = 1,
    load: bool = False,
    mongodb_args: Mapping[str, Any] | None = None,
    disable_dashboard: bool = False,
    *,
    storage: str | Storage | None = None,
    study_name: str = "sherpa",
    seed: int | None = None,
    poll_interval: float = 1.0,
) -> dict[str, Any]:
    """Run a study whose trials are separate jobs (``sherpa.optimize``).

    Each trial runs ``command`` (or ``python filename``) as a job of ``scheduler``; the job
    reports with :class:`Client`. Up to ``max_concurrent`` jobs run at once.

    Args:
        parameters, algorithm, lower_is_better, stopping_rule: as for :class:`~poptune.Study`.
        scheduler: a :class:`~poptune.schedulers.LocalScheduler`, ``SLURMScheduler`` or
            ``SGEScheduler``.
        command: the shell command each job runs, e.g. ``"python train.py --epochs 5"``.
        filename: a Python script each job runs with this interpreter
            (``sys.executable``). Give exactly one of ``command`` and ``filename``.
        output_dir: where the study database (``poptune.db``), ``results.csv``,
            ``study.json`` and the jobs' scripts and output (``jobs/``) go. Default
            ``./output_<YYYYMMDD-HHMMSS>``.
        max_concurrent: how many jobs run at once (>= 1).
        db_port, mongodb_args: SHERPA's MongoDB settings; poptune keeps the study in its own
            storage, so they are not used.
        dashboard_port, disable_dashboard: serve the live web dashboard on this port of
            127.0.0.1 while the jobs run (as ``Study(dashboard_port=...)``).
        resubmit_failed_trials: queue a trial whose job failed once more, with the same
            parameters (a new trial whose ``meta['retry_of']`` names the failed one).
        verbose: log (logger ``poptune``, INFO) one line per submitted and finished job;
            0 logs them at DEBUG.
        load: resume the study ``study_name`` stored there (a previous run into the same
            ``output_dir``, or the same ``storage``) instead of starting a new one.
        storage: a database URL every job can reach. Default
            ``sqlite:///<output_dir>/poptune.db``: right for local jobs and for cluster jobs
            on a shared disk whose file locking works; with many nodes, or NFS, use
            ``postgresql://...``.
        study_name: the study's name in the storage. Default ``"sherpa"``.
        seed: makes the suggestions reproducible (see :class:`~poptune.Study`).
        poll_interval: seconds between two looks at the jobs (SHERPA: 5).

    Returns:
        ``study.get_best_result()``: the best observation of a completed trial (``{}`` if none).

    Raises:
        ConfigurationError: bad arguments.
        StudyMismatchError: the study already exists and ``load`` is False, or ``load`` is
            True and the stored study has other parameters, algorithm or direction.
        PoptuneError: the scheduler could not submit a job (the message names the command).
        KeyboardInterrupt: after Ctrl-C, once the running jobs were killed and their trials
            marked FAILED (``meta['interrupted']``); ``load=True`` resumes the study.
    """
    if (command is None) == (filename is None):
        raise ConfigurationError(
            "optimize() needs exactly one of command= (a shell command line) and filename= "
            f"(a Python script); got command={command!r}, filename={filename!r}"
        )
    if command is not None:
        if not isinstance(command, str) or not command.strip():
            raise ConfigurationError(f"command must be a non-empty str, got {command!r}")
        job_command = command
    else:
        if not isinstance(filename, (str, os.PathLike)) or not os.fspath(filename):
            raise ConfigurationError(f"filename must be a path, got {filename!r}")
        script = Path(filename).absolute()
        if not script.is_file():
            raise ConfigurationError(f"filename {os.fspath(filename)!r}: no such file")
        job_command = f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}"
    if not isinstance(scheduler, Scheduler):
        raise ConfigurationError(
            "scheduler must be a poptune.schedulers.Scheduler (LocalScheduler, SLURMScheduler, "
            f"SGEScheduler), got {scheduler!r}"
        )
    if (
        isinstance(max_concurrent, bool)
        or not isinstance(max_concurrent, numbers.Integral)
        or max_concurrent < 1
    ):
        raise ConfigurationError(f"max_concurrent must be an int >= 1, got {max_concurrent!r}")
    if (
        isinstance(poll_interval, bool)
        or not isinstance(poll_interval, numbers.Real)
        or not poll_interval > 0
    ):
        raise ConfigurationError(f"poll_interval must be seconds > 0, got {poll_interval!r}")
    for label, value in (("resubmit_failed_trials", resubmit_failed_trials), ("load", load),
                         ("disable_dashboard", disable_dashboard)):  # fmt: skip
        if not isinstance(value, bool):
            raise ConfigurationError(f"{label} must be True or False, got {value!r}")
    if not isinstance(study_name, str) or not study_name:
        raise ConfigurationError(f"study_name must be a non-empty str, got {study_name!r}")
    if output_dir is None:
        output_dir = f"output_{datetime.datetime.now():%Y%m%d-%H%M%S}"
    elif not isinstance(output_dir, (str, os.PathLike)) or not os.fspath(output_dir):
        raise ConfigurationError(f"output_dir must be a path or None, got {output_dir!r}")
    out = Path(output_dir).absolute()
    url = _storage_url(storage, out)

    if db_port is not None or mongodb_args:
        logger.info(
            "poptune: optimize() keeps the study in %s, not in MongoDB; db_port and "
            "mongodb_args are not used",
            _safe(url),
        )
    out.mkdir(parents=True, exist_ok=True)
    exists = _study_exists(url, study_name)
    if exists and not load:
        raise StudyMismatchError(
            f"a study named {study_name!r} already exists in {_safe(url)}: pass load=True to "
            "resume it, or choose another output_dir (or study_name)"
        )
    study = Study(
        parameters,
        algorithm,
        lower_is_better,
        stopping_rule=stopping_rule,
        output_dir=out,
        seed=seed,
        storage=url,
        study_name=study_name,
        dashboard_port=dashboard_port,
        disable_dashboard=disable_dashboard,
    )
    if load:
        logger.info(
            "poptune: %s study %r in %s",
            "resuming" if exists else "no stored study to resume; starting",
            study_name,
            _safe(url),
        )
    scheduler._use_output_dir(out)
    runner = _Runner(
        study,
        scheduler,
        job_command,
        url,
        out,
        int(max_concurrent),
        resubmit_failed_trials,
        logging.INFO if verbose else logging.DEBUG,
        float(poll_interval),
    )
    try:
        return runner.run()
    finally:
        study.close()  # stops the dashboard, if one was started


def _storage_url(storage: str | Storage | None, out: Path) -> str:
    """A database URL the jobs can open."""
    if storage is None:
        return f"sqlite:///{out / 'poptune.db'}"
    if isinstance(storage, Storage):
        url = getattr(storage, "url", None)
        if url is None:
            raise ConfigurationError(
                f"optimize() runs trials in other processes, which cannot see {storage!r}; "
                "pass a database URL (sqlite:///file.db, postgresql://...)"
            )
        return str(url)
    if isinstance(storage, (str, os.PathLike)):
        url = os.fspath(storage)
        if url == "memory" or "://" not in url:
            raise ConfigurationError(
                f"storage={url!r}: optimize() runs trials in other processes and needs a "
                "database URL they can open (sqlite:///file.db, postgresql://...)"
            )
        return url
    raise ConfigurationError(f"storage must be a database URL or None, got {storage!r}")


def _safe(url: str) -> str:
    from poptune.storage.sql import safe_url

    return safe_url(url)


def _study_exists(url: str, name: str) -> bool:
    try:
        get_storage(url).get_study_id(name)
    except StudyNotFoundError:
        return False
    return True


@dataclass
class _Job:
    job_id: str
    trial: Trial


class _Runner:
    """The polling loop of :func:`optimize`."""

    def __init__(
        self,
        study: Study,
        scheduler: Scheduler,
        command: str,
        url: str,
        output_dir: Path,
        max_concurrent: int,
        resubmit: bool,
        level: int,
        poll_interval: float,
    ) -> None:
        self.study = study
        self.scheduler = scheduler
        self.command = command
        self.url = url
        self.output_dir = output_dir
        self.max_concurrent = max_concurrent
        self.resubmit = resubmit
        self.level = level
        self.poll_interval = poll_interval
        self.running: dict[int, _Job] = {}
        self._requeued = False
        self._status_errors: set[str] = set()

    def run(self) -> dict[str, Any]:
        study = self.study
        done = False
        try:
            while True:
                self._poll()
                if self._requeued:  # a failed trial is queued again: ask for suggestions
                    done, self._requeued = False, False
                while not done and len(self.running) < self.max_concurrent:
                    suggestion = study.get_suggestion()
                    if isinstance(suggestion, Trial):
                        self._submit(suggestion)
                    elif suggestion is AlgorithmState.WAIT:
                        break
                    else:
                        done = True
                if done and not self.running:
                    break
                time.sleep(self.poll_interval)
        except BaseException as exc:
            self._abort(exc)
            raise
        finally:
            heartbeat = study._heartbeat
            if heartbeat is not None:
                heartbeat.stop()
        study.save(self.output_dir)
        best = study.get_best_result()
        logger.log(
            self.level,
            "poptune: study %r done; results in %s",
            study.name,
            self.output_dir / "results.csv",
        )
        return best

    # -- submitting ----------------------------------------------------------------------
    def _submit(self, trial: Trial) -> None:
        study = self.study
        env = {
            ENV_STORAGE: self.url,
            ENV_STUDY: study.name,
            ENV_TRIAL_ID: str(trial.id),
            _SHERPA_TRIAL_ID: str(trial.id),
            _SHERPA_OUTPUT_DIR: str(self.output_dir),
        }
        try:
            job_id = self.scheduler.submit_job(self.command, env, f"trial_{trial.id}")
        except BaseException as exc:
            self._finish(trial.id, TrialStatus.FAILED,
                         {**trial.meta, "error": f"job submission failed: {exc}"})  # fmt: skip
            raise
        self.running[trial.id] = _Job(str(job_id), trial)
        logger.log(
            self.level,
            "poptune: trial %d submitted as job %s: %s",
            trial.id,
            job_id,
            _describe(trial),
        )

    # -- watching ------------------------------------------------------------------------
    def _poll(self) -> None:
        for tid, job in list(self.running.items()):
            try:
                state = self.scheduler.get_status(job.job_id)
            except PoptuneError as exc:  # e.g. squeue timed out: try again next time
                if job.job_id not in self._status_errors:
                    logger.warning("poptune: state of job %s unknown: %s", job.job_id, exc)
                    self._status_errors.add(job.job_id)
                continue
            if state in FINAL_JOB_STATES:
                del self.running[tid]
                self._ended(job, state)
            elif state == "ACTIVE" and self.study.should_trial_stop(tid):
                del self.running[tid]
                self._stop(job)

    def _stop(self, job: _Job) -> None:
        try:
            self.scheduler.kill_job(job.job_id)
        except PoptuneError as exc:
            logger.warning("poptune: could not kill job %s of trial %d: %s",
                           job.job_id, job.trial.id, exc)  # fmt: skip
        status = self._finish(job.trial.id, TrialStatus.STOPPED)
        logger.log(
            self.level,
            "poptune: trial %d (job %s) stopped by the stopping rule: %s",
            job.trial.id,
            job.job_id,
            status,
        )
        self._save()

    def _ended(self, job: _Job, state: str) -> None:
        tid = job.trial.id
        trial = self.study.get_trial(tid)
        n = len(trial.observations)
        failed = False
        if trial.is_finished:
            status = trial.status
        elif state == "FINISHED" and n:
            status = self._finish(tid, TrialStatus.COMPLETED)
        else:
            if state == "FINISHED":
                error = "the job ended without sending metrics (client.send_metrics)"
            elif state == "KILLED":
                error = "the job was killed"
            else:
                error = f"the job failed; see its output in {self.output_dir / 'jobs'}"
            meta = {**trial.meta, "error": error, "job_id": job.job_id, "job_status": state}
            status = self._finish(tid, TrialStatus.FAILED, meta)
            failed = status is TrialStatus.FAILED
        best = trial.best_observation(self.study.lower_is_better)
        logger.log(
            self.level,
            "poptune: trial %d (job %s) %s: %s, %d observation(s)%s",
            tid,
            job.job_id,
            state.lower(),
            status,
            n,
            "" if best is None else f", best objective {best.objective:.6g}",
        )
        if failed and self.resubmit:
            self._requeue(job.trial)
        self._save()

    def _finish(
        self, tid: int, status: TrialStatus, meta: dict[str, Any] | None = None
    ) -> TrialStatus:
        """Finalize a trial unless someone already did; return its final status."""
        try:
            self.study._finish(tid, status, meta)
        except PoptuneError:  # finished meanwhile (e.g. reaped), or gone
            try:
                return self.study.get_trial(tid).status
            except UnknownTrialError:
                return status
        return status

    def _requeue(self, trial: Trial) -> None:
        """Queue a failed trial once more: a new trial, same parameters, ``retry_of`` meta.

        Like the study's own retries of trials whose worker died, so PBT counts it as another
        attempt at the same population slot (``study.add_trial`` would take a new slot).
        """
        attempt = int(trial.meta.get("attempt", 1))
        if attempt > 1:  # already a resubmission: once per original trial
            return
        study = self.study
        storage, sid = study._storage, study._study_id
        with study._lock:
            with storage.transaction(sid):
                study._history.sync(storage, sid)
                new_id = study._history.next_trial_id
                storage.insert_trial(sid, trial._retry(new_id))
            study._history.sync(storage, sid)
        self._requeued = True
        logger.log(self.level, "poptune: trial %d queued again as trial %d", trial.id, new_id)

    def _save(self) -> None:
        try:
            self.study.save(self.output_dir)
        except PoptuneError as exc:
            logger.warning("poptune: could not write %s: %s", self.output_dir, exc)

    # -- giving up -----------------------------------------------------------------------
    def _abort(self, exc: BaseException) -> None:
        """Kill the running jobs and fail their trials (Ctrl-C or an error)."""
        interrupted = isinstance(exc, KeyboardInterrupt)
        for tid, job in list(self.running.items()):
            try:
                self.scheduler.kill_job(job.job_id)
            except Exception as kill_exc:  # noqa: BLE001 - keep cleaning up
                logger.warning("poptune: could not kill job %s: %s", job.job_id, kill_exc)
            info: dict[str, Any] = (
                {"interrupted": True}
                if interrupted
                else {"error": f"optimize() stopped: {type(exc).__name__}: {exc}"}
            )
            try:
                self.study._finish(tid, TrialStatus.FAILED, {**job.trial.meta, **info})
            except Exception:  # noqa: BLE001, S110 - already finished, or the storage is gone
                pass
        self.running.clear()
        try:
            self.study.save(self.output_dir)
        except Exception:  # noqa: BLE001, S110 - the original error matters more
            pass
        logger.warning(
            "poptune: %s; running jobs were killed and their trials marked FAILED. Run "
            "optimize(..., output_dir=%r, load=True) to resume the study.",
            "interrupted" if interrupted else f"optimize() stopped ({type(exc).__name__})",
            str(self.output_dir),
        )


def _describe(trial: Trial) -> str:
    text = ", ".join(f"{k}={v!r}" for k, v in trial.parameters.items())
    return text if len(text) <= 200 else text[:197] + "..."


class Client:
    """Reports a trial's metrics from inside a job started by :func:`optimize`
    (``sherpa.Client``).

    It reads the study's storage, name and the trial id from the environment variables
    ``POPTUNE_STORAGE``, ``POPTUNE_STUDY`` and ``POPTUNE_TRIAL_ID`` that :func:`optimize` sets,
    and writes observations straight to the storage (the algorithm's code is not needed).

    Args:
        host, port: SHERPA's MongoDB address; not used (the storage URL comes from the
            environment).
        test_mode: run the script outside :func:`optimize` (to debug it): :meth:`get_trial`
            returns ``Trial(1, parameters)`` with the ``parameters`` keyword's dict (default
            empty), and :meth:`send_metrics` checks the values and keeps them on that trial.

    Raises:
        ConfigurationError: the script is not running under :func:`optimize` (a variable is
            missing) and ``test_mode`` is False.
    """

    def __init__(
        self,
        host: str | None = None,
        port: int | None = None,
        test_mode: bool = False,
        **kwargs: Any,
    ) -> None:
        self.test_mode = bool(test_mode)
        self._trial_cache: dict[int, Trial] = {}
        if host is not None or port is not None:
            logger.info("poptune: Client(host=..., port=...) is not used; reporting to %s",
                        os.environ.get(ENV_STORAGE, "the storage in POPTUNE_STORAGE"))  # fmt: skip
        if self.test_mode:
            params = kwargs.pop("parameters", None) or {}
            self._test_trial = Trial(1, dict(params))
            self._storage: Storage | None = None
            self._study_id = 0
            self.trial_id = 1
            self.study_name = ""
            self.storage_url = ""
            self._config: dict[str, Any] = {"parameters": []}
            return
        url = os.environ.get(ENV_STORAGE)
        if not url:
            raise ConfigurationError(
                f"this script is not running under poptune.optimize: {ENV_STORAGE} is not set "
                "(use Client(test_mode=True) to run it on its own)"
            )
        name = os.environ.get(ENV_STUDY)
        if not name:
            raise ConfigurationError(
                f"this script is not running under poptune.optimize: {ENV_STUDY} is not set"
            )
        raw_id = os.environ.get(ENV_TRIAL_ID) or os.environ.get(_SHERPA_TRIAL_ID)
        if not raw_id:
            raise ConfigurationError(
                f"this script is not running under poptune.optimize: {ENV_TRIAL_ID} is not set"
            )
        try:
            self.trial_id = int(raw_id)
        except ValueError:
            raise ConfigurationError(
                f"{ENV_TRIAL_ID}={raw_id!r} is not a trial id (an int)"
            ) from None
        self.storage_url = url
        self.study_name = name
        self._storage = get_storage(url)
        self._study_id = self._storage.get_study_id(name)
        self._config = self._storage.get_study_config(self._study_id)

    def get_trial(self) -> Trial:
        """This job's trial (``trial.id``, ``trial.parameters``, PBT's ``load_from`` ...)."""
        if self._storage is None:
            return self._test_trial
        trial = self._storage.get_trial(self._study_id, self.trial_id)
        self._trial_cache[trial.id] = trial
        return trial

    def _parameter_keys(self, tid: int) -> set[str]:
        keys = {d["name"] for d in self._config.get("parameters", ()) if isinstance(d, dict)}
        trial = self._trial_cache.get(tid)
        if trial is None and self._storage is not None:
            trial = self._storage.get_trial(self._study_id, tid)  # UnknownTrialError if none
            self._trial_cache[tid] = trial
        if trial is not None:
            keys.update(trial.parameters)  # PBT's generation, load_from, save_to, lineage
        return keys

    def send_metrics(
        self,
        trial: Trial | int,
        iteration: int,
        objective: float,
        context: Mapping[str, Any] | None = None,
    ) -> None:
        """Record the trial's objective at ``iteration`` (SHERPA's ``send_metrics``).

        Same checks and errors as :meth:`poptune.Study.add_observation`:
        ``InvalidObservationError`` for a NaN, infinite or non-numeric objective, a non-int
        iteration or a bad context; ``DuplicateIterationError``; ``UnknownTrialError``;
        ``TrialFinishedError`` (e.g. the trial was stopped).
        """
        if isinstance(trial, Trial):
            tid = trial.id
        elif isinstance(trial, numbers.Integral) and not isinstance(trial, bool):
            tid = int(trial)
        else:
            raise UnknownTrialError(f"expected a Trial or a trial id, got {trial!r}")
        value = check_objective(objective, tid)
        it = check_iteration(iteration, tid)
        ctx: dict[str, Any] | None = None
        if context:
            reserved = frozenset((*RESERVED_COLUMNS, *self._parameter_keys(tid)))
            ctx = check_context(context, tid, reserved)
        observation = Observation(it, value, ctx or {})
        if self._storage is None:
            target = self._test_trial
            if tid != target.id:
                raise UnknownTrialError(f"trial {tid!r}: test mode has only trial 1")
            if it in target.observations:
                raise DuplicateIterationError(
                    f"trial {tid} already has an observation at iteration {it}"
                )
            target._record(observation)
            logger.info("poptune (test mode): trial %d iteration %d objective %r %s",
                        tid, it, value, ctx or "")  # fmt: skip
            return
        self._storage.add_observation(self._study_id, tid, observation)
        if trial is self._trial_cache.get(tid):
            trial._record(observation)  # so get_trial()'s trial shows what was sent

    def __repr__(self) -> str:
        return f"Client(study={self.study_name!r}, trial_id={self.trial_id})"
