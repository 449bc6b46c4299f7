"""SHERPA's job runner: :func:`optimize` runs every trial as a job (``sherpa.optimize``).

The runner (:func:`optimize`) keeps the study in poptune's own storage (an SQLite file in the
output directory by default, or any database URL) instead of SHERPA's MongoDB. For each trial
it submits the user's command through a :mod:`~poptune.execution.schedulers` scheduler with these
environment variables:

==================== ===================================================================
``POPTUNE_STORAGE``  the study's database URL
``POPTUNE_STUDY``    the study's name
``POPTUNE_TRIAL_ID`` the trial's id
``SHERPA_TRIAL_ID``  the same id, under SHERPA's name
``SHERPA_OUTPUT_DIR`` the output directory
==================== ===================================================================

Inside the job, the trial script (``import poptune as sherpa``) reports with
:class:`~poptune.execution.client.Client`::

    client = sherpa.Client()
    trial = client.get_trial()
    for epoch in range(n):
        ...
        client.send_metrics(trial=trial, iteration=epoch + 1, objective=acc,
                            context={"loss": loss})

``send_metrics`` writes straight to the storage, so the job needs poptune and the database,
not the algorithm's code. The runner polls the jobs: a job that ends finalizes its trial
(COMPLETED when it exited normally after sending metrics, otherwise FAILED), a trial the
stopping rule stops is killed and finalized STOPPED. The runner uses only the Study's public
methods (``get_suggestion``, ``finalize``, ``requeue``, ``should_trial_stop``, ``save``,
``close``).
"""

from __future__ import annotations

import datetime
import logging
import os
import shlex
import sys
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from poptune._polling import Backoff
from poptune._sherpa_alias import job_environment
from poptune._validation import (
    check_bool,
    check_instance,
    check_int,
    check_path,
    check_positive,
    check_str,
)
from poptune.algorithms.base import Algorithm
from poptune.exceptions import (
    ConfigurationError,
    PoptuneError,
    StudyMismatchError,
    StudyNotFoundError,
    UnknownTrialError,
)
from poptune.execution.client import (
    _SHERPA_OUTPUT_DIR,
    _SHERPA_TRIAL_ID,
    ENV_STORAGE,
    ENV_STUDY,
    ENV_TRIAL_ID,
)
from poptune.execution.schedulers import FINAL_JOB_STATES, Scheduler
from poptune.parameters import Parameter
from poptune.stopping import StoppingRule
from poptune.storage import Storage, resolve
from poptune.study import Study
from poptune.trial import AlgorithmState, Trial, TrialStatus

__all__ = ["optimize"]

logger = logging.getLogger("poptune")

#: A job that ends FAILED is run once more with ``resubmit_failed_trials``: two attempts.
_RESUBMIT_ATTEMPTS = 2


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
        verbose: 1 (default) says what happens, as SHERPA did: each submitted trial with its
            parameters, each finished job with its status and best objective, a failed job
            with the end of its output file, the stopping rule's stops, and a summary at the
            end; printed on standard output unless logger ``poptune`` shows INFO (then logged
            there, not twice). 0 logs them at DEBUG only. Whatever ``verbose``, a failed job
            is a WARNING naming its output file, and a run in which every trial failed ends
            with a ``RuntimeWarning`` (the result is then ``{}``).
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
        check_str("optimize", "command", command, nonempty=True, strip=True)
        job_command = command
    else:
        check_path("optimize", "filename", filename)
        script = Path(filename).absolute()
        if not script.is_file():
            raise ConfigurationError(f"optimize: filename {os.fspath(filename)!r}: no such file")
        job_command = f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}"
    what = "a poptune.schedulers.Scheduler (LocalScheduler, SLURMScheduler, SGEScheduler)"
    check_instance("optimize", "scheduler", scheduler, Scheduler, what)
    max_concurrent = check_int("optimize", "max_concurrent", max_concurrent, 1)
    poll_interval = check_positive("optimize", "poll_interval", poll_interval)
    for label, value in (("resubmit_failed_trials", resubmit_failed_trials), ("load", load),
                         ("disable_dashboard", disable_dashboard)):  # fmt: skip
        check_bool("optimize", label, value)
    check_str("optimize", "study_name", study_name, nonempty=True)
    if output_dir is None:
        output_dir = f"output_{datetime.datetime.now():%Y%m%d-%H%M%S}"
    else:
        check_path("optimize", "output_dir", output_dir)
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
        _Plan(
            command=job_command,
            url=url,
            output_dir=out,
            max_concurrent=max_concurrent,
            resubmit=resubmit_failed_trials,
            level=logging.INFO if verbose else logging.DEBUG,
            poll_interval=poll_interval,
            verbose=bool(verbose),
        ),
    )
    try:
        return runner.run()
    finally:
        study.close()  # stops the dashboard, if one was started


