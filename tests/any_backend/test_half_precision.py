"""Half precision (bfloat16, float16) at least as accurate as Keras's own activations, on the backend
this process runs (tests/test_any_backend.py runs this file on JAX and PyTorch too; issue 19: on
PyTorch `selu` in bfloat16 rounded its constants to bfloat16 first and missed the correctly rounded
value for most inputs, e.g. selu(-1.234375) gave -1.234375 instead of -1.25).

Over every finite bfloat16 value and every float16 value in [-20, 5], each activation's output is
compared with the float64 NumPy reference rounded once to the dtype (correctly rounded), and the
number of misses must be at most that of the Keras activation in the same run. Gradients: finite,
in the input's dtype, and no further from the float64 derivative than Keras's (or 2 ulp).
"""

from __future__ import annotations

import functools

import ml_dtypes
import numpy as np
import pytest

import keras
import keras_afl
from tests.any_backend._util import to_np

A = keras_afl.activations
K = keras.activations
HALF = {"bfloat16": ml_dtypes.bfloat16, "float16": np.float16}
LAM, ALP = 1.0507009873554804934193349852946, 1.6732632423543772848170429916717
PRELU_ALPHA = np.float32(0.1)  # a learned slope, stored in float32 (mixed precision)


@functools.lru_cache(maxsize=None)
def _grid(dtype):
    """Every finite bfloat16 value; every float16 value in [-20, 5] (NumPy, in the dtype)."""
    values = np.arange(2**16, dtype=np.uint32).astype(np.uint16).view(HALF[dtype])
    with np.errstate(invalid="ignore"):  # the NaN bit patterns
        wide = values.astype(np.float64)
    keep = np.isfinite(wide)
    if dtype == "float16":
        keep &= (wide >= -20) & (wide <= 5)
    return values[keep]


def _rows(v):
    """Softmax rows of 3: each grid value, 0 and a shuffled partner."""
    partner = v[np.random.default_rng(0).permutation(v.size)]
    return np.stack([v, np.zeros_like(v), partner], axis=-1)


def _elu(r, alpha=1.0, scale=1.0):
    return np.where(r > 0, scale * r, scale * alpha * np.expm1(np.minimum(r, 0.0)))


