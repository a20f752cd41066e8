"""Messages that point at the fix, on the backend this process runs (tests/test_any_backend.py runs
this file on JAX and PyTorch too): an unknown activation, loss or metric name gets the closest
registered names, a bad loss or metric name is rejected at `compile()` (Keras waits for the first
`fit()`), and `keras-afl check` names the device in the same words on every backend."""

from __future__ import annotations

import contextlib
import io
import re
import warnings

import numpy as np
import pytest

import keras
import keras_afl
from keras_afl.cli import _autodiff, main
from tests.any_backend._util import BACKEND

WORDS = {"tensorflow": "TensorFlow", "jax": "JAX", "torch": "PyTorch"}[BACKEND]


def _model():
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="afl_sigmoid")])


# --------------------------------------------------------------------------- unknown names

def test_an_unknown_activation_name_gets_the_closest_names():
    with pytest.raises(ValueError, match=r"Could not interpret activation function identifier: "
                                         r"afl_eluu\. Did you mean 'afl_elu' \(keras_afl\)") as e:
        keras.layers.Dense(2, activation="afl_eluu")
    assert "afl_relu, afl_leaky_relu" in str(e.value)  # and keras_afl's names of that kind
    with pytest.raises(ValueError, match=r"Did you mean 'sigmoid' \(Keras\)"):
        keras.activations.get("sigmoidd")  # Keras's own names are suggested too


def test_an_unknown_loss_name_gets_the_closest_names_from_keras_get():
    with pytest.raises(ValueError, match=r"Could not interpret loss identifier: focall\. Did you "
                                         r"mean 'focal' \(keras_afl\) or 'afl_focal' \(keras_afl, "
                                         r"alias of focal\)\?"):
        keras.losses.get("focall")
    with pytest.raises(ValueError, match=r"metric identifier: afl_bcee\. Did you mean 'afl_bce'"):
        keras.metrics.get("afl_bcee")
    assert keras.losses.get("focal").name == "focal"  # known names resolve as before
    assert keras.activations.get("afl_elu") is keras_afl.activations.elu


@pytest.mark.parametrize("arg, value, kind, closest", [
    ("loss", "focall", "loss", "focal"),
    ("loss", ["afl_bce", "afl_hnge"], "loss", "afl_hinge"),
    ("metrics", ["afl_bcee"], "metric", "afl_bce"),
    ("weighted_metrics", [["mse"], ["focl"]], "metric", "focal"),
])
def test_compile_rejects_an_unknown_name_with_the_closest_ones(arg, value, kind, closest):
    model = _model()
    bad = next(v for v in np.ravel(np.array(value, dtype=object)) if v not in keras_afl.names())
    bad = bad if bad != "mse" else "focl"
    kwargs = {"loss": "focal", arg: value}
    with pytest.raises(ValueError, match=rf"compile\({arg}=\.\.\.\): Keras has no {kind} named "
                                         rf"'{bad}' .*Did you mean '{closest}'"):
        model.compile("sgd", **kwargs)
    # nothing was compiled; a good call afterwards compiles and trains
    model.compile("sgd", loss="focal", metrics=["afl_bce"])
    x = np.ones((4, 3), "float32")
    history = model.fit(x, np.ones((4, 2), "float32"), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


def test_compile_keeps_the_names_keras_resolves_from_the_shapes():
    model = _model()
    model.compile("sgd", loss="CrossEntropy", metrics=["Accuracy", "acc", "mae", "AUC"])
    x = np.ones((4, 3), "float32")
    model.fit(x, np.ones((4, 2), "float32"), epochs=1, verbose=0)
    model.compile("sgd", loss=keras.losses.get("focal"), metrics=[keras.metrics.AUC()])
    model.fit(x, np.ones((4, 2), "float32"), epochs=1, verbose=0)


def test_a_saved_model_still_reloads_compiled(tmp_path):
    """The check wraps Keras's own `compile` (not an override on keras.Model): `load_model`
    compiles a model only where `type(model).compile` is Keras's, and warns otherwise."""
    model = _model()
    model.compile("sgd", loss="focal", metrics=["afl_bce"])
    model.fit(np.ones((4, 3), "float32"), np.ones((4, 2), "float32"), epochs=1, verbose=0)
    path = str(tmp_path / "m.keras")
    model.save(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = keras.saving.load_model(path)
    assert again.compiled and again.loss == "focal"
    assert not [w for w in caught if "compile()` was not called" in str(w.message)]


def test_use_as_builtins_still_resolves_at_compile_and_restores_the_check():
    model = _model()
    with keras_afl.use_as_builtins("loss"):
        model.compile("sgd", loss="mse")
        with pytest.raises(ValueError, match="Did you mean 'mse' \\(Keras\\)"):
            model.compile("sgd", loss="msee")
    assert model.loss == "afl_mse"
    with pytest.raises(ValueError, match="compile\\(loss=\\.\\.\\.\\)"):
        model.compile("sgd", loss="msee")


# --------------------------------------------------------------------------- keras-afl check

def test_device_is_named_in_the_same_words_on_every_backend():
    words = _autodiff.device()
    assert re.fullmatch(rf"(CPU|[A-Z]+:0( .+)?) \({WORDS}; (no GPU|\d+ [A-Z]+s?) visible\)",
                        words), words
    assert "cpu cpu" not in words.lower()
    assert _autodiff._device_words("GPU", "NVIDIA H100", 2, "JAX") == \
        "GPU:0 NVIDIA H100 (JAX; 2 GPUs visible)"
    assert _autodiff._device_words("GPU", "", 0, "PyTorch") == "CPU (PyTorch; no GPU visible)"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["check", "afl_relu", "--dtype", "float32"]) == 0
    assert out.getvalue().splitlines()[0].endswith(f" on {words}"), out.getvalue()[:300]
