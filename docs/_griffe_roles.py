"""A griffe extension for the docs site: Sphinx roles in docstrings become code spans.

poptune's docstrings cross-reference with Sphinx roles (``:class:`~poptune.Study```,
``:func:`x```, ``:meth:``, ``:mod:``, ``:data:``, ``:attr:``, ``:exc:``, ``:obj:``) and
reStructuredText's double backticks. mkdocstrings renders Markdown, where both would show as
raw text, so this extension rewrites them while the API is collected: a role becomes the
code span of its target (``~`` keeps only the last dotted part, as Sphinx shows it), and a
double-backtick literal becomes a single-backtick one. The docstrings themselves are left as
they are (mkdocs.yml names this file under the python handler's ``extensions``).

It also reads two shapes the Google-style parser does not: a ``Raises:`` item that lists
several exceptions without a description (``UnknownTrialError, TrialFinishedError.``) gets
the colon it lacks, and an ``Args:`` line that names no argument (``(the others as in
start_dashboard)``) is read as the end of the item before it.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|data|attr|exc|obj|const|ref):`([^`]+)`")
_LITERAL = re.compile(r"``(.+?)``", re.DOTALL)


def _target(match: re.Match[str]) -> str:
    text = match.group(1).strip()
    explicit = re.fullmatch(r"(.*?)\s*<([^>]+)>", text)  # :class:`title <target>`
    if explicit:
        return f"`{explicit.group(1) or explicit.group(2)}`"
    if text.startswith("~"):
        text = text[1:].rsplit(".", 1)[-1]
    return f"`{text}`"


_SECTION = re.compile(r"(\s*)(Args|Arguments|Parameters|Raises|Exceptions):\s*$")
_ITEM = re.compile(r"\s*[\w*.]+(?:,\s*[\w*.]+)*(\s*\([^)]*\))?\s*:")
_EXCEPTIONS = re.compile(r"(\s*)([A-Z][\w.]*(?:,\s*[A-Z][\w.]*)*)[.,]?\s*(.*)")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _sections(text: str) -> str:
    """Give the items of Args/Raises sections the ``name: description`` shape."""
    lines = text.split("\n")
    section, header, item = None, -1, -1
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        found = _SECTION.fullmatch(line)
        if found:
            section, header, item = found.group(2), _indent(line), -1
            continue
        if section is None:
            continue
        if _indent(line) <= header:
            section = None
            continue
        if item < 0:
            item = _indent(line)
        if _indent(line) != item or _ITEM.match(line):
            continue
        if section in ("Raises", "Exceptions"):
            names = _EXCEPTIONS.fullmatch(line)
            if names and ":" not in names.group(3):
                rest = names.group(3) or "(as named)"
                lines[i] = f"{names.group(1)}{names.group(2)}: {rest}"
                continue
        lines[i] = " " * 4 + line  # a note after the items: the previous item's last line
    return "\n".join(lines)


def convert(text: str) -> str:
    """``text`` with Sphinx roles and double-backtick literals as Markdown code spans, and
    the Args/Raises items the parser cannot read given their ``name: description`` shape."""
    text = _LITERAL.sub(lambda m: f"`{m.group(1)}`", text)
    return _sections(_ROLE.sub(_target, text))


class SphinxRoles(griffe.Extension):
    """Rewrite every docstring of the collected objects (see the module docstring)."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = convert(obj.docstring.value)
