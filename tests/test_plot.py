"""poptune.plot: the figures show the study's data, on read-only studies too, without pyplot."""

from __future__ import annotations

import io
import math
import subprocess
import sys

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import poptune  # noqa: E402
import poptune.plot  # noqa: E402
from poptune import (  # noqa: E402
    Choice,
    ConfigurationError,
    Continuous,
    Discrete,
    InvalidParameterError,
    PoptuneError,
    Study,
    UnknownTrialError,
    algorithms,
)
from poptune.plot import MissingDependencyError  # noqa: E402

from .conftest import forget_storages  # noqa: E402


def toy_objective(trial) -> float:
    """Higher is better: best learning rate 1e-3, 'relu' adds a little, later segments more."""
    p = trial.parameters
    bonus = 0.05 if p.get("act") == "relu" else 0.0
    return -abs(math.log10(p["learning_rate"]) + 3) + bonus + 0.01 * (trial.generation or 0)


def pbt_study(
    lower_is_better: bool = False, parameters=None, storage=None, name=None, **kw
) -> Study:
    parameters = parameters or [
        Continuous("learning_rate", [1e-4, 1e-2], "log"),
        Choice("act", ["relu", "tanh"]),
    ]
    algorithm = algorithms.PopulationBasedTraining(
        population_size=kw.pop("population_size", 5),
        num_generations=kw.pop("num_generations", 5),
        perturbation_factors=(0.8, 1.2),
        parameter_range={"learning_rate": [1e-6, 1e-1]},
    )
    return Study(
        parameters, algorithm, lower_is_better, seed=0, storage=storage, study_name=name, **kw
    )


def run(study: Study, sign: float = 1.0) -> Study:
    for trial in study:
        study.add_observation(trial, sign * toy_objective(trial), iteration=trial.generation or 1)
        study.finalize(trial)
    return study


@pytest.fixture(scope="module")
def study() -> Study:
    return run(pbt_study())


@pytest.fixture(autouse=True)
def _nothing_reaches_pyplot():
    assert plt.get_fignums() == []
    yield
    assert plt.get_fignums() == []  # every figure is a plain Figure, unknown to pyplot


def render(fig: Figure) -> bytes:
    """Draw the figure completely (in memory), as savefig does."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=50)
    return buffer.getvalue()


def best_objective(trial, lower_is_better: bool) -> float:
    values = [o.objective for o in trial.observations.values()]
    return min(values) if lower_is_better else max(values)


def expected_paths(study: Study, name: str = "learning_rate"):
    """Founder-to-leaf paths computed from the trials: leaves are completed trials that no
    trial loads from; a path is the leaf's lineage then the leaf."""
    completed = {t.id: t for t in study.trials if t.status == "COMPLETED"}
    loaded = {int(t.load_from) for t in completed.values() if t.load_from}
    paths = []
    for tid in sorted(set(completed) - loaded):
        chain = [completed[a] for a in completed[tid].ancestors] + [completed[tid]]
        paths.append(
            (
                tuple(float(t.generation) for t in chain),
                tuple(best_objective(t, study.lower_is_better) for t in chain),
                tuple(float(t.parameters[name]) for t in chain),
            )
        )
    return sorted(paths)


def drawn_paths(fig: Figure):
    obj_ax, par_ax = fig.axes[:2]
    objective = [(tuple(line.get_xdata()), tuple(line.get_ydata())) for line in obj_ax.lines]
    values = [(tuple(line.get_xdata()), tuple(line.get_ydata())) for line in par_ax.lines]
    assert [x for x, _ in objective] == [x for x, _ in values]  # the same paths, same order
    return sorted(
        (x, y, v) for (x, y), (_, v) in zip(objective, values, strict=True)
    )  # fmt: skip


# -- lineage -------------------------------------------------------------------------------------
def test_lineage_draws_one_line_per_founder_to_leaf_path(study):
    fig = poptune.plot.lineage(study)
    assert isinstance(fig, Figure)
    paths = drawn_paths(fig)
    assert paths == expected_paths(study)
    assert len(paths) >= 5
    # every completed trial is on a path; every path starts at a generation-1 founder
    points = {(x, y) for x, y, _ in paths for x, y in zip(x, y, strict=True)}
    assert points == {(float(t.generation), t.last_observation.objective) for t in study.trials}
    assert all(x[0] == 1.0 for x, _, _ in paths)
    assert fig.axes[1].get_yscale() == "log"  # learning_rate is log-scaled
    render(fig)


