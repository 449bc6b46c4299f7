import poptune
import poptune.algorithms


def test_public_names_are_pinned():
    assert sorted(poptune.__all__) == [
        "AlgorithmState",
        "ArgumentTypeError",
        "CheckpointError",
        "Choice",
        "Client",
        "ConfigurationError",
        "Continuous",
        "Discrete",
        "DuplicateIterationError",
        "History",
        "InvalidObservationError",
        "InvalidParameterError",
        "InvalidStatusError",
        "MemoryStorage",
        "NoObservationsError",
        "Observation",
        "Ordinal",
        "Parameter",
        "PoptuneError",
        "ReadOnlyStudyError",
        "StoppingRule",
        "Storage",
        "StorageError",
        "Study",
        "StudyCallback",
        "StudyMismatchError",
        "StudyNotFoundError",
        "Trial",
        "TrialFinishedError",
        "TrialStatus",
        "UnknownTrialError",
        "__version__",
        "algorithms",
        "core",
        "database",
        "install_sherpa_alias",
        "load_study",
        "optimize",
        "rng",
        "schedulers",
    ]
    for name in poptune.__all__:
        assert hasattr(poptune, name), name


def test_algorithm_names_are_pinned():
    assert sorted(poptune.algorithms.__all__) == [
        "Algorithm",
        "BayesianOptimization",
        "Chain",
        "GPyOpt",
        "Genetic",
        "GridSearch",
        "Hyperband",
        "Iterate",
        "LocalSearch",
        "MedianStoppingRule",
        "PB2",
        "PopulationBasedTraining",
        "RandomSearch",
        "Repeat",
        "Replay",
        "StoppingRule",
        "SuccessiveHalving",
        "Suggestion",
        "TPE",
        "algorithm_from_config",
        "bayesian_optimization",
        "core",
    ]
    for name in poptune.algorithms.__all__:
        assert hasattr(poptune.algorithms, name), name


def test_every_user_error_is_a_poptune_error_and_a_builtin():
    errors = [getattr(poptune, n) for n in poptune.__all__ if n.endswith("Error")]
    assert poptune.PoptuneError in errors
    for err in errors:
        assert issubclass(err, poptune.PoptuneError)
        if err not in (
            poptune.PoptuneError,
            poptune.StorageError,
            poptune.ReadOnlyStudyError,
            poptune.CheckpointError,
        ):
            assert issubclass(err, (ValueError, KeyError, TypeError)), err


def test_importing_does_not_configure_logging():
    import logging
    import subprocess
    import sys

    code = (
        "import logging, poptune; "
        "print(len(logging.getLogger().handlers), len(logging.getLogger('poptune').handlers))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["0", "0"]  # warnings reach stderr through Python's default
    assert logging.getLogger("poptune").level == logging.NOTSET


def test_py_typed_marker_ships():
    from importlib.resources import files

    assert files("poptune").joinpath("py.typed").is_file()


def test_all_matches_the_real_namespace():
    """Every public, non-module name of ``poptune`` is in ``__all__`` and the reverse (no
    ``poptune.np``, no ``poptune.annotations``); submodules are attributes by Python's rule."""
    import inspect

    for name in poptune.__all__:  # the names imported on first use, all of them now
        getattr(poptune, name)
    namespace = {
        name
        for name, value in vars(poptune).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    exported = {
        name
        for name in poptune.__all__
        if not (name.startswith("__") and name.endswith("__"))
        and not inspect.ismodule(getattr(poptune, name))
    }
    assert namespace == exported
    assert not hasattr(poptune, "np") and not hasattr(poptune, "annotations")


def test_moved_names_stay_where_the_readme_shows_them():
    import poptune.execution.client
    import poptune.execution.jobs
    import poptune.execution.schedulers
    import poptune.schedulers
    import poptune.study
    from poptune import _rng
    from poptune.study import Study, join_study, load_study

    assert poptune.Study is Study and poptune.load_study is load_study
    assert callable(join_study)
    assert poptune.optimize is poptune.execution.jobs.optimize
    assert poptune.Client is poptune.execution.client.Client
    for name in poptune.execution.schedulers.__all__:  # sherpa.schedulers
        assert getattr(poptune.schedulers, name) is getattr(poptune.execution.schedulers, name)
    assert poptune.rng is _rng.rng  # the same object: seeding either seeds both


def test_the_module_level_rng_seeds_studies():
    from poptune import Continuous, algorithms

    params = [Continuous("x", [0.0, 1.0])]

    def first_value():
        study = poptune.Study(params, algorithms.RandomSearch(1), True)
        return study.seed, study.get_suggestion().parameters["x"]

    poptune.rng.seed(7)
    a = first_value()
    poptune.rng.seed(7)
    assert first_value() == a
