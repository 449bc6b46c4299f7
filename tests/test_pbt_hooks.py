"""PBT's extension points (issue 13, item 2): ``explore_fn``, ``hyperparameters`` and
``resample_distributions``, in both modes and PB2, their checks, and how they are stored
(config round trips, the trust rule, a shared study rebuilt in a second process)."""

import importlib
import json
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import poptune as pt
from poptune import Choice, ConfigurationError, Continuous, Discrete, Study, algorithms
from poptune.algorithms.base import algorithm_from_config
from poptune.algorithms.pbt import pbt_hook
from poptune.algorithms.pbt.hooks import UnstoredCallable
from poptune.exceptions import ArgumentTypeError, StorageError

from .helpers import fingerprint

PBT = algorithms.PopulationBasedTraining
SPACE = [
    Continuous("lr", [1e-6, 1.0], "log"),
    Discrete("batch", [8, 256]),
    Discrete("micro", [8, 64]),
    Choice("opt", ["sgd", "adam", "rmsprop"]),
]
NAMES = [p.name for p in SPACE]
CALLS = []


@pbt_hook
def batch_at_least_micro(config, donor):
    """The constraint of the issue: batch >= micro (raise batch)."""
    CALLS.append((dict(config), dict(donor)))
    return {**config, "batch": max(config["batch"], config["micro"])}


@pbt_hook
def draw_small_lr(rng):
    return float(10 ** rng.uniform(-4, -3))


def unmarked(config, donor):
    return config


def objective(p, generation):
    return -abs(math.log10(p["lr"]) + 3) - abs(p["batch"] - 64) / 64 + 0.01 * generation


def segment_objective(trial):
    return objective(trial.parameters, trial.generation)


def drive(study):
    for trial in study:
        study.add_observation(
            trial, objective(trial.parameters, trial.generation), iteration=trial.generation
        )
        study.finalize(trial)
    return study


def explored(study):
    """The exploited segments, in id order."""
    return [t for t in study.trials if "replaced" in t.meta]


def hyper(trial):
    return {name: trial.parameters[name] for name in NAMES}


# founders whose batch is below micro: explore proposes violations the hook must fix
FOUNDERS = [{"batch": 16, "micro": 32}] * 6


def _make(kind, synchronous, **kw):
    if kind == "PB2":
        pytest.importorskip("sklearn")
        return algorithms.PB2(6, 6, synchronous=synchronous, quantile_fraction=0.5, **kw)
    return PBT(6, 6, synchronous=synchronous, quantile_fraction=0.5, **kw)


MODES = [("PBT", True), ("PBT", False), ("PB2", True), ("PB2", False)]


# -- explore_fn ----------------------------------------------------------------------------
@pytest.mark.parametrize("kind, synchronous", MODES)
def test_explore_fn_is_called_once_per_explore_and_its_answer_used(kind, synchronous):
    CALLS.clear()
    algorithm = _make(
        kind, synchronous, explore_fn=batch_at_least_micro, initial_population=FOUNDERS
    )
    study = drive(Study(SPACE, algorithm, lower_is_better=False, seed=2))
    segments = explored(study)
    assert len(segments) >= 6 and len(CALLS) == len(segments)
    by_id = {t.id: t for t in study.trials}
    fixed = 0
    for trial, (proposed, donor) in zip(segments, CALLS, strict=True):
        assert donor == hyper(by_id[trial.parent])  # the donor's configuration
        assert set(proposed) == set(NAMES)
        assert hyper(trial) == {**proposed, "batch": max(proposed["batch"], proposed["micro"])}
        assert trial.parameters["batch"] >= trial.parameters["micro"]
        if proposed["batch"] < proposed["micro"]:
            fixed += 1
            assert f"batch: {proposed['batch']} -> {trial.parameters['batch']} (explore_fn)" in (
                trial.explore
            )
    assert fixed >= 1  # the hook really had something to fix


def test_without_the_hook_the_constraint_is_broken():
    study = drive(
        Study(
            SPACE,
            PBT(6, 6, quantile_fraction=0.5, initial_population=FOUNDERS),
            lower_is_better=False,
            seed=2,
        )
    )
    assert any(t.parameters["batch"] < t.parameters["micro"] for t in explored(study))


