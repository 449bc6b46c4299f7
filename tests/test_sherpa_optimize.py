"""SHERPA's parallel mode: optimize() runs trial scripts as jobs, Client reports from them.

Trials are real processes (a script importing ``poptune as sherpa``). SLURM and SGE are
played by stand-in ``sbatch``/``squeue``/``sacct``/``scancel`` and
``qsub``/``qstat``/``qacct``/``qdel`` bash scripts that run the submitted job script in the
background and keep each job's state in files.
"""

from __future__ import annotations

import logging
import math
import os
import stat
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

import poptune as sherpa
from poptune import (
    ConfigurationError,
    Continuous,
    Discrete,
    InvalidObservationError,
    PoptuneError,
    StoppingRule,
    Study,
    StudyMismatchError,
    TrialStatus,
    algorithms,
    load_study,
)
from poptune.execution.client import Client
from poptune.execution.jobs import optimize
from poptune.schedulers import LocalScheduler, Scheduler, SGEScheduler, SLURMScheduler

from .conftest import forget_storages

PARAMS = [Continuous("lr", [0.01, 1.0]), Discrete("units", [1, 8])]
POLL = 0.05

TRIAL_SCRIPT = """\
import os
import poptune as sherpa

client = sherpa.Client()
trial = client.get_trial()
lr = trial.parameters["lr"]
for i in range(3):
    client.send_metrics(
        trial=trial,
        iteration=i + 1,
        objective=(lr - 0.3) ** 2 + 0.1 / (i + 1),
        context={"epoch": i + 1, "sourced": os.environ.get("FAKE_ENV_SOURCED", "")},
    )
"""

FAILING_SCRIPT = """\
import sys
import poptune as sherpa

client = sherpa.Client()
trial = client.get_trial()
if {condition}:
    sys.exit(1)
client.send_metrics(trial, 1, trial.parameters["lr"])
"""

LONG_SCRIPT = """\
import os
import time
import poptune as sherpa

client = sherpa.Client()
trial = client.get_trial()
with open(os.path.join(os.environ["SHERPA_OUTPUT_DIR"], f"pid_{{trial.id}}"), "w") as f:
    f.write(str(os.getpid()))
for i in range({n}):
    client.send_metrics(trial, i + 1, float(i))
    time.sleep(0.1)
"""


@pytest.fixture(autouse=True)
def _close_storages():
    yield
    forget_storages()


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def run(tmp_path, algorithm, script_text=TRIAL_SCRIPT, scheduler=None, **kw):
    script = write(tmp_path / "trial.py", script_text)
    kw.setdefault("max_concurrent", 2)
    kw.setdefault("output_dir", tmp_path / "out")
    best = optimize(
        PARAMS,
        algorithm,
        True,
        scheduler if scheduler is not None else LocalScheduler(),
        filename=str(script),
        poll_interval=POLL,
        seed=0,
        **kw,
    )
    study = load_study(f"sqlite:///{Path(kw['output_dir']).absolute() / 'poptune.db'}", "sherpa")
    return best, study


def assert_completed(study, n):
    trials = study.trials
    assert len(trials) == n
    for trial in trials:
        assert trial.status is TrialStatus.COMPLETED, (trial, trial.meta)
        assert sorted(trial.observations) == [1, 2, 3]
    return trials


# -- LocalScheduler ------------------------------------------------------------------------------
def test_random_search_runs_every_trial_as_a_process(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="poptune")
    best, study = run(tmp_path, algorithms.RandomSearch(6))
    trials = assert_completed(study, 6)
    out = tmp_path / "out"
    results = pd.read_csv(out / "results.csv")
    assert set(results["Trial-ID"]) == {t.id for t in trials}
    assert (results["Status"] == "COMPLETED").sum() == 6
    assert (out / "study.json").is_file()
    assert all((out / "jobs" / f"trial_{t.id}.out").is_file() for t in trials)
    assert best == study.get_best_result()
    assert best["Objective"] == min(o.objective for t in trials for o in t.observations.values())
    assert best["epoch"] == 3 and set(best) >= {"Trial-ID", "Iteration", "lr", "units"}
    messages = [r.getMessage() for r in caplog.records]
    assert sum("submitted as job" in m for m in messages) == 6
    assert sum("finished: COMPLETED" in m for m in messages) == 6


