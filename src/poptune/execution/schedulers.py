"""Schedulers: how :func:`poptune.optimize` runs each trial as a separate job.

A scheduler starts a shell command with some environment variables, reports the job's
state, and kills it on request (SHERPA's ``sherpa.schedulers`` interface):

* :class:`LocalScheduler` — a subprocess on this machine;
* :class:`SLURMScheduler` — a batch job submitted with ``sbatch``;
* :class:`SGEScheduler` — a batch job submitted with ``qsub`` (Sun/Son of/Univa Grid Engine).

Every :meth:`Scheduler.get_status` answers one of the :data:`JOB_STATES`:
``'QUEUED'`` (waiting for resources), ``'ACTIVE'`` (running), ``'FINISHED'`` (ended with exit
status 0, or ended and the batch system no longer says how), ``'FAILED'`` (ended with another
exit status, a time or memory limit, a node failure) and ``'KILLED'`` (cancelled).
:func:`poptune.optimize` then decides the trial's status from what the trial reported: a
FINISHED job whose trial sent no metrics is a FAILED trial.
"""

from __future__ import annotations

import abc
import logging
import os
import shlex
import signal
import subprocess
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from poptune._validation import check_mapping_of_str, check_path, check_str, reject
from poptune.exceptions import ConfigurationError, PoptuneError

__all__ = [
    "JOB_STATES",
    "LocalScheduler",
    "SGEScheduler",
    "SLURMScheduler",
    "Scheduler",
]

logger = logging.getLogger("poptune")

#: The states :meth:`Scheduler.get_status` answers.
JOB_STATES = ("QUEUED", "ACTIVE", "FINISHED", "FAILED", "KILLED")
#: States after which a job never changes again.
FINAL_JOB_STATES = frozenset({"FINISHED", "FAILED", "KILLED"})

#: Seconds a batch command (sbatch, squeue, qsub, ...) may take before it counts as failed.
_COMMAND_TIMEOUT = 120.0
#: Consecutive polls a job may be unknown to the batch system before it counts as FINISHED
#: (accounting records appear a little after a job leaves the queue).
_UNKNOWN_POLLS = 3


def _check_options(value: Any) -> list[str]:
    """``submit_options`` split like a shell would, or a ConfigurationError."""
    check_str("Scheduler", "submit_options", value)
    try:
        return shlex.split(value)
    except ValueError as exc:
        raise ConfigurationError(f"submit_options {value!r} cannot be parsed: {exc}") from None


def _check_dir(value: Any) -> Path | None:
    if check_path("Scheduler", "output_dir", value, allow_none=True) is None:
        return None
    return Path(value).absolute()


def _check_job_args(command: Any, env: Any, job_name: Any) -> dict[str, str]:
    check_str("submit_job", "command", command, nonempty=True, strip=True)
    out = check_mapping_of_str("submit_job", "env", env, allow_none=True)
    for key in out:
        if not key.isidentifier():
            reject("submit_job", "env", "a dict whose keys are valid environment variable names",
                   key, wrong_type=False)  # fmt: skip
    check_str("submit_job", "job_name", job_name, nonempty=True)
    if any(c in job_name for c in "/\\\0"):
        reject("submit_job", "job_name", "a non-empty str without slashes", job_name,
               wrong_type=False)  # fmt: skip
    return out