def test_explore_fn_gets_copies():
    def vandal(config, donor):
        donor["lr"] = 123.0  # must not reach the donor trial
        config["opt"] = "adam"
        return config

    study = drive(Study(SPACE, PBT(3, 4, explore_fn=vandal), lower_is_better=False, seed=0))
    assert all(t.parameters["lr"] <= 1.0 for t in study.trials)
    assert all(t.parameters["opt"] == "adam" for t in explored(study))


def test_explore_fn_values_are_made_canonical():
    def numpy_values(config, donor):
        return {**config, "lr": np.float64(0.01), "batch": np.int64(32)}

    study = drive(Study(SPACE, PBT(3, 4, explore_fn=numpy_values), lower_is_better=False, seed=0))
    for t in explored(study):
        assert type(t.parameters["lr"]) is float and type(t.parameters["batch"]) is int


@pytest.mark.parametrize(
    "answer, fragment",
    [
        (lambda c: None, r"must return a dict \{parameter: value\}, got None"),
        (lambda c: {**c, "momentum": 0.9}, "returned 'momentum', which is not a parameter"),
        (lambda c: {k: v for k, v in c.items() if k != "micro"}, "left out parameter 'micro'"),
        (
            lambda c: {**c, "batch": 1000},
            r"returned batch=1000, which is not a value of the "
            r"parameter: .*outside its range",
        ),
        (lambda c: {**c, "opt": "adamw"}, r"returned opt='adamw', which is not a value"),
    ],
)
@pytest.mark.parametrize("synchronous", [True, False])
def test_a_bad_explore_fn_answer_is_a_configuration_error(answer, fragment, synchronous):
    algorithm = PBT(3, 4, synchronous=synchronous, explore_fn=lambda c, d: answer(c))
    prefix = r"^PopulationBasedTraining: explore_fn tests.test_pbt_hooks:.*<lambda> "
    with pytest.raises(ConfigurationError, match=prefix + fragment):
        drive(Study(SPACE, algorithm, lower_is_better=False, seed=0))


def test_explore_fn_may_answer_what_explore_may_reach():
    """A parameter_range wider than the parameter's range: the hook may pass on what PBT
    proposed there (a number inside parameter_range), and no more."""
    wide = {"lr": [1e-6, 1e-1], "batch": [4, 300]}
    space = [Continuous("lr", [1e-4, 1e-2], "log"), Discrete("batch", [8, 256])]
    study = Study(
        space,
        PBT(6, 4, wide, explore_fn=lambda c, d: c, perturbation_factors=(3,)),
        lower_is_better=False,
        seed=0,
    )
    for trial in study:  # the best lr is the largest: explore leaves the parameter's range
        study.add_observation(trial, trial.parameters["lr"], iteration=trial.generation)
        study.finalize(trial)
    assert any(t.parameters["lr"] > 1e-2 for t in explored(study))
    too_far = PBT(3, 4, wide, explore_fn=lambda c, d: {**c, "batch": 301})
    with pytest.raises(ConfigurationError, match="returned batch=301, which is not a value"):
        drive(Study(SPACE, too_far, lower_is_better=False, seed=0))
    fractional = PBT(3, 4, wide, explore_fn=lambda c, d: {**c, "batch": 4.5})
    with pytest.raises(ConfigurationError, match="returned batch=4.5, which is not a value"):
        drive(Study(SPACE, fractional, lower_is_better=False, seed=0))
    inside = PBT(3, 4, wide, explore_fn=lambda c, d: {**c, "batch": 4.0})
    assert all(
        type(t.parameters["batch"]) is int
        for t in drive(Study(SPACE, inside, lower_is_better=False, seed=0)).trials
    )


def test_explore_fn_must_be_callable():
    with pytest.raises(ArgumentTypeError, match="explore_fn must be callable, got 3"):
        PBT(3, 4, explore_fn=3)
    with pytest.raises(ConfigurationError, match="explore_fn must be a callable or 'module:"):
        PBT(3, 4, explore_fn="no_colon")


