"""The dashboard's population view in a real browser (Debian's Chromium, Playwright).

A PBT study of population 64 x 100 generations is written straight to SQLite
(``population_study``: PBT's own bookkeeping, a toy objective, no training); the tests check
that its 6,400 cells and every exploit arrow are drawn, that hovering a cell shows the
trial's hyperparameters (hostile names as text), that a click opens the trial and traces its
lineage, and that a new segment appears without a reload.

``POPTUNE_SCREENSHOTS=docs/images`` saves the view as ``population_lanes.png`` there (and
the matplotlib figure of the same study as ``population_lanes_plot.png``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason='the dashboard extra: pip install "poptune[dashboard]"')
playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="browser tests need Playwright (pip install playwright)"
)

import poptune  # noqa: E402
from poptune.dashboard import start_dashboard  # noqa: E402
from tests.conftest import CHROMIUM, forget_storages  # noqa: E402
from tests.dashboard_feeder import XSS_NAME, make_study  # noqa: E402
from tests.test_population_view import population_study  # noqa: E402

POPULATION, GENERATIONS = 64, 100

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM),
    reason=f"browser tests need Debian's chromium at {CHROMIUM} (apt-get install -y chromium)",
)


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    db = f"sqlite:///{tmp_path_factory.mktemp('lanes') / 'lanes.db'}"
    population_study(db, POPULATION, GENERATIONS, name="big")
    hostile = make_study(db, "hostile")  # parameter names and choices that are HTML
    for trial in hostile:
        hostile.add_observation(trial, objective=trial.parameters["lr"], iteration=1)
        hostile.finalize(trial)
        if trial.generation == 3 and trial.member == 3:
            break
    yield db
    forget_storages()


@pytest.fixture(scope="module")
def server(url):
    dashboard = start_dashboard(url, port=0, banner=False)
    yield dashboard
    dashboard.stop()


@pytest.fixture
def page(browser, server):
    tab = browser.new_page(viewport={"width": 1280, "height": 1000})
    errors: list[str] = []
    dialogs: list[str] = []
    tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda e: errors.append(str(e)))
    tab.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    tab.base = server.url.split("#")[0]
    tab.errors, tab.dialogs = errors, dialogs
    yield tab
    tab.close()


def _open(page, study: str) -> None:
    page.goto(page.base + f"#/study/{study}/population")
    page.wait_for_function(
        "() => { const gd = document.getElementById('population-plot');"
        " return gd && gd.data && gd.data.some(t => t.meta === 'lanes')"
        " && gd.querySelector('.main-svg'); }",
        timeout=60_000,
    )


_DRAWN = """() => {
  const gd = document.getElementById('population-plot');
  const heat = gd.data.find(t => t.meta === 'lanes');
  const arrows = gd.data.find(t => t.meta === 'exploit-arrows');
  const cells = heat.customdata.flat().filter(v => v !== null);
  const pairs = [];
  for (let i = 0; i < arrows.customdata.length; i += 3) pairs.push(arrows.customdata[i]);
  return {rows: heat.z.length, columns: heat.x.length, cells, pairs,
          ticks: gd._fullLayout.yaxis.ticktext};
}"""

_CELL_XY = """([generation, lane]) => {
  const gd = document.getElementById('population-plot');
  const size = gd._fullLayout._size, box = gd.getBoundingClientRect();
  return [box.left + size.l + gd._fullLayout.xaxis.l2p(generation),
          box.top + size.t + gd._fullLayout.yaxis.l2p(lane)];
}"""


def _hover(page, generation: int, lane: int) -> str:
    x, y = page.evaluate(_CELL_XY, [generation, lane])
    page.mouse.move(x - 40, y - 40)
    page.mouse.move(x, y, steps=4)
    # The way there crosses other cells: wait for the label of this one (Plotly may still be
    # showing a cell passed on the way), then read it.
    page.wait_for_function(
        """([lane, generation]) => {
          const box = document.querySelector('#population-plot .hoverlayer .hovertext');
          const want = new RegExp(`member ${lane} · generation ${generation}(?![0-9])`);
          return box !== null && want.test(box.textContent); }""",
        arg=[lane, generation],
        timeout=10_000,
    )
    return page.evaluate(
        """() => { const box = document.querySelector('#population-plot .hoverlayer .hovertext');
          const lines = Array.from(box.querySelectorAll('tspan.line'), (t) => t.textContent);
          return lines.length ? lines.join('\\n') : box.textContent; }"""
    )


def test_64_members_by_100_generations_draw_every_cell_and_exploit_arrow(page, url):
    _open(page, "big")
    trials = {t.id: t for t in poptune.load_study(url, "big").trials}
    exploits = sorted(
        [t.parent, t.id] for t in trials.values()
        if t.parent is not None and trials[t.parent].member != t.member
    )  # fmt: skip
    drawn = page.evaluate(_DRAWN)
    assert (drawn["rows"], drawn["columns"]) == (POPULATION, GENERATIONS)
    assert sorted(drawn["cells"]) == sorted(trials)
    assert sorted(drawn["pairs"]) == exploits and len(exploits) > GENERATIONS
    assert drawn["ticks"][0] == "member 0"
    # the arrows are on the page (a path per trace, an arrow head per exploit end point)
    assert page.locator("#population-plot .scatterlayer .trace").count() >= 1
    info = page.locator("#lanes-info").inner_text()
    assert f"generations 1–{GENERATIONS} of 1–{GENERATIONS}" in info

    # hover: the cell's trial, its hyperparameters and where its weights came from
    receiver = trials[exploits[-1][1]]
    text = _hover(page, receiver.generation, receiver.member)
    assert f"trial {receiver.id}" in text and f"generation {receiver.generation}" in text
    shown = float(text.split("lr = ", 1)[1].split()[0])
    assert shown == pytest.approx(receiver.parameters["lr"], rel=1e-5)
    assert f"act = {receiver.parameters['act']}" in text
    donor = trials[receiver.parent]
    assert f"copied the weights of member {donor.member} (trial {donor.id})" in text
    target = os.environ.get("POPTUNE_SCREENSHOTS")
    if target:  # the docs' images: coloured by rank within each generation, one hover
        Path(target).mkdir(parents=True, exist_ok=True)
        page.select_option("#population-scale", "generation")
        page.wait_for_function(
            "() => /rank in its generation/.test(document.getElementById('population-plot')"
            ".data[0].colorbar.title.text)"
        )
        _hover(page, receiver.generation, receiver.member)
        page.wait_for_timeout(500)
        page.locator("#population-plot").screenshot(path=str(Path(target) / "population_lanes.png"))
        _save_figure(url, Path(target) / "population_lanes_plot.png")
        page.select_option("#population-scale", "study")

    # click: the trial's detail, and its lineage traced through the lanes
    x, y = page.evaluate(_CELL_XY, [receiver.generation, receiver.member])
    page.mouse.click(x, y)
    page.wait_for_selector(f'#trial-detail[data-trial="{receiver.id}"]', timeout=15_000)
    path = page.evaluate(
        "() => document.getElementById('population-plot').data"
        ".find(t => t.meta === 'focus').customdata"
    )
    chain = [s["trial"] for s in poptune.load_study(url, "big").schedule(receiver.id)]
    assert path == chain and len(chain) == receiver.generation
    assert page.locator("#schedule-table tbody tr").count() == len(chain)
    page.locator("#population-arrows").uncheck()
    page.wait_for_function(
        "() => document.getElementById('population-plot').data"
        ".find(t => t.meta === 'exploit-arrows').visible === false"
    )
    assert page.errors == []


def test_the_window_pages_through_generations(page):
    _open(page, "big")
    page.evaluate("() => { window.__same = true; }")
    page.select_option("#population-value", "best")
    page.wait_for_function(
        "() => /best objective/.test(document.getElementById('population-plot')"
        ".data[0].colorbar.title.text)"
    )
    page.select_option("#population-scale", "generation")
    page.wait_for_function(
        "() => /rank in its generation/.test(document.getElementById('population-plot')"
        ".data[0].colorbar.title.text)"
    )
    column = page.evaluate(
        "() => document.getElementById('population-plot').data[0].z.map((row) => row[49])"
    )
    assert sorted(column) == pytest.approx([k / (POPULATION - 1) for k in range(POPULATION)])
    assert page.locator("#lanes-earlier").is_disabled()  # all 100 generations shown
    page.select_option("#population-count", "25")
    info = page.locator("#lanes-info")
    page.wait_for_function("() => /generations 76–100 of 1–100 \\(following/"
                           ".test(document.getElementById('lanes-info').innerText)")  # fmt: skip
    assert page.locator("#lanes-newest").is_disabled()
    page.locator("#lanes-earlier").click()
    page.wait_for_function("() => /generations 51–75 of/"
                           ".test(document.getElementById('lanes-info').innerText)")  # fmt: skip
    xs = page.evaluate("() => document.getElementById('population-plot').data[0].x")
    assert xs == list(range(51, 76))
    page.locator("#lanes-newest").click()
    page.wait_for_function("() => /76–100 of 1–100 \\(following/"
                           ".test(document.getElementById('lanes-info').innerText)")  # fmt: skip
    assert "following the newest" in info.inner_text()
    assert page.evaluate("() => window.__same") is True
    assert page.errors == []


def test_hostile_parameter_names_are_shown_as_text_in_the_hover(page, url):
    _open(page, "hostile")
    trial = next(t for t in poptune.load_study(url, "hostile").trials if t.generation == 2)
    text = _hover(page, trial.generation, trial.member)
    assert XSS_NAME in text  # the literal text, not an element
    assert page.evaluate("() => document.querySelectorAll('script:not([src])').length") == 0
    assert page.evaluate("() => document.querySelectorAll('img[src=\"x\"]').length") == 0
    assert page.dialogs == [] and page.errors == []


def test_a_new_segment_appears_without_reload(page, url):
    study = poptune.Study(
        [poptune.Continuous("lr", [1e-3, 1e-1], "log")],
        poptune.algorithms.PopulationBasedTraining(population_size=3, num_generations=4),
        lower_is_better=True, storage=url, study_name="live", seed=0,
    )  # fmt: skip
    first = [study.get_suggestion() for _ in range(3)]
    for trial in first:
        study.add_observation(trial, objective=trial.parameters["lr"], iteration=1)
        study.finalize(trial)
    _open(page, "live")
    page.evaluate("() => { window.__same = true; }")
    trial = study.get_suggestion()
    assert trial.generation == 2
    study.add_observation(trial, objective=0.5, iteration=2)
    started = time.monotonic()
    page.wait_for_function(
        f"""() => document.getElementById('population-plot').data
              .find(t => t.meta === 'lanes').customdata.flat().includes({trial.id})""",
        timeout=10_000,
    )
    seconds = time.monotonic() - started
    running = page.evaluate(
        "() => document.getElementById('population-plot').data.find(t => t.meta === 'running').x"
    )
    assert running == [2]  # the new segment is marked as running
    assert page.evaluate("() => window.__same") is True
    assert seconds < 10
    study.finalize(trial)
    assert page.errors == []


def _save_figure(url: str, path: Path) -> None:
    pytest.importorskip("matplotlib")
    import poptune.plot

    fig = poptune.plot.population_lanes(poptune.load_study(url, "big"), scale="generation")
    fig.savefig(path, dpi=90)
