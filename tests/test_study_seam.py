"""The Study's public seam (finalize with meta, requeue, checkpoints, close), the one
"lock, sync, next id, insert" path, the one wait policy, and the rule that nothing outside
``poptune/study/`` touches a Study's private members."""

import ast
import re
import threading
import time
from pathlib import Path

import pytest

import poptune as pt
from poptune import (
    ConfigurationError,
    Continuous,
    InvalidStatusError,
    Study,
    TrialStatus,
    algorithms,
)
from poptune._polling import Backoff

PARAMS = [Continuous("lr", [1e-4, 1e-2], "log")]
SRC = Path(pt.__file__).parent


def random_study(n=4, **kw):
    return Study(PARAMS, algorithms.RandomSearch(n), True, seed=0, **kw)


def test_finalize_can_replace_the_meta():
    study = random_study()
    trial = study.get_suggestion()
    study.finalize(trial, "FAILED", meta={**trial.meta, "error": "boom"})
    assert study.get_trial(trial.id).meta["error"] == "boom"
    with pytest.raises(TypeError):
        study.finalize(trial, "FAILED", {"error": "positional"})  # meta is keyword-only


def test_requeue_queues_a_retry_and_counts_attempts():
    study = random_study()
    trial = study.get_suggestion()
    study.finalize(trial, "FAILED")
    retry = study.requeue(trial, max_attempts=2)
    assert retry.status is TrialStatus.QUEUED and retry.id == trial.id + 1
    assert retry.meta["retry_of"] == trial.id and retry.meta["attempt"] == 2
    assert retry.parameters["lr"] == trial.parameters["lr"]
    assert study.get_suggestion().id == retry.id  # queued trials come first
    study.finalize(retry.id, "FAILED")
    assert study.requeue(retry.id, max_attempts=2) is None  # its second attempt: used up
    again = study.requeue(retry.id)  # no limit
    assert again.meta["attempt"] == 3 and again.id == retry.id + 1


@pytest.mark.parametrize("state", ["QUEUED", "RUNNING", "COMPLETED"])
def test_requeue_refuses_a_trial_that_has_not_failed_or_stopped(state):
    study = random_study()
    trial = study.get_suggestion()
    if state == "COMPLETED":
        study.add_observation(trial, 1.0)
        study.finalize(trial)
    elif state == "QUEUED":
        study.finalize(trial, "FAILED")
        trial = study.requeue(trial)
    n_trials = len(study.trials)
    with pytest.raises(InvalidStatusError, match=f"trial {trial.id} is {state}"):
        study.requeue(trial)
    assert len(study.trials) == n_trials  # nothing queued


def test_appends_inside_one_block_take_consecutive_ids(tmp_path):
    """A storage shows a transaction's inserts only once it commits: the ids handed out
    inside one _writing() block are counted by the study (two retries in one reap)."""
    study = random_study(storage=f"sqlite:///{tmp_path / 'ids.db'}", study_name="ids",
                         heartbeat_interval=None)  # fmt: skip
    a, b = study.get_suggestion(), study.get_suggestion()
    for t in (a, b):
        study.finalize(t, "FAILED")
    with study._writing():
        first = study.requeue(a)
        second = study.requeue(b)
    assert (first.id, second.id) == (3, 4)
    assert [t.id for t in study.trials] == [1, 2, 3, 4]


def test_checkpoints_property():
    with pytest.raises(ConfigurationError, match="has no checkpoint_dir"):
        random_study().checkpoints  # noqa: B018


def test_checkpoints_property_is_the_trials_store(tmp_path):
    study = random_study(checkpoint_dir=tmp_path)
    trial = study.get_suggestion()
    assert study.checkpoints is study.checkpoints
    assert trial.checkpoint_path == study.checkpoints.save_path(trial)


def test_a_handed_out_trial_works_through_its_context():
    study = random_study()
    trial = study.get_suggestion()
    assert trial._context is not None
    trial.report(0.5)
    assert study.get_trial(trial.id).observations[1].objective == 0.5
    assert trial.should_stop() is False
    loose = pt.Trial(9, {"lr": 0.001})
    with pytest.raises(pt.PoptuneError, match="not attached to a live study"):
        loose.report(0.1)


def test_close_stops_the_heartbeat(tmp_path):
    study = random_study(storage=f"sqlite:///{tmp_path / 'hb.db'}", study_name="hb",
                         heartbeat_interval=0.05, grace_period=1.0)  # fmt: skip
    study.get_suggestion()
    assert study._heartbeat.alive
    study.close()  # it waits for the thread: nothing of it uses the storage after this
    assert not study._heartbeat.alive


def test_backoff_grows_to_its_cap_and_resets(monkeypatch):
    slept = []
    monkeypatch.setattr(time, "sleep", slept.append)
    backoff = Backoff(0.01, 0.02)
    for _ in range(4):
        backoff.wait()
    backoff.reset()
    backoff.wait()
    assert slept == pytest.approx([0.01, 0.015, 0.02, 0.02, 0.01])
    fixed = Backoff(1.0, 1.0)  # the job runner's poll_interval
    fixed.wait()
    fixed.wait()
    assert slept[-2:] == [1.0, 1.0]
    slept.clear()
    Backoff(5.0, 5.0).wait(deadline=time.monotonic() - 1)  # never past a deadline
    assert slept == [0.0]


def _python_files_outside_the_study_package():
    for path in sorted(SRC.rglob("*.py")):
        if "study" not in path.relative_to(SRC).parts[:1]:
            yield path


def test_nothing_outside_the_study_package_uses_its_private_members():
    pattern = re.compile(r"study\._")
    offenders = [
        f"{path.relative_to(SRC)}:{number}: {line.strip()}"
        for path in _python_files_outside_the_study_package()
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert offenders == []


def test_the_study_package_imports_its_drivers_at_module_level():
    """No function-level ``from poptune...`` import in the study package (none is needed to
    break a cycle: the drivers never import the face at run time)."""
    found = []
    for path in sorted((SRC / "study").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    if isinstance(inner, ast.ImportFrom) and (inner.module or "").startswith(
                        "poptune"
                    ):
                        found.append(f"{path.name}:{inner.lineno}")
    assert found == []


def test_an_error_inside_a_write_block_releases_everything(tmp_path):
    study = random_study(storage=f"sqlite:///{tmp_path / 'err.db'}", study_name="err",
                         heartbeat_interval=None)  # fmt: skip
    trial = study.get_suggestion()
    study.finalize(trial, "FAILED")
    with pytest.raises(RuntimeError):
        with study._writing():
            study.requeue(trial)
            raise RuntimeError("boom")
    assert study._next_id is None
    assert [t.id for t in study.trials] == [1]  # the requeue was rolled back
    got = []
    other = threading.Thread(target=lambda: got.append(study.requeue(trial).id))
    other.start()
    other.join(10)
    assert got == [2]  # another thread gets the lock: it was released
