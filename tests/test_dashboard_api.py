"""The dashboard's JSON API and server, without a browser (tests/test_dashboard_browser.py has
the page in Chromium)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request

import pytest

pytest.importorskip("starlette", reason='the dashboard extra: pip install "poptune[dashboard]"')
pytest.importorskip("uvicorn", reason='the dashboard extra: pip install "poptune[dashboard]"')

from starlette.testclient import TestClient  # noqa: E402

import poptune  # noqa: E402
from poptune.dashboard import DashboardData, start_dashboard  # noqa: E402
from poptune.dashboard.app import LOOPBACK_HOSTS, create_app, plotly_js_path  # noqa: E402
from poptune.exceptions import ConfigurationError  # noqa: E402

XSS = "<script>alert(1)</script>"


def _pbt_study(storage, name="pbt", generations=3, population=4, maximize=True, seed=0):
    params = [
        poptune.Continuous("lr", [1e-4, 1e-1], "log"),
        poptune.Choice("act", ["relu", XSS]),
    ]
    algorithm = poptune.algorithms.PopulationBasedTraining(
        population_size=population, num_generations=generations, perturbation_factors=(0.8, 1.2)
    )
    study = poptune.Study(
        params, algorithm, lower_is_better=not maximize, storage=storage, study_name=name,
        seed=seed,
    )  # fmt: skip
    for trial in study:
        value = trial.parameters["lr"] * 10 + trial.generation
        study.add_observation(trial, objective=value, iteration=trial.generation)
        study.finalize(trial)
    return study


@pytest.fixture
def client(db_url):
    study = _pbt_study(db_url)
    data = DashboardData(study._storage, allow_stop=True)
    with TestClient(create_app(data)) as c:
        c.study = study
        yield c


def test_studies_lists_counts_and_best(client):
    studies = client.get("/api/studies").json()
    assert [s["name"] for s in studies] == ["pbt"]
    s = studies[0]
    trials = client.study.trials
    assert s["trials"] == len(trials) == 12
    assert s["counts"]["COMPLETED"] == 12 and s["counts"]["RUNNING"] == 0
    best = client.study.get_best_result()
    assert s["best"] == pytest.approx(best["Objective"]) and s["best_trial"] == best["Trial-ID"]
    assert s["direction"] == "maximize" and s["algorithm"] == "PopulationBasedTraining"
    assert s["pbt"] is True


def test_study_detail_has_parameters_and_404_for_unknown(client):
    body = client.get("/api/studies/pbt").json()
    assert [p["name"] for p in body["parameters"]] == ["lr", "act"]
    assert body["parameters"][1]["range"] == ["relu", XSS]
    for path in ("/api/studies/nope", "/api/studies/nope/trials", "/api/studies/nope/lineage"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert "nope" in response.json()["error"]
    missing = client.get("/api/studies/pbt/trials/999")
    assert missing.status_code == 404 and "999" in missing.json()["error"]
    assert client.get("/no/such/page").status_code == 404


def test_trials_shape_filters_and_sorting(client):
    body = client.get("/api/studies/pbt/trials").json()
    rows = body["trials"]
    assert [r["id"] for r in rows] == list(range(1, 13))
    for row, trial in zip(rows, client.study.trials, strict=True):
        assert row["status"] == "COMPLETED"
        assert row["parameters"] == {"lr": trial.parameters["lr"], "act": trial.parameters["act"]}
        assert row["generation"] == trial.generation and row["member"] == trial.member
        assert row["parent"] == trial.parent and row["explore"] == trial.explore
        assert row["observations"] == [[trial.generation, pytest.approx(row["last"])]]
    gen2 = client.get("/api/studies/pbt/trials?generation=2").json()["trials"]
    assert [r["id"] for r in gen2] == [t.id for t in client.study.trials if t.generation == 2]
    assert client.get("/api/studies/pbt/trials?status=FAILED").json()["trials"] == []
    by_lr = client.get("/api/studies/pbt/trials?sort=lr&order=desc").json()["trials"]
    lrs = [r["parameters"]["lr"] for r in by_lr]
    assert lrs == sorted(lrs, reverse=True)


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("status=DONE", "DONE"),
        ("sort=nope", "nope"),
        ("order=up", "up"),
        ("since=-1", "-1"),
        ("since=abc", "abc"),
        ("generation=x", "'x'"),
        ("offset=-3", "-3"),
        ("limit=0", "0"),
        ("limit=999999", "999999"),
        ("observations=maybe", "maybe"),
    ],
)
def test_bad_query_parameters_are_400_naming_the_value(client, query, words):
    response = client.get(f"/api/studies/pbt/trials?{query}")
    assert response.status_code == 400
    assert words in response.json()["error"]


def _random_study(storage, n=250, name="many"):
    study = poptune.Study(
        [poptune.Continuous("x", [0, 1]), poptune.Choice("c", ["a", "b"])],
        poptune.algorithms.RandomSearch(), lower_is_better=True,
        storage=storage, study_name=name, seed=1,
    )  # fmt: skip
    for _ in range(n):
        trial = study.get_suggestion()
        if trial.id % 10 == 0:  # some trials without any observation
            study.finalize(trial, "FAILED")
            continue
        for it in range(1, 4 + trial.id % 7):
            study.add_observation(trial, trial.parameters["x"] + 1 / it, iteration=it)
        study.finalize(trial)
    return study


def test_trials_are_paged_sorted_and_filtered_by_the_server():
    study = _random_study(poptune.storage.MemoryStorage())
    client = TestClient(create_app(DashboardData(study._storage)))
    page = client.get("/api/studies/many/trials?offset=100&limit=50").json()
    assert page["total"] == 250 and page["offset"] == 100
    assert [r["id"] for r in page["trials"]] == list(range(101, 151))
    # Sorted by best (minimize): the server's order over every trial, trials without a best
    # last in either order, then paged.
    everything = {t.id: t for t in study.trials}

    def best(tid):
        obs = everything[tid].best_observation(True)
        return None if obs is None else obs.objective

    for order in ("asc", "desc"):
        ids = []
        for offset in range(0, 250, 60):
            answer = client.get(
                f"/api/studies/many/trials?sort=best&order={order}&offset={offset}&limit=60"
                "&observations=0"
            ).json()
            assert all("observations" not in r for r in answer["trials"])
            ids += [r["id"] for r in answer["trials"]]
        assert sorted(ids) == sorted(everything)
        values = [best(i) for i in ids if best(i) is not None]
        assert values == sorted(values, reverse=order == "desc")
        assert all(best(i) is None for i in ids[len(values) :])  # missing values last
        assert len(values) == 225
    failed = client.get("/api/studies/many/trials?status=FAILED&limit=10").json()
    assert failed["total"] == 25 and [r["id"] for r in failed["trials"]] == list(range(10, 110, 10))
    beyond = client.get("/api/studies/many/trials?offset=1000&limit=10").json()
    assert beyond["trials"] == [] and beyond["total"] == 250


def test_curves_are_the_best_and_newest_trials_downsampled():
    storage = poptune.storage.MemoryStorage()
    study = _random_study(storage)
    long = study.get_suggestion()  # a running trial with 1,000 observations
    for it in range(1, 1001):
        study.add_observation(long, 5.0 - it / 1000, iteration=it)
    client = TestClient(create_app(DashboardData(storage)))
    answer = client.get("/api/studies/many/curves?top=10&recent=5&points=50").json()
    assert answer["total"] == 226  # trials with at least one observation
    ids = [c["id"] for c in answer["trials"]]
    assert len(ids) == 15 and ids == sorted(ids)
    bests = sorted(
        (t.best_observation(True).objective, t.id) for t in study.trials if t.observations
    )
    assert {tid for _, tid in bests[:10]} <= set(ids)
    assert long.id in ids  # running, so among the newest
    curve = next(c for c in answer["trials"] if c["id"] == long.id)
    its = [o[0] for o in curve["observations"]]
    assert len(its) <= 51 and its[0] == 1 and its[-1] == 1000 and its == sorted(its)
    assert curve["status"] == "RUNNING"
    default = client.get("/api/studies/many/curves").json()
    assert len(default["trials"]) == 100  # 50 best + 50 newest
    assert client.get("/api/studies/many/curves?points=1").status_code == 400


def test_pbt_curves_are_the_best_lineage_and_start_at_the_parent():
    storage = poptune.storage.MemoryStorage()
    study = _pbt_study(storage, generations=8, population=4)
    client = TestClient(create_app(DashboardData(storage)))
    answer = client.get("/api/studies/pbt/curves?top=20&recent=0").json()
    trials = {t.id: t for t in study.trials}
    best = study.get_best_result()["Trial-ID"]
    line, current = [], trials[best]
    while current is not None:  # the best trial and every ancestor: its whole lineage
        line.append(current.id)
        current = trials.get(current.parent) if current.parent is not None else None
    assert sorted(c["id"] for c in answer["trials"]) == sorted(line)
    for curve in answer["trials"]:
        trial = trials[curve["id"]]
        assert (curve["member"], curve["generation"], curve["parent"]) == (
            trial.member, trial.generation, trial.parent,
        )  # fmt: skip
        if trial.parent is None:
            assert curve["start"] is None
        else:  # where its curve continues: the parent's last observation
            last = trials[trial.parent].last_observation
            assert curve["start"] == [last.iteration, last.objective]


def test_since_returns_only_what_changed(db_url):
    study = poptune.Study(
        [poptune.Continuous("x", [0, 1])],
        poptune.algorithms.RandomSearch(max_num_trials=10),
        lower_is_better=True,
        storage=db_url,
        study_name="live",
    )
    first = study.get_suggestion()
    study.add_observation(first, objective=1.0, iteration=1)
    client = TestClient(create_app(DashboardData(study._storage)))
    body = client.get("/api/studies/live/trials").json()
    version = body["version"]
    assert [r["id"] for r in body["trials"]] == [first.id]
    assert client.get(f"/api/studies/live/trials?since={version}").json()["trials"] == []
    second = study.get_suggestion()
    study.add_observation(first, objective=0.5, iteration=2)
    changed = client.get(f"/api/studies/live/trials?since={version}").json()
    assert sorted(r["id"] for r in changed["trials"]) == [first.id, second.id]
    row = next(r for r in changed["trials"] if r["id"] == first.id)
    assert row["observations"] == [[1, 1.0], [2, 0.5]] and row["best"] == 0.5
    assert changed["version"] > version


def test_lineage_nodes_and_edges_match_the_trials(client):
    body = client.get("/api/studies/pbt/lineage").json()
    trials = {t.id: t for t in client.study.trials}
    assert sorted(n["id"] for n in body["nodes"]) == sorted(trials)
    expected = {
        (t.parent, t.id, trials[t.parent].member != t.member)
        for t in trials.values()
        if t.parent is not None
    }
    assert {(e["source"], e["target"], e["exploit"]) for e in body["edges"]} == expected
    assert any(e["exploit"] for e in body["edges"])  # this seed exploits at least once
    for node in body["nodes"]:
        trial = trials[node["id"]]
        assert node["generation"] == trial.generation
        assert node["objective"] == pytest.approx(trial.last_observation.objective)
        founder = trial.ancestors[0] if trial.ancestors else trial.id
        assert node["founder"] == founder


def test_trial_detail_has_the_schedule(client):
    last = client.study.trials[-1]
    body = client.get(f"/api/studies/pbt/trials/{last.id}").json()
    assert body["schedule"] == json.loads(json.dumps(client.study.schedule(last)))


def test_stop_action_reaches_the_trial_and_is_guarded(db_url):
    study = poptune.Study(
        [poptune.Continuous("x", [0, 1])],
        poptune.algorithms.RandomSearch(max_num_trials=5),
        lower_is_better=True,
        storage=db_url,
        study_name="stoppable",
    )
    running = study.get_suggestion()
    done = study.get_suggestion()
    study.add_observation(done, objective=1.0)
    study.finalize(done)
    read_only = TestClient(create_app(DashboardData(study._storage)))
    url = f"/api/studies/stoppable/trials/{running.id}/stop"
    refused = read_only.post(url, headers={"X-Poptune": "stop"})
    assert refused.status_code == 403 and "allow_stop" in refused.json()["error"]
    client = TestClient(create_app(DashboardData(study._storage, allow_stop=True)))
    assert client.post(url).status_code == 403  # no custom header: a cross-site form post
    assert client.get(url).status_code == 405
    assert not study.should_trial_stop(running)
    response = client.post(url, headers={"X-Poptune": "stop"})
    assert response.status_code == 200 and response.json()["stop_requested"] is True
    assert study.should_trial_stop(running) and running.should_stop()
    finished = client.post(
        f"/api/studies/stoppable/trials/{done.id}/stop", headers={"X-Poptune": "stop"}
    )
    assert finished.status_code == 409
    unknown = client.post("/api/studies/stoppable/trials/99/stop", headers={"X-Poptune": "stop"})
    assert unknown.status_code == 404


def test_static_files_plotly_from_the_package_and_security_headers(tmp_path):
    client = TestClient(create_app(DashboardData(poptune.storage.MemoryStorage())))
    page = client.get("/")
    assert page.status_code == 200 and "static/app.js" in page.text
    # Plotly is loaded by app.js when a plot is first shown, from this server
    assert '"static/plotly.min.js"' in client.get("/static/app.js").text
    assert "cdn" not in page.text.lower()
    csp = page.headers["content-security-policy"]
    script_src = csp.split("script-src")[1].split(";")[0]
    assert "'self'" in script_src and "unsafe-inline" not in script_src  # no inline scripts
    assert page.headers["x-content-type-options"] == "nosniff"
    plotly = client.get("/static/plotly.min.js")
    assert plotly.status_code == 200 and plotly.content == plotly_js_path().read_bytes()
    assert client.get("/static/app.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/static/../__init__.py").status_code == 404
    assert client.get("/api/studies").json() == []


def test_loopback_dashboard_refuses_foreign_host_headers():
    client = TestClient(
        create_app(DashboardData(poptune.storage.MemoryStorage()), trusted_hosts=LOOPBACK_HOSTS),
        base_url="http://127.0.0.1:8880",
    )
    assert client.get("/api/studies").status_code == 200
    rebinding = client.get("/api/studies", headers={"host": "evil.example:8880"})
    assert rebinding.status_code == 400


@pytest.mark.parametrize(
    "host, allowed",
    [
        ("127.0.0.1", True), ("127.0.0.1:8880", True), ("127.1.2.3:80", True),
        ("127.255.255.254", True), ("localhost", True), ("LOCALHOST:8880", True),
        ("localhost.:8880", True), ("app.localhost:8880", True), ("[::1]", True),
        ("[::1]:8880", True), ("::1", True), ("[::ffff:127.0.0.1]:8880", True),
        ("evil.example", False), ("evil.example:8880", False), ("127.0.0.1.evil.example", False),
        ("localhost.evil.example", False), ("128.0.0.1", False), ("[::2]:8880", False),
        ("0.0.0.0", False), ("", False), ("[::1", False), ("10.0.0.1:8880", False),
    ],
)  # fmt: skip
def test_the_loopback_host_check_covers_every_loopback_address(host, allowed):
    client = TestClient(
        create_app(DashboardData(poptune.storage.MemoryStorage()), trusted_hosts=LOOPBACK_HOSTS),
        base_url="http://127.0.0.1:8880",
    )
    answer = client.get("/api/studies", headers={"host": host})
    assert answer.status_code == (200 if allowed else 400), host


def test_a_dashboard_bound_to_any_loopback_address_checks_hosts():
    for bind in ("127.0.0.1", "localhost", "::1"):
        try:
            server = start_dashboard(poptune.storage.MemoryStorage(), host=bind, port=0,
                                     banner=False)  # fmt: skip
        except ConfigurationError:  # no IPv6 here
            continue
        try:
            assert server.loopback and "this machine only" in server.banner()
            base = server.url
            ok = urllib.request.Request(base + "api/info")
            with urllib.request.urlopen(ok, timeout=10) as answer:
                assert answer.status == 200
            evil = urllib.request.Request(base + "api/info", headers={"Host": "evil.example"})
            with pytest.raises(urllib.error.HTTPError) as info:
                urllib.request.urlopen(evil, timeout=10)
            assert info.value.code == 400
            info.value.close()
        finally:
            server.stop()


def _get(url: str) -> object:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def test_study_dashboard_port_serves_a_memory_study_live(capsys):
    study = poptune.Study(
        [poptune.Continuous("x", [0, 1])],
        poptune.algorithms.RandomSearch(max_num_trials=3),
        lower_is_better=True,
        dashboard_port=0,
        study_name="in-memory",
    )
    try:
        url = study.dashboard_url
        assert url.startswith("http://127.0.0.1:") and url.endswith("#/study/in-memory")
        assert url in capsys.readouterr().out  # the banner
        base = url.split("#")[0]
        assert _get(base + "api/studies")[0]["trials"] == 0
        trial = study.get_suggestion()
        study.add_observation(trial, objective=0.25)
        rows = _get(base + "api/studies/in-memory/trials")["trials"]
        assert rows[0]["observations"] == [[1, 0.25]]
    finally:
        study.close()
    assert study.dashboard_url is None
    with pytest.raises(urllib.error.URLError):
        _get(base + "api/studies")


def test_port_in_use_is_a_clear_error_and_a_study_goes_on(caplog):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ConfigurationError, match=f"127.0.0.1:{port}"):
            start_dashboard(poptune.storage.MemoryStorage(), port=port, banner=False)
        study = poptune.Study(
            [poptune.Continuous("x", [0, 1])],
            poptune.algorithms.RandomSearch(max_num_trials=1),
            lower_is_better=True,
            dashboard_port=port,
        )
    assert study.dashboard_url is None
    assert f"127.0.0.1:{port}" in caplog.text and "dashboard not started" in caplog.text
    with pytest.raises(ConfigurationError, match="70000"):
        start_dashboard(poptune.storage.MemoryStorage(), port=70000, banner=False)


def test_load_dashboard_from_a_saved_directory_and_a_database(tmp_path):
    study = _pbt_study(None, name="saved")
    study.save(tmp_path / "out")
    shown = poptune.Study.load_dashboard(tmp_path / "out", port=0)
    try:
        base = shown.dashboard_url.split("#")[0]
        assert _get(base + "api/studies")[0]["trials"] == 12
        with pytest.raises(poptune.exceptions.ReadOnlyStudyError):
            shown.get_suggestion()
    finally:
        shown.close()
    db = tmp_path / "two.db"
    _pbt_study(f"sqlite:///{db}", name="a", generations=1)
    _pbt_study(f"sqlite:///{db}", name="b", generations=1)
    with pytest.raises(poptune.exceptions.StudyNotFoundError, match="pass study_name"):
        poptune.Study.load_dashboard(db, port=0)
    shown = poptune.Study.load_dashboard(str(db), "b", port=0)
    try:
        assert shown.dashboard_url.endswith("#/study/b")
        assert {s["name"] for s in _get(shown.dashboard_url.split("#")[0] + "api/studies")} == {
            "a",
            "b",
        }
    finally:
        shown.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_dashboard_serves_and_reports_errors_in_one_line(tmp_path):
    db = tmp_path / "cli.db"
    _pbt_study(f"sqlite:///{db}", name="cli", generations=1)
    bad = subprocess.run(
        [sys.executable, "-m", "poptune", "dashboard", str(tmp_path / "missing.db")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "missing.db" in bad.stderr
    # (--study naming a study not created yet: served, waiting for it; test_dashboard_long_runs)
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "poptune", "dashboard", f"sqlite:///{db}", "--port", str(port),
         "--study", "cli"],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        banner = server.stdout.readline() + server.stdout.readline() + server.stdout.readline()
        assert f"http://127.0.0.1:{port}/#/study/cli" in banner
        deadline = time.monotonic() + 20
        while True:
            try:
                studies = _get(f"http://127.0.0.1:{port}/api/studies")
                break
            except urllib.error.URLError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert studies[0]["name"] == "cli"
    finally:
        server.terminate()
        server.wait(timeout=20)
        server.stdout.close()


SPAWN_SCRIPT = textwrap.dedent(
    """
    import multiprocessing, sys, time
    import poptune
    from tests.objectives import quadratic

    if __name__ == "__main__":
        multiprocessing.set_start_method("spawn")
        study = poptune.Study(
            [poptune.Continuous("lr", [1e-4, 1e-1], "log")],
            poptune.algorithms.RandomSearch(max_num_trials=4),
            lower_is_better=True, storage=sys.argv[1], study_name="spawned",
            dashboard_port=0,
        )
        assert study.dashboard_url is not None
        study.optimize(quadratic, n_workers=2)
        print("trials", len(study.trials), flush=True)
        # no close(): the dashboard thread must not keep the process alive
    """
)


def test_dashboard_under_spawn_never_blocks_exit(tmp_path):
    script = tmp_path / "spawned.py"
    script.write_text(SPAWN_SCRIPT)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(script), f"sqlite:///{tmp_path / 'spawn.db'}"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=root,
    )
    assert done.returncode == 0, done.stderr
    assert "trials 4" in done.stdout
    assert time.monotonic() - started < 100


def test_cli_dashboard_serves_a_saved_directory(tmp_path):
    _pbt_study(None, name="saved-cli", generations=2).save(tmp_path / "out")
    port = _free_port()
    with subprocess.Popen(
        [sys.executable, "-m", "poptune", "dashboard", str(tmp_path / "out"), "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    ) as server:
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    studies = _get(f"http://127.0.0.1:{port}/api/studies")
                    break
                except urllib.error.URLError:
                    assert time.monotonic() < deadline
                    time.sleep(0.1)
            assert [(s["name"], s["trials"]) for s in studies] == [("saved-cli", 8)]
        finally:
            server.terminate()
            server.wait(timeout=20)


def test_study_start_dashboard_with_stop_buttons_on_a_memory_study():
    study = poptune.Study(
        [poptune.Continuous("x", [0, 1])],
        poptune.algorithms.RandomSearch(max_num_trials=3),
        lower_is_better=True,
    )
    url = study.start_dashboard(port=0, allow_stop=True)
    try:
        assert url == study.dashboard_url
        trial = study.get_suggestion()
        request = urllib.request.Request(
            url.split("#")[0] + f"api/studies/{study.name}/trials/{trial.id}/stop",
            method="POST",
            headers={"X-Poptune": "stop"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
        assert trial.should_stop()
    finally:
        study.close()


def test_a_study_deleted_and_made_again_is_shown_afresh(tmp_path):
    url = f"sqlite:///{tmp_path / 'again.db'}"
    _pbt_study(url, name="again", generations=2)
    client = TestClient(create_app(DashboardData(poptune.storage.get_storage(url))))
    assert len(client.get("/api/studies/again/trials").json()["trials"]) == 8
    poptune.storage.get_storage(url).delete_study("again")
    assert client.get("/api/studies/again/trials").status_code == 404
    assert client.get("/api/studies").json() == []
    _pbt_study(url, name="again", generations=1)
    assert len(client.get("/api/studies/again/trials").json()["trials"]) == 4


def test_best_under_repeat_agg_is_the_best_mean_as_in_get_best_result(db_url):
    """Repeat(agg=True) ranks configurations by their mean over the repeats: the dashboard's
    best is get_best_result()'s (the single best observation belongs to another one)."""
    values = {0.1: [1.0, 9.0], 0.2: [4.0, 4.5], 0.3: [8.0, 8.5]}  # means 5.0, 4.25, 8.25
    study = poptune.Study(
        [poptune.Choice("x", list(values))],
        poptune.algorithms.Repeat(poptune.algorithms.GridSearch(), num_times=2, agg=True),
        lower_is_better=True, storage=db_url, study_name="repeat",
    )  # fmt: skip
    seen: dict[float, int] = {}
    for trial in study:
        x = trial.parameters["x"]
        study.add_observation(trial, objective=values[x][seen.get(x, 0)])
        seen[x] = seen.get(x, 0) + 1
        study.finalize(trial)
    best = study.get_best_result()
    assert best["Objective"] == pytest.approx(4.25)
    summary = DashboardData(study._storage).study_summary("repeat")
    assert summary["best"] == pytest.approx(4.25) and summary["best_trial"] == best["Trial-ID"]


