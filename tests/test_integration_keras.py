"""poptune.integrations.keras: Keras 3 (PyTorch backend) PBT through the library's checkpoints:
whole models saved with ``model.save``, hyperparameters applied after loading and verified."""

from __future__ import annotations

import importlib
import os
import sys
import uuid
import zipfile

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
pytest.importorskip("torch", reason="Keras runs on the PyTorch backend here")
keras = pytest.importorskip("keras", reason="pip install 'poptune[keras]' torch==2.13.0")

from poptune import CheckpointError, ConfigurationError, Continuous, Study, algorithms  # noqa: E402
from poptune.exceptions import MissingDependencyError  # noqa: E402
from poptune.integrations import HyperparameterNotAppliedError  # noqa: E402
from poptune.integrations import keras as pk  # noqa: E402

# Keras 3.15's Variable.numpy() (get_weights) on numpy 2: its own deprecation, not poptune's
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

RNG = np.random.default_rng(0)
X = RNG.random((64, 4)).astype("float32")
Y = (X.sum(axis=1) * 1.5).astype("int64") % 3


def build(lr: float = 0.5, optimizer: str = "adam") -> keras.Model:
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
         keras.layers.Dense(3, activation="softmax")]
    )  # fmt: skip
    opt = keras.optimizers.Adam(lr) if optimizer == "adam" else keras.optimizers.SGD(lr, 0.5)
    model.compile(optimizer=opt, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def pbt_study(checkpoint_dir, population=4, generations=3, **kw) -> Study:
    parameters = [Continuous("learning_rate", [1e-3, 1e-1], "log")]
    algorithm = algorithms.PopulationBasedTraining(
        generations, population, quantile_fraction=0.25 if population >= 4 else 0.5
    )
    return Study(parameters, algorithm, lower_is_better=False, seed=3,
                 checkpoint_dir=checkpoint_dir, **kw)  # fmt: skip


class Recorder(keras.callbacks.Callback):
    """What the model and optimizer hold when the first batch begins (after PoptuneCallback's
    on_train_begin, before any update)."""

    def __init__(self) -> None:
        super().__init__()
        self.lr = None
        self.weights = None
        self.iterations = None

    def on_train_batch_begin(self, batch, logs=None):
        if self.lr is None:
            self.lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            self.weights = [w.copy() for w in self.model.get_weights()]
            self.iterations = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))


def test_pbt_members_start_from_the_donors_weights_and_train_with_their_own_lr(tmp_path):
    seen = []
    study = pbt_study(tmp_path / "ckpt")

    def objective(trial):
        donor = None
        if trial.load_from:  # the donor's model, as it was saved
            donor = pk.read_model(study, trial.load_from)
        recorder = Recorder()
        model = build(lr=0.9)  # the trial's rate replaces this one
        callback = pk.PoptuneCallback(trial, "accuracy", context=["loss"])
        model.fit(X, Y, epochs=2, batch_size=16, verbose=0, callbacks=[callback, recorder])
        seen.append((trial.id, trial.explore, donor, recorder, callback.state))

    study.optimize(objective, show_progress=False)
    trials = {t.id: t for t in study.trials}
    assert len(trials) == 12 and all(t.status == "COMPLETED" for t in trials.values())
    assert any(explore for _, explore, *_ in seen), "the run exploited no member"
    for tid, explore, donor, recorder, state in seen:
        trial = trials[tid]
        wanted = trial.parameters["learning_rate"]
        assert recorder.lr == pytest.approx(wanted, rel=1e-6)  # read back after the load
        # one observation per epoch; iteration = epochs trained in total
        assert list(trial.observations) == [2 * trial.generation - 1, 2 * trial.generation]
        assert "loss" in trial.observations[2 * trial.generation].context
        if donor is None:
            assert state.fresh and state.epoch == 0
            continue
        assert state.epoch == 2 * (trial.generation - 1)
        # the optimizer's state came too: its step count (Adam's bias correction goes on)
        assert recorder.iterations == int(keras.ops.convert_to_numpy(donor.optimizer.iterations))
        for got, saved in zip(recorder.weights, donor.get_weights(), strict=True):
            np.testing.assert_array_equal(got, saved)  # the donor's weights, not fresh ones
        donor_lr = float(keras.ops.convert_to_numpy(donor.optimizer.learning_rate))
        if explore:  # exploited: the donor's saved rate would have been the wrong one
            assert recorder.lr != pytest.approx(donor_lr, rel=1e-6)
            assert state.hyperparameters == {"learning_rate": wanted}


def test_a_stop_request_ends_fit_and_the_checkpoint_holds_the_epochs_trained(tmp_path):
    study = pbt_study(tmp_path / "ckpt", population=2, generations=2)
    trial = study.get_suggestion()
    study.request_stop(trial)
    history = build().fit(X, Y, epochs=10, verbose=0, callbacks=[pk.PoptuneCallback(trial, "loss")])
    assert len(history.history["loss"]) == 1 and list(trial.observations) == [1]
    with zipfile.ZipFile(trial.checkpoint_path) as zf:
        assert '"epoch": 1' in zf.read("poptune.json").decode()