# -- hyperparameters -----------------------------------------------------------------------
@pytest.mark.parametrize("kind, synchronous", MODES)
def test_hyperparameters_limits_what_explore_changes(kind, synchronous):
    algorithm = _make(kind, synchronous, hyperparameters=["lr", "opt"], resample_probability=0.3)
    study = drive(Study(SPACE, algorithm, lower_is_better=False, seed=4))
    by_id = {t.id: t for t in study.trials}
    segments = explored(study)
    assert len(segments) >= 6
    changed = set()
    for trial in segments:
        donor = by_id[trial.parent]
        assert trial.parameters["batch"] == donor.parameters["batch"]
        assert trial.parameters["micro"] == donor.parameters["micro"]
        assert "batch" not in trial.explore and "micro" not in trial.explore
        changed |= {n for n in ("lr", "opt") if trial.parameters[n] != donor.parameters[n]}
    assert changed == {"lr", "opt"}


def test_hyperparameters_also_bind_an_overridden_explore():
    class RedrawEverything(PBT):
        def explore(self, history, donor, generation, rng, running):
            return {p.name: p.sample(rng) for p in history.parameters}, ["redrawn"]

    study = drive(Study(SPACE, RedrawEverything(4, 4, hyperparameters=("lr",)), False, seed=1))
    by_id = {t.id: t for t in study.trials}
    for trial in explored(study):
        donor = by_id[trial.parent]
        assert all(trial.parameters[n] == donor.parameters[n] for n in ("batch", "micro", "opt"))


def test_pb2_models_only_the_explored_numbers():
    pytest.importorskip("sklearn")
    study = drive(Study(SPACE, algorithms.PB2(6, 4, hyperparameters=["lr"]), False, seed=3))
    segments = explored(study)
    assert any("(ucb)" in t.explore for t in segments)
    assert all(t.explore.startswith("lr: ") and ";" not in t.explore for t in segments)


@pytest.mark.parametrize(
    "value, error, fragment",
    [
        ("lr", ArgumentTypeError, "hyperparameters must be a list or tuple of parameter names"),
        ({"lr"}, ArgumentTypeError, "a set has no order"),
        ([], ConfigurationError, "must be a non-empty list of distinct parameter names"),
        (["lr", "lr"], ConfigurationError, "distinct parameter names, got \\['lr', 'lr'\\]"),
        (["lr", 3], ArgumentTypeError, r"hyperparameters\[1\] must be a str, got 3"),
    ],
)
def test_bad_hyperparameters(value, error, fragment):
    with pytest.raises(error, match=fragment):
        PBT(3, 4, hyperparameters=value)


def test_hyperparameters_checked_against_the_study():
    with pytest.raises(ConfigurationError, match="hyperparameters names 'momentum', which is not"):
        Study(SPACE, PBT(3, 4, hyperparameters=["lr", "momentum"]), lower_is_better=False)


# -- resample_distributions ----------------------------------------------------------------
@pytest.mark.parametrize("kind, synchronous", MODES)
def test_resample_distribution_replaces_the_prior(kind, synchronous):
    distributions = {
        "lr": Continuous("lr", [1e-4, 1e-3], "log"),
        "micro": Discrete("micro", [16, 24]),
        "opt": Choice("opt", ["adam", "rmsprop"]),
    }
    algorithm = _make(
        kind,
        synchronous,
        resample_probability=1.0,
        resample_distributions=distributions,
        hyperparameters=["lr", "micro", "opt"],
    )
    study = drive(Study(SPACE, algorithm, lower_is_better=False, seed=5))
    segments = explored(study)
    assert len(segments) >= 6
    by_rules = [t for t in segments if "(ucb)" not in t.explore]  # PB2's GP picks numbers
    for t in segments:
        assert t.parameters["opt"] in ("adam", "rmsprop")
    for t in by_rules:
        assert 1e-4 <= t.parameters["lr"] <= 1e-3 and 16 <= t.parameters["micro"] <= 24
    if kind == "PB2":
        assert any("(ucb)" in t.explore for t in segments)
        # synchronously, the first plan has no data yet: PBT's rules, with the distributions
        assert len(by_rules) >= synchronous
    else:
        assert by_rules == segments


