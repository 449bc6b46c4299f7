"""The peers' virtualenvs and the protocol their benchmark scripts speak (stdlib only).

Each peer (``optuna``, ``ray``, ``sherpa``) gets a virtualenv ``benchmarks/peers/.venv-<peer>``
(gitignored), created on demand from the pinned ``<peer>.txt`` (then ``<peer>-nodeps.txt`` with
``--no-deps``); a stamp in it records the hash of those files (a changed file rebuilds it), how
long the setup took and when.

A case's peer side, the ``peer(**args)`` of ``benchmarks/cases/<case>.py`` (see
``benchmarks/README.md``), runs as ``<python> -m benchmarks.peers <case> --args JSON --out FILE``
and writes ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": ..., "traceback": ...}``
to FILE; stdout, which libraries fill with logs, is never parsed.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
PEERS = ("optuna", "sherpa", "ray")
#: The distributions whose versions the page reports, per environment.
VERSIONS_OF = {
    "optuna": ("optuna", "SQLAlchemy", "numpy", "psycopg", "torch", "scipy", "greenlet"),
    "sherpa": ("parameter-sherpa", "pandas", "numpy", "scikit-learn", "GPy", "GPyOpt"),
    "ray": ("ray", "numpy", "pandas", "scikit-learn"),
    "poptune": ("poptune", "numpy", "pandas", "SQLAlchemy", "psycopg", "scikit-learn", "torch"),
}
PIP_TIMEOUT_S = 1200


def venv_dir(peer: str) -> Path:
    return HERE / f".venv-{peer}"


def venv_python(peer: str) -> Path:
    return venv_dir(peer) / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def requirement_files(peer: str) -> list[Path]:
    return [p for p in (HERE / f"{peer}.txt", HERE / f"{peer}-nodeps.txt") if p.exists()]


def requirements_hash(peer: str) -> str:
    digest = hashlib.sha256()
    for path in requirement_files(peer):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def base_python() -> str:
    """The interpreter new virtualenvs are made from (the one under the dev virtualenv)."""
    return getattr(sys, "_base_executable", None) or sys.executable


@dataclass
class Peer:
    """A peer's environment as the harness found or made it."""

    name: str
    python: str | None = None  # None: not usable (error says why)
    versions: dict[str, str] = field(default_factory=dict)
    setup_s: float | None = None  # seconds the setup took (this run or an earlier one)
    set_up_now: bool = False
    set_up_at: str = ""
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.python is not None and self.error is None


def _stamp_path(peer: str) -> Path:
    return venv_dir(peer) / "poptune-bench-stamp.json"


def read_stamp(peer: str) -> dict[str, Any] | None:
    try:
        stamp = json.loads(_stamp_path(peer).read_text())
    except (OSError, ValueError):
        return None
    if stamp.get("requirements") != requirements_hash(peer) or not venv_python(peer).exists():
        return None
    return stamp


def first_error_line(text: str) -> str:
    """The most telling line of an error output: the last line naming an error, else the last."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    for line in reversed(lines):
        if "Error" in line or line.startswith("ERROR") or "error:" in line.lower():
            return line[:400]
    return lines[-1][:400] if lines else "(no output)"


def installed_versions(python: str, names: tuple[str, ...]) -> dict[str, str]:
    code = (
        "import json, sys\nfrom importlib import metadata\nout = {}\n"
        "for n in sys.argv[1:]:\n"
        "    try:\n        out[n] = metadata.version(n)\n"
        "    except Exception:\n        pass\n"
        "out['python'] = sys.version.split()[0]\nprint(json.dumps(out))\n"
    )
    try:
        done = subprocess.run(
            [python, "-c", code, *names], capture_output=True, text=True, timeout=120
        )
        return json.loads(done.stdout.strip().splitlines()[-1])
    except Exception:  # noqa: BLE001 - versions are informative only
        return {}


def setup(peer: str, install: bool, log: Callable[[str], None]) -> Peer:
    """Find the peer's virtualenv, or (``install``) create it; never raises."""
    result = Peer(peer)
    stamp = read_stamp(peer)
    if stamp is None:
        if not install:
            result.error = "its virtualenv is not set up (run without --quick, or --setup-peers)"
            return result
        log(f"setting up {peer}'s virtualenv in {venv_dir(peer)} ...")
        started = time.monotonic()
        error = _create(peer)
        result.setup_s = time.monotonic() - started
        result.set_up_now = True
        if error:
            result.error = f"setting up its virtualenv failed: {error}"
            log(f"  {peer}: {result.error}")
            return result
        stamp = {
            "requirements": requirements_hash(peer),
            "setup_s": round(result.setup_s, 1),
            "at": time.strftime("%Y-%m-%d %H:%M"),
        }
        _stamp_path(peer).write_text(json.dumps(stamp))
        log(f"  {peer}: ready in {result.setup_s:.0f} s")
    result.python = str(venv_python(peer))
    result.setup_s = float(stamp.get("setup_s", 0.0)) if result.setup_s is None else result.setup_s
    result.set_up_at = str(stamp.get("at", ""))
    result.versions = installed_versions(result.python, VERSIONS_OF.get(peer, ()))
    return result


