"""Read keras_afl's docstrings as they are written: Google style, with plain-text formulas.

keras_afl's docstrings are written for `help()` and editors: Google-style sections (napoleon
reads those), `backticks` for code, and formulas as indented plain text under a line that
ends with a colon (``Formula:``, ``Gradient:``, ``Formula (p = sigmoid(z), ...):``, a table of
rules). reStructuredText would read such a block as a block quote, and ``|x|`` in it as a
substitution. This hook, run before napoleon, makes each indented block that follows a line
ending in ``:`` (outside napoleon's sections) a literal block, and escapes ``|`` in prose, so
every docstring parses under ``sphinx-build -W`` without changing what `help()` shows.
"""

import re

# Napoleon's Google-style section headers (and their aliases) that it parses itself.
NAPOLEON_SECTIONS = {
    "args", "arguments", "parameters", "params", "keyword args", "keyword arguments",
    "other parameters", "returns", "return", "yields", "yield", "raises", "raise",
    "exceptions", "except", "warns", "warn", "warning", "warnings", "attributes", "methods",
    "example", "examples", "note", "notes", "see also", "todo", "references", "reference",
    "receive", "receives", "caution", "danger", "error", "hint", "important", "tip",
    "admonition", "attention",
}
_SECTION = re.compile(r"^([A-Za-z][A-Za-z ]*):\s*$")


def _indent(line):
    return len(line) - len(line.lstrip())


def _next_text(lines, i):
    """Index of the first non-blank line after `i`, or None."""
    for j in range(i + 1, len(lines)):
        if lines[j].strip():
            return j
    return None


_CODE = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")


def _prose(line):
    """A line of prose: `code` as an inline literal (so napoleon's field split and reST's
    markup leave it alone; "`Finding`s" as an escaped join), `|` outside code escaped
    (reST's substitution marker)."""
    parts = _CODE.split(line)
    out = []
    for k, part in enumerate(parts):
        if k % 2 == 0:
            out.append(part.replace("|", r"\|"))
            continue
        before = "\\ " if out and out[-1][-1:].isalnum() else ""
        after = "\\ " if k + 1 < len(parts) and parts[k + 1][:1].isalnum() else ""
        out.append(before + "``" + part.strip() + "``" + after)
    return "".join(out)


def plain_to_rst(lines):
    """The docstring's lines, with plain-text formula blocks made literal, doctests as
    code blocks, `code` as inline literals and `|` escaped."""
    out = []
    in_section = False  # inside a napoleon section (Args:, Returns:, Example: ...)
    literal_indent = None  # inside a literal block: the indent of the line that opened it
    doctest_shift = None  # inside a doctest: how far its lines move right
    for i, line in enumerate(lines):
        stripped = line.strip()
        if doctest_shift is not None:
            if stripped:
                out.append(" " * doctest_shift + line)
                continue
            doctest_shift = None
        if literal_indent is not None:
            if stripped and _indent(line) <= literal_indent:
                literal_indent = None
                out.append("")
            else:
                out.append(line)
                continue
        if stripped.startswith(">>>"):
            # A doctest straight under `Example:` (same indent, as `help()` shows it) is
            # indented under it, so that napoleon reads the section; elsewhere it gets a blank
            # line before it, so that the directive is not read as part of a paragraph.
            last = next((x for x in reversed(out) if x.strip()), "")
            under = (in_section and _indent(last) == _indent(line)
                     and _SECTION.match(last.strip()) is not None)
            pad = " " * (_indent(line) + (4 if under else 0))
            if out and out[-1].strip() and not under:
                out.append("")
            out.extend([pad + ".. code-block:: pycon", "", pad + "    " + stripped])
            doctest_shift = len(pad) + 4 - _indent(line)
            continue
        if _indent(line) == 0 and stripped:
            m = _SECTION.match(stripped)
            in_section = bool(m) and m.group(1).strip().lower() in NAPOLEON_SECTIONS
            if in_section:
                out.append(line)
                continue
        nxt = _next_text(lines, i)
        opens_block = (not in_section and stripped.endswith(":") and not stripped.endswith("::")
                       and nxt is not None and _indent(lines[nxt]) > _indent(line))
        if opens_block:
            out.extend([_prose(line) + ":", ""])
            literal_indent = _indent(line)
            continue
        if stripped.endswith("::"):
            literal_indent = _indent(line)
            out.append(line)
            continue
        out.append(_prose(line))
    return out


def _process(app, what, name, obj, options, lines):
    if what in ("data", "attribute") and "\n".join(lines).strip() == (type(obj).__doc__ or "").strip():
        lines[:] = []  # a constant (a dict, a tuple): its type's docstring is not about it
        return
    lines[:] = plain_to_rst(lines)


def setup(app):
    # Before napoleon (priority 500), which turns the Google sections into reST fields.
    app.connect("autodoc-process-docstring", _process, priority=400)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
