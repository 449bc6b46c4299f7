"""``Study.optimize``: trials in this process, in local worker processes, or on a Dask cluster.

Every worker runs the same loop (:func:`poptune.study._worker.run_worker`) against the study's
storage; decisions stay with the algorithm and the storage lock, so workers need no
coordination of their own. What each worker process or task is given is one
:class:`WorkerPlan`.
"""

from __future__ import annotations

import copy
import logging
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from poptune._validation import check_callable, check_int, check_positive, reject
from poptune.algorithms.base import SherpaAlgorithm
from poptune.exceptions import PoptuneError
from poptune.study._devices import (
    ENV_ASSIGNED,
    ENV_DEVICE,
    assign,
    check_devices,
    environ,
    environment,
)
from poptune.study._failures import (
    DEFAULT_MAX_CONSECUTIVE_FAILURES,
    FailureLimit,
    check_limit,
    conclude,
)
from poptune.study._progress import Progress
from poptune.study._shipping import ShippedObjective, TemporaryHome, load_objective, ship
from poptune.study._suggestion import new_trial
from poptune.study._worker import Objective, deadline_in, run_worker
from poptune.study.callbacks import check_callbacks
from poptune.trial import AlgorithmState

if TYPE_CHECKING:
    from poptune.study.study import Study

__all__ = ["WorkerPlan", "nothing_to_do", "optimize", "worker_main"]

logger = logging.getLogger("poptune")


@dataclass(frozen=True)
class WorkerPlan:
    """What every worker process or task of one ``optimize`` call runs (picklable).

    Attributes:
        join: how a worker opens the study (``Study.join``).
        url: the study's database URL.
        study_name: the study's name.
        objective: the user's objective, serialized (``_shipping.ShippedObjective``).
        max_trial_id: no trial above this id (``n_trials``), or None.
        timeout: seconds from the worker's start after which it starts no trial, or None.
        options: the caller's own Study settings (``WorkerOptions.as_kwargs()``).
        failures: when to stop after failed trials (``max_consecutive_failures``), or None.
        callbacks: the study callbacks every worker runs, serialized (after
            ``on_study_start`` ran in the calling process: :mod:`poptune.study.callbacks`).
    """

    join: Callable[..., Study]
    url: str
    study_name: str
    objective: ShippedObjective | Objective
    max_trial_id: int | None
    timeout: float | None
    options: dict[str, Any]
    failures: FailureLimit | None = None
    callbacks: tuple[ShippedObjective, ...] = ()


