"""Regenerate the dashboard screenshots in docs/images/ from a run of the seed example.

    python docs/screenshots.py            # needs poptune[dashboard,examples], playwright,
                                          # and Debian's chromium at /usr/bin/chromium
    python docs/screenshots.py --population   # only the population view's two images

Runs ``examples/pbt_mnist_mlp.py`` (PBT of a PyTorch MLP on scikit-learn's digits, stored in
SQLite), serves the dashboard over its database and saves one PNG per view. The population
view is shown at scale instead: a generated PBT study of 64 members x 100 generations
(``tests/test_population_view.py``'s ``population_study``: PBT's bookkeeping, no training),
saved as ``population_lanes.png`` (the dashboard, hovering a cell) and
``population_lanes_plot.png`` (``poptune.plot.population_lanes``).

The images of docs/topics/dashboard-long-runs.md (``dashboard_detail.png``,
``dashboard_curves_members.png``, ``dashboard_parallel_colorbar.png``,
``dashboard_log_ticks.png``, ``dashboard_waiting.png``) come from its browser tests:
``POPTUNE_SCREENSHOTS=docs/images python -m pytest tests/test_dashboard_long_runs.py``.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from poptune.dashboard import start_dashboard

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "docs" / "images"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]  # fmt: skip
VIEWS = {
    "studies": ("#/", "#studies tbody tr"),
    "trials": ("#/study/pbt-digits/trials", "#trials tbody tr"),
    "curves": ("#/study/pbt-digits/curves", "#curves-plot .main-svg"),
    "parallel": ("#/study/pbt-digits/parallel", "#parallel-plot .main-svg"),
    "lineage": ("#/study/pbt-digits/lineage", "#lineage-plot .main-svg"),
    "schedules": ("#/study/pbt-digits/schedules", "#schedule-plot .main-svg"),
}


def population() -> None:
    """The population view of a 64 x 100 PBT study: the dashboard tab and the figure."""
    sys.path.insert(0, str(ROOT))
    from tests.test_population_view import population_study

    import poptune.plot

    database = Path(tempfile.mkdtemp(prefix="poptune-lanes-")) / "lanes.db"
    study = population_study(f"sqlite:///{database}", 64, 100, name="pbt-64x100")
    IMAGES.mkdir(parents=True, exist_ok=True)
    figure = poptune.plot.population_lanes(study, scale="generation")
    figure.savefig(IMAGES / "population_lanes_plot.png", dpi=90)
    print("wrote", IMAGES / "population_lanes_plot.png")
    server = start_dashboard(f"sqlite:///{database}", port=0, banner=False)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(server.url.split("#")[0] + "#/study/pbt-64x100/population")
        page.wait_for_selector("#population-plot .main-svg .heatmaplayer")
        page.select_option("#population-scale", "generation")
        page.wait_for_timeout(1000)
        box = page.locator("#population-plot").bounding_box()
        page.mouse.move(box["x"] + box["width"] * 0.72, box["y"] + box["height"] * 0.62, steps=4)
        page.wait_for_selector("#population-plot .hoverlayer .hovertext")
        page.locator("#population-plot").screenshot(path=str(IMAGES / "population_lanes.png"))
        print("wrote", IMAGES / "population_lanes.png")
        browser.close()
    server.stop()


def main() -> None:
    if "--population" in sys.argv[1:]:
        population()
        return
    out = Path(tempfile.mkdtemp(prefix="poptune-shots-"))
    subprocess.run(
        [sys.executable, str(ROOT / "examples" / "pbt_mnist_mlp.py"), "--workers", "2",
         "--population-size", "6", "--generations", "8", "--quiet", "--output-dir", str(out)],
        check=True,
    )  # fmt: skip
    database = next(out.glob("*.db"))
    server = start_dashboard(f"sqlite:///{database}", port=0, banner=False)
    base = server.url.split("#")[0]
    IMAGES.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 820})
        for name, (fragment, selector) in VIEWS.items():
            page.goto(base + fragment)
            page.wait_for_selector(selector)
            if name == "lineage":  # show the best trial's schedule under the tree
                page.evaluate(
                    "() => document.querySelector('#lineage-plot').emit('plotly_click',"
                    " {points: [{customdata: Math.max(...document.getElementById('lineage-plot')"
                    ".data.filter(t => t.meta === 'nodes').flatMap(t => t.customdata))}]})"
                )
            page.wait_for_timeout(1200)
            page.screenshot(path=str(IMAGES / f"dashboard_{name}.png"), full_page=name == "lineage")
            print("wrote", IMAGES / f"dashboard_{name}.png")
        browser.close()
    server.stop()
    population()


if __name__ == "__main__":
    main()
