"""PBT's explore step: resampling inside ``parameter_range`` and value lists that keep their
order (issue 13, item 3), in the explore rule itself, in both modes and in PB2."""

import math

import numpy as np
import pytest

from poptune import Choice, ConfigurationError, Continuous, Discrete, Ordinal, Study, algorithms
from poptune._validation import check_list
from poptune.algorithms.pbt import explore
from poptune.exceptions import ArgumentTypeError

PBT = algorithms.PopulationBasedTraining


def explored_values(study, name):
    """``name``'s value in every exploited segment of a finished run."""
    return [t.parameters[name] for t in study.trials if t.explore]


def drive(study, objective):
    for trial in study:
        study.add_observation(trial, objective(trial.parameters), iteration=trial.generation)
        study.finalize(trial)
    return study


# -- resampling draws within parameter_range ---------------------------------------------------
def test_resampled_continuous_stays_in_parameter_range():
    params = [Continuous("x", [0, 1])]
    rng = np.random.default_rng(0)
    values = []
    for _ in range(200):
        new, record = explore({"x": 0.5}, params, rng, (0.8, 1.2), 1.0, {"x": [0.4, 0.6]})
        values.append(new["x"])
        assert record[0].endswith("(resampled)")
    assert all(0.4 <= v <= 0.6 for v in values)
    # uniform over the range, not stuck at a bound
    assert min(values) < 0.42 and max(values) > 0.58
    assert abs(np.mean(values) - 0.5) < 0.02


def test_resampled_log_scale_is_log_uniform_in_parameter_range():
    params = [Continuous("lr", [1e-6, 1.0], "log")]
    rng = np.random.default_rng(1)
    values = [
        explore({"lr": 1e-3}, params, rng, (0.8, 1.2), 1.0, {"lr": [1e-4, 1e-2]})[0]["lr"]
        for _ in range(400)
    ]
    assert all(1e-4 <= v <= 1e-2 for v in values)
    logs = np.log10(values)
    assert abs(np.mean(logs) + 3) < 0.1  # log-uniform: mean of log10 is -3
    assert np.mean(np.array(values) < 1e-3) == pytest.approx(0.5, abs=0.08)


@pytest.mark.parametrize("scale, bounds", [("linear", [10, 20]), ("log", [10, 20])])
def test_resampled_discrete_stays_in_parameter_range(scale, bounds):
    params = [Discrete("n", [1, 1000], scale)]
    rng = np.random.default_rng(2)
    values = [
        explore({"n": 15}, params, rng, (0.8, 1.2), 1.0, {"n": bounds})[0]["n"] for _ in range(300)
    ]
    assert all(type(v) is int and 10 <= v <= 20 for v in values)
    assert set(values) == set(range(10, 21))  # both ends reachable


def test_resampled_discrete_with_fractional_parameter_range_bounds():
    params = [Discrete("n", [0, 100])]
    rng = np.random.default_rng(3)
    values = {
        explore({"n": 5}, params, rng, (0.8,), 1.0, {"n": [2.5, 6.5]})[0]["n"] for _ in range(200)
    }
    assert values == {3, 4, 5, 6}


@pytest.mark.parametrize("kind", [Choice, Ordinal])
def test_resampled_categorical_draws_from_the_allowed_list(kind):
    params = [kind("c", ["a", "b", "c", "d", "e"])]
    rng = np.random.default_rng(4)
    values = [
        explore({"c": "b"}, params, rng, (0.8, 1.2), 1.0, {"c": ["b", "d"]})[0]["c"]
        for _ in range(100)
    ]
    assert set(values) == {"b", "d"}


def test_resampling_without_parameter_range_draws_from_the_prior():
    params = [Continuous("x", [0, 1])]
    rng = np.random.default_rng(5)
    values = [explore({"x": 0.5}, params, rng, (0.8,), 1.0)[0]["x"] for _ in range(200)]
    assert min(values) < 0.1 and max(values) > 0.9


def _pbt_space():
    return [
        Continuous("x", [0, 1]),
        Continuous("lr", [1e-6, 1.0], "log"),
        Discrete("n", [1, 100]),
        Ordinal("width", [8, 16, 32, 64, 128]),
        Choice("act", ["relu", "tanh", "gelu", "silu"]),
    ]


