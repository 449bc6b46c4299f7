"""A study-lock transaction whose connection was lost is run once more, from the start.

The storage raises a :class:`~poptune.exceptions.StorageError` with ``rolled_back`` set
(``TransactionLost``) when a transaction's connection died before it committed, or the server
reports it aborted (a PostgreSQL backend terminated, a frozen holder's session ended by
``idle_in_transaction_session_timeout``): nothing of it was written. The whole block — sync,
the algorithm's decision, the inserts — then runs again in a new transaction, so the retry
decides on what is in the database now and cannot make a second trial for one suggestion.
Once, and once more if the new connection was ended by the same event (a mass termination,
a restart): ``RETRIES``; a further loss is raised.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from poptune.exceptions import StorageError
from poptune.storage.base import LOST_TRANSACTION_RETRIES as RETRIES
from poptune.study import _suggestion
from poptune.trial import AlgorithmState, Trial

if TYPE_CHECKING:
    from poptune.study.study import Study

__all__ = ["append", "claim_or_suggest", "once"]

logger = logging.getLogger("poptune")
_T = TypeVar("_T")


def once(study: Study, attempt: Callable[[], _T]) -> _T:
    """``attempt()``, run again if its transaction was lost (never inside an open
    ``_writing()`` block: the outermost block is the one to run again)."""
    if study._next_id is not None:
        return attempt()
    for _ in range(RETRIES):
        try:
            return attempt()
        except StorageError as exc:
            if not getattr(exc, "rolled_back", False):
                raise
            logger.warning("poptune: %s; running the transaction again", exc)
    return attempt()


def append(study: Study, make_trial: Callable[[int], _T], worker_id: str | None) -> _T:
    """``Study._append``: lock, sync, take the next id, insert; run again if lost."""

    def attempt() -> _T:
        with study._writing():
            return study._insert(make_trial, worker_id)

    return once(study, attempt)


def claim_or_suggest(study: Study, max_trial_id: int | None) -> Trial | AlgorithmState:
    """A queued trial claimed, or the algorithm's next one inserted (or WAIT / DONE), in one
    transaction holding the study lock; run again if lost."""

    def attempt() -> Trial | AlgorithmState:
        with study._writing():
            trial = study._storage.claim_queued_trial(study._study_id, study.worker_id)
            if trial is not None:
                return trial
            return study._insert(
                lambda number: _suggestion.new_trial(study, number, max_trial_id),
                study.worker_id,
            )

    return once(study, attempt)