class Scheduler(abc.ABC):
    """Base class of schedulers: submit a command, ask for its state, kill it.

    Attributes:
        output_dir: where job scripts and job output go (``<output_dir>/jobs/``); None until
            given here or by :func:`poptune.optimize`.
    """

    output_dir: Path | None = None

    @abc.abstractmethod
    def submit_job(self, command: str, env: Mapping[str, str], job_name: str) -> str:
        """Start ``command`` (a shell command line) with ``env`` added to its environment.

        Returns:
            The job's id (a str).

        Raises:
            ConfigurationError: bad arguments.
            PoptuneError: the submission failed (names the command and its error).
        """

    @abc.abstractmethod
    def get_status(self, job_id: str) -> str:
        """One of ``'QUEUED'``, ``'ACTIVE'``, ``'FINISHED'``, ``'FAILED'``, ``'KILLED'``."""

    @abc.abstractmethod
    def kill_job(self, job_id: str) -> None:
        """Stop the job (its state then becomes ``'KILLED'``).

        Raises:
            PoptuneError: the batch system refused.
        """

    # -- shared helpers ----------------------------------------------------------------------
    def _use_output_dir(self, output_dir: str | os.PathLike[str]) -> None:
        """Give the scheduler a directory when it has none (what :func:`optimize` does)."""
        if self.output_dir is None:
            self.output_dir = Path(output_dir).absolute()

    def _jobs_dir(self) -> Path | None:
        if self.output_dir is None:
            return None
        path = self.output_dir / "jobs"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def __repr__(self) -> str:
        return f"{type(self).__name__}(output_dir={self.output_dir!r})"


