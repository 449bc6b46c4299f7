"""What the cases of ``python -m benchmarks`` share: the run's context, statistics, Markdown
and figure helpers, and a case's result (a section of ``docs/benchmarks.md``)."""

from __future__ import annotations

import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.peers import Outcome, Peer, run_script


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def quiet_threads(limit_s: float = 2.0, step_s: float = 0.02) -> float:
    """Wait (at most ``limit_s``) until this process's other threads stop using CPU; their CPU
    seconds while it waited. A timed stretch starts after it: numpy's OpenBLAS threads spin
    for about 0.1 s of CPU on another core once numpy loads (in every library that imports
    numpy), and ``time.process_time`` would add that start-up cost to the first trials."""
    start = before = time.process_time() - time.thread_time()
    deadline = time.perf_counter() + limit_s
    while time.perf_counter() < deadline:
        time.sleep(step_s)
        now = time.process_time() - time.thread_time()
        if now - before < 1e-3:
            break
        before = now
    return before - start


class Clock:
    """The wall and CPU seconds (``time.process_time``) its ``with`` blocks took, summed."""

    wall = cpu = 0.0

    def __enter__(self) -> Clock:
        self.wall, self.cpu = self.wall - time.perf_counter(), self.cpu - time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = self.wall + time.perf_counter(), self.cpu + time.process_time()


@dataclass
class Context:
    """What a case needs to know about this run."""

    quick: bool
    repeats: int | None  # --repeats (None: the case's default)
    seeds: int | None  # --seeds (None: the case's default)
    peers: dict[str, Peer]  # the peers asked for, usable or not
    no_peers: bool
    images: Path  # where the PNGs go
    image_link: str  # how the page links to that folder ("images")
    postgres_url: str
    python: str = sys.executable  # poptune's side
    cpus: int = field(default_factory=usable_cpus)  # the CPUs this process may use

    def repeats_or(self, full: int, quick: int) -> int:
        return self.repeats if self.repeats is not None else (quick if self.quick else full)

    def seeds_or(self, full: int, quick: int) -> int:
        return self.seeds if self.seeds is not None else (quick if self.quick else full)

    def pick(self, full: Any, quick: Any) -> Any:
        return quick if self.quick else full

    def usable(self, name: str, section: Section | None = None) -> bool:
        """Whether peer ``name`` can run; if not, :meth:`peer_note` goes on ``section``'s notes."""
        ok = name in self.peers and self.peers[name].ok
        if section is not None and not ok:
            section.notes.append(self.peer_note(name))
        return ok

    def peer_note(self, name: str) -> str:
        if self.no_peers:
            return f"{name} was not run (--no-peers)"
        peer = self.peers.get(name)
        if peer is None:
            return f"{name} was not run (not among --peers)"
        return f"{name} was not run: {peer.error}"

    def run_peer(self, peer: str, module: str, args: dict[str, Any], timeout_s: float) -> Outcome:
        """Run ``module``'s ``peer(**args)`` in a fresh process of ``peer``'s python."""
        python = self.python if peer == "poptune" else self.peers[peer].python
        assert python is not None
        return run_script(python, module, args, timeout_s, log)

    def result(
        self, section: Section, what: str, peer: str, module: str, args: dict[str, Any],
        timeout_s: float,
    ) -> Any:  # fmt: skip
        """:meth:`run_peer`'s result, or None after noting on ``section`` that ``what`` failed."""
        out = self.run_peer(peer, module, args, timeout_s)
        if not out.ok:
            section.notes.append(f"{what} failed: {out.error}")
            log(f"  {what}: FAILED {out.error}")
        return out.result if out.ok else None


@dataclass
class Target:
    text: str  # what is aimed at
    met: bool | None  # None: not evaluated
    detail: str  # the measurement, or why it was missed / not evaluated

    def line(self) -> str:
        verdict = {True: "met", False: "**missed**", None: "not evaluated"}[self.met]
        return f"- Target: {self.text}: {verdict} ({self.detail})."


