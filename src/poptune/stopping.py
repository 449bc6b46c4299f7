"""Stopping rules: decide whether a running trial should stop early."""

from __future__ import annotations

from typing import Any

from poptune.history import History
from poptune.trial import Trial

__all__ = ["StoppingRule"]


class StoppingRule:
    """Base class of early-stopping rules.

    :meth:`~poptune.Study.should_trial_stop` calls :meth:`should_trial_stop` with the trial
    and a freshly synced :class:`~poptune.history.History`. A rule must derive its answer from
    the history alone (no counters in ``self``), so every worker gives the same answer.
    """

    def should_trial_stop(self, trial: Trial, history: History) -> bool:
        """True if ``trial`` should be stopped now."""
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        """Constructor keyword arguments, JSON-serializable."""
        return {}

    def to_config(self) -> dict[str, Any]:
        cls = type(self)
        return {"type": f"{cls.__module__}:{cls.__qualname__}", **self.get_config()}
