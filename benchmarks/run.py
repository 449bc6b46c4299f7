"""``python -m benchmarks``: every benchmark of poptune against its peers, one command, one page.

Sets up the missing peers' virtualenvs (:mod:`benchmarks.peers`), runs the cases of :data:`CASES`
and writes ``docs/benchmarks.md``, rewritten after every case (see ``benchmarks/README.md``).
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import os
import platform
import shlex
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from benchmarks.harness import Context, Section, log, usable_cpus
from benchmarks.peers import PEERS, REPO, VERSIONS_OF, Peer, installed_versions, setup

#: number -> (the case's module in benchmarks/cases/, the peers it runs)
CASES = {
    1: ("c1_overhead", ("optuna", "sherpa")),
    2: ("c2_throughput", ("optuna",)),
    3: ("c3_toy", ()),
    4: ("c4_pbt_function", ("ray",)),
    5: ("c5_digits", ()),
    6: ("c6_tpe", ("optuna",)),
    7: ("c7_startup", ("optuna",)),
    8: ("c8_sql_floor", ("optuna",)),
    9: ("c9_memory_floor", ("optuna",)),
    10: ("c10_model_cost", ("optuna",)),
    11: ("c11_async_ranking", ()),
    12: ("c12_bo_mcmc", ()),
    13: ("c13_checkpoint_io", ()),
    14: ("c14_pbt_parallel", ()),
}
DEFAULT_OUTPUT = REPO / "docs" / "benchmarks.md"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
#: Peers whose virtualenv --quick does not create (over a minute each to install here).
QUICK_SKIPS_SETUP = ("sherpa", "ray")


#: The page's method, in front of its figures: what makes the comparisons fair.
HOW_TO_READ = [
    "## How to read this page",
    "",
    "- **Every peer in its recommended configuration beside its default one.** Optuna on a "
    "file runs three ways: its RDB storage on SQLite's defaults (rollback journal, "
    "`synchronous=FULL`), the same RDB storage with the SQLite pragmas poptune uses (WAL, "
    "`synchronous=NORMAL`), and `JournalStorage(JournalFileBackend)`, Optuna's recommendation "
    "for several processes on one machine (cases 1 and 2). Optuna's `TPESampler` stands "
    "beside poptune's TPE and its `GPSampler` (with PyTorch and greenlet) beside poptune's "
    "`BayesianOptimization` (case 6); Ray Tune runs with `reuse_actors=True`, its advice for "
    "PBT (case 4).",
    "- **Statistics.** Scores (cases 3–6) are means ± standard errors over at least 10 seeds "
    "in a full run (case 5: see its seed count); timings (cases 1, 2, 7, 9) are medians "
    "[min–max] over alternating repeats, or means ± standard errors where the table says so.",
    "- **Equal budgets.** A peer cut off by a time budget is not set against a full budget: "
    "its cell says how far it got, and its ratio is left out or marked *not comparable*.",
    "- **CPU time beside wall time** in every timing table: wall time on a shared 2-core "
    "machine follows the load; CPU time is what the library itself spent.",
    "- **Start-up is its own case** (7): `import` time and whole-process time (a fresh "
    "process's first trial, a read-only command), beside `import numpy` and `python -c pass`; "
    "the other cases time a warm process and leave start-up out.",
    "- Case 4's wall and CPU ratios measure framework overhead on a trivial function, not "
    "the time of a real training run.",
]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Run poptune's benchmarks against its peers and write docs/benchmarks.md.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes, one repeat (a smoke run of a few minutes); writes to a temporary "
        "directory unless --output is given; creates only Optuna's virtualenv if missing "
        "(SHERPA's and Ray's are used if present: see --setup-peers)",
    )
    parser.add_argument(
        "--cases", default=",".join(map(str, CASES)), help="cases to run, e.g. 1,3 (default: all)"
    )
    parser.add_argument("--no-peers", action="store_true", help="run poptune only")
    parser.add_argument(
        "--peers",
        default=",".join(PEERS),
        help=f"peers to compare with (default: {','.join(PEERS)})",
    )
    parser.add_argument(
        "--setup-peers",
        action="store_true",
        help="create every missing peer virtualenv, even with --quick",
    )
    parser.add_argument(
        "--setup-only", action="store_true", help="create the peers' virtualenvs and exit"
    )
    parser.add_argument("--output", type=Path, help=f"the page (default {DEFAULT_OUTPUT})")
    parser.add_argument(
        "--seeds",
        type=int,
        help="seeds for the cases that run several (3-6, 10-12; default: each case's own)",
    )
    parser.add_argument("--repeats", type=int, help="repeats for cases 1, 2, 7, 9, 12, 13 and 14")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("POPTUNE_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL),
        help="admin URL of a PostgreSQL server for case 2 (it creates and drops its own "
        f"databases poptune_bench_<pid>; default {DEFAULT_POSTGRES_URL})",
    )
    args = parser.parse_args(argv)
    try:
        args.case_numbers = [int(c) for c in args.cases.replace(" ", "").split(",") if c]
    except ValueError:
        parser.error(
            f"--cases takes numbers 1-{len(CASES)} separated by commas, got {args.cases!r}"
        )
    if not args.case_numbers or any(c not in CASES for c in args.case_numbers):
        parser.error(f"--cases takes numbers 1-{len(CASES)}, got {args.cases!r}")
    args.peer_names = [p for p in args.peers.replace(" ", "").split(",") if p]
    if any(p not in PEERS for p in args.peer_names):
        parser.error(f"--peers takes names among {', '.join(PEERS)}, got {args.peers!r}")
    for name in ("seeds", "repeats"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    return args


def prepare_peers(args: argparse.Namespace) -> dict[str, Peer]:
    if args.no_peers:
        return {}
    cases = [CASES[c][1] for c in args.case_numbers]
    wanted = [p for p in args.peer_names if args.setup_only or any(p in c for c in cases)]
    peers = {}
    for name in wanted:
        install = not args.quick or args.setup_peers or name not in QUICK_SKIPS_SETUP
        peers[name] = setup(name, install, log)
        if not install and not peers[name].ok:
            peers[name].error = (
                "its virtualenv is not set up and --quick does not create it (it takes over a "
                "minute); `python -m benchmarks --setup-only` creates it"
            )
    return peers


def proc_field(path: str, key: str) -> str | None:
    """The value of the first line of ``/proc`` file ``path`` starting with ``key``."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return None
    return next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith(key)), None)


