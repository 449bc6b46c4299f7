"""The dashboard for real-length runs (issue 18): in Debian's Chromium (Playwright), over HTTP,
and with the ``poptune dashboard`` command and a training script as subprocesses.

The trial detail comes into view and stays within the window and live; a PBT population's
learning curves are one line per member with a legend; the parallel coordinates have a colour
bar; log axes get one label per decade; Plotly.js is served gzip-compressed and cached;
``--study`` waits for a study not created yet; ``keep_dashboard=True`` serves on after the
script's work until Ctrl-C.

``POPTUNE_SCREENSHOTS=docs/images`` saves the screenshots of docs/topics/dashboard-long-runs.md.
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason='the dashboard extra: pip install "poptune[dashboard]"')
pytest.importorskip("playwright.sync_api", reason="browser tests need Playwright")

import poptune  # noqa: E402
from poptune.dashboard import start_dashboard  # noqa: E402
from poptune.dashboard.app import plotly_js_path  # noqa: E402
from tests.conftest import CHROMIUM, forget_storages  # noqa: E402
from tests.test_dashboard_browser import Page  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
POPULATION, GENERATIONS = 8, 6

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason=f"browser tests need Debian's chromium at {CHROMIUM}"
)


def _pbt(url: str) -> poptune.Study:
    """A finished PBT study of 8 members over 6 generations, lr over four decades."""
    study = poptune.Study(
        [poptune.Continuous("lr", [1e-5, 1e-1], "log"), poptune.Continuous("momentum", [0, 1])],
        poptune.algorithms.PopulationBasedTraining(
            population_size=POPULATION, num_generations=GENERATIONS
        ),
        lower_is_better=True, storage=url, study_name="pbt8", seed=3,
    )  # fmt: skip
    loss = {}
    for trial in study:
        value = loss.get(trial.parent, 2.0)
        for step in (1, 2):
            value *= 0.9 - 0.5 * trial.parameters["momentum"] * 0.3
            iteration = (trial.generation - 1) * 2 + step
            study.add_observation(trial, objective=value, iteration=iteration)
        loss[trial.id] = value
        study.finalize(trial)
    return study


def _long_table(url: str) -> tuple[poptune.Study, poptune.Trial]:
    """120 trials, the first one still RUNNING: its detail would sit below 120 rows."""
    study = poptune.Study(
        [poptune.Continuous("x", [0, 1])],
        poptune.algorithms.RandomSearch(max_num_trials=200),
        lower_is_better=True, storage=url, study_name="long", seed=0,
    )  # fmt: skip
    running = study.get_suggestion()
    study.add_observation(running, objective=0.5, iteration=1)
    for _ in range(119):
        trial = study.get_suggestion()
        study.add_observation(trial, objective=trial.parameters["x"], iteration=1)
        study.finalize(trial)
    return study, running


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    db = f"sqlite:///{tmp_path_factory.mktemp('long') / 'runs.db'}"
    _pbt(db)
    yield db
    forget_storages()


@pytest.fixture(scope="module")
def server(url):
    dashboard = start_dashboard(url, port=0, allow_stop=True, banner=False)
    yield dashboard
    dashboard.stop()


@pytest.fixture
def page(browser, server):
    tab = Page(browser, server.url.split("#")[0])
    yield tab
    tab.close()


def test_a_clicked_trial_detail_is_in_view_within_the_window_and_live(page, url):
    study, running = _long_table(url)
    page.page.set_viewport_size({"width": 1280, "height": 800})
    page.open("#/study/long/trials", f'#trials tr[data-trial="{running.id}"]')
    page.page.locator(f'#trials tr[data-trial="{running.id}"]').click()
    detail = page.page.locator(f'#trial-detail[data-trial="{running.id}"]')
    detail.wait_for(timeout=10_000)
    page.page.wait_for_timeout(500)  # the scroll
    box = detail.bounding_box()
    assert page.page.evaluate("() => window.scrollY") > 2000  # it went down to the detail
    assert box["y"] >= 0 and box["y"] + box["height"] <= 800 + 1  # all of it in the window
    assert page.page.locator("#trial-detail button[data-stop]").count() == 1
    assert "RUNNING" in page.page.locator("#detail-status").inner_text()
    page.screenshot("detail")
    study.add_observation(running, objective=0.25, iteration=2)
    study.finalize(running)
    page.page.wait_for_function(
        "() => document.querySelector('#detail-status').innerText === 'COMPLETED'",
        timeout=15_000,
    )
    assert page.page.locator("#trial-detail button[data-stop]").count() == 0
    assert "0.25" in page.page.locator("#trial-detail").inner_text()
    assert page.errors == []


def test_a_long_detail_scrolls_inside_its_box(page, url):
    page.page.set_viewport_size({"width": 1280, "height": 300})
    trials = poptune.load_study(url, "pbt8").trials
    deepest = max(trials, key=lambda t: t.generation).id
    page.open("#/study/pbt8/trials", f'#trials tr[data-trial="{deepest}"]')
    page.page.locator(f'#trials tr[data-trial="{deepest}"]').click()
    page.page.wait_for_selector(f'#trial-detail[data-trial="{deepest}"] #schedule-table')
    sizes = page.page.evaluate(
        "() => { const d = document.getElementById('trial-detail');"
        " return [d.clientHeight, d.scrollHeight, window.innerHeight]; }"
    )
    assert sizes[0] < sizes[2]  # the box fits in the window...
    assert sizes[1] > sizes[0]  # ... and its content scrolls inside it
    assert page.errors == []


def test_pbt_learning_curves_are_one_line_per_member_with_a_legend(page, url):
    page.open("#/study/pbt8/curves", "#curves-plot .main-svg .scatterlayer .trace")
    page.page.wait_for_function(
        "() => document.getElementById('curves-plot').data.some(t => t.meta === 'member')"
    )
    traces = page.page.evaluate(
        "() => document.getElementById('curves-plot').data"
        ".map(t => ({name: t.name, x: t.x, ids: t.customdata}))"
    )
    assert [t["name"] for t in traces] == [f"member {m}" for m in range(POPULATION)]
    assert page.page.locator("#curves-plot .legend .traces").count() == POPULATION
    study = poptune.load_study(url, "pbt8")
    by_id = {t.id: t for t in study.trials}
    drawn = {tid for t in traces for tid in t["ids"] if tid is not None}
    for trace in traces:
        member = int(trace["name"].split()[1])
        mine = sorted((t for t in by_id.values() if t.member == member and t.id in drawn),
                      key=lambda t: t.generation)  # fmt: skip
        # one line through its generations: a break only where a trial's parent is another
        # member's (an exploit), and there the line starts again at the donor's last point
        jumps = sum(1 for t in mine[1:] if by_id[t.parent].member != member)
        segments = [
            s for s in re.split(r"N", "".join("N" if x is None else "p" for x in trace["x"])) if s
        ]
        assert len(segments) == 1 + jumps
        for t in mine:
            if t.parent is None:
                continue
            first = trace["ids"].index(t.id)
            assert trace["ids"][first - 1] == t.parent  # continues the parent's curve
            assert trace["x"][first - 1] == max(by_id[t.parent].observations)
    plotly = page.page.evaluate(
        "() => performance.getEntriesByType('resource').filter(e => e.name.includes('plotly'))"
        ".map(e => [e.name, e.encodedBodySize, e.decodedBodySize])"
    )
    assert len(plotly) == 1 and re.search(r"/static/plotly-[0-9a-f]{16}\.min\.js$", plotly[0][0])
    assert plotly[0][1] < plotly[0][2] / 2  # it came compressed
    page.screenshot("curves_members")
    assert page.errors == []


def test_parallel_coordinates_have_a_colour_bar_titled_with_the_objective(page):
    page.open("#/study/pbt8/parallel", "#parallel-plot .main-svg .scatterlayer .trace")
    page.page.wait_for_selector("#parallel-plot .colorbar", timeout=10_000)
    title = page.page.locator("#parallel-plot .colorbar .cbtitle").text_content()
    assert "objective" in title and "lower is better" in title
    assert page.page.locator("#parallel-plot .colorbar .cbaxis text").count() >= 2  # its scale
    page.screenshot("parallel_colorbar")
    assert page.errors == []


def _overlapping(boxes: list[dict]) -> bool:
    boxes = sorted(boxes, key=lambda b: b["y"])
    return any(a["y"] + a["height"] > b["y"] + 0.5 for a, b in zip(boxes, boxes[1:], strict=False))


def test_log_axis_ticks_are_one_label_per_decade(page):
    page.open("#/study/pbt8/schedules", "#schedule-plot .main-svg")
    page.page.select_option("#schedule-param", "lr")
    page.page.wait_for_function(
        "() => document.getElementById('schedule-plot')._fullLayout.yaxis.type === 'log'"
    )
    page.page.wait_for_timeout(300)
    labels = page.page.locator("#schedule-plot .yaxislayer-above .ytick text")
    texts = labels.all_text_contents()
    assert texts and all(re.fullmatch(r"1e[-\u2212]?\d+", t) for t in texts), texts
    assert not _overlapping([labels.nth(i).bounding_box() for i in range(labels.count())])
    page.screenshot("log_ticks")
    # the parallel coordinates' log axis: a label per decade too
    page.open("#/study/pbt8/parallel", "#parallel-plot .main-svg .scatterlayer .trace")
    page.page.wait_for_timeout(300)
    text = page.page.locator("#parallel-plot").inner_text()
    assert all(decade in text for decade in ("0.0001", "0.001", "0.01")), text
    assert page.errors == []


def _request(port: int, path: str, headers: dict[str, str]) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request("GET", path, headers=headers)
    response = connection.getresponse()
    response.body = response.read()  # type: ignore[attr-defined]
    connection.close()
    return response


def test_plotly_is_served_gzip_compressed_and_cached(server):
    raw = plotly_js_path().read_bytes()
    assert len(raw) > 4_000_000
    port = server.port
    info = json.loads(_request(port, "/api/info", {}).body)
    path = "/" + info["plotly"]
    assert re.fullmatch(r"/static/plotly-[0-9a-f]{16}\.min\.js", path)
    first = _request(port, path, {"Accept-Encoding": "gzip, deflate, br"})
    assert first.status == 200
    assert first.getheader("Content-Encoding") == "gzip"
    assert len(first.body) < 2_000_000  # about 1.4 MB instead of 4.8 MB
    assert gzip.decompress(first.body) == raw
    assert "immutable" in first.getheader("Cache-Control")
    assert "max-age=31536000" in first.getheader("Cache-Control")
    assert first.getheader("Vary") == "Accept-Encoding"
    etag = first.getheader("ETag")
    again = _request(port, path, {"Accept-Encoding": "gzip", "If-None-Match": etag})
    assert again.status == 304 and again.body == b""
    plain = _request(port, path, {})  # a client without gzip: the file as it is
    assert plain.status == 200 and plain.getheader("Content-Encoding") is None
    assert plain.body == raw
    refused = _request(port, path, {"Accept-Encoding": "gzip;q=0"})
    assert refused.getheader("Content-Encoding") is None
    old = _request(port, "/static/plotly.min.js", {"Accept-Encoding": "gzip"})  # still served
    assert old.status == 200 and old.getheader("Cache-Control") == "no-cache"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get_json(url: str):
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def _env() -> dict[str, str]:
    src = str(ROOT / "src")
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([src, str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }


def test_cli_dashboard_waits_for_a_study_not_created_yet(browser, tmp_path):
    db = f"sqlite:///{tmp_path / 'later.db'}"
    other = poptune.Study([poptune.Continuous("x", [0, 1])],
                          poptune.algorithms.RandomSearch(max_num_trials=2), lower_is_better=True,
                          storage=db, study_name="other")  # fmt: skip
    del other
    forget_storages()
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "poptune", "dashboard", db, "--port", str(port), "--study",
         "later"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=ROOT,
    )  # fmt: skip
    tab = None
    try:
        first = server.stdout.readline()
        assert "waiting for study 'later'" in first, (first, server.poll())
        lines = [server.stdout.readline() for _ in range(3)]
        page_url = next(line.strip() for line in lines if "/#/study/later" in line)
        deadline = time.monotonic() + 30
        while True:
            try:
                _get_json(f"http://127.0.0.1:{port}/api/info")
                break
            except urllib.error.URLError:
                assert server.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
        with pytest.raises(urllib.error.HTTPError) as missing:
            _get_json(f"http://127.0.0.1:{port}/api/studies/later")
        assert missing.value.code == 404
        tab = Page(browser, "")
        tab.open(page_url, "#waiting")
        assert "Waiting for study later" in tab.page.locator("#waiting").inner_text()
        tab.page.wait_for_timeout(1500)  # a few polls: still waiting, no error shown
        assert tab.page.locator("#error").is_hidden()
        tab.screenshot("waiting")
        study = poptune.Study([poptune.Continuous("x", [0, 1])],
                              poptune.algorithms.RandomSearch(max_num_trials=3),
                              lower_is_better=True, storage=db, study_name="later")  # fmt: skip
        trial = study.get_suggestion()
        study.add_observation(trial, objective=0.5, iteration=1)
        tab.page.wait_for_selector(f'#trials tr[data-trial="{trial.id}"]', timeout=15_000)
        assert tab.page.locator("#waiting").count() == 0
        assert server.poll() is None
        # the first look at the study: one 404 (the browser logs it); then the study list
        missed = [e for e in tab.errors if "404" in e]
        assert len(missed) <= 1 and len(tab.errors) == len(missed), tab.errors
    finally:
        if tab is not None:
            tab.close()
        server.terminate()
        server.wait(timeout=30)
        server.stdout.close()
        server.stderr.close()
        forget_storages()


KEEP_SCRIPT = textwrap.dedent(
    """
    import sys
    import poptune

    study = poptune.Study(
        [poptune.Continuous("x", [0, 1])], poptune.algorithms.RandomSearch(max_num_trials=3),
        lower_is_better=True, storage=sys.argv[1], study_name="kept", dashboard_port=0,
        keep_dashboard=True,
    )
    for trial in study:
        study.add_observation(trial, objective=trial.parameters["x"], iteration=1)
        study.finalize(trial)
    print("work done", flush=True)
    if sys.argv[2] == "close":
        study.close()
        print("closed", flush=True)
    """
)


@pytest.mark.parametrize("ending", ["exit", "close"])
def test_keep_dashboard_serves_after_the_work_until_ctrl_c(tmp_path, ending):
    script = tmp_path / "kept.py"
    script.write_text(KEEP_SCRIPT)
    db = f"sqlite:///{tmp_path / 'kept.db'}"
    # Ctrl-C as in a terminal: a test run started in the background (``cmd &``) ignores
    # SIGINT, and a child would inherit that and never see the signal this test sends.
    process = subprocess.Popen(
        [sys.executable, str(script), db, ending], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=_env(), cwd=ROOT,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        lines = []
        while True:
            line = process.stdout.readline()
            assert line, f"the script ended: {lines} {process.stderr.read()}"
            lines.append(line)
            if "still serving at" in line:
                break
        assert any("work done" in line for line in lines)
        address = re.search(r"(http://127\.0\.0\.1:\d+/)\S*", lines[-1]).group(1)
        time.sleep(1.0)  # the script has nothing left to do: the server still answers
        studies = _get_json(address + "api/studies")
        assert studies[0]["name"] == "kept" and studies[0]["counts"]["COMPLETED"] == 3
        assert process.poll() is None
        process.send_signal(signal.SIGINT)
        rest, errors = process.communicate(timeout=30)
        assert process.returncode == 0, errors
        assert "Traceback" not in errors
        if ending == "close":
            assert "closed" in rest  # close() returned once Ctrl-C ended the dashboard
        with pytest.raises(urllib.error.URLError):
            _get_json(address + "api/studies")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
