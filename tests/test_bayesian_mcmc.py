"""GPyOpt's GP_MCMC / *_MCMC options (BayesianOptimization(hyperparameters='mcmc')): kernel
hyperparameters sampled from their posterior, the acquisition averaged over the samples."""

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from poptune import ConfigurationError, Continuous, Study, algorithms
from poptune.algorithms import algorithm_from_config, bayesian
from poptune.algorithms._gp import MaternHyperparameters, Posterior, acquisition
from poptune.algorithms._gp_mcmc import (
    averaged_acquisition,
    averaged_acquisition_gradient,
    posteriors,
    sample_hyperparameters,
)
from poptune.algorithms.bayesian import BayesianOptimization, GPyOpt
from poptune.study import join_study

from .conftest import forget_storages

PARAMS = [Continuous("x", [-5.0, 10.0]), Continuous("y", [0.0, 15.0])]
# A short chain and a small search keep these tests fast.
SMALL = {"n_samples": 4, "n_burnin": 20, "subsample_interval": 3, "n_candidates": 100,
         "n_restarts": 1}  # fmt: skip


def branin(p):
    x1, x2 = p["x"], p["y"]
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


def sherpa_mcmc(max_num_trials=7, **extra):
    return GPyOpt(max_concurrent=1, model_type="GP_MCMC", acquisition_type="EI_MCMC",
                  num_initial_data_points=3, max_num_trials=max_num_trials,
                  **{**SMALL, **extra})  # fmt: skip


def run(study, n=None):
    done = []
    for trial in study:
        study.add_observation(trial, iteration=1, objective=branin(trial.parameters))
        study.finalize(trial)
        done.append(trial)
        if n is not None and len(done) == n:
            break
    return done


def trace(trials):
    return [(t.id, t.parameters, t.meta) for t in trials]


# -- the SHERPA call runs ------------------------------------------------------------------
def test_sherpas_gp_mcmc_call_runs_a_study_to_completion_in_memory():
    study = Study(PARAMS, sherpa_mcmc(), lower_is_better=True, seed=0, disable_dashboard=True)
    trials = run(study)
    assert len(trials) == 7 and all(t.status.value == "COMPLETED" for t in study.trials)
    assert [t.meta["phase"] for t in trials] == ["random"] * 3 + ["model"] * 4
    for t in trials[3:]:
        assert 0.0 <= t.meta["mcmc_acceptance"] <= 1.0
        assert math.isfinite(t.meta["acquisition"])
    assert len({(t.parameters["x"], t.parameters["y"]) for t in trials}) == 7
    assert study.get_best_result()["Objective"] == min(branin(t.parameters) for t in trials)
    json.dumps(study.history.state)  # the only state kept: JSON like the rest
    pred = study.algorithm.get_best_pred(study)
    assert set(pred) == {"parameters", "predicted", "std"} and math.isfinite(pred["predicted"])


@pytest.mark.parametrize("kind", ["MPI_MCMC", "LCB_MCMC"])
def test_the_other_mcmc_acquisitions_run(kind):
    algo = sherpa_mcmc(max_num_trials=5)
    algo = GPyOpt(**{**algo.get_config(), "acquisition_type": kind})
    study = Study(PARAMS, algo, True, seed=1, disable_dashboard=True)
    trials = run(study)
    assert [t.meta["phase"] for t in trials] == ["random"] * 3 + ["model"] * 2


def test_on_an_sqlite_file_it_resumes_as_one_uninterrupted_run(tmp_path):
    url = f"sqlite:///{tmp_path / 'mcmc.db'}"
    reference = trace(run(Study(PARAMS, sherpa_mcmc(), True, seed=5, disable_dashboard=True)))
    try:
        first = Study(PARAMS, sherpa_mcmc(), True, seed=5, storage=url, study_name="mcmc",
                      disable_dashboard=True)  # fmt: skip
        part = run(first, n=4)
        first.close()
        # a second process would rebuild the algorithm from the stored configuration
        again = join_study(url, "mcmc", disable_dashboard=True)
        assert isinstance(again.algorithm, GPyOpt)
        assert again.algorithm.to_config() == sherpa_mcmc().to_config()
        rest = run(again)
        assert trace(part + rest) == reference
        assert all(t.status.value == "COMPLETED" for t in again.trials)
        again.close()
    finally:
        forget_storages()


def test_a_saved_study_resumes(tmp_path):
    reference = trace(run(Study(PARAMS, sherpa_mcmc(), True, seed=2, disable_dashboard=True)))
    first = Study(PARAMS, sherpa_mcmc(), True, seed=2, disable_dashboard=True)
    part = run(first, n=5)
    first.save(tmp_path / "study.json")
    resumed = Study.load(tmp_path / "study.json")
    assert trace(part + run(resumed)) == reference