def test_pbt_generations_run_as_jobs(tmp_path):
    algorithm = algorithms.PopulationBasedTraining(num_generations=2, population_size=3)
    best, study = run(tmp_path, algorithm)
    trials = assert_completed(study, 6)
    assert [t.generation for t in trials] == [1, 1, 1, 2, 2, 2]
    first = {str(t.id) for t in trials[:3]}
    for trial in trials[:3]:
        assert trial.load_from == "" and trial.lineage == ""
    for trial in trials[3:]:
        assert trial.load_from in first
        assert trial.lineage == f"{trial.load_from},"
        assert trial.save_to == str(trial.id)
    # generation 2 started only once generation 1 had finished
    assert min(t.finished_seq for t in trials[:3]) > 0
    assert best["Trial-ID"] in {t.id for t in trials}
    assert "generation" in best and "load_from" in best


def test_command_form_and_verbose_zero(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="poptune")
    script = write(tmp_path / "trial.py", TRIAL_SCRIPT)
    best = optimize(
        PARAMS,
        algorithms.RandomSearch(2),
        True,
        LocalScheduler(),
        command=f"{sys.executable} {script}",
        output_dir=tmp_path / "out",
        poll_interval=POLL,
        verbose=0,
    )
    study = load_study(f"sqlite:///{tmp_path / 'out' / 'poptune.db'}", "sherpa")
    assert_completed(study, 2)
    assert best["Trial-ID"] in (1, 2)
    assert not any("submitted as job" in r.getMessage() for r in caplog.records)


def test_failing_script_fails_its_trial(tmp_path):
    with pytest.warns(RuntimeWarning, match="every one of the 2 trial"):
        best, study = run(
            tmp_path, algorithms.RandomSearch(2), FAILING_SCRIPT.format(condition=True)
        )
    trials = study.trials
    assert [t.status for t in trials] == [TrialStatus.FAILED] * 2
    assert all(t.meta["job_status"] == "FAILED" for t in trials)
    assert "failed" in trials[0].meta["error"]
    assert best == {}
    results = pd.read_csv(tmp_path / "out" / "results.csv")
    assert (results["Status"] == "FAILED").sum() == 2


def test_failed_trials_are_resubmitted_once(tmp_path):
    with pytest.warns(RuntimeWarning, match="every one of the 4 trial"):
        _, study = run(
            tmp_path,
            algorithms.RandomSearch(2),
            FAILING_SCRIPT.format(condition=True),
            resubmit_failed_trials=True,
        )
    trials = study.trials
    assert len(trials) == 4 and all(t.status is TrialStatus.FAILED for t in trials)
    retries = {t.meta["retry_of"]: t for t in trials if "retry_of" in t.meta}
    assert sorted(retries) == [1, 2]
    for original, retry in retries.items():
        assert retry.parameters == study.get_trial(original).parameters
        assert retry.meta["attempt"] == 2


def test_resubmitted_trial_can_complete(tmp_path):
    # fails on the first attempt only: the retry completes
    script = FAILING_SCRIPT.format(condition='"retry_of" not in trial.meta')
    best, study = run(tmp_path, algorithms.RandomSearch(1), script, resubmit_failed_trials=True)
    assert [t.status for t in study.trials] == [TrialStatus.FAILED, TrialStatus.COMPLETED]
    assert best["Trial-ID"] == 2


def test_script_that_reports_nothing_fails(tmp_path):
    with pytest.warns(RuntimeWarning, match="every one of the 1 trial"):
        _, study = run(tmp_path, algorithms.RandomSearch(1), "import sys\n")
    (trial,) = study.trials
    assert trial.status is TrialStatus.FAILED
    assert "without sending metrics" in trial.meta["error"]


