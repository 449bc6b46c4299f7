"""Checkpoints without a shared file system (issue 15, item 5): ``checkpoint_dir`` as an fsspec
URL (``memory://``, and ``s3://`` against a real S3-protocol server, moto's, on 127.0.0.1) and
as ``"database://"`` (the study's SQLite file or PostgreSQL database), each with the local
directory's guarantees: names checked, atomic writes, a missing checkpoint an error, pickles
refused, orphaned temporaries removed, garbage collection — and two worker processes sharing
the checkpoints in a PBT run where exploited members load their donors'.
"""

from __future__ import annotations

import os
import pickle
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from poptune import CheckpointError, ConfigurationError, Continuous, Study, algorithms
from poptune._checkpoint_files import HOST
from poptune.checkpoints import IN_DATABASE, CheckpointStore
from poptune.exceptions import StorageError
from poptune.storage import get_storage
from poptune.trial import Trial

from . import objectives
from .conftest import forget_storages, make_url
from .test_checkpoint_safety import BAD_NAMES, _Marker

KINDS = ["memory", "s3", "db-sqlite", "db-postgres"]


# -- an S3-protocol server on 127.0.0.1 ----------------------------------------------------------
@pytest.fixture(scope="module")
def s3_server():
    pytest.importorskip("s3fs", reason="needs s3fs: pip install 'poptune[s3]'")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    region = os.environ.get("AWS_DEFAULT_REGION")
    os.environ["AWS_DEFAULT_REGION"] = "us-east-1"  # worker processes inherit it
    yield f"http://{host}:{port}"
    if region is None:
        os.environ.pop("AWS_DEFAULT_REGION", None)
    else:
        os.environ["AWS_DEFAULT_REGION"] = region
    server.stop()


def s3_options(endpoint: str) -> dict:
    """Anonymous-looking test credentials: moto accepts any."""
    return {"endpoint_url": endpoint, "key": "testing", "secret": "testing"}


def new_bucket(endpoint: str) -> str:
    import s3fs

    bucket = f"run-{uuid.uuid4().hex[:10]}"
    s3fs.S3FileSystem(**s3_options(endpoint), skip_instance_cache=True).mkdir(bucket)
    return f"s3://{bucket}/ckpt"


@pytest.fixture(params=KINDS)
def where(request, tmp_path):
    """(storage URL or None, checkpoint_dir, checkpoint_options) for one backend."""
    kind = request.param
    if kind == "memory":
        yield None, f"memory://ckpt-{uuid.uuid4().hex[:8]}", None
    elif kind == "s3":
        endpoint = request.getfixturevalue("s3_server")
        yield None, new_bucket(endpoint), s3_options(endpoint)
    else:
        url = make_url(kind.split("-")[1], tmp_path)
        yield url, IN_DATABASE, {"chunk_bytes": 4096}
    forget_storages()


def _params():
    return [Continuous("lr", [0.001, 0.01])]


def pbt_study(where, generations=3, population=4, **kw):
    url, location, options = where
    pbt = algorithms.PopulationBasedTraining(generations, population, quantile_fraction=0.25)
    return Study(_params(), pbt, False, seed=5, storage=url, study_name="remote",
                 checkpoint_dir=location, checkpoint_options=options, **kw)  # fmt: skip


def _store(where, **kwargs):
    """A store of a fresh study (the database needs one), and the study."""
    study = pbt_study(where)
    url, location, options = where
    store = CheckpointStore(location, options=options, storage=study._storage,
                            study_id=study._study_id, **kwargs)  # fmt: skip
    return store, study


