"""Study.keras_callback with Keras 3 on the PyTorch backend (skips where either is missing)."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
pytest.importorskip("torch", reason="Keras runs on the PyTorch backend here")
keras = pytest.importorskip("keras", reason="keras_callback needs Keras: pip install keras")

import poptune as sherpa  # noqa: E402


def _model(lr: float):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(
        optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )  # fmt: skip
    return model


def _data():
    rng = np.random.default_rng(0)
    x = rng.random((60, 4)).astype("float32")
    return x, (x.sum(axis=1) * 1.5).astype("int64") % 3


def _study(**kw):
    return sherpa.Study(
        [sherpa.Continuous("lr", [1e-3, 1e-1], "log")],
        sherpa.algorithms.RandomSearch(max_num_trials=2),
        lower_is_better=False, **kw,
    )  # fmt: skip


def test_one_observation_per_epoch_with_context():
    study = _study()
    x, y = _data()
    for trial in study:
        history = _model(trial.parameters["lr"]).fit(
            x, y, epochs=3, validation_split=0.25, verbose=0,
            callbacks=[study.keras_callback(trial, "val_accuracy", ["loss", "val_loss"])],
        )  # fmt: skip
        study.finalize(trial)
        obs = trial.observations
        assert list(obs) == [0, 1, 2]  # Keras's epoch numbers, as SHERPA recorded them
        for epoch in obs:
            assert obs[epoch].objective == pytest.approx(history.history["val_accuracy"][epoch])
            assert obs[epoch].context["val_loss"] == pytest.approx(
                history.history["val_loss"][epoch]
            )
    results = study.results
    assert {"loss", "val_loss"} <= set(results.columns)
    assert (results["Status"] == "INTERMEDIATE").sum() == 6
    assert (results["Status"] == "COMPLETED").sum() == 2


def test_a_stop_request_ends_fit_after_the_epoch():
    study = _study()
    trial = study.get_suggestion()
    study.request_stop(trial)
    x, y = _data()
    history = _model(0.01).fit(
        x, y, epochs=10, verbose=0, callbacks=[study.keras_callback(trial, "loss")]
    )
    assert len(history.history["loss"]) == 1 and list(trial.observations) == [0]


def test_an_unknown_metric_names_what_keras_logged():
    study = _study()
    trial = study.get_suggestion()
    x, y = _data()
    with pytest.raises(sherpa.ConfigurationError, match="'val_acc' is not among.*'accuracy'"):
        _model(0.01).fit(
            x, y, epochs=1, verbose=0, callbacks=[study.keras_callback(trial, "val_acc")]
        )
    assert not trial.observations