def optimize(
    study: Study,
    objective: Objective,
    n_trials: int | None,
    timeout: float | None,
    n_workers: int,
    executor: Any,
    show_progress: bool,
    *,
    join: Callable[..., Study],
    max_consecutive_failures: int | None = DEFAULT_MAX_CONSECUTIVE_FAILURES,
    devices: int | Sequence[str | int] | None = None,
    resources: Mapping[str, float] | None = None,
    callbacks: Sequence[Any] | None = None,
) -> None:
    """See :meth:`poptune.Study.optimize`; ``join`` opens the study in a worker process.

    Ends with the call's summary, or raises TrialsFailingError
    (:mod:`poptune.study._failures`); ``devices``: :mod:`poptune.study._devices`;
    ``resources``: passed to the executor's ``submit`` for every worker task;
    ``callbacks``: this call's own, beside the study's (:mod:`poptune.study.callbacks`)."""
    check_callable("optimize", "objective", objective)
    check_int("optimize", "n_trials", n_trials, 1, allow_none=True)
    check_positive("optimize", "timeout", timeout, allow_none=True)
    check_int("optimize", "n_workers", n_workers, 1)
    if executor is not None and not callable(getattr(executor, "submit", None)):
        what = "None or an object with a submit() method (a dask.distributed.Client)"
        reject("optimize", "executor", what, executor, wrong_type=True)
    limit = check_limit("optimize", max_consecutive_failures)
    device_list = check_devices(devices, executor)
    if resources is not None and (executor is None or not isinstance(resources, Mapping)):
        what = "a mapping such as {'GPU': 1}, given with an executor"
        reject("optimize", "resources", what, resources, wrong_type=executor is not None)
    remote = executor is not None
    shipped = ship(objective, remote=remote) if remote or n_workers > 1 else None
    extra = check_callbacks("optimize", callbacks)
    study._check_writable()
    with study._callbacks.added(extra) as every:  # this call's callbacks, for this call
        max_trial_id = study.history.n_trials + n_trials if n_trials is not None else None
        start = study.history.n_trials
        failures = None if limit is None else FailureLimit(start, limit)
        outcome: WorkerOutcome | None = None
        progress = Progress(study, n_trials, start, enabled=show_progress)
        home = TemporaryHome(study)  # a study in memory: a temporary SQLite copy, removed after
        study._callbacks.study_started(study)
        try:
            if executor is None and n_workers == 1:
                env = {} if device_list is None else {ENV_DEVICE: device_list[0],
                                                      ENV_ASSIGNED: device_list[0]}  # fmt: skip
                with environ(env):
                    run_worker(study, objective, max_trial_id, deadline_in(timeout),
                               on_trial=lambda trial, status: progress.refresh(),
                               failures=failures)  # fmt: skip
            elif not nothing_to_do(study, max_trial_id):
                sent = tuple(ship(c, remote=remote, kind="callback") for c in every)
                plan = WorkerPlan(join, home.url(), study.name, shipped, max_trial_id,
                                  timeout, study._options.as_kwargs(), failures, sent)  # fmt: skip
                if executor is None:
                    outcome = _run_processes(plan, n_workers, progress, device_list)
                else:
                    outcome = _run_executor(executor, plan, n_workers, progress, resources)
        except KeyboardInterrupt:
            logger.warning(
                "poptune: interrupted; running trials were marked FAILED (meta 'interrupted'). "
                "Nothing else is lost: run the study again to resume it."
            )
            raise
        finally:
            progress.close()
            home.close()
            study._callbacks.study_ended(study)
        conclude(study, start, limit)  # the summary; TrialsFailingError when failures stopped it
        if outcome is not None:
            judge(study, outcome, start, max_trial_id)


def nothing_to_do(study: Study, max_trial_id: int | None) -> bool:
    """Whether a call would find the study finished: no trial QUEUED or RUNNING and the
    algorithm answering DONE. Asked before any worker process is started, in a transaction
    whose writes are undone (the algorithm's state is put back as it was): a finished study
    run again returns at once. Only poptune's own algorithms are asked (they keep everything
    in the stored state); a SHERPA-style one may count its calls, so it is not."""
    if isinstance(study.algorithm, SherpaAlgorithm):
        return False
    history = study.history
    if history.n_unfinished:
        return False
    answer: Any = None
    with study._lock:
        try:
            with study._writing():
                saved = copy.deepcopy(study._storage.get_algorithm_state(study._study_id))
                try:
                    answer = new_trial(study, study._next_id, max_trial_id)  # type: ignore[arg-type]
                finally:
                    study._storage.set_algorithm_state(study._study_id, saved)
                raise _Undo
        except _Undo:
            pass
    if answer is AlgorithmState.DONE:
        logger.info("poptune: study %r is done; no worker started", study.name)
        return True
    return False


class _Undo(Exception):
    """Ends :func:`nothing_to_do`'s transaction, undoing it."""


def worker_main(plan: WorkerPlan) -> int:
    """Entry point of a worker process or task: join the study and run trials.

    Returns the number of trials this worker ran.
    """
    deadline = deadline_in(plan.timeout)
    objective = load_objective(plan.objective)  # a failure: one line naming the objective
    study = plan.join(plan.url, plan.study_name, **plan.options)
    study._callbacks.items.extend(load_objective(c) for c in plan.callbacks)
    return run_worker(study, objective, plan.max_trial_id, deadline,
                      failures=plan.failures, announce=False)  # fmt: skip


def _process_entry(queue: Any, plan: WorkerPlan) -> None:
    try:
        worker_main(plan)
    except KeyboardInterrupt:
        sys.exit(130)
    except BaseException:
        queue.put(traceback.format_exc())
        sys.exit(1)


