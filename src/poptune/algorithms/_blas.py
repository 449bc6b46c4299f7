"""One BLAS thread for the small linear algebra of model-based suggestions (BO, PB2)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

_CONTROLLER: Any = None
_CONTROLLER_LOCK = threading.Lock()


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """Run the block's linear algebra on one BLAS thread.

    The matrices of a suggestion are at most a few hundred wide, where threads gain nothing
    and, on a busy machine, OpenBLAS's spinning threads made a suggestion (a 128 x 128
    Cholesky) several times slower. The lock keeps two threads of one process from
    restoring each other's limits. A no-op without threadpoolctl (it comes with scikit-learn).
    """
    global _CONTROLLER
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        yield
        return
    with _CONTROLLER_LOCK:
        if _CONTROLLER is None:
            _CONTROLLER = ThreadpoolController()
        with _CONTROLLER.limit(limits=1, user_api="blas"):
            yield