def _create(peer: str) -> str | None:
    d = venv_dir(peer)
    if d.exists():
        shutil.rmtree(d, ignore_errors=True)
    steps = [[base_python(), "-m", "venv", str(d)]]
    python = str(venv_python(peer))
    pip = [python, "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    for path in requirement_files(peer):
        extra = ["--no-deps"] if path.name.endswith("-nodeps.txt") else []
        steps.append([*pip, *extra, "-r", str(path)])
    for cmd in steps:
        try:
            done = subprocess.run(
                cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, cwd=REPO
            )
        except subprocess.TimeoutExpired:
            return f"`{' '.join(cmd[-3:])}` took over {PIP_TIMEOUT_S} s"
        except OSError as exc:
            return f"{type(exc).__name__}: {exc}"
        if done.returncode != 0:
            return first_error_line(done.stderr or done.stdout)
    return None


# -- running a peer script ------------------------------------------------------------------------
@dataclass
class Outcome:
    ok: bool
    result: Any = None
    error: str | None = None


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("VIRTUAL_ENV", None)
    # Ray's worker processes import the benchmark modules too; src/ first so that poptune's
    # side measures this checkout, not whichever poptune the virtualenv has installed
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(REPO)])
    env.setdefault("PYTHONHASHSEED", "0")
    return env


def run_script(
    python: str, case: str, args: dict[str, Any], timeout_s: float, log: Callable[[str], None]
) -> Outcome:
    """Run ``benchmarks.cases.<case>.peer(**args)`` in a fresh ``python``; never raises."""
    with tempfile.TemporaryDirectory(prefix="poptune-peer-") as tmp:
        out = Path(tmp, "out.json")
        cmd = [python, "-m", "benchmarks.peers", case, "--args", json.dumps(args)]
        cmd += ["--out", str(out)]
        try:
            done = subprocess.run(
                cmd, cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=timeout_s
            )
        except subprocess.TimeoutExpired:
            return Outcome(False, error=f"timed out after {timeout_s:.0f} s")
        try:
            payload = json.loads(out.read_text())
        except (OSError, ValueError):
            error = first_error_line(done.stderr or done.stdout)
            return Outcome(False, error=f"exit {done.returncode}: {error}")
    if not payload.get("ok"):
        log(f"    {case} failed: {payload.get('traceback', '')[-1500:]}")
        return Outcome(False, error=payload.get("error", "failed"))
    return Outcome(True, payload.get("result"))


def serve(argv: list[str]) -> None:
    """``python -m benchmarks.peers CASE --args JSON --out FILE``: CASE's ``peer(**args)``."""
    args = json.loads(argv[argv.index("--args") + 1])
    out = Path(argv[argv.index("--out") + 1])
    try:
        run = importlib.import_module(f"benchmarks.cases.{argv[0]}").peer
        payload: dict[str, Any] = {"ok": True, "result": run(**args)}
    except BaseException as exc:  # noqa: BLE001 - reported to the harness
        text = f"{type(exc).__name__}: {exc}".strip().splitlines()
        payload = {"ok": False, "error": text[0][:400], "traceback": traceback.format_exc()}
    out.write_text(json.dumps(payload))


def preimport(*modules: str) -> None:
    """Import the installed ``modules`` before a timing, which then leaves out first-use imports."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            pass


# -- CPU time of a process tree ---------------------------------------------------------------
def tree_cpu_seconds() -> float:
    """CPU seconds (user + system) used so far by this process and all its descendants, those
    that exited and were waited for included (Ray's raylet, GCS and workers descend from its
    driver). Linux reads ``/proc``; elsewhere: this process and its waited children only."""
    root, ticks = os.getpid(), os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    stats: dict[int, tuple[int, float]] = {}  # pid -> (ppid, seconds)
    for name in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not name.isdigit():
            continue
        try:
            text = Path("/proc", name, "stat").read_text()
        except OSError:
            continue  # exited meanwhile
        fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) "
        # fields[1] = ppid; utime, stime, cutime, cstime are fields 14-17 of stat (1-based)
        ppid, times = int(fields[1]), sum(int(f) for f in fields[11:15])
        stats[int(name)] = (ppid, times / ticks)
    if root not in stats:
        import resource

        me = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += stats[pid][1]
        todo += children.get(pid, [])
    return total
