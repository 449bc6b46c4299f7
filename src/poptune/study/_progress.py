"""The progress bar of ``study.optimize``: trials done, best objective, PBT generation."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from poptune.study.study import Study


class Progress:
    """A tqdm bar on stderr, on only when asked for and stderr is a terminal."""

    def __init__(self, study: Study, total: int | None, start: int, enabled: bool) -> None:
        self.study = study
        self.start = start
        self.bar: Any = None
        if enabled and sys.stderr.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, unit="trial", desc=study.name, dynamic_ncols=True)

    def refresh(self) -> None:
        if self.bar is None:
            return
        history = self.study.history
        done = sum(1 for t in history.trials[self.start :] if t.is_finished)
        best = self.study.get_best_result()
        info = []
        if best:
            info.append(f"best={best['Objective']:.4g}")
        if history.generations:
            info.append(f"generation={history.generations[-1]}")
        self.bar.n = done
        self.bar.set_postfix_str(" ".join(info), refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.refresh()
            self.bar.close()