def _run_processes(
    plan: WorkerPlan, n_workers: int, progress: Progress, devices: list[str] | None = None
) -> WorkerOutcome:
    """Start ``n_workers`` spawned processes running ``plan``; worker ``i`` starts with the
    environment of its device (:func:`poptune.study._devices.assign`)."""
    import multiprocessing  # here: a study that starts no process never imports it

    ctx = multiprocessing.get_context("spawn")
    errors = ctx.Queue()
    procs = [
        ctx.Process(target=_process_entry, args=(errors, plan), name=f"poptune-worker-{i}")
        for i in range(n_workers)
    ]
    for p, device in zip(procs, assign(devices, n_workers), strict=True):
        with environ(environment(device)):  # inherited by the process, before it runs
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
    tracebacks = []
    while not errors.empty():
        tracebacks.append(errors.get().strip().splitlines()[-1])
    failures = []
    for p in procs:
        if p.exitcode == 1 and tracebacks:
            failures.append(f"{p.name}: {tracebacks.pop(0)}")
        elif p.exitcode not in (0, None):
            code = p.exitcode
            what = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
            failures.append(f"{p.name}: {what}")
    failures.extend(tracebacks)
    n_clean = sum(1 for p in procs if p.exitcode == 0)
    return WorkerOutcome(n_workers, n_clean, failures)


def _run_executor(
    executor: Any,
    plan: WorkerPlan,
    n_workers: int,
    progress: Progress,
    resources: Mapping[str, float] | None = None,
) -> WorkerOutcome:
    kwargs: dict[str, Any] = {}
    if type(executor).__module__.startswith("distributed"):
        kwargs["pure"] = False  # n identical tasks must run n times
    if resources is not None:
        kwargs["resources"] = dict(resources)  # e.g. {"GPU": 1}: one task per GPU
    futures = [executor.submit(worker_main, plan, **kwargs) for _ in range(n_workers)]
    try:
        while not all(f.done() for f in futures):
            progress.refresh()
            time.sleep(0.25)
    except KeyboardInterrupt:
        for f in futures:
            f.cancel()
        raise
    progress.refresh()
    failures, first = [], None
    for f in futures:
        try:
            f.result()
        except Exception as exc:  # noqa: BLE001 - a lost task; judged by what is left undone
            failures.append(f"{type(exc).__name__}: {exc}")
            first = first or exc
    return WorkerOutcome(n_workers, n_workers - len(failures), failures, first)


@dataclass
class WorkerOutcome:
    """How the workers of one ``optimize`` call ended: how many there were, how many
    returned normally, one line per one that did not, and (tasks) the first exception."""

    n_workers: int
    n_clean: int
    failures: list[str]
    first_error: BaseException | None = None


def work_left(study: Study, start: int, max_trial_id: int | None) -> list[int]:
    """Ids of this call's trials (above ``start``; with ``n_trials`` up to ``max_trial_id``,
    and their retries) still QUEUED or RUNNING: work the workers left undone."""
    return [
        t.id
        for t in study.history.unfinished
        if t.id > start and (max_trial_id is None or t.id <= max_trial_id or "retry_of" in t.meta)
    ]


def judge(study: Study, outcome: WorkerOutcome, start: int, max_trial_id: int | None) -> None:
    """After the workers of an ``optimize`` call ended: return if the study's work is done
    (a lost worker is then a warning: the others reaped its trial and ran its retry or
    replacement); raise PoptuneError if no worker returned normally or trials are left
    unfinished."""
    if not outcome.failures:
        return
    n_bad = len(outcome.failures)
    undone = work_left(study, start, max_trial_id)
    if outcome.n_clean and not undone:
        logger.warning(
            "poptune: %d of %d worker(s) of study %r were lost (%s); the other workers "
            "finished the study (lost trials are FAILED with meta 'heartbeat_lost', and "
            "retried or replaced where the study says so)",
            n_bad,
            outcome.n_workers,
            study.name,
            "; ".join(outcome.failures),
        )
        return
    why = f"trial(s) {undone} left unfinished" if undone else "no worker finished"
    error = PoptuneError(f"{n_bad} worker process(es) failed ({why}): {outcome.failures[0]}")
    if outcome.first_error is not None:
        raise error from outcome.first_error
    raise error
