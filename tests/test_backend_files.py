"""A .keras file saved on any of TensorFlow, JAX and PyTorch loads on the other two with every
setting and the same predictions (fresh processes, KERAS_BACKEND set in each).

Predictions are compared to float32 rounding (rtol 1e-6), not bit for bit: the backends' matrix
products sum in different orders (Eigen/oneDNN, XLA, ATen), so the last bit of a Dense layer's
output may differ between them -- as it does for a model without keras_afl. Every setting is
compared exactly.
"""

from __future__ import annotations

import importlib.util
import json
import os

import numpy as np
import pytest

from tests._checks import run_python

BACKENDS = [b for b in ("tensorflow", "jax", "torch")
            if b == "tensorflow" or importlib.util.find_spec(b) is not None]

SAVE = """
import json, sys
import numpy as np
import keras, keras_afl

L, F = keras_afl.layers, keras_afl.losses
keras.utils.set_random_seed(3)
model = keras.Sequential([
    keras.Input((5,)), keras.layers.Dense(6, activation="afl_relu"), L.LeakyReLU(0.2),
    L.PReLU(alpha_initializer=keras.initializers.Constant(0.3)), L.ELU(0.7), L.SELU(), L.Tanh(),
    L.ReLU(), L.Sigmoid(), keras.layers.Dense(4, activation="afl_tanh"),
    keras.layers.Dense(3), L.Softmax(),
])
loss = F.CategoricalFocalLoss(gamma=1.5, alpha=[0.2, 0.3, 0.5], label_smoothing=0.05)
model.compile(optimizer="adam", loss=loss, metrics=["afl_cce", "focal"])
x = np.random.default_rng(0).normal(size=(16, 5)).astype("float32")
y = np.eye(3, dtype="float32")[np.arange(16) % 3]
model.fit(x, y, epochs=1, batch_size=8, verbose=0)
model.save(sys.argv[1] + ".keras")
np.save(sys.argv[1] + ".npy", model.predict(x, verbose=0))
losses = [F.FocalLoss(gamma=0.5, alpha=0.4, from_logits=True, label_smoothing=0.1,
                      apply_class_balancing=False, axis=-1),
          F.BinaryCrossentropy(pos_weight=[1.0, 2.0], label_smoothing=0.2),
          F.SparseCategoricalFocalLoss(gamma=3.0, alpha=[0.1, 0.9], ignore_class=255),
          F.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1),
          F.CategoricalCrossentropy(label_smoothing=0.1, axis=1),
          F.Huber(delta=0.5), F.Hinge(label_format="signed"), F.MeanSquaredError(name="m")]
with open(sys.argv[1] + ".json", "w") as f:
    json.dump([keras.saving.serialize_keras_object(l) for l in losses], f)
print(json.dumps({"backend": keras.backend.backend()}))
"""

LOAD = """
import json, sys
import numpy as np
import keras, keras_afl

x = np.random.default_rng(0).normal(size=(16, 5)).astype("float32")
out = {}
for prefix in sys.argv[1:]:
    model = keras.saving.load_model(prefix + ".keras")
    with open(prefix + ".json") as f:
        saved = json.load(f)
    losses = [keras.saving.deserialize_keras_object(c) for c in saved]
    out[prefix] = {
        "predictions": model.predict(x, verbose=0).tolist(),
        "loss": model.loss.get_config(),
        "loss_class": type(model.loss).__module__,
        "layers": [l.get_config() for l in model.layers],
        # The settings and the registered name; "module" names the implementation, which is
        # the backend's own (keras_afl.losses.* or keras_afl._portable.losses.*).
        "configs_equal": [
            {k: v for k, v in keras.saving.serialize_keras_object(l).items() if k != "module"}
            == {k: v for k, v in c.items() if k != "module"} for l, c in zip(losses, saved)],
        "classes": [type(l).__name__ for l in losses],
    }
print("RESULT" + json.dumps(out))
"""


@pytest.mark.slow
def test_keras_files_move_between_backends(tmp_path):
    saved = {}
    for backend in BACKENDS:
        prefix = str(tmp_path / backend)
        run_python(SAVE.replace("sys.argv[1]", repr(prefix)), env={"KERAS_BACKEND": backend})
        saved[backend] = prefix
    if len(BACKENDS) < 2:
        pytest.skip("only one Keras backend is installed")
    args = list(saved.values())
    for backend in BACKENDS:
        code = LOAD.replace("sys.argv[1:]", repr(args))
        line = [l for l in run_python(code, env={"KERAS_BACKEND": backend}).splitlines()
                if l.startswith("RESULT")][0]
        result = json.loads(line[len("RESULT"):])
        for source, prefix in saved.items():
            got = result[prefix]
            want = np.load(prefix + ".npy")
            np.testing.assert_allclose(np.asarray(got["predictions"], np.float32), want, rtol=1e-6,
                                       atol=1e-7, err_msg=f"saved on {source}, loaded on {backend}")
            assert got["loss"]["gamma"] == 1.5 and got["loss"]["alpha"] == [0.2, 0.3, 0.5]
            assert got["loss"]["label_smoothing"] == 0.05
            assert all(got["configs_equal"]), (source, backend, got["classes"])
            expected_module = ("keras_afl.losses" if backend == "tensorflow"
                               else "keras_afl._portable.losses")
            assert got["loss_class"].startswith(expected_module), (source, backend, got["loss_class"])
        # every layer's settings are the same whichever backend saved the file
        first = result[args[0]]["layers"]
        for prefix in args[1:]:
            assert [_without_names(c) for c in result[prefix]["layers"]] == \
                [_without_names(c) for c in first]


def _without_names(config):
    return {k: v for k, v in config.items() if k != "name"}