# -- the same contract on every backend ---------------------------------------------------------
def test_a_checkpoint_round_trips_and_errors_name_what_is_missing(where):
    study = pbt_study(where, generations=2, population=2)
    first = [study.get_suggestion() for _ in range(2)]
    for t in first:
        assert t.load_path is None and t.load_checkpoint() is None
        big = np.arange(5000, dtype=np.float64) + t.id  # 40 kB: several 4 kB database chunks
        location = t.save_checkpoint({"w": big, "trial": t.id})
        assert location == t.checkpoint_path and isinstance(location, str)
        t.report(float(t.id), iteration=1)
        study.finalize(t)
    assert study.checkpoints.names() == ["1", "2"]
    nxt = study.get_suggestion()
    state = nxt.load_checkpoint()
    assert state["trial"] == int(nxt.load_from)
    assert np.array_equal(state["w"], np.arange(5000) + int(nxt.load_from))
    assert nxt.load_path == study.checkpoints.path(nxt.load_from)
    study.checkpoints._backend.delete(nxt.load_from)  # someone removed the donor's checkpoint
    missing = f"starts from checkpoint '{nxt.load_from}'.*does not"
    with pytest.raises(CheckpointError, match=missing):
        nxt.load_checkpoint()
    with pytest.raises(CheckpointError, match="does not exist"):
        nxt.load_path  # noqa: B018


def test_names_outside_the_prefix_are_refused_and_nothing_is_written(where):
    store, _ = _store(where)
    for name in BAD_NAMES:
        with pytest.raises(CheckpointError, match="is refused"):
            store.save(Trial(1, {"save_to": name}), {"w": 1})
        with pytest.raises(CheckpointError, match="load_from"):
            store.load(Trial(2, {"load_from": name}))
    assert store.names() == [] and store._backend.temporaries() == []


def test_a_pickle_is_refused_and_its_payload_never_runs(where, tmp_path):
    store, _ = _store(where)
    marker = tmp_path / "ran"
    payload = pickle.dumps(_Marker(str(marker)))
    store._backend.write("1", f".1.{HOST}.{os.getpid()}.ab.tmp", lambda fh: fh.write(payload))
    with pytest.raises(CheckpointError, match="allow_pickle"):
        store.load(Trial(2, {"load_from": "1"}))
    with pytest.raises(CheckpointError, match="allow_pickle"):
        store.read("1")
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="allow_pickle"):
        store.save(Trial(3, {}), {"obj": _Marker(str(marker))})
    assert store.names() == ["1"]


def test_a_failed_write_leaves_neither_a_checkpoint_nor_a_temporary(where):
    store, _ = _store(where)
    store.save(Trial(1, {}), {"w": np.zeros(3)})

    def breaks(fh):
        fh.write(b"x" * 20000)
        raise RuntimeError("the writer died")

    with pytest.raises(RuntimeError, match="died"):
        store.save_with(Trial(1, {}), breaks)
    assert np.array_equal(store.read("1")["w"], np.zeros(3))  # the old checkpoint, whole
    assert store.names() == ["1"] and store._backend.temporaries() == []


def test_a_reader_sees_the_old_checkpoint_or_the_new_one_never_a_part(where):
    store, _ = _store(where)
    trial = Trial(1, {})
    store.save(trial, {"v": np.full(3000, 0.0)})
    stop, seen, errors = threading.Event(), set(), []

    def read():
        while not stop.is_set():
            try:
                w = store.read("1")["v"]
            except Exception as exc:  # noqa: BLE001 - any failure is the finding
                errors.append(exc)
                return
            assert len(set(w.tolist())) == 1  # one writer's values, all of them
            seen.add(float(w[0]))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(1, 9):
            store.save(trial, {"v": np.full(3000, float(i))})
    finally:
        stop.set()
        reader.join()
    assert errors == [] and seen <= {float(i) for i in range(9)}
    assert store.read("1")["v"][0] == 8.0
    assert store._backend.temporaries() == []


def test_orphaned_temporaries_are_removed_and_a_live_writers_kept(where):
    store, _ = _store(where, orphan_age=3600)
    dead = f".7.{HOST}.{2**22 + 12345}.dead.tmp"  # this machine, a pid that does not exist
    live = f".8.{HOST}.{os.getpid()}.live.tmp"  # this very process: never removed
    other = ".9.0123456789ab.4242.othr.tmp"  # another machine, fresh: kept for now
    for tmp in (dead, live, other):
        _leave_temporary(store, tmp)
    assert sorted(store.remove_orphans()) == [dead]
    assert sorted(t for t, _ in store._backend.temporaries()) == sorted([live, other])
    assert store.names() == []  # a temporary is never a checkpoint
    young = CheckpointStore.__new__(CheckpointStore)
    young.__dict__.update(store.__dict__, orphan_age=1e-9)  # the other machine's is now stale
    assert young.remove_orphans() == [other]