class StopAfterTwo(StoppingRule):
    """Stops every trial once it has reported two iterations."""

    def should_trial_stop(self, trial, history):
        return len(trial.observations) >= 2


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def assert_processes_gone(out: Path, trials) -> None:
    for trial in trials:
        pid = int((out / f"pid_{trial.id}").read_text())
        deadline = time.monotonic() + 5
        while not _gone(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _gone(pid), f"trial {trial.id}'s process {pid} still runs"


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
@pytest.mark.parametrize("kind", ["local", "slurm"])
def test_stopping_rule_kills_the_job(tmp_path, request, kind):
    scheduler = LocalScheduler()
    if kind == "slurm":
        request.getfixturevalue("batch")
        scheduler = SLURMScheduler()
    start = time.monotonic()
    _, study = run(
        tmp_path,
        algorithms.RandomSearch(2),
        LONG_SCRIPT.format(n=300),
        scheduler=scheduler,
        stopping_rule=StopAfterTwo(),
    )
    assert time.monotonic() - start < 20  # the scripts alone would take 30 s each
    for trial in study.trials:
        assert trial.status is TrialStatus.STOPPED
        assert 2 <= len(trial.observations) < 50
    assert_processes_gone(tmp_path / "out", study.trials)


class InterruptingScheduler(LocalScheduler):
    """A LocalScheduler whose polling is interrupted (Ctrl-C) once both jobs have reported."""

    def __init__(self, output: Path) -> None:
        super().__init__()
        self.output = output

    def get_status(self, job_id):
        if len(list(self.output.glob("pid_*"))) == 2 and len(self._procs) == 2:
            time.sleep(0.3)
            raise KeyboardInterrupt
        return super().get_status(job_id)


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_ctrl_c_kills_the_jobs_and_fails_their_trials(tmp_path, caplog):
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, algorithms.RandomSearch(4), LONG_SCRIPT.format(n=300),
            scheduler=InterruptingScheduler(out))  # fmt: skip
    study = load_study(f"sqlite:///{out / 'poptune.db'}", "sherpa")
    trials = study.trials
    assert len(trials) == 2
    for trial in trials:
        assert trial.status is TrialStatus.FAILED and trial.meta["interrupted"] is True
    assert_processes_gone(out, trials)
    assert (out / "results.csv").is_file()
    assert any("load=True" in r.getMessage() for r in caplog.records)


def test_local_scheduler_states_and_kill(tmp_path):
    scheduler = LocalScheduler(output_dir=tmp_path)
    ok = scheduler.submit_job("exit 0", {"A": "1"}, "ok")
    bad = scheduler.submit_job('test "$A" = 2 || exit 3', {"A": "1"}, "bad")
    slow = scheduler.submit_job("sleep 30", {}, "slow")
    assert scheduler.get_status(slow) == "ACTIVE"
    scheduler.kill_job(slow)
    assert scheduler.get_status(slow) == "KILLED"
    deadline = time.monotonic() + 10
    while {scheduler.get_status(ok), scheduler.get_status(bad)} & {"ACTIVE"}:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert scheduler.get_status(ok) == "FINISHED"
    assert scheduler.get_status(bad) == "FAILED"
    assert (tmp_path / "jobs" / "ok.out").is_file()
    scheduler.close()
    with pytest.raises(PoptuneError, match="no job"):
        scheduler.get_status("12345678")


def test_submit_options_prefix_the_local_command(tmp_path):
    scheduler = LocalScheduler(submit_options="env PREFIXED=yes", output_dir=tmp_path)
    job = scheduler.submit_job("""sh -c 'echo "p=$PREFIXED"'""", {}, "job")
    while scheduler.get_status(job) == "ACTIVE":
        time.sleep(0.02)
    assert (tmp_path / "jobs" / "job.out").read_text().strip() == "p=yes"


