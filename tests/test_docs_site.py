"""The documentation site (docs/, Sphinx) built strictly and crawled in a real browser.

The site is built once per test session (`python -m sphinx -W --keep-going -b html docs ...` into
pytest's tmp folder: the tree as it stands, never a stale docs/_build), served by http.server on
127.0.0.1, and every page is opened in headless Chromium -- the Debian package `chromium`, driven
by Playwright through `executable_path` (no `playwright install`). Every built .html file is
visited, and every same-site link is followed. Each page must answer 200, log no console or
script error, miss no same-site resource, send no request to another host (the site works
offline), render every <img> and typeset every formula; the site's search must find the focal
loss. Screenshots land in docs/_build/screenshots/ (gitignored) for a person to look at.

Needs the [docs] extra (sphinx, myst-parser, furo, sphinx-mathjax-offline, playwright) and
`apt-get install -y chromium`; without them the module skips, saying which is missing.
"""

import os
import re
import shutil

import pytest

pytest.importorskip("sphinx", reason="the docs extra is not installed: pip install -e '.[docs]'")
pytest.importorskip("myst_parser", reason="the docs extra is not installed: "
                                          "pip install -e '.[docs]'")

from tests import _docs_site as S  # noqa: E402

try:
    import playwright.sync_api  # noqa: F401
    _NO_BROWSER = None
except ImportError:
    _NO_BROWSER = "playwright is not installed: pip install -e '.[docs]'"
if _NO_BROWSER is None and S.chromium_path() is None:
    _NO_BROWSER = ("no chromium: apt-get install -y chromium (Debian's package; "
                   "`playwright install` is not used), or set CHROMIUM=/path/to/chromium")
needs_browser = pytest.mark.skipif(_NO_BROWSER is not None, reason=_NO_BROWSER or "")

# The pages a person looks at first (issue 22): screenshots of these.
SCREENSHOT_PAGES = {"index": "index.html", "losses": "losses.html",
                    "performance": "performance.html"}


