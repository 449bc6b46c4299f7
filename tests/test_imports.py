"""What ``import poptune`` loads (issue 14: start-up). Each check runs in a fresh interpreter:
the test process has long imported everything."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import poptune

SRC = str(Path(poptune.__file__).resolve().parents[1])
HEAVY = ("pandas", "scipy", "sklearn", "sqlalchemy", "matplotlib", "torch", "starlette",
         "uvicorn", "plotly", "dask", "psycopg", "tqdm")  # fmt: skip


def _loaded(code: str, tmp_path: Path) -> dict[str, bool]:
    script = textwrap.dedent(code) + textwrap.dedent(
        f"""
        import json, sys
        print(json.dumps({{m: m in sys.modules for m in {list(HEAVY) + ["numpy"]!r}}}))
        """
    )
    env = {**os.environ, "PYTHONPATH": SRC}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_import_poptune_loads_no_dependency(tmp_path: Path) -> None:
    loaded = _loaded("import poptune", tmp_path)
    assert not any(loaded.values()), loaded  # not even numpy


def test_the_public_names_are_the_modules_objects() -> None:
    from poptune.algorithms.pbt import PopulationBasedTraining
    from poptune.study.study import Study

    assert poptune.Study is Study
    assert poptune.algorithms.PopulationBasedTraining is PopulationBasedTraining
    assert set(poptune.__all__) <= set(dir(poptune))
    with pytest.raises(AttributeError, match="no attribute 'Studdy'"):
        poptune.Studdy  # noqa: B018


def test_a_study_loop_in_memory_needs_no_pandas_or_sqlalchemy(tmp_path: Path) -> None:
    loaded = _loaded(
        """
        import poptune as sherpa
        study = sherpa.Study([sherpa.Continuous("x", [0.0, 1.0])],
                             sherpa.algorithms.PopulationBasedTraining(num_generations=2,
                                                                       population_size=4),
                             lower_is_better=True, seed=0)
        for trial in study:
            study.add_observation(trial, objective=trial.parameters["x"], iteration=1)
            study.finalize(trial)
        assert study.get_best_result()["Objective"] >= 0
        sherpa.rng.seed(0)
        """,
        tmp_path,
    )
    assert loaded["numpy"]
    assert not any(loaded[m] for m in ("pandas", "scipy", "sklearn", "sqlalchemy", "matplotlib"))


def test_the_results_table_imports_pandas_when_asked(tmp_path: Path) -> None:
    loaded = _loaded(
        """
        import poptune as sherpa
        study = sherpa.Study([sherpa.Continuous("x", [0.0, 1.0])],
                             sherpa.algorithms.RandomSearch(max_num_trials=2), True, seed=0)
        for trial in study:
            study.add_observation(trial, objective=1.0, iteration=1)
            study.finalize(trial)
        assert len(study.results) == 4
        """,
        tmp_path,
    )
    assert loaded["pandas"]


def test_a_read_command_loads_no_pandas(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    poptune.Study([poptune.Continuous("x", [0.0, 1.0])],
                  poptune.algorithms.RandomSearch(max_num_trials=1), True,
                  storage=f"sqlite:///{db}", study_name="s")  # fmt: skip
    loaded = _loaded(
        f"""
        import io
        from poptune.cli import main
        out = io.StringIO()
        assert main(["studies", {str(db)!r}], out=out) == 0
        assert main(["best", {str(db)!r}, "s"], out=out) == 0
        """,
        tmp_path,
    )
    assert loaded["sqlalchemy"]
    assert not any(loaded[m] for m in ("pandas", "scipy", "sklearn", "matplotlib", "starlette"))
