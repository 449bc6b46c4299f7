"""The dashboard cannot hurt the training in its process: slow and idle clients are capped and
timed out, and its log stays small. With real sockets against a real server."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason='the dashboard extra: pip install "poptune[dashboard]"')
pytest.importorskip("uvicorn", reason='the dashboard extra: pip install "poptune[dashboard]"')

import poptune  # noqa: E402
from poptune.dashboard import MAX_CONNECTIONS, DashboardServer  # noqa: E402
from poptune.dashboard._guard import QuietLog  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
HALF_SENT = b"GET /api/studies HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "

# A training script with a dashboard in its process and a descriptor limit of 256: each trial
# opens files (a checkpoint written and read back) and writes to SQLite.
TRAINING = textwrap.dedent(
    """
    import json, logging, os, resource, sys, time
    import poptune as pt
    from poptune.dashboard import DashboardServer

    logging.basicConfig(level=logging.WARNING)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    folder, max_connections = sys.argv[1], int(sys.argv[2])
    url = f"sqlite:///{folder}/runs.db"
    study = pt.Study([pt.Continuous("x", [0, 1])], pt.algorithms.RandomSearch(max_num_trials=40),
                     True, storage=url, study_name="s", seed=0)
    server = DashboardServer(url, port=0, max_connections=max_connections).start()
    print(server.port, flush=True)
    while not os.path.exists(os.path.join(folder, "go")):
        time.sleep(0.05)
    errors = []
    for trial in study:
        try:
            path = os.path.join(folder, f"ckpt-{trial.id}.bin")
            for _ in range(3):
                with open(path, "wb") as f:
                    f.write(os.urandom(1024))
                with open(path, "rb") as f:
                    f.read()
                time.sleep(0.05)
            study.add_observation(trial, trial.parameters["x"], iteration=1)
            study.finalize(trial)
        except Exception as exc:
            errors.append(repr(exc))
            study.finalize(trial, "FAILED")
    counts = {}
    for t in study.trials:
        counts[t.status.value] = counts.get(t.status.value, 0) + 1
    print(json.dumps({"counts": counts, "errors": errors[:5]}), flush=True)
    server.stop()
    """
)


def _half_sent(port: int, n: int) -> list[socket.socket]:
    sockets = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        try:
            s.sendall(HALF_SENT)
        except OSError:  # already closed by the server to make room
            pass
        sockets.append(s)
    return sockets


def _closed_by_server(s: socket.socket, wait: float) -> bool:
    s.settimeout(wait)
    try:
        return s.recv(1024) == b""
    except TimeoutError:
        return False
    except OSError:  # reset
        return True


def test_half_sent_requests_beyond_the_descriptor_limit_do_not_fail_trials(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    process = subprocess.Popen(
        [sys.executable, "-c", TRAINING, str(tmp_path), str(MAX_CONNECTIONS)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    attackers: list[socket.socket] = []
    try:
        port = int(process.stdout.readline())
        attackers = _half_sent(port, 400)  # more than the process's 256 descriptors
        time.sleep(0.5)
        # A real user still gets an answer: the longest-waiting half-sent connection makes room.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/info", timeout=20) as answer:
            assert answer.status == 200
        (tmp_path / "go").touch()
        attackers += _half_sent(port, 300)  # and more while it trains
        out, err = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        for s in attackers:
            s.close()
    assert process.returncode == 0, err[-3000:]
    result = json.loads(out.strip().splitlines()[-1])
    assert result == {"counts": {"COMPLETED": 40}, "errors": []}
    assert len(err) < 20_000, f"{len(err)} bytes of log:\n{err[:3000]}"


def test_slow_and_idle_clients_are_disconnected_and_extra_ones_make_room(tmp_path):
    storage = poptune.storage.resolve(f"sqlite:///{tmp_path / 'runs.db'}")
    server = DashboardServer(storage, port=0, max_connections=8, header_timeout=1.0).start()
    try:
        idle = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        slow = _half_sent(server.port, 1)[0]
        started = time.monotonic()
        assert _closed_by_server(idle, 15) and _closed_by_server(slow, 15)
        assert time.monotonic() - started < 14  # 1 s deadline, with a generous margin
        idle.close()
        slow.close()
        # A slow client that does finish its headers in time is answered.
        ok = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        ok.sendall(b"GET /api/info HTTP/1.1\r\n")
        time.sleep(0.3)
        ok.sendall(b"Host: 127.0.0.1\r\nConnection: close\r\n\r\n")
        ok.settimeout(10)
        assert ok.recv(100).startswith(b"HTTP/1.1 200")
        ok.close()
        # Twenty half-sent connections against a cap of 8: the oldest are closed to make room.
        crowd = _half_sent(server.port, 20)
        time.sleep(0.3)
        alive = [s for s in crowd if not _closed_by_server(s, 0.05)]
        assert len(alive) <= 8
        with urllib.request.urlopen(server.url + "api/info", timeout=20) as answer:
            assert answer.status == 200
        for s in crowd:
            s.close()
    finally:
        server.stop()


def test_the_rate_limited_log_lets_a_few_through_then_counts_the_rest():
    quiet = QuietLog(burst=3, interval=0.5)
    log = logging.getLogger("poptune.test.quiet")
    log.propagate = False
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    handler = Keep()
    log.addHandler(handler)
    log.addFilter(quiet)
    try:
        for i in range(1000):
            log.warning("bad request %d", i)
        assert len(records) == 3
        time.sleep(0.6)
        log.warning("next")
        assert records[-1] == "next (and 997 similar message(s) suppressed)"
    finally:
        log.removeHandler(handler)
        log.removeFilter(quiet)
