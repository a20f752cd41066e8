"""Every Python example on the documentation site (and in the README) runs.

tests/_docs_examples.py finds the blocks (```python fences, ```{code-block} python, rST
code-block directives, >>> sessions; pages pulled in by ```{include}``` too). One test per page:
the page's blocks run in order in one fresh Python process (KERAS_BACKEND=tensorflow, a tmp
folder as the working directory), so a block can build on the ones above it; a failure names the
page, the block's line and the traceback. A block the docs cannot run (a download, a GPU, a
long training) is marked on the line above it with `<!-- not-runnable: reason -->`, and the
reason is required.

The docstrings' own `>>>` examples are not collected here: pytest runs them with
--doctest-modules (pyproject's addopts), and the API pages show those same docstrings.
"""

import json
import os
import subprocess
import sys

import pytest

from tests import _docs_examples as E

PAGES = E.doc_pages()
RUNNABLE = {p.path: [b for b in p.blocks if b.skip is None] for p in PAGES}
PAGE_TIMEOUT_S = 600


def test_the_extractor_reads_fences_directives_markers_and_rst():
    """A hand-written page with every form the docs may use."""
    text = "\n".join([
        "# Title",                                   # 1
        "```python",                                  # 2
        "a = 1",                                      # 3
        "```",                                        # 4
        "<!-- not-runnable: needs a GPU -->",         # 5
        "",                                           # 6
        "```py",                                      # 7
        "gpu()",                                      # 8
        "```",                                        # 9
        "````{note}",                                 # 10
        "  ```{code-block} python",                   # 11
        "  :caption: inside a note",                  # 12
        "  b = a + 1",                                # 13
        "  ```",                                      # 14
        "````",                                       # 15
        "```bash",                                    # 16
        "pip install keras-afl",                      # 17
        "```",                                        # 18
        "~~~pycon",                                   # 19
        ">>> a + b",                                  # 20
        "3",                                          # 21
        "~~~",                                        # 22
        ":::{tip}",                                   # 23
        "```",                                        # 24
        "plain text, no language",                    # 25
        "```",                                        # 26
        ":::",                                        # 27
        "```{eval-rst}",                              # 28
        ".. not-runnable:",                           # 29
        ".. code-block:: python",                     # 30
        "",                                           # 31
        "   c = 3",                                   # 32
        "```",                                        # 33
        "<!-- not-runnable: stray -->",               # 34
        "text",                                       # 35
        "```{include} ../CHANGELOG.md",               # 36
        "```",                                        # 37
    ])
    page = E.parse_text("docs/x.md", text)
    got = [(b.line, b.code, b.doctest, b.skip) for b in page.blocks]
    assert got == [(3, "a = 1\n", False, None), (8, "gpu()\n", False, "needs a GPU"),
                   (13, "b = a + 1\n", False, None), (20, ">>> a + b\n3\n", True, None),
                   (32, "c = 3\n", False, "")]
    assert page.includes == ["CHANGELOG.md"]
    assert page.problems == ["line 34: not-runnable marker before no code block"]


def test_the_site_has_examples_to_run():
    """The checks below are not vacuous: the guide pages and the README hold Python blocks."""
    assert sum(len(b) for b in RUNNABLE.values()) >= 5, RUNNABLE
    assert RUNNABLE.get("README.md"), "the README's Python blocks were not found"
    assert any(p.startswith("docs/") and b for p, b in RUNNABLE.items()), RUNNABLE


def test_every_not_runnable_block_says_why():
    bad = [f"{b.page}:{b.line}: not-runnable with no reason" for p in PAGES for b in p.blocks
           if b.skip is not None and not b.skip.strip()]
    bad += [f"{p.path}: {problem}" for p in PAGES for problem in p.problems]
    assert not bad, "\n".join(bad)


def _run_page(spec, tmp_path):
    """Run one page's blocks in a fresh process; the CompletedProcess."""
    spec_path = tmp_path / "blocks.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    work = tmp_path / "cwd"
    work.mkdir(exist_ok=True)
    env = dict(os.environ, KERAS_BACKEND="tensorflow", MPLBACKEND="Agg", TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=os.pathsep.join([E.REPO] + [p for p in [os.environ.get("PYTHONPATH")]
                                                      if p]))
    try:
        # -m: the examples see the tmp folder as the script folder, as a user's script would.
        proc = subprocess.run([sys.executable, "-m", "tests._docs_examples", str(spec_path)],
                              cwd=work, env=env, timeout=PAGE_TIMEOUT_S,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        running = [line for line in err.splitlines() if line.startswith("[docs-example] ")]
        pytest.fail(f"{spec['page']}: the examples ran past {PAGE_TIMEOUT_S} s; last block "
                    f"started: {running[-1] if running else '?'}")
    return proc


def test_the_runner_shares_a_namespace_checks_doctests_and_names_the_failing_line(tmp_path):
    text = "\n".join(["```python", "a = 2", "```", "```pycon", ">>> a * 3", "6", "```",
                      "```python", "b = a + 1", "", "raise ValueError(b)", "```"])
    (tmp_path / "x.md").write_text(text, encoding="utf-8")
    page = E.parse_text("x.md", text)
    spec = dict(E.spec(page, page.blocks), file=str(tmp_path / "x.md"))
    proc = _run_page(spec, tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert f'File "{tmp_path / "x.md"}", line 11' in proc.stderr, proc.stderr
    assert "ValueError: 3" in proc.stderr and "FAILED: the block at x.md:9" in proc.stderr
    # A doctest whose output differs fails at its own block.
    page.blocks[1].code = ">>> a * 3\n7\n"
    proc = _run_page(dict(E.spec(page, page.blocks[:2]), file=str(tmp_path / "x.md")), tmp_path)
    assert proc.returncode == 1 and "FAILED: the block at x.md:5" in proc.stderr, proc.stderr
    assert "Expected:\n    7\nGot:\n    6" in proc.stderr, proc.stderr


@pytest.mark.parametrize("page", sorted(p for p, blocks in RUNNABLE.items() if blocks))
def test_the_examples_of_a_page_run(page, tmp_path):
    proc = _run_page(E.spec(next(p for p in PAGES if p.path == page), RUNNABLE[page]), tmp_path)
    lines = [f"{b.page}:{b.line}" for b in RUNNABLE[page]]
    assert proc.returncode == 0, (
        f"an example of {page} failed (blocks at {', '.join(lines)}):\n"
        f"{proc.stderr[-6000:]}\n--- stdout ---\n{proc.stdout[-2000:]}")
    assert f"ran {len(lines)} block(s)" in proc.stderr, proc.stderr[-2000:]
