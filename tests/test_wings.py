"""The three wings: the library never uses the app (keras_afl.cli) or the harness
(keras_afl.bench); the app and the harness use the library's public names only. Data flows one
way: the app may import the harness, the harness never the app, and no module of either imports
itself back through others (no import cycle, function-level imports included). No module of the
package is longer than LINE_LIMIT lines."""

import ast
import glob
import json
import os

from tests._checks import REPO, run_python

PACKAGE = os.path.join(REPO, "keras_afl")
WINGS = ("keras_afl.cli", "keras_afl.bench")  # a module or a package, either way


def in_wing(module):
    return any(module == w or module.startswith(w + ".") for w in WINGS)


def imported_modules(tree):
    """Every module an `import` or `from ... import` of the tree names (with `from keras_afl
    import x`, both keras_afl and keras_afl.x, since x may be a module)."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append(node.module)
            out += [f"{node.module}.{a.name}" for a in node.names]
    return out


def library_files():
    """keras_afl's own modules: everything but the two wings and `__main__` (which runs the app)."""
    files = []
    for path in glob.glob(os.path.join(PACKAGE, "**", "*.py"), recursive=True):
        rel = os.path.relpath(path, PACKAGE).replace(os.sep, "/")
        if rel.split("/")[0] in ("cli", "bench", "bench.py", "__main__.py"):
            continue
        files.append(path)
    return files


def test_importing_the_library_loads_neither_the_app_nor_the_harness():
    """In a fresh process: import keras_afl, then use it (a model with string names compiled
    with a keras_afl loss, get(), lint) -- no keras_afl.cli* or keras_afl.bench* module loads."""
    out = run_python(
        "import json, sys\n"
        "import keras, keras_afl\n"
        "model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation='afl_elu'),\n"
        "                          keras.layers.Dense(1), keras_afl.layers.Sigmoid()])\n"
        "model.compile('adam', loss='focal')\n"
        "keras_afl.get('focal'); str(keras_afl.lint(model)); keras_afl.entries()\n"
        "print('MODULES' + json.dumps(sorted(m for m in sys.modules if m.startswith('keras_afl'))))\n",
        timeout=300)
    loaded = json.loads(out.split("MODULES", 1)[1])
    assert "keras_afl.layers" in loaded and "keras_afl.diagnostics" in loaded  # it did import
    assert [m for m in loaded if in_wing(m)] == []


def test_library_source_never_imports_the_app_or_the_harness():
    """Statically too: an import inside a function would escape the fresh-process test."""
    files = library_files()
    assert any(f.endswith(os.path.join("keras_afl", "registry.py")) for f in files)
    found = []
    for path in files:
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        found += [f"{os.path.relpath(path, REPO)}: {m}" for m in imported_modules(tree)
                  if in_wing(m)]
    assert found == []


def _private_uses(tree):
    """Names of the library reached through an underscore: `keras_afl._x` modules,
    `from keras_afl.y import _z`, and `alias._z` on an alias of a library module.
    The wings' own modules (keras_afl.cli.*, keras_afl.bench.*) are their business."""
    aliases, found = {}, []

    def private(path):
        return any(part.startswith("_") and not (part.startswith("__") and part.endswith("__"))
                   for part in path.split(".")[1:])

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "keras_afl":
                    if a.asname:  # import keras_afl.x as y: y is keras_afl.x
                        aliases[a.asname] = a.name
                    else:  # import keras_afl.x: binds keras_afl
                        aliases["keras_afl"] = "keras_afl"
                    if private(a.name):
                        found.append(a.name)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and node.module.split(".")[0] == "keras_afl":
            for a in node.names:
                path = f"{node.module}.{a.name}"
                if in_wing(node.module):
                    continue
                if private(path):
                    found.append(path)
                aliases[a.asname or a.name] = path
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            chain, inner = [node.attr], node.value
            while isinstance(inner, ast.Attribute):
                chain.insert(0, inner.attr)
                inner = inner.value
            if isinstance(inner, ast.Name) and inner.id in aliases:
                path = ".".join([aliases[inner.id], *chain])
                if not in_wing(path) and private(path):
                    found.append(path)
    return found


