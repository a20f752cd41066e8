"""The documentation site for tests/test_docs_site.py: build it, serve it on 127.0.0.1, crawl it
in headless Chromium (the Debian package `chromium`, driven by Playwright with
`executable_path`; `playwright install` is never needed).

Nothing here imports TensorFlow; the Sphinx build does (autodoc imports keras_afl), in its own
process.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(REPO, "docs")
# Screenshots a person can look at: gitignored (docs/_build/), stable, replaced on every run.
SCREENSHOTS = os.path.join(DOCS, "_build", "screenshots")
HOST = "127.0.0.1"
PAGE_TIMEOUT_MS = 30_000


def chromium_path():
    """The Chromium binary: $CHROMIUM, or Debian's `chromium` (`chromium-browser` elsewhere)."""
    for candidate in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser"):
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    return None


def build_command(out_dir, doctree_dir):
    """The README's strict build, into `out_dir` (a fresh folder: every page is rebuilt)."""
    return [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html",
            "-d", doctree_dir, DOCS, out_dir]


def build_site(out_dir, doctree_dir, timeout=900):
    """Run the strict build; (returncode, seconds, combined output)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    start = time.perf_counter()
    proc = subprocess.run(build_command(out_dir, doctree_dir), cwd=REPO, env=env, timeout=timeout,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return proc.returncode, time.perf_counter() - start, proc.stdout


@contextlib.contextmanager
def file_lock(path):
    """An exclusive lock on `path` (pytest-xdist's workers build and crawl the site once)."""
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def shared_json(folder, name, produce):
    """`produce()`'s JSON result, computed once per folder (per test session) under a lock."""
    path = os.path.join(folder, name + ".json")
    with file_lock(os.path.join(folder, name + ".lock")):
        if not os.path.exists(path):
            value = produce()
            with open(path + ".tmp", "w", encoding="utf-8") as f:
                json.dump(value, f)
            os.replace(path + ".tmp", path)
    with open(path, encoding="utf-8") as f:
        return json.load(f)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # no request log on stderr
        pass


@contextlib.contextmanager
def serve(directory):
    """An http.server for `directory` on 127.0.0.1 (a free port), in a thread; yields its URL."""
    handler = functools.partial(_QuietHandler, directory=directory)
    server = http.server.ThreadingHTTPServer((HOST, 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{HOST}:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@contextlib.contextmanager
def browser():
    """Headless Chromium (Debian's) through Playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), headless=True,
                              args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield b
        finally:
            b.close()


def html_pages(site_dir):
    """Every .html file of the built site, as paths relative to it ('/' separators)."""
    out = []
    for root, _dirs, files in os.walk(site_dir):
        for name in files:
            if name.endswith(".html"):
                out.append(os.path.relpath(os.path.join(root, name), site_dir).replace(os.sep, "/"))
    return sorted(out)


def is_same_site(url, base):
    return urllib.parse.urlsplit(url).netloc == urllib.parse.urlsplit(base).netloc


def is_other_host(url):
    """A request that would leave the machine: http(s)/ws(s) to any host but 127.0.0.1."""
    parts = urllib.parse.urlsplit(url)
    return parts.scheme in ("http", "https", "ws", "wss") and parts.hostname != HOST


# Every <img>: loading="lazy" ones made eager, each waited for (load or error), then the ones
# with no pixels (naturalWidth 0: missing, unreadable, or not an image) listed.
_BROKEN_IMAGES_JS = """async () => {
  const imgs = Array.from(document.images);
  for (const i of imgs) { i.loading = "eager"; }
  await Promise.all(imgs.map(i => i.complete ? null : new Promise(done => {
    i.addEventListener("load", done); i.addEventListener("error", done); setTimeout(done, 15000);
  })));
  return {count: imgs.length,
          broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0))
                      .map(i => i.getAttribute("src") || i.outerHTML.slice(0, 120))};
}"""

# Sphinx marks every formula with class "math" (\\(...\\) inline, \\[...\\] display); MathJax
# replaces the TeX inside with an <mjx-container>. MathJax's script (defer or async) has run by
# the load event; a short grace period, then waits for its typesetting to finish,
# then lists formulas left as TeX and formulas MathJax could not parse (<mjx-merror>).
_MATH_JS = """async () => {
  const formulas = Array.from(document.querySelectorAll(".math"));
  if (!formulas.length) return {count: 0, renderer: null, unrendered: [], errors: []};
  const deadline = Date.now() + 3000;
  while (!(window.MathJax && MathJax.startup && MathJax.startup.promise) && Date.now() < deadline)
    await new Promise(r => setTimeout(r, 50));
  if (!(window.MathJax && MathJax.startup && MathJax.startup.promise))
    return {count: formulas.length, renderer: null,
            unrendered: formulas.slice(0, 5).map(e => e.textContent.slice(0, 80)), errors: []};
  await MathJax.startup.promise;
  return {count: formulas.length, renderer: "MathJax " + (MathJax.version || "?"),
          unrendered: formulas.filter(e => !e.querySelector("mjx-container"))
                              .map(e => e.textContent.slice(0, 80)),
          errors: Array.from(document.querySelectorAll("mjx-merror"))
                       .map(e => e.textContent.slice(0, 80))};
}"""

_LINKS_JS = "() => Array.from(document.querySelectorAll('a[href]')).map(a => a.href)"


def _visit(context, url, base):
    """Load one page; everything that went wrong on it, and what it holds."""
    page = context.new_page()
    console, page_errors, failed, bad_status = [], [], [], []
    page.on("console", lambda m: console.append(f"{m.text} ({m.location.get('url', '')})")
            if m.type == "error" else None)
    page.on("pageerror", lambda e: page_errors.append(str(e)))
    page.on("requestfailed", lambda r: failed.append(f"{r.url} ({r.failure})")
            if is_same_site(r.url, base) else None)
    page.on("response", lambda r: bad_status.append(f"{r.url} (HTTP {r.status})")
            if r.status >= 400 else None)
    try:
        response = page.goto(url, wait_until="load", timeout=PAGE_TIMEOUT_MS)
        status = response.status if response else None
        images = page.evaluate(_BROKEN_IMAGES_JS)
        math = page.evaluate(_MATH_JS)
        links = page.evaluate(_LINKS_JS)
        page.wait_for_load_state("networkidle", timeout=PAGE_TIMEOUT_MS)
    except Exception as exc:  # a timeout or a crash is a finding about this page
        return {"status": None, "error": f"{type(exc).__name__}: {exc}", "console": console,
                "page_errors": page_errors, "failed": failed, "bad_status": bad_status,
                "images": {"count": 0, "broken": []}, "math": {"count": 0, "unrendered": [],
                                                               "errors": []}, "links": []}
    finally:
        page.close()
    return {"status": status, "error": None, "console": console, "page_errors": page_errors,
            "failed": failed, "bad_status": bad_status, "images": images, "math": math,
            "links": links}


def crawl(site_dir, base):
    """Visit every built page, and every same-site page a link leads to; check every other
    same-site link target (a download, a source file) answers 200.

    Returns {"pages": {relative path: findings}, "other_host": [requests stopped],
    "link_targets": {url: status}}.
    """
    other_host = []
    pages, link_targets = {}, {}
    queue = [base + p for p in html_pages(site_dir)]
    seen = set(queue)
    with browser() as b:
        context = b.new_context(service_workers="block")

        def guard(route):
            # The site must work offline: a request to another host is recorded and never sent.
            if is_other_host(route.request.url):
                other_host.append(route.request.url)
                route.abort()
            else:
                route.continue_()

        context.route("**/*", guard)
        while queue:
            url = queue.pop(0)
            rel = url[len(base):]
            pages[rel] = found = _visit(context, url, base)
            for link in found.pop("links"):
                target = urllib.parse.urldefrag(link)[0]
                if not is_same_site(target, base) or target in seen:
                    continue
                seen.add(target)
                path = urllib.parse.urlsplit(target).path
                if path.endswith(("/", ".html")):
                    queue.append(target)
                else:
                    link_targets[target] = context.request.get(target).status
        context.close()
    return {"pages": pages, "other_host": other_host, "link_targets": link_targets}


def screenshots(base, shots, width=1280, height=900):
    """Full-page PNGs, math typeset and images loaded first: `shots` is [(page, png path)]."""
    with browser() as b:
        page = b.new_page(viewport={"width": width, "height": height})
        for rel, path in shots:
            page.goto(base + rel, wait_until="load", timeout=PAGE_TIMEOUT_MS)
            page.evaluate(_MATH_JS)
            page.evaluate(_BROKEN_IMAGES_JS)
            page.screenshot(path=path, full_page=True)


def search_results(base, query, timeout_ms=PAGE_TIMEOUT_MS):
    """The links the site's own search lists for `query`: [(text, href)]."""
    with browser() as b:
        page = b.new_page()
        page.goto(base + "search.html?q=" + urllib.parse.quote(query), wait_until="load")
        # Sphinx's searchtools lists the hits, then writes its summary paragraph ("Search
        # finished, ..." or "did not match"): wait for that text.
        page.wait_for_function(
            "() => { const s = document.querySelector('#search-results p.search-summary');"
            " return s && s.textContent.trim().length > 0 }", timeout=timeout_ms)
        return page.evaluate("() => Array.from(document.querySelectorAll('#search-results li a'))"
                             ".map(a => [a.textContent.trim(), a.href])")