def test_a_callable_resample_distribution_draws_from_the_rng():
    algorithm = PBT(5, 6, resample_probability=1.0, resample_distributions={"lr": draw_small_lr})
    a = drive(Study(SPACE, algorithm, lower_is_better=False, seed=8))
    b = drive(Study(SPACE, PBT(**algorithm.get_config()), lower_is_better=False, seed=8))
    assert fingerprint(a) == fingerprint(b)  # reproducible: the suggestion's rng
    assert all(1e-4 <= t.parameters["lr"] <= 1e-3 for t in explored(a))


def test_a_distribution_gives_the_parameter_s_own_values():
    space = [Choice("w", [1, 2, 4])]
    algorithm = PBT(4, 4, resample_distributions={"w": Choice("w", [2.0, 4.0])})
    study = Study(space, algorithm, lower_is_better=False, seed=0)
    for trial in study:
        study.add_observation(trial, trial.parameters["w"], iteration=trial.generation)
        study.finalize(trial)
    values = [t.parameters["w"] for t in explored(study)]
    assert values and all(type(v) is int and v in (2, 4) for v in values)


def test_a_choice_perturbation_draws_from_its_distribution():
    algorithm = PBT(5, 6, resample_distributions={"opt": Choice("opt", ["rmsprop"])})
    study = drive(Study(SPACE, algorithm, lower_is_better=False, seed=1))
    assert all(t.parameters["opt"] == "rmsprop" for t in explored(study))


@pytest.mark.parametrize(
    "draw, fragment",
    [
        (
            lambda rng: 5.0,
            r"resample_distributions\['lr'\] \(.*\) returned 5.0, which is not a "
            r"value of parameter 'lr'",
        ),
        (lambda rng: 0.5, r"returned 0.5, outside parameter_range\['lr'\] = \[0.0001, 0.01\]"),
        (lambda rng: "x", r"returned 'x', which is not a value"),
    ],
)
def test_a_bad_callable_draw_is_a_configuration_error(draw, fragment):
    algorithm = PBT(
        3, 4, {"lr": [1e-4, 1e-2]}, resample_probability=1.0, resample_distributions={"lr": draw}
    )
    with pytest.raises(ConfigurationError, match=fragment):
        drive(Study(SPACE, algorithm, lower_is_better=False, seed=0))


@pytest.mark.parametrize(
    "distributions, parameter_range, fragment",
    [
        ({"momentum": Continuous("momentum", [0, 1])}, None, "'momentum', which is not a param"),
        ({"lr": Discrete("lr", [1, 2])}, None, r"must be a Continuous inside \[1e-06, 1\]"),
        ({"lr": Continuous("lr", [1e-3, 2.0])}, None, r"a Continuous inside \[1e-06, 1\]"),
        ({"lr": Continuous("lr", [1e-5, 1e-3])}, {"lr": [1e-4, 1e-2]}, r"inside \[0.0001, 0.01"),
        ({"opt": Choice("opt", ["sgd", "adamw"])}, None, "whose values are among"),
        ({"opt": Choice("opt", ["sgd"])}, {"opt": ["adam"]}, r"among \['adam'\]"),
        ({"batch": Discrete("batch", [8, 16])}, None, "'batch', which explore does not change"),
    ],
)
def test_resample_distributions_checked_against_the_study(distributions, parameter_range, fragment):
    algorithm = PBT(
        3, 4, parameter_range, resample_distributions=distributions, hyperparameters=["lr", "opt"]
    )
    with pytest.raises(ConfigurationError, match=fragment):
        Study(SPACE, algorithm, lower_is_better=False)


@pytest.mark.parametrize(
    "value, fragment",
    [
        ([Continuous("lr", [0.1, 0.2])], "resample_distributions must be a dict"),
        ({"lr": 3}, r"resample_distributions\['lr'\] must be a Parameter or a callable"),
        ({"lr": Continuous("x", [0.1, 0.2])}, r"must be a parameter named 'lr'"),
        ({"lr": {"name": "lr", "type": "nope", "range": [1]}}, "must be a parameter's to_dict"),
    ],
)
def test_bad_resample_distributions(value, fragment):
    with pytest.raises(ConfigurationError, match=fragment):
        PBT(3, 4, resample_distributions=value)


