"""Case 7: start-up, poptune beside Optuna: what a fresh process pays before its first trial.
Every sample is a fresh child process of the library's own python
(``benchmarks/peers/startup_peer.py``, which says what each row times); libraries alternate
sample by sample (the method: the page text below)."""

from __future__ import annotations

import statistics
import tempfile
from typing import Any

from benchmarks.harness import Context, Section, Target, fmt, log, mean_se, ratio, table

TITLE = "7. Start-up: import, first trial, a read command (vs Optuna)"
ROWS = (  # (label, measurement, libraries)
    ("`python -c pass` (whole process)", "python", ("poptune", "optuna")),
    ("`import numpy`", "import:numpy", ("poptune", "optuna")),
    ("`import <library>`", "import:{lib}", ("poptune", "optuna")),
    ("import + in-memory study + 1 trial", "first_trial", ("poptune", "optuna")),
    ("list the studies of a 100-trial SQLite file (whole process)", "cli_studies",
     ("poptune", "optuna")),
)  # fmt: skip
MAX_IMPORT_RATIO = 1.3


def run(ctx: Context) -> Section:
    section = Section("startup", TITLE)
    reps = ctx.repeats_or(20, 3)
    libs = ["poptune"] + (["optuna"] if ctx.peer("optuna") is not None else [])
    if "optuna" not in libs:
        section.notes.append(ctx.peer_note("optuna"))
    workdir = tempfile.mkdtemp(prefix="poptune-bench-startup-")
    for lib in libs:
        out = ctx.run_peer(lib, "startup_peer", {"lib": lib, "what": "prepare", "reps": 0,
                                                   "workdir": workdir}, 300)  # fmt: skip
        if not out.ok:
            section.notes.append(f"{lib}: preparing the SQLite file failed: {out.error}")
            libs.remove(lib)
    samples: dict[tuple[str, str], dict[str, list[float]]] = {}
    for _ in range(reps):  # alternate: one sample of each row and library per round
        for _label, what, row_libs in ROWS:
            for lib in libs:
                if lib not in row_libs:
                    continue
                key = what.format(lib=lib)
                out = ctx.run_peer(lib, "startup_peer", {"lib": lib, "what": key, "reps": 1,
                                                           "workdir": workdir}, 300)  # fmt: skip
                got = samples.setdefault((lib, what), {"wall": [], "cpu": []})
                if out.ok:
                    got["wall"] += out.result["wall"]
                    got["cpu"] += out.result["cpu"]
                else:
                    section.notes.append(f"{lib} {key}: {out.error}")
    rows = []
    for label, what, _ in ROWS:
        row = [label]
        for lib in ("poptune", "optuna"):
            got = samples.get((lib, what))
            if got is None or not got["wall"]:
                row += ["–", "–"]
                continue
            row += [mean_se([w * 1e3 for w in got["wall"]], 1),
                    mean_se([c * 1e3 for c in got["cpu"]], 1)]  # fmt: skip
        mine, peer = samples.get(("poptune", what)), samples.get(("optuna", what))
        row.append(
            ratio(statistics.fmean(mine["wall"]), statistics.fmean(peer["wall"]))
            if mine and peer and mine["wall"] and peer["wall"] else "–"
        )  # fmt: skip
        rows.append(row)
        log(f"  startup {label[:40]:<40} {' | '.join(row[1:])}")
    section.lines += [
        f"Milliseconds, mean ± standard error over {reps} fresh processes per row and library "
        "(alternating). Import rows are timed inside the child; whole-process rows include the "
        "interpreter's own start-up (the first row).",
        "",
        *table(
            [
                "",
                "poptune wall",
                "poptune CPU",
                "Optuna wall",
                "Optuna CPU",
                "poptune / Optuna (wall)",
            ],
            rows,
        ),  # fmt: skip
    ]
    mine = _mean(samples, "poptune", "import:{lib}")
    numpy = _mean(samples, "poptune", "import:numpy")
    section.targets.append(
        Target(
            f"`import poptune` ≤ {MAX_IMPORT_RATIO}× `import numpy` (same python, same run)",
            None if ctx.quick or not (mine and numpy) else mine <= MAX_IMPORT_RATIO * numpy,
            f"{fmt(mine * 1e3)} ms vs {fmt(numpy * 1e3)} ms: {ratio(mine, numpy)}×"
            if mine and numpy
            else "not measured",
        )
    )
    section.notes.append(
        "`import poptune` loads only the exceptions and a name table: every other name "
        "(Study, the algorithms, storages) is imported when first used, so the 'first trial' "
        "row is what a script actually pays."
    )
    return section


def _mean(samples: dict[tuple[str, str], dict[str, list[float]]], lib: str, what: str) -> Any:
    got = samples.get((lib, what))
    return statistics.fmean(got["wall"]) if got and got["wall"] else None