def _leave_temporary(store, tmp):
    """What a writer killed mid-write leaves behind."""
    backend = store._backend
    if hasattr(backend, "fs"):
        backend.fs.pipe(backend._key(tmp), b"partial")
        backend._fresh()
    else:
        from poptune.storage._schema import checkpoint_chunks

        with backend._begin(write=True) as conn:
            conn.execute(sa.insert(checkpoint_chunks).values(
                upload=tmp, seq=0, study_id=backend.study_id, created_at=time.time(),
                data=b"partial"))  # fmt: skip


def test_garbage_collection_keeps_what_is_needed(where):
    study = pbt_study(where, generations=4, population=4, keep_checkpoints=1)
    study.optimize(objectives.pbt_weights, show_progress=False)
    kept = sorted(int(n) for n in study.checkpoints.names())
    last_gen = {t.id for t in study.trials if t.generation == 4}
    assert set(kept) == last_gen | {study.get_best_result()["Trial-ID"]}
    assert study.checkpoints._backend.temporaries() == []


# -- two worker processes share the checkpoints -------------------------------------------------
@pytest.mark.parametrize("kind", ["s3", "db-sqlite", "db-postgres"])
def test_two_worker_processes_share_checkpoints_and_exploited_members_load_donors(
    kind, tmp_path, request
):
    if kind == "s3":
        endpoint = request.getfixturevalue("s3_server")
        where = (make_url("sqlite", tmp_path), new_bucket(endpoint), s3_options(endpoint))
    else:
        where = (make_url(kind.split("-")[1], tmp_path), IN_DATABASE, {"chunk_bytes": 1024})
    study = pbt_study(where, generations=3, population=4)
    study.optimize(objectives.pbt_weights, n_workers=2, show_progress=False)
    trials = {t.id: t for t in study.trials}
    assert len(trials) == 12 and all(t.status.value == "COMPLETED" for t in trials.values())
    exploited = [t for t in trials.values() if t.explore]
    assert exploited, "the run exploited no member"
    assert any(trials[int(t.load_from)].member != t.member for t in exploited)
    store = study.checkpoints
    for t in trials.values():
        saved = store.read(t.save_to)
        if t.generation == 1:
            assert saved["loaded_from"] is None
            continue
        assert saved["loaded_from"] == int(t.load_from)  # started from the donor's checkpoint
        donor = store.read(t.load_from)
        assert np.allclose(saved["weights"], donor["weights"] + t.parameters["lr"] * 100.0)
    assert store._backend.temporaries() == []
    forget_storages()


# -- the database: chunks, size limit, bookkeeping -----------------------------------------------
@pytest.fixture(params=["sqlite", "postgres"])
def db_where(request, tmp_path):
    yield make_url(request.param, tmp_path), IN_DATABASE, {"chunk_bytes": 1024}
    forget_storages()


def _rows(study, table):
    engine = study._storage._engine
    with engine.connect() as conn:
        return conn.exec_driver_sql(f"SELECT COUNT(*) FROM {table}").scalar_one()  # noqa: S608


def test_the_database_writes_chunks_and_replaces_them_whole(db_where):
    study = pbt_study(db_where)
    trial = study.get_suggestion()
    trial.save_checkpoint({"w": np.zeros(1000)})  # 8 kB of arrays: about 9 chunks of 1 kB
    n = _rows(study, "poptune_checkpoint_chunks")
    assert n >= 8 and _rows(study, "poptune_checkpoints") == 1
    trial.save_checkpoint({"w": np.zeros(10)})  # replaced: the old chunks go with it
    assert _rows(study, "poptune_checkpoint_chunks") == 1
    assert trial.checkpoint_path == f"database://{study._study_id}/{trial.id}"


