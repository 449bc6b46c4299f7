"""The population view: one lane per PBT member over generations, exploit arrows.

The layout (poptune.plot._layout), the dashboard's /population endpoint and
poptune.plot.population_lanes are checked against the stored trials: lanes = members, one
cell per (member, generation), one arrow per trial whose parent is another member's segment.
``population_study`` writes a PBT study of any size straight to SQLite (PBT's real
bookkeeping, a toy objective, no training): the browser test and docs/screenshots.py use it.
"""

from __future__ import annotations

import math
import os
import time

import pytest

import poptune
from poptune.exceptions import ArgumentTypeError, ConfigurationError
from poptune.plot._layout import layout_lanes
from poptune.storage import MemoryStorage, copy_study

from .conftest import forget_storages


def population_study(
    url: str | None, population: int, generations: int, *, name: str = "population",
    seed: int = 0, stop_after: int | None = None,
) -> poptune.Study:  # fmt: skip
    """A PBT study of ``population`` x ``generations`` segments, made in memory with PBT's
    own bookkeeping and copied to ``url`` (None: left in memory). The objective (lower is
    better) shrinks each generation by a rate set by how close ``lr`` is to 10**-2.5, times
    a little noise, so lanes differ and exploits pull the poor members up.
    ``stop_after`` finalizes only that many trials (the rest stay RUNNING or unmade)."""
    storage = MemoryStorage()
    study = poptune.Study(
        [poptune.Continuous("lr", [1e-5, 1e-1], "log"), poptune.Choice("act", ["relu", "tanh"])],
        poptune.algorithms.PopulationBasedTraining(
            population_size=population, num_generations=generations,
            perturbation_factors=(0.8, 1.2),
        ),
        lower_is_better=True, storage=storage, study_name=name, seed=seed,
    )  # fmt: skip
    loss: dict[int, float] = {}
    done = 0
    for trial in study:
        lr = trial.parameters["lr"]
        rate = 0.06 * math.exp(-((math.log10(lr) + 2.5) ** 2) / 2)
        rate *= 1.1 if trial.parameters["act"] == "relu" else 1.0
        noise = 1 + 0.002 * (math.sin(trial.id * 12.9898) ** 2 - 0.5)
        value = loss.get(trial.parent, 1.0) * (1 - rate) * noise
        study.add_observation(trial, objective=value, iteration=trial.generation)
        if stop_after is not None and done >= stop_after:
            break
        study.finalize(trial)
        loss[trial.id] = value
        done += 1
    if url is None:
        return study
    copy_study(storage, storage.get_study_id(name), url)
    return poptune.load_study(url, name)


@pytest.fixture(scope="module")
def small():
    return population_study(None, 6, 8)


def _expected(study):
    trials = {t.id: t for t in study.trials}
    exploits = sorted(
        (t.parent, t.id)
        for t in trials.values()
        if t.parent is not None and trials[t.parent].member != t.member
    )
    return trials, exploits


# -- the layout ----------------------------------------------------------------------------------
def test_layout_has_one_lane_per_member_one_cell_per_segment_and_the_exploits(small):
    layout = layout_lanes(small.history, small.lower_is_better)
    trials, exploits = _expected(small)
    assert layout.lanes == [f"member {m}" for m in range(6)]
    assert layout.generations == list(range(1, 9))
    assert len(layout.cells) == 48 == len(trials)
    for cell in layout.cells:
        assert cell.trial.member == layout.members[cell.lane]
        assert cell.trial.generation == cell.generation
        assert cell.objective == cell.trial.last_observation.objective
    assert sorted((e.donor, e.receiver) for e in layout.exploits) == exploits
    assert exploits  # PBT's truncation copied some members
    for e in layout.exploits:
        donor, receiver = trials[e.donor], trials[e.receiver]
        assert (e.from_lane, e.from_generation) == (donor.member, donor.generation)
        assert (e.to_lane, e.to_generation) == (receiver.member, receiver.generation)
        assert e.from_lane != e.to_lane and e.to_generation == e.from_generation + 1


def test_layout_keeps_the_newest_attempt_of_a_retried_segment_and_lanes_without_a_member():
    study = population_study(None, 3, 2)
    history = study.history
    retry = history.trials[-1]
    copy = poptune.Trial(99, dict(retry.parameters), meta={**retry.meta})
    extra = [t for t in history.trials] + [copy]
    layout = layout_lanes(extra, True)
    cell = next(c for c in layout.cells if c.trial.member == retry.member and c.generation == 2)
    assert cell.trial.id == 99 and cell.attempts == 2
    orphan = poptune.Trial(100, {"generation": 1, "lineage": "", "lr": 0.01})
    child = poptune.Trial(101, {"generation": 2, "lineage": "100,", "lr": 0.01})
    layout = layout_lanes([*history.trials, orphan, child], True)
    assert layout.lanes[-1] == "trial 100" and layout.members[-1] is None
    assert {c.trial.id for c in layout.cells if c.lane == len(layout.lanes) - 1} == {100, 101}


