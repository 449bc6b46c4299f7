"""MedianStoppingRule: compared at the same iteration, its thresholds, its index, its config."""

import random

import pytest

from poptune import ConfigurationError, Continuous, Study
from poptune._config import object_from_config
from poptune.algorithms import RandomSearch
from poptune.stopping import MedianStoppingRule, StoppingRule

X = [Continuous("x", [0, 1])]


# Other trials' objectives by iteration (maximized). At iteration 2 their bests so far are
# 0.6, 0.2 and 0.5 (median 0.5); over their whole runs 0.9, 0.95 and 0.99 (median 0.95).
# Trial 4 never got past iteration 1.
TABLE = [
    ({1: 0.5, 2: 0.6, 3: 0.9}, "COMPLETED"),
    ({1: 0.1, 2: 0.2, 3: 0.95}, "STOPPED"),
    ({1: 0.3, 2: 0.5, 3: 0.99}, None),  # still running
    ({1: 0.0}, "FAILED"),
]


def median_study(subject, lower_is_better=False, table=TABLE, **rule_args):
    """A study holding ``table`` and then the running ``subject``; returns (study, subject)."""
    sign = -1 if lower_is_better else 1
    rule = MedianStoppingRule(**rule_args)
    study = Study(X, RandomSearch(), lower_is_better, stopping_rule=rule, seed=0)
    for values, status in [*table, (subject, None)]:
        trial = study.get_suggestion()
        for it, value in values.items():
            study.add_observation(trial, sign * value, iteration=it)
        if status is not None:
            study.finalize(trial, status)
    return study, trial


@pytest.mark.parametrize("lower_is_better", [False, True])
@pytest.mark.parametrize(
    "subject, stop",
    [
        ({1: 0.3, 2: 0.45}, True),  # below 0.5 at iteration 2 (trial 4 does not count there)
        ({1: 0.3, 2: 0.55}, False),  # above 0.5: a whole-run comparison (0.95) would stop it
        ({1: 0.7, 2: 0.1}, False),  # its best so far (0.7) counts, not its last value
        ({1: 0.05}, True),  # iteration 1: bests 0.5, 0.1, 0.3, 0.0 -> median 0.2
        ({1: 0.25}, False),
        ({1: 0.2}, False),  # equal to the median: not worse
        ({}, False),  # nothing reported yet
    ],
)
def test_median_stopping_compares_at_the_same_iteration(subject, stop, lower_is_better):
    study, trial = median_study(subject, lower_is_better)
    assert study.should_trial_stop(trial) is stop
    assert trial.should_stop() is stop  # the same question from the trial
    assert study.stopping_rule.should_trial_stop(trial, study.history) is stop


def test_median_stopping_min_iterations_and_min_trials():
    subject = {1: 0.1, 2: 0.1, 3: 0.1}  # worst everywhere; 3 trials reached iteration 3
    assert median_study(subject)[0].should_trial_stop(5)  # the subject is trial 5
    assert not median_study(subject, min_iterations=4)[0].should_trial_stop(5)
    assert median_study(subject, min_iterations=3)[0].should_trial_stop(5)
    assert median_study(subject, min_trials=3)[0].should_trial_stop(5)
    assert not median_study(subject, min_trials=4)[0].should_trial_stop(5)  # trial 4 stopped at 1
    early = {1: 0.05}  # at iteration 1 all four others count
    assert median_study(early, min_trials=4)[0].should_trial_stop(5)
    assert not median_study(early, min_trials=5)[0].should_trial_stop(5)


def test_median_stopping_index_agrees_with_a_full_scan():
    """The rule indexes finished trials once; its answers must be those of a plain scan of the
    history, whatever order trials report and finish in."""
    rnd = random.Random(0)
    rule = MedianStoppingRule()
    study = Study(X, RandomSearch(), True, stopping_rule=rule, seed=0)
    running = []
    for _ in range(300):
        if len(running) < 6:
            running.append([study.get_suggestion(), 0])
        k = rnd.randrange(len(running))
        trial, last = running[k]
        it = last + rnd.randint(1, 3)
        study.add_observation(trial, rnd.random(), iteration=it)
        running[k][1] = it
        if rnd.random() < 0.15:
            study.finalize(trial, rnd.choice(["COMPLETED", "STOPPED", "FAILED"]))
            running.pop(k)
        t = rnd.randint(1, 12)
        history = study.history
        expected = []
        for other in history:
            obs = other.observations
            before = [o.objective for i, o in obs.items() if i <= t]
            if obs and max(obs) >= t and before and other.id != trial.id:
                expected.append(min(before))
        assert sorted(rule.values_at(history, t, exclude=trial.id)) == sorted(expected)


