"""The backend-neutral formulas (`keras_afl._portable`) on JAX and PyTorch, through each
backend's own custom-derivative mechanism (`keras_afl._backend`), against keras_afl's TensorFlow
functions in this process and NumPy references: values, gradients and second derivatives
(Hessian-vector products) in float64, to 1e-10 relative.

Each backend runs in a fresh process (`tests/_portable_probe.py`); a backend that is not
installed is skipped (CI installs all three).
"""

import importlib.util
import json
import os

import numpy as np
import pytest
import tensorflow as tf

import keras_afl
from tests._checks import REPO, run_python
from tests._portable_probe import SOFTMAX_X, G, V, X, probe_tensorflow

PROBE = os.path.join(REPO, "tests", "_portable_probe.py")
A = keras_afl.activations


TF_FUNCTIONS = {
    "relu": A.relu,
    "leaky_relu": lambda x: A.leaky_relu(x, negative_slope=0.1),
    "sigmoid": A.sigmoid,
    "tanh": A.tanh,
    "elu": lambda x: A.elu(x, alpha=0.7),
    "elu_alpha0": lambda x: A.elu(x, alpha=0.0),
    "selu": A.selu,
}


LAMBDA, SELU_ALPHA = 1.0507009873554805, 1.6732632423543772


def numpy_value(name, x):
    """f(x) in float64, by hand (expm1, not exp - 1)."""
    neg = np.expm1(np.minimum(x, 0.0))
    return {
        "relu": np.maximum(x, 0.0),
        "leaky_relu": np.where(x > 0, x, 0.1 * x),
        "sigmoid": 1.0 / (1.0 + np.exp(-x)),
        "tanh": np.tanh(x),
        "elu": np.where(x > 0, x, 0.7 * neg),
        "elu_alpha0": np.where(x > 0, x, 0.0),
        "selu": np.where(x > 0, LAMBDA * x, LAMBDA * SELU_ALPHA * neg),
    }[name]


def numpy_derivative(name, x):
    """d f / dx in float64, by hand, in forms without cancellation (kinks: TensorFlow's rule)."""
    e = np.exp(-np.abs(x))
    neg = np.exp(np.minimum(x, 0.0))
    return {
        "relu": (x > 0) * 1.0,
        "leaky_relu": np.where(x > 0, 1.0, 0.1),
        "sigmoid": e / (1.0 + e) ** 2,
        "tanh": 4.0 * e**2 / (1.0 + e**2) ** 2,
        "elu": np.where(x >= 0, 1.0, 0.7 * neg),
        "elu_alpha0": np.where(x >= 0, 1.0, 0.0),
        "selu": np.where(x >= 0, LAMBDA, LAMBDA * SELU_ALPHA * neg),
    }[name]


# Points where TensorFlow's own kernels round and the exact value is the reference instead:
# its Elu/Selu kernels compute exp(x) - 1 (0 instead of alpha * x at x = -1e-30) and the
# derivative as y + alpha (3e-6 relative at x = -30; for selu, lambda instead of lambda * alpha
# where the output rounds to 0), and its
# SigmoidGrad/TanhGrad compute y (1 - y) and 1 - y^2 from the rounded output (1e-3 relative
# at x = 30 for sigmoid; 0 for tanh).
TF_ROUNDS = {
    "elu": {"value": [-1e-30], "grad": [-30.0]}, "selu": {"value": [-1e-30], "grad": [-30.0, -1e-30]},
    "sigmoid": {"grad": [30.0, -30.0]}, "tanh": {"grad": [30.0, -30.0]},
}


def except_at(name, what):
    keep = ~np.isin(X, TF_ROUNDS.get(name, {}).get(what, []))
    return keep


def tf_reference(f, x, g, v):
    """(value, gradient, Hessian-vector product) of `f` on TensorFlow, as the probe measures
    them on every backend (the probe's TensorFlow runner, applied to keras_afl's functions)."""
    y, dx, hvp, _ = probe_tensorflow(None)[0](f, x, g, v)
    return y.numpy(), dx.numpy(), hvp.numpy()


def close(got, want, what):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-10, atol=1e-300, err_msg=what)


def installed(name):
    return importlib.util.find_spec(name) is not None


@pytest.fixture(scope="module", params=["jax", "torch", "tensorflow"])
def probed(request):
    backend = request.param
    module = {"jax": "jax", "torch": "torch", "tensorflow": "tensorflow"}[backend]
    if not installed(module):
        pytest.skip(f"{backend} is not installed (pip install 'keras-afl[{backend}]')")
    stdout = run_python(f"import runpy; runpy.run_path({PROBE!r}, run_name='__main__')",
                        env={"KERAS_BACKEND": backend})
    result = json.loads(stdout.split("RESULT", 1)[1])
    assert result["backend"] == backend
    return result


@pytest.mark.parametrize("name", sorted(TF_FUNCTIONS))
def test_values_grads_and_hvp_equal_tensorflow_path_and_numpy_grad(probed, name):
    y, dx, hvp, jit_dx = probed[name]
    ty, tdx, thvp = tf_reference(TF_FUNCTIONS[name], X, G, V)
    y, dx, hvp, jit_dx = (np.asarray(a) for a in (y, dx, hvp, jit_dx))
    where = f"{probed['backend']} {name}"
    close(y, numpy_value(name, X), f"{where}: value vs NumPy")
    close(dx, G * numpy_derivative(name, X), f"{where}: gradient vs NumPy")
    value_ok, grad_ok = except_at(name, "value"), except_at(name, "grad")
    close(y[value_ok], ty[value_ok], f"{where}: value vs keras_afl on TensorFlow")
    close(dx[grad_ok], tdx[grad_ok], f"{where}: gradient vs keras_afl on TensorFlow")
    close(jit_dx, dx, f"{where}: compiled gradient")
    close(hvp[grad_ok], thvp[grad_ok], f"{where}: Hessian-vector product vs TensorFlow")


def test_softmax_values_grads_and_hvp_equal_tensorflow_path(probed):
    y, dx, hvp, _ = probed["softmax"]
    g, v = np.tile(G[:3], (3, 1)), np.tile(V[:3], (3, 1))
    ty, tdx, thvp = tf_reference(lambda x: A.softmax(x, axis=-1), SOFTMAX_X, g, v)
    close(y, ty, "softmax value")
    close(dx, tdx, "softmax gradient")
    close(hvp, thvp, "softmax Hessian-vector product")
    # The VJP by hand: s * (g - <g, s>).
    close(dx, ty * (g - np.sum(g * ty, axis=-1, keepdims=True)), "softmax gradient vs NumPy")


def test_prelu_grads_for_input_and_alpha(probed):
    y, dx, dalpha = probed["prelu"]
    alpha = np.array([0.25])
    with tf.GradientTape() as tape:
        x, a = tf.constant(X), tf.constant(alpha)
        tape.watch([x, a])
        ty = A.prelu(x, a)
    tdx, tda = tape.gradient(ty, [x, a], output_gradients=tf.constant(G))
    close(y, ty.numpy(), "prelu value")
    close(dx, tdx.numpy(), "prelu d/dx")
    close(dalpha, tda.numpy(), "prelu d/dalpha")
    close(dalpha, [np.sum(G * np.minimum(X, 0.0))], "prelu d/dalpha vs NumPy")
