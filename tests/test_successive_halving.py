"""SuccessiveHalving (ASHA) and Hyperband: promotions, rungs, budget, arguments, retries."""

import time

import pytest

from poptune import AlgorithmState, ConfigurationError, Discrete, Study
from poptune.algorithms.chain import Chain
from poptune.algorithms.hyperband import Hyperband
from poptune.algorithms.random_search import RandomSearch
from poptune.algorithms.repeat import Repeat
from poptune.algorithms.successive_halving import SuccessiveHalving
from poptune.storage.sql import SQLStorage

from .conftest import forget_storages
from .helpers import X, finish, run

# objective of each trial id; a trial's rung comes from the algorithm
TABLE = {1: 5, 2: 3, 3: 8, 4: 2.5, 5: 1, 6: 1.5, 7: 4, 8: 2, 9: 2.2, 10: 1.4, 11: 7, 12: 0.5,
         13: 0.8, 14: 0.7, 15: 6, 16: 3, 17: 9}  # fmt: skip

# (trial id, rung, resource, load_from) of every promotion, worked out by hand from the rule:
# rungs checked from the top down; a rung's COMPLETED trials ranked by objective; the best of
# its top floor(n / 3) not promoted yet is promoted; otherwise a new configuration on rung 0.
PROMOTIONS = {
    # lower is better: rung 0 = 1..3 -> top 1 is trial 2 (3.0) -> trial 4 on rung 1; after
    # trial 5 (1.0) the top 1 of 4 is 5 -> trial 6; 6 done -> top 2 = 5, 8 -> 9; rung 1 then
    # has 3 (2.5, 1.5, 2.2) -> its best, 6, goes to rung 2 as 10; 12 (0.5) enters the top 2 of
    # 8 -> 13; rung 1 of 4 -> top 1 = 13 (0.8) -> 14 on rung 2: two finished configs, DONE.
    True: [(4, 1, 3, "2"), (6, 1, 3, "5"), (9, 1, 3, "8"), (10, 2, 9, "6"), (13, 1, 3, "12"),
           (14, 2, 9, "13")],
    # higher is better: 3 (8) -> 4; top 2 of 6 = 3, 1 -> 8; top 3 of 9 = 3, 11, 1 -> 12;
    # rung 1 = 2.5, 2, 0.5 -> 4 -> 13 (rung 2); 15 (6) pushes 1 out of the top 3 of 11 and is
    # promoted -> 16; rung 1 of 4 -> top 1 = 16 (3) -> 17 on rung 2: DONE.
    False: [(4, 1, 3, "3"), (8, 1, 3, "1"), (12, 1, 3, "11"), (13, 2, 9, "4"), (16, 1, 3, "15"),
            (17, 2, 9, "16")],
}  # fmt: skip


@pytest.mark.parametrize("lower", [True, False])
def test_asha_promotes_exactly_as_specified(lower):
    study = Study(X, SuccessiveHalving(r=1, R=9, eta=3, max_finished_configs=2), lower, seed=0)
    trials = []
    while True:
        trial = study.get_suggestion()
        if trial is AlgorithmState.DONE:
            break
        if trial.parameters["rung"] == 2 and sum(t.parameters["rung"] == 2 for t in trials):
            assert study.get_suggestion() is AlgorithmState.WAIT  # the last config is running
        finish(study, trial, TABLE[trial.id])
        trials.append(trial)
    got = [(t.id, t.parameters["rung"], t.parameters["resource"], t.parameters["load_from"])
           for t in trials if t.parameters["load_from"]]  # fmt: skip
    assert got == PROMOTIONS[lower]
    for t in trials:
        assert t.parameters["save_to"] == str(t.id)
        if t.parameters["rung"] == 0:
            assert t.parameters["resource"] == 1 and t.parameters["load_from"] == ""
        else:
            parent = study.get_trial(t.parent)
            assert parent.parameters["rung"] == t.parameters["rung"] - 1
            assert parent.parameters["x"] == t.parameters["x"]
    assert len(trials) == max(PROMOTIONS[lower])[0]


def test_asha_state_is_per_rung_and_pending_checkpoints():
    algo = SuccessiveHalving(max_finished_configs=2)
    study = Study(X, algo, True, seed=0)
    run(study, lambda t: TABLE[t.id])
    state = study.history.state["bracket"]
    assert state["rungs"] == [[1, 2, 3, 5, 7, 8, 11, 12], [4, 6, 9, 13], [10, 14]]
    assert state["promoted"] == [[2, 5, 8, 12], [6, 13]]
    assert algo.pending_checkpoints(study.history) == {"1", "3", "7", "11", "4", "9"}


