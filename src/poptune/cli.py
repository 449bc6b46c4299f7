"""The ``poptune`` command: look into stored studies from a shell.

::

    poptune studies STORAGE                       every study: trials by status, best objective
    poptune trials STORAGE STUDY [--status S]     one line per trial
    poptune best STORAGE STUDY [--json]           the best result
    poptune export STORAGE STUDY --format csv|json [--output FILE]
    poptune delete STORAGE STUDY [--yes]
    poptune worker STORAGE STUDY module:function [--n-trials N] [--timeout S] [--device D]
                   [--checkpoint-dir DIR] [--retry-failed-trials N] [--callback M:N] ...
    poptune dashboard STORAGE [--port 8880] [--host 127.0.0.1] [--study S] [--allow-stop]
    poptune fail-stale STORAGE STUDY [--older-than SECONDS] [--yes]

STORAGE is a database URL (``sqlite:///runs.db``, ``postgresql://user@host/db``) or the path
of an SQLite file (``dashboard`` also takes a directory written by ``Study.save``).

Errors (a bad URL, a missing study, a file that is not a database, a server that does not
answer, a file that cannot be written) print one line, ``poptune: error: ...``, on standard
error and exit with status 1; bad arguments exit with status 2 (argparse). ``poptune --debug``
or ``POPTUNE_DEBUG=1`` prints the traceback too.

Nothing a command writes can destroy a study: ``export --output`` refuses the storage's own
file (and its ``-wal``/``-shm``/``-journal`` siblings), any SQLite database and, without
``--force``, any existing file; it writes a temporary file in the target's directory and
renames it into place. ``delete`` refuses a study with RUNNING trials unless ``--force``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from poptune._cli_files import check_output, write_atomically
from poptune._config import import_path
from poptune._sherpa_alias import run_script
from poptune._version import __version__
from poptune.dashboard import run_dashboard
from poptune.exceptions import ConfigurationError, CorruptRowError, PoptuneError
from poptune.storage import Storage, resolve, sqlite_file
from poptune.study import Study, load_study, run_worker, worker_environment
from poptune.study.callbacks import is_callback
from poptune.trial import TrialStatus

__all__ = ["main"]


def _storage(spec: str, write: bool = False) -> Storage:
    """A storage from a URL or an SQLite file path; never creates a database, and opens it
    read-only unless ``write`` (delete, worker, dashboard --allow-stop)."""
    return resolve(spec, must_exist=True, read_only=not write)


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _print_table(rows: list[dict[str, Any]], out: TextIO) -> None:
    """Rows as right-aligned columns (the keys of every row, in order of first appearance);
    a key a row lacks is blank. Written here rather than through pandas so that a read
    command does not import it."""
    if not rows:
        return
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    cells = [[_fmt(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(line[i]) for line in cells)) for i, c in enumerate(columns)]
    lines = [" ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True))]
    lines += [" ".join(v.rjust(w) for v, w in zip(line, widths, strict=True)) for line in cells]
    out.write("\n".join(lines) + "\n")


def _studies(args: argparse.Namespace, out: TextIO) -> int:
    storage = _storage(args.storage)
    rows = []
    unreadable = []
    for name in storage.list_studies():
        try:
            study = load_study(storage, name)
            trials = study.trials
        except CorruptRowError as exc:  # one corrupt study: the others are still listed
            unreadable.append(str(exc))
            continue
        counts = {s: 0 for s in ("RUNNING", "COMPLETED", "FAILED", "STOPPED")}
        for t in trials:
            key = "RUNNING" if t.status in (TrialStatus.QUEUED, TrialStatus.RUNNING) else t.status
            counts[str(key)] += 1
        best = study.get_best_result()
        rows.append({
            "study": name,
            "trials": len(trials),
            "running": counts["RUNNING"],
            "completed": counts["COMPLETED"],
            "failed": counts["FAILED"],
            "stopped": counts["STOPPED"],
            "direction": "minimize" if study.lower_is_better else "maximize",
            "best": best.get("Objective"),
            "best trial": best.get("Trial-ID"),
        })  # fmt: skip
    if not rows and not unreadable:
        out.write("no studies\n")
    _print_table(rows, out)
    for message in unreadable:
        sys.stderr.write(f"poptune: error: {message}\n")
    return 1 if unreadable else 0


def _open(args: argparse.Namespace) -> Study:
    return load_study(_storage(args.storage), args.study)


def _trials(args: argparse.Namespace, out: TextIO) -> int:
    study = _open(args)
    rows = []
    for t in study.trials:
        if args.status and t.status.value != args.status:
            continue
        best = t.best_observation(study.lower_is_better)
        last = t.last_observation
        row: dict[str, Any] = {"id": t.id, "status": t.status.value}
        if t.generation is not None:
            row.update(generation=t.generation, member=t.member, load_from=t.load_from)
        row.update(study.history.hyperparameters(t))
        row.update(
            iterations=len(t.observations),
            last=None if last is None else last.objective,
            best=None if best is None else best.objective,
        )
        rows.append(row)
    if not rows:
        out.write("no trials\n")
    _print_table(rows, out)
    return 0


def _best(args: argparse.Namespace, out: TextIO) -> int:
    best = _open(args).get_best_result()
    if args.json:
        out.write(json.dumps(best, indent=2) + "\n")
    elif not best:
        out.write("no completed trial yet\n")
    else:
        width = max(len(k) for k in best)
        for key, value in best.items():
            out.write(f"{key:<{width}}  {_fmt(value)}\n")
    return 0


def _export(args: argparse.Namespace, out: TextIO) -> int:
    storage = _storage(args.storage)
    target = None if args.output in (None, "-") else Path(args.output)
    if target is not None:  # refuse before reading the study: a mistake costs nothing
        check_output(target, storage, force=args.force)
    study = load_study(storage, args.study)
    if args.format == "csv":
        text = study.results.to_csv(index=False)
    else:
        text = json.dumps(
            {
                "study": study.name,
                "lower_is_better": study.lower_is_better,
                "parameters": [p.to_dict() for p in study.parameters],
                "trials": [t.to_dict() for t in study.trials],
            },
            indent=2,
        )
    if target is None:
        out.write(text if text.endswith("\n") else text + "\n")
    else:
        check_output(target, storage, force=args.force)  # again: it may have appeared since
        write_atomically(target, text)
        out.write(f"wrote {target}\n")
    return 0


#: Seconds without a heartbeat after which ``delete`` says a trial's worker may be dead (the
#: workers' default grace period: 4 x the 10 s heartbeat interval).
_STALE_AFTER = 40.0


def _delete(args: argparse.Namespace, out: TextIO) -> int:
    storage = _storage(args.storage, write=True)
    storage.get_study_id(args.study)  # StudyNotFoundError before asking anything
    running = [t.id for t in load_study(storage, args.study).trials
               if t.status is TrialStatus.RUNNING]  # fmt: skip
    if running and not args.force:
        shown = ", ".join(map(str, running[:10])) + (", ..." if len(running) > 10 else "")
        stale = ""
        if storage.supports_heartbeat and storage.has_stale_trials(
            storage.get_study_id(args.study), _STALE_AFTER
        ):
            stale = f" (some sent no heartbeat for {_STALE_AFTER:g} s: their workers may be dead)"
        raise PoptuneError(
            f"study {args.study!r} has {len(running)} RUNNING trial(s) ({shown}){stale}: "
            "workers may still be running it and would fail; stop them first, or pass --force "
            "to delete it anyway"
        )
    if not args.yes:
        if not sys.stdin.isatty():
            raise PoptuneError(f"deleting study {args.study!r} needs --yes when not interactive")
        answer = input(f"Delete study {args.study!r} and all its trials? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            out.write("not deleted\n")
            return 1
    storage.delete_study(args.study)
    out.write(f"deleted study {args.study!r}\n")
    return 0


def _fail_stale(args: argparse.Namespace, out: TextIO) -> int:
    """Mark FAILED the RUNNING trials without a heartbeat for ``--older-than`` seconds: the
    workers' own rule (``Storage.fail_stale_trials``, what every worker does after its grace
    period), by hand. Opens the storage read-only first: when nothing is stale, nothing is
    written."""
    older = args.older_than
    if not (math.isfinite(older) and older > 0):
        raise PoptuneError(f"--older-than must be a positive number of seconds, got {older!r}")
    storage = _storage(args.storage)
    sid = storage.get_study_id(args.study)
    if not storage.supports_heartbeat:
        raise PoptuneError(f"{args.storage!r} keeps no heartbeats: no trial there can be stale")
    if not storage.has_stale_trials(sid, older):
        out.write(f"no RUNNING trial of study {args.study!r} is without a heartbeat for "
                  f"{older:g} s: nothing changed\n")  # fmt: skip
        return 0
    if not args.yes:
        if not sys.stdin.isatty():
            raise PoptuneError(
                f"failing the stale trials of study {args.study!r} needs --yes when not interactive"
            )
        question = (f"Mark FAILED the RUNNING trials of study {args.study!r} without a "
                    f"heartbeat for {older:g} s (their workers died)? [y/N] ")  # fmt: skip
        if input(question).strip().lower() not in ("y", "yes"):
            out.write("nothing changed\n")
            return 1
    writable = _storage(args.storage, write=True)
    failed = writable.fail_stale_trials(writable.get_study_id(args.study), older)
    if not failed:  # a worker failed them, or beat again, since we looked
        out.write(f"no RUNNING trial of study {args.study!r} is stale any more: nothing changed\n")
        return 0
    out.write(f"marked FAILED (no heartbeat for {older:g} s, meta heartbeat_lost): trial(s) "
              f"{', '.join(map(str, failed))} of study {args.study!r}\n")  # fmt: skip
    return 0


def _import_spec(spec: str, what: str, form: str, error: type[PoptuneError]) -> Any:
    """The object a ``module:name`` command-line spec names (``error`` for a malformed one)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise error(f"{what} must be given as {form}, got {spec!r}")
    return import_path(spec, f"cannot import {what.lstrip('-')}")


