"""poptune.integrations.transformers: PBT around Trainer.train with a tiny BERT (no download)."""

from __future__ import annotations

import importlib
import os
import sys

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may reach the network
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

torch = pytest.importorskip("torch", reason="needs PyTorch: pip install torch==2.13.0")
transformers = pytest.importorskip(
    "transformers", reason='needs Transformers: pip install -e ".[transformers]" torch==2.13.0'
)
pytest.importorskip("accelerate", reason="Trainer needs accelerate")

from poptune import ConfigurationError, Continuous, Study, algorithms  # noqa: E402
from poptune.checkpoints import CheckpointStore  # noqa: E402
from poptune.exceptions import MissingDependencyError  # noqa: E402
from poptune.integrations import HyperparameterNotAppliedError  # noqa: E402
from poptune.integrations.transformers import (  # noqa: E402
    PoptuneCallback,
    argument_names,
    training_arguments,
)

CONFIG = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
              vocab_size=50, max_position_embeddings=16, num_labels=2)  # fmt: skip


class Tokens(torch.utils.data.Dataset):
    """Generated token sequences; the label is whether token 7 occurs."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(1, 50, (n, 12), generator=g)
        self.labels = (self.ids == 7).any(dim=1).long()

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.ids[i], "attention_mask": torch.ones(12, dtype=torch.long),
                "labels": self.labels[i]}  # fmt: skip


TRAIN, VAL = Tokens(64, 0), Tokens(32, 1)


def train(trial, tmp_path, epochs=1, callback=None, **kw):
    torch.manual_seed(trial.id)
    model = transformers.BertForSequenceClassification(transformers.BertConfig(**CONFIG))
    args = training_arguments(
        trial, output_dir=str(tmp_path / f"out{trial.id}"), num_train_epochs=epochs,
        eval_strategy="epoch", per_device_train_batch_size=16, per_device_eval_batch_size=32,
        lr_scheduler_type="constant", use_cpu=True, disable_tqdm=True, logging_strategy="no",
        **kw,
    )  # fmt: skip
    callback = callback or PoptuneCallback(trial, metric="eval_loss")
    trainer = transformers.Trainer(
        model=model, args=args, train_dataset=TRAIN, eval_dataset=VAL, callbacks=[callback]
    )
    trainer.train()
    return trainer, callback


def transformers_objective(trial) -> None:
    train(trial, trial.checkpoint_path.parent.parent)


def test_training_arguments_take_the_trials_values():
    params = {"learning_rate": 3e-4, "weight_decay": 0.01, "warmup_steps": 2, "units": 8,
              "generation": 2, "load_from": "1", "save_to": "5", "lineage": "1,"}  # fmt: skip
    assert argument_names(params) == {"learning_rate": "learning_rate",
                                      "weight_decay": "weight_decay",
                                      "warmup_steps": "warmup_steps"}  # fmt: skip
    args = training_arguments(params, output_dir="unused", use_cpu=True)
    assert (args.learning_rate, args.weight_decay, args.warmup_steps) == (3e-4, 0.01, 2)
    assert args.save_strategy == "no"
    assert argument_names({"lr": 0.1, "peak": 0.2}, {"peak": "learning_rate", "lr": None}) == {
        "peak": "learning_rate"
    }
    with pytest.raises(ConfigurationError, match="'lr_max' is not a field"):
        argument_names({"a": 1}, {"a": "lr_max"})
    with pytest.raises(ConfigurationError, match=r"learning_rate=0\.1 was given"):
        training_arguments(params, output_dir="unused", learning_rate=0.1)


def test_pbt_with_trainer_exploited_members_train_with_their_new_learning_rate(tmp_path):
    parameters = [Continuous("learning_rate", [1e-4, 1e-2], "log"),
                  Continuous("weight_decay", [0.0, 0.1])]  # fmt: skip
    algorithm = algorithms.PopulationBasedTraining(2, 2, quantile_fraction=0.5)  # 1 exploit
    study = Study(parameters, algorithm, lower_is_better=True, seed=5,
                  checkpoint_dir=tmp_path / "ckpt")  # fmt: skip
    study.optimize(transformers_objective, show_progress=False)
    trials = {t.id: t for t in study.trials}
    assert len(trials) == 4 and all(t.status == "COMPLETED" for t in trials.values())
    assert any(t.explore for t in trials.values())
    ckpt = study.checkpoints.directory  # the study's folder inside checkpoint_dir
    saved = {i: torch.load(ckpt / str(i), weights_only=True) for i in trials}
    for i, trial in trials.items():
        groups = saved[i]["optimizers"][0]["param_groups"]
        assert {g["lr"] for g in groups} == {trial.parameters["learning_rate"]}
        decays = {g["weight_decay"] for g in groups}  # the Trainer's decay/no-decay groups
        assert decays == {trial.parameters["weight_decay"], 0.0}
        assert saved[i]["step"] == 4 * trial.generation  # 64 samples / 16 per step, per epoch
        assert list(trial.observations) == [saved[i]["step"]]
        if trial.explore:
            donor = saved[int(trial.load_from)]["optimizers"][0]["param_groups"][0]
            assert groups[0]["lr"] != donor["lr"]


class FakeTrial:
    def __init__(self, tmp_path, id, parameters, load_from="", stop_after=None, member=0):  # noqa: A002
        self.id, self.parameters, self.member, self.load_from = id, parameters, member, load_from
        self.load_path = tmp_path / "ckpt" / load_from if load_from else None
        self.checkpoint_path = tmp_path / "ckpt" / str(id)
        self.checkpoint_path.parent.mkdir(exist_ok=True)
        self.checkpoint_store = CheckpointStore(tmp_path / "ckpt")  # what the integration uses
        self.save_to = str(id)
        self.reports: list = []
        self.stop_after = stop_after

    def report(self, objective, iteration=None, **context):
        self.reports.append((objective, iteration, context))

    def should_stop(self):
        return self.stop_after is not None and len(self.reports) >= self.stop_after


def test_resuming_loads_the_weights_and_counts_steps_on_and_stopping_ends_training(tmp_path):
    first = FakeTrial(tmp_path, 1, {"learning_rate": 1e-3}, stop_after=1)
    trainer, _ = train(first, tmp_path, epochs=3)
    assert [it for _, it, _ in first.reports] == [4]  # stopped after the first of three epochs
    weights = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    second = FakeTrial(tmp_path, 2, {"learning_rate": 2e-3}, load_from="1")
    loaded = {}

    class Peek(PoptuneCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            super().on_train_begin(args, state, control, **kwargs)
            loaded.update({k: v.clone() for k, v in kwargs["model"].state_dict().items()})
            loaded["lr"] = kwargs["optimizer"].param_groups[0]["lr"]

    _, callback = train(second, tmp_path, epochs=1, callback=Peek(second, context=["loss"]))
    assert callback.state.step == 4 and callback.state.path == first.checkpoint_path
    assert all(torch.equal(loaded[k], v) for k, v in weights.items())
    assert loaded["lr"] == 2e-3  # the trial's, not the checkpoint's 1e-3
    assert [it for _, it, _ in second.reports] == [8]
    assert "loss" in second.reports[0][2]


def test_arguments_without_the_trials_value_are_an_error_naming_it(tmp_path):
    trial = FakeTrial(tmp_path, 1, {"learning_rate": 1e-3})
    model = transformers.BertForSequenceClassification(transformers.BertConfig(**CONFIG))
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "o"), use_cpu=True, report_to="none", save_strategy="no",
        disable_tqdm=True,
    )  # fmt: skip
    trainer = transformers.Trainer(
        model=model, args=args, train_dataset=TRAIN, callbacks=[PoptuneCallback(trial)]
    )
    with pytest.raises(HyperparameterNotAppliedError, match=r"learning_rate=0\.001 did not"):
        trainer.train()


def test_an_unknown_metric_is_an_error_naming_it(tmp_path):
    trial = FakeTrial(tmp_path, 1, {"learning_rate": 1e-3})
    with pytest.raises(ConfigurationError, match=r"'accuracy' is not among .*'eval_loss'"):
        train(trial, tmp_path, callback=PoptuneCallback(trial, metric="accuracy"))


def test_without_transformers_the_module_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    monkeypatch.delitem(sys.modules, "poptune.integrations.transformers")
    with pytest.raises(MissingDependencyError, match=r'pip install "poptune\[transformers\]"'):
        importlib.import_module("poptune.integrations.transformers")