# -- resuming ------------------------------------------------------------------------------------
def test_existing_study_needs_load(tmp_path):
    best, _ = run(tmp_path, algorithms.RandomSearch(2))
    forget_storages()
    with pytest.raises(StudyMismatchError, match="load=True"):
        run(tmp_path, algorithms.RandomSearch(2))
    forget_storages()
    resumed, study = run(tmp_path, algorithms.RandomSearch(2), load=True)
    assert resumed == best and len(study.trials) == 2
    forget_storages()
    with pytest.raises(StudyMismatchError):
        run(tmp_path, algorithms.RandomSearch(5), load=True)  # another algorithm


# -- bad arguments -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({}, "exactly one of command"),
        ({"command": "true", "filename": "x.py"}, "exactly one of command"),
        ({"command": "  "}, "non-empty"),
        ({"filename": "no/such/file.py"}, "no such file"),
        ({"command": "true", "max_concurrent": 0}, "max_concurrent"),
        ({"command": "true", "max_concurrent": 1.5}, "max_concurrent"),
        ({"command": "true", "poll_interval": 0}, "poll_interval"),
        ({"command": "true", "storage": "memory"}, "database URL"),
        ({"command": "true", "storage": sherpa.MemoryStorage()}, "database URL"),
        ({"command": "true", "load": "yes"}, "load"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ConfigurationError, match=match):
        optimize(PARAMS, algorithms.RandomSearch(1), True, LocalScheduler(),
                 output_dir=tmp_path / "out", **kwargs)  # fmt: skip


def test_bad_scheduler(tmp_path):
    with pytest.raises(ConfigurationError, match="scheduler"):
        optimize(PARAMS, algorithms.RandomSearch(1), True, "local", command="true",
                 output_dir=tmp_path)  # fmt: skip


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: LocalScheduler(submit_options=3), "submit_options"),
        (lambda: SLURMScheduler(submit_options="-p 'unclosed"), "cannot be parsed"),
        (lambda: SGEScheduler(environment=""), "environment"),
        (lambda: SLURMScheduler(output_dir=5), "output_dir"),
    ],
)
def test_bad_scheduler_arguments(make, match):
    with pytest.raises(ConfigurationError, match=match):
        make()


def test_bad_job_arguments(tmp_path):
    scheduler = LocalScheduler()
    with pytest.raises(ConfigurationError, match="environment variable name"):
        scheduler.submit_job("true", {"A B": "1"}, "job")
    with pytest.raises(ConfigurationError, match="must be a str"):
        scheduler.submit_job("true", {"A": 1}, "job")
    with pytest.raises(ConfigurationError, match="job_name"):
        scheduler.submit_job("true", {}, "a/b")


# -- Client --------------------------------------------------------------------------------------
def test_client_outside_optimize_is_a_clear_error(monkeypatch):
    for name in ("POPTUNE_STORAGE", "POPTUNE_STUDY", "POPTUNE_TRIAL_ID", "SHERPA_TRIAL_ID"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigurationError, match="not running under poptune.optimize"):
        Client()


