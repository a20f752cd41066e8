"""The backend-neutral suite (tests/any_backend) on JAX and on PyTorch, one fresh pytest run per
backend. In this (TensorFlow) run the same files are collected directly."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_suite_passes_on_backend(backend):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed (pip install 'keras-afl[{backend}]')")
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2",
           "JAX_ENABLE_X64": "1"}
    env.pop("PYTEST_XDIST_WORKER", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
         "-W", "ignore::UserWarning", "tests/any_backend"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=900)
    assert proc.returncode == 0, f"{backend}:\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
    assert " passed" in proc.stdout.splitlines()[-1], proc.stdout[-2000:]


WITHOUT_TENSORFLOW = """
import sys

# As if TensorFlow were not installed: `import tensorflow` raises ModuleNotFoundError and
# importlib.util.find_spec("tensorflow") is None (Python's own convention for a None entry).
sys.modules["tensorflow"] = None
import numpy as np
import keras, keras_afl

x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
y = (x[:, :1] > 0).astype("float32")
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="afl_elu"),
                          keras_afl.layers.PReLU(), keras.layers.Dense(1, activation="afl_sigmoid")])
model.compile("adam", loss="focal", metrics=["afl_bce"])
stats = keras_afl.callbacks.ActivationStats(x)
model.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[stats])
assert stats.history and keras_afl.lint(model) is not None
model.save("model.keras")
again = keras.saving.load_model("model.keras")
for saved, loaded in zip(model.get_weights(), again.get_weights(), strict=True):
    np.testing.assert_array_equal(loaded, saved)  # copied from the file: exact
# Predictions to float32 rounding: a matrix product need not repeat its last bit.
np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0),
                           rtol=1e-6, atol=1e-6)
assert sys.modules["tensorflow"] is None
print("OK", keras.backend.backend())
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_works_without_tensorflow(backend, tmp_path):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": REPO}
    proc = subprocess.run([sys.executable, "-c", WITHOUT_TENSORFLOW], capture_output=True,
                          text=True, env=env, cwd=str(tmp_path), timeout=600)
    assert proc.returncode == 0 and f"OK {backend}" in proc.stdout, proc.stderr[-4000:]
