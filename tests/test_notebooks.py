"""The tutorial notebook, executed as a user runs it (nbclient, a real IPython kernel), and
what a notebook shows: the study's summaries, the progress widget with its total, figures
inline, the embedded dashboard; and the docs page rendered from the notebook."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

import poptune as pt

from . import objectives

nbformat = pytest.importorskip("nbformat", reason='pip install "poptune[test]"')
nbclient = pytest.importorskip("nbclient", reason='pip install "poptune[test]"')
pytest.importorskip("ipykernel", reason='pip install "poptune[test]"')

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "docs" / "tutorials" / "pbt_digits.ipynb"
PAGE = ROOT / "docs" / "tutorials" / "notebook.md"
KERNEL = "poptune-tests"


def _kernel_spec(where: Path) -> Path:
    """A kernel spec running this interpreter with this checkout's poptune first on the path
    (whatever ``python`` the installed ``python3`` spec would find)."""
    spec = where / "kernels" / KERNEL
    spec.mkdir(parents=True)
    path = os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH")) if p)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "poptune tests", "language": "python", "env": {"PYTHONPATH": path},
    }))  # fmt: skip
    return where


def _cell(nb: nbformat.NotebookNode, source: str) -> nbformat.NotebookNode:
    """The one code cell whose source is (or starts with) ``source``."""
    found = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith(source)]
    assert len(found) == 1, source
    return found[0]


def _data(cell: nbformat.NotebookNode, mime: str) -> list[str]:
    return [o["data"][mime] for o in cell.outputs if mime in o.get("data", {})]


def _streams(cell: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o["output_type"] == "stream")


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """The tutorial, executed at its tiny size (population 3 x 2 generations)."""
    where = tmp_path_factory.mktemp("jupyter")
    saved = {k: os.environ.get(k) for k in ("JUPYTER_PATH", "POPTUNE_TUTORIAL_SIZE")}
    os.environ["JUPYTER_PATH"] = str(_kernel_spec(where))
    os.environ["POPTUNE_TUTORIAL_SIZE"] = "tiny"
    try:
        nb = nbformat.read(NOTEBOOK, as_version=4)
        client = nbclient.NotebookClient(nb, kernel_name=KERNEL, timeout=600,
                                         resources={"metadata": {"path": str(where)}})  # fmt: skip
        client.execute()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return nb


@pytest.mark.slow
def test_the_tutorial_runs_without_an_error_or_a_traceback(executed):
    for cell in executed.cells:
        if cell.cell_type != "code":
            continue
        assert not [o for o in cell.outputs if o["output_type"] == "error"], cell.source
        assert "Traceback" not in _streams(cell), cell.source


@pytest.mark.slow
def test_a_notebook_objective_runs_in_two_worker_processes(executed):
    """The objective is defined in a cell: by value to the workers, every trial completed,
    and the temporary SQLite folder of the in-memory study removed afterwards."""
    cell = _cell(executed, "study.optimize(objective, n_workers=2)")
    text = _streams(cell)
    assert "Can't get attribute" not in text
    folder = re.search(r"temporary SQLite file, (\S+)/study\.db", text)
    assert folder is not None, text
    assert not Path(folder.group(1)).exists()
    summary = _data(_results_cell(executed), "text/html")
    assert summary and "6 trial(s) (6 COMPLETED)" in summary[0]


def _results_cell(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The ``study`` cell after optimize (the second cell that is just ``study``)."""
    cells = [c for c in nb.cells if c.cell_type == "code" and c.source.strip() == "study"]
    assert len(cells) == 1
    return cells[0]


@pytest.mark.slow
def test_the_progress_bar_is_a_notebook_widget_with_its_total(executed):
    cell = _cell(executed, "study.optimize(objective, n_workers=2)")
    widget = "application/vnd.jupyter.widget-view+json"
    widgets = [o for o in cell.outputs if widget in o.get("data", {})]
    assert len(widgets) == 1
    assert "/6 " in widgets[0]["data"]["text/plain"]  # population 3 x 2 generations


