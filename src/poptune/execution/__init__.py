"""SHERPA's parallel mode: every trial a job.

* :mod:`~poptune.execution.jobs`: the job runner, :func:`~poptune.execution.jobs.optimize`
  (``poptune.optimize`` / ``sherpa.optimize``); it drives a :class:`~poptune.Study` through
  its public methods only.
* :mod:`~poptune.execution.client`: :class:`~poptune.execution.client.Client`, the reporter
  inside a job (``poptune.Client``).
* :mod:`~poptune.execution.schedulers`: where jobs run (``poptune.schedulers``, SHERPA's
  ``sherpa.schedulers``).

``Study.optimize`` (trials as function calls, in processes or on Dask) is not here: it is a
verb of the Study, in :mod:`poptune.study`.
"""
