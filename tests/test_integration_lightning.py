"""poptune.integrations.lightning: PBT around Trainer.fit with one callback."""

from __future__ import annotations

import importlib
import logging
import sys
import warnings
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="needs PyTorch: pip install torch==2.13.0")
pl = pytest.importorskip(
    "lightning.pytorch", reason='needs Lightning: pip install -e ".[lightning]" torch==2.13.0'
)

from poptune import ConfigurationError, Continuous, Study, algorithms  # noqa: E402
from poptune.checkpoints import CheckpointStore  # noqa: E402
from poptune.exceptions import MissingDependencyError  # noqa: E402
from poptune.integrations import HyperparameterNotAppliedError  # noqa: E402
from poptune.integrations.lightning import PoptuneCallback  # noqa: E402

# Lightning 2.6 calls a torch API that torch 2.13 deprecates, and advises more data-loader
# workers: neither is this library's to act on.
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning"),
    pytest.mark.filterwarnings("ignore:.*does not have many workers.*"),
]
logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)

X = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
Y = (X[:, 0] > 0).long()


class Lit(pl.LightningModule):
    def __init__(self, optimizer: str = "sgd") -> None:
        super().__init__()
        self.kind = optimizer
        self.net = torch.nn.Linear(4, 2)

    def training_step(self, batch, _):
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self.net(x), y)
        self.log("train_loss", loss, on_epoch=True, on_step=False)
        return loss

    def validation_step(self, batch, _):
        x, y = batch
        self.log("val_loss", torch.nn.functional.cross_entropy(self.net(x), y))

    def configure_optimizers(self):
        if self.kind == "adam":
            return torch.optim.Adam(self.parameters(), lr=1e-3)
        return torch.optim.SGD(self.parameters(), lr=0.5, momentum=0.1)  # PBT overrides both


def fit(trial, epochs=1, model=None, **callback_kw) -> PoptuneCallback:
    callback = PoptuneCallback(trial, **{"monitor": "val_loss", **callback_kw})
    trainer = pl.Trainer(
        max_epochs=epochs, callbacks=[callback], accelerator="cpu", devices=1,
        log_every_n_steps=1, num_sanity_val_steps=0, enable_progress_bar=False, logger=False,
        enable_checkpointing=False, enable_model_summary=False,
    )  # fmt: skip
    data = torch.utils.data.TensorDataset(X, Y)
    trainer.fit(
        model or Lit(),
        torch.utils.data.DataLoader(data, batch_size=16, shuffle=True),
        torch.utils.data.DataLoader(data, batch_size=64),
    )
    return callback


def lightning_objective(trial) -> None:
    """A PBT segment (module level: worker processes import it)."""
    warnings.filterwarnings("ignore", ".*LeafSpec.*", FutureWarning)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    torch.manual_seed(trial.id)
    fit(trial, epochs=1, context=["train_loss"])


def pbt_study(tmp_path: Path, **kw) -> Study:
    parameters = [
        Continuous("learning_rate", [0.01, 0.3], "log"),
        Continuous("momentum", [0.5, 0.95]),
    ]
    algorithm = algorithms.PopulationBasedTraining(2, 4, quantile_fraction=0.25)
    return Study(parameters, algorithm, lower_is_better=True, seed=2,
                 checkpoint_dir=tmp_path / "ckpt", **kw)  # fmt: skip


def check_every_segment_trained_with_its_own_values(study: Study, ckpt: Path) -> None:
    """Each checkpoint's optimizer (saved at the end of fit) holds its trial's lr and momentum;
    an exploited member's differs from its donor's."""
    trials = {t.id: t for t in study.trials}
    assert len(trials) == 8 and all(t.status == "COMPLETED" for t in trials.values())
    assert any(t.explore for t in trials.values())
    ckpt = study.checkpoints.directory  # the study's folder inside checkpoint_dir
    saved = {i: torch.load(ckpt / str(i), weights_only=True) for i in trials}
    for i, trial in trials.items():
        group = saved[i]["optimizers"][0]["param_groups"][0]
        assert group["lr"] == trial.parameters["learning_rate"]
        assert group["momentum"] == trial.parameters["momentum"]
        assert saved[i]["epoch"] == trial.generation  # epochs across segments
        assert list(trial.observations) == [trial.generation]
        assert set(trial.observations[trial.generation].context) == {"train_loss"}
        if trial.explore:
            donor = saved[int(trial.load_from)]["optimizers"][0]["param_groups"][0]
            assert group["lr"] != donor["lr"]


