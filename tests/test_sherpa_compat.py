"""The seed notebook's code, cell by cell, against ``import poptune as sherpa``.

Training is replaced by a deterministic stand-in (the notebook's Keras model needs MNIST
from the network); everything that touches the library is the notebook's own code, except
one line of the plotting cell that relied on ragged numpy arrays (see the comment).
"""

import os
import shutil
import tempfile

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.pyplot import cm  # noqa: E402

import poptune as sherpa  # noqa: E402


def fake_fit(model, lr):
    # accuracy improves with training and is best for lr near 3e-3
    model["epochs"] += 1
    model["acc"] += (1 - model["acc"]) * 0.5 * np.exp(-abs(np.log10(lr / 3e-3)))
    return model["acc"], 1 - model["acc"]


def test_seed_notebook_runs(tmp_path, request):
    parameters = [sherpa.Continuous("learning_rate", [1e-4, 1e-2], "log")]
    algorithm = sherpa.algorithms.PopulationBasedTraining(
        population_size=5,
        num_generations=5,
        perturbation_factors=(0.8, 1.2),
        parameter_range={"learning_rate": [1e-6, 1e-1]},
    )
    study = sherpa.Study(
        parameters=parameters, algorithm=algorithm, lower_is_better=False, dashboard_port=8997
    )
    request.addfinalizer(study.close)  # the notebook never stops its dashboard; the test does
    model_dir = tempfile.mkdtemp(dir=tmp_path)

    for trial in study:
        generation = trial.parameters["generation"]
        load_from = trial.parameters["load_from"]
        training_lr = trial.parameters["learning_rate"]
        if load_from == "":
            model = {"acc": 0.1, "epochs": 0, "lr": training_lr}
        else:
            model = dict(np.load(os.path.join(model_dir, load_from) + ".npz"))
            model = {k: float(v) for k, v in model.items()}
            if not np.isclose(model["lr"], training_lr):
                model["lr"] = training_lr  # "Perturbing learning rate"
        accuracy, loss = fake_fit(model, training_lr)
        study.add_observation(
            trial=trial, iteration=generation, objective=accuracy, context={"loss": loss}
        )
        study.finalize(trial=trial)
        np.savez(os.path.join(model_dir, trial.parameters["save_to"]), **model)
        study.save(model_dir)

    best = study.get_best_result()
    assert set(best) == {
        "Iteration", "Objective", "Trial-ID", "generation", "learning_rate", "lineage",
        "load_from", "loss", "save_to",
    }  # fmt: skip
    assert best["generation"] == 5 and best["Iteration"] == 5
    assert best["lineage"].count(",") == 4 and best["load_from"] == best["lineage"].split(",")[-2]
    assert os.path.exists(os.path.join(model_dir, study.get_best_result()["save_to"]) + ".npz")
    assert os.path.exists(os.path.join(model_dir, "results.csv"))

    completed = study.results.query("Status == 'COMPLETED'")
    fig, axis = plt.subplots(ncols=2, figsize=(15, 5))
    n = 5
    color = cm.rainbow(np.linspace(0, 1, n))
    lines = 0
    for j in range(1, n + 1):
        descendents = completed[(completed["lineage"].str.startswith(f"{j},").fillna(False))]
        for _i, row in descendents.iterrows():
            x = list(range(1, len(row["lineage"].split(",")) + 1))
            obj = []
            lr = []
            for tid in row["lineage"].split(",")[:-1]:
                obj.append(completed.loc[completed["Trial-ID"] == int(tid)]["Objective"].values[0])
                # the notebook appended the Series itself; numpy >= 1.24 rejects ragged lists
                lr.append(
                    completed.loc[completed["Trial-ID"] == int(tid)]["learning_rate"].values[0]
                )
            obj.append(row["Objective"])
            lr.append(row["learning_rate"])
            axis[0].plot(x, obj, "-", color=color[j - 1], linewidth=2.5)
            axis[1].plot(x, lr, "-", color=color[j - 1], linewidth=2.5)
            lines += 1
    axis[1].set_yscale("log")
    plt.close(fig)
    assert lines == 20  # every trial of generations 2..5 descends from a founder
    shutil.rmtree(model_dir)
