"""JAX and PyTorch users without TensorFlow (issue 19, items 8, 9 and 11): what they meet first
says what to do, and what keras_afl ships runs.

CI has one environment with all three backends, so each test runs a fresh process with
TensorFlow made unimportable (`sys.modules["tensorflow"] = None`, as tests/test_any_backend.py
does) and, where it plays a machine with one backend only, the other backend too.
`keras-afl bench` on each backend without TensorFlow is in tests/test_cli_backends.py, the
examples in tests/test_examples.py.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BACKENDS = ("jax", "torch")
OTHER = {"jax": "torch", "torch": "jax"}
WORDS = {"tensorflow": "TensorFlow", "jax": "JAX", "torch": "PyTorch"}


# Hides the other backend as if it were not installed: `import` and `importlib.util.find_spec`
# fail for it. (A None in sys.modules, as for TensorFlow, breaks SciPy, which JAX imports: it
# reads sys.modules["torch"].)
HIDE = """
class _Hidden:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.split(".")[0] in HIDDEN:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, _Hidden)
"""


def _run(code, backend, tmp_path, *, hidden=(), keras_backend=True, timeout=300):
    """`code` in a fresh Python process where TensorFlow and the modules `hidden` cannot be
    imported, with KERAS_BACKEND=`backend` (unset if not `keras_backend`) and Keras's settings
    folder empty."""
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed (pip install 'keras-afl[{backend}]')")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": REPO,
           "KERAS_HOME": str(tmp_path / "keras_home")}
    env.pop("KERAS_BACKEND", None)
    if keras_backend:
        env["KERAS_BACKEND"] = backend
    head = f"import sys\nsys.modules['tensorflow'] = None\nHIDDEN = {tuple(hidden)!r}\n{HIDE}"
    return subprocess.run([sys.executable, "-c", head + textwrap.dedent(code)],
                          capture_output=True, text=True, env=env, cwd=str(tmp_path),
                          timeout=timeout)


# --------------------------------------------------------------------------- item 9

IMPORT = """
try:
    import keras_afl
except ImportError as e:
    print("MESSAGE", e)
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_import_on_a_machine_with_one_backend_says_to_set_keras_backend(backend, tmp_path):
    """KERAS_BACKEND unset: Keras's default, TensorFlow, is missing; the message names it and
    the backend that is installed, with the setting that selects it."""
    proc = _run(IMPORT, backend, tmp_path, hidden=(OTHER[backend],),
                keras_backend=False)
    message = proc.stdout.partition("MESSAGE ")[2]
    assert message, proc.stdout + proc.stderr[-3000:]
    assert "Keras's backend is TensorFlow (Keras's default, KERAS_BACKEND being unset)" in message
    assert "TensorFlow is not installed" in message
    assert f"KERAS_BACKEND={backend}" in message and f"KERAS_BACKEND={OTHER[backend]}" not in message
    assert "pip install 'keras>=3'" not in message  # Keras is installed: not the fix


@pytest.mark.parametrize("backend", BACKENDS)
def test_import_names_the_keras_json_that_chose_a_missing_backend(backend, tmp_path):
    (tmp_path / "keras_home").mkdir()
    (tmp_path / "keras_home" / "keras.json").write_text(json.dumps({"backend": OTHER[backend]}))
    proc = _run(IMPORT, backend, tmp_path, hidden=(OTHER[backend],),
                keras_backend=False)
    message = proc.stdout.partition("MESSAGE ")[2]
    assert f"Keras's backend is {WORDS[OTHER[backend]]} (set in " in message, proc.stderr[-3000:]
    assert "keras.json" in message and f"KERAS_BACKEND={backend}" in message


# One process per backend: the command line and ActivationStats, TensorFlow unimportable.
DRIVER = """
import contextlib, io, json
import numpy as np
import keras, keras_afl
from keras_afl.cli import main

report = {}
missing = sys.argv[1]
sys.argv = ["keras-afl", "--backend", missing, "list"]
err = io.StringIO()
with contextlib.redirect_stderr(err):
    report["missing_rc"] = main()  # from the command line (argv None): the re-exec path
report["missing_err"] = err.getvalue()

try:
    keras_afl.callbacks.ActivationStats(np.ones((2, 3), "float32"), log_dir="logs")
    report["stats"] = "constructed"
except ImportError as e:
    report["stats"] = str(e)
report["tensorflow_blocked"] = sys.modules["tensorflow"] is None
print("REPORT " + json.dumps(report))
"""


