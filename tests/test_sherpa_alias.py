"""Unmodified SHERPA scripts: SHERPA's module paths, ``install_sherpa_alias``, ``poptune sherpa
run`` (the script, the trial scripts it launches, spawned workers) and
``Client.keras_send_metrics``.

Every aliasing test runs in a subprocess: the alias changes ``sys.modules`` and ``PYTHONPATH``
of the process that installs it, which the test process must not inherit."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

import poptune
import poptune as sherpa

SRC = str(Path(poptune.__file__).resolve().parents[1])


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POPTUNE_SHERPA")}
    env["PYTHONPATH"] = os.pathsep.join([SRC, *extra.pop("PYTHONPATH", "").split(os.pathsep)])
    env.update(extra)
    return env


def _python(code: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=_env(**env),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def _sherpa_run(script: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "poptune.cli", "sherpa", "run", str(script), *args],
        cwd=script.parent, env=_env(**env), capture_output=True, text=True, timeout=240,
    )  # fmt: skip


def _fake_sherpa(root: Path) -> Path:
    """A stand-in for a real SHERPA installed beside poptune."""
    package = root / "site" / "sherpa"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("REAL_SHERPA = True\n")
    return root / "site"


# -- SHERPA's module paths, with `import poptune as sherpa` (no alias) --------------------------
def test_sherpa_module_paths_have_counterparts() -> None:
    assert sherpa.core.Study is poptune.Study
    assert sherpa.core.AlgorithmState is poptune.AlgorithmState
    assert sherpa.core.rng is poptune.rng
    assert sherpa.database.Client is poptune.Client
    assert sherpa.algorithms.core.RandomSearch is poptune.algorithms.RandomSearch
    assert sherpa.algorithms.core.MedianStoppingRule is poptune.algorithms.MedianStoppingRule
    assert sherpa.algorithms.bayesian_optimization.GPyOpt is poptune.algorithms.GPyOpt
    halving = importlib.import_module("poptune.algorithms.successive_halving")
    assert halving.SuccessiveHalving is poptune.algorithms.SuccessiveHalving
    assert sherpa.schedulers.LocalScheduler.__name__ == "LocalScheduler"


# -- install_sherpa_alias ------------------------------------------------------------------------
def test_alias_resolves_every_sherpa_import_to_the_same_poptune_module(tmp_path: Path) -> None:
    result = _python(
        """
        import poptune
        poptune.install_sherpa_alias()
        poptune.install_sherpa_alias()  # twice: nothing more
        import sherpa
        import sherpa.algorithms.bayesian_optimization as bayesian_optimization
        import sherpa.schedulers
        import sherpa.core
        from sherpa.algorithms import Genetic
        from sherpa.algorithms.core import PopulationBasedTraining
        from sherpa.database import Client
        assert sherpa is poptune
        assert bayesian_optimization.GPyOpt is poptune.algorithms.GPyOpt
        assert Genetic is poptune.algorithms.Genetic
        assert PopulationBasedTraining is poptune.algorithms.PopulationBasedTraining
        assert Client is poptune.Client
        assert sherpa.schedulers is poptune.schedulers
        # poptune's own modules keep their identity
        assert poptune.algorithms.__spec__.name == "poptune.algorithms"
        assert poptune.schedulers.__name__ == "poptune.schedulers"
        try:
            import sherpa.no_such_module
        except ModuleNotFoundError as exc:
            print("MISSING", exc.name, exc)
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "MISSING sherpa.no_such_module" in result.stdout
    assert "poptune.no_such_module" in result.stdout


def test_alias_refuses_after_a_real_sherpa_was_imported(tmp_path: Path) -> None:
    site = _fake_sherpa(tmp_path)
    result = _python(
        """
        import sherpa
        import poptune
        try:
            poptune.install_sherpa_alias()
        except poptune.ConfigurationError as exc:
            print("REFUSED", exc)
        import sherpa
        print("STILL REAL", getattr(sherpa, "REAL_SHERPA", False))
        """,
        tmp_path,
        PYTHONPATH=str(site),
    )
    assert result.returncode == 0, result.stderr
    assert "REFUSED" in result.stdout and "poptune sherpa run" in result.stdout
    assert "STILL REAL True" in result.stdout


