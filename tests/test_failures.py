"""Failures never pass silently (issue 18 §1): optimize's summary, max_consecutive_failures,
SHERPA's optimize with verbose=1 and a trial script that cannot import, and the warning for a
``for trial in study`` loop that never finalizes."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import pytest

from poptune import ConfigurationError, Continuous, Study, TrialStatus, algorithms, load_study
from poptune.exceptions import NoCompletedTrialError, TrialsFailingError
from poptune.execution.jobs import optimize as sherpa_optimize
from poptune.schedulers import LocalScheduler

from . import objectives

PARAMS = [Continuous("lr", [1e-4, 1e-2], "log")]


def random_study(n, **kw):
    return Study(PARAMS, algorithms.RandomSearch(n), True, seed=0, **kw)


# -- the user story: an objective with a typo, 500 trials ------------------------------------
def test_a_typo_costs_five_trials_not_five_hundred(caplog):
    study = random_study(500)
    with caplog.at_level(logging.WARNING, logger="poptune"):
        with pytest.raises(TrialsFailingError) as caught:
            study.optimize(objectives.typo, show_progress=False)
    assert len(study.trials) == 5
    assert all(t.status is TrialStatus.FAILED for t in study.trials)
    error = caught.value
    assert error.trial_id == 1 and error.failed == [1, 2, 3, 4, 5]
    assert error.error == "AttributeError: 'Trial' object has no attribute 'paramters'"
    assert "trial.paramters" in error.traceback  # the objective's own line
    text = str(error)
    assert "max_consecutive_failures=5" in text and "trial 1" in text
    assert "trial.paramters" in text  # the traceback is in the message
    assert "max_consecutive_failures=None" in text  # how to carry on
    assert "study.get_trial(1).meta['traceback']" in text
    assert "optimize() stopped: 5 trials failed in a row" in caplog.text
    # the study was not broken by stopping: it resumes, and says why there is no best
    with pytest.raises(NoCompletedTrialError, match="5 FAILED; the first failure, trial 1"):
        _ = study.best_params
    assert study.get_best_result() == {}


def test_the_error_pickles_with_its_fields():
    error = TrialsFailingError("m", trial_id=3, error="E: x", traceback="tb", failed=[3, 4])
    back = pickle.loads(pickle.dumps(error))
    assert (str(back), back.trial_id, back.error, back.traceback, back.failed) == (
        "m", 3, "E: x", "tb", [3, 4],
    )  # fmt: skip


def test_fixed_objective_resumes_after_the_stop():
    study = random_study(8)
    with pytest.raises(TrialsFailingError):
        study.optimize(objectives.typo, show_progress=False)
    study.optimize(objectives.quadratic, show_progress=False)  # old failures do not count
    statuses = [t.status for t in study.trials]
    assert statuses[:5] == [TrialStatus.FAILED] * 5
    assert statuses[5:] == [TrialStatus.COMPLETED] * 3


def test_carrying_on_runs_every_trial_and_the_summary_says_all_failed(caplog):
    study = random_study(12)
    with caplog.at_level(logging.WARNING, logger="poptune"):
        study.optimize(objectives.typo, show_progress=False, max_consecutive_failures=None)
    assert len(study.trials) == 12
    summary = [r.getMessage() for r in caplog.records if "this call" in r.getMessage()]
    assert len(summary) == 1
    assert "12 trial(s) this call: every one FAILED" in summary[0]
    assert "first error: trial 1: AttributeError" in summary[0]
    assert "study.get_trial(1).meta['traceback']" in summary[0]
    study2 = random_study(7)
    study2.optimize(objectives.typo, show_progress=False, max_consecutive_failures=0)
    assert len(study2.trials) == 7  # 0 also means "no limit"


def test_a_success_between_failures_resets_the_count():
    def every_other(trial):
        if trial.id % 2:
            raise RuntimeError(f"odd trial {trial.id}")
        return 1.0

    study = random_study(20)
    study.optimize(every_other, show_progress=False, max_consecutive_failures=2)
    assert len(study.trials) == 20


def test_the_limit_is_the_callers(caplog):
    study = random_study(50)
    with pytest.raises(TrialsFailingError) as caught:
        study.optimize(objectives.typo, show_progress=False, max_consecutive_failures=2)
    assert caught.value.failed == [1, 2] and len(study.trials) == 2


@pytest.mark.parametrize("bad", [-1, 1.5, "5", True])
def test_bad_limits_are_refused(bad):
    study = random_study(3)
    with pytest.raises(ConfigurationError, match="max_consecutive_failures"):
        study.optimize(objectives.quadratic, show_progress=False, max_consecutive_failures=bad)
    assert study.trials == []


def test_summary_of_a_clean_run_is_info_and_of_a_partly_failed_one_a_warning(caplog):
    def second_fails(trial):
        if trial.id == 2:
            raise ValueError("diverged")
        return 1.0

    study = random_study(4)
    with caplog.at_level(logging.INFO, logger="poptune"):
        study.optimize(objectives.quadratic, n_trials=2, show_progress=False)
    (clean,) = [r for r in caplog.records if "this call" in r.getMessage()]
    assert clean.levelno == logging.INFO and "2 trial(s) this call: 2 COMPLETED" in clean.message
    caplog.clear()
    study2 = random_study(4)
    with caplog.at_level(logging.INFO, logger="poptune"):
        study2.optimize(second_fails, show_progress=False)
    (mixed,) = [r for r in caplog.records if "this call" in r.getMessage()]
    assert mixed.levelno == logging.WARNING
    assert "3 COMPLETED, 1 FAILED; first error: trial 2: ValueError: diverged" in mixed.message


def test_worker_processes_stop_on_failures_too(tmp_path):
    url = f"sqlite:///{tmp_path / 'typo.db'}"
    study = random_study(200, storage=url, study_name="typo")
    with pytest.raises(TrialsFailingError) as caught:
        study.optimize(objectives.typo, n_workers=2, show_progress=False)
    n = len(load_study(url, "typo").trials)
    assert 5 <= n <= 5 + 2  # each worker stops after its own failing trial
    assert "trial.paramters" in caught.value.traceback


# -- forgetting finalize ---------------------------------------------------------------------
def test_forgetting_finalize_with_random_search_warns(caplog):
    study = random_study(3)
    with caplog.at_level(logging.WARNING, logger="poptune"):
        for trial in study:
            study.add_observation(trial, 1.0)  # and no finalize
    assert "trial(s) [1, 2, 3], which this loop handed out, were never finalized" in caplog.text
    assert "get_best_result() ignores them" in caplog.text


def test_a_loop_that_finalizes_says_nothing(caplog):
    study = random_study(3)
    with caplog.at_level(logging.WARNING, logger="poptune"):
        for trial in study:
            study.add_observation(trial, 1.0)
            study.finalize(trial)
    assert "never finalized" not in caplog.text


# -- SHERPA's optimize: a trial script that cannot import ------------------------------------
BROKEN_SCRIPT = """\
import poptune as sherpa
import a_module_that_is_not_installed  # the trial script's own mistake

