"""Asynchronous PBT's ``ranking``: 'latest' (the default) against 'equal_progress'."""

import pytest

from poptune import (
    ArgumentTypeError,
    ConfigurationError,
    Study,
    TrialStatus,
    algorithms,
    load_study,
)
from poptune.algorithms import algorithm_from_config
from poptune.storage.sql import SQLStorage

from .helpers import H, fingerprint, toy_segment
from .test_pbt_async import PARAMS, READS, CountingPBT, drive, finish

PBT = algorithms.PopulationBasedTraining


def apbt(generations=3, population=3, **kw):
    return PBT(generations, population, synchronous=False, **kw)


def one_worker_toy(ranking, seed, population=6, generations=12):
    """The paper's toy problem (tests/helpers.py) with random founders, one segment at a
    time: a single worker. Returns the study."""
    study = Study(H, apbt(generations, population, ranking=ranking), False, seed=seed)
    checkpoints = {}
    for trial in study:
        study.add_observation(trial, toy_segment(trial, checkpoints), iteration=trial.generation)
        study.finalize(trial)
    return study


def exploits(study):
    decisions = [t for t in study.trials if t.generation > 1]
    return sum("replaced" in t.meta for t in decisions), len(decisions)


def test_one_worker_equal_progress_makes_far_fewer_exploits():
    """On one worker the member that asks has trained one segment less than the members
    before it in the round: 'latest' ranks it below them, so it is exploited far more often
    than a fair comparison would say (measured here: 159 of 330 decisions against 85)."""
    latest = [exploits(one_worker_toy("latest", seed)) for seed in range(5)]
    fair = [exploits(one_worker_toy("equal_progress", seed)) for seed in range(5)]
    n = sum(d for _, d in latest)
    assert n == sum(d for _, d in fair) == 5 * 6 * 11
    n_latest, n_fair = sum(e for e, _ in latest), sum(e for e, _ in fair)
    assert n_latest > 0.4 * n  # nearly half the decisions are exploits
    assert n_fair < 0.6 * n_latest
    # truncation with population 6 replaces the bottom member: ~1 decision in 6 when fair
    assert n_fair < 0.3 * n


def test_equal_progress_is_the_synchronous_decision_on_one_worker_round_one():
    """The first member to decide on one worker sees everyone at its own progress: both
    rankings agree there."""
    for seed in range(3):
        a, b = (
            one_worker_toy("latest", seed, generations=2),
            one_worker_toy("equal_progress", seed, generations=2),
        )
        assert fingerprint(a)[:7] == fingerprint(b)[:7]  # founders and member 0's decision


def staged(ranking, m1_score):
    """Three members (higher is better; truncation replaces the bottom one):

    member 2 finishes generation 1 at 7 and goes on; member 0 at 8 and goes on; member 1 at
    ``m1_score``; then members 2 and 0 finish generation 2 at 12 and 10. Member 1, which has
    trained one segment (progress 1), asks. Returns (the study, member 1's next segment,
    {member: [its trials]})."""
    study = Study(PARAMS, apbt(3, 3, ranking=ranking), False, seed=0)
    f0, f1, f2 = (study.get_suggestion() for _ in range(3))
    finish(study, f2, 7.0)
    s2 = study.get_suggestion()
    assert (s2.member, s2.generation, s2.parent) == (2, 2, f2.id)  # alone: it goes on
    finish(study, f0, 8.0)
    s0 = study.get_suggestion()
    assert (s0.member, s0.generation, s0.parent) == (0, 2, f0.id)  # 8 beats 7: goes on
    finish(study, f1, m1_score)
    finish(study, s2, 12.0)
    finish(study, s0, 10.0)
    nxt = study.get_suggestion()
    assert (nxt.member, nxt.generation) == (1, 2)
    return study, nxt, {0: [f0, s0], 1: [f1], 2: [f2, s2]}


def test_latest_ranks_the_asker_against_members_that_trained_further():
    # latest: 12 (member 2), 10 (member 0), 7.5 (member 1): member 1 is the bottom one
    study, nxt, trials = staged("latest", 7.5)
    assert nxt.meta["replaced"] == trials[1][0].id
    assert nxt.parent == trials[2][1].id  # the top member's latest segment