def test_best_of_a_repeat_state_stored_before_result_groups(db_url):
    """A database written before Repeat published result_groups ranks as it did then."""
    study = poptune.Study(
        [poptune.Continuous("x", [0.0, 1.0])],
        poptune.algorithms.Repeat(poptune.algorithms.RandomSearch(4), num_times=3, agg=True),
        lower_is_better=True, storage=db_url, study_name="old", seed=1,
    )  # fmt: skip
    for trial in study:
        study.add_observation(trial, objective=trial.parameters["x"] + (trial.id % 3))
        study.finalize(trial)
    best = study.get_best_result()
    state = study._storage.get_algorithm_state(study._study_id)
    assert best["ObjectiveCount"] == 3 and len(state["result_groups"]) == 4
    study._storage.set_algorithm_state(
        study._study_id, {"inner": state["inner"], "groups": state["result_groups"]}
    )
    assert study.get_best_result() == best
    summary = DashboardData(study._storage).study_summary("old")
    assert summary["best_trial"] == best["Trial-ID"]
    assert summary["best"] == pytest.approx(best["Objective"])


def test_ranking_never_imports_a_module_the_database_names(monkeypatch):
    """The best is data (trials and the stored state's result_groups): a tampered or foreign
    config naming module:Class (at any depth) is never imported, and ranks as stored."""
    import importlib

    values = {0.1: [1.0, 9.0], 0.2: [4.0, 4.5]}  # means 5.0 and 4.25; 1.0 the best single one
    storage = poptune.MemoryStorage()
    study = poptune.Study(
        [poptune.Choice("x", list(values))],
        poptune.algorithms.Repeat(poptune.algorithms.GridSearch(), num_times=2, agg=True),
        lower_is_better=True, storage=storage, study_name="evil",
    )  # fmt: skip
    seen: dict[float, int] = {}
    for trial in study:
        x = trial.parameters["x"]
        study.add_observation(trial, objective=values[x][seen.get(x, 0)])
        seen[x] = seen.get(x, 0) + 1
        study.finalize(trial)
    config = storage.get_study_config(study._study_id)
    evil = {"type": "Repeat", "agg": True, "num_times": 2,
            "algorithm": {"type": "os:system", "command": "true"}}  # fmt: skip
    monkeypatch.setattr(storage, "get_study_config", lambda sid: {**config, "algorithm": evil})
    imported = []
    real = importlib.import_module
    monkeypatch.setattr(importlib, "import_module", lambda n, *a: imported.append(n) or real(n, *a))
    summary = DashboardData(storage).study_summary("evil")
    assert summary["best"] == pytest.approx(4.25) and summary["best_trial"] == 3
    assert summary["algorithm"] == "Repeat"
    assert imported == []


def test_a_corrupt_study_is_listed_with_its_error_and_the_others_stay_readable(tmp_path):
    import sqlite3

    url = f"sqlite:///{tmp_path / 'runs.db'}"
    _pbt_study(url, name="good")
    _pbt_study(url, name="bad")
    with sqlite3.connect(tmp_path / "runs.db") as conn:
        bad = "(SELECT study_id FROM poptune_studies WHERE name = 'bad')"
        conn.execute(
            f"UPDATE poptune_trials SET status = 'PWNED' WHERE trial_id = 2 AND study_id = {bad}"
        )
    from tests.conftest import forget_storages

    forget_storages()
    storage = poptune.storage.resolve(url, read_only=True)
    with TestClient(create_app(DashboardData(storage))) as client:
        listed = {s["name"]: s for s in client.get("/api/studies").json()}
        assert listed["good"]["counts"]["COMPLETED"] == 12 and "error" not in listed["good"]
        assert "'PWNED'" in listed["bad"]["error"] and "trial 2" in listed["bad"]["error"]
        one = client.get("/api/studies/bad")
        assert one.status_code == 500 and "'PWNED'" in one.json()["error"]
        assert client.get("/api/studies/good").status_code == 200
    forget_storages()