# -- stored configs ------------------------------------------------------------------------
def _all_arguments(kind):
    kw = {
        "hyperparameters": ["lr", "batch", "opt"],
        "explore_fn": batch_at_least_micro,
        "resample_distributions": {
            "lr": draw_small_lr,
            "batch": Discrete("batch", [16, 128], "log"),
            "opt": Choice("opt", ["adam", "sgd"]),
        },
    }
    if kind == "PB2":
        pytest.importorskip("sklearn")
        return algorithms.PB2(4, 4, synchronous=False, **kw)
    return PBT(4, 4, synchronous=kind == "PBT", **kw)


@pytest.mark.parametrize("kind", ["PBT", "async PBT", "PB2"])
def test_config_round_trip_of_every_new_argument(kind):
    algorithm = _all_arguments(kind)
    config = algorithm.to_config()
    here = __name__
    assert config["hyperparameters"] == ["lr", "batch", "opt"]
    assert config["explore_fn"] == f"{here}:batch_at_least_micro"
    assert config["resample_distributions"] == {
        "lr": f"{here}:draw_small_lr",
        "batch": {"name": "batch", "type": "discrete", "range": [16, 128], "scale": "log"},
        "opt": {"name": "opt", "type": "choice", "range": ["adam", "sgd"], "scale": "linear"},
    }
    text = json.dumps(config)  # JSON all the way down
    again = algorithm_from_config(json.loads(text))
    assert type(again) is type(algorithm) and again.to_config() == config
    assert again.explore_fn is batch_at_least_micro
    assert again.resample_distributions["lr"] is draw_small_lr
    assert again.resample_distributions["batch"] == Discrete("batch", [16, 128], "log")
    # the rebuilt algorithm runs the same study
    a = drive(Study(SPACE, algorithm, False, seed=6))
    b = drive(Study(SPACE, again, False, seed=6))
    assert fingerprint(a) == fingerprint(b)


def test_defaults_are_stored_as_none():
    config = PBT(3, 4).to_config()
    assert config["hyperparameters"] is None
    assert config["explore_fn"] is None and config["resample_distributions"] is None


@pytest.mark.parametrize(
    "function, reason",
    [
        (lambda c, d: c, "a lambda or a function defined inside another one"),
        (unmarked, "it is not marked with @poptune.algorithms.pbt.pbt_hook"),
    ],
)
def test_an_unstorable_callable_works_in_memory_and_is_refused_as_json(function, reason, tmp_path):
    algorithm = PBT(3, 4, explore_fn=function, resample_distributions={"lr": lambda rng: 1e-3})
    config = algorithm.to_config()
    assert isinstance(config["explore_fn"], UnstoredCallable)
    assert reason in repr(config["explore_fn"])
    # in memory: the study runs, and the config rebuilds in this process
    again = algorithm_from_config(config)
    assert again.explore_fn is function and again.to_config() == config
    study = drive(Study(SPACE, algorithm, False, seed=0))
    # shared or saved: refused, naming the argument and what to do
    with pytest.raises(StorageError, match="UnstoredCallable") as info:
        Study(
            SPACE,
            PBT(3, 4, explore_fn=function),
            False,
            storage=f"sqlite:///{tmp_path / 'x.db'}",
            study_name="x",
        )
    assert "explore_fn=" in str(info.value) and reason in str(info.value)
    assert "pbt_hook" in str(info.value)
    with pytest.raises(StorageError, match="cannot save study"):
        study.save(tmp_path / "saved")
    fresh = Study(SPACE, PBT(3, 4, explore_fn=function), False)
    with pytest.raises(StorageError, match="UnstoredCallable"):  # worker processes: refused
        fresh.optimize(segment_objective, n_workers=2, show_progress=False)
    assert fresh.trials == []


