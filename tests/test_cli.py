import io
import json
import subprocess
import sys

import pandas as pd
import pytest

import poptune as pt
from poptune.cli import main

from .conftest import forget_storages


@pytest.fixture
def stored(db_url):
    study = pt.Study([pt.Continuous("lr", [1e-4, 1e-2], "log")],
                     pt.algorithms.PopulationBasedTraining(2, 3), False, seed=0, storage=db_url,
                     study_name="mnist-pbt")  # fmt: skip
    for trial in study:
        study.add_observation(trial, trial.parameters["lr"] * 100, iteration=trial.generation,
                              context={"loss": 0.5})  # fmt: skip
        study.finalize(trial)
    other = pt.Study([pt.Choice("act", ["relu", "tanh"])], pt.algorithms.RandomSearch(), True,
                     storage=db_url, study_name="rs")  # fmt: skip
    t = other.get_suggestion()
    other.add_observation(t, 2.0)
    other.finalize(t, "FAILED")
    other.get_suggestion()
    return db_url, study


def run(*argv):
    out = io.StringIO()
    code = main(list(argv), out=out)
    return code, out.getvalue()


def test_studies_lists_counts_and_best(stored, capsys):
    url, study = stored
    code, text = run("studies", url)
    assert code == 0
    lines = text.splitlines()
    assert lines[0].split() == ["study", "trials", "running", "completed", "failed", "stopped",
                                "direction", "best", "best", "trial"]  # fmt: skip
    pbt_row, rs_row = lines[1].split(), lines[2].split()
    best = study.get_best_result()
    assert pbt_row[:7] == ["mnist-pbt", "6", "0", "6", "0", "0", "maximize"]
    assert float(pbt_row[7]) == pytest.approx(best["Objective"], rel=1e-5)
    assert pbt_row[8] == str(best["Trial-ID"])
    assert rs_row == ["rs", "2", "1", "0", "1", "0", "minimize"]


def test_trials_table_and_status_filter(stored):
    url, study = stored
    code, text = run("trials", url, "mnist-pbt")
    assert code == 0
    lines = text.splitlines()
    assert lines[0].split()[:5] == ["id", "status", "generation", "member", "load_from"]
    assert len(lines) == 7
    code, text = run("trials", url, "rs", "--status", "FAILED")
    assert code == 0 and len(text.splitlines()) == 2 and "FAILED" in text
    code, text = run("trials", url, "rs", "--status", "STOPPED")
    assert text == "no trials\n"


def test_best_plain_and_json(stored):
    url, study = stored
    code, text = run("best", url, "mnist-pbt", "--json")
    assert code == 0 and json.loads(text) == study.get_best_result()
    code, text = run("best", url, "mnist-pbt")
    assert text.splitlines()[0].split() == ["Trial-ID", str(study.get_best_result()["Trial-ID"])]
    code, text = run("best", url, "rs")
    assert text == "no completed trial yet\n"


def test_export_csv_and_json(stored, tmp_path):
    url, study = stored
    code, text = run("export", url, "mnist-pbt", "--format", "csv")
    assert code == 0
    frame = pd.read_csv(io.StringIO(text))
    assert list(frame.columns) == list(study.results.columns) and len(frame) == 12
    target = tmp_path / "out.json"
    code, _ = run("export", url, "mnist-pbt", "--format", "json", "--output", str(target))
    data = json.loads(target.read_text())
    assert data["study"] == "mnist-pbt" and len(data["trials"]) == 6
    assert data["trials"][0]["observations"][0]["context"] == {"loss": 0.5}


def test_delete_asks_then_deletes(stored, capsys):
    url, _ = stored
    code, _ = run("delete", url, "rs")  # a trial of rs is RUNNING
    assert code == 1
    assert "1 RUNNING trial(s)" in capsys.readouterr().err
    code, _ = run("delete", url, "rs", "--force")  # stdin is not a terminal under pytest
    assert code == 1
    assert "needs --yes" in capsys.readouterr().err
    code, text = run("delete", url, "rs", "--yes", "--force")
    assert code == 0 and "deleted study 'rs'" in text
    code, text = run("studies", url)
    assert [line.split()[0] for line in text.splitlines()[1:]] == ["mnist-pbt"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["best", "{url}", "nope"], "no study named 'nope'"),
        (["studies", "missing.db"], "no SQLite database file at 'missing.db'"),
        (["studies", "sqlite:////no/such.db"], "no SQLite database file at '/no/such.db'"),
        (["studies", "mysql://u@h/db"], "unsupported database 'mysql'"),
        (["studies", "postgresql://u:pw@127.0.0.1:1/db"], "database error on"),
    ],
)
def test_errors_are_one_line_and_exit_1(stored, argv, message, capsys):
    url, _ = stored
    code, _ = run(*[a.format(url=url) for a in argv])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("poptune: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err and ":pw@" not in err


def test_bad_arguments_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["export", "x.db"])
    assert info.value.code == 2


