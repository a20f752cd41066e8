"""Every script in examples/ runs to completion in a fresh process (each checks its own result)."""

import glob
import importlib.util
import json
import os

import pytest

from tests._checks import REPO, run_python

# Examples of one Keras backend: {file name: KERAS_BACKEND}. They run on it with TensorFlow made
# unimportable (as on a machine without it), and are skipped where that backend is not installed.
BACKEND_EXAMPLES = {"custom_loop_jax.py": "jax", "custom_loop_torch.py": "torch"}
EXAMPLES = sorted(p for p in glob.glob(os.path.join(REPO, "examples", "*.py"))
                  if os.path.basename(p) not in BACKEND_EXAMPLES)


def check_activation_health(out, tmp_path):
    """The dead-unit curves are printed and `--plot` writes a PNG."""
    assert "hidden2 dead fraction per epoch" in out
    assert (tmp_path / "dead.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def check_smoke_outputs(png):
    """A --smoke run (seconds) writes its PNG and results.json with one run per loss."""
    def check(out, tmp_path):
        assert (tmp_path / "out" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        result = json.loads((tmp_path / "out" / "results.json").read_text())
        assert len(result["runs"]) >= 2 and all(r["metrics"] for r in result["runs"])
    return check


# Examples with options of their own: {file name: (extra argv, check(stdout, tmp_path))}.
# One run per example covers both: the default settings (its own result check) and the
# options' output.
EXTRA = {
    "activation_health.py": (["--plot", "dead.png"], check_activation_health),
    # the full runs take minutes (their numbers are in the README); the tests run --smoke
    "detect_shapes.py": (["--smoke", "--output", "out"], check_smoke_outputs("detections.png")),
    "segment_lesions.py": (["--smoke", "--output", "out"], check_smoke_outputs("segmentations.png")),
}


def test_examples_folder_has_one_script_per_workflow():
    names = {os.path.basename(p) for p in EXAMPLES}
    assert {"quickstart.py", "string_activations.py", "focal_imbalanced.py",
            "prelu_save_load.py", "custom_training_loop.py", "mirrored_strategy.py"} <= names
    assert set(EXTRA) <= names
    assert all(os.path.isfile(os.path.join(REPO, "examples", n)) for n in BACKEND_EXAMPLES)


def _without_tensorflow(path, argv, backend, cwd, timeout=300):
    """Runs the example at `path` with `argv` on `backend`, TensorFlow unimportable; its stdout."""
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed (pip install 'keras-afl[{backend}]')")
    code = (f"import runpy, sys; sys.modules['tensorflow'] = None; sys.argv = {[path, *argv]!r}; "
            f"runpy.run_path({path!r}, run_name='__main__'); "
            "assert sys.modules['tensorflow'] is None")
    return run_python(code, cwd=str(cwd), timeout=timeout, env={"KERAS_BACKEND": backend})


@pytest.mark.parametrize("name", sorted(BACKEND_EXAMPLES))
def test_custom_loop_of_each_backend_lowers_the_loss_without_tensorflow(name, tmp_path):
    """examples/custom_loop_jax.py (jax.jit, jax.value_and_grad, stateless_call and
    stateless_apply) and custom_loop_torch.py (loss.backward(), torch.optim): each exits non-zero
    unless its loss falls by 30 % and its training accuracy passes 0.75."""
    backend = BACKEND_EXAMPLES[name]
    out = _without_tensorflow(os.path.join(REPO, "examples", name), [], backend, tmp_path)
    first, last = (float(v) for v in out.split("focal loss ")[1].split(" over")[0].split(" -> "))
    assert last < 0.7 * first, out
    assert {"jax": "jax.value_and_grad", "torch": "loss.backward()"}[backend] in out


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_detector_smoke_runs_without_tensorflow(backend, tmp_path):
    """examples/detect_shapes.py --smoke on JAX and PyTorch: its NMS is NumPy's, not TensorFlow's."""
    path = os.path.join(REPO, "examples", "detect_shapes.py")
    out = _without_tensorflow(path, ["--smoke", "--output", "out"], backend, tmp_path, timeout=600)
    check_smoke_outputs("detections.png")(out, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("path", EXAMPLES, ids=os.path.basename)
def test_example_runs(path, tmp_path):
    args, check = EXTRA.get(os.path.basename(path), ([], None))
    argv = [path, *args]
    code = f"import runpy, sys; sys.argv = {argv!r}; runpy.run_path({path!r}, run_name='__main__')"
    out = run_python(code, cwd=str(tmp_path), timeout=300)
    assert out.strip(), "an example should say what it did"
    if check is not None:
        check(out, tmp_path)
