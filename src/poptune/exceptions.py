"""Every error a user of poptune can cause.

All of them derive from :class:`PoptuneError`, and each also derives from the built-in
exception a Python user would expect (``ValueError``, ``TypeError``, ``KeyError``), so
``except ValueError`` written for SHERPA keeps working::

    PoptuneError
    ├── InvalidParameterError (ValueError)     a parameter definition or value is not valid
    ├── InvalidObservationError (ValueError)   an objective, iteration or context is not valid
    │   └── DuplicateIterationError            the trial already has that iteration
    ├── InvalidStatusError (ValueError)        a status that is not COMPLETED / FAILED / STOPPED
    ├── UnknownTrialError (KeyError)           no trial with that id in the study
    ├── TrialFinishedError (ValueError)        the trial was already finalized
    ├── NoObservationsError (ValueError)       COMPLETED without any observation
    ├── StudyMismatchError (ValueError)        a saved or shared study differs from this one
    ├── StudyNotFoundError (KeyError)          no study with that name or at that path
    ├── CheckpointError                        a checkpoint is missing, unreadable, a pickle
    │                                          without allow_pickle, or named like a path
    ├── ReadOnlyStudyError                     a study opened with load_study() was asked to change
    ├── TrialsFailingError                     optimize() stopped: too many trials failed in a row
    ├── NoCompletedTrialError (ValueError)     best_params/best_value/... of a study with no result
    ├── ConfigurationError (ValueError)        a Study or algorithm argument is not valid
    │   ├── ArgumentTypeError (TypeError)      ... because it has the wrong type
    │   └── UntrustedModuleError               a stored config names a module not trusted here
    ├── MissingDependencyError (ImportError)   an optional extra (plot, dashboard) is missing
    └── StorageError                           the storage failed (I/O, serialization)
        └── CorruptRowError                    a stored row cannot be read back (names it)

Messages name the bad value and what would have been accepted.
"""

from __future__ import annotations

__all__ = [
    "ArgumentTypeError",
    "CheckpointError",
    "ConfigurationError",
    "CorruptRowError",
    "DuplicateIterationError",
    "InvalidObservationError",
    "InvalidParameterError",
    "InvalidStatusError",
    "MissingDependencyError",
    "NoCompletedTrialError",
    "NoObservationsError",
    "PoptuneError",
    "ReadOnlyStudyError",
    "StorageError",
    "StudyMismatchError",
    "StudyNotFoundError",
    "TrialFinishedError",
    "TrialsFailingError",
    "UnknownTrialError",
    "UntrustedModuleError",
]


class PoptuneError(Exception):
    """Base class of every error raised by poptune on purpose."""


class InvalidParameterError(PoptuneError, ValueError):
    """A parameter definition (name, range, scale) or a parameter value is not valid."""


class InvalidObservationError(PoptuneError, ValueError):
    """An observation's objective, iteration or context is not valid.

    Raised for NaN, infinite or non-numeric objectives, non-integer iterations and context
    values that cannot be stored. Nothing is recorded when it is raised.
    """


class DuplicateIterationError(InvalidObservationError):
    """The trial already has an observation at this iteration."""


class InvalidStatusError(PoptuneError, ValueError):
    """A trial status that is not one of COMPLETED, FAILED or STOPPED was given to finalize."""


class UnknownTrialError(PoptuneError, KeyError):
    """The study has no trial with this id."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0]) if self.args else ""


class TrialFinishedError(PoptuneError, ValueError):
    """The trial was already finalized; it takes no more observations or status changes."""


class NoObservationsError(PoptuneError, ValueError):
    """A trial cannot be finalized as COMPLETED without at least one observation."""


class StudyMismatchError(PoptuneError, ValueError):
    """A saved or shared study does not match the parameters or algorithm asked for."""


class StudyNotFoundError(PoptuneError, KeyError):
    """No study with this name exists in the storage, or no saved study at this path."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class CheckpointError(PoptuneError):
    """A checkpoint a trial must start from is missing or cannot be read (never a silent
    fresh start); a checkpoint that only pickle can read or write and ``allow_pickle`` is not
    set; or a ``load_from``/``save_to`` that is not a plain file name (a path, ``..``)."""


class ReadOnlyStudyError(PoptuneError):
    """The study was opened read-only (:func:`poptune.load_study`) and cannot be changed."""


class TrialsFailingError(PoptuneError):
    """``study.optimize`` stopped because ``max_consecutive_failures`` trials of the call failed
    one after another with no success in between (an objective that cannot work: a typo, an
    import that fails, a missing file). The failed trials stay FAILED; fix the objective and
    run again, or pass ``max_consecutive_failures=None`` to carry on despite failures.

    Attributes:
        trial_id: the first failed trial of the run of failures.
        error: its error, ``"NameError: name 'lr' is not defined"``.
        traceback: the objective's traceback text as recorded in ``trial.meta['traceback']``
            ('' when the trial failed without one, e.g. its worker died).
        failed: the ids of the failed trials, in id order.
    """

    def __init__(
        self, message: str, *, trial_id: int, error: str, traceback: str, failed: list[int]
    ) -> None:
        super().__init__(message)
        self.trial_id = trial_id
        self.error = error
        self.traceback = traceback
        self.failed = list(failed)

    def __reduce__(self) -> tuple[object, ...]:  # keyword-only arguments: pickle by hand
        return _rebuild_failing, (self.args[0], self.trial_id, self.error, self.traceback,
                                  self.failed)  # fmt: skip


def _rebuild_failing(
    message: str, trial_id: int, error: str, traceback: str, failed: list[int]
) -> TrialsFailingError:
    return TrialsFailingError(
        message, trial_id=trial_id, error=error, traceback=traceback, failed=failed
    )


class NoCompletedTrialError(PoptuneError, ValueError):
    """``best_params``, ``best_value``, ``best_trial`` or ``best_checkpoint()`` was asked of a
    study that has no COMPLETED trial with an observation (the message says how many trials
    failed, and the first error)."""


class ConfigurationError(PoptuneError, ValueError):
    """An argument of :class:`~poptune.Study` or of an algorithm is not valid."""


class ArgumentTypeError(ConfigurationError, TypeError):
    """An argument has the wrong type (``lr="0.1"``, ``population_size=4.0``).

    Both a :class:`ConfigurationError` and a ``TypeError``."""


class MissingDependencyError(PoptuneError, ImportError):
    """A package of an optional extra is not installed; the message says what to install
    (``pip install "poptune[plot]"``, ``pip install "poptune[dashboard]"``)."""


class StorageError(PoptuneError):
    """The storage could not complete an operation (I/O error, value that cannot be stored)."""


class UntrustedModuleError(ConfigurationError):
    """A stored configuration (a database, a saved study) names a ``module:Class`` (or a PBT
    hook) whose module this process was not told to trust, so it was not imported (importing
    runs the module's top-level code). The message names the module and how to trust it:
    ``trusted_modules=[...]`` on :class:`~poptune.Study`, :func:`~poptune.study.join_study`,
    :meth:`~poptune.Study.load`, or ``poptune worker --trust-module MODULE``."""


class CorruptRowError(StorageError):
    """A row read from a database cannot be read back: an unknown trial status, a column that
    is not valid JSON or not of the expected shape. The message names the study, the trial
    (where there is one) and the field; the rest of the storage (other studies) stays readable.
    """
