"""The documentation site (mkdocs.yml, docs/) and the README that is its landing page.

The site is built once, with ``mkdocs build --strict`` (warnings are errors: a broken link, a
missing anchor, a page left out of the nav, a docstring mkdocstrings cannot read), into a
temporary directory; the other checks read the sources and the built pages.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
SRC = ROOT / "src" / "poptune"

#: The Quick start block, as .ci/run reads it (its second line is CI's test command).
QUICK_START = [
    'pip install -e ".[examples]" torch==2.13.0 && python examples/pbt_mnist_mlp.py',
    'pip install -e ".[test]" torch==2.13.0 && python -m pytest',
]
#: Pages other work will add: listed in mkdocs.yml as commented-out nav lines until they exist.
PLANNED = [
    "integrations/keras.md",
    "integrations/tracking.md",
    "topics/sql-hot-path.md",
    "topics/algorithm-cost.md",
    "topics/memory-floor.md",
    "topics/dashboard-long-runs.md",
    "topics/frozen-writer.md",
]

_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
_CODE = re.compile(r"`[^`\n]*`")


def _nav_pages(entries) -> list[str]:
    pages: list[str] = []
    for entry in entries:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        if isinstance(value, list):
            pages += _nav_pages(value)
        else:
            pages.append(value)
    return pages


def _config() -> dict:
    return yaml.safe_load((ROOT / "mkdocs.yml").read_text())


def _links(path: Path) -> list[str]:
    """The link and image targets of a Markdown file, code blocks and spans left out."""
    text = _CODE.sub("", _FENCE.sub("", path.read_text()))
    return _LINK.findall(text)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-f", "mkdocs.yml", "-d",
         str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return out


@pytest.mark.slow
def test_the_site_builds_strict_with_every_nav_page(site):
    pages = _nav_pages(_config()["nav"])
    assert len(pages) == len(set(pages))
    for page in pages:
        assert (DOCS / page).is_file(), page
        stem = page[: -len("index.md")] if page.endswith("index.md") else page[:-3] + "/"
        built = site / stem / "index.html"
        assert built.is_file(), built
    on_disk = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert on_disk == set(pages), on_disk ^ set(pages)
    # The pages still to come: in the nav once they exist, a commented-out nav line until then.
    text = (ROOT / "mkdocs.yml").read_text()
    for page in PLANNED:
        commented = re.search(rf"^\s*# - [^\n]*: {re.escape(page)}$", text, re.MULTILINE)
        assert page in pages or (commented and not (DOCS / page).exists()), page
    # Scripts and the griffe extension in docs/ are not pages of the site.
    assert not list(site.rglob("*.py"))


def test_every_relative_link_and_image_resolves_and_code_blocks_close():
    files = [README, *sorted(DOCS.rglob("*.md"))]
    unclosed = [p.name for p in files if len(re.findall(r"(?m)^\s*```", p.read_text())) % 2]
    assert unclosed == [], "a code block is never closed"
    broken = []
    for path in files:
        for target in _links(path):
            if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                continue  # a URL, or an anchor on the same page (mkdocs checks those)
            file = target.split("#", 1)[0]
            if not (path.parent / file).exists():
                broken.append(f"{path.relative_to(ROOT)}: {target}")
    assert broken == []
    assert len(_links(README)) > 30  # the landing page links the site


def test_the_readme_is_a_landing_page_with_the_quick_start_ci_runs():
    lines = README.read_text().splitlines()
    assert len(lines) <= 250
    start = lines.index("## Quick start")
    fence = next(i for i in range(start, len(lines)) if lines[i].startswith("```bash"))
    block = lines[fence + 1 : lines.index("```", fence + 1)]
    assert block == QUICK_START
    assert (ROOT / "examples" / "pbt_mnist_mlp.py").is_file()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "/^## Quick start/" in ci and "sed -n 2p" in ci
    assert "mkdocs build --strict" in ci
    # a picture of the dashboard, from docs/images
    assert re.search(r"!\[[^\]]*\]\(docs/images/[\w.-]+\.png\)", README.read_text())


def _modules() -> dict[str, str]:
    """Every source file of poptune: its path under src/poptune and the name the maps use
    (a package's ``__init__.py`` is named by its folder, ``study/``)."""
    out = {}
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if path.name == "__init__.py" and path.parent != SRC:
            out[rel] = path.parent.name + "/"
        else:
            out[rel] = path.name
    return out


def _names(text: str, name: str) -> bool:
    """Whether ``text`` names module ``name`` (``results.py`` is not ``_results.py``; a package
    ``pbt/`` is named by ``pbt/`` or by a path in it, ``pbt/replay.py``)."""
    after = "" if name.endswith("/") else r"(?![\w])"
    return re.search(rf"(?<![\w.]){re.escape(name)}{after}", text) is not None


def test_the_architecture_maps_name_every_module():
    full = (DOCS / "architecture.md").read_text()
    missing = [rel for rel, name in _modules().items() if not _names(full, name)]
    assert missing == [], "docs/architecture.md does not name these modules"
    readme = README.read_text()
    short = readme[readme.index("## Architecture") :]
    top = {rel.split("/")[0] + ("/" if "/" in rel else "") for rel in _modules()}
    missing = sorted(name for name in top if not _names(short, name))
    assert missing == [], "the README's Architecture section does not name these"
    assert "docs/architecture.md" in short


def _public_names() -> list[str]:
    tree = ast.parse((SRC / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            return list(ast.literal_eval(node.value))
    raise AssertionError("poptune/__init__.py has no __all__")


@pytest.mark.slow
def test_the_api_reference_names_every_public_symbol(site):
    import poptune

    names = _public_names()
    assert names == list(poptune.__all__)
    root = site / "api"
    api = {p.relative_to(root).as_posix(): p.read_text() for p in root.rglob("*.html")}
    nav = {p[4:-3] for p in _nav_pages(_config()["nav"]) if p.startswith("api/")}
    assert {page.split("/")[0] for page in api} == nav
    text = "\n".join(api.values())
    missing = [
        name
        for name in names
        if f'id="poptune.{name}"' not in text and f"<code>{name}</code>" not in text
    ]
    assert missing == []
    # Documented in full, not only named: every class and function of __all__ has an anchor.
    objects = [n for n in names if not n.startswith("__") and n[0].isupper() or n in (
        "load_study", "optimize", "install_sherpa_alias")]  # fmt: skip
    anchors = [n for n in objects if not re.search(rf'id="poptune\.[\w.]*\b{n}"', text)]
    assert anchors == []
    # Sphinx roles in docstrings are rendered (docs/_griffe_roles.py), never shown raw.
    for role in (":class:", ":func:", ":meth:", ":mod:", ":data:", "``"):
        pages = [page for page, html in api.items() if role in html]
        assert pages == [], role