def test_median_stopping_config_and_arguments(tmp_path):
    rule = MedianStoppingRule(min_iterations=2, min_trials=3)
    config = rule.to_config()
    assert config == {"type": "poptune.stopping:MedianStoppingRule", "min_iterations": 2,
                      "min_trials": 3}  # fmt: skip
    assert object_from_config(config, {}, StoppingRule).to_config() == config
    study = Study(X, RandomSearch(2), False, stopping_rule=rule, seed=0, output_dir=tmp_path)
    for trial in study:
        study.add_observation(trial, 0.5)
        study.finalize(trial)
    study.save()
    assert Study.load(tmp_path).stopping_rule.to_config() == config
    with pytest.raises(ConfigurationError, match="min_iterations must be an int >= 0, got -1"):
        MedianStoppingRule(min_iterations=-1)
    with pytest.raises(ConfigurationError, match="min_trials must be an int >= 1, got 0"):
        MedianStoppingRule(min_trials=0)


def reference_should_stop(trial, history, min_iterations=0, min_trials=1):
    """MedianStoppingRule's documented decision, by a plain scan of the whole history."""
    obs = trial.observations
    if not obs or max(obs) < min_iterations:
        return False
    t, lower = max(obs), history.lower_is_better
    pick = min if lower else max
    best = pick(o.objective for o in obs.values())
    values = []
    for other in history:
        seen = other.observations
        before = [o.objective for i, o in seen.items() if i <= t]
        if other.id != trial.id and seen and max(seen) >= t and before:
            values.append(pick(before))
    if len(values) < min_trials:
        return False
    values.sort()
    mid = len(values) // 2
    median = values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2
    return best > median if lower else best < median


@pytest.mark.parametrize("seed", range(4))
def test_median_stopping_decides_as_a_plain_scan_on_random_histories(seed):
    """Trials report any iterations in any order and finish in any order (one runs from the
    start to the end, so the finished trials are never a prefix); every decision, for every
    running trial, equals the plain scan's."""
    rnd = random.Random(seed)
    lower = seed % 2 == 0
    settings = {"min_iterations": rnd.randint(0, 3), "min_trials": rnd.randint(1, 4)}
    rule = MedianStoppingRule(**settings)
    study = Study(X, RandomSearch(), lower, stopping_rule=rule, seed=seed)
    running = [study.get_suggestion()]  # the long-running first trial
    decisions = stops = 0
    for _ in range(400):
        while len(running) < rnd.randint(2, 8):
            running.append(study.get_suggestion())
        trial = rnd.choice(running)
        it = rnd.randint(1, 15)
        if it not in trial.observations:
            study.add_observation(trial, round(rnd.gauss(0, 1), 2), iteration=it)  # ties too
        if trial is not running[0] and rnd.random() < 0.2:
            study.finalize(trial, rnd.choice(["COMPLETED", "STOPPED", "FAILED"]))
            running.remove(trial)
        for subject in running:
            expected = reference_should_stop(subject, study.history, **settings)
            assert rule.should_trial_stop(subject, study.history) is expected
            decisions += 1
            stops += expected
    assert decisions > 1000 and 0 < stops < decisions  # both answers were tested


def test_the_index_is_rebuilt_for_another_history_and_counts_late_finishers():
    study, subject = median_study({1: 0.3, 2: 0.45})
    rule = study.stopping_rule
    assert rule.should_trial_stop(subject, study.history) is True
    # a copy of the study's state in another History object: the index follows it
    other = study.history.from_trials(X, False, list(study.history))
    assert rule.should_trial_stop(subject, other) is True
    assert rule._index.history is other


def reference_values_at(history, t, exclude):
    """Every other trial's best by iteration ``t``, by the rule's definition (a plain scan)."""
    pick = min if history.lower_is_better else max
    values = []
    for other in history:
        seen = other.observations
        before = [o.objective for i, o in seen.items() if i <= t]
        if other.id != exclude and seen and max(seen) >= t and before:
            values.append(pick(before))
    return sorted(values)