def test_a_real_sherpa_is_shadowed_only_where_the_alias_was_asked_for(tmp_path: Path) -> None:
    site = _fake_sherpa(tmp_path)
    script = tmp_path / "which.py"
    script.write_text(
        textwrap.dedent(
            """
            import subprocess, sys
            import sherpa
            print("HERE", sherpa.__name__)
            child = subprocess.run([sys.executable, "-c", "import sherpa; print(sherpa.__name__)"],
                                   capture_output=True, text=True)
            print("CHILD", child.stdout.strip(), child.stderr.strip())
            """
        )
    )
    aliased = _sherpa_run(script, PYTHONPATH=str(site))
    assert aliased.returncode == 0, aliased.stderr
    assert "HERE poptune" in aliased.stdout
    assert "CHILD poptune" in aliased.stdout
    assert "is installed" in aliased.stderr  # the warning names the shadowed package
    plain = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                           text=True, env=_env(PYTHONPATH=str(site)), timeout=60)  # fmt: skip
    assert plain.returncode == 0, plain.stderr
    assert "HERE sherpa" in plain.stdout and "CHILD sherpa" in plain.stdout


# -- poptune sherpa run --------------------------------------------------------------------------
STUDY_SCRIPT = """\
import sys

import sherpa
import sherpa.algorithms.bayesian_optimization as bayesian_optimization
from sherpa.algorithms import RandomSearch

parameters = [sherpa.Continuous('x', [0., 1.]),
              sherpa.Choice('kind', ['a', 'b'])]
if sys.argv[1:] == ['--bo']:
    algorithm = bayesian_optimization.GPyOpt(max_num_trials=6)
else:
    algorithm = RandomSearch(max_num_trials=6)
study = sherpa.Study(parameters=parameters, algorithm=algorithm, lower_is_better=True,
                     disable_dashboard=True)
for trial in study:
    for iteration in range(1, 3):
        loss = (trial.parameters['x'] - 0.3) ** 2 + (trial.parameters['kind'] == 'b') / iteration
        study.add_observation(trial=trial, iteration=iteration, objective=loss)
    study.finalize(trial)
best = study.get_best_result()
print('ARGV', sys.argv[1:])
print('TRIALS', len(study.results.query("Status == 'COMPLETED'")))
print('BEST', best['Objective'])
"""


@pytest.mark.parametrize("args", [[], ["--bo"]])
def test_sherpa_run_runs_an_unmodified_study_script(tmp_path: Path, args: list[str]) -> None:
    script = tmp_path / "study_script.py"
    script.write_text(STUDY_SCRIPT)
    result = _sherpa_run(script, *args)
    assert result.returncode == 0, result.stderr
    assert f"ARGV {args}" in result.stdout
    assert "TRIALS 6" in result.stdout


def test_sherpa_run_passes_the_scripts_exit_status(tmp_path: Path) -> None:
    script = tmp_path / "fails.py"
    script.write_text("import sherpa\nimport sys\nsys.exit(3)\n")
    assert _sherpa_run(script).returncode == 3
    missing = _sherpa_run(tmp_path / "nope.py")
    assert missing.returncode == 1
    assert "no script at" in missing.stderr


RUNNER_SCRIPT = """\
import sherpa
import sherpa.schedulers

parameters = [sherpa.Continuous('x', [0., 1.])]
algorithm = sherpa.algorithms.RandomSearch(max_num_trials=3)
scheduler = sherpa.schedulers.LocalScheduler()
results = sherpa.optimize(parameters=parameters, algorithm=algorithm, lower_is_better=True,
                          filename='trial.py', output_dir='output', scheduler=scheduler,
                          max_concurrent=2, verbose=0)
print('RESULT', sorted(results))
"""

TRIAL_SCRIPT = """\
import sherpa
import sherpa.algorithms  # a SHERPA trial script's imports, unchanged

client = sherpa.Client()
trial = client.get_trial()
for iteration in range(1, 3):
    client.send_metrics(trial=trial, iteration=iteration,
                        objective=(trial.parameters['x'] - 0.3) ** 2 + 1.0 / iteration)
"""


def test_sherpa_run_gives_the_alias_to_the_trial_scripts_it_launches(tmp_path: Path) -> None:
    (tmp_path / "runner.py").write_text(RUNNER_SCRIPT)
    (tmp_path / "trial.py").write_text(TRIAL_SCRIPT)
    result = _sherpa_run(tmp_path / "runner.py")
    assert result.returncode == 0, result.stderr
    assert "RESULT" in result.stdout and "Objective" in result.stdout
    results = pd.read_csv(tmp_path / "output" / "results.csv")
    final = results[results["Status"] != "INTERMEDIATE"]
    assert sorted(final["Status"]) == ["COMPLETED"] * 3
    assert (tmp_path / "output" / ".poptune_sherpa_alias" / "sherpa" / "__init__.py").is_file()