def test_client_checks_metrics_like_add_observation(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    study = Study(PARAMS, algorithms.RandomSearch(2), True, storage=url, study_name="s",
                  seed=0, heartbeat_interval=None)  # fmt: skip
    trial = study.get_suggestion()
    monkeypatch.setenv("POPTUNE_STORAGE", url)
    monkeypatch.setenv("POPTUNE_STUDY", "s")
    monkeypatch.setenv("POPTUNE_TRIAL_ID", str(trial.id))
    client = Client(host="localhost", port=27001)
    got = client.get_trial()
    assert got.id == trial.id and got.parameters == trial.parameters
    with pytest.raises(InvalidObservationError, match="finite"):
        client.send_metrics(got, 1, math.nan)
    with pytest.raises(InvalidObservationError, match="iteration"):
        client.send_metrics(got, 1.5, 0.1)
    with pytest.raises(InvalidObservationError, match="parameter name"):
        client.send_metrics(got, 1, 0.1, context={"lr": 1.0})
    with pytest.raises(InvalidObservationError, match="context"):
        client.send_metrics(got, 1, 0.1, context={"x": [1, 2]})
    client.send_metrics(got, 1, 0.5, context={"loss": 0.25})
    with pytest.raises(sherpa.DuplicateIterationError):
        client.send_metrics(trial.id, 1, 0.5)
    assert study.get_trial(trial.id).observations[1].context == {"loss": 0.25}
    assert list(got.observations) == [1]
    study.finalize(trial)
    with pytest.raises(sherpa.TrialFinishedError):
        client.send_metrics(got, 2, 0.4)


def test_client_test_mode(monkeypatch):
    monkeypatch.delenv("POPTUNE_STORAGE", raising=False)
    client = Client(test_mode=True, parameters={"lr": 0.1})
    trial = client.get_trial()
    assert trial.id == 1 and trial.parameters == {"lr": 0.1}
    client.send_metrics(trial, 1, 0.3)
    assert trial.observations[1].objective == 0.3
    with pytest.raises(InvalidObservationError):
        client.send_metrics(trial, 2, math.inf)


# -- SLURM and SGE stand-ins ---------------------------------------------------------------------
FAKEJOB = """\
#!/bin/bash
# _fakejob ID SCRIPT OUT: run a job script, keep its state in $FAKE_BATCH_STATE/ID.state
id=$1; script=$2; out=$3; state="$FAKE_BATCH_STATE"
put() { echo "$1" > "$state/$id.state.tmp" && mv "$state/$id.state.tmp" "$state/$id.state"; }
echo $$ > "$state/$id.pid"
put RUNNING
bash "$script" > "$out" 2>&1
rc=$?
if [ -f "$state/$id.cancelled" ]; then put CANCELLED; else put "DONE $rc"; fi
"""

SUBMIT = """\
#!/bin/bash
# stand-in {tool}: record the arguments, run the script (last argument) in the background
state="$FAKE_BATCH_STATE"
echo "$*" >> "$state/{tool}.log"
out=/dev/null; prev=""
for a in "$@"; do
  case "$a" in --output=*) out="${{a#--output=}}";; esac
  if [ "$prev" = "-o" ]; then out="$a"; fi
  prev="$a"
done
script="${{!#}}"
id=$(( $(cat "$state/counter" 2>/dev/null || echo 100) + 1 ))
echo "$id" > "$state/counter"
echo PENDING > "$state/$id.state"
setsid "$FAKE_BATCH_BIN/_fakejob" "$id" "$script" "$out" < /dev/null > /dev/null 2>&1 &
echo "$id"
"""

KILL = """\
#!/bin/bash
state="$FAKE_BATCH_STATE"; id=$1
[ -f "$state/$id.state" ] || {{ echo "{tool}: invalid job id $id" >&2; exit 1; }}
touch "$state/$id.cancelled"
pid=$(cat "$state/$id.pid" 2>/dev/null) && kill -TERM -- "-$pid" 2> /dev/null
echo CANCELLED > "$state/$id.state"
"""

SQUEUE = """\
#!/bin/bash
while [ $# -gt 0 ]; do case "$1" in -j) id=$2; shift;; esac; shift; done
s=$(cat "$FAKE_BATCH_STATE/$id.state" 2>/dev/null)
case "$s" in PENDING|RUNNING|"") echo "${s:-RUNNING}"; exit 0;; esac
echo "slurm_load_jobs error: Invalid job id specified" >&2; exit 1
"""

SACCT = """\
#!/bin/bash
while [ $# -gt 0 ]; do case "$1" in -j) id=$2; shift;; esac; shift; done
s=$(cat "$FAKE_BATCH_STATE/$id.state" 2>/dev/null)
case "$s" in
  "DONE 0") printf 'COMPLETED\\nCOMPLETED\\n';;
  DONE*) printf 'FAILED\\nFAILED\\n';;
  CANCELLED) printf 'CANCELLED by 1000\\nCANCELLED\\n';;
esac
"""

QSTAT = """\
#!/bin/bash
id=$2
s=$(cat "$FAKE_BATCH_STATE/$id.state" 2>/dev/null)
case "$s" in
  PENDING) printf 'job_number:                 %s\\njob_state    1:    qw\\n' "$id";;
  RUNNING|"") printf 'job_number:                 %s\\njob_state    1:    r\\n' "$id";;
  *) echo "Following jobs do not exist: $id" >&2; exit 1;;
esac
"""

QACCT = """\
#!/bin/bash
id=$2
s=$(cat "$FAKE_BATCH_STATE/$id.state" 2>/dev/null)
case "$s" in
  DONE*) printf 'qname        all.q\\nfailed       0\\nexit_status  %s\\n' "${s#DONE }";;
  CANCELLED) printf 'failed       100 : assumedly after job\\nexit_status  137\\n';;
  *) echo "error: job id $id not found" >&2; exit 1;;
esac
"""


@pytest.fixture
def batch(tmp_path, monkeypatch):
    """Stand-in SLURM and SGE commands on PATH; returns the state directory."""
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir()
    state.mkdir()
    scripts = {
        "_fakejob": FAKEJOB,
        "sbatch": SUBMIT.format(tool="sbatch"),
        "qsub": SUBMIT.format(tool="qsub"),
        "scancel": KILL.format(tool="scancel"),
        "qdel": KILL.format(tool="qdel"),
        "squeue": SQUEUE,
        "sacct": SACCT,
        "qstat": QSTAT,
        "qacct": QACCT,
    }
    for name, text in scripts.items():
        path = write(bin_dir / name, text)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_BATCH_STATE", str(state))
    monkeypatch.setenv("FAKE_BATCH_BIN", str(bin_dir))
    return state


@pytest.mark.parametrize("kind", ["slurm", "sge"])
def test_batch_schedulers_run_the_study(tmp_path, batch, kind):
    env_file = write(tmp_path / "env.sh", "export FAKE_ENV_SOURCED=yes\n")
    if kind == "slurm":
        scheduler: Scheduler = SLURMScheduler("-p debug --time=00:05:00", environment=env_file)
    else:
        scheduler = SGEScheduler("-q all.q -l h_vmem=1G", environment=str(env_file))
    best, study = run(tmp_path, algorithms.RandomSearch(4), scheduler=scheduler)
    trials = assert_completed(study, 4)
    assert all(t.observations[3].context["sourced"] == "yes" for t in trials)
    assert best["Trial-ID"] in {t.id for t in trials}
    jobs = tmp_path / "out" / "jobs"
    script = (jobs / "trial_1.sh").read_text()
    assert script.startswith("#!/bin/bash\n")
    assert f"source {env_file}" in script
    assert "export POPTUNE_STORAGE=" in script and "export POPTUNE_STUDY=sherpa" in script
    assert "export POPTUNE_TRIAL_ID=1" in script and "export SHERPA_TRIAL_ID=1" in script
    assert f"export SHERPA_OUTPUT_DIR={tmp_path / 'out'}" in script
    assert script.rstrip().endswith(f"{sys.executable} {tmp_path / 'trial.py'}")
    if kind == "slurm":
        log = (batch / "sbatch.log").read_text().splitlines()
        assert log[0] == (
            f"--parsable -p debug --time=00:05:00 --job-name=trial_1 "
            f"--output={jobs / 'trial_1.out'} {jobs / 'trial_1.sh'}"
        )
    else:
        log = (batch / "qsub.log").read_text().splitlines()
        assert log[0] == (
            f"-terse -S /bin/bash -q all.q -l h_vmem=1G -N trial_1 -o {jobs / 'trial_1.out'} "
            f"-j y {jobs / 'trial_1.sh'}"
        )
    assert len(log) == 4


@pytest.mark.parametrize("kind", ["slurm", "sge"])
def test_batch_states_failure_and_kill(tmp_path, batch, kind):
    scheduler = (SLURMScheduler if kind == "slurm" else SGEScheduler)(output_dir=tmp_path)
    ok = scheduler.submit_job("exit 0", {}, "ok")
    bad = scheduler.submit_job("exit 2", {}, "bad")
    slow = scheduler.submit_job("sleep 30", {}, "slow")
    deadline = time.monotonic() + 10
    while scheduler.get_status(slow) != "ACTIVE":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    scheduler.kill_job(slow)
    states = {}
    while len(states) < 3:
        assert time.monotonic() < deadline
        for job in (ok, bad, slow):
            state = scheduler.get_status(job)
            if state in ("FINISHED", "FAILED", "KILLED"):
                states[job] = state
        time.sleep(0.02)
    assert states == {ok: "FINISHED", bad: "FAILED", slow: "KILLED"}
    with pytest.raises(PoptuneError, match="failed"):
        scheduler.kill_job("999")


@pytest.mark.parametrize(
    "state, expected",
    [
        ("PENDING", "QUEUED"),
        ("RUNNING", "ACTIVE"),
        ("COMPLETING", "ACTIVE"),
        ("COMPLETED", "FINISHED"),
        ("FAILED", "FAILED"),
        ("TIMEOUT", "FAILED"),
        ("NODE_FAIL", "FAILED"),
        ("OUT_OF_MEMORY", "FAILED"),
        ("CANCELLED by 1234", "KILLED"),
        ("CANCELLED+", "KILLED"),
    ],
)
def test_slurm_state_mapping(state, expected):
    assert SLURMScheduler._map(state) == expected


def test_unknown_batch_job_counts_as_finished_after_a_few_polls(tmp_path, monkeypatch):
    scheduler = SGEScheduler(output_dir=tmp_path)
    monkeypatch.setattr(scheduler, "_query", lambda job_id: None)
    answers = [scheduler.get_status("7") for _ in range(3)]
    assert answers == ["QUEUED", "QUEUED", "FINISHED"]


def test_missing_sbatch_is_a_clear_error(tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    scheduler = SLURMScheduler(output_dir=tmp_path)
    with pytest.raises(PoptuneError, match="sbatch not found: is SLURM installed"):
        scheduler.submit_job("true", {}, "job")
    with pytest.raises(PoptuneError, match="qsub not found"):
        SGEScheduler(output_dir=tmp_path).submit_job("true", {}, "job")
    with pytest.raises(PoptuneError, match="sbatch not found"):
        run(tmp_path, algorithms.RandomSearch(2), scheduler=SLURMScheduler())
    (trial,) = load_study(f"sqlite:///{tmp_path / 'out' / 'poptune.db'}", "sherpa").trials
    assert trial.status is TrialStatus.FAILED
    assert "sbatch not found" in trial.meta["error"]


def test_failed_submission_names_the_command_and_its_error(tmp_path, batch):
    write(
        Path(os.environ["FAKE_BATCH_BIN"]) / "sbatch",
        "#!/bin/bash\necho 'invalid partition' >&2\nexit 1\n",
    )
    with pytest.raises(
        PoptuneError, match=r"sbatch --parsable .* failed \(exit status 1\): invalid partition"
    ):
        SLURMScheduler(output_dir=tmp_path).submit_job("true", {}, "job")


def test_optimize_serves_the_dashboard_while_jobs_run(tmp_path, caplog):
    pytest.importorskip("uvicorn", reason='the dashboard extra: pip install "poptune[dashboard]"')
    caplog.set_level(logging.WARNING, logger="poptune")
    before = {t for t in threading.enumerate() if t.name.startswith("poptune-dashboard")}
    best, study = run(tmp_path, algorithms.RandomSearch(2), dashboard_port=0)
    assert_completed(study, 2)
    assert "dashboard not started" not in caplog.text
    after = {t for t in threading.enumerate() if t.name.startswith("poptune-dashboard")}
    assert after <= before  # optimize() stopped the dashboard it started
