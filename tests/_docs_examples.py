"""The Python examples of the documentation, for tests/test_docs_examples.py.

Pages: docs/**/*.md and docs/**/*.rst (docs/_build left out), the files they pull in with
MyST's ```{include}``` (CONTRIBUTING.md, CHANGELOG.md, benchmarks/...), and README.md.

A runnable block is a fence whose language is Python -- ```python, ```py, ```python3,
```{code-block} python, ```{code} python -- or, in reStructuredText (a .rst page or a
```{eval-rst}``` block), a ``.. code-block:: python`` directive. A block whose code starts with
``>>>`` (or a ```pycon fence) is a doctest session: its outputs are compared. Fences inside
other directives (```{note}, :::{tip}, ...) count: their content is Markdown.

A block is skipped when the line before it (blank lines aside) is

    <!-- not-runnable: why -->        (Markdown; invisible on the site and on GitHub)
    .. not-runnable: why              (reStructuredText: a comment)

and the reason must not be empty.

Run as a script (``python -m tests._docs_examples spec.json``, the repository on PYTHONPATH) this module executes one page's
blocks in order in one namespace, so that a block can use what an earlier one defined; a
traceback names the page and the line in it.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import re
import sys
import textwrap

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(REPO, "docs")

PYTHON_LANGUAGES = {"python", "py", "python3", "pycon", "ipython", "ipython3"}
CODE_DIRECTIVES = {"code-block", "code", "sourcecode", "code-cell"}
# Directives whose content is not Markdown (code, math, reStructuredText for autodoc, ...):
# skipped whole. Any other directive (note, tip, admonition, dropdown, ...) holds Markdown.
LITERAL_DIRECTIVES = CODE_DIRECTIVES | {
    "math", "raw", "mermaid", "graphviz", "csv-table", "literalinclude", "include", "toctree",
    "automodule", "autoclass", "autofunction", "automethod", "autodata", "autoattribute",
    "autosummary", "autoexception", "eval-rst", "parsed-literal"}

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,}|:{3,})(?P<info>[^`]*)$")
_MD_MARKER = re.compile(r"^\s*<!--\s*not-runnable\b(?P<rest>.*?)-->\s*$")
_RST_MARKER = re.compile(r"^\s*\.\.\s+not-runnable\b(?P<rest>.*)$")
_RST_CODE = re.compile(r"^(?P<indent>\s*)\.\.\s+(?:code-block|code|sourcecode)::\s*(?P<lang>\S*)")


@dataclasses.dataclass
class Block:
    page: str           # the file, relative to the repository
    line: int           # 1-based line of the block's first code line in that file
    code: str
    doctest: bool       # a >>> session: outputs are checked
    skip: str | None    # None: runs; otherwise the not-runnable reason ("" when none was given)


@dataclasses.dataclass
class Page:
    path: str                                    # relative to the repository
    blocks: list = dataclasses.field(default_factory=list)
    includes: list = dataclasses.field(default_factory=list)   # paths, relative to the repo
    problems: list = dataclasses.field(default_factory=list)   # "line N: ..." (stray markers)


def _marker_reason(rest):
    """The reason after `not-runnable` (a ':' separator, surrounding blanks dropped)."""
    return rest.strip().lstrip(":").strip()


def _strip_options(body, first_line):
    """A code directive's `:option: value` lines or `---` YAML header, dropped."""
    lines = body.splitlines()
    i = 0
    if lines and lines[0].strip() == "---":
        end = next((k for k in range(1, len(lines)) if lines[k].strip() == "---"), None)
        i = end + 1 if end is not None else 0
    while i < len(lines) and re.match(r"^\s*:[\w-]+:", lines[i]):
        i += 1
    return "\n".join(lines[i:]), first_line + i


def _python_block(page, lang, body, first_line, marker):
    lang = lang.strip().lower()
    if lang not in PYTHON_LANGUAGES:
        _stray(page, marker, f"a {lang or 'plain'} block, not a Python one")
        return
    code_lines = textwrap.dedent(body).split("\n")
    lead = next((k for k, text in enumerate(code_lines) if text.strip()), len(code_lines))
    stripped, first_line = "\n".join(code_lines[lead:]), first_line + lead
    is_doctest = lang == "pycon" or stripped.lstrip().startswith(">>>")
    page.blocks.append(Block(page.path, first_line, stripped.rstrip() + "\n", is_doctest,
                             None if marker is None else marker[1]))


def _new_marker(page, marker, match, line_no):
    """A not-runnable marker at `line_no`; the previous one, unused, is stray."""
    _stray(page, marker)
    return line_no, _marker_reason(match["rest"])


def _stray(page, marker, before="no code block"):
    """Record a not-runnable marker that precedes no Python block; the marker is used up."""
    if marker is not None:
        page.problems.append(f"line {marker[0]}: not-runnable marker before {before}")


def parse_rst(page, lines, offset=0):
    """`.. code-block:: python` directives and `.. not-runnable:` comments of rST `lines`
    (line 1 of `lines` is line offset + 1 of the file)."""
    marker, i = None, 0
    while i < len(lines):
        m_code = _RST_CODE.match(lines[i])
        if _RST_MARKER.match(lines[i]):
            marker = _new_marker(page, marker, _RST_MARKER.match(lines[i]), offset + i + 1)
        elif m_code:
            indent = len(m_code["indent"])
            j = i + 1
            while j < len(lines) and (not lines[j].strip()
                                      or len(lines[j]) - len(lines[j].lstrip()) > indent):
                j += 1
            body, first = _strip_options("\n".join(lines[i + 1:j]), offset + i + 2)
            _python_block(page, m_code["lang"], body, first, marker)
            marker, i = None, j
            continue
        elif lines[i].strip():
            marker = _stray(page, marker)
        i += 1
    _stray(page, marker)


