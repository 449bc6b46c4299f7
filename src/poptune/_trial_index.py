"""The indexes a :class:`~poptune.history.History` answers from, in one object.

A History owns one and feeds it the trials a storage says changed. A
:class:`~poptune.storage.MemoryStorage` keeps one per study and updates it at every change, in
the same locked step: a History of that study in the same process *shares* it
(:meth:`~poptune.history.History.sync` then reads nothing), so no changelog is kept or replayed
between the two (``docs/topics/memory-floor.md``).
"""

from __future__ import annotations

from poptune.trial import _COMPLETED, _FINISHED, Trial, TrialStatus

__all__ = ["TrialIndex"]


class TrialIndex:
    """Trials by id, the status each was indexed with, the unfinished ones, the COMPLETED ones
    in the order they finished, and the trials of each ``generation`` parameter.

    ``version`` counts the changes that were indexed, where the owner counts them (a
    MemoryStorage: every change of the study)."""

    __slots__ = ("by_generation", "completed", "indexed", "trials", "unfinished", "version")

    def __init__(self) -> None:
        self.trials: dict[int, Trial] = {}
        self.indexed: dict[int, TrialStatus] = {}
        self.unfinished: dict[int, Trial] = {}
        self.completed: list[Trial] = []
        self.by_generation: dict[int, list[Trial]] = {}
        self.version = 0

    def add(self, trial: Trial) -> None:
        """Take in ``trial``, whose id is not indexed yet (what :meth:`index` does then)."""
        tid = trial.id
        generation = trial.parameters.get("generation")
        if generation is not None:
            self.by_generation.setdefault(generation, []).append(trial)
        self.trials[tid] = trial
        self.indexed[tid] = status = trial.status
        if status in _FINISHED:
            if status is _COMPLETED:
                self.completed.append(trial)
        else:
            self.unfinished[tid] = trial

    def finished(self, trial: Trial) -> None:
        """Take in the final status of ``trial``, indexed (this object) while unfinished
        (what :meth:`index` does then)."""
        tid = trial.id
        self.indexed[tid] = status = trial.status
        self.unfinished.pop(tid, None)
        if status is _COMPLETED:
            self.completed.append(trial)

    def index(self, trial: Trial) -> None:
        """Take in ``trial`` as it is now (new, changed in place, or a fresh copy of one)."""
        tid = trial.id
        previous = self.indexed.get(tid)
        if previous is None:
            generation = trial.parameters.get("generation")
            if generation is not None:
                self.by_generation.setdefault(generation, []).append(trial)
        else:
            old = self.trials[tid]
            if old is not trial:  # a fresh copy from a database storage
                gen = self.by_generation.get(trial.parameters.get("generation"))
                if gen is not None:
                    gen[:] = [trial if t.id == tid else t for t in gen]
                if previous is _COMPLETED:
                    self.completed[:] = [trial if t.id == tid else t for t in self.completed]
        self.trials[tid] = trial
        status = trial.status
        if status is previous:
            if tid in self.unfinished:
                self.unfinished[tid] = trial
            return
        self.indexed[tid] = status
        if status in _FINISHED:
            self.unfinished.pop(tid, None)
            if status is _COMPLETED:
                self.completed.append(trial)
        else:
            self.unfinished[tid] = trial
