"""Population Based Training, synchronous (SHERPA's generations with a barrier).

A trial is one *segment* of one population member. Generation 1 is ``population_size``
founders (members 0 .. N - 1, from the founder factory). When every member's latest attempt
at generation g has finished, generation g + 1 is *planned* at once from the finished
generation (:func:`~poptune.algorithms.pbt.exploit.select`): the survivors continue from
their own checkpoint with unchanged hyperparameters, the replaced members copy a donor and
explore its hyperparameters (the explore hook). The plan is then handed out slot by slot;
while generation g has trials running the mode answers ``WAIT``, and after
``num_generations`` generations ``DONE``.

What is remembered lives at the top of ``history.state`` (JSON): ``generation`` (the one
being handed out), ``plan`` (one ``{'parameters', 'meta'}`` entry per slot of that
generation, ``save_to`` left out until the trial exists) and ``done``.

A trial re-queued after its worker died (``meta['retry_of']``) is another attempt at its
member's slot: slots count first attempts, and each member's latest attempt is the one that
counts.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from poptune.algorithms.base import Suggestion, SuggestResult
from poptune.algorithms.pbt._mode import PBTMode
from poptune.algorithms.pbt.exploit import recent_scores, select
from poptune.history import History
from poptune.lineage import child_keys
from poptune.trial import AlgorithmState, Trial

__all__ = ["SynchronousPBT"]

logger = logging.getLogger("poptune.pbt")


class SynchronousPBT(PBTMode):
    """The synchronous mode of :class:`~poptune.algorithms.PopulationBasedTraining`.

    Its settings and hooks are :class:`~poptune.algorithms.pbt._mode.PBTMode`'s.
    """

    def pending_checkpoints(self, history: History) -> set[str]:
        """The checkpoints the rest of the current plan will load."""
        state = history.state
        plan = state.get("plan")
        if not plan:
            return set()
        trials = history.generation(state.get("generation", 1))
        return {entry["parameters"]["load_from"] for entry in plan[_slots_handed_out(trials) :]}

    def suggest(self, history: History, rng: np.random.Generator) -> SuggestResult:
        """The next slot of the current generation, WAIT at the barrier, or DONE."""
        state = history.state
        if state.get("done"):
            return AlgorithmState.DONE
        generation = state.get("generation", 1)
        trials = history.generation(generation)
        handed = _slots_handed_out(trials)
        if handed >= self.population_size:
            if generation >= self.num_generations:
                return AlgorithmState.DONE
            members = _latest_attempts(trials)
            if any(not t.is_finished for t in members):
                return AlgorithmState.WAIT
            plan = self._plan(history, members, generation + 1, rng)
            if plan is None:
                state["done"] = True
                return AlgorithmState.DONE
            generation += 1
            state["generation"] = generation
            state["plan"] = plan
            handed = 0
        slot = handed
        if generation == 1:
            config = self.founder(history, slot, rng)
            config.update(child_keys(None, 1, history.next_trial_id).parameters)
            return Suggestion(config, {"member": slot})
        entry = state["plan"][slot]
        config = dict(entry["parameters"])
        lineage = config.pop("lineage")
        # the same key order as generation 1
        config.update(save_to=str(history.next_trial_id), lineage=lineage)
        return Suggestion(config, dict(entry["meta"]))

    def _plan(
        self, history: History, members: list[Trial], generation: int, rng: np.random.Generator
    ) -> list[dict[str, Any]] | None:
        """Plan every slot of ``generation`` from the finished previous generation."""
        k = self.ttest_window
        survivors, pairs = select(
            self.exploit,
            members,
            history.lower_is_better,
            self.rank_by,
            self.quantile_fraction,
            rng,
            lambda trial: recent_scores(history, trial, k),
        )
        if not survivors:
            logger.error(
                "PBT: no member of generation %d completed (statuses: %s); stopping the study",
                generation - 1,
                sorted({t.status.value for t in members}),
            )
            return None
        plan = [
            _entry(trial, trial, generation, history.hyperparameters(trial), "")
            for trial in survivors
        ]
        running = [(generation, entry["parameters"]) for entry in plan]

        def running_configs() -> list[tuple[int, dict[str, Any]]]:
            return list(running)

        for replaced, donor in pairs:
            config, records = self.explore(history, donor, generation, rng, running_configs)
            running.append((generation, config))
            plan.append(_entry(replaced, donor, generation, config, "; ".join(records)))
        return plan


def _entry(
    member_trial: Trial,
    donor: Trial,
    generation: int,
    config: dict[str, Any],
    explore_record: str,
) -> dict[str, Any]:
    """One slot of a plan: ``member_trial``'s member continues from ``donor`` with ``config``
    (``save_to`` is added when the slot is handed out)."""
    keys = child_keys(donor, generation, None)
    parameters = {**config, **keys.parameters}
    meta: dict[str, Any] = {"member": member_trial.member, **keys.meta}
    if explore_record:
        meta["explore"] = explore_record
        meta["replaced"] = member_trial.id
    return {"parameters": parameters, "meta": meta}


def _slots_handed_out(trials: list[Trial]) -> int:
    """Slots of a generation handed out: PBT's own trials (they name their member), first
    attempts only (a re-queued trial, meta ``retry_of``, is another go at its slot). A trial
    queued by the user with ``add_trial`` takes no slot, even if it copies PBT's keys."""
    return sum(1 for t in trials if t.member is not None and "retry_of" not in t.meta)


def _latest_attempts(trials: list[Trial]) -> list[Trial]:
    """One trial per member: its latest attempt (highest id); trials of no member ignored."""
    latest: dict[Any, Trial] = {}
    for trial in trials:
        key = trial.member
        if key is not None and (key not in latest or trial.id > latest[key].id):
            latest[key] = trial
    return sorted(latest.values(), key=lambda t: t.id)
