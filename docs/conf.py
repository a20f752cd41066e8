"""Sphinx configuration for keras_afl's documentation site.

Build (offline, from the repository root, after ``pip install -e ".[cpu,docs]"``)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

Everything the built pages load is served from the site itself: furo ships no web fonts,
MathJax comes from ``sphinx-mathjax-offline`` (copied into ``_static/mathjax``), and no
extension adds a script from another host. ``tests/test_docs_site.py`` checks that in a browser.
"""

import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "_ext"))
# autodoc imports keras_afl, which imports Keras: quiet TensorFlow, and let Keras pick its
# backend as usual (KERAS_BACKEND, or TensorFlow).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

project = "keras_afl"
author = "keras_afl developers"
copyright = "keras_afl developers"  # noqa: A001 (Sphinx's name)

try:
    from importlib.metadata import version as _version

    release = _version("keras-afl")
except Exception:  # not installed: building from a bare checkout
    release = "0.1.0"
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # MathJax 3 copied into _static: formulas render with no network
    "myst_parser",
    "afl_docstrings",  # docs/_ext: plain-text formula blocks in the docstrings read as literal
    "afl_formulas",  # docs/_ext: the formulas as math, in the API reference and the guide
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_ext", "Thumbs.db", ".DS_Store"]

# MyST: $...$ and $$...$$ math, ::: fences, anchors for every heading down to ###, so that
# [text](page.md#a-heading) links resolve (and are checked by -W).
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
myst_dmath_double_inline = True

# autodoc / napoleon: Google-style docstrings, as the library writes them.
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
autosummary_generate = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False
# `code` in a docstring is code, as in the Markdown pages (reST would make it a title).
default_role = "literal"
napoleon_custom_sections = [("Reference", "references")]

html_theme = "furo"
html_title = f"keras_afl {release}"
html_static_path = ["_static"]
# A favicon of our own: browsers ask for /favicon.ico otherwise (a 404 in the console).
html_favicon = "_static/favicon.svg"
html_show_sourcelink = True
pygments_style = "sphinx"
# Code blocks without a language (program output, the docstrings' formula blocks) stay plain.
highlight_language = "text"
html_css_files = ["wide-tables.css"]