client = sherpa.Client()
trial = client.get_trial()
client.send_metrics(trial, 1, 0.5)
"""

GOOD_SCRIPT = """\
import poptune as sherpa

client = sherpa.Client()
trial = client.get_trial()
client.send_metrics(trial, 1, trial.parameters["lr"])
"""


def _run_jobs(tmp_path: Path, script: str, n: int, **kw):
    path = tmp_path / "trial.py"
    path.write_text(script)
    return sherpa_optimize(PARAMS, algorithms.RandomSearch(n), True, LocalScheduler(),
                           filename=str(path), output_dir=tmp_path / "out", poll_interval=0.05,
                           max_concurrent=2, **kw)  # fmt: skip


def test_a_trial_script_that_cannot_import_is_not_silent(tmp_path, caplog, capsys):
    with caplog.at_level(logging.WARNING, logger="poptune"):
        with pytest.warns(RuntimeWarning, match="every one of the 4 trial") as warned:
            best = _run_jobs(tmp_path, BROKEN_SCRIPT, 4)
    assert best == {}
    assert "ModuleNotFoundError" in str(warned[0].message)
    failures = [r.getMessage() for r in caplog.records if "FAILED:" in r.getMessage()]
    assert len(failures) == 4
    assert "No module named 'a_module_that_is_not_installed'" in failures[0]
    assert "trial_" in failures[0] and ".out" in failures[0]  # where its output is
    study = load_study(f"sqlite:///{tmp_path / 'out' / 'poptune.db'}", "sherpa")
    assert all("ModuleNotFoundError" in t.meta["error"] for t in study.trials)
    out = capsys.readouterr().out  # verbose=1 (the default) printed what happened
    assert out.count("submitted as job") == 4
    assert "done: 4 trial(s) (4 FAILED)" in out


def test_verbose_prints_each_trial_with_its_parameters_and_the_best(tmp_path, capsys):
    best = _run_jobs(tmp_path, GOOD_SCRIPT, 3)
    out = capsys.readouterr().out
    assert out.count("submitted as job") == 3
    assert out.count("\n    lr = ") == 3  # the parameters, one per line
    assert out.count("finished: COMPLETED") == 3
    assert f"best result: trial {best['Trial-ID']}" in out
    assert "done: 3 trial(s) (3 COMPLETED)" in out


def test_verbose_zero_prints_nothing(tmp_path, capsys):
    _run_jobs(tmp_path, GOOD_SCRIPT, 2, verbose=0)
    assert capsys.readouterr().out == ""


def test_verbose_is_logged_not_printed_when_logging_shows_it(tmp_path, capsys, caplog):
    with caplog.at_level(logging.INFO, logger="poptune"):
        _run_jobs(tmp_path, GOOD_SCRIPT, 2)
    assert capsys.readouterr().out == ""
    assert sum("submitted as job" in r.getMessage() for r in caplog.records) == 2


def _failure_run_by_copy(history, start):
    """The run by its definition: every trial, in id order, scanned back from the newest."""
    run = []
    for trial in reversed(history.trials):
        if trial.id <= start or trial.status in (TrialStatus.COMPLETED, TrialStatus.STOPPED):
            break
        if trial.status is TrialStatus.FAILED:
            run.append(trial)
    return run[::-1]


@pytest.mark.parametrize("seed", range(3))
def test_the_failure_run_walks_back_from_the_newest_trial_as_a_full_scan_would(seed):
    """failure_run reads only the trials after the last success; its answer (and the
    limit's) must be the full scan's, for every ``start``, with unfinished trials among the
    failures, as the study grows."""
    import random

    from poptune.study._failures import FailureLimit, failure_run

    rnd = random.Random(seed)
    study = Study([Continuous("x", [0, 1])], algorithms.RandomSearch(), True, seed=seed)
    running = []
    for _ in range(120):
        running.append(study.get_suggestion())
        if rnd.random() < 0.1:
            continue  # left RUNNING
        trial = running.pop(rnd.randrange(len(running)))
        status = rnd.choice(["FAILED"] * 4 + ["COMPLETED", "STOPPED"])
        if status != "FAILED":
            study.add_observation(trial, rnd.random())
        study.finalize(trial, status)
        history = study.history
        for start in {0, 1, rnd.randint(0, history.n_trials), history.n_trials}:
            expected = _failure_run_by_copy(history, start)
            assert [t.id for t in failure_run(history, start)] == [t.id for t in expected]
            for limit in (1, 3, 5):
                reached = FailureLimit(start, limit).reached(study)
                assert reached is (len(expected) >= limit)
