"""The ``poptune`` command: look into stored studies from a shell.

::

    poptune studies STORAGE                       every study: trials by status, best objective
    poptune trials STORAGE STUDY [--status S]     one line per trial
    poptune best STORAGE STUDY [--json]           the best result
    poptune export STORAGE STUDY --format csv|json [--output FILE]
    poptune delete STORAGE STUDY [--yes]
    poptune worker STORAGE STUDY module:function [--n-trials N] [--timeout S]
                   [--checkpoint-dir DIR] [--retry-failed-trials N] ...
    poptune dashboard STORAGE [--port 8880] [--host 127.0.0.1] [--study S] [--allow-stop]

STORAGE is a database URL (``sqlite:///runs.db``, ``postgresql://user@host/db``) or the path
of an SQLite file (``dashboard`` also takes a directory written by ``Study.save``). Errors (a
bad URL, a missing study, a server that does not answer) print one line and exit with
status 1; bad arguments exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from poptune._config import import_path
from poptune._sherpa_alias import run_script
from poptune._version import __version__
from poptune.dashboard import run_dashboard
from poptune.exceptions import PoptuneError
from poptune.storage import Storage, resolve
from poptune.study import Study, load_study, run_worker
from poptune.trial import TrialStatus

__all__ = ["main"]


def _storage(spec: str) -> Storage:
    """A storage from a URL or an SQLite file path; never creates a database."""
    return resolve(spec, must_exist=True)


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
    for name in storage.list_studies():
        study = load_study(storage, name)
        trials = study.trials
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
    if not rows:
        out.write("no studies\n")
    _print_table(rows, out)
    return 0


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
    study = _open(args)
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
    if args.output:
        Path(args.output).write_text(text)
    else:
        out.write(text if text.endswith("\n") else text + "\n")
    return 0


def _delete(args: argparse.Namespace, out: TextIO) -> int:
    storage = _storage(args.storage)
    storage.get_study_id(args.study)  # StudyNotFoundError before asking anything
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


def _import_objective(spec: str) -> Any:
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise PoptuneError(f"objective must be given as module:function, got {spec!r}")
    target = import_path(spec, "cannot import objective")
    if not callable(target):
        raise PoptuneError(f"objective {spec!r} is not callable")
    return target


def _worker(args: argparse.Namespace, out: TextIO) -> int:
    for folder in [*args.path, os.getcwd()]:  # like python -m: the working directory imports
        if folder not in sys.path:
            sys.path.insert(0, folder)
    objective = _import_objective(args.objective)
    ran = run_worker(
        _storage(args.storage),
        args.study,
        objective,
        n_trials=args.n_trials,
        timeout=args.timeout,
        checkpoint_dir=args.checkpoint_dir,
        keep_checkpoints=args.keep_checkpoints,
        retry_failed_trials=args.retry_failed_trials,
        heartbeat_interval=args.heartbeat_interval,
        grace_period=args.grace_period,
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
    storage = _storage(spec)
    name = args.study
    if name is not None:
        storage.get_study_id(name)  # a missing study: one clear line, before serving
    run_dashboard(
        storage, port=args.port, host=args.host, allow_stop=args.allow_stop, study_name=name,
        banner=out,
    )  # fmt: skip
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="poptune", description="Look into poptune studies stored in SQLite or PostgreSQL."
    )
    parser.add_argument("--version", action="version", version=f"poptune {__version__}")
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
            p.add_argument("--output", "-o", help="file to write (default: standard output)")
        elif name == "delete":
            p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    p = sub.add_parser(
        "worker",
        help="run trials of a stored study with an objective function (SLURM, Kubernetes...)",
    )
    p.add_argument("storage", help=storage_help)
    p.add_argument("study", help="the study's name (create it first with poptune.Study)")
    p.add_argument("objective", help="the objective, as module:function (importable here)")
    p.add_argument("--n-trials", type=int, help="stop after the study has this many more trials")
    p.add_argument("--timeout", type=float, help="seconds after which no trial is started")
    p.add_argument("--checkpoint-dir", help="directory of the trials' checkpoints")
    p.add_argument("--keep-checkpoints", type=int, help="delete unneeded checkpoints, keep N best")
    p.add_argument("--retry-failed-trials", type=int, default=0,
                   help="re-queue a trial whose worker died up to N times")  # fmt: skip
    p.add_argument("--heartbeat-interval", type=float, default=10.0, help="seconds")
    p.add_argument("--grace-period", type=float, help="seconds (default 4 x heartbeat)")
    p.add_argument("--path", action="append", default=[],
                   help="a directory to import the objective from (repeatable)")  # fmt: skip
    p.set_defaults(run=_worker)
    p = sub.add_parser("dashboard", help="serve the live web dashboard of a storage's studies")
    p.add_argument("storage", help=storage_help + ", or a directory written by Study.save")
    p.add_argument("--port", type=int, default=8880, help="TCP port (default 8880; 0: any free)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--study", help="the study whose page the printed URL opens")
    p.add_argument("--allow-stop", action="store_true",
                   help="enable the Stop buttons (the dashboard's only write)")  # fmt: skip
    p.set_defaults(run=_dashboard)
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


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the command line; return the exit status."""
    args = _parser().parse_args(argv)
    try:
        return int(args.run(args, out or sys.stdout))
    except PoptuneError as exc:
        sys.stderr.write(f"poptune: error: {exc}\n")
        return 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
