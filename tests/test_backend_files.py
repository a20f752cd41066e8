"""A .keras file saved on any of TensorFlow, JAX and PyTorch loads on all three (9 pairs, the same
backend included) with every setting, the optimizer's state and the same predictions, and
training goes on from there; `keras-afl lint FILE` reads it on each. Fresh processes, with
KERAS_BACKEND set in each; the loading process cannot import the other two backends, as on a
machine where only its backend is installed.

What loads how (Keras 3.15):
- `keras_afl.saving.load_model(path)`: every file, compiled, on every backend.
- `keras.saving.load_model(path)`: every file, except that a compiled model saved on PyTorch does
  not load on a machine without PyTorch: Keras stores its optimizer as the PyTorch subclass
  (module `keras.src.backend.torch.optimizers.torch_adam` for "adam"). With PyTorch installed it
  loads on JAX and TensorFlow with that PyTorch optimizer, and the first fit() fails.
- `keras.saving.load_model(path, compile=False)`, then `compile(...)`: every file, without the
  saved loss, metrics and optimizer state.

Predictions are compared to float32 rounding (rtol 1e-6), not bit for bit: the backends' matrix
products sum in different orders (Eigen/oneDNN, XLA, ATen), so the last bit of a Dense layer's
output may differ between them -- as it does for a model without keras_afl. Every setting, and
the optimizer's variables (copied from the file), are compared exactly.
"""

from __future__ import annotations

import importlib.util
import json
import zipfile

import numpy as np
import pytest

from tests._checks import run_python

BACKENDS = [b for b in ("tensorflow", "jax", "torch")
            if b == "tensorflow" or importlib.util.find_spec(b) is not None]

# Every optimizer that Keras saves as a backend's own class on one of them (PyTorch's nine).
OPTIMIZERS = ["adam", "sgd", "rmsprop", "adamw", "adadelta", "adagrad", "adamax", "nadam", "lion"]

SAVE = """
import json, sys
import numpy as np
import keras, keras_afl

prefix, optimizers = sys.argv[1], sys.argv[2:]
L, F = keras_afl.layers, keras_afl.losses
keras.utils.set_random_seed(3)
model = keras.Sequential([
    keras.Input((5,)), keras.layers.Dense(6, activation="afl_relu"), L.LeakyReLU(0.2),
    L.PReLU(alpha_initializer=keras.initializers.Constant(0.3)), L.ELU(0.7), L.SELU(), L.Tanh(),
    L.ReLU(), L.Sigmoid(), keras.layers.Dense(4, activation="afl_tanh"),
    keras.layers.Dense(3), L.Softmax(),
])
loss = F.CategoricalFocalLoss(gamma=1.5, alpha=[0.2, 0.3, 0.5], label_smoothing=0.05)
# jit_compile=False: JAX saves its "auto" as True, and PyTorch's fit then runs torch.compile
# (minutes for this model on 2 cores); the setting itself travels like every other.
model.compile(optimizer="adam", loss=loss, metrics=["afl_cce", "focal"], jit_compile=False)
x = np.random.default_rng(0).normal(size=(16, 5)).astype("float32")
y = np.eye(3, dtype="float32")[np.arange(16) % 3]
model.fit(x, y, epochs=1, batch_size=8, verbose=0)
model.save(prefix + ".keras")
np.save(prefix + ".npy", model.predict(x, verbose=0))
np.savez(prefix + "_state.npz", *[keras.ops.convert_to_numpy(v) for v in model.optimizer.variables])
# Where training goes from here: the loading side repeats this epoch and must get there too.
model.fit(x, y, epochs=1, batch_size=8, shuffle=False, verbose=0)
np.save(prefix + "_after.npy", model.predict(x, verbose=0))

settings = {"model": type(model.optimizer).__module__, "each": {}}
for name in optimizers:
    small = keras.Sequential([keras.Input((5,)), keras.layers.Dense(2, activation="afl_elu")])
    small.compile(optimizer=name, loss="afl_mse", jit_compile=False)  # the optimizer, not XLA
    small.fit(x, y[:, :2], epochs=1, batch_size=8, verbose=0)
    small.save(f"{prefix}_{name}.keras")
    settings["each"][name] = {"class": type(small.optimizer).__name__,
                              "config": small.optimizer.get_config()}
with open(prefix + "_optimizers.json", "w") as f:
    json.dump(settings, f)

losses = [F.FocalLoss(gamma=0.5, alpha=0.4, from_logits=True, label_smoothing=0.1,
                      apply_class_balancing=False, axis=-1),
          F.BinaryCrossentropy(pos_weight=[1.0, 2.0], label_smoothing=0.2),
          F.SparseCategoricalFocalLoss(gamma=3.0, alpha=[0.1, 0.9], ignore_class=255),
          F.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1),
          F.CategoricalCrossentropy(label_smoothing=0.1, axis=1),
          F.Huber(delta=0.5), F.Hinge(label_format="signed"), F.MeanSquaredError(name="m")]
with open(prefix + ".json", "w") as f:
    json.dump([keras.saving.serialize_keras_object(l) for l in losses], f)
"""