_RANGE = {
    "x": [0.4, 0.6],
    "lr": [1e-4, 1e-2],
    "n": [10, 20],
    "width": [16, 32, 64],
    "act": ["tanh", "gelu"],
}


def _inside(config):
    return (
        0.4 <= config["x"] <= 0.6
        and 1e-4 <= config["lr"] <= 1e-2
        and 10 <= config["n"] <= 20
        and config["width"] in (16, 32, 64)
        and config["act"] in ("tanh", "gelu")
    )


def _objective(p):
    return (p["x"] - 0.5) ** 2 + abs(math.log10(p["lr"]) + 3)


@pytest.mark.parametrize("synchronous", [True, False])
def test_pbt_resamples_inside_parameter_range_in_both_modes(synchronous):
    algorithm = PBT(
        8, 6, _RANGE, resample_probability=1.0, synchronous=synchronous, quantile_fraction=0.5
    )
    study = drive(Study(_pbt_space(), algorithm, lower_is_better=True, seed=3), _objective)
    explored = [t for t in study.trials if t.explore]
    assert len(explored) >= 10
    assert all(_inside(t.parameters) for t in explored), [t.parameters for t in explored]


@pytest.mark.parametrize("synchronous", [True, False])
def test_pb2_resamples_inside_parameter_range(synchronous):
    pytest.importorskip("sklearn")
    algorithm = algorithms.PB2(
        6, 4, _RANGE, resample_probability=1.0, synchronous=synchronous, quantile_fraction=0.5
    )
    study = drive(Study(_pbt_space(), algorithm, lower_is_better=True, seed=4), _objective)
    explored = [t for t in study.trials if t.explore]
    assert len(explored) >= 4
    # PB2's categorical path (and its first exploit, PBT's rules) stay inside, as does the GP
    assert all(_inside(t.parameters) for t in explored), [t.parameters for t in explored]
    assert any("(ucb)" in t.explore for t in explored)


# -- value lists keep their order: lists and tuples only ---------------------------------------
@pytest.mark.parametrize(
    "value", [{16, 32, 64}, frozenset({16, 32}), {16: 1, 32: 2}, "abc", (v for v in [16, 32])]
)
def test_parameter_range_refuses_unordered_value_lists(value):
    with pytest.raises(ArgumentTypeError, match=r"parameter_range\['width'\] must be a list or "):
        PBT(2, 4, {"width": value})


def test_a_set_is_refused_with_a_message_naming_it():
    with pytest.raises(TypeError) as info:
        PBT(2, 4, {"width": {16, 32, 64}})
    message = str(info.value)
    assert message.startswith("PopulationBasedTraining: parameter_range['width'] must be")
    assert "got {16, 32, 64}" in message and "a set has no order" in message
    with pytest.raises(TypeError, match=r"PB2: parameter_range\['lr'\]"):
        algorithms.PB2(2, 4, {"lr": {1e-4, 1e-2}})


def test_parameter_range_lists_and_tuples_keep_their_order():
    algorithm = PBT(2, 4, {"width": (64, 16, 32), "x": [0.1, 0.2]})
    assert algorithm.parameter_range == {"width": [64, 16, 32], "x": [0.1, 0.2]}
    # Ordinal steps follow the list's order: one step up from 16 is 32, down from 16 is 64
    params = [Ordinal("width", [8, 16, 32, 64])]
    rng = np.random.default_rng(0)
    allowed = algorithm.parameter_range
    assert explore({"width": 16}, params, rng, (1.2,), 0.0, allowed)[0]["width"] == 32
    assert explore({"width": 16}, params, rng, (0.8,), 0.0, allowed)[0]["width"] == 64


def test_check_list():
    assert check_list("O", "v", (1, 2)) == [1, 2]
    assert check_list("O", "v", [3]) == [3]
    with pytest.raises(ArgumentTypeError, match=r"^O: v must be a list or tuple, got \{1\}"):
        check_list("O", "v", {1})
    with pytest.raises(ConfigurationError, match=r"^O: v must be values, got 'ab'$"):
        check_list("O", "v", "ab", "values")
