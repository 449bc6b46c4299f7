"""The shared argument checks of poptune._validation, and call sites that use them.

Every argument error reads ``Owner: name must be <what>, got <value>``; a value of the wrong
type raises ArgumentTypeError (a ConfigurationError and a TypeError), a wrong value a plain
ConfigurationError (a ValueError).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest

import poptune as pt
from poptune import algorithms
from poptune._validation import (
    check_bool,
    check_callable,
    check_choice,
    check_instance,
    check_int,
    check_mapping_of_str,
    check_number,
    check_path,
    check_str,
    is_int,
    is_real,
    reject,
)
from poptune.exceptions import ArgumentTypeError, ConfigurationError


def wrong_type(fn, *args, **kwargs) -> str:
    """Call ``fn``; it must raise ArgumentTypeError. Returns the message."""
    with pytest.raises(TypeError) as info:
        fn(*args, **kwargs)
    assert isinstance(info.value, ArgumentTypeError)
    assert isinstance(info.value, ConfigurationError)  # old ``except ConfigurationError``
    return str(info.value)


def wrong_value(fn, *args, **kwargs) -> str:
    """Call ``fn``; it must raise a ConfigurationError that is not a TypeError."""
    with pytest.raises(ValueError) as info:
        fn(*args, **kwargs)
    assert isinstance(info.value, ConfigurationError)
    assert not isinstance(info.value, TypeError)
    return str(info.value)


# -- reject: the one message shape ----------------------------------------------------------
def test_reject_message_shape_and_class():
    msg = wrong_type(reject, "Owner", "name", "a thing", [1], wrong_type=True)
    assert msg == "Owner: name must be a thing, got [1]"
    msg = wrong_value(reject, "Owner", "name", "a thing", "x", wrong_type=False, note="(hint)")
    assert msg == "Owner: name must be a thing, got 'x' (hint)"


def test_is_int_and_is_real():
    assert is_int(3) and is_int(np.int64(3)) and not is_int(True) and not is_int(3.0)
    assert is_real(2.5) and is_real(np.float32(1)) and is_real(4) and not is_real(False)
    assert not is_real("1")


# -- check_int --------------------------------------------------------------------------------
def test_check_int():
    assert check_int("O", "n", np.int32(4), 1) == 4
    assert type(check_int("O", "n", np.int64(4), 1)) is int
    assert check_int("O", "n", None, 1, allow_none=True) is None
    assert wrong_type(check_int, "O", "n", True, 0) == "O: n must be an int >= 0, got True"
    assert wrong_type(check_int, "O", "n", 2.0, 0) == "O: n must be an int >= 0, got 2.0"
    assert (
        wrong_type(check_int, "O", "n", "3", 1, True) == "O: n must be an int >= 1 or None, got '3'"
    )
    assert wrong_value(check_int, "O", "n", 0, 1) == "O: n must be an int >= 1, got 0"


def test_check_int_maximum():
    assert check_int("O", "port", 65535, 0, maximum=65535) == 65535
    msg = wrong_value(check_int, "O", "port", 70000, 0, maximum=65535)
    assert msg == "O: port must be an int in [0, 65535], got 70000"


# -- check_number -----------------------------------------------------------------------------
def test_check_number_accepts_finite_reals():
    assert check_number("O", "x", 3) == 3.0 and type(check_number("O", "x", 3)) is float
    assert check_number("O", "x", np.float32(0.5), minimum=0, maximum=1) == 0.5
    assert check_number("O", "x", np.int64(2), minimum=2) == 2.0
    assert check_number("O", "x", None, allow_none=True) is None


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, np.float64("nan")])
def test_check_number_refuses_nan_and_infinity(value):
    msg = wrong_value(check_number, "O", "x", value)
    assert msg == f"O: x must be a finite number, got {value!r}"


@pytest.mark.parametrize("value", [True, "1", None, [1.0], 1j])
def test_check_number_refuses_other_types(value):
    msg = wrong_type(check_number, "O", "x", value, minimum=0)
    assert msg == f"O: x must be a number >= 0, got {value!r}"


def test_check_number_bounds_messages():
    assert (
        wrong_value(check_number, "O", "x", -1, minimum=0) == "O: x must be a number >= 0, got -1"
    )
    assert wrong_value(check_number, "O", "x", 0, minimum=0, min_open=True) == (
        "O: x must be a number > 0, got 0"
    )
    assert wrong_value(check_number, "O", "x", 2, maximum=1) == "O: x must be a number <= 1, got 2"
    assert wrong_value(check_number, "O", "x", 2, minimum=0, maximum=1) == (
        "O: x must be a number in [0, 1], got 2"
    )
    assert wrong_value(check_number, "O", "x", 0, minimum=0, maximum=1, min_open=True) == (
        "O: x must be a number in (0, 1], got 0"
    )
    msg = wrong_type(check_number, "O", "x", "a", minimum=0, allow_none=True)
    assert msg == "O: x must be a number >= 0 or None, got 'a'"


# -- check_path -------------------------------------------------------------------------------
def test_check_path(tmp_path):
    assert check_path("O", "p", "out") == "out"
    assert check_path("O", "p", tmp_path) is tmp_path
    assert check_path("O", "p", None, allow_none=True) is None
    assert wrong_type(check_path, "O", "p", 5) == "O: p must be a path (str or os.PathLike), got 5"
    assert wrong_type(check_path, "O", "p", None) == (
        "O: p must be a path (str or os.PathLike), got None"
    )
    assert wrong_value(check_path, "O", "p", "") == "O: p must be a non-empty path, got ''"
    assert wrong_value(check_path, "O", "p", "", allow_none=True) == (
        "O: p must be a non-empty path or None, got ''"
    )
    assert isinstance(check_path("O", "p", Path("x")), os.PathLike)


# -- check_callable, check_instance -----------------------------------------------------------
def test_check_callable():
    assert check_callable("O", "f", len) is len
    assert wrong_type(check_callable, "O", "f", "len") == "O: f must be callable, got 'len'"


def test_check_instance():
    assert check_instance("O", "d", {}, dict, "a dict") == {}
    assert check_instance("O", "d", None, dict, "a dict", allow_none=True) is None
    assert wrong_type(check_instance, "O", "d", [], dict, "a dict") == "O: d must be a dict, got []"
    assert wrong_type(check_instance, "O", "d", 1, dict, "a dict", True) == (
        "O: d must be a dict or None, got 1"
    )


# -- check_mapping_of_str ---------------------------------------------------------------------
def test_check_mapping_of_str():
    assert check_mapping_of_str("O", "env", {"A": "1"}) == {"A": "1"}
    assert check_mapping_of_str("O", "env", None, allow_none=True) == {}
    assert wrong_type(check_mapping_of_str, "O", "env", None) == (
        "O: env must be a dict of str to str, got None"
    )
    assert wrong_type(check_mapping_of_str, "O", "env", ["A"]) == (
        "O: env must be a dict of str to str, got ['A']"
    )
    assert wrong_type(check_mapping_of_str, "O", "env", {"A": 1}) == (
        "O: env['A'] must be a str, got 1"
    )
    assert wrong_type(check_mapping_of_str, "O", "env", {2: "x"}) == (
        "O: env keys must be str, got 2"
    )


# -- check_choice, check_str, check_bool ------------------------------------------------------
def test_check_choice():
    assert check_choice("O", "c", "a", ("a", "b")) == "a"
    assert (
        wrong_value(check_choice, "O", "c", "z", ("a", "b")) == "O: c must be 'a' or 'b', got 'z'"
    )
    assert wrong_value(check_choice, "O", "c", "z", ("a",)) == "O: c must be 'a', got 'z'"
    assert wrong_value(check_choice, "O", "c", "z", ("a", "b", "c")) == (
        "O: c must be one of 'a', 'b', 'c', got 'z'"
    )
    # a value of a type none of the choices has is a TypeError; unhashable ones too
    assert wrong_type(check_choice, "O", "c", 3, ("a", "b")) == "O: c must be 'a' or 'b', got 3"
    assert wrong_type(check_choice, "O", "c", ["a"], {"a", "b"}).startswith("O: c must be")
    msg = wrong_value(check_choice, "O", "c", "z", ("a", "b", "x"), what="'a' or 'b'", note="(!)")
    assert msg == "O: c must be 'a' or 'b', got 'z' (!)"


def test_check_str_strip():
    assert check_str("O", "cmd", " true ", nonempty=True, strip=True) == " true "
    assert wrong_value(check_str, "O", "cmd", "  ", nonempty=True, strip=True) == (
        "O: cmd must be a non-empty str, got '  '"
    )
    assert check_str("O", "cmd", "  ", nonempty=True) == "  "  # without strip, not empty
    assert wrong_type(check_str, "O", "cmd", 3) == "O: cmd must be a str, got 3"


def test_check_bool():
    assert check_bool("O", "b", np.bool_(True)) is True
    assert wrong_type(check_bool, "O", "b", 1) == "O: b must be True or False, got 1"


# -- call sites: a wrong type is a TypeError, a wrong value a ValueError ----------------------
PARAMS = [pt.Continuous("x", [0.0, 1.0])]


def pbt(**kwargs):
    return algorithms.PopulationBasedTraining(num_generations=2, population_size=4, **kwargs)


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda: algorithms.RandomSearch(max_num_trials="3"), "max_num_trials must be an int"),
        (lambda: algorithms.RandomSearch(max_num_trials=True), "max_num_trials must be an int"),
        (lambda: pt.Study(PARAMS, algorithms.RandomSearch(), True, heartbeat_interval="10"),
         "Study: heartbeat_interval must be a number > 0 or None, got '10'"),
        (lambda: pt.Study(PARAMS, "random", True), "Study: algorithm must be a poptune"),
        (lambda: pt.Study(PARAMS, algorithms.RandomSearch(), True, stopping_rule=3),
         "Study: stopping_rule must be a poptune StoppingRule or None, got 3"),
        (lambda: pbt(rank_by=3), "Training: rank_by must be 'last' or 'best', got 3"),
        (lambda: pbt(exploit=None), "exploit must be 'truncation' or 'tournament', got None"),
        (lambda: pbt(synchronous=1), "synchronous must be True or False, got 1"),
        (lambda: pbt(parameter_range=[1, 2]), "parameter_range must be a dict name -> range"),
        (lambda: algorithms.PB2(2, 4, kappa="1"), "PB2: kappa must be a number >= 0, got '1'"),
        (lambda: algorithms.SuccessiveHalving(r="1"), "r must be a number > 0, got '1'"),
        (lambda: algorithms.Repeat(algorithms.RandomSearch(), agg="yes"),
         "Repeat: agg must be True or False, got 'yes'"),
        (lambda: algorithms.Repeat("random"), "Repeat: algorithm must be a poptune.algorithms"),
        (lambda: algorithms.BayesianOptimization(verbosity=1), "verbosity must be True or False"),
        (lambda: algorithms.BayesianOptimization(num_initial_data_points=2.5),
         "num_initial_data_points must be 'infer' or an int >= 1, got 2.5"),
        (lambda: algorithms.BayesianOptimization(acquisition_type=1), "acquisition_type must be"),
        (lambda: algorithms.Chain([algorithms.RandomSearch(1), 3]),
         "Chain: element 1 of algorithms must be a poptune.algorithms.Algorithm, got 3"),
        (lambda: algorithms.Iterate([{"x": 1}, 2]), "Iterate: element 1 of hp_iter must be a dict"),
        (lambda: algorithms.LocalSearch([1]), "seed_configuration must be a dict"),
        (lambda: algorithms.Replay("abc"), "Replay: schedule must be a list of segments"),
    ],
)  # fmt: skip
def test_call_sites_raise_type_errors(make, fragment):
    assert fragment in wrong_type(make)


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda: pbt(rank_by="mean"), "rank_by must be 'last' or 'best', got 'mean'"),
        (lambda: algorithms.PB2(2, 4, kappa=-1), "PB2: kappa must be a number >= 0, got -1"),
        (lambda: algorithms.PB2(2, 4, kappa=math.nan), "PB2: kappa must be a number >= 0, got nan"),
        (lambda: algorithms.SuccessiveHalving(r=math.inf), "r must be a number > 0, got inf"),
        (lambda: algorithms.BayesianOptimization(num_initial_data_points="auto"),
         "num_initial_data_points must be 'infer' or an int >= 1, got 'auto'"),
        (lambda: algorithms.BayesianOptimization(batch_strategy="kriging"),
         "batch_strategy must be 'constant_liar', got 'kriging'"),
        (lambda: algorithms.Replay([{"parameters": {}, "generation": 0}]),
         "Replay: schedule[0]['generation'] must be an int >= 1 or None, got 0"),
    ],
)  # fmt: skip
def test_call_sites_raise_value_errors(make, fragment):
    assert fragment in wrong_value(make)


def test_numpy_ints_accepted_where_ints_are():
    algo = algorithms.BayesianOptimization(num_initial_data_points=np.int64(3))
    assert algo.num_initial_data_points == 3 and type(algo.num_initial_data_points) is int
    assert algorithms.RandomSearch(max_num_trials=np.int32(2)).max_num_trials == 2


def test_optimize_objective_and_executor():
    study = pt.Study(PARAMS, algorithms.RandomSearch(2), True)
    assert "optimize: objective must be callable, got 'f'" in wrong_type(study.optimize, "f")
    msg = wrong_type(study.optimize, len, executor=object())
    assert "optimize: executor must be None or an object with a submit() method" in msg


def test_scheduler_and_job_arguments(tmp_path):
    from poptune.schedulers import LocalScheduler, SGEScheduler

    assert "output_dir must be a path" in wrong_type(LocalScheduler, output_dir=5)
    assert "SGEScheduler: environment must be a non-empty path or None, got ''" in wrong_value(
        SGEScheduler, environment=""
    )
    scheduler = LocalScheduler(output_dir=tmp_path)
    assert "submit_job: env['A'] must be a str, got 1" in wrong_type(
        scheduler.submit_job, "true", {"A": 1}, "job"
    )
    assert "submit_job: env must be a dict of str to str" in wrong_type(
        scheduler.submit_job, "true", ["A"], "job"
    )
    assert "submit_job: job_name must be a non-empty str without slashes" in wrong_value(
        scheduler.submit_job, "true", {}, "a/b"
    )
    assert "submit_job: command must be a non-empty str" in wrong_value(
        scheduler.submit_job, "  ", {}, "job"
    )


def test_storage_spec_of_a_wrong_type_is_a_type_error():
    assert "unknown storage 3" in wrong_type(pt.Study, PARAMS, algorithms.RandomSearch(), True,
                                             storage=3)  # fmt: skip


def test_lineage_schedule_wrong_type():
    from poptune.lineage import schedule

    msg = wrong_type(schedule, 3, 1)
    assert msg == "poptune.lineage.schedule(): study_or_history must be a Study or a History, got 3"