def test_a_hyperparameter_the_optimizer_lacks_is_an_error_naming_it(tmp_path):
    parameters = [Continuous("learning_rate", [1e-3, 1e-1]), Continuous("momentum", [0.5, 0.9])]
    study = Study(parameters, algorithms.PopulationBasedTraining(2, 2), lower_is_better=True,
                  checkpoint_dir=tmp_path / "ckpt")  # fmt: skip
    trial = study.get_suggestion()
    with pytest.raises(HyperparameterNotAppliedError, match=r"momentum=.*Adam has no 'momentum'"):
        build().fit(X, Y, epochs=1, verbose=0, callbacks=[pk.PoptuneCallback(trial, "loss")])
    assert not trial.observations
    # SGD has it: both reach the optimizer; leaving it out of the mapping also works
    model = build(optimizer="sgd")
    applied = pk.apply_hyperparameters(model.optimizer, trial)
    assert applied == {k: trial.parameters[k] for k in ("learning_rate", "momentum")}
    assert model.optimizer.momentum == trial.parameters["momentum"]
    assert pk.apply_hyperparameters(build().optimizer, trial, {"momentum": None}) == {
        "learning_rate": trial.parameters["learning_rate"]
    }


def test_a_learning_rate_schedule_or_a_value_that_does_not_stick_is_an_error():
    scheduled = keras.optimizers.SGD(keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.9))
    with pytest.raises(HyperparameterNotAppliedError, match=r"learning_rate=0.02.*Schedule"):
        pk.apply_hyperparameters(scheduled, {"learning_rate": 0.02})

    class Stuck(keras.optimizers.SGD):
        @property
        def momentum(self):
            return 0.0

        @momentum.setter
        def momentum(self, value):
            pass  # drops every write

    with pytest.raises(HyperparameterNotAppliedError, match=r"momentum=0.7.*reads 0.0"):
        pk.apply_hyperparameters(Stuck(0.1), {"momentum": 0.7})
    with pytest.raises(HyperparameterNotAppliedError, match="the model has none"):
        pk.apply_hyperparameters(None, {"lr": 0.1})
    with pytest.raises(ConfigurationError, match="unknown"):
        pk.apply_hyperparameters(keras.optimizers.SGD(0.1), {"x": 0.1}, {"x": "unknown"})


def test_the_seed_notebooks_own_pattern_with_library_checkpoints_in_a_store(tmp_path):
    """SHERPA's notebook: model.save / load_model / optimizer.learning_rate set by hand, here
    through the study's checkpoint store (an fsspec URL: no local path to write to)."""
    study = pbt_study(f"memory://keras-seed-{uuid.uuid4().hex}", population=2, generations=3)
    loaded_lrs = []
    for trial in study:
        training_lr = trial.parameters["learning_rate"]
        if trial.parameters["load_from"] == "":
            model = build(training_lr)
        else:
            model = pk.load_model(trial, apply=False)  # the donor's model, as saved
            if not np.isclose(float(model.optimizer.learning_rate), training_lr):
                model.optimizer.learning_rate = training_lr
            loaded_lrs.append((float(model.optimizer.learning_rate), training_lr))
        model.fit(X, Y, verbose=0)
        loss, accuracy = model.evaluate(X, Y, verbose=0)
        study.add_observation(trial, iteration=trial.generation, objective=accuracy,
                              context={"loss": loss})  # fmt: skip
        study.finalize(trial)
        pk.save_model(trial, model)
    assert len(study.trials) == 6 and len(loaded_lrs) == 4
    assert all(got == pytest.approx(want, rel=1e-6) for got, want in loaded_lrs)
    best = study.get_best_result()
    model = pk.read_model(study)  # the best trial's model, from the store
    assert model.evaluate(X, Y, verbose=0)[1] == pytest.approx(best["Objective"])
    # load_model applies the trial's rate itself by default: a last-generation trial, which
    # starts from a donor (the best trial may be a founder: fit's shuffling is not seeded)
    again = study.get_trial(study.trials[-1].id)
    assert again.load_from
    assert float(pk.load_model(again).optimizer.learning_rate) == pytest.approx(
        again.parameters["learning_rate"], rel=1e-6
    )