@pytest.fixture(scope="module", params=BACKENDS)
def report(request, tmp_path_factory):
    backend = request.param
    tmp = tmp_path_factory.mktemp(f"no_tf_{backend}")
    proc = _run(DRIVER.replace("sys.argv[1]", repr(OTHER[backend])), backend, tmp,
                hidden=(OTHER[backend],))
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("REPORT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-2000:] + proc.stderr[-4000:]
    return backend, json.loads(lines[-1][len("REPORT "):])


def test_backend_option_for_a_missing_backend_is_one_line_and_exit_2(report):
    backend, r = report
    missing = OTHER[backend]
    assert r["missing_rc"] == 2
    lines = r["missing_err"].strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r["missing_err"], r["missing_err"]
    assert lines[0] == (f"keras-afl: --backend {missing}: {WORDS[missing]} is not installed, so "
                        f"Keras cannot run on it. Fix: pip install 'keras-afl[{missing}]', or run "
                        f"on an installed one: --backend {backend}")


def test_activation_stats_with_log_dir_fails_at_construction(report):
    _, r = report
    assert r["tensorflow_blocked"]
    assert r["stats"].startswith("ActivationStats(log_dir='logs') writes TensorBoard event files")
    assert "TensorFlow is not installed" in r["stats"] and "CSVLogger" in r["stats"]


# --------------------------------------------------------------------------- item 8

TRAIN = """
from keras_afl.cli import main
code = main(["train", sys.argv[1], "--smoke", "--quiet", "--output", "out"])
assert sys.modules["tensorflow"] is None
print("EXIT", code)
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_train_detector_config_smoke_runs_without_tensorflow(backend, tmp_path):
    """`keras-afl train configs/detector.yaml --smoke`: the detector's NMS is NumPy's."""
    config = os.path.join(REPO, "configs", "detector.yaml")
    proc = _run(TRAIN.replace("sys.argv[1]", repr(config)), backend, tmp_path, timeout=600)
    assert "EXIT 0" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-4000:]
    with open(tmp_path / "out" / "summary.json") as f:
        summary = json.load(f)
    assert summary["versions"]["backend"] == backend
    assert [set(r["metrics"]) for r in summary["runs"]] == [{"map", "map50", "map_small"}] * 2
    assert (tmp_path / "out" / "detections.png").exists()


# --------------------------------------------------------------------------- the launcher

LAUNCH = """
import keras_afl_launcher
sys.argv = ["keras-afl", *ARGS]
code = keras_afl_launcher.main()
sys.stdout.flush()
sys.exit(code)
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_keras_afl_backend_starts_on_a_one_backend_machine_with_keras_backend_unset(backend,
                                                                                   tmp_path):
    """`keras-afl --backend jax list` (the console script is keras_afl_launcher:main) where only
    JAX is installed and KERAS_BACKEND is unset: Keras would pick TensorFlow at import; the
    launcher sets the backend first."""
    proc = _run(f"ARGS = ['--backend', {backend!r}, 'list']\n" + LAUNCH, backend, tmp_path,
                hidden=(OTHER[backend],), keras_backend=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "afl_relu" in proc.stdout


@pytest.mark.parametrize("backend", BACKENDS)
def test_keras_afl_backend_not_installed_is_one_line_before_any_import(backend, tmp_path):
    missing = OTHER[backend]
    proc = _run(f"ARGS = ['--backend', {missing!r}, 'list']\n" + LAUNCH, backend, tmp_path,
                hidden=(missing,), keras_backend=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert f"--backend {missing}: {WORDS[missing]} is not installed" in lines[0]
    assert f"--backend {backend}" in lines[0]  # the installed one to use instead
