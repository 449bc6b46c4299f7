"""SHERPA's ``sherpa.schedulers``: the job schedulers of :mod:`poptune.execution.schedulers`."""

from poptune.execution.schedulers import *  # noqa: F403
from poptune.execution.schedulers import __all__ as __all__