def _private_uses_in(wing):
    found = []
    for path in sorted(glob.glob(os.path.join(PACKAGE, wing, "**", "*.py"), recursive=True)):
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        rel = os.path.relpath(path, PACKAGE).replace(os.sep, "/")
        found += [f"{rel}: {p}" for p in _private_uses(tree)]
    return found


def test_the_app_uses_only_public_names_of_the_library():
    names = {os.path.basename(f) for f in glob.glob(os.path.join(PACKAGE, "cli", "*.py"))}
    assert {"__init__.py", "config.py", "train.py", "lint.py", "listing.py", "bench.py"} <= names
    assert _private_uses_in("cli") == []


# The one private module the harness may read, and why: the size sweep measures where each loss
# should switch from its plain path to the compiled kernels, so it forces each path at every
# size and reads the committed table (`keras_afl._backend._tensorflow._crossover`); a switch that exists for
# the measurement alone is not a user's setting.
HARNESS_MAY_READ = {"keras_afl._backend._tensorflow._crossover"}


def test_the_harness_uses_only_public_names_of_the_library():
    """keras_afl.bench measures the library as a user would (the trace switches through
    keras_afl.losses.set_trace_options, not the losses' private module), except the crossover
    table the sweep measures (HARNESS_MAY_READ)."""
    names = {os.path.basename(f) for f in glob.glob(os.path.join(PACKAGE, "bench", "*.py"))}
    assert {"__init__.py", "cases.py", "timing.py", "suites.py", "memory.py", "reports.py"} <= names
    uses = _private_uses_in("bench")
    assert [u for u in uses if not any(u.split(": ")[-1].startswith(m) for m in HARNESS_MAY_READ)] == []
    assert any("keras_afl._backend._tensorflow._crossover" in u for u in uses)  # the exception is still needed


def test_private_use_finder_sees_every_form():
    """The checker above finds each way of reaching a private name (so that its pass means
    something)."""
    code = ("import keras_afl\nimport keras_afl._grad_utils\n"
            "from keras_afl.losses import _core\nfrom keras_afl.diagnostics._rules import lint\n"
            "from keras_afl import losses as L\nfrom keras_afl.cli import common\n"
            "from keras_afl.bench import timing\n"
            "keras_afl.losses._core.x\nL._core\nkeras_afl.__version__\ncommon._why\ntiming._sync\n")
    assert set(_private_uses(ast.parse(code))) == {
        "keras_afl._grad_utils", "keras_afl.losses._core", "keras_afl.diagnostics._rules.lint",
        "keras_afl.losses._core.x"}
    assert _private_uses(ast.parse("from keras_afl import losses as L\nL._core\n")) == [
        "keras_afl.losses._core"]


# --------------------------------------------------------------------------- import directions

def _module_of(path):
    """keras_afl.cli.config for .../keras_afl/cli/config.py, keras_afl.bench.backends for
    .../keras_afl/bench/backends/__init__.py."""
    rel = os.path.relpath(path, os.path.dirname(PACKAGE))[:-len(".py")].replace(os.sep, ".")
    return rel[:-len(".__init__")] if rel.endswith(".__init__") else rel


def wing_sources():
    """{module: path} of every module of the app and the harness, in subfolders too."""
    return {_module_of(p): p for w in WINGS
            for p in glob.glob(os.path.join(PACKAGE, *w.split(".")[1:], "**", "*.py"),
                               recursive=True)}


