"""MLflow: every trial an MLflow run, nested under one parent run per study.

::

    from poptune.integrations.mlflow import MLflowCallback

    tracking = MLflowCallback(tracking_uri="http://127.0.0.1:5000", experiment_name="pbt")
    study = poptune.Study(parameters, algorithm, True, callbacks=[tracking])
    study.optimize(objective, n_workers=4)

What is logged (:class:`MLflowCallback`):

* one **parent run** per study (run name: the study's name; tags ``poptune.study``,
  ``poptune.role = study``), FINISHED when the ``optimize`` call or the loop ends;
* one **child run** per trial (run name ``trial-<id>``), with the tag ``mlflow.parentRunId``
  naming the parent (``nested=False``: top-level runs, no parent);
* the trial's hyperparameters as **params** (the study's parameters only);
* its objective as the metric ``metric_name`` at every observation, ``step`` = the
  observation's iteration, and every numeric context value (``trial.report(acc, loss=0.2)``)
  as a metric of its own name;
* **tags**: ``poptune.study``, ``poptune.trial`` (its id), ``poptune.status`` (RUNNING, then
  COMPLETED, FAILED or STOPPED), ``poptune.error`` for a failed trial, and for a PBT segment
  ``poptune.member``, ``poptune.generation``, ``poptune.parent`` (the trial whose checkpoint
  it started from), ``poptune.explore`` (what explore changed; '' when nothing),
  ``poptune.load_from`` and ``poptune.lineage``; plus your own ``tags`` on every run.

The child run ends FINISHED for a COMPLETED or STOPPED trial and FAILED for a FAILED one.

**Processes and threads.** The callback talks to MLflow through an ``MlflowClient`` with
explicit run ids, never MLflow's global "active run", so trials in threads and worker
processes do not mix. Its ``on_study_start`` (in the process that calls ``optimize``) finds
or creates the parent run before the workers start, and each worker's copy of the callback
carries that run's id. A process that has no id (a worker started by hand with its own
callback) looks the parent up by its tags and creates it when there is none; should two
processes create one at the same moment, each then reads the study's parent runs back and
keeps the oldest (the other is deleted), so all of them settle on one parent. This holds for
a tracking server with a database backend (the answer of a search shows every run created
before it), the setup meant for several processes; a file store (``./mlruns``) is for one.

A trial whose worker died is failed by another worker, which does not go through this
callback; its run is ended when the study ends (``on_study_end``, in the process that calls
``optimize`` or runs the loop): every run of the study that MLflow still shows RUNNING for a
trial the study has finished gets that trial's status, error and end, as ``on_trial_end``
would have given them.

Raises :class:`~poptune.exceptions.MissingDependencyError` at import without MLflow
(``pip install "poptune[mlflow]"``).
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from poptune._validation import check_bool, check_str, reject
from poptune.exceptions import MissingDependencyError
from poptune.lineage import parent_id
from poptune.trial import Observation, Trial, TrialStatus

try:
    from mlflow.tracking import MlflowClient
except ImportError as exc:
    raise MissingDependencyError(
        f"poptune.integrations.mlflow needs MLflow ({exc.name} is not installed): "
        'pip install "poptune[mlflow]"'
    ) from None

if TYPE_CHECKING:
    from poptune.study import Study

__all__ = ["MLflowCallback"]

#: The tag that names the parent run of a study.
PARENT_TAG = "mlflow.parentRunId"
_TAG_LIMIT = 5000  # MLflow's limit on a tag value (characters; newer servers allow 8000)
_PARAM_LIMIT = 6000  # MLflow's limit on a param value
_KEY = re.compile(r"[^A-Za-z0-9_\-. /]")
_END = {
    TrialStatus.COMPLETED: "FINISHED",
    TrialStatus.STOPPED: "FINISHED",
    TrialStatus.FAILED: "FAILED",
}


class MLflowCallback:
    """A study callback logging every trial as an MLflow run (see the module's docstring).

    Args:
        tracking_uri: the MLflow tracking server or store (``"http://127.0.0.1:5000"``,
            ``"sqlite:///mlflow.db"``); None (default): MLflow's own default
            (``MLFLOW_TRACKING_URI``, else ``./mlruns``).
        experiment_name: the MLflow experiment the runs go to, created when missing;
            None (default): one named after the study.
        metric_name: the name of the objective's metric. Default ``"objective"``.
        nested: True (default): one parent run per study, each trial's run nested under it;
            False: top-level trial runs only.
        tags: more tags for every run (str keys; values are written as str).

    Raises:
        ConfigurationError / ArgumentTypeError: a bad argument, naming it.
    """

    def __init__(
        self,
        tracking_uri: str | None = None,
        experiment_name: str | None = None,
        metric_name: str = "objective",
        nested: bool = True,
        tags: Mapping[str, Any] | None = None,
    ) -> None:
        owner = "MLflowCallback"
        self.tracking_uri = check_str(owner, "tracking_uri", tracking_uri, True, True)
        self.experiment_name = check_str(owner, "experiment_name", experiment_name, True, True)
        self.metric_name = check_str(owner, "metric_name", metric_name, nonempty=True)
        if not self.metric_name or _KEY.search(self.metric_name):
            what = "a metric name MLflow accepts (letters, digits, _ - . / and spaces)"
            reject(owner, "metric_name", what, metric_name, wrong_type=False)
        self.nested = check_bool(owner, "nested", nested)
        if tags is not None and not isinstance(tags, Mapping):
            reject(owner, "tags", "a mapping of str to values", tags, wrong_type=True)
        self.tags = {str(k): str(v) for k, v in (tags or {}).items()}
        self._experiments: dict[str, str] = {}  # study name -> experiment id
        self._parents: dict[str, str] = {}  # study name -> parent run id
        self._runs: dict[tuple[str, int], str] = {}  # (study, trial id) -> run id (this process)
        self._client: Any = None
        self._lock = threading.RLock()

    # -- what travels to a worker: the ids found here, not the client ------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_client=None, _lock=None, _runs={})
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

    @property
    def client(self) -> Any:
        """The ``MlflowClient`` of this process (made when first needed)."""
        if self._client is None:
            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    # -- the hooks ---------------------------------------------------------------------------
    def on_study_start(self, study: Study) -> None:
        with self._lock:
            if self.nested:
                run_id = self.parent_run_id(study)
                self.client.update_run(run_id, status="RUNNING")
            else:
                self.experiment_id(study)

    def on_trial_start(self, study: Study, trial: Trial) -> None:
        self._run_of(study, trial)

    def on_observation(self, study: Study, trial: Trial, observation: Observation) -> None:
        run_id = self._run_of(study, trial)
        stamp = int(time.time() * 1000)
        step = int(observation.iteration)
        client = self.client
        client.log_metric(run_id, self.metric_name, float(observation.objective), stamp, step)
        for key, value in observation.context.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                client.log_metric(run_id, _KEY.sub("_", key), float(value), stamp, step)

    def on_trial_end(self, study: Study, trial: Trial, status: TrialStatus) -> None:
        self._end_run(self._run_of(study, trial), trial, status)
        with self._lock:
            self._runs.pop((study.name, trial.id), None)

    def on_study_end(self, study: Study) -> None:
        self._end_lost_runs(study)
        if self.nested:
            self.client.set_terminated(self.parent_run_id(study), status="FINISHED")

    def _end_run(self, run_id: str, trial: Trial, status: TrialStatus) -> None:
        """The run's final ``poptune.status`` (and ``poptune.error``) tags, then its end."""
        client = self.client
        client.set_tag(run_id, "poptune.status", status.value)
        error = trial.meta.get("error")
        if error:
            client.set_tag(run_id, "poptune.error", str(error)[:_TAG_LIMIT])
        client.set_terminated(run_id, status=_END.get(status, "FINISHED"))

    def _end_lost_runs(self, study: Study) -> None:
        """End the runs MLflow still shows RUNNING for trials the study has finished: a trial
        failed by another worker after its own died never reached ``on_trial_end``."""
        experiment = self.experiment_id(study)
        query = _query(study, "trial", "tags.`poptune.status` = 'RUNNING'")
        token = None
        while True:
            page = self.client.search_runs([experiment], query, max_results=500, page_token=token)
            for run in page:
                trial = study.history.get(int(run.data.tags.get("poptune.trial", 0)))
                if trial is not None and trial.is_finished:
                    self._end_run(str(run.info.run_id), trial, trial.status)
            token = page.token
            if not token:
                return

    # -- finding (or making) experiments and runs ---------------------------------------------
    def experiment_id(self, study: Study) -> str:
        """The id of the experiment ``study``'s runs go to (created when missing)."""
        with self._lock:
            found = self._experiments.get(study.name)
            if found is not None:
                return found
            name = self.experiment_name or study.name
            client = self.client
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                try:
                    found = str(client.create_experiment(name))
                except Exception:  # another process created it first: read it back
                    experiment = client.get_experiment_by_name(name)
                    if experiment is None:
                        raise
                    found = str(experiment.experiment_id)
            else:
                found = str(experiment.experiment_id)
            self._experiments[study.name] = found
            return found

    def parent_run_id(self, study: Study) -> str:
        """The id of ``study``'s parent run: the one this callback found or made, else the
        oldest with its tags, else a new one (see the module's docstring for races)."""
        with self._lock:
            found = self._parents.get(study.name)
            if found is not None:
                return found
            experiment = self.experiment_id(study)
            query = _query(study, "study")
            runs = self._search(experiment, query)
            if not runs:
                tags = {**self.tags, **_study_tags(study), "poptune.role": "study"}
                mine = self.client.create_run(experiment, tags=tags, run_name=study.name)
                runs = self._search(experiment, query)  # a concurrent creator: keep the oldest
                if runs and runs[0].info.run_id != mine.info.run_id:
                    self.client.delete_run(mine.info.run_id)
                elif not runs:
                    runs = [mine]
            found = str(runs[0].info.run_id)
            self._parents[study.name] = found
            return found

    def run_id(self, study: Study, trial: Trial | int) -> str | None:
        """The id of the run of ``trial`` (or id) of ``study`` in MLflow, or None."""
        tid = trial.id if isinstance(trial, Trial) else int(trial)
        with self._lock:
            cached = self._runs.get((study.name, tid))
        if cached is not None:
            return cached
        experiment = self.experiment_id(study)
        query = _query(study, "trial", f"tags.`poptune.trial` = '{tid}'")
        runs = self._search(experiment, query)
        return str(runs[0].info.run_id) if runs else None

    def _search(self, experiment: str, query: str) -> list[Any]:
        order = ["attributes.start_time ASC", "attributes.run_id ASC"]
        return list(self.client.search_runs([experiment], query, order_by=order, max_results=10))

    def _run_of(self, study: Study, trial: Trial) -> str:
        """The run of ``trial``: this process's, one found by its tags, or a new one."""
        key = (study.name, trial.id)
        with self._lock:
            found = self._runs.get(key) or self.run_id(study, trial)
            if found is None:
                found = self._create_run(study, trial)
            self._runs[key] = found
            return found

    def _create_run(self, study: Study, trial: Trial) -> str:
        experiment = self.experiment_id(study)
        tags = {**self.tags, **_study_tags(study), **_trial_tags(trial), "poptune.role": "trial"}
        if self.nested:
            tags[PARENT_TAG] = self.parent_run_id(study)
        run = self.client.create_run(experiment, tags=tags, run_name=f"trial-{trial.id}")
        run_id = str(run.info.run_id)
        names = [p.name for p in study.parameters]
        params = {n: trial.parameters[n] for n in names if n in trial.parameters}
        for name, value in params.items():
            self.client.log_param(run_id, name, str(value)[:_PARAM_LIMIT])
        return run_id


def _key(name: str) -> str:
    """A study name as a tag value safe inside a search filter (any name: quotes too)."""
    return hashlib.sha256(name.encode()).hexdigest()[:24]


def _query(study: Study, role: str, *conditions: str) -> str:
    """The search filter for ``study``'s runs of ``role`` (``'study'``: its parent run,
    ``'trial'``: its trials' runs) that also meet ``conditions``."""
    tags = [f"tags.`poptune.study_key` = '{_key(study.name)}'", f"tags.`poptune.role` = '{role}'"]
    return " AND ".join([*tags, *conditions])


def _study_tags(study: Study) -> dict[str, str]:
    return {"poptune.study": study.name[:_TAG_LIMIT], "poptune.study_key": _key(study.name)}


def _trial_tags(trial: Trial) -> dict[str, str]:
    """The trial's tags: its id and status and, for a PBT segment, its place in the lineage."""
    tags = {"poptune.trial": str(trial.id), "poptune.status": trial.status.value}
    if trial.generation is not None:
        parent = parent_id(trial)
        tags.update({
            "poptune.member": "" if trial.member is None else str(trial.member),
            "poptune.generation": str(trial.generation),
            "poptune.parent": "" if parent is None else str(parent),
            "poptune.explore": trial.explore[:_TAG_LIMIT],
            "poptune.load_from": str(trial.load_from or ""),
            "poptune.lineage": str(trial.lineage or "")[:_TAG_LIMIT],
        })  # fmt: skip
    return tags
