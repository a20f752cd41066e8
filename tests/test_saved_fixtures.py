"""Saved files from earlier releases keep loading: same predictions, same settings.

`tests/fixtures/saved_0_1_0/` holds `.keras` files written by keras_afl 0.1.0 (the script
that wrote them is `tests/fixtures/make_saved_0_1_0.py`, run against the 0.1.0 tree) with the
predictions 0.1.0 gave and the loss settings it saved. Each later version must open them in a
fresh process that only imports keras_afl, with the same predictions to float32 rounding and
every loss class and setting exactly.

Predictions are not compared bit for bit: they were computed on another machine, and CPUs'
matrix-product kernels (Eigen/oneDNN, by instruction set and thread count) sum in different
orders, so the last bit of a Dense layer's output may differ (by one float32 ulp, 5.96e-8, for
the focal model on one machine of the same kind). They are compared to 8 float32 ulps; the
classes and settings, which are exact by construction, are compared exactly.
"""

import json
import os

import numpy as np
import pytest

from tests._checks import REPO, run_python

pytestmark = pytest.mark.slow

FIXTURES = os.path.join(REPO, "tests", "fixtures", "saved_0_1_0")


# 8 float32 ulps (9.5e-7): relative, and of the model's largest output in absolute terms.
FLOAT32_ROUNDING = 8 * float(np.finfo(np.float32).eps)


def test_files_saved_by_0_1_0_load_with_their_predictions_and_settings():
    with open(os.path.join(FIXTURES, "expected.json")) as f:
        expected = json.load(f)
    stdout = run_python(f"""
import json, os
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
import numpy as np
import keras
import keras_afl

folder = {FIXTURES!r}
x = np.load(os.path.join(folder, "inputs.npy"))
out = {{}}
for name in {sorted(expected["predictions"])!r}:
    model = keras.saving.load_model(os.path.join(folder, name + ".keras"))
    loss = model.loss
    out[name] = {{
        "pred": model.predict(x, verbose=0).tolist(),
        "loss_class": type(loss).__name__,
        "loss_module": type(loss).__module__,
        "loss_config": loss.get_config() if hasattr(loss, "get_config") else loss,
    }}
print("RESULT" + json.dumps(out))
""")
    got = json.loads(stdout.split("RESULT", 1)[1])
    assert sorted(got) == sorted(expected["predictions"])
    for name, want in expected["predictions"].items():
        want = np.asarray(want, np.float32)
        np.testing.assert_allclose(np.asarray(got[name]["pred"], np.float32), want,
                                   rtol=FLOAT32_ROUNDING,
                                   atol=FLOAT32_ROUNDING * float(np.abs(want).max()), err_msg=name)
    # The model compiled with loss="focal" (a string) reloads with keras_afl's focal loss.
    focal = got["sequential_focal"]
    assert focal["loss_config"] == "focal" or focal["loss_module"].startswith("keras_afl"), focal
    for name, want in expected["loss_configs"].items():
        assert got[name]["loss_class"] == want["class"], name
        assert got[name]["loss_module"].startswith("keras_afl"), name
        config = got[name]["loss_config"]
        for key, value in want["config"].items():
            assert key in config, (name, key)
            assert config[key] == value, (name, key, config[key], value)
