"""A stored configuration never imports a module the user did not trust (issue 17, item 3).

A database or a saved study names its algorithm (and stopping rule, PBT hooks) as
``module:Class``; importing that module runs its top-level code. These tests craft such a
database, naming a module in the working directory with a side effect (it writes a file) and
the standard library's ``this`` (it prints the Zen of Python), and run the real openers in
real processes: nothing runs unless the module is trusted.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import poptune
from poptune import Continuous, Study
from poptune.algorithms import PopulationBasedTraining, RandomSearch
from poptune.exceptions import ArgumentTypeError, ConfigurationError, UntrustedModuleError
from poptune.study import join_study
from tests.conftest import forget_storages

SRC = str(Path(poptune.__file__).resolve().parents[1])
SPACE = [Continuous("x", [0.0, 1.0])]

EVIL = """\
import pathlib
pathlib.Path(__file__).with_name("RAN").write_text("the module's code ran")


class Evil:
    pass
"""


class MyRandomSearch(RandomSearch):
    """A user's algorithm: a subclass in a module the tests import."""


def objective(trial):
    return trial.parameters["x"]


def run(args, cwd, **kw):
    env = {"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
        **kw,
    )  # fmt: skip


def crafted_db(tmp_path: Path) -> Path:
    """Two studies whose stored algorithm types name ``evilmod:Evil`` and ``this:Zen``."""
    (tmp_path / "evilmod.py").write_text(EVIL)
    (tmp_path / "obj.py").write_text("def f(trial):\n    return 1.0\n")
    db = tmp_path / "runs.db"
    for name in ("local", "stdlib"):
        study = Study(SPACE, RandomSearch(max_num_trials=2), True, storage=f"sqlite:///{db}",
                      study_name=name, seed=0)  # fmt: skip
        for trial in study:
            study.add_observation(trial, trial.parameters["x"])
            study.finalize(trial)
        study.close()
    forget_storages()
    conn = sqlite3.connect(db)
    for name, kind in (("local", "evilmod:Evil"), ("stdlib", "this:Zen")):
        (text,) = conn.execute(
            "SELECT config FROM poptune_studies WHERE name = ?", (name,)
        ).fetchone()
        config = json.loads(text)
        config["algorithm"]["type"] = kind
        conn.execute("UPDATE poptune_studies SET config = ? WHERE name = ?",
                     (json.dumps(config), name))  # fmt: skip
    conn.commit()
    conn.close()
    return db


ZEN = "Beautiful is better than ugly"


