"""Objective functions for tests that run trials in other processes (they must be importable)."""

import math
import os
import signal
import time
from pathlib import Path

import numpy as np


def quadratic(trial):
    """Minimum 0 at lr = 1e-3; returns the final value."""
    return (math.log10(trial.parameters["lr"]) + 3) ** 2


def slow_quadratic(trial):
    time.sleep(0.02)
    return quadratic(trial)


def reporting(trial):
    """Reports three iterations with context, returns nothing."""
    for it in (1, 2, 3):
        trial.report(quadratic(trial) / it, iteration=it, loss=0.1 * it)


def pbt_weights(trial):
    """A PBT member whose 'weights' are a numpy vector moved toward the optimum by lr.

    Records what it loaded so tests can check an exploited trial starts from its donor.
    """
    state = trial.load_checkpoint()
    weights = np.zeros(4) if state is None else state["weights"]
    lr = trial.parameters["lr"]
    weights = weights + lr * 100.0
    trial.save_checkpoint({"weights": weights, "lr": lr, "trial": trial.id,
                           "loaded_from": None if state is None else state["trial"]})  # fmt: skip
    trial.report(float(-abs(weights.sum() - 3.0)), iteration=trial.generation)


def dies_once(trial):
    """Kills its own process the first time it runs trial 2 (a lost machine)."""
    marker = Path(os.environ["POPTUNE_TEST_MARKER"])
    if trial.id == 2 and not marker.exists():
        marker.write_text("died")
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.05)
    return quadratic(trial)


def sleepy(trial):
    """0.3 s per trial: long enough to be interrupted in the middle."""
    time.sleep(0.3)
    return quadratic(trial)


def typo(trial):
    """The objective with a typo of issue 18: every trial fails the same way."""
    return trial.paramters["lr"]  # the typo is the point


def device_seen(trial):
    """Reports the device its worker was given, as the objective sees it."""
    trial.report(
        quadratic(trial),
        iteration=1,
        device=str(trial.device),
        cuda_visible=os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>"),
        assigned=os.environ.get("POPTUNE_DEVICE_ASSIGNED", "<unset>"),
        pid=os.getpid(),
    )
    time.sleep(0.05)


def wait_at_barrier():
    """Block until ``POPTUNE_TEST_BARRIER_N`` processes have arrived at the barrier folder
    ``POPTUNE_TEST_BARRIER`` (at most 60 s): the trials running now are in that many workers."""
    folder = Path(os.environ["POPTUNE_TEST_BARRIER"])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / str(os.getpid())).touch()
    deadline = time.monotonic() + 60
    while len(list(folder.iterdir())) < int(os.environ["POPTUNE_TEST_BARRIER_N"]):
        if time.monotonic() > deadline:
            return
        time.sleep(0.02)


def device_barrier(trial):
    """device_seen, once every worker is running a trial."""
    wait_at_barrier()
    device_seen(trial)
