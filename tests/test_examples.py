"""The PBT examples in ``examples/`` run end to end and do what they claim."""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest

import poptune

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` under a private module name, leaving sys.path as it was."""
    saved = list(sys.path)
    try:
        spec = importlib.util.spec_from_file_location(f"_example_{name}", EXAMPLES / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = saved
    return module


@pytest.fixture(scope="module")
def numpy_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[poptune.Study, Path]:
    pytest.importorskip("sklearn", reason="the examples load scikit-learn's digits data set")
    out = tmp_path_factory.mktemp("pbt_digits_numpy")
    study = load_example("pbt_digits_numpy").main(["--output-dir", str(out), "--quiet"])
    return study, out


def test_numpy_example_runs_five_generations_of_five(numpy_run):
    study, _ = numpy_run
    trials = study.trials
    assert len(trials) == 25
    assert all(t.status == "COMPLETED" for t in trials)
    assert Counter(t.generation for t in trials) == {g: 5 for g in range(1, 6)}
    for trial in trials:
        assert trial.parameters["save_to"] == str(trial.id)
        if trial.generation == 1:
            assert trial.parameters["load_from"] == ""
            assert trial.lineage == ""
            continue
        previous = {str(t.id) for t in trials if t.generation == trial.generation - 1}
        assert trial.parameters["load_from"] in previous
        parent = study.get_trial(int(trial.parameters["load_from"]))
        assert trial.lineage == f"{parent.lineage}{parent.id},"


def test_numpy_example_learns_and_pbt_improves_on_generation_one(numpy_run):
    study, _ = numpy_run
    best = study.get_best_result()
    assert isinstance(best, dict)
    assert {"Trial-ID", "Objective", "learning_rate", "save_to", "loss"} <= best.keys()
    gen1_best = max(t.last_observation.objective for t in study.trials if t.generation == 1)
    # Seed 0 reaches ~0.967 after five epochs; generation 1 (one epoch) peaks at ~0.85.
    assert best["Objective"] >= 0.9
    assert best["Objective"] > gen1_best
    assert study.get_trial(best["Trial-ID"]).generation >= 3


def test_numpy_example_writes_results_figure_and_checkpoints(numpy_run):
    study, out = numpy_run
    best = study.get_best_result()
    assert (out / "study.json").is_file()
    results = pd.read_csv(out / "results.csv")
    assert (results["Status"] == "COMPLETED").sum() == 25
    png = out / "pbt_lineage.png"
    assert png.is_file() and png.stat().st_size > 1000
    assert png.read_bytes()[:8] == PNG_MAGIC
    assert (out / "models" / f"{best['save_to']}.npz").is_file()
    assert len(list((out / "models").glob("*.npz"))) == 25
    reloaded = poptune.Study.load(out)
    assert reloaded.get_best_result() == best


def test_numpy_example_is_reproducible(numpy_run, tmp_path):
    study, _ = numpy_run
    again = load_example("pbt_digits_numpy").main(["--output-dir", str(tmp_path), "--quiet"])
    assert [t.parameters for t in again.trials] == [t.parameters for t in study.trials]
    assert [t.last_observation.objective for t in again.trials] == [
        t.last_observation.objective for t in study.trials
    ]


def test_lineage_figure_of_the_saved_study(numpy_run, tmp_path):
    pytest.importorskip("matplotlib")
    import poptune.plot

    study, out = numpy_run
    reloaded = poptune.Study.load(out)  # results.csv + study.json written by the example

    def paths(figure):
        return sorted(
            (tuple(line.get_xdata()), tuple(line.get_ydata())) for line in figure.axes[0].lines
        )

    figure = poptune.plot.lineage(reloaded)
    assert paths(figure) == paths(poptune.plot.lineage(study))
    # Every completed trial lies on some path; every path starts at generation 1 and goes
    # one generation at a time.
    points = {(t.generation, t.last_observation.objective) for t in study.trials}
    assert {xy for x, y in paths(figure) for xy in zip(x, y, strict=True)} == points
    assert all(x == tuple(range(1, len(x) + 1)) for x, _ in paths(figure))
    figure.savefig(tmp_path / "lineage.png", dpi=60)
    assert (tmp_path / "lineage.png").read_bytes()[:8] == PNG_MAGIC


def test_torch_example_small_run(tmp_path):
    pytest.importorskip(
        "torch", reason="torch is not installed: pip install -e '.[examples]' to run this test"
    )
    pytest.importorskip("sklearn", reason="the examples load scikit-learn's digits data set")
    module = load_example("pbt_mnist_mlp")
    study = module.main(
        ["--output-dir", str(tmp_path), "--population-size", "3", "--generations", "2", "--quiet"]
    )
    trials = study.trials
    assert len(trials) == 6
    assert all(t.status == "COMPLETED" for t in trials)
    assert Counter(t.generation for t in trials) == {1: 3, 2: 3}
    gen1 = {str(t.id) for t in trials if t.generation == 1}
    assert all(t.parameters["load_from"] in gen1 for t in trials if t.generation == 2)
    best = study.get_best_result()
    assert 0.0 < best["Objective"] <= 1.0
    assert (tmp_path / "models" / best["save_to"]).is_file()
    assert (tmp_path / "results.csv").is_file() and (tmp_path / "study.json").is_file()
    assert (tmp_path / "pbt_lineage.png").stat().st_size > 0


def test_numpy_example_skips_figure_without_matplotlib(tmp_path, monkeypatch, capsys):
    pytest.importorskip("sklearn", reason="the examples load scikit-learn's digits data set")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes matplotlib unimportable
    module = load_example("pbt_digits_numpy")
    study = module.main(
        ["--output-dir", str(tmp_path), "--population-size", "2", "--generations", "1", "--quiet"]
    )
    assert len(study.trials) == 2
    assert "skipping the lineage figure" in capsys.readouterr().out
    assert not (tmp_path / "pbt_lineage.png").exists()
    assert (tmp_path / "results.csv").is_file()


def test_torch_example_with_two_workers_and_asynchronous_pbt(tmp_path):
    pytest.importorskip(
        "torch", reason="torch is not installed: pip install -e '.[examples]' to run this test"
    )
    pytest.importorskip("sklearn", reason="the examples load scikit-learn's digits data set")
    import subprocess

    import poptune

    script = Path(__file__).resolve().parent.parent / "examples" / "pbt_mnist_mlp.py"
    result = subprocess.run(
        [sys.executable, str(script), "--output-dir", str(tmp_path), "--population-size", "3",
         "--generations", "3", "--workers", "2", "--asynchronous", "--quiet"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    study = poptune.load_study(f"sqlite:///{tmp_path / 'study.db'}", "pbt-digits",
                               checkpoint_dir=tmp_path / "models")  # fmt: skip
    trials = study.trials
    assert len(trials) == 9 and all(t.status == "COMPLETED" for t in trials)
    assert study.algorithm.synchronous is False
    by_id = {t.id: t for t in trials}
    for t in trials:
        if t.generation > 1:  # each segment starts from a finished segment's checkpoint
            assert by_id[int(t.load_from)].status == "COMPLETED"
    best = study.get_best_result()
    assert best["Objective"] > 0.5
    folder = study.checkpoints.directory  # the study's own folder in checkpoint_dir
    assert folder.parent == tmp_path / "models" and (folder / best["save_to"]).is_file()
    assert "The best found hyperparameter configuration is:" in result.stdout


# -- the training-framework examples (poptune.integrations), at their tiny size ---------------
def _pbt_checks(study: poptune.Study, out: Path, members: int, generations: int) -> None:
    trials = study.trials
    assert len(trials) == members * generations
    assert all(t.status == "COMPLETED" for t in trials)
    assert any(t.explore for t in trials)  # some member was exploited and explored
    best = study.get_best_result()
    folder = study.checkpoints.directory  # the study's own folder in checkpoint_dir
    assert folder.parent == out / "models" and (folder / best["save_to"]).is_file()


@pytest.fixture
def tiny_env(monkeypatch):
    monkeypatch.delenv("POPTUNE_EXAMPLE_TINY", raising=False)  # --tiny sets it; undo after
    monkeypatch.delenv("POPTUNE_EXAMPLE_EPOCHS", raising=False)


def test_pytorch_example_tiny(tmp_path, tiny_env):
    torch = pytest.importorskip("torch", reason="pip install -e '.[torch]' torch==2.13.0")
    study = load_example("pbt_torch").main(["--tiny", "--quiet", "--output-dir", str(tmp_path)])
    _pbt_checks(study, tmp_path, 3, 2)
    folder = study.checkpoints.directory
    kept = [t for t in study.trials if (folder / t.save_to).exists()]
    assert len(kept) >= 3  # the rest were garbage-collected (keep_checkpoints=2)
    for trial in kept:  # each segment trained with its own (perturbed) values
        saved = torch.load(folder / trial.save_to, weights_only=True)
        group = saved["optimizers"][0]["param_groups"][0]
        assert group["initial_lr"] == trial.parameters["learning_rate"]
        assert group["weight_decay"] == trial.parameters["weight_decay"]


@pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")
@pytest.mark.filterwarnings("ignore:.*does not have many workers.*")
def test_lightning_example_tiny(tmp_path, tiny_env):
    pytest.importorskip("torch", reason="pip install -e '.[lightning]' torch==2.13.0")
    pytest.importorskip("lightning", reason="pip install -e '.[lightning]' torch==2.13.0")
    study = load_example("pbt_lightning").main(["--tiny", "--quiet", "--output-dir", str(tmp_path)])
    _pbt_checks(study, tmp_path, 2, 2)
    assert all("val_acc" in t.last_observation.context for t in study.trials)


def test_transformers_example_tiny(tmp_path, tiny_env, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    pytest.importorskip("torch", reason="pip install -e '.[transformers]' torch==2.13.0")
    pytest.importorskip("transformers", reason="pip install -e '.[transformers]' torch==2.13.0")
    pytest.importorskip("accelerate", reason="pip install -e '.[transformers]' torch==2.13.0")
    module = load_example("pbt_transformers")
    study = module.main(["--tiny", "--quiet", "--output-dir", str(tmp_path)])
    _pbt_checks(study, tmp_path, 2, 2)
    assert all(t.last_observation.iteration == 4 * t.generation for t in study.trials)


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # Keras 3.15
def test_keras_example_tiny_with_two_workers(tmp_path, tiny_env, monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    pytest.importorskip("torch", reason="pip install -e '.[keras]' torch==2.13.0")
    pytest.importorskip("keras", reason="pip install -e '.[keras]' torch==2.13.0")
    from poptune.integrations.keras import read_model

    module = load_example("pbt_keras")
    study = module.main(
        ["--tiny", "--quiet", "--workers", "2", "--epochs", "2", "--output-dir", str(tmp_path)]
    )
    _pbt_checks(study, tmp_path, 2, 2)
    assert (tmp_path / "study.db").is_file()  # the two worker processes shared it
    assert all(t.last_observation.iteration == 2 * t.generation for t in study.trials)
    assert all("val_loss" in t.last_observation.context for t in study.trials)
    folder = study.checkpoints.directory
    for trial in [t for t in study.trials if (folder / t.save_to).exists()]:
        model = read_model(study, trial.save_to)  # each segment trained with its own values
        assert float(model.optimizer.learning_rate) == pytest.approx(
            trial.parameters["learning_rate"], rel=1e-6
        )
        assert model.optimizer.momentum == pytest.approx(trial.parameters["momentum"])
