import json
import math

import numpy as np
import pytest

import poptune as pt
from poptune import Choice, Continuous, Discrete, InvalidParameterError, Ordinal, Parameter


def rng(seed=0):
    return np.random.default_rng(seed)


# -- construction errors ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda: Continuous("lr", [1e-4, 1e-2], "logarithmic"), "unknown scale 'logarithmic'"),
        (lambda: Continuous("lr", [1.0, 1.0]), "low must be < high"),
        (lambda: Continuous("lr", [2.0, 1.0]), "[2.0, 1.0]"),
        (lambda: Continuous("lr", [0.0, 1.0], "log"), "log scale needs bounds > 0"),
        (lambda: Continuous("lr", [-1.0, 1.0], "log"), "log scale needs bounds > 0"),
        (lambda: Continuous("lr", [0.0, math.inf]), "finite"),
        (lambda: Continuous("lr", [0.0]), "two numbers"),
        (lambda: Continuous("lr", "ab"), "range must be"),
        (lambda: Continuous(3, [0, 1]), "name must be a str, got 3"),
        (lambda: Continuous("", [0, 1]), "non-empty"),
        (lambda: Discrete("n", [1, 1]), "low must be < high"),
        (lambda: Discrete("n", [1.5, 4]), "must be integers"),
        (lambda: Discrete("n", [0, 10], "log"), "log scale"),
        (lambda: Discrete("n", [1, 10], "exp"), "unknown scale 'exp'"),
        (lambda: Choice("act", []), "must not be empty"),
        (lambda: Choice("act", ["relu", "tanh", "relu"]), "duplicate value 'relu'"),
        (lambda: Ordinal("bs", [16, 32, 16]), "duplicate value 16"),
        (lambda: Ordinal("bs", []), "must not be empty"),
        (lambda: Choice(None, ["a"]), "name must be a str"),
        (lambda: Choice("act", "relu"), "range must be a list"),
        (lambda: Choice("act", ["a", "b"], scale="log"), "meaningless"),
    ],
)
def test_bad_definitions_raise_naming_the_value(make, fragment):
    with pytest.raises(InvalidParameterError) as info:
        make()
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError)


def test_bool_is_not_a_number_and_true_is_not_one():
    with pytest.raises(InvalidParameterError):
        Continuous("x", [False, True])
    # 1 and True are different values of a Choice
    c = Choice("c", [1, True])
    assert c.range == [1, True]


# -- sampling ----------------------------------------------------------------------------------
def test_continuous_linear_samples_cover_range_uniformly():
    p = Continuous("x", [-2.0, 3.0])
    g = rng()
    xs = np.array([p.sample(g) for _ in range(20000)])
    assert xs.min() >= -2.0 and xs.max() <= 3.0
    assert abs(xs.mean() - 0.5) < 0.05
    assert all(type(x) is float for x in xs[:10].tolist())


def test_continuous_log_samples_uniform_in_log_space():
    p = Continuous("lr", [1e-4, 1e-2], "log")
    g = rng(1)
    xs = np.array([p.sample(g) for _ in range(20000)])
    assert xs.min() >= 1e-4 and xs.max() <= 1e-2
    logs = np.log10(xs)
    # half the mass below the geometric midpoint 1e-3
    assert abs((logs < -3).mean() - 0.5) < 0.02
    assert abs(logs.mean() + 3) < 0.02


def test_discrete_upper_bound_is_inclusive_and_uniform():
    p = Discrete("n", [1, 4])
    g = rng(2)
    xs = [p.sample(g) for _ in range(8000)]
    counts = np.bincount(xs, minlength=5)[1:]
    assert set(xs) == {1, 2, 3, 4}
    assert all(abs(c / 8000 - 0.25) < 0.03 for c in counts)
    assert all(type(x) is int for x in xs)


def test_discrete_log_scale_reaches_both_ends():
    p = Discrete("n", [1, 1000], "log")
    g = rng(3)
    xs = np.array([p.sample(g) for _ in range(20000)])
    assert xs.min() == 1 and xs.max() == 1000
    assert (xs < 32).mean() > 0.4  # log-uniform: about half below sqrt(1000)


def test_choice_and_ordinal_sample_every_value():
    g = rng(4)
    for cls in (Choice, Ordinal):
        p = cls("v", ["a", "b", None])
        seen = {p.sample(g) for _ in range(300)}
        assert seen == {"a", "b", None}


def test_choice_accepts_unhashable_values():
    p = Choice("layers", [[64], [64, 64], {"a": 1}])
    assert p.contains([64, 64])
    assert not p.contains([32])
    assert p.sample(rng()) in p.range


