"""Write tests/data/schema_v1.db with poptune at schema version 1 (commit a402a33).

Kept to show how the file was made; running it again needs that commit checked out
(``git stash; git checkout a402a33; python tests/data/make_schema_v1_db.py``), since the
point of the file is to be a database written by the *previous* schema.
"""

import math
import sqlite3
from pathlib import Path

import poptune as pt
from poptune import Choice, Continuous, Discrete, algorithms
from poptune.storage.sql import SQLStorage

PATH = Path(__file__).with_name("schema_v1.db")
PATH.unlink(missing_ok=True)
storage = SQLStorage(f"sqlite:///{PATH}")
assert storage.schema_version == 1

params = [Continuous("lr", [1e-4, 1e-2], "log"), Discrete("batch", [8, 64])]
pbt = pt.Study(params, algorithms.PopulationBasedTraining(3, 3), False, seed=11,
               storage=storage, study_name="pbt-v1")  # fmt: skip
for n, trial in enumerate(pbt, 1):
    pbt.add_observation(trial, -abs(math.log10(trial.parameters["lr"]) + 3), iteration=1,
                        context={"loss": 0.25})  # fmt: skip
    if n == 5:  # generation 2 is half done: trial 5 is still running
        break
    pbt.finalize(trial)

rs = pt.Study([Choice("act", ["relu", "tanh"])], algorithms.RandomSearch(4), True, seed=2,
              storage=storage, study_name="random-v1")  # fmt: skip
for trial in rs:
    rs.add_observation(trial, 1.0 if trial.parameters["act"] == "relu" else 2.0)
    rs.finalize(trial, "COMPLETED" if trial.id != 3 else "FAILED")
storage.close()

with sqlite3.connect(PATH) as conn:  # one self-contained file, no -wal beside it
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("PRAGMA journal_mode=DELETE")
print(PATH, PATH.stat().st_size, "bytes")
