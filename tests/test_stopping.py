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