def test_equal_progress_compares_the_asker_with_the_others_at_its_progress():
    # at progress 1: 8 (member 0), 7.5 (member 1), 7 (member 2): member 1 is not the bottom
    study, nxt, trials = staged("equal_progress", 7.5)
    assert "replaced" not in nxt.meta
    assert nxt.parent == trials[1][0].id  # it goes on with its own weights
    assert nxt.parameters["learning_rate"] == trials[1][0].parameters["learning_rate"]


def test_equal_progress_donor_is_drawn_by_the_weights_it_hands_on():
    # at progress 1: 8 (member 0), 7 (member 2), 4 (member 1): member 1 is the bottom one and
    # is exploited; its donor is drawn from the top by the latest COMPLETED segments, the
    # weights that are copied: member 2's (12), not member 0's (10), though member 0 was the
    # better at progress 1
    study, nxt, trials = staged("equal_progress", 4.0)
    assert nxt.meta["replaced"] == trials[1][0].id
    assert nxt.parent == trials[2][1].id
    assert nxt.load_from == trials[2][1].save_to


def test_equal_progress_donor_is_never_the_asker_itself():
    """Members 0 and 2 got worse in their second segment (8 -> 5, 7 -> 4). Member 1 (6, one
    segment) is the bottom at progress 1 (8, 7, 6), yet its own segment is the best latest
    one: the donor is the best of the others by their latest segments, member 0's."""
    study = Study(PARAMS, apbt(3, 3, ranking="equal_progress"), False, seed=0)
    f0, f1, f2 = (study.get_suggestion() for _ in range(3))
    finish(study, f2, 7.0)
    s2 = study.get_suggestion()
    finish(study, f0, 8.0)
    s0 = study.get_suggestion()
    assert (s2.parent, s0.parent) == (f2.id, f0.id)  # both go on
    finish(study, f1, 6.0)
    finish(study, s2, 4.0)
    finish(study, s0, 5.0)
    nxt = study.get_suggestion()
    assert nxt.member == 1 and nxt.meta["replaced"] == f1.id
    assert nxt.parent == s0.id


@pytest.mark.parametrize("ranking", ["latest", "equal_progress"])
@pytest.mark.parametrize("m1_score", [9.0, 7.5])
def test_a_member_behind_the_asker_meets_it_at_its_own_progress(ranking, m1_score):
    """Member 1 has completed only its first segment (``m1_score``) when member 0, at
    progress 2 (8, then 10), asks: with 'equal_progress' they are compared at progress 1,
    member 0's first segment (8) against member 1's. Member 2 (7, then 12) beats member 0."""
    study = Study(PARAMS, apbt(3, 3, ranking=ranking), False, seed=0)
    f0, f1, f2 = (study.get_suggestion() for _ in range(3))
    finish(study, f2, 7.0)
    s2 = study.get_suggestion()
    finish(study, f0, 8.0)
    s0 = study.get_suggestion()
    finish(study, s2, 12.0)
    finish(study, s0, 10.0)
    finish(study, f1, m1_score)
    t2 = study.get_suggestion()  # member 2 finished first; it beats member 0 at progress 2
    assert (t2.member, t2.parent) == (2, s2.id) and "replaced" not in t2.meta
    t0 = study.get_suggestion()
    assert t0.member == 0
    if ranking == "equal_progress" and m1_score > 8.0:
        # member 1 (9) beat member 0's first segment (8) though not its latest (10): member 0
        # lost to both, it is the bottom, and copies the best latest weights (member 2's)
        assert t0.meta["replaced"] == s0.id and t0.parent == s2.id
    else:  # 'latest': 10 beats 9 and 7.5; 'equal_progress': 8 beats 7.5
        assert t0.parent == s0.id and "replaced" not in t0.meta


def test_a_failed_segment_still_copies_a_donor():
    study = Study(PARAMS, apbt(3, 3, ranking="equal_progress"), False, seed=0)
    f0, f1, f2 = (study.get_suggestion() for _ in range(3))
    finish(study, f0, 5.0)
    finish(study, f2, 9.0)
    finish(study, f1, status="FAILED")
    s0 = study.get_suggestion()
    s2 = study.get_suggestion()
    s1 = study.get_suggestion()  # member 1 failed: it copies the top member
    assert (s0.member, s2.member, s1.member) == (0, 2, 1)
    assert s1.meta["replaced"] == f1.id and s1.parent == f2.id