def test_safe_mode_refuses_a_lambda_layer_unless_the_study_allows_code(tmp_path):
    def make():
        model = keras.Sequential([keras.Input((4,)), keras.layers.Lambda(lambda t: t * 2.0),
                                  keras.layers.Dense(3)])  # fmt: skip
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        return model

    for allow in (False, True):
        study = pbt_study(tmp_path / f"ckpt{allow}", population=2, generations=2,
                          allow_pickle=allow)  # fmt: skip
        for trial in (study.get_suggestion(), study.get_suggestion()):
            pk.save_model(trial, make())
            trial.report(float(trial.id), iteration=1)
            study.finalize(trial)
        trial = study.get_suggestion()
        if allow:
            assert len(pk.load_model(trial).layers) == 2
            continue
        with pytest.raises(CheckpointError, match="safe_mode=True"):
            pk.load_model(trial)
        with pytest.raises(CheckpointError, match="allow_pickle=True"):
            pk.load_model(trial, safe_mode=False)


def test_a_missing_or_foreign_checkpoint_is_a_checkpoint_error(tmp_path):
    study = pbt_study(tmp_path / "ckpt", population=2, generations=2)
    first = [study.get_suggestion() for _ in range(2)]
    for trial in first:
        trial.save_checkpoint({"weights": np.zeros(3)})  # poptune's own format, not .keras
        trial.report(1.0, iteration=1)
        study.finalize(trial)
    trial = study.get_suggestion()
    with pytest.raises(CheckpointError, match="not a Keras .keras file"):
        build().fit(X, Y, epochs=1, verbose=0, callbacks=[pk.PoptuneCallback(trial, "loss")])
    (study.checkpoints.directory / trial.load_from).unlink()
    with pytest.raises(CheckpointError, match="does not exist"):
        pk.load_model(trial)


def test_study_keras_callback_gains_the_checkpoints(tmp_path):
    study = pbt_study(tmp_path / "ckpt", population=2, generations=2)
    for trial in study:
        recorder = Recorder()
        callback = study.keras_callback(trial, "accuracy", ["loss"], checkpoints=True)
        build(lr=0.9).fit(X, Y, epochs=2, verbose=0, callbacks=[callback, recorder])
        study.finalize(trial)
        assert recorder.lr == pytest.approx(trial.parameters["learning_rate"], rel=1e-6)
        # SHERPA's 0-based epochs for a fresh member, then the member's count goes on
        assert list(trial.observations) == [2 * trial.generation - 2, 2 * trial.generation - 1]
        if trial.load_from:
            donor = pk.read_model(study, trial.load_from)
            for got, saved in zip(recorder.weights, donor.get_weights(), strict=True):
                np.testing.assert_array_equal(got, saved)
    assert len(study.trials) == 4
    with pytest.raises(ConfigurationError, match="mapping applies with checkpoints=True"):
        study.keras_callback(study.trials[0], "loss", mapping={"lr": "learning_rate"})


def test_an_unlogged_monitor_names_what_keras_logged(tmp_path):
    study = pbt_study(tmp_path / "ckpt", population=2, generations=2)
    trial = study.get_suggestion()
    with pytest.raises(ConfigurationError, match="'val_acc' is not among.*'accuracy'"):
        build().fit(X, Y, epochs=1, verbose=0, callbacks=[pk.PoptuneCallback(trial, "val_acc")])


def test_without_keras_the_module_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "keras", None)
    monkeypatch.delitem(sys.modules, "poptune.integrations.keras")
    with pytest.raises(MissingDependencyError, match=r'pip install "poptune\[keras\]"'):
        importlib.import_module("poptune.integrations.keras")


def test_a_loss_scale_optimizer_is_reached_through_to_the_one_it_wraps():
    inner = keras.optimizers.SGD(0.1, momentum=0.5)
    wrapped = keras.optimizers.LossScaleOptimizer(inner)
    applied = pk.apply_hyperparameters(wrapped, {"learning_rate": 0.03, "momentum": 0.8})
    assert applied == {"learning_rate": 0.03, "momentum": 0.8}
    assert float(inner.learning_rate) == pytest.approx(0.03) and inner.momentum == 0.8


def test_checkpoints_kept_in_the_database_go_through_the_store(tmp_path):
    study = pbt_study("database://", population=2, generations=2,
                      storage=f"sqlite:///{tmp_path / 'study.db'}")  # fmt: skip
    recorders = {}
    for trial in study:
        recorders[trial.id] = recorder = Recorder()
        callbacks = [pk.PoptuneCallback(trial, "accuracy"), recorder]
        build(lr=0.9).fit(X, Y, epochs=1, verbose=0, callbacks=callbacks)
        study.finalize(trial)
    assert not list(tmp_path.glob("*.keras")) and study.checkpoints.names() == ["1", "2", "3", "4"]
    for trial in study.trials:
        assert recorders[trial.id].lr == pytest.approx(trial.parameters["learning_rate"], rel=1e-6)
        if trial.load_from:
            donor = pk.read_model(study, trial.load_from)
            for got, saved in zip(recorders[trial.id].weights, donor.get_weights(), strict=True):
                np.testing.assert_array_equal(got, saved)