LOAD = """
import contextlib, io, json, os, sys

# Only this process's backend is installed, as far as imports can tell (importlib.util.find_spec
# included): the finders do not see the other two.
ABSENT = {"tensorflow", "jax", "torch"} - {os.environ["KERAS_BACKEND"]}

class _Without:
    def __init__(self, finder):
        self._finder = finder
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ABSENT:
            return None
        find = getattr(self._finder, "find_spec", None)
        return find(name, path, target) if find else None
    def __getattr__(self, attr):
        return getattr(self._finder, attr)

sys.meta_path[:] = [_Without(f) for f in sys.meta_path]

import numpy as np
import keras, keras_afl
from keras_afl.cli import main
from keras_afl.saving import load_model

prefixes = json.loads(sys.argv[1])
x = np.random.default_rng(0).normal(size=(16, 5)).astype("float32")
y = np.eye(3, dtype="float32")[np.arange(16) % 3]

def outcome(load):
    try:
        load()
        return "loaded"
    except Exception as e:
        return f"{type(e).__name__}: {e}"[:400]

out = {}
for prefix in prefixes:
    model = load_model(prefix + ".keras")
    with open(prefix + ".json") as f:
        saved = json.load(f)
    losses = [keras.saving.deserialize_keras_object(c) for c in saved]
    state = np.load(prefix + "_state.npz")
    restored = [keras.ops.convert_to_numpy(v) for v in model.optimizer.variables]
    got = {
        "predictions": model.predict(x, verbose=0).tolist(),
        "loss": model.loss.get_config(),
        "loss_class": type(model.loss).__module__,
        "layers": [l.get_config() for l in model.layers],
        # The settings, the registered name and the module: one implementation on every backend.
        "configs_equal": [keras.saving.serialize_keras_object(l) == c
                          for l, c in zip(losses, saved)],
        "classes": [type(l).__name__ for l in losses],
        "optimizer_module": type(model.optimizer).__module__,
        "state_equal": len(restored) == len(state.files) and all(
            np.array_equal(r, state[k]) for r, k in zip(restored, state.files)),
        "iterations": int(keras.ops.convert_to_numpy(model.optimizer.iterations)),
    }
    history = model.fit(x, y, epochs=1, batch_size=8, shuffle=False, verbose=0).history
    got["fit_loss"] = history["loss"][-1]
    got["after"] = model.predict(x, verbose=0).tolist()

    with open(prefix + "_optimizers.json") as f:
        settings = json.load(f)
    got["optimizers"] = {}
    for name, want in settings["each"].items():
        small = load_model(f"{prefix}_{name}.keras")
        small.fit(x, y[:, :2], epochs=1, batch_size=8, verbose=0)
        got["optimizers"][name] = {
            "class": type(small.optimizer).__name__,
            "config_equal": small.optimizer.get_config() == want["config"],
            "iterations": int(keras.ops.convert_to_numpy(small.optimizer.iterations)),
        }
    got["saved_optimizer_module"] = settings["model"]

    got["keras_load_model"] = outcome(lambda: keras.saving.load_model(prefix + ".keras"))
    bare = keras.saving.load_model(prefix + ".keras", compile=False)
    bare.compile(optimizer="adam", loss=model.loss)
    got["compile_false"] = {
        "predictions": bare.predict(x, verbose=0).tolist(),
        "fit_loss": bare.fit(x, y, epochs=1, batch_size=8, verbose=0).history["loss"][-1],
    }

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        rc = main(["lint", prefix + ".keras", "--json"])
    report = json.loads(stdout.getvalue()) if rc in (0, 1) else None
    got["lint"] = {"rc": rc, "stderr": stderr.getvalue()[-500:],
                   "rules": sorted(f["rule"] for f in report["findings"]) if report else None}
    out[prefix] = got
out["imported"] = sorted(name for name in ABSENT if name in sys.modules)
print("RESULT" + json.dumps(out))
"""