def _storage_url(storage: str | Storage | None, out: Path) -> str:
    """A database URL the jobs can open (default: ``poptune.db`` in the output directory)."""
    if storage is None:
        return f"sqlite:///{out / 'poptune.db'}"
    url = getattr(resolve(storage), "url", None)
    if url is None:
        raise ConfigurationError(
            f"optimize() runs trials in other processes, which cannot see storage={storage!r}; "
            "pass a database URL (sqlite:///file.db, postgresql://...)"
        )
    return str(url)


def _safe(url: str) -> str:
    from poptune.storage.sql import safe_url  # SQLAlchemy is imported once a URL is used

    return safe_url(url)


def _study_exists(url: str, name: str) -> bool:
    try:
        resolve(url).get_study_id(name)
    except StudyNotFoundError:
        return False
    return True


@dataclass
class _Job:
    job_id: str
    trial: Trial


@dataclass(frozen=True)
class _Plan:
    """How :func:`optimize` runs its jobs (its checked arguments)."""

    command: str
    url: str
    output_dir: Path
    max_concurrent: int
    resubmit: bool
    level: int  # logging level of the per-job lines
    poll_interval: float
    verbose: bool = False  # print the per-job lines when logging would not show them


class _Runner:
    """The polling loop of :func:`optimize`."""

    def __init__(self, study: Study, scheduler: Scheduler, plan: _Plan) -> None:
        self.study = study
        self.scheduler = scheduler
        self.command = plan.command
        self.url = plan.url
        self.output_dir = plan.output_dir
        self.max_concurrent = plan.max_concurrent
        self.resubmit = plan.resubmit
        self.level = plan.level
        self.verbose = plan.verbose
        self.poll = Backoff(plan.poll_interval, plan.poll_interval)  # a fixed interval
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
                self.poll.wait()
        except BaseException as exc:
            self._abort(exc)
            raise
        finally:
            study.close()  # no more heartbeats (the jobs report for themselves)
        study.save(self.output_dir)
        best = study.get_best_result()
        self._summary(best)
        return best

    # -- saying what happens -------------------------------------------------------------
    def _say(self, message: str, *args: Any, block: str = "") -> None:
        """Log a per-job line at the runner's level; with ``verbose`` and logger ``poptune``
        not showing it, print it (and ``block``, more lines) on standard output."""
        logger.log(self.level, message, *args)
        if self.verbose and not logger.isEnabledFor(logging.INFO):
            print((message % args if args else message) + block, flush=True)  # noqa: T201

    def _output_of(self, trial_id: int) -> Path:
        return self.output_dir / "jobs" / f"trial_{trial_id}.out"

    def _summary(self, best: dict[str, Any]) -> None:
        trials = self.study.trials
        counts = Counter(t.status.value for t in trials)
        text = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        self._say("poptune: study %r done: %d trial(s) (%s); results in %s",
                  self.study.name, len(trials), text or "none",
                  self.output_dir / "results.csv")  # fmt: skip
        if best:
            where = (best.get("Trial-ID"), best.get("Objective"), best.get("Iteration"))
            self._say("poptune: best result: trial %s, objective %.6g at iteration %s", *where)
        if trials and counts.get("FAILED", 0) == len(trials):
            first = trials[0]
            warnings.warn(
                f"poptune.optimize: every one of the {len(trials)} trial(s) of study "
                f"{self.study.name!r} failed, so the result is {{}}. Trial {first.id}: "
                f"{first.meta.get('error', 'no error recorded')}. Job output: "
                f"{self.output_dir / 'jobs'}",
                RuntimeWarning,
                stacklevel=4,
            )

    # -- submitting ----------------------------------------------------------------------
    def _submit(self, trial: Trial) -> None:
        study = self.study
        env = {
            ENV_STORAGE: self.url,
            ENV_STUDY: study.name,
            ENV_TRIAL_ID: str(trial.id),
            _SHERPA_TRIAL_ID: str(trial.id),
            _SHERPA_OUTPUT_DIR: str(self.output_dir),
            **job_environment(self.output_dir),  # `import sherpa` in the job, when aliased
        }
        try:
            job_id = self.scheduler.submit_job(self.command, env, f"trial_{trial.id}")
        except BaseException as exc:
            self._finalize(trial.id, TrialStatus.FAILED,
                         {**trial.meta, "error": f"job submission failed: {exc}"})  # fmt: skip
            raise
        self.running[trial.id] = _Job(str(job_id), trial)
        width = max((len(str(k)) for k in trial.parameters), default=0)
        block = "".join(f"\n    {str(k):<{width}} = {v!r}" for k, v in trial.parameters.items())
        self._say("poptune: trial %d submitted as job %s: %s", trial.id, job_id,
                  _describe(trial), block=block)  # fmt: skip

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
        status = self._finalize(job.trial.id, TrialStatus.STOPPED)
        self._say("poptune: trial %d (job %s) stopped by the stopping rule: %s",
                  job.trial.id, job.job_id, status)  # fmt: skip
        self._save()

    def _ended(self, job: _Job, state: str) -> None:
        tid = job.trial.id
        trial = self.study.get_trial(tid)
        n = len(trial.observations)
        failed = False
        if trial.is_finished:
            status = trial.status
        elif state == "FINISHED" and n:
            status = self._finalize(tid, TrialStatus.COMPLETED)
        else:
            if state == "FINISHED":
                error = "the job ended without sending metrics (client.send_metrics)"
            elif state == "KILLED":
                error = "the job was killed"
            else:
                error = f"the job failed; see its output in {self.output_dir / 'jobs'}"
            output = self._output_of(tid)
            last = _last_line(output)
            if last:
                error += f"; its output {output.name} ends with: {last}"
            meta = {**trial.meta, "error": error, "job_id": job.job_id, "job_status": state}
            status = self._finalize(tid, TrialStatus.FAILED, meta)
            failed = status is TrialStatus.FAILED
            if failed:
                where = output if output.is_file() else self.output_dir / "jobs"
                logger.warning("poptune: trial %d (job %s) FAILED: %s (output: %s)",
                               tid, job.job_id, error, where)  # fmt: skip
        best = trial.best_observation(self.study.lower_is_better)
        self._say("poptune: trial %d (job %s) %s: %s, %d observation(s)%s", tid, job.job_id,
                  state.lower(), status, n,
                  "" if best is None else f", best objective {best.objective:.6g}")  # fmt: skip
        if failed and self.resubmit:
            self._requeue(job.trial)
        self._save()

    def _finalize(
        self, tid: int, status: TrialStatus, meta: dict[str, Any] | None = None
    ) -> TrialStatus:
        """Finalize a trial unless someone already did; return its final status."""
        try:
            self.study.finalize(tid, status, meta=meta)
        except PoptuneError:  # finished meanwhile (e.g. reaped), or gone
            try:
                return self.study.get_trial(tid).status
            except UnknownTrialError:
                return status
        return status

    def _requeue(self, trial: Trial) -> None:
        """Queue a failed trial once more (``Study.requeue``, at most two attempts): PBT counts
        it as another attempt at the same population slot (``add_trial`` would take a new
        one)."""
        retry = self.study.requeue(trial, max_attempts=_RESUBMIT_ATTEMPTS)
        if retry is None:  # already a resubmission: once per original trial
            return
        self._requeued = True
        self._say("poptune: trial %d queued again as trial %d", trial.id, retry.id)

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
                self.study.finalize(tid, TrialStatus.FAILED, meta={**job.trial.meta, **info})
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


def _last_line(path: Path, limit: int = 300) -> str:
    """The last non-empty line of a job's output file ('' if none): a trial script that could
    not import ends with its ``ModuleNotFoundError``."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 4096))
            tail = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    return lines[-1][:limit] if lines else ""


def _describe(trial: Trial) -> str:
    text = ", ".join(f"{k}={v!r}" for k, v in trial.parameters.items())
    return text if len(text) <= 200 else text[:197] + "..."