def test_the_size_limit_is_enforced_with_a_clear_error(db_where):
    url, location, _ = db_where
    study = pbt_study((url, location, {"max_bytes": 10_000}))
    trial = study.get_suggestion()
    with pytest.raises(CheckpointError, match=r"more than the 0.0 MiB.*max_bytes"):
        trial.save_checkpoint({"w": np.zeros(5000)})
    assert _rows(study, "poptune_checkpoint_chunks") == 0
    trial.save_checkpoint({"w": np.zeros(10)})  # small enough
    with pytest.raises(ConfigurationError, match="max_bytes must be an int"):
        pbt_study((url, location, {"max_bytes": "1GB"})).checkpoints  # noqa: B018
    with pytest.raises(ConfigurationError, match="'endpoint_url'"):
        pbt_study((url, location, {"endpoint_url": "http://x"}))


def test_a_corrupt_chunk_is_an_error_not_a_different_state(db_where):
    study = pbt_study(db_where)
    trial = study.get_suggestion()
    trial.save_checkpoint({"w": np.zeros(1000)})
    with study._storage._engine.connect() as conn:  # autocommit: the statement is committed
        conn.execute(sa.text("UPDATE poptune_checkpoint_chunks SET data = :d WHERE seq = 2"),
                     {"d": b"\1" * 1024})  # fmt: skip
    with pytest.raises(CheckpointError, match="is corrupt"):
        study.checkpoints.read(str(trial.id))


def test_deleting_the_study_deletes_its_checkpoints(db_where):
    study = pbt_study(db_where)
    study.get_suggestion().save_checkpoint({"w": np.zeros(500)})
    get_storage(db_where[0]).delete_study("remote")
    assert _rows(study, "poptune_checkpoints") == 0
    assert _rows(study, "poptune_checkpoint_chunks") == 0


def test_a_study_in_memory_cannot_keep_checkpoints_in_a_database():
    with pytest.raises(ConfigurationError, match="storage='sqlite:///runs.db'"):
        pbt_study((None, IN_DATABASE, None))


def test_a_read_only_opening_reads_checkpoints_and_writes_none(db_where):
    from poptune.storage.sql import SQLStorage

    study = pbt_study(db_where)
    trial = study.get_suggestion()
    trial.save_checkpoint({"w": np.arange(3)})
    reader = SQLStorage(db_where[0], read_only=True)
    store = CheckpointStore(IN_DATABASE, storage=reader, study_id=study._study_id)
    assert np.array_equal(store.read(str(trial.id))["w"], np.arange(3))
    with pytest.raises(StorageError, match="read-only"):
        store.save(Trial(9, {}), {"w": 1})
    reader.close()


# -- locations and options ----------------------------------------------------------------------
def test_locations_and_options_are_checked_where_the_study_is_made(tmp_path):
    pbt = algorithms.PopulationBasedTraining(2, 2)
    with pytest.raises(ConfigurationError, match="knows no file system 'nosuchfs'"):
        Study(_params(), pbt, False, checkpoint_dir="nosuchfs://x")
    with pytest.raises(ConfigurationError, match="is a local directory"):
        Study(_params(), pbt, False, checkpoint_dir=tmp_path, checkpoint_options={"anon": True})
    with pytest.raises(ConfigurationError, match="needs a checkpoint_dir"):
        Study(_params(), pbt, False, checkpoint_options={"anon": True})
    with pytest.raises(ConfigurationError, match="dict of str keys"):
        Study(_params(), pbt, False, checkpoint_dir="memory://x", checkpoint_options=[1])
    local = Study(_params(), pbt, False, checkpoint_dir=f"file://{tmp_path}/c")
    assert local.checkpoint_dir == Path(f"{tmp_path}/c")  # a file:// URL is a local directory
    saved = local.get_suggestion().save_checkpoint({"w": 1})
    assert saved == tmp_path / "c" / local.name / "1"  # the study's own folder in it