# -- values, clipping --------------------------------------------------------------------------
def test_validate_value():
    c = Continuous("x", [0, 1])
    assert c.validate_value(0.5) == 0.5
    assert c.validate_value(np.float32(0.25)) == 0.25
    with pytest.raises(InvalidParameterError, match="outside its range"):
        c.validate_value(1.5)
    with pytest.raises(InvalidParameterError, match="finite number"):
        c.validate_value(float("nan"))
    d = Discrete("n", [1, 10])
    assert d.validate_value(np.int64(3)) == 3 and type(d.validate_value(3.0)) is int
    with pytest.raises(InvalidParameterError, match="integer"):
        d.validate_value(2.5)
    o = Ordinal("bs", [16, 32])
    assert o.validate_value(32) == 32
    with pytest.raises(InvalidParameterError, match="not one of"):
        o.validate_value(64)


def test_clip_and_discrete_rounds():
    assert Continuous("x", [0, 1]).clip(3.0) == 1.0
    assert Continuous("x", [0, 1]).clip(-3.0, (0.2, 0.8)) == 0.2
    d = Discrete("n", [1, 10])
    assert d.clip(1.6) == 2 and d.clip(11.2) == 10 and d.clip(-4) == 1


# -- serialization ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "p",
    [
        Continuous("lr", [1e-4, 1e-2], "log"),
        Continuous("m", [0.0, 0.99]),
        Discrete("units", [8, 256]),
        Discrete("n", [1, 1024], "log"),
        Choice("act", ["relu", "tanh", None, 1.5]),
        Ordinal("bs", [16, 32, 64]),
    ],
)
def test_json_round_trip(p):
    d = json.loads(json.dumps(p.to_dict()))
    q = Parameter.from_dict(d)
    assert q == p and type(q) is type(p)
    assert (q.name, q.range, q.scale) == (p.name, p.range, p.scale)


def test_from_dict_sherpa_style_and_errors():
    p = Parameter.from_dict({"name": "lr", "type": "continuous", "range": [0.1, 1], "scale": "log"})
    assert isinstance(p, Continuous) and p.scale == "log"
    assert isinstance(Parameter.from_dict({"name": "a", "type": "Choice", "range": [1, 2]}), Choice)
    with pytest.raises(InvalidParameterError, match="unknown type 'float'"):
        Parameter.from_dict({"name": "lr", "type": "float", "range": [0, 1]})
    with pytest.raises(InvalidParameterError, match=r"missing key\(s\) \['range'\]"):
        Parameter.from_dict({"name": "lr", "type": "continuous"})


def test_to_dict_rejects_values_json_cannot_hold():
    p = Choice("f", [object(), 1])
    with pytest.raises(InvalidParameterError, match="cannot be stored as JSON"):
        p.to_dict()


def test_grid_builds_choices():
    params = Parameter.grid({"a": [1, 2], "b": ["x", "y", "z"]})
    assert [type(p) for p in params] == [Choice, Choice]
    assert [(p.name, p.range) for p in params] == [("a", [1, 2]), ("b", ["x", "y", "z"])]


def test_public_names_are_sherpa_names():
    assert pt.Continuous is Continuous and pt.Parameter.grid is Parameter.grid
    p = pt.Continuous("lr", [0.1, 1])
    assert (p.name, p.range, p.scale) == ("lr", [0.1, 1.0], "linear")


def test_uniform_makers_give_what_each_parameter_samples():
    """RandomSearch maps one uniform draw per parameter through ``uniform_makers``: for every
    kind and scale, the value (and its type) must be what the parameter's own mapping gives,
    at both ends of [0, 1) too, or seeded studies would suggest other trials."""
    from poptune.parameters import uniform_makers

    params = [
        pt.Continuous("a", [1e-5, 0.1], "log"),
        pt.Continuous("b", [-3.0, 7.5]),
        pt.Discrete("c", [1, 1000], "log"),
        pt.Discrete("d", [-5, 17]),
        pt.Choice("e", ["x", "y", 3]),
        pt.Ordinal("f", [1, 2, 4, 8]),
    ]
    makers = uniform_makers(params)
    draws = [*np.random.default_rng(0).random(20_000).tolist(), 0.0, 0.5, 1.0 - 2.0**-53]
    for p, make in zip(params, makers, strict=True):
        got = [make(u) for u in draws]
        want = [p._from_uniform(u) for u in draws]
        assert got == want, p.name
        assert [type(v) for v in got] == [type(v) for v in want], p.name


def test_uniform_makers_keep_a_subclass_mapping():
    """A subclass that maps draws its own way keeps its mapping (and one with its own
    ``sample`` is sampled by it: no makers at all)."""
    from poptune.parameters import uniform_makers

    class Halved(pt.Continuous):
        def _from_uniform(self, u: float) -> float:
            return super()._from_uniform(u) / 2

    class Own(pt.Continuous):
        def sample(self, rng=None):
            return 1.0

    (make,) = uniform_makers([Halved("h", [0.0, 1.0])])
    assert make(0.5) == 0.25
    assert uniform_makers([Own("o", [0.0, 1.0])]) is None