def _sigmoid(r):
    e = np.exp(-np.abs(r))
    return np.where(r >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _softmax(r):
    e = np.exp(r - r.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _prelu_layer(cls, dtype):
    # Mixed precision: alpha kept in float32, the layer computing in the half dtype.
    return cls(alpha_initializer=keras.initializers.Constant(float(PRELU_ALPHA)),
               dtype=f"mixed_{dtype}")


# name -> (ours(x, dtype), Keras's(x, dtype), float64 reference(r)); x a tensor in the half dtype.
CASES = {
    "relu": (lambda x, d: A.relu(x), lambda x, d: K.relu(x), lambda r: np.maximum(r, 0.0)),
    "leaky_relu(0.01)": (lambda x, d: A.leaky_relu(x, 0.01), lambda x, d: K.leaky_relu(x, 0.01),
                         lambda r: np.where(r > 0, r, 0.01 * r)),
    "leaky_relu(0.2)": (lambda x, d: A.leaky_relu(x, 0.2), lambda x, d: K.leaky_relu(x, 0.2),
                        lambda r: np.where(r > 0, r, 0.2 * r)),
    "sigmoid": (lambda x, d: A.sigmoid(x), lambda x, d: K.sigmoid(x), _sigmoid),
    "tanh": (lambda x, d: A.tanh(x), lambda x, d: K.tanh(x), np.tanh),
    "softmax": (lambda x, d: A.softmax(x), lambda x, d: K.softmax(x), _softmax),
    "elu": (lambda x, d: A.elu(x), lambda x, d: K.elu(x), _elu),
    "elu(0.5)": (lambda x, d: A.elu(x, 0.5), lambda x, d: K.elu(x, 0.5), lambda r: _elu(r, 0.5)),
    "selu": (lambda x, d: A.selu(x), lambda x, d: K.selu(x), lambda r: _elu(r, ALP, LAM)),
    # Keras has no prelu function: its PReLU layer is the comparison for ours, function and layer.
    "prelu": (lambda x, d: A.prelu(x, np.full((1,), PRELU_ALPHA)),
              lambda x, d: _prelu_layer(keras.layers.PReLU, d)(x),
              lambda r: np.where(r > 0, r, float(PRELU_ALPHA) * r)),
    "PReLU layer": (lambda x, d: _prelu_layer(keras_afl.layers.PReLU, d)(x),
                    lambda x, d: _prelu_layer(keras.layers.PReLU, d)(x),
                    lambda r: np.where(r > 0, r, float(PRELU_ALPHA) * r)),
}


def _inputs(name, dtype):
    v = _grid(dtype)
    if name == "softmax":
        return _rows(v)
    if "PReLU" in name or name == "prelu":
        return v.reshape(-1, 1)
    return v


def _misses(y, want, dtype):
    """How many entries of y differ from `want` (float64) rounded once to the dtype."""
    got = to_np(keras.ops.cast(y, "float32")).astype(np.float64)  # exact: half fits in float32
    with np.errstate(over="ignore"):  # beyond the dtype's range: rounds to +-inf, as it should
        rounded = want.astype(HALF[dtype]).astype(np.float64)  # NumPy/ml_dtypes: one rounding
    return int(np.sum(~((got == rounded) | (np.isnan(got) & np.isnan(rounded)))))


@functools.lru_cache(maxsize=None)
def mismatch_counts(name, dtype):
    """(ours, Keras's): how many outputs miss the correctly rounded value (also for the report)."""
    ours, theirs, reference = CASES[name]
    v = _inputs(name, dtype)
    x = keras.ops.cast(keras.ops.convert_to_tensor(v.astype(np.float32)), dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        want = reference(v.astype(np.float64))
    y = ours(x, dtype)
    assert keras.backend.standardize_dtype(y.dtype) == dtype, (name, y.dtype)
    return _misses(y, want, dtype), _misses(theirs(x, dtype), want, dtype)


@pytest.mark.parametrize("dtype", sorted(HALF))
@pytest.mark.parametrize("name", list(CASES))
def test_half_precision_is_correctly_rounded_at_least_as_often_as_keras(name, dtype):
    ours, keras_misses = mismatch_counts(name, dtype)
    total = _inputs(name, dtype).size
    assert ours <= keras_misses, (
        f"{name} in {dtype} on {keras.backend.backend()}: {ours} of {total} outputs miss the "
        f"correctly rounded value, Keras's {keras_misses}")


def test_selu_bfloat16_example_from_the_issue():
    # selu(-1.234375) = 1.0507 * 1.6733 * (exp(-1.234375) - 1) = -1.24646...; the bfloat16 values
    # either side are -1.2421875 and -1.25 (spacing 2**-7), and -1.25 is the nearer.
    x = keras.ops.cast(keras.ops.convert_to_tensor([-1.234375, 1.0]), "bfloat16")
    got = to_np(keras.ops.cast(A.selu(x), "float32"))
    assert got.tolist() == [-1.25, float(np.float32(ml_dtypes.bfloat16(LAM)))]


# name -> (ours, Keras's, float64 derivative): the elementwise activations.
DERIVATIVES = {
    "relu": (A.relu, K.relu, lambda r: (r > 0) * 1.0),
    "leaky_relu": (lambda x: A.leaky_relu(x, 0.01), lambda x: K.leaky_relu(x, 0.01),
                   lambda r: np.where(r > 0, 1.0, 0.01)),
    "sigmoid": (A.sigmoid, K.sigmoid, lambda r: _sigmoid(r) * _sigmoid(-r)),
    "tanh": (A.tanh, K.tanh, lambda r: 1.0 / np.cosh(r) ** 2),
    "elu(0.5)": (lambda x: A.elu(x, 0.5), lambda x: K.elu(x, 0.5),
                 lambda r: np.where(r >= 0, 1.0, 0.5 * np.exp(np.minimum(r, 0.0)))),
    "selu": (A.selu, K.selu, lambda r: LAM * np.where(r >= 0, 1.0, ALP * np.exp(np.minimum(r, 0.0)))),
}


def _grads(fn, v, dtype, upstream=None):
    """fn's value and gradient at v (NumPy, in the half dtype), with the backend's own autodiff;
    returns both as NumPy arrays and the gradient's dtype name."""
    backend = keras.backend.backend()
    x32 = v.astype(np.float32)
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.cast(tf.constant(x32), dtype)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fn(x)
            total = tf.reduce_sum(y if upstream is None else y * tf.cast(upstream, y.dtype))
        g = tape.gradient(total, x)
    elif backend == "jax":
        import jax
        import jax.numpy as jnp

        x = jnp.asarray(x32).astype(dtype)
        y, vjp = jax.vjp(fn, x)
        (g,) = vjp(jnp.ones_like(y) if upstream is None else jnp.asarray(upstream).astype(dtype))
    else:
        import torch

        x = torch.tensor(x32).to(getattr(torch, dtype)).requires_grad_()
        y = fn(x)
        up = torch.ones_like(y) if upstream is None else torch.tensor(upstream).to(y.dtype)
        (g,) = torch.autograd.grad(y, x, up)
    name = keras.backend.standardize_dtype(g.dtype)
    return to_np(keras.ops.cast(g, "float32")).astype(np.float64), name


@pytest.mark.parametrize("dtype", sorted(HALF))
@pytest.mark.parametrize("name", list(DERIVATIVES))
def test_half_precision_gradient_is_finite_and_as_close_as_keras(name, dtype):
    ours, theirs, derivative = DERIVATIVES[name]
    v = _grid(dtype)
    with np.errstate(over="ignore"):
        want = derivative(v.astype(np.float64))
    info = ml_dtypes.finfo(HALF[dtype])
    worst = {}
    for who, fn in (("ours", ours), ("keras", theirs)):
        g, g_dtype = _grads(fn, v, dtype)
        if who == "ours":
            assert g_dtype == dtype
            assert np.all(np.isfinite(g)), v[~np.isfinite(g)][:5]
        # Error in units of the dtype's epsilon, relative (absolute below the smallest normal).
        err = np.abs(g - want) / (np.abs(want) * float(info.eps) + float(info.smallest_normal))
        worst[who] = float(np.max(err))
    assert worst["ours"] <= max(worst["keras"], 2.0), worst


@pytest.mark.parametrize("dtype", sorted(HALF))
def test_half_precision_softmax_and_prelu_gradients_are_finite(dtype):
    rows = _rows(_grid(dtype))
    upstream = np.random.default_rng(1).normal(size=rows.shape).astype(np.float32)
    g, g_dtype = _grads(A.softmax, rows, dtype, upstream=upstream)
    assert g_dtype == dtype and np.all(np.isfinite(g))
    v = _grid(dtype)
    g, g_dtype = _grads(lambda x: A.prelu(x, keras.ops.cast(np.float32([0.1]), dtype)), v, dtype)
    assert g_dtype == dtype and np.all(np.isfinite(g))
