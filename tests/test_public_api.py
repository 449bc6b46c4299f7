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
        "StudyMismatchError",
        "StudyNotFoundError",
        "Trial",
        "TrialFinishedError",
        "TrialStatus",
        "UnknownTrialError",
        "__version__",
        "algorithms",
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
        "algorithm_from_config",
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
