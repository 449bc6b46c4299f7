"""The study's random stream (``rng_stream``): stream 2 for new studies, one generator advanced
continuously whose position travels in the stored algorithm state; stream 1 kept by studies
stored or saved without a stream version."""

import json

import pytest

from poptune import ConfigurationError, Continuous, Discrete, Study, algorithms
from poptune._rng import STATE_KEY

from .helpers import fingerprint, finish, run

P = [Continuous("x", [0.0, 1.0]), Discrete("n", [1, 100])]


def value(trial):
    return round((trial.parameters["x"] - 0.3) ** 2 + trial.parameters["n"] / 1000, 12)


def make(stream=None, **kwargs):
    return Study(P, algorithms.RandomSearch(max_num_trials=12), True, seed=11,
                 rng_stream=stream, **kwargs)  # fmt: skip


def test_the_stream_is_stored_with_the_study_and_hidden_from_the_algorithm():
    seen = []

    class Peek(algorithms.RandomSearch):
        def suggest(self, history, rng):
            seen.append(dict(history.state))
            return super().suggest(history, rng)

    study = Study(P, Peek(max_num_trials=3), True, seed=1)
    run(study, value)
    assert all(STATE_KEY not in state for state in seen) and len(seen) == 4
    stored = study._storage
    assert stored.get_study_config(study._study_id)["rng_stream"] == 2
    assert STATE_KEY in stored.get_algorithm_state(study._study_id)


def test_streams_differ_and_each_is_reproducible():
    a, b, old = make(), make(2), make(1)
    for study in (a, b, old):
        run(study, value)
    assert fingerprint(a) == fingerprint(b)
    assert fingerprint(a) != fingerprint(old)


@pytest.mark.parametrize("bad", [0, 3, "2", 2.0, True])
def test_a_bad_stream_is_refused_by_name(bad):
    with pytest.raises(ConfigurationError, match="rng_stream"):
        make(bad)


@pytest.mark.parametrize("stream", [1, 2])
def test_save_and_load_go_on_with_the_same_stream(tmp_path, stream):
    reference = make(stream)
    run(reference, value)
    part = make(stream)
    for n, trial in enumerate(part, 1):
        finish(part, trial, value(trial))
        if n == 5:
            break
    part.save(tmp_path)
    resumed = Study.load(tmp_path)
    run(resumed, value)
    assert fingerprint(resumed) == fingerprint(reference)


def test_a_study_saved_before_stream_versions_keeps_stream_1(tmp_path):
    reference = make(1)
    run(reference, value)
    part = make(1)
    for n, trial in enumerate(part, 1):
        finish(part, trial, value(trial))
        if n == 4:
            break
    part.save(tmp_path)
    saved = json.loads((tmp_path / "study.json").read_text())
    del saved["config"]["rng_stream"]  # as poptune wrote it before streams had versions
    (tmp_path / "study.json").write_text(json.dumps(saved))
    resumed = Study.load(tmp_path)
    run(resumed, value)
    assert fingerprint(resumed) == fingerprint(reference)


def test_a_stored_study_without_a_stream_version_is_joined_on_stream_1(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    reference = make(1)
    run(reference, value)
    first = make(1, storage=url, study_name="old")
    for n, trial in enumerate(first, 1):
        finish(first, trial, value(trial))
        if n == 3:
            break
    # A study stored before stream versions: its config has no rng_stream.
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as conn:
        (config,) = conn.execute(text("SELECT config FROM poptune_studies")).one()
        config = json.loads(config)
        del config["rng_stream"]
        conn.execute(text("UPDATE poptune_studies SET config = :c"), {"c": json.dumps(config)})
    engine.dispose()
    joined = make(None, storage=url, study_name="old")  # a new study's default is 2
    run(joined, value)
    assert fingerprint(joined) == fingerprint(reference)


def test_workers_sharing_a_database_draw_one_stream(tmp_path):
    """Two Study objects on one SQLite study take turns: the position each stored is where the
    other goes on from, so the trials are those of one study run alone."""
    reference = make()
    run(reference, value)
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    a, b = make(storage=url, study_name="s"), make(storage=url, study_name="s")
    turn = 0
    while True:
        study = (a, b)[turn % 2]
        trial = study.get_suggestion()
        if not hasattr(trial, "id"):
            break
        finish(study, trial, value(trial))
        turn += 1
    assert turn == 12
    assert fingerprint(a) == fingerprint(reference)
