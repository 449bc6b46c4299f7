"""Case 7: start-up beside Optuna: what a fresh process pays before its first trial, and does
``import poptune`` stay within 1.3x ``import numpy``? The method is the page text in :func:`run`.
Every sample is a fresh child of the library's own python (:func:`peer`): ``import:<module>``
and ``first_trial`` are timed inside it; ``cli_studies`` (on the file ``prepare`` writes) and
``python`` are the whole process, wall from the parent and CPU from the child's rusage.
"""

from __future__ import annotations

import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import Context, Section, fmt, log, mean, mean_se, ratio, table

TITLE = "7. Start-up: import, first trial, a read command (vs Optuna)"
LIBS, KINDS = ("poptune", "optuna"), ("wall", "cpu")
ROWS = (  # (label, measurement; "{lib}": the library's name)
    ("`python -c pass` (whole process)", "python"),
    ("`import numpy`", "import:numpy"),
    ("`import <library>`", "import:{lib}"),
    ("import + in-memory study + 1 trial", "first_trial"),
    ("list the studies of a 100-trial SQLite file (whole process)", "cli_studies"),
)
HEADER = " | poptune wall | poptune CPU | Optuna wall | Optuna CPU | poptune / Optuna (wall)"
MAX_IMPORT_RATIO = 1.3


def run(ctx: Context) -> Section:
    section = Section("startup", TITLE)
    reps = ctx.repeats_or(20, 3)
    libs = ["poptune"] + (["optuna"] if ctx.usable("optuna", section) else [])
    workdir = tempfile.mkdtemp(prefix="poptune-bench-startup-")

    def measure(lib: str, what: str, reps: int, failed: str) -> Any:
        """:func:`peer`'s samples, or None after noting that ``failed`` failed."""
        args = {"lib": lib, "what": what, "reps": reps, "workdir": workdir}
        return ctx.result(section, failed, lib, "c7_startup", args, 300)

    for lib in list(libs):
        if measure(lib, "prepare", 0, f"{lib}: preparing the SQLite file") is None:
            libs.remove(lib)
    samples = {(lib, what): {"wall": [], "cpu": []} for lib in LIBS for _, what in ROWS}  # ms
    for _ in range(reps):  # alternate: one sample of each row and library per round
        for _label, what in ROWS:
            for lib in libs:
                key = what.format(lib=lib)
                got = measure(lib, key, 1, f"{lib} {key}")
                for kind in KINDS if got else ():
                    samples[lib, what][kind] += [v * 1e3 for v in got[kind]]

    def wall(lib: str, what: str) -> float:
        """The mean wall ms of ``lib``'s samples of ``what`` (NaN for none)."""
        return mean(samples[lib, what]["wall"])

    rows = []
    for label, what in ROWS:
        cells = [mean_se(samples[lib, what][kind], 1) for lib in LIBS for kind in KINDS]
        rows.append([label, *cells, ratio(wall("poptune", what), wall("optuna", what))])
        log(f"  startup {label[:40]:<40} {' | '.join(rows[-1][1:])}")
    section.lines += [
        f"Milliseconds, mean ± standard error over {reps} fresh processes per row and library "
        "(alternating). Import rows are timed inside the child; whole-process rows include the "
        "interpreter's own start-up (the first row).",
        "",
        *table(HEADER, rows),
    ]
    mine, numpy = wall("poptune", "import:{lib}"), wall("poptune", "import:numpy")
    measured = math.isfinite(mine) and math.isfinite(numpy)
    what = f"`import poptune` ≤ {MAX_IMPORT_RATIO}× `import numpy` (same python, same run)"
    verdict = None if ctx.quick or not measured else mine <= MAX_IMPORT_RATIO * numpy
    detail = f"{fmt(mine)} ms vs {fmt(numpy)} ms: {ratio(mine, numpy)}×"
    section.target(what, verdict, detail if measured else "not measured")
    section.notes.append(
        "`import poptune` loads only the exceptions and a name table: every other name "
        "(Study, the algorithms, storages) is imported when first used, so the 'first trial' "
        "row is what a script actually pays."
    )
    return section


# -- the peer side: with a library's python, ``reps`` fresh children timing one thing ----------
_TIMED = """\
import json, time
w, c = time.perf_counter(), time.process_time()
{body}
print(json.dumps([time.perf_counter() - w, time.process_time() - c]))
"""

FIRST_TRIAL = {
    "poptune": """\
import poptune
study = poptune.Study([poptune.Continuous("x", [0.0, 1.0])],
                      poptune.algorithms.RandomSearch(max_num_trials=1), lower_is_better=True)
trial = study.get_suggestion()
study.add_observation(trial, objective=trial.parameters["x"], iteration=1)
study.finalize(trial)""",
    "optuna": """\
import optuna
optuna.logging.set_verbosity(optuna.logging.WARNING)
study = optuna.create_study(sampler=optuna.samplers.RandomSampler())
study.optimize(lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=1)""",
}

CLI = {
    "poptune": [sys.executable, "-m", "poptune.cli", "studies", "{db}"],
    "optuna": [
        sys.executable, "-c",
        "import sys; from optuna.cli import main; "
        "sys.argv = ['optuna', 'studies', '--storage', 'sqlite:///{db}']; sys.exit(main())",
    ],
}  # fmt: skip

PREPARE = {
    "poptune": """\
import poptune
study = poptune.Study([poptune.Continuous("x", [0.0, 1.0])],
                      poptune.algorithms.RandomSearch(max_num_trials=100), lower_is_better=True,
                      storage="sqlite:///{db}", study_name="startup", seed=0)
for trial in study:
    study.add_observation(trial, objective=trial.parameters["x"], iteration=1)
    study.finalize(trial)""",
    "optuna": """\
import optuna
optuna.logging.set_verbosity(optuna.logging.WARNING)
study = optuna.create_study(storage="sqlite:///{db}", study_name="startup",
                            sampler=optuna.samplers.RandomSampler(seed=0))
study.optimize(lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=100)""",
}


def _timed_inside(body: str) -> tuple[float, float]:
    """Wall and CPU seconds of ``body``, timed inside a fresh child."""
    code = _TIMED.format(body=body)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return tuple(json.loads(out.stdout.strip().splitlines()[-1]))


def _whole(argv: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of the whole child process ``argv``."""

    def children_cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    cpu0, wall0 = children_cpu(), time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    return time.perf_counter() - wall0, children_cpu() - cpu0


def peer(lib: str, what: str, reps: int, workdir: str) -> dict[str, Any]:
    """``reps`` samples (wall and CPU seconds) of ``what`` (the module's docstring)."""
    db = Path(workdir) / f"{lib}.db"
    if what == "prepare":
        db.unlink(missing_ok=True)
        subprocess.run([sys.executable, "-c", PREPARE[lib].format(db=db)], check=True)
        return {"db": str(db)}
    samples = []
    for _ in range(reps):
        if what.startswith("import:"):
            samples.append(_timed_inside(f"import {what.split(':', 1)[1]}"))
        elif what == "first_trial":
            samples.append(_timed_inside(FIRST_TRIAL[lib]))
        elif what == "cli_studies":
            samples.append(_whole([a.format(db=db) for a in CLI[lib]]))
        elif what == "python":
            samples.append(_whole([sys.executable, "-c", "pass"]))
        else:
            raise ValueError(f"c7_startup: unknown measurement {what!r}")
    return {"wall": [s[0] for s in samples], "cpu": [s[1] for s in samples]}