@pytest.mark.slow
def test_the_study_shows_a_summary_as_a_cell_value(executed):
    fresh = _data(_cell(executed, "parameters = ["), "text/html")[0]
    assert "maximize" in fresh and "PopulationBasedTraining (population 3 × 2 generations)" in fresh
    assert "0 trial(s)" in fresh and "no completed trial yet" in fresh
    done = _results_cell(executed)
    html, text = _data(done, "text/html")[0], _data(done, "text/plain")[0]
    assert "<table>" in html and "learning_rate=" in html and "best: " in html
    assert text.startswith("Study ") and len(text.splitlines()) == 3


@pytest.mark.slow
def test_figures_and_the_dashboard_show_inline(executed):
    assert _data(_cell(executed, "pt.plot.lineage(study)"), "image/png")
    frame = _data(_cell(executed, "study.show_dashboard("), "text/html")
    assert frame and frame[0].startswith('<iframe src="http://127.0.0.1:')
    test = _streams(_cell(executed, "from poptune.checkpoints import read_checkpoint"))
    assert re.search(r"test accuracy of trial \d+: [01]\.\d{3}", test)


def _renderer():
    path = ROOT / "docs" / "render_notebook.py"
    spec = importlib.util.spec_from_file_location("render_notebook", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_docs_page_matches_the_notebook():
    """docs/tutorials/notebook.md is the notebook's cells: regenerate it with
    ``python docs/render_notebook.py`` after editing the notebook."""
    render = _renderer()
    assert PAGE.read_text(encoding="utf-8") == render.render(nbformat.read(NOTEBOOK, 4))
    nb = nbformat.read(NOTEBOOK, 4)
    for cell in nb.cells:
        assert cell.cell_type == "markdown" or cell.source.strip() in PAGE.read_text()


def test_the_committed_notebook_has_no_outputs_and_reads_its_size_from_the_environment():
    nb = nbformat.read(NOTEBOOK, 4)
    nbformat.validate(nb)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
    assert "POPTUNE_TUTORIAL_SIZE" in nb.cells[1].source
    assert any("study.optimize(objective, n_workers=2)" in c.source for c in nb.cells)


# -- the displays, without a kernel -------------------------------------------------------------
def _pbt(**kw):
    algorithm = pt.algorithms.PopulationBasedTraining(num_generations=2, population_size=3)
    return pt.Study([pt.Continuous("lr", [1e-4, 1e-2], "log")], algorithm, False, seed=0, **kw)


def test_repr_is_short_and_pretty_is_three_lines():
    study = _pbt(study_name="short")
    assert repr(study) == "Study('short', PopulationBasedTraining, maximize, trials=0)"
    study.optimize(objectives.quadratic, show_progress=False)
    from IPython.lib.pretty import pretty

    lines = pretty(study).splitlines()
    algorithm = "PopulationBasedTraining (population 3 × 2 generations)"
    assert lines[0] == f"Study 'short': maximize, {algorithm}"
    assert lines[1] == "  6 trial(s) (6 COMPLETED)" and lines[2].startswith("  best: ")


def test_the_html_summary_escapes_user_data():
    evil = "<script>alert(1)</script>"
    params = [pt.Choice("opt", [evil, "sgd"]), pt.Continuous("lr", [1e-4, 1e-2], "log")]
    study = pt.Study(params, pt.algorithms.RandomSearch(4), True, seed=0, study_name="a<b>&c")
    study.add_trial({"opt": evil, "lr": 0.001})
    study.optimize(objectives.quadratic, show_progress=False)
    html = study._repr_html_()
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "a&lt;b&gt;&amp;c" in html and "<b>" not in html
    assert "5 trial(s) (5 COMPLETED)" in html and html.count("<tr>") == 6  # header + 5 last
    assert "storage: <code>memory</code>" in html


def test_the_summary_never_shows_a_password():
    from poptune.study import _notebook

    fake = types.SimpleNamespace(_storage=types.SimpleNamespace(url="postgresql://u:s3cret@h/db"))
    assert _notebook._storage(fake) == "postgresql://u:***@h/db"


def test_show_dashboard_embeds_the_live_dashboard_and_reuses_it():
    pytest.importorskip("uvicorn", reason='pip install "poptune[dashboard]"')
    study = _pbt(study_name="dash")
    try:
        frame = study.show_dashboard(height=300)
        again = study.show_dashboard()
        assert frame.url == study.dashboard_url == again.url and str(frame) == frame.url
        assert frame._repr_html_().startswith(
            f'<iframe src="{frame.url}" width="100%" height="300"'
        )
        with pytest.raises(pt.ConfigurationError, match="height must be an int >= 1, got 0"):
            study.show_dashboard(height=0)
    finally:
        study.close()
    assert study.dashboard_url is None


def test_displays_import_no_ipython_and_the_bar_no_tqdm_outside_a_terminal():
    code = (
        "import sys, poptune as pt\n"
        "from tests import objectives\n"
        "s = pt.Study([pt.Continuous('lr', [1e-4, 1e-2], 'log')], pt.algorithms.RandomSearch(3),"
        " True, seed=0)\n"
        "s.optimize(objectives.quadratic)\n"
        "repr(s); s._repr_html_()\n"
        "print(sorted(m for m in ('IPython', 'tqdm') if m in sys.modules))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    env.pop("POPTUNE_PROGRESS", None)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, cwd=ROOT, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]" and result.stderr == ""  # stderr is a pipe: no bar


# -- the progress bar -----------------------------------------------------------------------------
def test_the_total_is_what_the_algorithm_plans():
    from poptune.study._progress import planned_trials

    assert planned_trials(pt.algorithms.PopulationBasedTraining(5, 4)) == 20
    assert planned_trials(pt.algorithms.RandomSearch(7)) == 7
    assert planned_trials(pt.algorithms.Repeat(pt.algorithms.RandomSearch(3), num_times=2)) == 6
    assert planned_trials(pt.algorithms.RandomSearch()) is None


@pytest.mark.parametrize(("n_trials", "shown"), [(None, "6/6"), (2, "2/2")])
def test_the_bar_counts_to_its_total(n_trials, shown, capsys, monkeypatch):
    monkeypatch.setenv("POPTUNE_PROGRESS", "1")  # stderr is no terminal under pytest
    _pbt(study_name="bar").optimize(objectives.quadratic, n_trials=n_trials)
    err = capsys.readouterr().err
    assert "bar: 100%" in err and f"| {shown} " in err


def test_a_resumed_study_starts_its_bar_where_it_stopped(capsys, monkeypatch):
    study = _pbt(study_name="resume")
    study.optimize(objectives.quadratic, n_trials=3, show_progress=False)
    monkeypatch.setenv("POPTUNE_PROGRESS", "1")
    study.optimize(objectives.quadratic)
    err = capsys.readouterr().err
    assert "| 3/6 " in err and "| 6/6 " in err


def test_the_bar_is_off_when_not_wanted(monkeypatch):
    from poptune.study import _progress

    tty = types.SimpleNamespace(isatty=lambda: True)
    monkeypatch.setattr(sys, "stderr", tty)
    monkeypatch.delenv("POPTUNE_PROGRESS", raising=False)
    assert _progress.wanted(True) and not _progress.wanted(False)
    monkeypatch.setenv("POPTUNE_PROGRESS", "0")
    assert not _progress.wanted(True)
    monkeypatch.setattr(sys, "stderr", types.SimpleNamespace(isatty=lambda: False))
    monkeypatch.setenv("POPTUNE_PROGRESS", "")
    assert not _progress.wanted(True) and not _progress.in_notebook()


def test_without_ipywidgets_a_notebook_gets_the_text_bar(monkeypatch):
    from tqdm import notebook

    from poptune.study import _progress

    monkeypatch.setattr(notebook, "IProgress", None)
    bar = _progress._bar(True, total=3, unit="trial", desc="x")
    try:
        assert type(bar).__module__ == "tqdm.std" and bar.total == 3
    finally:
        bar.close()
