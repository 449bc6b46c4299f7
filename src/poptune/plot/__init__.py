"""Figures of a study, drawn with matplotlib.

Five functions, each taking a :class:`~poptune.Study` (also one opened read-only with
:func:`poptune.load_study`) and returning a :class:`matplotlib.figure.Figure`:

* :func:`lineage`: a Population Based Training study's family tree, the objective and one
  hyperparameter along every founder-to-leaf path (SHERPA's PBT notebook figure);
* :func:`population_lanes`: a PBT study's population, one lane per member over generations,
  coloured by the objective, with an arrow for every exploit (the dashboard's "Population"
  view; it takes a History too);
* :func:`schedule`: the hyperparameter schedule that produced one trial;
* :func:`history`: the objective of each completed trial and the best so far;
* :func:`parallel_coordinates`: every completed trial across the parameters and the objective.

matplotlib is an optional dependency (``pip install "poptune[plot]"``): it is imported when a
function is called, not when this module is imported, and a missing matplotlib raises
:class:`MissingDependencyError`. Only the object-oriented API is used: figures are built with
``matplotlib.figure.Figure``, never registered with ``pyplot``, so nothing pops up and no
global state changes. Save one with ``fig.savefig("lineage.png")``; in a notebook, display it
by leaving it as the cell's last expression.

The objective of a trial is its best observation (respecting ``study.lower_is_better``), the
value of its ``COMPLETED`` row in ``study.results``. Parameter names and values are shown as
plain text: dollar signs are escaped, so ``$x$`` is not read as mathtext.

The figures only read a study (:class:`StudyLike`: its name, parameters, direction and
History) and take lineage from :mod:`poptune.lineage`; they import neither the Study nor an
algorithm. ``_pbt.py`` holds the PBT figures, ``_lanes.py`` the population lanes (laid out
by ``_layout.py``, which has no matplotlib and which the dashboard shares), ``_trials.py``
the figures of any study and ``_common.py`` what they share.
"""

from poptune.exceptions import MissingDependencyError
from poptune.plot._common import StudyLike
from poptune.plot._lanes import population_lanes
from poptune.plot._pbt import lineage, schedule
from poptune.plot._trials import history, parallel_coordinates

__all__ = [
    "MissingDependencyError",
    "StudyLike",
    "history",
    "lineage",
    "parallel_coordinates",
    "population_lanes",
    "schedule",
]
