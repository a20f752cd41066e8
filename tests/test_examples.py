"""Every script in examples/ runs to completion in a fresh process (each checks its own result)."""

import glob
import json
import os

import pytest

from tests._checks import REPO, run_python

EXAMPLES = sorted(glob.glob(os.path.join(REPO, "examples", "*.py")))


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