class LocalScheduler(Scheduler):
    """Run each job as a subprocess of this process (``sherpa.schedulers.LocalScheduler``).

    The command runs through the shell (``/bin/sh -c``) in its own process group, with the
    job's variables added to this process's environment. Its stdout and stderr go to
    ``<output_dir>/jobs/<job_name>.out`` when an output directory is known (given here or
    by :func:`poptune.optimize`), else to this process's.

    Args:
        submit_options: a prefix for every command, e.g. ``"nice -n 10"`` or
            ``"CUDA_VISIBLE_DEVICES=0"``; default none.
        output_dir: where the job output goes (``<output_dir>/jobs/``).

    The state of a job comes from its exit status: 0 is FINISHED, anything else FAILED, and a
    job ended by :meth:`kill_job` is KILLED.
    """

    def __init__(
        self, submit_options: str = "", output_dir: str | os.PathLike[str] | None = None
    ) -> None:
        _check_options(submit_options)
        self.submit_options = submit_options.strip()
        self.output_dir = _check_dir(output_dir)
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._killed: set[str] = set()
        self._lock = threading.Lock()

    def submit_job(self, command: str, env: Mapping[str, str], job_name: str) -> str:
        extra = _check_job_args(command, env, job_name)
        full = f"{self.submit_options} {command}" if self.submit_options else command
        jobs = self._jobs_dir()
        log: IO[bytes] | None = None
        if jobs is not None:
            log = open(jobs / f"{job_name}.out", "ab")  # noqa: SIM115 - closed below
        try:
            proc = subprocess.Popen(
                full,
                shell=True,
                env={**os.environ, **extra},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT if log is not None else None,
                start_new_session=os.name == "posix",
            )
        except OSError as exc:
            raise PoptuneError(f"could not start {full!r}: {exc}") from None
        finally:
            if log is not None:
                log.close()  # the child has its own copy
        job_id = str(proc.pid)
        with self._lock:
            self._procs[job_id] = proc
            self._killed.discard(job_id)
        return job_id

    def _proc(self, job_id: str) -> subprocess.Popen[bytes]:
        proc = self._procs.get(str(job_id))
        if proc is None:
            raise PoptuneError(f"LocalScheduler: no job with id {job_id!r} was submitted here")
        return proc

    def get_status(self, job_id: str) -> str:
        proc = self._proc(job_id)
        code = proc.poll()
        if code is None:
            return "ACTIVE"
        if str(job_id) in self._killed:
            return "KILLED"
        return "FINISHED" if code == 0 else "FAILED"

    def kill_job(self, job_id: str) -> None:
        proc = self._proc(job_id)
        if proc.poll() is not None:
            return
        self._killed.add(str(job_id))
        self._signal(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            self._signal(proc, signal.SIGKILL if os.name == "posix" else signal.SIGTERM)
            proc.wait()

    @staticmethod
    def _signal(proc: subprocess.Popen[bytes], sig: int) -> None:
        try:
            if os.name == "posix":
                os.killpg(proc.pid, sig)  # the shell and everything it started
            else:  # pragma: no cover - Windows
                proc.send_signal(sig)
        except (ProcessLookupError, PermissionError):
            pass

    def close(self) -> None:
        """Kill every job still running and reap them all."""
        for job_id in list(self._procs):
            self.kill_job(job_id)
        for proc in self._procs.values():
            proc.wait()


class _BatchScheduler(Scheduler):
    """What SLURM and SGE share: a bash job script, command-line tools, lenient polling."""

    _tool: str = ""
    _system: str = ""

    def __init__(
        self,
        submit_options: str = "",
        environment: str | os.PathLike[str] | None = None,
        output_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.options = _check_options(submit_options)
        self.submit_options = submit_options
        check_path(type(self).__name__, "environment", environment, allow_none=True)
        self.environment = None if environment is None else os.fspath(environment)
        self.output_dir = _check_dir(output_dir)
        self._last: dict[str, str] = {}
        self._unknown: dict[str, int] = {}
        self._killed: set[str] = set()
        self._tmp: str | None = None

    def _script_dir(self) -> Path:
        jobs = self._jobs_dir()
        if jobs is not None:
            return jobs
        if self._tmp is None:
            self._tmp = tempfile.mkdtemp(prefix="poptune-jobs-")
        return Path(self._tmp)

    def _write_script(self, command: str, env: Mapping[str, str], job_name: str) -> Path:
        lines = ["#!/bin/bash"]
        if self.environment is not None:
            lines.append(f"source {shlex.quote(self.environment)}")
        for key, value in env.items():
            lines.append(f"export {key}={shlex.quote(value)}")
        lines.append(f"cd {shlex.quote(os.getcwd())}")
        lines.append(command)
        path = self._script_dir() / f"{job_name}.sh"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        path.chmod(0o755)
        return path

    def _run(self, args: Sequence[str]) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                list(args),
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
                timeout=_COMMAND_TIMEOUT,
                check=False,
            )
        except FileNotFoundError:
            raise PoptuneError(
                f"{args[0]} not found: is {self._system} installed on this machine?"
            ) from None
        except subprocess.TimeoutExpired:
            raise PoptuneError(
                f"{shlex.join(args)} did not answer within {_COMMAND_TIMEOUT:.0f} s"
            ) from None
        except OSError as exc:
            raise PoptuneError(f"could not run {shlex.join(args)}: {exc}") from None

    def _submit(self, args: Sequence[str]) -> str:
        result = self._run(args)
        if result.returncode != 0:
            raise PoptuneError(
                f"{shlex.join(args)} failed (exit status {result.returncode}): "
                f"{(result.stderr or result.stdout).strip() or 'no message'}"
            )
        job_id = self._parse_job_id(result.stdout)
        if not job_id:
            raise PoptuneError(
                f"{shlex.join(args)} printed no job id: {result.stdout.strip()!r} "
                f"{result.stderr.strip()!r}"
            )
        self._last[job_id] = "QUEUED"
        return job_id

    @staticmethod
    def _parse_job_id(stdout: str) -> str:
        raise NotImplementedError

    def _query(self, job_id: str) -> str | None:
        """The job's state, or None when the batch system does not know the job (now)."""
        raise NotImplementedError

    def get_status(self, job_id: str) -> str:
        job_id = str(job_id)
        last = self._last.get(job_id)
        if last in FINAL_JOB_STATES:
            return last
        state = self._query(job_id)
        if state is None:
            # Gone from the queue with no accounting record (yet, or accounting is off).
            count = self._unknown.get(job_id, 0) + 1
            self._unknown[job_id] = count
            if job_id in self._killed:
                state = "KILLED"
            elif count >= _UNKNOWN_POLLS:
                state = "FINISHED"
            else:
                return last or "QUEUED"
        else:
            self._unknown.pop(job_id, None)
        if state in FINAL_JOB_STATES and job_id in self._killed:
            state = "KILLED"
        self._last[job_id] = state
        return state


class SLURMScheduler(_BatchScheduler):
    """Submit each job to SLURM with ``sbatch`` (``sherpa.schedulers.SLURMScheduler``).

    Each job is a bash script ``<output_dir>/jobs/<job_name>.sh``: ``#!/bin/bash``, ``source
    <environment>`` when given, an ``export`` per variable, ``cd`` to the directory
    :func:`~poptune.optimize` runs in, then the command. It is submitted with
    ``sbatch --parsable <submit_options> --job-name=<job_name>
    --output=<output_dir>/jobs/<job_name>.out <script>``.

    Args:
        submit_options: sbatch options, e.g. ``"-p gpu --gres=gpu:1 -t 02:00:00"``.
        environment: a file the job sources first (modules, conda activation).
        output_dir: where job scripts and output go; default: :func:`poptune.optimize`'s.

    State: ``squeue -h -j ID -o %T`` while the job is listed, else
    ``sacct -j ID -n -P -o State``: PENDING → QUEUED; RUNNING, COMPLETING → ACTIVE; COMPLETED
    → FINISHED; FAILED, TIMEOUT, NODE_FAIL, OUT_OF_MEMORY → FAILED; CANCELLED → KILLED. A job
    unknown to both for a few polls counts as FINISHED (accounting may be off).
    """

    _tool = "sbatch"
    _system = "SLURM"

    _STATES = {
        "PENDING": "QUEUED",
        "REQUEUED": "QUEUED",
        "REQUEUE_HOLD": "QUEUED",
        "REQUEUE_FED": "QUEUED",
        "CONFIGURING": "QUEUED",
        "RUNNING": "ACTIVE",
        "COMPLETING": "ACTIVE",
        "STAGE_OUT": "ACTIVE",
        "SIGNALING": "ACTIVE",
        "RESIZING": "ACTIVE",
        "SUSPENDED": "ACTIVE",
        "STOPPED": "ACTIVE",
        "COMPLETED": "FINISHED",
        "FAILED": "FAILED",
        "TIMEOUT": "FAILED",
        "NODE_FAIL": "FAILED",
        "OUT_OF_MEMORY": "FAILED",
        "BOOT_FAIL": "FAILED",
        "DEADLINE": "FAILED",
        "PREEMPTED": "FAILED",
        "SPECIAL_EXIT": "FAILED",
        "CANCELLED": "KILLED",
        "REVOKED": "KILLED",
    }

    def submit_job(self, command: str, env: Mapping[str, str], job_name: str) -> str:
        extra = _check_job_args(command, env, job_name)
        script = self._write_script(command, extra, job_name)
        args = ["sbatch", "--parsable", *self.options, f"--job-name={job_name}"]
        if self.output_dir is not None:
            args.append(f"--output={script.with_suffix('.out')}")
        args.append(str(script))
        return self._submit(args)

    @staticmethod
    def _parse_job_id(stdout: str) -> str:
        # --parsable prints "ID" or "ID;CLUSTER" (possibly after warnings on other lines)
        lines = [line.strip() for line in stdout.splitlines() if line.strip()]
        return lines[-1].split(";")[0].strip() if lines else ""

    @classmethod
    def _map(cls, state: str) -> str | None:
        word = state.strip().split()[0].rstrip("+").upper() if state.strip() else ""
        if not word:
            return None
        if word.startswith("CANCELLED"):
            return "KILLED"
        mapped = cls._STATES.get(word)
        if mapped is None:
            logger.warning("poptune: unknown SLURM job state %r; taken as ACTIVE", state)
            return "ACTIVE"
        return mapped

    def _query(self, job_id: str) -> str | None:
        result = self._run(["squeue", "-h", "-j", job_id, "-o", "%T"])
        if result.returncode == 0:
            for line in result.stdout.splitlines():
                if line.strip():
                    return self._map(line)
        result = self._run(["sacct", "-j", job_id, "-n", "-P", "-o", "State"])
        if result.returncode == 0:
            for line in result.stdout.splitlines():  # the job first, then its steps
                if line.strip():
                    return self._map(line)
        return None

    def kill_job(self, job_id: str) -> None:
        job_id = str(job_id)
        result = self._run(["scancel", job_id])
        if result.returncode != 0:
            raise PoptuneError(
                f"scancel {job_id} failed (exit status {result.returncode}): "
                f"{(result.stderr or result.stdout).strip() or 'no message'}"
            )
        self._killed.add(job_id)


class SGEScheduler(_BatchScheduler):
    """Submit each job to Grid Engine with ``qsub`` (``sherpa.schedulers.SGEScheduler``).

    Each job is a bash script ``<output_dir>/jobs/<job_name>.sh`` (as for
    :class:`SLURMScheduler`), submitted with ``qsub -terse -S /bin/bash <submit_options>
    -N <job_name> -o <output_dir>/jobs/<job_name>.out -j y <script>``; qsub prints the job id.

    Args:
        submit_options: qsub options, e.g. ``"-q gpu.q -l h_vmem=8G -P myproject"``.
        environment: a file the job sources first.
        output_dir: where job scripts and output go; default: :func:`poptune.optimize`'s.

    State: while ``qstat -j ID`` knows the job it is QUEUED (state ``qw``/``hqw``) or ACTIVE;
    after that ``qacct -j ID``: exit status 0 (and not ``failed``) → FINISHED, otherwise
    FAILED; a job ended by :meth:`kill_job` (``qdel``) is KILLED; a job that neither knows
    for a few polls counts as FINISHED.
    """

    _tool = "qsub"
    _system = "Grid Engine (SGE)"

    def submit_job(self, command: str, env: Mapping[str, str], job_name: str) -> str:
        extra = _check_job_args(command, env, job_name)
        script = self._write_script(command, extra, job_name)
        args = ["qsub", "-terse", "-S", "/bin/bash", *self.options, "-N", job_name]
        if self.output_dir is not None:
            args += ["-o", str(script.with_suffix(".out")), "-j", "y"]
        args.append(str(script))
        return self._submit(args)

    @staticmethod
    def _parse_job_id(stdout: str) -> str:
        # -terse prints "ID" (array jobs: "ID.1-10:1")
        lines = [line.strip() for line in stdout.splitlines() if line.strip()]
        return lines[-1].split(".")[0] if lines else ""

    def _query(self, job_id: str) -> str | None:
        result = self._run(["qstat", "-j", job_id])
        if result.returncode == 0:
            for line in result.stdout.splitlines():
                if line.strip().startswith("job_state"):  # "job_state    1:    qw"
                    word = line.rsplit(":", 1)[-1].strip()
                    return "QUEUED" if "w" in word else "ACTIVE"
            return "ACTIVE"
        result = self._run(["qacct", "-j", job_id])
        if result.returncode != 0:
            return None
        exit_status: int | None = None
        failed = False
        for line in result.stdout.splitlines():
            parts = line.split(None, 1)
            if len(parts) != 2:
                continue
            key, value = parts[0], parts[1].strip()
            if key == "exit_status":
                try:
                    exit_status = int(value.split()[0])
                except (ValueError, IndexError):
                    exit_status = 1
            elif key == "failed":
                failed = not value.startswith("0")
        if exit_status is None:
            return None
        return "FINISHED" if exit_status == 0 and not failed else "FAILED"

    def kill_job(self, job_id: str) -> None:
        job_id = str(job_id)
        result = self._run(["qdel", job_id])
        if result.returncode != 0:
            raise PoptuneError(
                f"qdel {job_id} failed (exit status {result.returncode}): "
                f"{(result.stderr or result.stdout).strip() or 'no message'}"
            )
        self._killed.add(job_id)
