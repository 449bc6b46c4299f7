"""The benchmark page's rules (issue 14): a peer cut off by its time budget is never set
against a full budget, scores are means ± standard errors, CPU time stands beside wall time.

These run a case's table-building code on canned peer results (no peer, no timing)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("numpy")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.cases import c4_pbt_function  # noqa: E402
from benchmarks.harness import Context, mean_se  # noqa: E402
from benchmarks.peers import Outcome, Peer, tree_cpu_seconds  # noqa: E402


def pf_run(final: float, wall: float, cpu: float, short: int = 0) -> dict[str, Any]:
    steps = 8 * 30 * 5
    return {
        "final": final,
        "best": final,
        "iterations": steps - 200 * (short > 0),
        "budget_steps": steps,
        "wall_s": wall,
        "cpu_s": cpu,
        "errors": 0,
        "short": short,
    }


class CannedContext(Context):
    """Answers every peer script with canned results: Ray's first seed is cut off."""

    def __init__(self, images: Path) -> None:
        super().__init__(
            quick=False,
            repeats=None,
            seeds=None,
            peers={"ray": Peer("ray", python=sys.executable)},
            no_peers=False,
            images=images,
            image_link="images",
            postgres_url="",
        )
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def run_peer(self, peer: str, module: str, args: dict[str, Any], timeout_s: float) -> Outcome:
        self.calls.append((peer, args))
        configs = [f"{a}-{p}" for a, p in args["configs"]]
        if peer == "ray":
            cut = args["seeds"] == [c4_pbt_function.FIRST_SEED]
            runs = {
                c: [pf_run(999.0 if cut else 100.0, 50.0, 60.0, short=3 * cut)] for c in configs
            }
        else:
            runs = {
                c: [pf_run(120.0 + s, 0.5, 0.4) for s in range(len(args["seeds"]))] for c in configs
            }
        return Outcome(True, {"startup_s": 1.0, "runs": runs})


def test_case_4_runs_ten_seeds_and_leaves_a_cut_off_peer_run_out(tmp_path: Path) -> None:
    ctx = CannedContext(tmp_path / "images")
    section = c4_pbt_function.run(ctx)
    ray_seeds = [args["seeds"] for peer, args in ctx.calls if peer == "ray"]
    assert len(ray_seeds) == 10  # >= 10 seeds by default, one Ray process each
    ray_rows = [line for line in section.lines if "| Ray Tune |" in line]
    assert ray_rows and all("1 run(s) cut off by the time budget" in r for r in ray_rows)
    assert all("**not comparable**" in r and "9 of 10" in r for r in ray_rows)
    # the cut-off run's score (999) is not in Ray's mean: the nine full runs score 100
    assert all(f"| {mean_se([100.0] * 9, 1)} |" in r for r in ray_rows)
    assert "framework overhead on a trivial function" in "\n".join(section.lines)
    header = next(line for line in section.lines if line.startswith("| population"))
    assert "wall time s" in header and "CPU time s" in header
    assert "mean ± s.e." in header


def test_case_4_gives_no_ratio_when_every_peer_run_was_cut_off(tmp_path: Path) -> None:
    class AllCut(CannedContext):
        def run_peer(
            self, peer: str, module: str, args: dict[str, Any], timeout_s: float
        ) -> Outcome:
            out = super().run_peer(peer, module, args, timeout_s)
            if peer == "ray":
                for runs in out.result["runs"].values():
                    runs[0]["short"] = 2
            return out

    section = c4_pbt_function.run(AllCut(tmp_path / "images"))
    ray_rows = [line for line in section.lines if "| Ray Tune |" in line]
    assert ray_rows and all("| not comparable |" in r for r in ray_rows)
    mine = [line for line in section.lines if "| poptune (sync) |" in line]
    assert mine and all(line.rstrip(" |").endswith("– | – | –") for line in mine)
    assert len(section.targets) == 2  # "≥" and "within noise"
    assert all(t.met is None and "not comparable" in t.detail for t in section.targets)


def test_case_4_runs_pb2_asynchronously_too_and_judges_within_noise(tmp_path: Path) -> None:
    """Ray's schedulers are asynchronous: poptune's asynchronous mode runs PB2 as well as PBT.
    A mean below Ray's by less than 2 standard errors of the difference misses "≥" but is
    within noise; one further below misses both."""

    class Close(CannedContext):
        def run_peer(
            self, peer: str, module: str, args: dict[str, Any], timeout_s: float
        ) -> Outcome:
            self.calls.append((peer, args))
            if peer == "ray":  # one seed a call: 100 or 104 (mean 102, s.e. 2/3 over 10)
                score = 100.0 + 4.0 * (args["seeds"][0] % 2)
                runs = {f"{a}-{p}": [pf_run(score, 50.0, 60.0)] for a, p in args["configs"]}
            else:  # PBT: mean 101 (close below); PB2: mean 90 (far below); s.e. 2/3
                runs = {
                    f"{a}-{p}": [
                        pf_run((101.0 if a == "pbt" else 90.0) + 2.0 * (-1) ** s, 0.5, 0.4)
                        for s in args["seeds"]
                    ]
                    for a, p in args["configs"]
                }
            return Outcome(True, {"startup_s": 1.0, "runs": runs})

    ctx = Close(tmp_path / "images")
    section = c4_pbt_function.run(ctx)
    async_configs = [
        args["configs"] for peer, args in ctx.calls if args.get("synchronous") is False
    ]
    assert async_configs == [[["pbt", 4], ["pb2", 4], ["pbt", 8], ["pb2", 8]]]
    assert len([line for line in section.lines if "| PB2 | poptune async |" in line]) == 2
    strict, noise = section.targets
    assert strict.met is False and "PBT-4: score" in strict.detail
    assert noise.met is False
    parts = dict(part.split(": ", 1) for part in noise.detail.split("; "))
    assert set(parts) == {f"{a}-{p}{m}" for a in ("PBT", "PB2") for p in (4, 8)
                          for m in ("", " async")}  # fmt: skip
    assert all("(missed)" not in parts[k] for k in parts if k.startswith("PBT"))
    assert all("(missed)" in parts[k] for k in parts if k.startswith("PB2"))
    assert "difference -1.0" in parts["PBT-4"]


