"""Helpers shared by several test modules: finishing trials, comparing whole runs, and the
toy problem of the PBT paper (Jaderberg et al. 2017, Fig. 2) with a driver that shares one
study between several Study objects."""

import random

import numpy as np

from poptune import AlgorithmState, Continuous, Study, Trial

WAIT, DONE = AlgorithmState.WAIT, AlgorithmState.DONE
X = [Continuous("x", [0.0, 1.0])]


def finish(study, trial, value, status="COMPLETED"):
    study.add_observation(trial, value)
    study.finalize(trial, status)


def run(study, objective):
    trials = []
    for trial in study:
        finish(study, trial, objective(trial))
        trials.append(trial)
    return trials


def fingerprint(study):
    return [
        (t.id, t.status.value, t.parameters, t.meta,
         [(o.iteration, o.objective) for o in t.observations.values()])
        for t in study.trials
    ]  # fmt: skip


# -- the paper's toy problem (Jaderberg et al. 2017, Fig. 2) ---------------------------------------
H = [Continuous("h0", [0, 1]), Continuous("h1", [0, 1])]


def toy_q(theta):
    return 1.2 - float(theta @ theta)


def toy_segment(trial, checkpoints):
    """Four steps of gradient ascent on Q̂(θ|h) = 1.2 − (h0θ0² + h1θ1²), step 0.01, from the
    checkpoint named by load_from (θ = (0.9, 0.9) for a fresh model); θ is saved to save_to."""
    theta = checkpoints[trial.load_from] if trial.load_from else np.array([0.9, 0.9])
    h = np.array([trial.parameters["h0"], trial.parameters["h1"]])
    for _ in range(4):
        theta = theta + 0.01 * (-2.0 * h * theta)
    checkpoints[trial.save_to] = theta
    return toy_q(theta)


def toy_run(algorithm, seed):
    study = Study(H, algorithm, False, seed=seed)
    checkpoints = {}
    for trial in study:
        study.add_observation(trial, toy_segment(trial, checkpoints), iteration=trial.generation)
        study.finalize(trial)
    return study


def drive(studies, schedule_seed, workers=3, objective=None):
    """Keep up to ``workers`` trials in flight, each suggestion and report through one of
    ``studies`` drawn at random; finish trials in a random order. Returns the trials."""
    rnd = random.Random(schedule_seed)
    running, handed, checkpoints = [], [], {}
    while True:
        answer = None
        while len(running) < workers:
            answer = rnd.choice(studies).get_suggestion()
            if not isinstance(answer, Trial):
                break
            running.append(answer)
            handed.append(answer)
        if not running:
            assert answer is DONE
            return handed
        trial = running.pop(rnd.randrange(len(running)))
        study = rnd.choice(studies)
        study.add_observation(trial, toy_segment(trial, checkpoints), iteration=trial.generation)
        study.finalize(trial)
