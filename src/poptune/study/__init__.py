"""The Study (``from poptune.study import Study``) and the functions that open a stored one.

``study.py`` is the face; the other modules of this package carry the bodies of its larger
verbs and are the only code that uses its private members (the *driver seam* written in
:class:`Study`'s docstring).
"""

from poptune.study._devices import worker_environment
from poptune.study._stored import join_study, load_study, run_worker
from poptune.study.callbacks import StudyCallback
from poptune.study.study import Study

__all__ = ["Study", "StudyCallback", "join_study", "load_study", "run_worker", "worker_environment"]