def test_tree_cpu_seconds_counts_a_child_that_has_exited() -> None:
    before = tree_cpu_seconds()
    subprocess.run([sys.executable, "-c", "sum(range(20_000_000))"], check=True)
    assert tree_cpu_seconds() - before > 0.05


def test_a_stopped_run_keeps_the_cases_it_finished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page is rewritten after every case: a run stopped in its second case (Ctrl-C, a
    time limit) leaves the first case's section on the page, marked partial; a finished run
    drops the mark."""
    import types

    from benchmarks import run
    from benchmarks.harness import Section

    def case(name: str, body: Any) -> None:
        module = types.ModuleType(f"benchmarks.cases.{name}")
        module.TITLE = f"{name}. A case"  # type: ignore[attr-defined]
        module.run = body  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, module.__name__, module)

    def finished(ctx: Context) -> Section:
        return Section("finished", "1. A case", lines=["first case's figure: 42"])

    def stopped(ctx: Context) -> Section:
        raise KeyboardInterrupt

    case("finished", finished)
    case("stopped", stopped)
    monkeypatch.setattr(run, "CASES", {1: ("finished", ()), 2: ("stopped", ())})
    page = tmp_path / "page.md"
    with pytest.raises(KeyboardInterrupt):
        run.main(["--cases", "1,2", "--no-peers", "--output", str(page)])
    text = page.read_text()
    assert "first case's figure: 42" in text
    assert "in progress: 1 more case(s) to run" in text

    assert run.main(["--cases", "1", "--no-peers", "--output", str(page)]) == 0
    text = page.read_text()
    assert "first case's figure: 42" in text and "in progress" not in text


# -- the peer protocol: one file per case, its peer side run in a library's virtualenv -------
#: What the peers' virtualenvs lack (Optuna's has numpy and Optuna; Ray's and SHERPA's theirs).
NOT_IN_EVERY_PEER = ("poptune", "optuna", "ray", "sherpa", "scipy", "sklearn", "torch",
                     "pandas", "sqlalchemy", "psycopg", "matplotlib")  # fmt: skip
PEER_SIDES = ("c1_overhead", "c2_throughput", "c4_pbt_function", "c6_tpe", "c7_startup",
              "c9_memory_floor", "c10_model_cost")  # fmt: skip


def test_every_peer_side_imports_with_only_numpy_and_the_standard_library() -> None:
    """A case module with a ``peer`` is imported in every peer's virtualenv: it must import
    with poptune and every other library hidden (each is imported inside its function)."""
    code = (
        "import importlib, pkgutil, sys\n"
        f"for name in {NOT_IN_EVERY_PEER!r}:\n"
        "    sys.modules[name] = None  # 'import name' raises ImportError\n"
        "import benchmarks.cases as cases\n"
        "names = sorted(m.name for m in pkgutil.iter_modules(cases.__path__))\n"
        "sides = []\n"
        "for name in names:\n"
        "    try:\n"
        "        module = importlib.import_module(f'benchmarks.cases.{name}')\n"
        "    except ImportError:\n"
        "        continue  # a case without a peer side may import poptune at its top\n"
        "    if hasattr(module, 'peer'):\n"
        "        sides.append(name)\n"
        "print(','.join(sides))\n"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120, check=True)  # fmt: skip
    assert sorted(done.stdout.strip().split(",")) == sorted(PEER_SIDES), done.stderr


def test_a_peer_side_runs_in_a_fresh_process_and_reports_its_result_or_its_error(
    tmp_path: Path,
) -> None:
    from benchmarks.peers import run_script

    logged: list[str] = []
    args = {"case": "poptune", "n": 20, "seed": 1, "warmup": 5}
    out = run_script(sys.executable, "c1_overhead", args, 120, logged.append)
    assert out.ok and out.result["n"] == 20 and out.result["cpu_total"] > 0, out.error
    bad = run_script(sys.executable, "c1_overhead", {**args, "case": "nope"}, 120, logged.append)
    assert not bad.ok and "nope" in (bad.error or ""), bad.error
    missing = run_script(sys.executable, "c99_none", {}, 120, logged.append)
    assert not missing.ok and "c99_none" in (missing.error or ""), missing.error