def test_lineage_marks_exploit_edges(study):
    fig = poptune.plot.lineage(study)
    by_id = {t.id: t for t in study.trials}
    exploits = {
        ((float(by_id[t.parent].generation), best_objective(by_id[t.parent], False)),
         (float(t.generation), best_objective(t, False)))
        for t in study.trials
        if t.parent is not None and by_id[t.parent].member != t.member
    }  # fmt: skip
    assert exploits  # PBT replaced the bottom members
    collections = [c for c in fig.axes[0].collections if isinstance(c, LineCollection)]
    assert len(collections) == 1
    drawn = {tuple(map(tuple, segment)) for segment in collections[0].get_segments()}
    assert drawn == exploits
    # continuing members (their own weights) are not exploit edges
    assert all(t.explore for t in study.trials if t.parent and by_id[t.parent].member != t.member)


def test_lineage_parameter_choice_and_errors(study):
    fig = poptune.plot.lineage(study, parameter="act")
    act = study.parameters[1]
    values = sorted(tuple(line.get_ydata()) for line in fig.axes[1].lines)
    expected = sorted(
        tuple(float(act.range.index(study.get_trial(int(t)).parameters["act"])) for t in ids)
        for ids in (
            [*map(str, leaf.ancestors), str(leaf.id)]
            for leaf in study.trials
            if leaf.id not in {int(t.load_from) for t in study.trials if t.load_from}
        )
    )
    assert values == expected
    assert [t.get_text() for t in fig.axes[1].get_yticklabels()] == ["relu", "tanh"]
    with pytest.raises(InvalidParameterError, match="'momentum'"):
        poptune.plot.lineage(study, parameter="momentum")


def test_lineage_default_parameter_is_the_first_numeric_one():
    params = [Choice("act", ["relu", "tanh"]), Continuous("learning_rate", [1e-4, 1e-2], "log")]
    study = run(pbt_study(parameters=params, population_size=3, num_generations=2))
    fig = poptune.plot.lineage(study)
    assert "learning_rate" in fig.axes[1].get_title()
    assert drawn_paths(fig) == expected_paths(study)


def test_lineage_on_given_axes(study):
    fig = Figure()
    left, right = fig.subplots(ncols=2)
    assert poptune.plot.lineage(study, ax=(left, right)) is fig
    assert len(left.lines) == len(right.lines) == len(expected_paths(study))
    single = Figure().subplots()
    assert poptune.plot.lineage(study, ax=single) is single.figure
    assert len(single.lines) == len(expected_paths(study))
    with pytest.raises(ConfigurationError, match="pair of Axes"):
        poptune.plot.lineage(study, ax=[left])


def test_lineage_of_a_non_pbt_study_raises_naming_it():
    study = Study(
        [Continuous("x", [0, 1])], algorithms.RandomSearch(3), True, seed=0, study_name="rs-1"
    )
    for trial in study:
        study.add_observation(trial, trial.parameters["x"])
        study.finalize(trial)
    with pytest.raises(ConfigurationError, match="rs-1") as info:
        poptune.plot.lineage(study)
    assert isinstance(info.value, ValueError)


def test_lower_is_better_lineage_stars_the_minimum():
    study = run(pbt_study(lower_is_better=True, population_size=4, num_generations=3), sign=-1.0)
    fig = poptune.plot.lineage(study)
    assert drawn_paths(fig) == expected_paths(study)
    best = study.get_best_result()
    stars = [c for c in fig.axes[0].collections if c.get_label().startswith("best: ")]
    assert len(stars) == 1 and stars[0].get_label() == f"best: trial {best['Trial-ID']}"
    assert stars[0].get_offsets()[0][1] == best["Objective"]
    assert best["Objective"] == min(t.last_observation.objective for t in study.trials)


# -- schedule ------------------------------------------------------------------------------------
def test_schedule_draws_study_schedule(study):
    best = study.get_best_result()["Trial-ID"]
    for tid in (best, study.trials[-1].id, 1):
        entries = study.schedule(tid)
        fig = poptune.plot.schedule(study, tid)
        assert isinstance(fig, Figure)
        lr_ax, act_ax, obj_ax = fig.axes
        lr = lr_ax.patches[0].get_data()
        assert list(lr.values) == [e["parameters"]["learning_rate"] for e in entries]
        assert list(lr.edges) == [e["generation"] - 0.5 for e in entries] + [
            entries[-1]["generation"] + 0.5
        ]
        act = act_ax.patches[0].get_data()
        assert list(act.values) == [["relu", "tanh"].index(e["parameters"]["act"]) for e in entries]
        objective = obj_ax.lines[0]
        assert list(objective.get_xdata()) == [e["generation"] for e in entries]
        assert list(objective.get_ydata()) == [
            study.get_trial(e["trial"]).last_observation.objective for e in entries
        ]
        assert lr_ax.get_yscale() == "log"
        render(fig)


