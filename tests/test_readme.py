"""The README's and the documentation's claims, checked against the code and against Keras in the
same run. The "What differs" table lives on docs/what-differs.md; the README keeps the Quickstart,
the build command of the site and links into it."""

import inspect
import os
import re

import keras
import numpy as np
import pytest

import keras_afl
from keras_afl import activations as A
from keras_afl import layers as AL
from keras_afl import losses as AFL
from tests._checks import REPO

KA, KL, KLS = keras.activations, keras.layers, keras.losses

# keras_afl's public objects and the Keras object a user would swap each one for.
COUNTERPARTS = {
    A.relu: KA.relu, A.leaky_relu: KA.leaky_relu, A.sigmoid: KA.sigmoid, A.tanh: KA.tanh,
    A.softmax: KA.softmax, A.elu: KA.elu, A.selu: KA.selu,
    AL.ReLU: KL.ReLU, AL.LeakyReLU: KL.LeakyReLU, AL.PReLU: KL.PReLU, AL.Softmax: KL.Softmax,
    AL.ELU: KL.ELU,
    AFL.mean_squared_error: KLS.mean_squared_error, AFL.MeanSquaredError: KLS.MeanSquaredError,
    AFL.binary_crossentropy: KLS.binary_crossentropy, AFL.BinaryCrossentropy: KLS.BinaryCrossentropy,
    AFL.categorical_crossentropy: KLS.categorical_crossentropy,
    AFL.CategoricalCrossentropy: KLS.CategoricalCrossentropy,
    AFL.sparse_categorical_crossentropy: KLS.sparse_categorical_crossentropy,
    AFL.SparseCategoricalCrossentropy: KLS.SparseCategoricalCrossentropy,
    AFL.focal: KLS.binary_focal_crossentropy, AFL.FocalLoss: KLS.BinaryFocalCrossentropy,
    AFL.categorical_focal: KLS.categorical_focal_crossentropy,
    AFL.CategoricalFocalLoss: KLS.CategoricalFocalCrossentropy,
    # Keras has no sparse focal loss: the swap is its categorical one with one-hot labels.
    AFL.sparse_categorical_focal: KLS.categorical_focal_crossentropy,
    AFL.SparseCategoricalFocalLoss: KLS.CategoricalFocalCrossentropy,
    AFL.huber: KLS.huber, AFL.Huber: KLS.Huber, AFL.hinge: KLS.hinge, AFL.Hinge: KLS.Hinge,
}
# No Keras object with settings to compare: a function Keras lacks, layers Keras has only as
# Activation("sigmoid") etc.; the losses' tracing switches (no loss of their own).
NO_COUNTERPART = {A.prelu, AL.Sigmoid, AL.Tanh, AL.SELU, AFL.trace_options, AFL.set_trace_options,
                  AFL.InvalidLabelsError}


def _defaults(obj):
    return {p.name: p.default for p in inspect.signature(obj).parameters.values()
            if p.default is not inspect.Parameter.empty}


def differing_defaults():
    """[(keras_afl name, parameter, Keras's default, ours)] for every setting both have."""
    out = []
    for ours, theirs in COUNTERPARTS.items():
        mine, keras_defaults = _defaults(ours), _defaults(theirs)
        for param in sorted(set(mine) & set(keras_defaults)):
            if mine[param] != keras_defaults[param]:
                out.append((ours.__name__, param, keras_defaults[param], mine[param]))
    return out


WHAT_DIFFERS = ("docs/what-differs.md", "# What differs from Keras's built-ins, and why")
QUICKSTART = ['python -m pip install -e ".[cpu,cli]" && python -m keras_afl demo',
              'python -m pip install -e ".[cpu,test]" && python -m pytest -q -n 2']
DOCS_BUILD = "python -m sphinx -W --keep-going -b html docs docs/_build/html"


def _read(path):
    with open(os.path.join(REPO, path), encoding="utf-8") as f:
        return f.read()


def _section(title, path="README.md"):
    """From the heading `title` to the next heading of any level (or the end of the file)."""
    text = _read(path)
    start = text.index(title)
    end = text.find("\n#", start + len(title))
    return text[start:end if end != -1 else None]


def _table_rows(section):
    rows = []
    for line in section.splitlines():
        if line.startswith("|") and not set(line) <= set("|-: "):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows[1:]  # without the header


