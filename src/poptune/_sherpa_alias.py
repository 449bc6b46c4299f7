"""Running unmodified SHERPA scripts: ``import sherpa`` and ``import sherpa.<module>`` resolve
to poptune in a process that asked for it, and in the processes it starts.

:func:`install_sherpa_alias` puts a finder first on ``sys.meta_path`` that answers every
``sherpa`` / ``sherpa.X`` import with the module ``poptune`` / ``poptune.X`` itself (the same
module object, so ``sherpa.algorithms.GPyOpt is poptune.algorithms.GPyOpt``). Child
processes - the trial scripts :func:`poptune.optimize` launches, multiprocessing's spawned
workers, any ``python`` the script runs - get the alias through a generated directory put at
the front of ``PYTHONPATH`` (and of ``sys.path``, which spawned workers copy): it holds a
one-file ``sherpa`` package whose only job is to install the alias. Nothing is installed into
site-packages: a real SHERPA installed beside poptune is shadowed only in a process that
called :func:`install_sherpa_alias` (or ran under ``poptune sherpa run``) and its children.

:func:`run_script` is ``poptune sherpa run script.py [args...]``: the alias, then the script
as ``__main__`` with its own ``sys.argv``.
"""

from __future__ import annotations

import atexit
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import logging
import os
import runpy
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from poptune.exceptions import ConfigurationError

__all__ = ["ENV_ALIAS_PATH", "alias_path", "install_sherpa_alias", "run_script"]

logger = logging.getLogger("poptune")

#: Set in an aliased process's environment: the generated directory with the ``sherpa`` shim.
ENV_ALIAS_PATH = "POPTUNE_SHERPA_ALIAS_PATH"

_SHIM = '''"""Written by poptune.install_sherpa_alias: ``import sherpa`` means poptune here.

This package exists only on the PYTHONPATH of a process that asked for poptune's SHERPA
alias and of the processes it started; it installs the alias and hands back poptune."""

from poptune._sherpa_alias import install_sherpa_alias

install_sherpa_alias(_from_shim=True)
'''


class _Loader(importlib.abc.Loader):
    """Hands back an already imported poptune module as ``sherpa.X``."""

    def __init__(self, target: str) -> None:
        self.target = target
        self._spec: Any = None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(self.target)
        self._spec = module.__spec__  # the import system overwrites __spec__; put it back
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = self._spec


class _SherpaFinder(importlib.abc.MetaPathFinder):
    """``sherpa`` -> ``poptune``, ``sherpa.X.Y`` -> ``poptune.X.Y``; anything else: not ours."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "sherpa" and not fullname.startswith("sherpa."):
            return None
        name = "poptune" + fullname[len("sherpa") :]
        if name not in sys.modules:
            try:
                found = importlib.util.find_spec(name)
            except ModuleNotFoundError:
                found = None
            if found is None:
                raise ModuleNotFoundError(
                    f"No module named {fullname!r} (poptune's SHERPA alias: poptune has no "
                    f"module {name!r})",
                    name=fullname,
                )
        return importlib.machinery.ModuleSpec(fullname, _Loader(name))


_finder = _SherpaFinder()
_alias_dir: Path | None = None


def alias_path() -> Path | None:
    """The generated directory holding the ``sherpa`` shim package, or None when this process
    has no alias. :func:`poptune.optimize` puts it on its jobs' ``PYTHONPATH``."""
    return _alias_dir


def _write_shim(directory: Path) -> None:
    package = directory / "sherpa"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text(_SHIM, encoding="utf-8")