@dataclass
class Section:
    """One case's part of the page."""

    key: str
    title: str
    lines: list[str] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    error: str | None = None

    def target(self, what: str, met: bool | None, detail: str) -> None:
        self.targets.append(Target(what, met, detail))

    def target_of(
        self, what: str, value: float, met: bool, detail: str, missing: str = "not measured"
    ) -> None:
        """A target judged by ``met`` if ``value`` is a number, else not (``missing``: why)."""
        finite = math.isfinite(value)
        self.target(what, met if finite else None, detail if finite else missing)

    def not_evaluated(self, why: str) -> None:
        """Judge no target (e.g. sizes too small to judge them): keep what was measured."""
        for target in self.targets:
            if target.met is not None:
                target.met, target.detail = None, f"{why}; measured: {target.detail}"

    def markdown(self) -> list[str]:
        out = [f"## {self.title}", ""]
        if self.error:
            out += [f"**This case failed**: {self.error}", ""]
        out += self.lines
        if self.targets:
            out += ["", *[t.line() for t in self.targets]]
        if self.notes:
            out += ["", *[f"- Note: {n}" for n in self.notes]]
        out += ["", f"*Case run time: {self.wall_s:.0f} s.*", ""]
        return out


# -- statistics and formatting -----------------------------------------------------------------
def med(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def fmt(value: float, digits: int = 3) -> str:
    """A number with ``digits`` significant digits (no exponent for everyday magnitudes)."""
    if value is None or not math.isfinite(value):
        return "–"
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    decimals = max(0, digits - 1 - magnitude)
    return f"{value:,.{decimals}f}"


def mean(values: Sequence[float] | None) -> float:
    return statistics.fmean(values) if values else math.nan


def spread(values: Sequence[float], digits: int = 3) -> str:
    """``median [min–max]`` (just the value for one repeat)."""
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return "–"
    if len(values) == 1:
        return fmt(values[0], digits)
    return f"{fmt(med(values), digits)} [{fmt(min(values), digits)}–{fmt(max(values), digits)}]"


def mean_and_se(values: Sequence[float]) -> tuple[float, float]:
    """The mean and standard error of the finite ``values`` (NaN for none; s.e. NaN for one)."""
    values = [v for v in values if math.isfinite(v)]
    if not values:
        return math.nan, math.nan
    if len(values) == 1:
        return values[0], math.nan
    return statistics.fmean(values), statistics.stdev(values) / len(values) ** 0.5


def mean_se(values: Sequence[float], digits: int = 3) -> str:
    """``mean ± standard error`` (just the value for one sample)."""
    mean, se = mean_and_se(values)
    if not math.isfinite(mean):
        return "–"
    if not math.isfinite(se):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {se:.{digits}f}"


def ratio(a: float, b: float) -> str:
    if not (math.isfinite(a) and math.isfinite(b)) or b == 0:
        return "–"
    return fmt(a / b, 2)


def gap_and_se(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """mean(a) − mean(b) and its standard error (independent samples; one adds no variance)."""

    def var(v: Sequence[float]) -> float:
        return statistics.variance(v) / len(v) if len(v) > 1 else 0.0

    return statistics.fmean(a) - statistics.fmean(b), (var(a) + var(b)) ** 0.5


def table(header: str | Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A Markdown table; ``header``: the column names, or them joined by ``" | "``."""
    if isinstance(header, str):
        header = header.split(" | ")
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out


# -- figures --------------------------------------------------------------------------------------
def figure(ctx: Context, name: str, draw: Callable[[Any], None], alt: str) -> list[str]:
    """Draw ``bench_<name>.png`` with ``draw(plt)``: the lines that show it (or say why not)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return ["", "*(figure not drawn: matplotlib is not installed)*"]
    ctx.images.mkdir(parents=True, exist_ok=True)
    path = ctx.images / f"bench_{name}.png"
    try:
        plt.close("all")
        draw(plt)
        plt.tight_layout()
        plt.savefig(path, dpi=100)
    except Exception as exc:  # noqa: BLE001 - a figure must not sink the page
        return ["", f"*(figure not drawn: {type(exc).__name__}: {exc})*"]
    finally:
        plt.close("all")
    return ["", f"![{alt}]({ctx.image_link}/{path.name})"]


def style(
    ax: Any, xlabel: str = "", ylabel: str = "", title: str = "", *, logx: bool = False,
    logy: bool = False, grid: str = "both", legend: float | None = None, **legend_kw: Any,
) -> None:  # fmt: skip
    """Label ``ax``; log scales, a light grid on axis ``grid`` (``""``: none), a legend (size)."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    if grid:
        ax.grid(True, axis=grid, which="both" if logx or logy else "major", alpha=0.3)
    if legend is not None:
        ax.legend(fontsize=legend, **legend_kw)