def _save_on_every_backend(folder):
    """{backend: file prefix}: the same model, losses and optimizers saved on each backend."""
    prefixes = {}
    for backend in BACKENDS:
        prefix = str(folder / backend)
        # Only PyTorch saves optimizers as its own classes: the others write keras.optimizers.*.
        optimizers = OPTIMIZERS if backend == "torch" else []
        run_python(SAVE.replace("sys.argv[1], sys.argv[2:]", repr((prefix, optimizers))),
                   env={"KERAS_BACKEND": backend})
        prefixes[backend] = prefix
    return prefixes


def _load_on_every_backend(saved):
    """{(saving backend, loading backend): what the file gave there}, for all 9 pairs."""
    results = {}
    for backend in BACKENDS:
        code = LOAD.replace("json.loads(sys.argv[1])", repr(list(saved.values())))
        line = [l for l in run_python(code, env={"KERAS_BACKEND": backend}).splitlines()
                if l.startswith("RESULT")][0]
        result = json.loads(line[len("RESULT"):])
        assert result.pop("imported") == [], backend  # the other backends stayed out
        results.update({(source, backend): result[prefix] for source, prefix in saved.items()})
    return results


# One test, not one per aspect: with pytest-xdist, tests of one module may run on two workers,
# and each would save and load everything again (minutes).
@pytest.mark.slow
def test_keras_files_move_between_backends(tmp_path):
    """All 9 pairs: settings and predictions; keras_afl.saving.load_model resumes training with
    the saved optimizer state, for every optimizer PyTorch saves as its own class; what plain
    keras.saving.load_model loads; `keras-afl lint FILE`."""
    if len(BACKENDS) < 2:
        pytest.skip("only one Keras backend is installed")
    saved = _save_on_every_backend(tmp_path)
    loaded = _load_on_every_backend(saved)
    _check_settings_and_predictions(saved, loaded)
    _check_training_resumes(saved, loaded)
    _check_every_torch_optimizer(loaded)
    _check_what_keras_load_model_loads(saved, loaded)
    _check_lint(loaded)


def _check_settings_and_predictions(saved, loaded):
    for (source, backend), got in loaded.items():
        where = f"saved on {source}, loaded on {backend}"
        np.testing.assert_allclose(np.asarray(got["predictions"], np.float32),
                                   np.load(saved[source] + ".npy"), rtol=1e-6, atol=1e-7,
                                   err_msg=where)
        assert got["loss"]["gamma"] == 1.5 and got["loss"]["alpha"] == [0.2, 0.3, 0.5], where
        assert got["loss"]["label_smoothing"] == 0.05, where
        assert all(got["configs_equal"]), (where, got["classes"])
        assert got["loss_class"].startswith("keras_afl.losses."), (where, got["loss_class"])
    # every layer's settings are the same whichever backend saved the file
    for backend in BACKENDS:
        first = loaded[BACKENDS[0], backend]["layers"]
        for source in BACKENDS[1:]:
            assert [_without_names(c) for c in loaded[source, backend]["layers"]] == \
                [_without_names(c) for c in first], (source, backend)


def _check_training_resumes(saved, loaded):
    """The optimizer is the loading backend's own, with the saved state (copied: exact), and one
    more epoch lands where the saving backend's own next epoch did (to float32 rounding)."""
    for (source, backend), got in loaded.items():
        where = f"saved on {source}, loaded on {backend}"
        assert got["optimizer_module"].startswith(
            "keras.src.backend.torch." if backend == "torch" else "keras.src.optimizers."), \
            (where, got["optimizer_module"])
        assert got["state_equal"] and got["iterations"] == 2, where
        assert np.isfinite(got["fit_loss"]), where
        np.testing.assert_allclose(np.asarray(got["after"], np.float32),
                                   np.load(saved[source] + "_after.npy"), rtol=1e-5, atol=1e-6,
                                   err_msg=where)


