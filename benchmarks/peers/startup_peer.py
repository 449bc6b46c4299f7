"""Case 7 (start-up), either side: with a library's python, ``reps`` fresh child processes of
that python, each timing one thing:

* ``import:<module>`` - the import alone, timed inside the child (wall and CPU);
* ``first_trial`` - the import, an in-memory study and one random-search trial, inside the child;
* ``cli_studies`` - the whole process of the library's "list the studies" command on an
  SQLite file ``prepare`` wrote (wall from here, CPU from the child's rusage);
* ``python`` - the whole process of ``python -c pass`` (the floor under every whole-process row).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.peers import serve

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


def _child_rusage_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed_inside(body: str) -> tuple[float, float]:
    out = subprocess.run([sys.executable, "-c", _TIMED.format(body=body)], check=True,
                         capture_output=True, text=True).stdout  # fmt: skip
    wall, cpu = json.loads(out.strip().splitlines()[-1])
    return wall, cpu


def _whole(argv: list[str]) -> tuple[float, float]:
    cpu0, wall0 = _child_rusage_cpu(), time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    return time.perf_counter() - wall0, _child_rusage_cpu() - cpu0


def run(lib: str, what: str, reps: int, workdir: str) -> dict[str, Any]:
    db = Path(workdir) / f"{lib}.db"
    if what == "prepare":
        if db.exists():
            db.unlink()
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
            raise ValueError(f"startup_peer: unknown measurement {what!r}")
    return {"wall": [s[0] for s in samples], "cpu": [s[1] for s in samples]}


if __name__ == "__main__":
    serve(run)