def test_schedule_of_an_unknown_trial_names_it(study):
    with pytest.raises(UnknownTrialError, match="999"):
        poptune.plot.schedule(study, 999)


def test_schedule_of_a_trial_without_observations():
    study = pbt_study(population_size=2, num_generations=2)
    trial = study.get_suggestion()
    fig = poptune.plot.schedule(study, trial)  # RUNNING, nothing observed yet
    assert "no completed trials" in fig.axes[-1].get_title()
    assert list(fig.axes[0].patches[0].get_data().values) == [trial.parameters["learning_rate"]]
    render(fig)


def test_schedule_of_a_non_pbt_trial_is_one_segment():
    study = Study([Discrete("n", [1, 9])], algorithms.RandomSearch(2), True, seed=1)
    for trial in study:
        study.add_observation(trial, trial.parameters["n"] / 10)
        study.finalize(trial)
    fig = poptune.plot.schedule(study, 2)
    assert list(fig.axes[0].patches[0].get_data().values) == [study.get_trial(2).parameters["n"]]
    assert list(fig.axes[1].lines[0].get_ydata()) == [study.get_trial(2).parameters["n"] / 10]


# -- history -------------------------------------------------------------------------------------
@pytest.mark.parametrize("lower_is_better", [False, True])
def test_history_best_so_far_is_monotone_and_correct(lower_is_better):
    sign = -1.0 if lower_is_better else 1.0
    study = run(pbt_study(lower_is_better, population_size=4, num_generations=4), sign=sign)
    fig = poptune.plot.history(study)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    trials = sorted(study.trials, key=lambda t: t.id)
    values = [t.last_observation.objective for t in trials]
    points = ax.collections[0].get_offsets()
    assert points[:, 0].tolist() == [t.id for t in trials]
    assert points[:, 1].tolist() == values
    (best_line,) = [line for line in ax.lines if line.get_label() == "best so far"]
    running = np.asarray(best_line.get_ydata())
    steps = np.diff(running)
    assert (steps <= 0).all() if lower_is_better else (steps >= 0).all()
    accumulate = np.minimum.accumulate if lower_is_better else np.maximum.accumulate
    assert running.tolist() == accumulate(values).tolist()
    assert running[-1] == study.get_best_result()["Objective"]
    render(fig)


def test_history_on_given_axes(study):
    fig = Figure()
    ax = fig.subplots()
    assert poptune.plot.history(study, ax=ax) is fig
    with pytest.raises(ConfigurationError):
        poptune.plot.history(study, ax="not an axes")


# -- parallel coordinates ------------------------------------------------------------------------
def test_parallel_coordinates_one_line_per_completed_trial(study):
    fig = poptune.plot.parallel_coordinates(study)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    (lines,) = [c for c in ax.collections if c.get_gid() == "trials"]
    segments = lines.get_segments()
    completed = [t for t in study.trials if t.status == "COMPLETED"]
    assert len(segments) == len(completed) == 25
    assert [t.get_text() for t in ax.get_xticklabels()] == ["learning_rate", "act", "objective"]
    # colours follow the objective, the normalised values lie in [0, 1]
    assert sorted(lines.get_array().tolist()) == sorted(
        t.last_observation.objective for t in completed
    )
    coords = np.concatenate(segments)
    assert ((coords[:, 1] >= 0) & (coords[:, 1] <= 1)).all()
    # learning_rate is normalised in log space over [1e-4, 1e-2] widened to the values seen
    lrs = [t.parameters["learning_rate"] for t in completed]
    lo, hi = math.log10(min(1e-4, *lrs)), math.log10(max(1e-2, *lrs))
    expected = sorted((math.log10(v) - lo) / (hi - lo) for v in lrs)
    assert np.allclose(sorted(s[0][1] for s in segments), expected)
    # the Choice sits at its values' positions
    assert sorted({s[1][1] for s in segments}) == [0.0, 1.0]
    render(fig)