@pytest.mark.parametrize("storage", ["memory", "sqlite"])
@pytest.mark.parametrize("seed", range(3))
def test_the_bulk_index_decides_as_a_plain_scan_as_the_history_grows(seed, storage, tmp_path):
    """The index's bulk paths (ids looked at in numpy masks, a reduceat over every indexed
    observation) against the plain scan: gaps in iterations, trials that finish with no
    observation, unfinished trials anywhere among finished ones (the oldest one early), trials
    that finish between calls while new ones appear; a rule kept across calls (indexing
    incrementally) and a fresh one per call (its first call), with ``min_iterations`` and
    ``min_trials`` on both sides of the edge; a History bound to a MemoryStorage (trials changed
    in place) and one synced from SQLite (fresh copies); iterations past 255 appearing late."""
    rnd = random.Random(seed)
    lower = seed % 2 == 1
    url = None if storage == "memory" else f"sqlite:///{tmp_path / 'study.db'}"
    study = Study(X, RandomSearch(), lower, seed=seed, storage=url)
    kept = MedianStoppingRule()
    running = [study.get_suggestion()]  # the oldest unfinished trial stays to the end
    checks = 0
    for step in range(120):
        for _ in range(rnd.choice([0, 0, 1, 3])):
            running.append(study.get_suggestion())
        trial = rnd.choice(running)
        it = rnd.choice([rnd.randint(1, 12), rnd.randint(1, 40)])  # gaps, out of order
        if seed == 2 and step > 60 and rnd.random() < 0.2:
            it = rnd.randint(250, 270)  # past 255: the index reads iterations another way
        if it not in trial.observations and rnd.random() < 0.9:
            study.add_observation(trial, round(rnd.gauss(0, 1), 1), iteration=it)  # ties too
        for done in [t for t in running[1:] if rnd.random() < 0.12]:  # some never observed
            statuses = ["COMPLETED", "STOPPED", "FAILED"] if done.observations else ["FAILED"]
            study.finalize(done, rnd.choice(statuses))
            running.remove(done)
        if step % 3:
            continue
        history = study.history
        for subject in running:
            subject = history[subject.id]
            for t in (0, 1, 7, 13, 41, 256, rnd.randint(1, 40)):
                expected = reference_values_at(history, t, subject.id)
                assert sorted(kept.values_at(history, t, exclude=subject.id)) == expected
            obs = subject.observations
            if not obs:
                assert kept.should_trial_stop(subject, history) is False
                continue
            t = max(obs)
            counted = len(reference_values_at(history, t, subject.id))
            settings = [{}, {"min_iterations": t}, {"min_iterations": t + 1}]
            settings += [{"min_trials": max(counted, 1)}, {"min_trials": counted + 1}]
            for setting in settings:
                expected = reference_should_stop(subject, history, **setting)
                assert MedianStoppingRule(**setting).should_trial_stop(subject, history) is (
                    expected
                )
                checks += 1
            assert kept.should_trial_stop(subject, history) is reference_should_stop(
                subject, history
            )
    assert checks > 300


@pytest.mark.parametrize("iterations", [[0, 1, 255], [255, 256], [-3, 0, 2], [1, 2, 3]])
def test_the_index_reads_any_int_iteration(iterations):
    """Iterations are any ints (0, negative, past 255): a History made from trials, as SHERPA's
    results table gives one, against the plain scan at every iteration around them."""
    from poptune.history import History
    from poptune.trial import Observation, Trial, TrialStatus

    rnd = random.Random(len(iterations))
    trials = []
    for tid in range(1, 40):
        status = rnd.choice([TrialStatus.COMPLETED, TrialStatus.STOPPED, TrialStatus.RUNNING])
        trial = Trial(tid, {"x": 0.5}, status)
        for it in rnd.sample(iterations, rnd.randint(1, len(iterations))):
            trial._record(Observation(it, rnd.random()))
        trials.append(trial)
    trials[0]._obs.clear()  # so the index's look at the first and last trials misses any
    trials[-1]._obs.clear()  # iteration past 255 (it then finds one while reading them all)
    history = History.from_trials(X, True, trials)
    rule = MedianStoppingRule()
    for t in sorted({i + d for i in iterations for d in (-1, 0, 1)} | {-1000, 10**6}):
        assert sorted(rule.values_at(history, t, exclude=1)) == reference_values_at(history, t, 1)
    for trial in trials:
        assert rule.should_trial_stop(trial, history) is reference_should_stop(trial, history)