def test_two_poptune_workers_share_checkpoints_in_the_database(tmp_path):
    import subprocess
    import sys

    url = make_url("sqlite", tmp_path)
    study = pbt_study((url, IN_DATABASE, None), generations=3, population=4)
    repo = Path(__file__).resolve().parents[1]
    command = [sys.executable, "-m", "poptune", "worker", url, "remote",
               "tests.objectives:pbt_weights", "--checkpoint-dir", "database://",
               "--checkpoint-option", "chunk_bytes=2048"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo / "src"), str(repo)])}
    workers = [subprocess.Popen(command, cwd=repo, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(2)]  # fmt: skip
    for worker in workers:
        _, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err
    trials = {t.id: t for t in study.trials}
    assert len(trials) == 12 and all(t.status.value == "COMPLETED" for t in trials.values())
    for t in trials.values():
        if t.load_from:
            assert study.checkpoints.read(t.save_to)["loaded_from"] == int(t.load_from)
    with study._storage._engine.connect() as conn:  # written in 2 kB chunks
        assert conn.exec_driver_sql("SELECT MAX(LENGTH(data)) FROM poptune_checkpoint_chunks"
                                    ).scalar_one() <= 2048  # fmt: skip
    bad = subprocess.run([*command[:-2], "--checkpoint-option", "chunk_bytes"], cwd=repo,
                         env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert bad.returncode != 0 and "expected KEY=VALUE" in bad.stderr
    forget_storages()


def test_the_torch_integration_saves_and_loads_through_every_backend(where):
    torch = pytest.importorskip("torch")
    from poptune.integrations import torch as pt_torch

    study = pbt_study(where, generations=2, population=2)
    for t in (study.get_suggestion(), study.get_suggestion()):
        torch.manual_seed(t.id)
        model = torch.nn.Linear(3, 2)
        optimizer = torch.optim.SGD(model.parameters(), lr=t.parameters["lr"], momentum=0.9)
        state = pt_torch.load_checkpoint(t, model, optimizer)
        assert state.fresh
        location = pt_torch.save_checkpoint(t, model, optimizer, epoch=1)
        assert location == t.checkpoint_path
        t.report(float(t.id), iteration=1)
        study.finalize(t)
    nxt = study.get_suggestion()
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    state = pt_torch.load_checkpoint(nxt, model, optimizer)
    assert state.epoch == 1 and state.path == nxt.load_path
    torch.manual_seed(int(nxt.load_from))
    assert torch.equal(model.weight, torch.nn.Linear(3, 2).weight)  # the donor's weights
    assert optimizer.param_groups[0]["lr"] == nxt.parameters["lr"]  # the trial's, applied
    raw = nxt.load_checkpoint()  # the same file, read by the store's pickle-free reader
    assert raw["format"] == pt_torch.FORMAT and raw["epoch"] == 1
    study.checkpoints._backend.delete(nxt.load_from)
    with pytest.raises(CheckpointError, match="does not exist"):
        pt_torch.load_checkpoint(nxt, model, optimizer)


_DB_WRITER = """
import sys, time
import numpy as np
import poptune as pt
from poptune.storage._blobs import DatabaseBackend

DatabaseBackend._commit = lambda *a: time.sleep(3600)  # stop between the chunks and the commit
from poptune.study import join_study
study = join_study(sys.argv[1], "remote", checkpoint_dir="database://",
                      checkpoint_options={"chunk_bytes": 1024})
study.checkpoints.save(pt.Trial(7, {"save_to": "7"}), {"w": np.zeros(2000)})
"""


def test_a_writer_killed_mid_write_leaves_chunks_the_next_store_removes(db_where, tmp_path):
    import signal
    import subprocess
    import sys

    study = pbt_study(db_where)
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo / "src")}
    writer = subprocess.Popen([sys.executable, "-c", _DB_WRITER, db_where[0]], env=env)
    try:
        deadline = time.monotonic() + 120
        while _rows(study, "poptune_checkpoint_chunks") < 16:  # all 16 kB of its chunks
            assert writer.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(0.5)
        assert study.checkpoints.remove_orphans() == []  # its writer lives: kept
        assert study.checkpoints.names() == []  # and no checkpoint: it was never committed
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    store = CheckpointStore(IN_DATABASE, storage=study._storage, study_id=study._study_id)
    assert store._backend.temporaries() == []  # opening the store removed the dead writer's
    assert _rows(study, "poptune_checkpoint_chunks") == 0