def test_the_installed_command_runs(stored):
    url, _ = stored
    result = subprocess.run([sys.executable, "-m", "poptune", "best", url, "mnist-pbt", "--json"],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Trial-ID" in json.loads(result.stdout)
    result = subprocess.run([sys.executable, "-m", "poptune", "best", url, "none"],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 1 and "Traceback" not in result.stderr


def test_a_tampered_database_cannot_run_code(tmp_path):
    """A study database from elsewhere names its algorithm as module:Class; reading it must
    not call whatever that names."""
    import sqlalchemy as sa

    url = f"sqlite:///{tmp_path / 'evil.db'}"
    rule = pt.algorithms.MedianStoppingRule()
    study = pt.Study([pt.Continuous("x", [0, 1])], pt.algorithms.RandomSearch(), True, rule,
                     storage=url, study_name="evil")  # fmt: skip
    t = study.get_suggestion()
    study.add_observation(t, 1.0)
    study.finalize(t)
    forget_storages()
    marker = tmp_path / "pwned"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        config = json.loads(conn.exec_driver_sql("SELECT config FROM poptune_studies").scalar())
        config["algorithm"] = {"type": "os:system", "command": f"touch {marker}"}
        config["stopping_rule"] = {"type": "os:system", "command": f"touch {marker}"}
        conn.exec_driver_sql("UPDATE poptune_studies SET config = ?", (json.dumps(config),))
    engine.dispose()
    code, text = run("studies", url)
    assert code == 0 and "evil" in text
    assert pt.load_study(url, "evil").get_best_result()["Objective"] == 1.0
    with pytest.raises(pt.ConfigurationError, match="os:system"):
        pt.Study.join(url, "evil")
    assert not marker.exists()
    forget_storages()


def test_dashboard_study_waits_for_an_sqlite_file_not_created_yet(tmp_path):
    """``poptune dashboard FILE --study NAME`` started before the run: it says it waits,
    creates nothing, and serves the study once the run has created the file."""
    import socket
    import time
    import urllib.error
    import urllib.request

    db = tmp_path / "later.db"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "poptune", "dashboard", str(db), "--port", str(port),
         "--study", "later"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        first = server.stdout.readline()
        assert f"waiting for {str(db)!r}" in first, (first, server.poll())
        time.sleep(1.0)
        assert server.poll() is None and not db.exists()  # still waiting; nothing created
        study = pt.Study([pt.Continuous("x", [0, 1])], pt.algorithms.RandomSearch(), True,
                         storage=str(db) if db.exists() else f"sqlite:///{db}",
                         study_name="later")  # fmt: skip
        trial = study.get_suggestion()
        study.add_observation(trial, 0.25)
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/api/studies/later", timeout=5
                ) as answer:
                    body = json.loads(answer.read())
                break
            except (urllib.error.URLError, ConnectionError):
                assert server.poll() is None, server.stderr.read()
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert "later" in json.dumps(body)
    finally:
        server.terminate()
        server.communicate(timeout=30)  # and closes its pipes
        forget_storages()


def test_dashboard_study_in_a_missing_folder_is_an_error(tmp_path, capsys):
    missing = tmp_path / "no-such-folder" / "runs.db"
    code, _ = run("dashboard", str(missing), "--study", "s", "--port", "0")
    assert code == 1
    assert "no-such-folder" in capsys.readouterr().err
    assert not missing.parent.exists()


def test_worker_callbacks_are_told_of_its_trials(tmp_path, capsys):
    """``poptune worker --callback MODULE:NAME`` (repeatable): a class is made with no
    arguments, a function is called for its callback; each is told of the worker's trials."""
    (tmp_path / "cli_worker_hooks.py").write_text(
        "import poptune\n"
        "EVENTS = []\n"
        "def objective(trial):\n"
        "    return trial.parameters['x']\n"
        "class Ends(poptune.StudyCallback):\n"
        "    def on_trial_end(self, study, trial, status):\n"
        "        EVENTS.append(('end', trial.id, status.value))\n"
        "class _Starts:\n"
        "    def on_trial_start(self, study, trial):\n"
        "        EVENTS.append(('start', trial.id))\n"
        "def starts():\n"
        "    return _Starts()\n"
    )
    url = f"sqlite:///{tmp_path / 'w.db'}"
    pt.Study([pt.Continuous("x", [0, 1])], pt.algorithms.RandomSearch(max_num_trials=3), True,
             storage=url, study_name="w")  # fmt: skip
    forget_storages()
    code, out = run("worker", url, "w", "cli_worker_hooks:objective", "--path", str(tmp_path),
                    "--callback", "cli_worker_hooks:Ends",
                    "--callback", "cli_worker_hooks:starts")  # fmt: skip
    assert code == 0 and "worker ran 3 trial(s)" in out
    import cli_worker_hooks

    events = cli_worker_hooks.EVENTS
    assert sorted(e for e in events if e[0] == "end") == [
        ("end", i, "COMPLETED") for i in (1, 2, 3)
    ]
    assert sorted(e for e in events if e[0] == "start") == [("start", i) for i in (1, 2, 3)]
    code, _ = run("worker", url, "w", "cli_worker_hooks:objective", "--path", str(tmp_path),
                  "--callback", "cli_worker_hooks:EVENTS")  # fmt: skip
    assert code == 1 and "cli_worker_hooks:EVENTS" in capsys.readouterr().err
    code, _ = run("worker", url, "w", "cli_worker_hooks:objective", "--callback", "nocolon")
    assert code == 1 and "module:name" in capsys.readouterr().err
    forget_storages()