def _tokens(cell):
    return set(re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?|[A-Za-z_][A-Za-z_0-9]*", cell))


def _token(value):
    return value if isinstance(value, str) else repr(value)


def test_every_public_object_has_a_counterpart_decision():
    public = {getattr(m, n) for m in (A, AL, AFL) for n in m.__all__}
    assert public == set(COUNTERPARTS) | NO_COUNTERPART


def test_every_default_that_differs_from_keras_is_in_the_what_differs_table():
    rows = _table_rows(_section(WHAT_DIFFERS[1], WHAT_DIFFERS[0]))
    missing = []
    for name, param, theirs, mine in differing_defaults():
        hit = [r for r in rows if {name, param} <= _tokens(r[0])
               and _token(theirs) in _tokens(r[1]) and _token(mine) in _tokens(r[2])]
        if not hit:
            missing.append(f"{name}({param}=...): Keras {theirs!r}, keras_afl {mine!r}")
    assert not missing, (f"{WHAT_DIFFERS[0]}'s 'What differs' table lacks a row (first cell naming the object "
                         "and the setting, Keras's default in the second, ours in the third) for: "
                         + "; ".join(missing))


def test_the_defaults_the_issue_named_are_among_those_found():
    found = {(n, p) for n, p, _, _ in differing_defaults()}
    assert {("leaky_relu", "negative_slope"), ("LeakyReLU", "negative_slope"),
            ("CategoricalFocalLoss", "alpha"), ("PReLU", "alpha_initializer")} <= found


def test_categorical_focal_swap_changes_the_loss_4x_as_the_docs_say():
    y = np.eye(3, dtype="float32")[[0, 2, 1, 1]]
    p = np.array([[.7, .2, .1], [.3, .3, .4], [.2, .5, .3], [.1, .1, .8]], "float32")
    ratio = float(AFL.CategoricalFocalLoss()(y, p)) / float(KLS.CategoricalFocalCrossentropy()(y, p))
    assert ratio == pytest.approx(4.0, rel=1e-5)
    assert "4× larger" in _section(WHAT_DIFFERS[1], WHAT_DIFFERS[0])


def _fenced_blocks(text, language):
    return re.findall(r"^```" + language + r"\n(.*?)^```", text, re.S | re.M)


def test_the_quickstart_is_exactly_the_two_commands():
    blocks = _fenced_blocks(_section("## Quickstart"), "bash")
    assert blocks, "README's Quickstart has no ```bash block"
    commands = [line.strip() for line in blocks[0].splitlines() if line.strip()]
    assert commands == QUICKSTART


def test_the_docs_build_command_is_named_in_the_readme_and_contributing():
    for path in ("README.md", "CONTRIBUTING.md"):
        assert DOCS_BUILD in _read(path), f"{path} does not name the docs build: {DOCS_BUILD}"
    # the command CI and the browser tests run is the same build
    from tests._docs_site import build_command

    assert build_command("OUT", "TREES")[3:] == ["-W", "--keep-going", "-b", "html", "-d", "TREES",
                                                  os.path.join(REPO, "docs"), "OUT"]


def test_readme_is_an_overview_whose_links_lead_somewhere():
    text = _read("README.md")
    assert len(text.splitlines()) <= 300, "the README is an overview; details go to docs/"
    links = re.findall(r"\]\(([^)#\s]+)(?:#([^)\s]*))?\)", text)
    local = [(path, anchor) for path, anchor in links if "://" not in path]
    assert len(local) >= 10, local
    for path, anchor in local:
        assert os.path.exists(os.path.join(REPO, path)), f"README links to a missing {path}"
        if anchor:  # a heading of the linked page, as GitHub and MyST slug it
            slugs = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
                     for h in re.findall(r"^#+ (.*)$", _read(path), re.M)}
            assert anchor in slugs, f"README links to {path}#{anchor}, not a heading there"


def test_every_guide_page_is_linked_from_the_readme():
    text = _read("README.md")
    pages = sorted(name for name in os.listdir(os.path.join(REPO, "docs"))
                   if name.endswith(".md") and name not in ("index.md", "contributing.md",
                                                            "changelog.md", "development.md"))
    missing = [name for name in pages if f"(docs/{name}" not in text]
    assert not missing, f"README links to no docs/ page for: {missing}"


def test_every_activation_and_loss_function_has_its_formula_as_math_on_the_site():
    # docs/_ext/afl_formulas.py's LaTeX table (the API reference and the guide pages render
    # it): a new function fails here until its formula is written there, and a renamed one
    # leaves no stale entry behind.
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "afl_formulas", os.path.join(REPO, "docs", "_ext", "afl_formulas.py"))
    formulas = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(formulas)
    except ImportError as e:  # docutils/Sphinx: the [docs] extra
        pytest.skip(f"the [docs] extra is not installed: {e}")
    functions = {n for n in A.__all__} | {
        n for n in AFL.__all__ if inspect.isfunction(getattr(AFL, n))
        and n not in ("trace_options", "set_trace_options")}
    assert set(formulas.TEX) == functions
    for name in ("activations", "losses"):
        page = _read(f"docs/{name}.md")
        listed = set(re.search(r"```\{afl-formulas\} ([^\n]*)", page).group(1).split())
        module = A if name == "activations" else AFL
        assert listed == {n for n in functions if n in module.__all__}, name
