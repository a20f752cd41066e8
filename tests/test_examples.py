"""Every script in examples/ runs to completion in a fresh process (each checks its own result)."""

import glob
import os

import pytest

from tests._checks import REPO, run_python

EXAMPLES = sorted(glob.glob(os.path.join(REPO, "examples", "*.py")))


def test_examples_folder_has_one_script_per_workflow():
    names = {os.path.basename(p) for p in EXAMPLES}
    assert {"quickstart.py", "string_activations.py", "focal_imbalanced.py",
            "prelu_save_load.py", "custom_training_loop.py", "mirrored_strategy.py"} <= names


@pytest.mark.slow
@pytest.mark.parametrize("path", EXAMPLES, ids=os.path.basename)
def test_example_runs(path, tmp_path):
    code = f"import runpy, sys; sys.argv = [{path!r}]; runpy.run_path({path!r}, run_name='__main__')"
    out = run_python(code, cwd=str(tmp_path), timeout=300)
    assert out.strip(), "an example should say what it did"