# -- the acquisition is an average over distinct samples ------------------------------------
def _data(n=12, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.random((n, 2))
    y = np.array([branin({"x": -5 + 15 * a, "y": 15 * b}) for a, b in X])
    return X, (y - y.mean()) / y.std()


def test_the_chain_gives_distinct_samples_reproducibly():
    X, y = _data()
    start = MaternHyperparameters(1.0, np.array([0.5, 0.5]), 1e-4)
    samples, rate = sample_hyperparameters(X, y, start, np.random.default_rng(3))
    assert len(samples) == 10 and 0.0 < rate < 1.0  # GPyOpt's default n_samples
    thetas = {(s.amplitude, *s.length_scale, s.noise) for s in samples}
    assert len(thetas) >= 5
    again, _ = sample_hyperparameters(X, y, start, np.random.default_rng(3))
    assert [(s.amplitude, *s.length_scale, s.noise) for s in again] == [
        (s.amplitude, *s.length_scale, s.noise) for s in samples
    ]
    short, _ = sample_hyperparameters(X, y, start, np.random.default_rng(3), n_samples=3,
                                      n_burnin=5, subsample_interval=2)  # fmt: skip
    assert len(short) == 3


@pytest.mark.parametrize("kind", ["EI", "MPI", "LCB"])
def test_the_averaged_acquisition_is_the_mean_of_the_per_sample_ones(kind):
    X, y = _data()
    start = MaternHyperparameters(1.0, np.array([0.5, 0.5]), 1e-4)
    samples, _ = sample_hyperparameters(X, y, start, np.random.default_rng(0), n_samples=5)
    models = posteriors(X, y, samples)
    Z = np.random.default_rng(1).random((40, 2))
    best = float(y.min())
    each = np.stack([acquisition(kind, *m.predict(Z), best) for m in models])
    assert np.ptp(each, axis=0).max() > 1e-3  # the samples' models really differ
    got = averaged_acquisition(kind, models, Z, best)
    if kind == "LCB":
        np.testing.assert_allclose(got, each.mean(axis=0), rtol=1e-12)
    else:  # EI and PI are averaged as themselves, returned on the log scale
        np.testing.assert_allclose(np.exp(got), np.exp(each).mean(axis=0), rtol=1e-9)
    # its gradient (the L-BFGS-B polish) against finite differences
    x = np.array([0.3, 0.6])
    value, grad = averaged_acquisition_gradient(kind, models, x, best)
    assert value == pytest.approx(float(averaged_acquisition(kind, models, x[None], best)[0]))
    h = 1e-6
    numeric = [
        (averaged_acquisition(kind, models, (x + h * e)[None], best)[0]
         - averaged_acquisition(kind, models, (x - h * e)[None], best)[0]) / (2 * h)
        for e in np.eye(2)
    ]  # fmt: skip
    np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-6)


def test_a_suggestion_maximises_the_average_over_the_samples_own_posteriors(monkeypatch):
    seen = {}
    real = bayesian.posteriors

    def spy(X, y, samples):
        seen["samples"] = list(samples)
        seen["models"] = real(X, y, samples)
        seen["X"], seen["y"] = X, y
        return seen["models"]

    monkeypatch.setattr(bayesian, "posteriors", spy)
    study = Study(PARAMS, sherpa_mcmc(max_num_trials=4), True, seed=4, disable_dashboard=True)
    trial = run(study)[-1]
    assert trial.meta["phase"] == "model"
    samples, models = seen["samples"], seen["models"]
    assert len(samples) == 4 and all(isinstance(m, Posterior) for m in models)
    assert len({(s.amplitude, *s.length_scale, s.noise) for s in samples}) >= 2
    assert len({id(m.chol[0]) for m in models}) == 4  # each sample its own Cholesky
    z = bayesian.Space(PARAMS).encode([trial.parameters])
    best = float(np.min(seen["y"]))
    each = [float(acquisition("EI", *m.predict(z), best)[0]) for m in models]
    mean_ei = float(np.mean(np.exp(each)))
    assert math.log(mean_ei) == pytest.approx(trial.meta["acquisition"], rel=1e-6, abs=1e-9)


# -- reproducible --------------------------------------------------------------------------
def test_seeded_runs_reproduce_and_seeds_differ():
    a = trace(run(Study(PARAMS, sherpa_mcmc(), True, seed=9, disable_dashboard=True)))
    b = trace(run(Study(PARAMS, sherpa_mcmc(), True, seed=9, disable_dashboard=True)))
    c = trace(run(Study(PARAMS, sherpa_mcmc(), True, seed=10, disable_dashboard=True)))
    assert a == b and a != c