def test_parallel_coordinates_parameters_subset_and_unknown_name(study):
    fig = poptune.plot.parallel_coordinates(study, parameters=["act"])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["act", "objective"]
    (lines,) = [c for c in ax.collections if c.get_gid() == "trials"]
    assert all(len(s) == 2 for s in lines.get_segments())
    with pytest.raises(InvalidParameterError, match="'nope'"):
        poptune.plot.parallel_coordinates(study, parameters=["act", "nope"])
    with pytest.raises(ConfigurationError):
        poptune.plot.parallel_coordinates(study, parameters="act")


# -- empty studies, read-only studies, odd names ---------------------------------------------------
def test_empty_study_gives_empty_titled_axes():
    study = pbt_study(population_size=2, num_generations=2)
    for fig in (
        poptune.plot.lineage(study),
        poptune.plot.history(study),
        poptune.plot.parallel_coordinates(study),
    ):
        assert isinstance(fig, Figure)
        assert all("no completed trials" in ax.get_title() for ax in fig.axes)
        assert all(not ax.lines for ax in fig.axes)
        render(fig)


def test_figures_of_a_study_reopened_with_load_study(tmp_path, study):
    url = f"sqlite:///{tmp_path / 'plots.db'}"
    try:
        live = run(pbt_study(storage=url, name="pbt-plots"))
        stored = poptune.load_study(url, "pbt-plots")
        assert drawn_paths(poptune.plot.lineage(stored)) == drawn_paths(poptune.plot.lineage(live))
        assert drawn_paths(poptune.plot.lineage(stored)) == expected_paths(live)
        best = stored.get_best_result()["Trial-ID"]
        sched = poptune.plot.schedule(stored, best)
        assert list(sched.axes[0].patches[0].get_data().values) == [
            e["parameters"]["learning_rate"] for e in live.schedule(best)
        ]
        for fig in (
            sched,
            poptune.plot.history(stored),
            poptune.plot.parallel_coordinates(stored),
        ):
            render(fig)
        # a random search stored in the same file is no PBT study, even read back
        rs = Study([Continuous("x", [0, 1])], algorithms.RandomSearch(2), True,
                   storage=url, study_name="rs")  # fmt: skip
        for trial in rs:
            rs.add_observation(trial, trial.parameters["x"])
            rs.finalize(trial)
        with pytest.raises(ConfigurationError, match="'rs'"):
            poptune.plot.lineage(poptune.load_study(url, "rs"))
    finally:
        forget_storages()


def test_mathtext_and_markup_in_names_and_values_do_not_crash(tmp_path):
    params = [
        Continuous("$x$_<b>", [0.1, 10.0], "log"),
        Choice("<script>", ["$y$", "<script>alert(1)</script>", "a\\$b"]),
    ]
    algorithm = algorithms.PopulationBasedTraining(population_size=3, num_generations=3)
    study = Study(params, algorithm, False, seed=2, study_name="$study$ <i>")
    for trial in study:
        study.add_observation(trial, -abs(math.log10(trial.parameters["$x$_<b>"])))
        study.finalize(trial)
    figures = [
        poptune.plot.lineage(study),
        poptune.plot.lineage(study, parameter="<script>"),
        poptune.plot.schedule(study, study.trials[-1].id),
        poptune.plot.history(study),
        poptune.plot.parallel_coordinates(study),
    ]
    for fig in figures:
        assert render(fig)[:4] == b"\x89PNG"
    texts = [t.get_text() for t in figures[4].axes[0].get_xticklabels()]
    assert texts[0] == r"\$x\$_<b>"  # shown literally, not as mathtext
    figures[0].savefig(tmp_path / "lineage.svg")  # another renderer


def test_wrong_study_argument():
    with pytest.raises(ConfigurationError, match="poptune.Study"):
        poptune.plot.history("results.csv")


def test_missing_matplotlib_raises_an_import_error_with_the_install_hint(study, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    for call in (
        lambda: poptune.plot.lineage(study),
        lambda: poptune.plot.schedule(study, 1),
        lambda: poptune.plot.history(study),
        lambda: poptune.plot.parallel_coordinates(study),
    ):
        with pytest.raises(MissingDependencyError, match=r'pip install "poptune\[plot\]"') as info:
            call()
        assert isinstance(info.value, ImportError) and isinstance(info.value, PoptuneError)


def test_importing_poptune_plot_does_not_import_matplotlib():
    code = "import poptune.plot, sys; assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