@pytest.fixture(scope="session")
def shared_dir(tmp_path_factory):
    """One folder per test session; under pytest-xdist the workers share it (and one build)."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    folder = base / "docs_site"
    folder.mkdir(exist_ok=True)
    return str(folder)


@pytest.fixture(scope="session")
def site(shared_dir):
    """(html folder, build result) of the strict build."""
    html = os.path.join(shared_dir, "html")

    def build():
        rc, seconds, output = S.build_site(html, os.path.join(shared_dir, "doctrees"))
        return {"rc": rc, "seconds": seconds, "output": output}

    result = S.shared_json(shared_dir, "build", build)
    print(f"\nsphinx build: {result['seconds']:.1f} s, exit {result['rc']}, into {html}")
    if not os.path.exists(os.path.join(html, "index.html")):
        pytest.fail("the build wrote no index.html:\n" + result["output"][-4000:])
    return html, result


@pytest.fixture(scope="session")
def server(site):
    with S.serve(site[0]) as base:
        yield base


@pytest.fixture(scope="session")
def report(site, shared_dir):
    def run():
        with S.serve(site[0]) as base:
            return S.crawl(site[0], base)

    return S.shared_json(shared_dir, "crawl", run)


def _problems(report, pick):
    """'page: finding' lines for every page where `pick(findings)` lists something."""
    lines = []
    for page, found in sorted(report["pages"].items()):
        lines += [f"{page}: {item}" for item in pick(found)]
    return lines


def test_the_site_builds_with_no_warning(site):
    """-W: a broken link, a missing reference or a docstring Sphinx cannot parse fails."""
    _html, result = site
    warnings = [line for line in result["output"].splitlines()
                if re.search(r"WARNING|ERROR|CRITICAL|Traceback", line)]
    assert result["rc"] == 0, (f"sphinx -W exited {result['rc']}; warnings and errors:\n"
                               + "\n".join(warnings[:60]) + "\n--- tail ---\n"
                               + result["output"][-3000:])


@needs_browser
def test_every_page_was_crawled_and_answers_200(site, report):
    built = set(S.html_pages(site[0]))
    assert len(built) >= 15, f"only {len(built)} pages built: {sorted(built)}"
    assert built <= set(report["pages"]), f"not visited: {sorted(built - set(report['pages']))}"
    bad = [f"{p}: HTTP {f['status']} {f['error'] or ''}" for p, f in sorted(report["pages"].items())
           if f["status"] != 200 or f["error"]]
    assert not bad, "pages that did not load:\n" + "\n".join(bad)


@needs_browser
def test_no_console_error_and_no_script_error(report):
    bad = _problems(report, lambda f: ["console: " + m for m in f["console"]]
                    + ["script: " + m for m in f["page_errors"]])
    assert not bad, "\n".join(bad)


@needs_browser
def test_no_same_site_resource_or_link_is_missing(report):
    bad = _problems(report, lambda f: f["failed"] + f["bad_status"])
    bad += [f"link {url}: HTTP {status}" for url, status in sorted(report["link_targets"].items())
            if status != 200]
    assert not bad, "missing same-site resources:\n" + "\n".join(bad)


@needs_browser
def test_no_request_leaves_the_machine(report):
    """Fonts, MathJax and scripts are served by the site itself: it works offline."""
    assert not report["other_host"], ("requests to another host (blocked in the test; they "
                                      "would fail offline):\n"
                                      + "\n".join(sorted(set(report["other_host"]))))


@needs_browser
def test_every_image_renders(report):
    bad = _problems(report, lambda f: ["image not rendered: " + s for s in f["images"]["broken"]])
    assert not bad, "\n".join(bad)
    shown = sum(f["images"]["count"] for f in report["pages"].values())
    assert shown > 0, "no page shows an image: the gallery and the benchmark plots are missing"


@needs_browser
def test_every_formula_renders_as_math(report):
    bad = []
    for page, f in sorted(report["pages"].items()):
        math = f["math"]
        if math["count"] and not math.get("renderer"):
            bad.append(f"{page}: {math['count']} formulas and no MathJax loaded")
        bad += [f"{page}: left as TeX: {t!r}" for t in math["unrendered"]]
        bad += [f"{page}: MathJax error: {t!r}" for t in math["errors"]]
    assert not bad, "\n".join(bad)
    with_math = [p for p, f in report["pages"].items() if f["math"]["count"]]
    assert with_math, "no page has a formula: the docstrings' formulas are not rendered as math"


@needs_browser
def test_search_finds_the_focal_loss(server):
    hits = S.search_results(server, "focal")
    focal = [(text, href) for text, href in hits if re.search(r"focal", href, re.IGNORECASE)]
    assert focal, f"search.html?q=focal lists no link to a focal-loss page or entry: {hits}"
    api = [href for _text, href in focal if "keras_afl.losses.focal" in href.lower()
           or "keras_afl.losses.focalloss" in href.lower()]
    assert api, f"the search lists no API entry of the focal loss: {focal}"


def _api_page_of(html, anchor):
    """The built page holding the API entry `anchor` (autodoc's id)."""
    for rel in S.html_pages(html):
        with open(os.path.join(html, rel), encoding="utf-8") as f:
            if f'id="{anchor}"' in f.read():
                return rel
    return None


@needs_browser
def test_screenshots_for_a_person(site, server):
    html = site[0]
    pages = dict(SCREENSHOT_PAGES, api_losses=_api_page_of(html, "keras_afl.losses.focal"))
    missing = [name for name, rel in pages.items()
               if rel is None or not os.path.exists(os.path.join(html, rel))]
    assert not missing, f"pages to photograph not built: {missing}"
    os.makedirs(S.SCREENSHOTS, exist_ok=True)
    shots = [(rel, os.path.join(S.SCREENSHOTS, name + ".png")) for name, rel in pages.items()]
    S.screenshots(server, shots)
    for _rel, path in shots:
        with open(path, "rb") as f:
            head = f.read(8)
        assert head == b"\x89PNG\r\n\x1a\n" and os.path.getsize(path) > 10_000, path
    print("\nscreenshots:\n  " + "\n  ".join(path for _rel, path in shots))


@needs_browser
def test_the_crawler_sees_each_kind_of_breakage(tmp_path):
    """The checks above can fail: a hand-made broken site trips every one of them."""
    (tmp_path / "index.html").write_text(
        '<html><head><link rel="stylesheet" href="missing.css">'
        '<script src="https://cdn.example.invalid/lib.js"></script></head><body>'
        '<img src="gone.png"><img src="ok.png">'
        '<span class="math notranslate nohighlight">\\(x^2\\)</span>'
        '<a href="hidden/deep.html">deep</a><a href="nowhere.txt">file</a>'
        '<script>console.error("boom"); throw new Error("kaput");</script></body></html>')
    (tmp_path / "ok.png").write_bytes(bytes.fromhex(
        "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
        "0000000d4944415478da63f8ffff3f0005fe02fea7d6a4b60000000049454e44ae426082"))
    with S.serve(str(tmp_path)) as base:
        found = S.crawl(str(tmp_path), base)
    index = found["pages"]["index.html"]
    assert any("boom" in m for m in index["console"]), index
    assert any("kaput" in m for m in index["page_errors"]), index
    assert any("missing.css" in m for m in index["bad_status"]), index
    assert index["images"] == {"count": 2, "broken": ["gone.png"]}, index
    assert index["math"]["count"] == 1 and index["math"]["renderer"] is None, index
    assert found["other_host"] == ["https://cdn.example.invalid/lib.js"], found
    # A page no file walk finds (hidden/ does not exist): followed from the link, and a 404.
    assert found["pages"]["hidden/deep.html"]["status"] == 404, found
    assert list(found["link_targets"].values()) == [404], found


@needs_browser
def test_the_math_check_sees_formulas_mathjax_cannot_typeset(tmp_path):
    """With the site's MathJax (sphinx-mathjax-offline's copy): good TeX is typeset, bad TeX is
    reported, as Sphinx marks formulas (class "math")."""
    import importlib

    offline = importlib.import_module("sphinx-mathjax-offline")
    shutil.copytree(os.path.join(os.path.dirname(offline.__file__), "static", "mathjax"),
                    tmp_path / "mathjax")
    (tmp_path / "index.html").write_text(
        '<html><head><script defer src="mathjax/tex-chtml.js"></script></head><body>'
        '<span class="math notranslate nohighlight">\\(\\sigma(z)^2\\)</span>'
        '<div class="math notranslate nohighlight">\\[\\frac{1}\\]</div>'
        '<span class="math notranslate nohighlight">no delimiters</span></body></html>')
    with S.serve(str(tmp_path)) as base:
        math = S.crawl(str(tmp_path), base)["pages"]["index.html"]["math"]
    assert math["count"] == 3 and math["renderer"].startswith("MathJax 3"), math
    assert math["unrendered"] == ["no delimiters"], math
    assert len(math["errors"]) == 1 and "frac" in math["errors"][0], math