@pytest.mark.parametrize("exploit", ["truncation", "tournament", "ttest"])
def test_every_parent_is_a_completed_segment_and_budgets_are_kept(exploit):
    algorithm = apbt(6, 5, ranking="equal_progress", resample_probability=0.25, exploit=exploit)
    study = Study(PARAMS, algorithm, False, seed=3)
    trials = drive([study], schedule_seed=5, workers=2, fail={7, 19})
    assert len(trials) == 30
    for trial in trials:
        if trial.parent is not None:
            assert study.get_trial(trial.parent).status is TrialStatus.COMPLETED


def test_same_seed_same_run():
    def run(seed):
        study = Study(PARAMS, apbt(5, 4, ranking="equal_progress"), False, seed=seed)
        drive([study], schedule_seed=2, workers=2, fail={9})
        return fingerprint(study)

    assert run(4) == run(4)
    assert run(4) != run(5)


def test_a_suggestion_reads_at_most_two_ancestors_more_per_member():
    READS.clear()
    population = 4
    algorithm = CountingPBT(40, population, synchronous=False, ranking="equal_progress")
    study = Study(PARAMS, algorithm, False, seed=0)
    assert len(drive([study], 0, workers=2, fail={20})) == 160
    assert max(READS) <= 4 * population + 1  # and the two segments compared, per member
    assert max(READS[-40:]) <= max(READS[10:50])


# -- configuration ------------------------------------------------------------------------------
def test_default_is_latest_and_the_config_keeps_the_ranking():
    assert PBT(3, 4, synchronous=False).ranking == "latest"
    algo = apbt(3, 4, ranking="equal_progress")
    config = algo.to_config()
    assert config["ranking"] == "equal_progress"
    assert algorithm_from_config(config).ranking == "equal_progress"
    assert algorithm_from_config(config).to_config() == config
    assert algorithm_from_config({k: v for k, v in config.items() if k != "ranking"}).ranking == (
        "latest"
    )  # a config stored before the option existed


def test_a_study_on_sqlite_keeps_the_ranking(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    study = Study(PARAMS, apbt(3, 3, ranking="equal_progress"), False, seed=0,
                  storage=SQLStorage(url), study_name="r")  # fmt: skip
    trials = drive([study], schedule_seed=1, workers=2)
    assert len(trials) == 9
    study.close()
    again = load_study(url, "r")
    assert again.algorithm.ranking == "equal_progress"
    again.close()


def test_saved_and_loaded_study_keeps_the_ranking(tmp_path):
    study = Study(PARAMS, apbt(3, 3, ranking="equal_progress"), False, seed=0,
                  output_dir=tmp_path)  # fmt: skip
    for trial in study:
        finish(study, trial)
    study.save()
    assert Study.load(tmp_path).algorithm.ranking == "equal_progress"


@pytest.mark.parametrize(
    "value, error, fragment",
    [
        ("fair", ConfigurationError, "ranking must be 'latest' or 'equal_progress', got 'fair'"),
        ("Latest", ConfigurationError, "got 'Latest'"),
        (1, ArgumentTypeError, "PopulationBasedTraining: ranking must be .*, got 1"),
        (None, ArgumentTypeError, "got None"),
    ],
)
def test_a_bad_ranking_is_refused_naming_it(value, error, fragment):
    with pytest.raises(error, match=fragment):
        apbt(ranking=value)


def test_either_ranking_is_accepted_in_synchronous_mode():
    for ranking in ("latest", "equal_progress"):
        study = Study(PARAMS, PBT(2, 3, ranking=ranking), False, seed=0)
        for trial in study:
            finish(study, trial)
        assert len(study.trials) == 6


def test_pb2_takes_the_ranking_too():
    pytest.importorskip("sklearn")
    pb2 = algorithms.PB2(3, 4, synchronous=False, ranking="equal_progress")
    assert algorithm_from_config(pb2.to_config()).ranking == "equal_progress"
    study = Study(PARAMS, pb2, False, seed=1)
    trials = drive([study], schedule_seed=3, workers=2)
    assert len(trials) == 12
