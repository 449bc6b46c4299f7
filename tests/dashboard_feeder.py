"""A process that keeps feeding a PBT study, for the dashboard's browser tests.

``python -m tests.dashboard_feeder DATABASE_URL STUDY`` trains a population of 4 on a toy
objective, one observation every 0.2 s per running trial, and honours stop requests
(``trial.should_stop()``: the trial is finalized STOPPED). It runs until killed or until the
study is done (40 generations). The parameter names and choice values are hostile on purpose:
the dashboard must show them as text.
"""

from __future__ import annotations

import sys
import time

import poptune

XSS_NAME = "<script>alert(1)</script>"
XSS_CHOICE = "<img src=x onerror=alert(2)>"
XSS_CONTEXT = "<b onmouseover=alert(3)>loss</b>"


def make_study(url: str, name: str) -> poptune.Study:
    parameters = [
        poptune.Continuous("lr", [1e-3, 1e-1], "log"),
        poptune.Continuous(XSS_NAME, [0.0, 1.0]),
        poptune.Choice("act", ["relu", XSS_CHOICE]),
    ]
    algorithm = poptune.algorithms.PopulationBasedTraining(
        population_size=4, num_generations=40, perturbation_factors=(0.8, 1.2)
    )
    return poptune.Study(
        parameters, algorithm, lower_is_better=False, storage=url, study_name=name, seed=1,
        heartbeat_interval=1.0,
    )  # fmt: skip


def main(url: str, name: str, steps: int = 3, pause: float = 0.2) -> None:
    study = make_study(url, name)
    value = {}
    for trial in study:
        base = value.get(trial.parent, 0.0)
        stopped = False
        for step in range(steps):
            time.sleep(pause)
            if trial.should_stop():
                stopped = True
                break
            base += trial.parameters["lr"] * (1.0 + trial.parameters[XSS_NAME])
            iteration = (trial.generation - 1) * steps + step + 1
            trial.report(base, iteration=iteration, **{XSS_CONTEXT: 1.0 / iteration})
        value[trial.id] = base
        if stopped:
            study.finalize(trial, "STOPPED")
        elif trial.observations:
            study.finalize(trial)
        else:
            study.finalize(trial, "FAILED")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