def wing_imports_of(tree, module, is_package, known):
    """The modules of `known` that a module's source imports, anywhere in it (at the top, in a
    function, under `if`): `import a.b`, `from a import b` (a.b where that is a module, else a)
    and relative imports. Importing a submodule runs its parent package first, but that is not
    an edge: a package that imports its children (the app's dispatch) is no cycle."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".")[:len(module.split(".")) - node.level + is_package]
                base = ".".join(parts + ([base] if base else []))
            for a in node.names:
                out.add(f"{base}.{a.name}" if f"{base}.{a.name}" in known else base)
    return {m for m in out if m in known and m != module}


def wing_import_graph():
    sources = wing_sources()
    graph = {}
    for module, path in sources.items():
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        graph[module] = wing_imports_of(tree, module, path.endswith("__init__.py"), sources)
    return graph


def import_cycles(graph):
    """The import cycles of `graph` ({module: modules it imports}): each strongly connected set
    of two or more modules, sorted (Tarjan's algorithm)."""
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(cycles)


def test_the_harness_never_imports_the_app():
    """keras_afl.bench is measured and reported without keras_afl.cli: the command hands the
    harness its arguments and prints what comes back (keras_afl.bench.backends once imported
    keras_afl.cli.bench for the command line, keras_afl.cli.common for its table)."""
    graph = wing_import_graph()
    assert "keras_afl.bench.backends" in graph and "keras_afl.cli.bench" in graph
    found = [f"{m} -> {n}" for m, names in sorted(graph.items()) if m.startswith("keras_afl.bench")
             for n in sorted(names) if n.startswith("keras_afl.cli")]
    assert found == []


def test_no_import_cycle_in_the_app_or_the_harness():
    """Between any modules of keras_afl.cli and keras_afl.bench, function-level imports
    included: once keras_afl.bench.backends <-> keras_afl.cli.bench and keras_afl.cli.config
    <-> keras_afl.cli.example_task (the shared `training:` checks are now
    keras_afl.cli.config_training, which both import)."""
    graph = wing_import_graph()
    assert "keras_afl.cli.example_task" in graph["keras_afl.cli.config"]  # config dispatches
    assert import_cycles(graph) == []


def test_import_cycle_finder_sees_function_level_and_relative_imports():
    """The finder above sees the forms a cycle may come back in (so that its pass means
    something): a function-level `from keras_afl.cli import config`, a relative import, and a
    package that imports its children is not a cycle by itself."""
    known = {"keras_afl.cli", "keras_afl.cli.config", "keras_afl.cli.example_task",
             "keras_afl.bench", "keras_afl.bench.backends", "keras_afl.bench.backends.cases"}
    example = wing_imports_of(ast.parse("def validate():\n    from keras_afl.cli import config\n"),
                              "keras_afl.cli.example_task", False, known)
    config = wing_imports_of(ast.parse("from . import example_task\n"), "keras_afl.cli.config",
                             False, known)
    backends = wing_imports_of(ast.parse("from .cases import X\nimport keras_afl.cli\n"),
                               "keras_afl.bench.backends", True, known)
    package = wing_imports_of(ast.parse("def f():\n    from keras_afl.cli import config\n"),
                              "keras_afl.cli", True, known)
    assert example == {"keras_afl.cli.config"} and config == {"keras_afl.cli.example_task"}
    assert backends == {"keras_afl.bench.backends.cases", "keras_afl.cli"}
    graph = {"keras_afl.cli.example_task": example, "keras_afl.cli.config": config,
             "keras_afl.cli": package, "keras_afl.bench.backends": backends}
    assert import_cycles(graph) == [["keras_afl.cli.config", "keras_afl.cli.example_task"]]


# --------------------------------------------------------------------------- module length

LINE_LIMIT = 500


def test_no_module_of_the_package_is_over_the_line_limit():
    """A module past LINE_LIMIT lines becomes a folder, or is split by what each part does
    (keras_afl.bench.backends is a folder; keras_afl.cli.config has its config_* modules;
    keras_afl.registry's compile hooks are keras_afl._compile_names) -- the library, the app
    and the harness alike."""
    lengths = {}
    for path in glob.glob(os.path.join(PACKAGE, "**", "*.py"), recursive=True):
        with open(path, encoding="utf-8") as f:
            count = len(f.read().splitlines())
        lengths[os.path.relpath(path, REPO).replace(os.sep, "/")] = count
    assert {p: n for p, n in lengths.items() if n > LINE_LIMIT} == {}
    assert "keras_afl/bench/backends/suites.py" in lengths and "keras_afl/registry.py" in lengths