def test_a_pbt_run_in_process(tmp_path):
    study = pbt_study(tmp_path)
    study.optimize(lightning_objective, show_progress=False)
    check_every_segment_trained_with_its_own_values(study, tmp_path / "ckpt")


@pytest.mark.slow  # each worker process imports Lightning (seconds; a minute on a busy machine)
def test_a_pbt_run_with_two_worker_processes(tmp_path):
    study = pbt_study(tmp_path, storage=f"sqlite:///{tmp_path / 'study.db'}", study_name="pl")
    study.optimize(lightning_objective, n_workers=2, show_progress=False)
    check_every_segment_trained_with_its_own_values(study, tmp_path / "ckpt")


class FakeTrial:
    """What the callback uses of a trial, recorded."""

    def __init__(self, tmp_path, id, parameters, load_from="", stop_after=None, member=0):  # noqa: A002
        self.id, self.parameters, self.member = id, parameters, member
        self.load_from = load_from
        self.load_path = tmp_path / load_from if load_from else None
        self.checkpoint_path = tmp_path / str(id)
        self.checkpoint_store = CheckpointStore(tmp_path)  # what the integration saves through
        self.save_to = str(id)
        self.reports: list[tuple[float, int, dict]] = []
        self.stop_after = stop_after

    def report(self, objective, iteration=None, **context):
        self.reports.append((objective, iteration, context))

    def should_stop(self):
        return self.stop_after is not None and len(self.reports) >= self.stop_after


def test_fit_ends_when_the_trial_should_stop_and_the_next_segment_counts_on(tmp_path):
    first = FakeTrial(tmp_path, 1, {"learning_rate": 0.1}, stop_after=2)
    fit(first, epochs=5)
    assert [it for _, it, _ in first.reports] == [1, 2]  # stopped after two of five epochs
    assert torch.load(first.checkpoint_path, weights_only=True)["epoch"] == 2
    second = FakeTrial(tmp_path, 2, {"learning_rate": 0.2}, load_from="1")
    callback = fit(second, epochs=2)
    assert callback.state.epoch == 2 and callback.state.path == first.checkpoint_path
    assert [it for _, it, _ in second.reports] == [3, 4]
    saved = torch.load(second.checkpoint_path, weights_only=True)
    assert saved["epoch"] == 4 and saved["optimizers"][0]["param_groups"][0]["lr"] == 0.2


def test_an_unlogged_metric_is_an_error_naming_it(tmp_path):
    trial = FakeTrial(tmp_path, 1, {"learning_rate": 0.1})
    with pytest.raises(ConfigurationError, match=r"'val_acc' was not logged.*'val_loss'"):
        fit(trial, monitor="val_acc")


def test_a_hyperparameter_the_optimizer_does_not_have_is_an_error_naming_it(tmp_path):
    trial = FakeTrial(tmp_path, 1, {"learning_rate": 0.1, "momentum": 0.9})
    with pytest.raises(HyperparameterNotAppliedError, match=r"momentum=0\.9 .* \(Adam\)"):
        fit(trial, model=Lit("adam"))
    fit(trial, model=Lit("adam"), mapping={"momentum": None})  # not the optimizer's: fine
    assert trial.reports


def test_without_lightning_the_module_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "lightning", None)
    monkeypatch.setitem(sys.modules, "lightning.pytorch", None)
    monkeypatch.delitem(sys.modules, "poptune.integrations.lightning")
    with pytest.raises(MissingDependencyError, match=r'pip install "poptune\[lightning\]"'):
        importlib.import_module("poptune.integrations.lightning")