def test_poptunes_own_name_is_the_same_model():
    own = BayesianOptimization(num_initial_data_points=3, max_num_trials=7, hyperparameters="mcmc",
                               **SMALL)  # fmt: skip
    a = trace(run(Study(PARAMS, own, True, seed=9, disable_dashboard=True)))
    b = trace(run(Study(PARAMS, sherpa_mcmc(), True, seed=9, disable_dashboard=True)))
    assert a == b
    plain = BayesianOptimization(num_initial_data_points=3, max_num_trials=7, **SMALL)
    c = trace(run(Study(PARAMS, plain, True, seed=9, disable_dashboard=True)))
    assert [t[1] for t in c][:3] == [t[1] for t in a][:3]  # the same random start
    assert "mcmc_acceptance" not in c[-1][2] and c != a


# -- configuration -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: GPyOpt(model_type="GP_MCMC", acquisition_type="EI"),
         "acquisition_type 'EI' does not go with model_type 'GP_MCMC'; .*'EI_MCMC'"),
        (lambda: GPyOpt(model_type="GP_MCMC"), "'EI' does not go with model_type 'GP_MCMC'"),
        (lambda: GPyOpt(model_type="GP", acquisition_type="LCB_MCMC"),
         "acquisition_type 'LCB_MCMC' does not go with model_type 'GP'; .*'LCB'"),
        (lambda: GPyOpt(model_type="GP_MCMC", acquisition_type="UCB_MCMC"),
         "acquisition_type must be one of 'EI_MCMC', .*got 'UCB_MCMC'"),
        (lambda: GPyOpt(model_type="RF_MCMC"), "model_type must be 'GP' or 'GP_MCMC'"),
        (lambda: BayesianOptimization(acquisition_type="EI_MCMC"),
         "got 'EI_MCMC' .*hyperparameters='mcmc'"),
        (lambda: BayesianOptimization(hyperparameters="hmc"),
         "hyperparameters must be 'fit' or 'mcmc', got 'hmc'"),
        (lambda: BayesianOptimization(n_samples=0), "n_samples must be an int >= 1, got 0"),
        (lambda: GPyOpt(n_burnin=-1), "n_burnin must be an int >= 0, got -1"),
        (lambda: GPyOpt(subsample_interval=0), "subsample_interval .* got 0"),
    ],
)  # fmt: skip
def test_bad_combinations_and_values_are_refused(make, match):
    with pytest.raises(ConfigurationError, match=match):
        make()


@pytest.mark.parametrize(
    "algo",
    [
        sherpa_mcmc(),
        GPyOpt("GP_MCMC", 4, [{"x": 0.5, "y": 1.0}], "LCB_MCMC", 2, n_samples=3),
        BayesianOptimization(hyperparameters="mcmc", n_samples=5, n_burnin=7, subsample_interval=2),
    ],
)
def test_config_round_trips_as_json(algo):
    config = json.loads(json.dumps(algo.to_config()))
    again = algorithm_from_config(config)
    assert type(again) is type(algo) and again.to_config() == algo.to_config()
    assert again.hyperparameters == "mcmc" and again.n_samples == algo.n_samples


def test_gpyopt_keeps_sherpas_names_and_gpyopts_defaults():
    config = GPyOpt(model_type="GP_MCMC", acquisition_type="EI_MCMC").get_config()
    assert config["model_type"] == "GP_MCMC" and config["acquisition_type"] == "EI_MCMC"
    assert (config["n_samples"], config["n_burnin"], config["subsample_interval"]) == (10, 100, 10)
    assert "hyperparameters" not in config  # GPyOpt says it with model_type
    assert algorithms.GPyOpt is GPyOpt


# -- a script in the style of SHERPA's examples ----------------------------------------------
SCRIPT = """
import poptune as sherpa

parameters = [sherpa.Continuous('x1', [0., 1.]),
              sherpa.Continuous('x2', [0., 1.])]
algorithm = sherpa.algorithms.GPyOpt(max_concurrent=1,
                                     model_type='GP_MCMC',
                                     acquisition_type='EI_MCMC',
                                     max_num_trials=7)
study = sherpa.Study(parameters=parameters,
                     algorithm=algorithm,
                     lower_is_better=True,
                     disable_dashboard=True)

for trial in study:
    x1, x2 = trial.parameters['x1'], trial.parameters['x2']
    study.add_observation(trial, iteration=1, objective=(x1 - 0.3) ** 2 + (x2 - 0.7) ** 2)
    study.finalize(trial)

print(len(study.results), study.get_best_result()['Objective'] < 0.5)
"""


def test_a_sherpa_style_script_with_gp_mcmc_runs(tmp_path):
    script = tmp_path / "bayesian_optimization_mcmc.py"
    script.write_text(textwrap.dedent(SCRIPT))
    src = str(Path(bayesian.__file__).parents[2])
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         cwd=tmp_path, env={"PYTHONPATH": src, "PATH": ""},
                         timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == "True"
