"""SHERPA's ``sherpa.core``: the study, trial and parameter names SHERPA defined there, for
scripts that import them from this path (``from sherpa.core import Study``). The same objects
as the top-level names of :mod:`poptune`."""

from poptune._rng import rng
from poptune.execution.jobs import optimize
from poptune.parameters import Choice, Continuous, Discrete, Ordinal, Parameter
from poptune.study import Study
from poptune.trial import AlgorithmState, Trial, TrialStatus

__all__ = [
    "AlgorithmState",
    "Choice",
    "Continuous",
    "Discrete",
    "Ordinal",
    "Parameter",
    "Study",
    "Trial",
    "TrialStatus",
    "optimize",
    "rng",
]