@pytest.mark.parametrize("chunk", [1, 3, 40, 4096])
@pytest.mark.parametrize("seed", range(4))
def test_the_index_read_in_chunks_decides_as_a_plain_scan(seed, chunk, monkeypatch):
    """The index reads a chunk of trials at a time (``_CHUNK`` observations; small here, so
    trials fall on both sides of a cut and one outgrows a chunk): random histories against the
    plain scan, with iterations rising (every trial's, or most) or in any order, negative ones
    and ones past 255 seen first in a middle chunk, trials without observations, unfinished
    trials among finished ones that then finish out of id order (the kept rule extends its
    index), objectives as floats (ties too), ints and numpy scalars, either direction."""
    import numpy as np

    from poptune import stopping
    from poptune.history import History
    from poptune.trial import Observation, Trial, TrialStatus

    monkeypatch.setattr(stopping, "_CHUNK", chunk)
    rnd = random.Random(seed)
    lower = seed % 2 == 0
    kinds = [float, float, int, np.float64, np.int64]
    statuses = [TrialStatus.COMPLETED, TrialStatus.STOPPED, TrialStatus.FAILED]

    def observe(trial, count):
        wide = seed >= 2 and 1 < trial.id < 80 and rnd.random() < 0.15  # not trial 1 or 80
        pool = range(-5, 300) if wide else range(0, 80)
        iterations = rnd.sample([i for i in pool if i not in trial._obs], count)
        if seed % 2 or rnd.random() < 0.6:
            iterations.sort()  # as trials report: always (odd seeds) or mostly
        for it in iterations:
            value = rnd.choice(kinds)(rnd.choice([rnd.randint(-3, 3), round(rnd.gauss(0, 2), 1)]))
            trial._record(Observation(it, value))

    trials = []
    for tid in range(1, 81):
        unfinished = rnd.random() < 0.3
        trial = Trial(tid, {"x": 0.5}, TrialStatus.RUNNING if unfinished else rnd.choice(statuses))
        observe(trial, rnd.choice([0, 1, 2, 5, 12, 45]))
        trials.append(trial)
    history = History.from_trials(X, lower, trials)
    kept = MedianStoppingRule()

    def check():
        ends = {f(t._obs) for t in rnd.sample(trials, 6) if t._obs for f in (min, max)}
        for subject in rnd.sample(trials, 8):
            for t in {-1, 0, 1, 7, 80, 256, max(subject._obs, default=3), *ends}:
                expected = reference_values_at(history, t, subject.id)
                assert sorted(kept.values_at(history, t, exclude=subject.id)) == expected
            for rule in (kept, MedianStoppingRule(), MedianStoppingRule(min_trials=5)):
                settings = {"min_trials": rule.min_trials}
                expected = bool(reference_should_stop(subject, history, **settings))
                assert bool(rule.should_trial_stop(subject, history)) is expected  # np.bool_ too

    check()
    running = [t for t in trials if not t.is_finished]
    rnd.shuffle(running)
    for k, trial in enumerate(running[: len(running) * 2 // 3]):  # out of id order
        observe(trial, rnd.randint(0, 3))
        trial.status = rnd.choice(statuses)
        if k % 4 == 3:  # several finish between two calls
            check()
    check()


def test_the_index_reads_objectives_as_numpy_does():
    """Objectives are read as doubles the way ``numpy.fromiter`` reads them, also ones it
    alone converts (a numeric str, None as NaN) and ints past 2**53."""
    import numpy as np

    from poptune.history import History
    from poptune.stopping import _FinishedIndex
    from poptune.trial import Observation, Trial, TrialStatus

    values = [0.5, -0.0, 3, True, 2**53 + 1, -(2**70) - 1, np.float32(0.1), np.int64(-7)]
    trials = []
    for tid, extra in enumerate([[], ["0.25"], [None], [float("inf")]], start=1):
        trial = Trial(tid, {"x": 0.5}, TrialStatus.COMPLETED)
        for it, value in enumerate([*values, *extra], start=1):
            trial._record(Observation(it, value))
        trials.append(trial)
    history = History.from_trials(X, True, trials)
    index = _FinishedIndex(history)
    index.advance()
    records = (value[0] for trial in trials for value in trial._obs.values())
    expected = np.fromiter(records, dtype=float)
    assert index._arrays[1].tobytes() == expected.tobytes()