def test_asha_resources_and_budget():
    assert SuccessiveHalving(r=1, R=27, eta=3, s=1).resources == [3, 9, 27]
    assert SuccessiveHalving(r=1, R=10, eta=3).resources == [1, 3, 9]
    assert SuccessiveHalving(r=0.5, R=2, eta=2).resources == [0.5, 1.0, 2.0]
    # s = s_max: one rung, every configuration is finished at once
    study = Study(X, SuccessiveHalving(R=9, s=2, max_finished_configs=2), True, seed=0)
    a, b = study.get_suggestion(), study.get_suggestion()
    assert a.parameters["resource"] == b.parameters["resource"] == 9
    assert study.get_suggestion() is AlgorithmState.WAIT
    finish(study, a, 1.0)
    finish(study, b, 1.0, "FAILED")  # a failed top-rung trial does not count
    c = study.get_suggestion()
    assert c.id == 3 and c.parameters["rung"] == 0
    finish(study, c, 2.0)
    assert study.get_suggestion() is AlgorithmState.DONE


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"eta": 1}, "eta must be an int >= 2, got 1"),
        ({"eta": 2.5}, "eta must be an int >= 2, got 2.5"),
        ({"r": 10, "R": 9}, r"R must be >= r \(r=10\), got R=9"),
        ({"r": 0}, "r must be a number > 0, got 0"),
        ({"s": 3}, r"s must be <= 2 .* got s=3"),
        ({"max_finished_configs": 0}, "max_finished_configs must be an int >= 1, got 0"),
    ],
)
def test_asha_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ConfigurationError, match=message):
        SuccessiveHalving(**kwargs)
    if "s" not in kwargs:
        with pytest.raises(ConfigurationError, match=message.replace("SuccessiveHalving", "")):
            Hyperband(**kwargs)


def test_asha_reserved_keys_clash_with_a_parameter():
    with pytest.raises(ConfigurationError, match=r"rename the parameter\(s\) \['resource'\]"):
        Study([Discrete("resource", [1, 3])], SuccessiveHalving(), True)
    with pytest.raises(ConfigurationError, match=r"rename the parameter\(s\) \['rung'\]"):
        Study([Discrete("rung", [1, 3])], Repeat(Chain([RandomSearch(), Hyperband()])), True)


# -- Hyperband ---------------------------------------------------------------------------------
def test_hyperband_takes_brackets_in_turn_and_promotes_within_a_bracket():
    study = Study(X, Hyperband(r=1, R=9, eta=3, max_finished_configs=5), True, seed=0)
    trials = run(study, lambda t: t.parameters["x"])
    brackets = [t.meta["bracket"] for t in trials]
    assert brackets == [0, 1, 2] * (len(trials) // 3) + [0, 1, 2][: len(trials) % 3]
    assert [t.parameters["resource"] for t in trials[:9]] == [1, 3, 9] * 3
    # turn 4 of bracket 0: rung 0 holds 1, 4, 7 -> the best goes to rung 1 (resource 3)
    best0 = min(trials[0:9:3], key=lambda t: t.parameters["x"])
    assert (trials[9].parameters["rung"], trials[9].parameters["resource"]) == (1, 3)
    assert trials[9].parameters["load_from"] == str(best0.id)
    best1 = min(trials[1:9:3], key=lambda t: t.parameters["x"])
    assert (trials[10].parameters["rung"], trials[10].parameters["resource"]) == (1, 9)
    assert trials[10].parameters["load_from"] == str(best1.id)
    assert trials[11].parameters["resource"] == 9 and trials[11].parameters["load_from"] == ""
    # DONE after 5 configurations trained with R, whichever bracket they came from
    assert sum(t.parameters["resource"] == 9 for t in trials) == 5 and len(trials) == 12
    assert study.get_suggestion() is AlgorithmState.DONE


def test_asha_adopts_a_retried_trial(tmp_path):
    url = f"sqlite:///{tmp_path / 'retry.db'}"
    fast = {"heartbeat_interval": 0.1, "grace_period": 0.3, "retry_failed_trials": 1}
    try:
        a = Study(X, SuccessiveHalving(R=9, s=2, max_finished_configs=1), True, seed=0,
                  storage=SQLStorage(url), study_name="r", **fast)  # fmt: skip
        b = Study(X, SuccessiveHalving(R=9, s=2, max_finished_configs=1), True,
                  storage=SQLStorage(url), study_name="r", **fast)  # fmt: skip
        lost = a.get_suggestion()
        assert b.get_suggestion() is AlgorithmState.WAIT  # the top rung is full
        a.close()  # its worker dies: no more heartbeats
        time.sleep(0.6)
        retry = b.get_suggestion()
        assert retry.meta["retry_of"] == lost.id and retry.parameters["rung"] == 0
        assert b.get_suggestion() is AlgorithmState.WAIT  # the retry fills the top rung
        finish(b, retry, 1.0)
        assert b.get_suggestion() is AlgorithmState.DONE
    finally:
        forget_storages()
