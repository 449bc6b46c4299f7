"""A griffe extension for the docs site: Sphinx roles in docstrings become code spans.

poptune's docstrings cross-reference with Sphinx roles (``:class:`~poptune.Study```,
``:func:`x```, ``:meth:``, ``:mod:``, ``:data:``, ``:attr:``, ``:exc:``, ``:obj:``) and
reStructuredText's double backticks. mkdocstrings renders Markdown, where both would show as
raw text, so this extension rewrites them while the API is collected: a role becomes the
code span of its target (``~`` keeps only the last dotted part, as Sphinx shows it), and a
double-backtick literal becomes a single-backtick one. The docstrings themselves are left as
they are (mkdocs.yml names this file under the python handler's ``extensions``).

reStructuredText's simple tables (``=====  =====`` borders) become Markdown tables, and a
paragraph ending in ``::`` (a literal block follows, indented: Markdown's code block) ends in
``:``. It also reads two shapes the Google-style parser does not: a ``Raises:`` item that lists
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


_BORDER = re.compile(r"(\s*)=+(?: +=+)+\s*")


def _cells(line: str, starts: list[int]) -> list[str]:
    bounds = [*starts[1:], max(len(line), starts[-1]) + 1]
    return [line[a:b].strip() for a, b in zip(starts, bounds, strict=True)]


def _tables(text: str) -> str:
    """reST simple tables as Markdown tables (a row whose first cell is empty continues the
    row above)."""
    lines, out, i = text.split("\n"), [], 0
    while i < len(lines):
        top = _BORDER.fullmatch(lines[i])
        if not top:
            out.append(lines[i])
            i += 1
            continue
        border = lines[i]
        starts = [m.start() for m in re.finditer(r"=+", border)]
        j, rows, header = i + 1, [], None
        while j < len(lines) and lines[j].strip() != border.strip():
            if _BORDER.fullmatch(lines[j]):  # the line under a header
                header, rows = rows, []
            elif lines[j].strip():
                cells = _cells(lines[j], starts)
                if rows and not cells[0]:
                    rows[-1] = [f"{a} {b}".strip() for a, b in zip(rows[-1], cells, strict=True)]
                else:
                    rows.append(cells)
            j += 1
        if j == len(lines):  # no closing border: not a table
            out.append(lines[i])
            i += 1
            continue
        indent = top.group(1)
        head = header[0] if header else [""] * len(starts)
        out.append(indent + "| " + " | ".join(head) + " |")
        out.append(indent + "|" + "---|" * len(starts))
        out += [indent + "| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
        i = j + 1
    return "\n".join(out)


def _literal_blocks(text: str) -> str:
    """``Text::`` before an indented block reads ``Text:``; a lone ``::`` goes."""
    text = re.sub(r"(?m)^[ \t]*::[ \t]*$", "", text)
    return re.sub(r"(?m)(\S)::[ \t]*$", r"\1:", text)


def convert(text: str) -> str:
    """``text`` with Sphinx roles and double-backtick literals as Markdown code spans, and
    the Args/Raises items the parser cannot read given their ``name: description`` shape."""
    text = _tables(text)  # first: its columns are those of the text as written
    text = _LITERAL.sub(lambda m: f"`{m.group(1)}`", text)
    return _sections(_literal_blocks(_ROLE.sub(_target, text)))


class SphinxRoles(griffe.Extension):
    """Rewrite every docstring of the collected objects (see the module docstring)."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = convert(obj.docstring.value)