def _check_every_torch_optimizer(loaded):
    if "torch" not in BACKENDS:
        return
    for backend in BACKENDS:
        each = loaded["torch", backend]["optimizers"]
        assert sorted(each) == sorted(OPTIMIZERS), backend
        for name, got in each.items():
            where = f"{name}: saved on torch, loaded on {backend}"
            assert got["config_equal"], where
            assert got["class"].lower() == name and got["iterations"] == 4, (where, got)


def _check_what_keras_load_model_loads(saved, loaded):
    """docs/names-saving-serving.md's account: plain keras.saving.load_model fails on exactly the
    PyTorch-saved compiled files away from PyTorch; compile=False, then compile(), works
    everywhere."""
    for (source, backend), got in loaded.items():
        where = f"saved on {source}, loaded on {backend}"
        if source == "torch":
            assert got["saved_optimizer_module"] == \
                "keras.src.backend.torch.optimizers.torch_adam", where
        if source == "torch" and backend != "torch":
            assert got["keras_load_model"].startswith(
                "TypeError: Could not deserialize class 'Adam' because its parent module "
                "keras.src.backend.torch.optimizers.torch_adam cannot be imported"), \
                (f"{where}: Keras's own load_model changed ({got['keras_load_model']!r}); update "
                 "'Saving and loading' in docs/names-saving-serving.md and this test")
        else:
            assert got["keras_load_model"] == "loaded", (where, got["keras_load_model"])
        np.testing.assert_allclose(np.asarray(got["compile_false"]["predictions"], np.float32),
                                   np.load(saved[source] + ".npy"), rtol=1e-6, atol=1e-7,
                                   err_msg=where)
        assert np.isfinite(got["compile_false"]["fit_loss"]), where


def _check_lint(loaded):
    """`keras-afl lint FILE --json` reads the file on every backend, with the same findings."""
    reports = {pair: got["lint"] for pair, got in loaded.items()}
    for pair, report in reports.items():
        assert report["rc"] in (0, 1) and report["rules"] is not None, (pair, report)
    first = reports[BACKENDS[0], BACKENDS[0]]
    assert all((r["rc"], r["rules"]) == (first["rc"], first["rules"]) for r in reports.values()), \
        reports


def _as_saved_on_torch(path):
    """Rewrites the optimizer of a .keras file as PyTorch writes it (its own subclass, registered
    under the class name), so that this process's backend reads a PyTorch file."""
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(members["config.json"])
    optimizer = config["compile_config"]["optimizer"]
    optimizer.update(module="keras.src.backend.torch.optimizers.torch_adam", registered_name="Adam")
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def test_load_model_takes_the_public_optimizer_and_leaves_the_rest_to_keras(tmp_path):
    """keras_afl.saving.load_model in this process: a PyTorch-style optimizer entry becomes the
    public class, a user's custom_objects entry for the same name wins, and a path that is no
    .keras zip goes straight to Keras (its own error)."""
    import keras

    import keras_afl  # noqa: F401
    from keras_afl import saving

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="afl_elu")])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.02, beta_1=0.8), loss="focal")
    model.optimizer.build(model.trainable_variables)
    path = str(tmp_path / "m.keras")
    model.save(path)
    public = {"Adam": keras.optimizers.Adam}
    assert saving._public_optimizers(path) == (public if keras.backend.backend() == "torch" else {})
    _as_saved_on_torch(path)
    assert saving._public_optimizers(path) == public

    loaded = saving.load_model(path)
    assert isinstance(loaded.optimizer, keras.optimizers.Adam)
    assert loaded.optimizer.get_config() == model.optimizer.get_config()

    class MyAdam(keras.optimizers.Adam):
        pass

    assert type(saving.load_model(path, custom_objects={"Adam": MyAdam}).optimizer) is MyAdam
    missing = str(tmp_path / "none.keras")
    assert saving._public_optimizers(missing) == {}
    with pytest.raises(ValueError, match="none.keras"):
        saving.load_model(missing)


def _without_names(config):
    return {k: v for k, v in config.items() if k != "name"}