def test_spawned_workers_of_an_aliased_script_see_the_alias(tmp_path: Path) -> None:
    site = _fake_sherpa(tmp_path)  # and a real SHERPA installed: the workers must not get it
    script = tmp_path / "spawner.py"
    script.write_text(
        textwrap.dedent(
            """
            import multiprocessing as mp
            import sherpa
            import sherpa.algorithms

            def work(queue):
                import sherpa.schedulers
                queue.put((sherpa.__name__, sherpa.algorithms.RandomSearch.__module__))

            if __name__ == "__main__":
                ctx = mp.get_context("spawn")
                queue = ctx.Queue()
                proc = ctx.Process(target=work, args=(queue,))
                proc.start()
                print("WORKER", queue.get(timeout=60))
                proc.join()
            """
        )
    )
    result = _sherpa_run(script, PYTHONPATH=str(site))
    assert result.returncode == 0, result.stderr
    assert "WORKER ('poptune', 'poptune.algorithms.random_search')" in result.stdout


# -- Client.keras_send_metrics -------------------------------------------------------------------
def _keras():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    pytest.importorskip("torch", reason="Keras runs on the PyTorch backend here")
    return pytest.importorskip("keras", reason="keras_send_metrics needs Keras")


def test_keras_send_metrics_reports_every_epoch_in_test_mode() -> None:
    keras = _keras()
    import numpy as np

    client = sherpa.Client(test_mode=True, parameters={"lr": 0.01})
    trial = client.get_trial()
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(trial.parameters["lr"]), loss="mse")
    x = np.random.default_rng(0).random((32, 3)).astype("float32")
    model.fit(x, x.sum(axis=1), validation_split=0.25, epochs=3, verbose=0,
              callbacks=[client.keras_send_metrics(trial, objective_name="val_loss",
                                                   context_names=["loss"])])  # fmt: skip
    assert sorted(trial.observations) == [0, 1, 2]  # SHERPA's 0-based epochs
    assert set(trial.observations[2].context) == {"loss"}
    with pytest.raises(sherpa.ConfigurationError, match="'val_acc' is not among"):
        model.fit(x, x.sum(axis=1), validation_split=0.25, epochs=1, verbose=0,
                  callbacks=[client.keras_send_metrics(trial, "val_acc")])  # fmt: skip
    with pytest.raises(sherpa.UnknownTrialError, match="not this job's trial"):
        client.keras_send_metrics(7, "val_loss")


KERAS_TRIAL = """\
import os
os.environ.setdefault('KERAS_BACKEND', 'torch')
import numpy as np
import keras
import sherpa

client = sherpa.Client()
trial = client.get_trial()
model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
model.compile(optimizer=keras.optimizers.SGD(trial.parameters['lr']), loss='mse')
x = np.random.default_rng(trial.id).random((32, 3)).astype('float32')
model.fit(x, x.sum(axis=1), validation_split=0.25, epochs=2, verbose=0,
          callbacks=[client.keras_send_metrics(trial, objective_name='val_loss',
                                               context_names=['loss'])])
"""

KERAS_RUNNER = """\
import sherpa
parameters = [sherpa.Continuous('lr', [0.001, 0.1], 'log')]
algorithm = sherpa.algorithms.RandomSearch(max_num_trials=2)
sherpa.optimize(parameters=parameters, algorithm=algorithm, lower_is_better=True,
                filename='keras_trial.py', output_dir='output',
                scheduler=sherpa.schedulers.LocalScheduler(), max_concurrent=2, verbose=0)
"""


def test_keras_send_metrics_in_the_trial_scripts_of_sherpas_keras_example(
    tmp_path: Path,
) -> None:
    _keras()
    (tmp_path / "runner.py").write_text(KERAS_RUNNER)
    (tmp_path / "keras_trial.py").write_text(KERAS_TRIAL)
    result = _sherpa_run(tmp_path / "runner.py", KERAS_BACKEND="torch")
    assert result.returncode == 0, result.stderr
    results = pd.read_csv(tmp_path / "output" / "results.csv")
    final = results[results["Status"] != "INTERMEDIATE"]
    assert sorted(final["Status"]) == ["COMPLETED"] * 2, results.to_string()
    steps = results[results["Status"] == "INTERMEDIATE"]
    assert sorted(steps["Iteration"]) == [0, 0, 1, 1]
    assert "loss" in results.columns