def parse_markdown(page, lines):
    """Fenced blocks (``` ~~~ and MyST's ::: fences), nested in directives or not."""
    containers = []     # open Markdown-holding fences: (char, length)
    marker, i = None, 0
    while i < len(lines):
        line = lines[i]
        m_marker, fence = _MD_MARKER.match(line), _FENCE.match(line)
        if m_marker:
            marker = _new_marker(page, marker, m_marker, i + 1)
            i += 1
            continue
        if not fence:
            if line.strip():
                marker = _stray(page, marker)
            i += 1
            continue
        char, length, info = fence["fence"][0], len(fence["fence"]), fence["info"].strip()
        if not info and containers and containers[-1][0] == char and length >= containers[-1][1]:
            containers.pop()        # the end of a directive holding Markdown
            i += 1
            continue
        directive = re.match(r"^\{(?P<name>[\w:.-]+)\}\s*(?P<arg>.*)$", info)
        name = directive["name"] if directive else None
        if name is not None and name not in LITERAL_DIRECTIVES or char == ":" and name is None:
            containers.append((char, length))
            marker = _stray(page, marker, f"a {{{name}}} directive, not a Python block")
            i += 1
            continue
        # A literal block: find its closing fence.
        j = i + 1
        while j < len(lines) and not re.match(r"^\s*" + re.escape(char) + "{%d,}\\s*$" % length,
                                              lines[j]):
            j += 1
        body = "\n".join(lines[i + 1:j])
        if name == "include":
            target = os.path.normpath(os.path.join(os.path.dirname(page.path), directive["arg"]))
            page.includes.append(target.replace(os.sep, "/"))
        elif name == "eval-rst":
            parse_rst(page, body.splitlines(), offset=i + 1)
        elif name in CODE_DIRECTIVES:
            body, first = _strip_options(body, i + 2)
            _python_block(page, directive["arg"].split()[0] if directive["arg"] else "", body,
                          first, marker)
            marker = None
        elif name is None:
            _python_block(page, info.split()[0] if info else "", body, i + 2, marker)
            marker = None
        else:
            marker = _stray(page, marker, f"a {{{name}}} directive, not a Python block")
        i = j + 1
    _stray(page, marker)


def parse_text(path, text):
    """A Page from one file's text (`path` relative to the repository decides the syntax)."""
    page = Page(path)
    (parse_rst if path.endswith(".rst") else parse_markdown)(page, text.splitlines())
    return page


def doc_pages():
    """Every page whose code appears on the site, and the README: [Page], in a stable order."""
    roots = sorted(glob.glob(os.path.join(DOCS, "**", "*.md"), recursive=True)
                   + glob.glob(os.path.join(DOCS, "**", "*.rst"), recursive=True))
    paths = [os.path.relpath(p, REPO).replace(os.sep, "/") for p in roots
             if not os.path.relpath(p, DOCS).startswith("_build")]
    paths.append("README.md")
    pages, seen = [], set()
    while paths:
        path = paths.pop(0)
        if path in seen or not os.path.exists(os.path.join(REPO, path)):
            continue
        seen.add(path)
        with open(os.path.join(REPO, path), encoding="utf-8") as f:
            page = parse_text(path, f.read())
        pages.append(page)
        paths += page.includes
    return pages


def spec(page, blocks):
    """What the runner needs for one page: JSON-able."""
    return {"page": page.path, "file": os.path.join(REPO, page.path),
            "blocks": [dataclasses.asdict(b) for b in blocks]}


def _run(spec_path):
    """Run one page's blocks in order, in one namespace; exit 1 at the first failing block."""
    import doctest
    import traceback

    with open(spec_path, encoding="utf-8") as f:
        run = json.load(f)
    namespace = {"__name__": "__main__"}
    for block in run["blocks"]:
        where = f"{run['page']}:{block['line']}"
        print(f"[docs-example] {where}", file=sys.stderr, flush=True)
        try:
            if block["doctest"]:
                test = doctest.DocTestParser().get_doctest(
                    block["code"], namespace, where, run["file"], block["line"] - 1)
                runner = doctest.DocTestRunner(
                    optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
                runner.run(test, out=sys.stderr.write, clear_globs=False)
                if runner.failures:
                    raise AssertionError(f"{runner.failures} doctest example(s) failed")
            else:
                # Line numbers in tracebacks are the page's own.
                code = compile("\n" * (block["line"] - 1) + block["code"], run["file"], "exec")
                exec(code, namespace)  # noqa: S102 (the documentation's own examples)
        except BaseException:
            kind, exc, tb = sys.exc_info()
            traceback.print_exception(kind, exc, tb.tb_next or tb)  # from the page's own frame
            print(f"[docs-example] FAILED: the block at {where}", file=sys.stderr, flush=True)
            sys.exit(1)
    print(f"[docs-example] ran {len(run['blocks'])} block(s) of {run['page']}", file=sys.stderr)


if __name__ == "__main__":
    _run(sys.argv[1])