def cpu_model() -> str:
    return proc_field("/proc/cpuinfo", "model name") or platform.processor() or "unknown CPU"


def memory_gib() -> str:
    total = proc_field("/proc/meminfo", "MemTotal")  # "24571220 kB"
    return f"{int(total.split()[0]) / 2**20:.0f} GiB" if total else "?"


def load() -> str:
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except (AttributeError, OSError):
        return "?"


def render(
    args: argparse.Namespace,
    argv: Sequence[str],
    sections: list[Section],
    peers: dict[str, Peer],
    started: float,
    load_start: str,
    mine: dict[str, str],
    cases_left: int = 0,
) -> str:
    """The page; ``mine``: the versions on poptune's side (read once per run)."""
    command = "python -m benchmarks" + ("" if not argv else " " + shlex.join(argv))
    now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    total = time.monotonic() - started
    quick = " (**--quick: small sizes, one repeat — a smoke run, not figures to quote**)"
    partial = f" (**in progress: {cases_left} more case(s) to run — a partial page**)"
    out = [
        "# Benchmarks: poptune against Optuna, Ray Tune and SHERPA",
        "",
        f"Produced by `{command}` on {now} in {total / 60:.1f} minutes"
        + (quick if args.quick else "")
        + (partial if cases_left else "")
        + ". Compare libraries by the ratios measured side by side in one run: absolute "
        "times on shared machines drift from run to run. `python -m benchmarks` reproduces "
        "this page (see `benchmarks/README.md`).",
        "",
        "## Machine and versions",
        "",
        f"- {cpu_model()}; {os.cpu_count()} cores ({usable_cpus()} usable), {memory_gib()} "
        f"memory; {platform.system()} {platform.release()} {platform.machine()}",
        f"- load average (1 min): {load_start} at the start, {load()} at the end (other work "
        "on the machine makes the figures drift)",
        f"- poptune's side (this interpreter): Python {platform.python_version()}; "
        + ", ".join(f"{k} {v}" for k, v in mine.items() if k != "python"),
    ]
    if args.no_peers:
        out.append("- **Peers: not run (--no-peers)**; the tables show poptune alone.")
    for name, peer in peers.items():
        if peer.ok:
            versions = ", ".join(f"{k} {v}" for k, v in peer.versions.items() if k != "python")
            when = "in this run" if peer.set_up_now else f"on {peer.set_up_at}"
            out.append(
                f"- {name}: `benchmarks/peers/.venv-{name}` (Python "
                f"{peer.versions.get('python', '?')}): {versions}; set up {when} in "
                f"{peer.setup_s:.0f} s"
            )
        else:
            out.append(f"- **{name}: not available — {peer.error}**")
    out += ["", *HOW_TO_READ, "", "## Targets", ""]
    for section in sections:
        case = f"- Case {section.title.split('.')[0]}: "
        out += [target.line().replace("- Target: ", case, 1) for target in section.targets]
        if section.error:
            out.append(f"{case}**failed** ({section.error})")
    out.append("")
    for section in sections:
        out += section.markdown()
    return "\n".join(out).rstrip() + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    started = time.monotonic()
    load_start = load()
    if args.output is None and args.quick:
        args.output = Path(tempfile.mkdtemp(prefix="poptune-bench-")) / "benchmarks.md"
    output = (args.output or DEFAULT_OUTPUT).resolve()
    peers = prepare_peers(args)
    if args.setup_only:
        for name, peer in peers.items():
            state = "ok" if peer.ok else f"FAILED: {peer.error}"
            log(f"{name}: {state} (setup {peer.setup_s or 0:.0f} s) {peer.versions}")
        return 0 if all(p.ok for p in peers.values()) else 1
    ctx = Context(
        quick=args.quick,
        repeats=args.repeats,
        seeds=args.seeds,
        peers=peers,
        no_peers=args.no_peers,
        images=output.parent / "images",
        image_link="images",
        postgres_url=args.postgres_url,
    )
    sections: list[Section] = []
    output.parent.mkdir(parents=True, exist_ok=True)
    mine = installed_versions(sys.executable, VERSIONS_OF["poptune"])  # a subprocess: once
    for done, number in enumerate(args.case_numbers, 1):
        module = importlib.import_module(f"benchmarks.cases.{CASES[number][0]}")
        log(f"case {number}: {module.TITLE}")
        case_start = time.monotonic()
        try:
            section = module.run(ctx)
        except Exception as exc:  # noqa: BLE001 - one case failing must not sink the page
            log(traceback.format_exc())
            section = Section(CASES[number][0], module.TITLE)
            section.error = f"{type(exc).__name__}: {exc}".splitlines()[0]
        section.wall_s = time.monotonic() - case_start
        if args.quick:
            section.not_evaluated("quick sizes")
        log(f"case {number} done in {section.wall_s:.0f} s")
        sections.append(section)
        # The page so far, after every case: a long run that is stopped keeps what it measured.
        left = len(args.case_numbers) - done
        page = render(args, argv, sections, peers, started, load_start, mine, left)
        output.write_text(page, encoding="utf-8")
    log(f"wrote {output} (figures in {ctx.images}) in {(time.monotonic() - started) / 60:.1f} min")
    print(output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