def test_layout_best_value_and_a_bad_value():
    study = population_study(None, 3, 3)
    best = layout_lanes(study.history, True, "best")
    assert all(c.objective == c.trial.best_observation(True).objective for c in best.cells)
    with pytest.raises(ConfigurationError, match="value must be .last. or .best., got .mean."):
        layout_lanes(study.history, True, "mean")


# -- the endpoint --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from poptune.dashboard import DashboardData
    from poptune.storage import resolve

    url = f"sqlite:///{tmp_path_factory.mktemp('lanes') / 'lanes.db'}"
    study = population_study(url, 6, 8, name="pbt")
    poptune.Study([poptune.Continuous("x", [0, 1])], poptune.algorithms.RandomSearch(3), True,
                  storage=url, study_name="random")  # fmt: skip
    yield DashboardData(resolve(url)), study
    forget_storages()


def test_population_endpoint_matches_the_stored_study(data):
    dashboard, study = data
    answer = dashboard.population("pbt")
    trials, exploits = _expected(study)
    cells = answer["cells"]
    assert answer["pbt"] is True and answer["direction"] == "minimize"
    assert answer["lanes"] == [f"member {m}" for m in range(6)]
    assert answer["window"] == {"start": 1, "end": 8, "first": 1, "last": 8, "count": 8}
    assert answer["skipped"] == 0
    assert sorted(cells["trial"]) == sorted(trials)
    assert answer["parameters"] == ["lr", "act"]
    for i, tid in enumerate(cells["trial"]):
        t = trials[tid]
        assert cells["lane"][i] == t.member and cells["generation"][i] == t.generation
        assert cells["values"][i] == [t.parameters["lr"], t.parameters["act"]]
        assert cells["parent"][i] == t.parent
        assert cells["objective"][i] == t.last_observation.objective
    pairs = sorted(zip(answer["exploits"]["source"], answer["exploits"]["target"], strict=True))
    assert pairs == exploits
    lo, hi = answer["range"]
    assert lo == min(cells["objective"]) and hi == max(cells["objective"])


def test_population_window_pages_by_generation_and_is_bounded(data, monkeypatch):
    dashboard, _ = data
    page = dashboard.population("pbt", start=3, count=2)
    assert page["window"]["start"] == 3 and page["window"]["end"] == 4
    assert set(page["cells"]["generation"]) == {3, 4} and len(page["cells"]["trial"]) == 12
    assert all(3 <= g <= 4 for g in page["exploits"]["from_generation"])
    newest = dashboard.population("pbt", count=3)
    assert set(newest["cells"]["generation"]) == {6, 7, 8}
    past = dashboard.population("pbt", start=50, count=2)
    assert past["window"]["start"] == past["window"]["end"] == 8
    from poptune.dashboard import _population

    monkeypatch.setattr(_population, "MAX_CELLS", 18)  # 6 lanes: 3 generations at most
    narrowed = dashboard.population("pbt", start=1, count=10, value="best")
    assert narrowed["window"]["count"] == 3 and len(narrowed["cells"]["trial"]) == 18


def test_population_unchanged_poll_is_cheap_and_bad_arguments_are_named(data):
    dashboard, _ = data
    version = dashboard.population("pbt")["version"]
    assert dashboard.population("pbt", since=version) == {"version": version, "unchanged": True}
    assert "cells" in dashboard.population("pbt", since=version - 1)
    for kwargs, text in [({"count": 0}, "count"), ({"count": 501}, "count"),
                         ({"start": -1}, "start"), ({"value": "mean"}, "value")]:  # fmt: skip
        with pytest.raises(ConfigurationError, match=text):
            dashboard.population("pbt", **kwargs)
    plain = dashboard.population("random")
    assert (
        plain["pbt"] is False and plain["cells"]["trial"] == [] and plain["window"]["start"] is None
    )


def test_population_http_route(data):
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    from poptune.dashboard.app import create_app

    dashboard, study = data
    client = TestClient(create_app(dashboard))
    answer = client.get("/api/studies/pbt/population?count=4&value=best").json()
    assert answer["window"]["start"] == 5 and answer["value"] == "best"
    again = client.get(f"/api/studies/pbt/population?since={answer['version']}").json()
    assert again == {"version": answer["version"], "unchanged": True}
    bad = client.get("/api/studies/pbt/population?count=x")
    assert bad.status_code == 400 and "count" in bad.json()["error"]
    assert client.get("/api/studies/nope/population").status_code == 404


