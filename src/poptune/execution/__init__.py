"""Running trials: in this process, in local worker processes, or on a Dask cluster.

:func:`optimize` is what :meth:`poptune.Study.optimize` runs. Every worker runs the same loop
(:func:`~poptune.execution.worker.run_worker`) against the study's storage; decisions stay
with the algorithm and the storage lock, so workers need no coordination of their own.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import shutil
import signal
import sys
import tempfile
import time
import traceback
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

from poptune._validation import check_int, check_positive
from poptune.exceptions import ConfigurationError, PoptuneError
from poptune.execution.progress import Progress
from poptune.execution.worker import Objective, run_trial, run_worker

if TYPE_CHECKING:
    from poptune.study import Study

__all__ = ["optimize", "run_trial", "run_worker", "shared_url", "worker_main"]

logger = logging.getLogger("poptune")


def optimize(
    study: Study,
    objective: Objective,
    n_trials: int | None = None,
    timeout: float | None = None,
    n_workers: int = 1,
    executor: Any = None,
    show_progress: bool = True,
) -> None:
    """See :meth:`poptune.Study.optimize`."""
    if not callable(objective):
        raise ConfigurationError(f"objective must be callable, got {objective!r}")
    check_int("optimize", "n_trials", n_trials, 1, allow_none=True)
    check_positive("optimize", "timeout", timeout, allow_none=True)
    check_int("optimize", "n_workers", n_workers, 1)
    if executor is not None and not callable(getattr(executor, "submit", None)):
        raise ConfigurationError(
            f"executor must have a submit() method (a dask.distributed.Client), got {executor!r}"
        )
    if executor is not None or n_workers > 1:
        try:
            pickle.dumps(objective)
        except Exception as exc:  # noqa: BLE001 - any pickling failure means the same
            raise ConfigurationError(
                f"objective {objective!r} cannot be sent to worker processes ({exc}); define "
                "it at module level so it can be pickled"
            ) from None
    study._check_writable()
    max_trial_id = study.history.n_trials + n_trials if n_trials is not None else None
    start = study.history.n_trials
    progress = Progress(study, n_trials, start, enabled=show_progress)
    try:
        if executor is None and n_workers == 1:
            deadline = None if timeout is None else time.monotonic() + timeout
            run_worker(study, objective, max_trial_id, deadline,
                       on_trial=lambda trial, status: progress.refresh())  # fmt: skip
        else:
            url = shared_url(study)
            options = study._worker_options()
            if executor is None:
                _run_processes(study, url, objective, max_trial_id, timeout, n_workers, options,
                               progress)  # fmt: skip
            else:
                _run_executor(executor, study, url, objective, max_trial_id, timeout, n_workers,
                              options, progress)  # fmt: skip
    except KeyboardInterrupt:
        logger.warning(
            "poptune: interrupted; running trials were marked FAILED (meta 'interrupted'). "
            "Nothing else is lost: run the study again to resume it."
        )
        raise
    finally:
        progress.close()


def shared_url(study: Study) -> str:
    """A database URL other processes can open for ``study``; a study kept in memory moves
    to a temporary SQLite file first (logged), and this object then works on that file."""
    url = getattr(study._storage, "url", None)
    if url is not None:
        return str(url)
    from poptune.history import History
    from poptune.storage.sql import SQLStorage
    from poptune.trial import Trial

    directory = tempfile.mkdtemp(prefix="poptune-")
    path = Path(directory) / f"{study.name}.db"
    logger.warning(
        "poptune: study %r lives in memory; its worker processes share a temporary SQLite "
        "file, %s (pass storage='sqlite:///...' to choose where it lives)",
        study.name,
        path,
    )
    with study._lock:
        study._history.sync(study._storage, study._study_id)
        trials = study._history.trials
        state = study._storage.get_algorithm_state(study._study_id)
        sql = SQLStorage(f"sqlite:///{path}")
        study_id = sql.create_study(study.name, study._config(strict=True, seed=study.seed))
        with sql.transaction(study_id):
            for trial in trials:
                sql.insert_trial(study_id, Trial.from_dict(trial.to_dict()))
            sql.set_algorithm_state(study_id, state)
        study._storage, study._study_id = sql, study_id
        study._history = History(study.parameters, study.lower_is_better)
        study._history.sync(sql, study_id)
        study._start_liveness()
    weakref.finalize(study, shutil.rmtree, directory, True)
    return sql.url


def worker_main(
    url: str,
    study_name: str,
    objective: Objective,
    max_trial_id: int | None,
    seconds_left: float | None,
    options: dict[str, Any],
) -> int:
    """Entry point of a worker process or task: join the study and run trials.

    Returns the number of trials this worker ran.
    """
    from poptune.study import Study

    deadline = None if seconds_left is None else time.monotonic() + seconds_left
    study = Study.join(url, study_name, **options)
    return run_worker(study, objective, max_trial_id, deadline)


def _process_entry(queue: Any, *args: Any) -> None:
    try:
        worker_main(*args)
    except KeyboardInterrupt:
        sys.exit(130)
    except BaseException:
        queue.put(traceback.format_exc())
        sys.exit(1)


def _run_processes(
    study: Study,
    url: str,
    objective: Objective,
    max_trial_id: int | None,
    timeout: float | None,
    n_workers: int,
    options: dict[str, Any],
    progress: Progress,
) -> None:
    ctx = multiprocessing.get_context("spawn")
    errors = ctx.Queue()
    procs = [
        ctx.Process(
            target=_process_entry,
            args=(errors, url, study.name, objective, max_trial_id, timeout, options),
            name=f"poptune-worker-{i}",
        )
        for i in range(n_workers)
    ]
    for p in procs:
        p.start()
    try:
        while any(p.is_alive() for p in procs):
            progress.refresh()
            for p in procs:
                p.join(0.25 / n_workers)
    except KeyboardInterrupt:
        # A terminal's Ctrl-C reached the workers too: give them time to mark their trials;
        # only then pass the interrupt on (if just this process got it), then make sure.
        deadline = time.monotonic() + 5
        for p in procs:
            p.join(max(0.0, deadline - time.monotonic()))
        for p in procs:
            if p.is_alive():
                os.kill(p.pid, signal.SIGINT)  # type: ignore[arg-type]
        for p in procs:
            p.join(15)
            if p.is_alive():
                p.terminate()
        raise
    progress.refresh()
    failures = []
    while not errors.empty():
        failures.append(errors.get())
    bad = [p.exitcode for p in procs if p.exitcode not in (0, None)]
    if failures or bad:
        detail = failures[0].strip().splitlines()[-1] if failures else f"exit codes {bad}"
        raise PoptuneError(f"{len(failures) or len(bad)} worker process(es) failed: {detail}")


def _run_executor(
    executor: Any,
    study: Study,
    url: str,
    objective: Objective,
    max_trial_id: int | None,
    timeout: float | None,
    n_workers: int,
    options: dict[str, Any],
    progress: Progress,
) -> None:
    kwargs: dict[str, Any] = {}
    if type(executor).__module__.startswith("distributed"):
        kwargs["pure"] = False  # n identical tasks must run n times
    futures = [
        executor.submit(
            worker_main, url, study.name, objective, max_trial_id, timeout, options, **kwargs
        )  # fmt: skip
        for _ in range(n_workers)
    ]
    try:
        while not all(f.done() for f in futures):
            progress.refresh()
            time.sleep(0.25)
    except KeyboardInterrupt:
        for f in futures:
            f.cancel()
        raise
    progress.refresh()
    for f in futures:
        f.result()  # re-raises a worker's error here