@pytest.mark.parametrize(
    "stored, fragment",
    [
        (
            "os:system",
            "'os:system' is not marked with @poptune.algorithms.pbt.pbt_hook: "
            "refusing to call it from a stored configuration",
        ),
        (f"{__name__}:unmarked", "is not marked with @poptune.algorithms.pbt.pbt_hook"),
        ("json:JSONDecoder", "is not marked"),
        # a module neither imported nor trusted is refused before any import
        ("no_such_module_xyz:f", "'no_such_module_xyz', which this process does not trust"),
        (f"{__name__}:nothing_here", "cannot import"),
    ],
)
def test_a_stored_name_must_lead_to_a_marked_function(stored, fragment):
    config = {**PBT(3, 4).to_config(), "explore_fn": stored}
    with pytest.raises(ConfigurationError, match=fragment):
        algorithm_from_config(config)
    bad = {**PBT(3, 4).to_config(), "resample_distributions": {"lr": stored}}
    with pytest.raises(ConfigurationError, match=r"resample_distributions\['lr'\]"):
        algorithm_from_config(bad)


def test_pbt_hook_marks_functions_only():
    with pytest.raises(ArgumentTypeError, match="pbt_hook: the decorated object must be"):
        pbt_hook(3)
    with pytest.raises(ArgumentTypeError, match="a Python function"):
        pbt_hook(len)
    assert pbt_hook(unmarked) is unmarked
    try:
        assert PBT(3, 4, explore_fn=unmarked).to_config()["explore_fn"] == f"{__name__}:unmarked"
    finally:
        del unmarked.__poptune_pbt_hook__


HOOKS = """
from poptune.algorithms.pbt import pbt_hook


@pbt_hook
def constrain(config, donor):
    return {**config, "batch": max(config["batch"], config["micro"])}


@pbt_hook
def draw_lr(rng):
    return float(10 ** rng.uniform(-4, -2))
"""


@pytest.mark.parametrize("kind", ["PBT", "async PBT", "PB2"])
def test_a_shared_study_is_rebuilt_in_a_second_process(kind, db_url, tmp_path, monkeypatch):
    """Half the run here, the rest in a process that rebuilds the algorithm from the
    database with join_study: the same trials as one run in memory."""
    if kind == "PB2":
        pytest.importorskip("sklearn")
    (tmp_path / "pbt_shared_hooks.py").write_text(HOOKS)
    monkeypatch.syspath_prepend(str(tmp_path))
    hooks = importlib.import_module("pbt_shared_hooks")
    kw = {
        "hyperparameters": ["lr", "batch", "opt"],
        "explore_fn": hooks.constrain,
        "resample_distributions": {"lr": hooks.draw_lr, "opt": Choice("opt", ["adam", "sgd"])},
        "resample_probability": 0.5,
        "initial_population": FOUNDERS[:4],
    }

    def make():
        if kind == "PB2":
            return algorithms.PB2(4, 4, **kw)
        return PBT(4, 4, synchronous=kind == "PBT", **kw)

    reference = drive(Study(SPACE, make(), False, seed=9))
    study = Study(SPACE, make(), False, seed=9, storage=db_url, study_name="hooks")
    for n, trial in enumerate(study, 1):
        study.add_observation(
            trial, objective(trial.parameters, trial.generation), iteration=trial.generation
        )
        study.finalize(trial)
        if n == 6:
            break
    script = tmp_path / "rest.py"
    script.write_text(
        textwrap.dedent(f"""
        import math
        from poptune.study import join_study
        study = join_study({db_url!r}, "hooks", trusted_modules=["pbt_shared_hooks"])
        assert study.algorithm.explore_fn.__module__ == "pbt_shared_hooks"
        for trial in study:
            p, g = trial.parameters, trial.generation
            value = -abs(math.log10(p["lr"]) + 3) - abs(p["batch"] - 64) / 64 + 0.01 * g
            study.add_observation(trial, value, iteration=trial.generation)
            study.finalize(trial)
    """)
    )
    subprocess.run([sys.executable, str(script)], check=True, timeout=180, cwd=tmp_path)
    stored = pt.load_study(db_url, "hooks")
    assert stored.algorithm.to_config()["explore_fn"] == "pbt_shared_hooks:constrain"
    assert len(stored.trials) == 16 and len(stored.trials) > 6
    assert fingerprint(stored) == fingerprint(reference)
    assert all(t.parameters["batch"] >= t.parameters["micro"] for t in explored(stored))
