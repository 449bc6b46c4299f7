"""Render the tutorial notebook as a Markdown page of the docs site.

    python docs/render_notebook.py            # writes docs/tutorials/notebook.md
    python docs/render_notebook.py --check    # exit 1 if the page is out of date

The page holds the notebook's cells in order: Markdown cells as they are, code cells as
fenced Python blocks; outputs are left out (they change from run to run: run the notebook to
see them). ``tests/test_notebooks.py`` checks that the committed page matches the notebook.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "docs" / "tutorials" / "pbt_digits.ipynb"
PAGE = ROOT / "docs" / "tutorials" / "notebook.md"

HEADER = (
    "<!-- Generated from pbt_digits.ipynb by docs/render_notebook.py: edit the notebook, "
    "then run `python docs/render_notebook.py`. -->\n"
)
NOTE = (
    "!!! note\n"
    "    This page is the notebook [`pbt_digits.ipynb`](pbt_digits.ipynb) without its\n"
    "    outputs: run it in Jupyter to see the summaries, the progress bar, the figures and\n"
    "    the dashboard. The test suite executes it (at `POPTUNE_TUTORIAL_SIZE=tiny`).\n"
)


def render(notebook: nbformat.NotebookNode) -> str:
    """The Markdown page of ``notebook``: its cells, the note after the title."""
    parts = []
    for index, cell in enumerate(notebook.cells):
        source = cell.source.strip("\n")
        if cell.cell_type == "markdown":
            parts.append(source + "\n")
            if index == 0:
                parts.append(NOTE)
        elif cell.cell_type == "code" and source:
            parts.append(f"```python\n{source}\n```\n")
    return HEADER + "\n" + "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the page is out of date")
    args = parser.parse_args(argv)
    text = render(nbformat.read(NOTEBOOK, as_version=4))
    if args.check:
        if not PAGE.exists() or PAGE.read_text(encoding="utf-8") != text:
            print(f"{PAGE} is out of date: run python docs/render_notebook.py", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(text, encoding="utf-8")
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