def install_sherpa_alias(*, _from_shim: bool = False) -> None:
    """Make ``import sherpa`` and every ``import sherpa.<module>`` (``sherpa.algorithms``,
    ``sherpa.algorithms.bayesian_optimization``, ``sherpa.schedulers``, ``sherpa.core``,
    ``sherpa.database`` ...) resolve to poptune's modules, in this process and in the processes
    it starts from now on (trial scripts run by :func:`poptune.optimize`, spawned workers).

    Calling it again does nothing. A real SHERPA installed beside poptune is shadowed in those
    processes only; everywhere else ``import sherpa`` still finds it.

    Raises:
        ConfigurationError: a module named ``sherpa`` that is not poptune was imported in this
            process before the call (the alias would give the script two different
            ``sherpa`` modules).
    """
    global _alias_dir
    import poptune

    current = sys.modules.get("sherpa")
    shim_path = None if current is None else getattr(current, "__file__", None)
    is_shim = _from_shim and shim_path is not None
    if current is not None and current is not poptune and not is_shim:
        raise ConfigurationError(
            f"install_sherpa_alias: a module 'sherpa' is already imported "
            f"(from {shim_path or current!r}); call install_sherpa_alias() before any "
            "'import sherpa', or run the script with: poptune sherpa run script.py"
        )
    if _finder not in sys.meta_path:
        if not _from_shim:
            real = importlib.machinery.PathFinder.find_spec("sherpa")
            inherited = os.environ.get(ENV_ALIAS_PATH)
            if (
                real is not None
                and real.origin
                and not (inherited and real.origin.startswith(inherited))
            ):
                logger.warning(
                    "poptune: a package 'sherpa' is installed (%s); in this process and its "
                    "children 'import sherpa' now means poptune",
                    real.origin,
                )
        sys.meta_path.insert(0, _finder)
    sys.modules["sherpa"] = poptune
    if _alias_dir is None:
        inherited = os.environ.get(ENV_ALIAS_PATH)
        if inherited and (Path(inherited) / "sherpa" / "__init__.py").is_file():
            _alias_dir = Path(inherited)  # a child: the parent's directory serves it too
        else:
            _alias_dir = Path(tempfile.mkdtemp(prefix="poptune-sherpa-alias-"))
            _write_shim(_alias_dir)
            atexit.register(shutil.rmtree, _alias_dir, True)
        os.environ[ENV_ALIAS_PATH] = str(_alias_dir)
        entries = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        if str(_alias_dir) not in entries:
            os.environ["PYTHONPATH"] = os.pathsep.join([str(_alias_dir), *entries])
        if str(_alias_dir) not in sys.path:
            # first, before site-packages: spawned workers copy sys.path, and there the shim
            # must win over a real SHERPA (here the finder answers first anyway)
            sys.path.insert(0, str(_alias_dir))


def job_environment(output_dir: str | os.PathLike[str]) -> dict[str, str]:
    """Environment variables giving a job the alias, when this process has it (else ``{}``):
    the shim is (re)written under ``output_dir`` so a job on another machine that shares the
    output directory (SLURM, SGE) finds it too."""
    if _alias_dir is None:
        return {}
    directory = Path(output_dir) / ".poptune_sherpa_alias"
    _write_shim(directory)
    entries = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    entries = [p for p in entries if p != str(directory)]
    return {
        "PYTHONPATH": os.pathsep.join([str(directory), *entries]),
        ENV_ALIAS_PATH: str(directory),
    }


def run_script(path: str | os.PathLike[str], argv: Sequence[str] = ()) -> None:
    """Run the Python script at ``path`` as ``__main__`` with ``sys.argv = [path, *argv]``,
    after :func:`install_sherpa_alias` (``poptune sherpa run``). The script's directory comes
    first on ``sys.path``, as when Python runs a script.

    Raises:
        ConfigurationError: ``path`` is not a file.
    """
    script = Path(path)
    if not script.is_file():
        raise ConfigurationError(f"poptune sherpa run: no script at {os.fspath(path)!r}")
    install_sherpa_alias()
    sys.argv = [str(script), *argv]
    sys.path.insert(0, str(script.resolve().parent))
    runpy.run_path(str(script), run_name="__main__")