def _import_objective(spec: str) -> Any:
    target = _import_spec(spec, "objective", "module:function", PoptuneError)
    if not callable(target):
        raise PoptuneError(f"objective {spec!r} is not callable")
    return target


def _import_callback(spec: str) -> Any:
    """``--callback MODULE:NAME``: a callback class (made with no arguments), a function that
    returns a callback (called with none), or a callback object, as it is."""
    target = _import_spec(spec, "--callback", "module:name", ConfigurationError)
    if isinstance(target, type) or not is_callback(target):
        if not callable(target):
            raise ConfigurationError(f"--callback {spec!r} is neither a callback nor callable")
        target = target()
    return target


def _options(pairs: list[str]) -> dict[str, Any] | None:
    """``--checkpoint-option KEY=VALUE`` as a dict; a VALUE that is JSON (true, 3) is parsed."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigurationError(f"--checkpoint-option {pair!r}: expected KEY=VALUE")
        try:
            options[key] = json.loads(value)
        except ValueError:
            options[key] = value
    return options or None


def _worker(args: argparse.Namespace, out: TextIO) -> int:
    for folder in [*args.path, os.getcwd()]:  # like python -m: the working directory imports
        if folder not in sys.path:
            sys.path.insert(0, folder)
    if args.device is not None:  # before the objective's module can initialize CUDA
        os.environ.update(worker_environment(args.device))
    objective = _import_objective(args.objective)
    callbacks = [_import_callback(spec) for spec in args.callback]
    ran = run_worker(
        _storage(args.storage, write=True),
        args.study,
        objective,
        n_trials=args.n_trials,
        timeout=args.timeout,
        checkpoint_dir=args.checkpoint_dir,
        keep_checkpoints=args.keep_checkpoints,
        retry_failed_trials=args.retry_failed_trials,
        heartbeat_interval=args.heartbeat_interval,
        grace_period=args.grace_period,
        trusted_modules=args.trust_module,
        allow_pickle=args.allow_pickle,
        checkpoint_options=_options(args.checkpoint_option),
        callbacks=callbacks or None,
    )
    out.write(f"worker ran {ran} trial(s) of study {args.study!r}\n")
    return 0


def _dashboard(args: argparse.Namespace, out: TextIO) -> int:
    spec = args.storage
    if "://" not in spec and (Path(spec).is_dir() or spec.endswith(".json")):
        # a directory written by Study.save: shown from memory
        Study.run_dashboard(spec, port=args.port, host=args.host, allow_stop=args.allow_stop,
                            banner=out)  # fmt: skip
        return 0
    name = args.study
    storage = _storage(spec, write=args.allow_stop) if name is None else _wait_for(spec, args, out)
    if name is not None and name not in storage.list_studies():  # served anyway: its page waits
        out.write(f"waiting for study {name!r}: not in this storage yet, its page shows it once "
                  "created\n")  # fmt: skip
    run_dashboard(
        storage, port=args.port, host=args.host, allow_stop=args.allow_stop, study_name=name,
        banner=out,
    )  # fmt: skip
    return 0


#: How often ``dashboard --study`` looks for an SQLite file that does not exist yet, seconds.
WAIT_POLL_S = 0.25


def _wait_for(spec: str, args: argparse.Namespace, out: TextIO) -> Storage:
    """``dashboard --study NAME``'s storage: an SQLite file that does not exist yet (or has no
    poptune tables yet) is waited for, as the study is (the run that creates it may start
    after the dashboard); nothing is created. Any other spec opens as the other commands do."""
    import time

    from poptune.exceptions import StorageError
    from poptune.storage._schema import NoTablesError

    file = sqlite_file(spec)
    if file is None:  # not an SQLite file: nothing to wait for
        return _storage(spec, write=args.allow_stop)
    if not file.parent.is_dir():  # a mistyped folder would be waited for forever
        raise StorageError(
            f"no SQLite database file at {str(file)!r}: no folder {str(file.parent)!r}"
        )
    told = False
    while True:
        try:
            return _storage(spec, write=args.allow_stop)
        except StorageError as exc:
            if file.is_file() and not isinstance(exc, NoTablesError):
                raise
        if not told:
            out.write(f"waiting for {str(file)!r}: no poptune database there yet; the dashboard "
                      f"starts once a study creates it (Ctrl-C to stop)\n")  # fmt: skip
            out.flush()
            told = True
        time.sleep(WAIT_POLL_S)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="poptune", description="Look into poptune studies stored in SQLite or PostgreSQL."
    )
    parser.add_argument("--version", action="version", version=f"poptune {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="print the traceback of an error (also: POPTUNE_DEBUG=1)")  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    storage_help = "database URL (sqlite:///runs.db, postgresql://...) or SQLite file path"

    p = sub.add_parser("studies", help="list the studies in a storage")
    p.add_argument("storage", help=storage_help)
    p.set_defaults(run=_studies)

    for name, helptext, run in (
        ("trials", "one line per trial of a study", _trials),
        ("best", "the best result of a study", _best),
        ("export", "write a study's results as CSV or JSON", _export),
        ("delete", "delete a study and its trials", _delete),
    ):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("storage", help=storage_help)
        p.add_argument("study", help="the study's name")
        p.set_defaults(run=run)
        if name == "trials":
            p.add_argument("--status", choices=[s.value for s in TrialStatus],
                           help="only trials with this status")  # fmt: skip
        elif name == "best":
            p.add_argument("--json", action="store_true", help="print JSON")
        elif name == "export":
            p.add_argument("--format", choices=("csv", "json"), default="csv")
            p.add_argument("--output", "-o",
                           help="file to write (default or '-': standard output); never the "
                           "storage's file or any SQLite database")  # fmt: skip
            p.add_argument("--force", action="store_true", help="overwrite an existing file")
        elif name == "delete":
            p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
            p.add_argument("--force", action="store_true",
                           help="delete even while trials are RUNNING")  # fmt: skip
    p = sub.add_parser(
        "worker",
        help="run trials of a stored study with an objective function (SLURM, Kubernetes...)",
    )
    p.add_argument("storage", help=storage_help)
    p.add_argument("study", help="the study's name (create it first with poptune.Study)")
    p.add_argument("objective", help="the objective, as module:function (importable here)")
    p.add_argument("--n-trials", type=int, help="stop after the study has this many more trials")
    p.add_argument("--timeout", type=float, help="seconds after which no trial is started")
    p.add_argument("--checkpoint-dir", help="the trials' checkpoints: a directory, an fsspec "
                   "URL (s3://bucket/run) or database:// (the study's database)")  # fmt: skip
    p.add_argument("--checkpoint-option", action="append", default=[], metavar="KEY=VALUE",
                   help="an option of the checkpoint URL's file system, e.g. "
                   "endpoint_url=http://127.0.0.1:9000 (repeatable)")  # fmt: skip
    p.add_argument("--keep-checkpoints", type=int, help="delete unneeded checkpoints, keep N best")
    p.add_argument("--retry-failed-trials", type=int, default=0,
                   help="re-queue a trial whose worker died up to N times")  # fmt: skip
    p.add_argument("--device", help="this worker's device, e.g. cuda:1 (sets "
                   "CUDA_VISIBLE_DEVICES; the objective reads trial.device)")  # fmt: skip
    p.add_argument("--heartbeat-interval", type=float, default=10.0, help="seconds")
    p.add_argument("--grace-period", type=float, help="seconds (default 4 x heartbeat)")
    p.add_argument("--path", action="append", default=[],
                   help="a directory to import the objective from (repeatable)")  # fmt: skip
    p.add_argument("--allow-pickle", action="store_true",
                   help="also load checkpoints that are pickles: a pickle can run code, so "
                   "only for checkpoint files you trust")  # fmt: skip
    p.add_argument("--trust-module", action="append", default=[], metavar="MODULE",
                   help="a module the stored algorithm may import (repeatable)")  # fmt: skip
    p.add_argument("--callback", action="append", default=[], metavar="MODULE:NAME",
                   help="a StudyCallback told of this worker's trials: a class (made with "
                   "no arguments), a function returning one, or a callback object "
                   "(repeatable)")  # fmt: skip
    p.set_defaults(run=_worker)
    p = sub.add_parser("dashboard", help="serve the live web dashboard of a storage's studies")
    p.add_argument("storage", help=storage_help + ", or a directory written by Study.save")
    p.add_argument("--port", type=int, default=8880, help="TCP port (default 8880; 0: any free)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--study", help="the study whose page the printed URL opens (one that does "
                   "not exist yet is waited for, and so is an SQLite file that does not exist "
                   "yet)")  # fmt: skip
    p.add_argument("--allow-stop", action="store_true",
                   help="enable the Stop buttons (the dashboard's only write)")  # fmt: skip
    p.set_defaults(run=_dashboard)
    p = sub.add_parser(
        "fail-stale",
        help="mark FAILED the RUNNING trials whose workers stopped sending heartbeats",
    )
    p.add_argument("storage", help=storage_help)
    p.add_argument("study", help="the study's name")
    p.add_argument("--older-than", type=float, default=_STALE_AFTER, metavar="SECONDS",
                   help="seconds without a heartbeat (default 40: the workers' default grace "
                   "period, 4 x the 10 s heartbeat)")  # fmt: skip
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    p.set_defaults(run=_fail_stale)
    p = sub.add_parser("sherpa", help="run an unmodified SHERPA script on poptune")
    sherpa_sub = p.add_subparsers(dest="sherpa_command", required=True, metavar="SUBCOMMAND")
    p = sherpa_sub.add_parser(
        "run",
        help="run a script with `import sherpa` meaning poptune, in it and in the trial "
        "scripts it launches",
    )
    p.add_argument("script", help="the SHERPA script (a .py file)")
    p.add_argument("args", nargs=argparse.REMAINDER, help="the script's own arguments")
    p.set_defaults(run=_sherpa_run)
    return parser


def _sherpa_run(args: argparse.Namespace, out: TextIO) -> int:
    # the script's own SystemExit (sys.exit(n)) passes through: its status is the command's
    run_script(args.script, args.args)
    return 0


#: Packages whose errors (a database that is not one, a server gone) are reported in one line.
_DATABASE_PACKAGES = {"sqlalchemy", "sqlite3", "psycopg", "psycopg2"}


def _reported(exc: BaseException) -> bool:
    """Whether ``exc`` is an error of the user's situation (printed in one line) rather than
    a bug in poptune (a traceback)."""
    if isinstance(exc, (PoptuneError, OSError)):
        return True
    return type(exc).__module__.split(".")[0] in _DATABASE_PACKAGES


def _one_line(exc: BaseException, storage: str | None) -> str:
    """The message of ``exc`` in one line, without SQL, parameters or a password."""
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename!r}" if exc.filename is not None else ""
        return f"{exc.strerror}{where}"
    if not isinstance(exc, PoptuneError):
        orig = getattr(exc, "orig", None)  # sqlalchemy wraps the driver's error
        lines = str(orig if orig is not None else exc).strip().splitlines()
        where = ""
        if storage is not None:
            from poptune.storage.sql import safe_url

            where = f" on {safe_url(storage) if '://' in storage else storage}"
        return f"database error{where}: {lines[0] if lines else type(exc).__name__}"
    text = str(exc).strip()
    lines = text.splitlines()
    return lines[0] if lines else type(exc).__name__


def _debugging(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "debug", False)) or os.environ.get("POPTUNE_DEBUG", "") not in (
        "", "0"
    )  # fmt: skip


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the command line; return the exit status (0, 1 for an error, 2 for bad arguments).

    An error of poptune (:class:`~poptune.exceptions.PoptuneError`), of the operating system
    (``OSError``) or of the database driver prints one line on standard error; ``--debug`` or
    ``POPTUNE_DEBUG=1`` prints its traceback first.
    """
    args = _parser().parse_args(argv)
    try:
        return int(args.run(args, out or sys.stdout))
    except KeyboardInterrupt:
        sys.stderr.write("poptune: interrupted\n")
        return 130
    except Exception as exc:
        if not _reported(exc):
            raise
        if _debugging(args):
            traceback.print_exc()
        sys.stderr.write(f"poptune: error: {_one_line(exc, getattr(args, 'storage', None))}\n")
        return 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