def test_load_study_imports_no_stored_module(tmp_path):
    db = crafted_db(tmp_path)
    script = textwrap.dedent(f"""
        import sys, poptune
        for name in ("local", "stdlib"):
            study = poptune.load_study({str(db)!r}, name)
            print(name, study.algorithm.to_config()["type"], len(study.trials))
        assert "this" not in sys.modules and "evilmod" not in sys.modules
    """)
    done = run(["-c", script], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "local evilmod:Evil 2" in done.stdout and "stdlib this:Zen 2" in done.stdout
    assert ZEN not in done.stdout
    assert not (tmp_path / "RAN").exists()


def test_cli_read_commands_import_no_stored_module(tmp_path):
    db = crafted_db(tmp_path)
    for args in (["studies", str(db)], ["trials", str(db), "local"],
                 ["best", str(db), "stdlib"], ["export", str(db), "local"]):  # fmt: skip
        done = run(["-m", "poptune.cli", *args], tmp_path)
        assert done.returncode == 0, done.stderr
        assert ZEN not in done.stdout
    assert not (tmp_path / "RAN").exists()


@pytest.mark.parametrize("study, module", [("local", "evilmod"), ("stdlib", "this")])
def test_worker_refuses_an_untrusted_stored_module_in_one_line(tmp_path, study, module):
    db = crafted_db(tmp_path)
    done = run(["-m", "poptune.cli", "worker", str(db), study, "obj:f"], tmp_path)
    assert done.returncode == 1
    assert ZEN not in done.stdout and not (tmp_path / "RAN").exists()
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert f"names module {module!r}" in lines[0]
    assert f"--trust-module {module}" in lines[0] and "trusted_modules" in lines[0]


def test_worker_imports_a_module_named_with_trust_module(tmp_path):
    """Trusting it is the user's choice: then it is imported (and still must be an Algorithm)."""
    db = crafted_db(tmp_path)
    done = run(["-m", "poptune.cli", "worker", str(db), "local", "obj:f",
                "--trust-module", "evilmod"], tmp_path)  # fmt: skip
    assert (tmp_path / "RAN").exists()
    assert done.returncode == 1 and "is not a poptune.algorithms.base.Algorithm" in done.stderr


USER_ALGO = """\
from poptune.algorithms import RandomSearch


class Mine(RandomSearch):
    pass
"""


def test_a_trusted_user_algorithm_runs_in_a_worker(tmp_path):
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "algos.py").write_text(USER_ALGO)
    (tmp_path / "obj.py").write_text("def f(trial):\n    return trial.parameters['x']\n")
    db = tmp_path / "runs.db"
    create = textwrap.dedent(f"""
        from poptune import Continuous, Study
        from mypkg.algos import Mine
        Study([Continuous("x", [0.0, 1.0])], Mine(max_num_trials=3), True,
              storage="sqlite:///{db}", study_name="s", seed=1)  # the object itself: fine
    """)
    assert run(["-c", create], tmp_path).returncode == 0
    refused = run(["-m", "poptune.cli", "worker", str(db), "s", "obj:f"], tmp_path)
    assert refused.returncode == 1 and "--trust-module mypkg" in refused.stderr
    done = run(["-m", "poptune.cli", "worker", str(db), "s", "obj:f",
                "--trust-module", "mypkg"], tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "worker ran 3 trial(s)" in done.stdout


def test_join_study_needs_trust_for_a_module_not_imported(tmp_path):
    db = crafted_db(tmp_path)
    sys.path.insert(0, str(tmp_path))
    try:
        with pytest.raises(UntrustedModuleError, match="trusted_modules=\\['evilmod'\\]"):
            join_study(str(db), "local")
        assert "evilmod" not in sys.modules and not (tmp_path / "RAN").exists()
        with pytest.raises(ConfigurationError, match="not a poptune"):
            join_study(str(db), "local", trusted_modules=["evilmod"])
        assert (tmp_path / "RAN").exists()
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("evilmod", None)


def test_a_study_built_with_the_object_joins_and_runs_workers(tmp_path):
    """Passing the algorithm object trusts its module: joining the stored study and the
    worker processes of ``optimize`` (fresh interpreters) rebuild it without naming it."""
    url = f"sqlite:///{tmp_path / 'w.db'}"
    study = Study(SPACE, MyRandomSearch(max_num_trials=6), True, storage=url,
                  study_name="mine", seed=3, heartbeat_interval=1.0)  # fmt: skip
    assert study._options.trusted_modules == (__name__,)
    again = Study(SPACE, MyRandomSearch(max_num_trials=6), True, storage=url,
                  study_name="mine")  # fmt: skip
    assert again.seed == study.seed
    study.optimize(objective, n_workers=2)
    assert sum(t.status == "COMPLETED" for t in study.trials) == 6


def test_saved_custom_algorithm_loads_only_when_trusted(tmp_path):
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "algos.py").write_text(USER_ALGO + "print('MYPKG IMPORTED')\n")
    out = tmp_path / "saved"
    script = textwrap.dedent(f"""
        import sys
        from poptune import Continuous, Study
        if sys.argv[1] == "save":
            from mypkg.algos import Mine
            s = Study([Continuous("x", [0.0, 1.0])], Mine(max_num_trials=2), True, seed=0)
            for t in s:
                s.add_observation(t, 0.5); s.finalize(t)
            s.save({str(out)!r})
        elif sys.argv[1] == "untrusted":
            try:
                Study.load({str(out)!r})
            except Exception as exc:
                print(type(exc).__name__, exc)
        else:
            s = Study.load({str(out)!r}, trusted_modules=["mypkg"])
            print(type(s.algorithm).__name__, len(s.trials))
    """)
    assert run(["-c", script, "save"], tmp_path).returncode == 0
    untrusted = run(["-c", script, "untrusted"], tmp_path)
    assert "UntrustedModuleError" in untrusted.stdout
    assert "MYPKG IMPORTED" not in untrusted.stdout
    trusted = run(["-c", script, "trusted"], tmp_path)
    assert "MYPKG IMPORTED" in trusted.stdout and "Mine 2" in trusted.stdout


def test_a_stored_pbt_hook_of_an_untrusted_module_is_not_imported(tmp_path):
    (tmp_path / "hookmod.py").write_text(EVIL + "\n\ndef hook(config, donor):\n    return config\n")
    config = {**PopulationBasedTraining(3, 4).to_config(), "explore_fn": "hookmod:hook"}
    sys.path.insert(0, str(tmp_path))
    try:
        with pytest.raises(UntrustedModuleError, match="'hookmod', which this process"):
            poptune.algorithms.algorithm_from_config(config)
        assert not (tmp_path / "RAN").exists()
    finally:
        sys.path.remove(str(tmp_path))


def test_builtin_stopping_rules_and_algorithms_need_no_trust(tmp_path):
    url = f"sqlite:///{tmp_path / 'b.db'}"
    rule = poptune.algorithms.MedianStoppingRule(min_iterations=2)
    Study(SPACE, RandomSearch(max_num_trials=2), True, stopping_rule=rule, storage=url,
          study_name="b").close()  # fmt: skip
    forget_storages()
    joined = join_study(url, "b")
    assert type(joined.stopping_rule) is poptune.algorithms.MedianStoppingRule
    assert type(joined.algorithm) is RandomSearch


@pytest.mark.parametrize(
    "value, error",
    [("mypkg", ArgumentTypeError), (["my pkg"], ConfigurationError), ([3], ConfigurationError)],
)
def test_trusted_modules_must_be_a_list_of_module_names(value, error):
    with pytest.raises(error, match="trusted_modules"):
        Study(SPACE, RandomSearch(max_num_trials=1), True, trusted_modules=value)