def test_population_endpoint_timing_at_6400_and_16000_trials(tmp_path):
    """Seconds the HTTP endpoint takes (layout, window, JSON) for 64 x 100 and 64 x 250
    segments: the first answer after a change and another window of the same version
    (printed with the load average: run with -s)."""
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    from poptune.dashboard import DashboardData
    from poptune.dashboard.app import create_app
    from poptune.storage import resolve

    figures = {}
    for population, generations in ((64, 100), (64, 250)):
        url = f"sqlite:///{tmp_path / f'{population}x{generations}.db'}"
        population_study(url, population, generations, name="pbt")
        dashboard = DashboardData(resolve(url))
        dashboard.study_summary("pbt")  # the first sync of the storage, not timed here
        client = TestClient(create_app(dashboard))
        n = population * generations
        started = time.perf_counter()
        first = client.get("/api/studies/pbt/population").json()
        figures[f"{n} trials, after a change"] = round(time.perf_counter() - started, 3)
        started = time.perf_counter()
        client.get("/api/studies/pbt/population?start=1")
        figures[f"{n} trials, another window"] = round(time.perf_counter() - started, 3)
        started = time.perf_counter()
        client.get(f"/api/studies/pbt/population?since={first['version']}")
        figures[f"{n} trials, unchanged poll"] = round(time.perf_counter() - started, 3)
        assert len(first["cells"]["trial"]) == 64 * 100
        forget_storages()
    load = os.getloadavg()
    print(f"\npopulation endpoint, seconds (load average {load[0]:.1f}):", figures)
    assert all(s < 30 for s in figures.values()), figures  # generous: a loaded machine


# -- the figure ----------------------------------------------------------------------------------
matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")


def _artists(fig):
    ax = fig.axes[0]
    lanes = next(c for c in ax.collections if c.get_gid() == "population-lanes")
    arrows = [c for c in ax.collections if c.get_gid() == "exploit-arrows"]
    return ax, lanes, arrows


def test_population_lanes_figure_draws_one_row_per_member_and_one_arrow_per_exploit(small):
    fig = poptune.plot.population_lanes(small)
    ax, lanes, arrows = _artists(fig)
    trials, exploits = _expected(small)
    rows, cols = lanes.get_array().shape
    assert (rows, cols) == (6, 8)
    assert len(arrows) == 1 and len(arrows[0].U) == len(exploits)
    assert [t.get_text() for t in ax.get_yticklabels()] == [f"member {m}" for m in range(6)]
    assert ax.get_ylim() == (5.5, -0.5)  # member 0 on top
    for u, v in zip(arrows[0].U, arrows[0].V, strict=True):
        assert u == 1 and v != 0  # one generation on, to another lane
    assert "lower is better" in fig.axes[1].get_ylabel()
    none = poptune.plot.population_lanes(small.history, arrows=False, value="best")
    assert _artists(none)[2] == []


def test_population_lanes_figure_ranks_within_each_generation(small):
    fig = poptune.plot.population_lanes(small, scale="generation")
    _, lanes, _ = _artists(fig)
    grid = lanes.get_array()
    by_cell = {(t.member, t.generation): t.last_observation.objective for t in small.trials}
    for col in range(grid.shape[1]):
        column = [float(v) for v in grid[:, col]]
        assert sorted(column) == [k / 5 for k in range(6)]  # 6 members: 0, 0.2, ..., 1
        best = min(range(6), key=lambda m: by_cell[m, col + 1])  # lower is better
        assert column[best] == 1.0
    assert [t.get_text() for t in fig.axes[1].get_yticklabels()] == ["worst", "median", "best"]
    with pytest.raises(ConfigurationError, match="scale"):
        poptune.plot.population_lanes(small, scale="sqrt")
    log = poptune.plot.population_lanes(small, scale="log")
    assert type(_artists(log)[1].norm).__name__ == "LogNorm"
    negative = poptune.Study(
        [poptune.Continuous("lr", [1e-3, 1e-1], "log")],
        poptune.algorithms.PopulationBasedTraining(population_size=2, num_generations=2), True,
    )  # fmt: skip
    for trial in negative:
        negative.add_observation(trial, objective=-trial.parameters["lr"], iteration=1)
        negative.finalize(trial)
    with pytest.raises(ConfigurationError, match="objective is <= 0"):
        poptune.plot.population_lanes(negative, scale="log")


def test_population_lanes_figure_errors(small):
    with pytest.raises(ArgumentTypeError, match="study_or_history"):
        poptune.plot.population_lanes("study")
    with pytest.raises(ConfigurationError, match="cmap"):
        poptune.plot.population_lanes(small, cmap="no-such-map")
    with pytest.raises(ConfigurationError, match="value"):
        poptune.plot.population_lanes(small, value="mean")
    plain = poptune.Study(
        [poptune.Continuous("x", [0, 1])], poptune.algorithms.RandomSearch(2), True
    )
    with pytest.raises(ConfigurationError, match="Population Based Training"):
        poptune.plot.population_lanes(plain)
