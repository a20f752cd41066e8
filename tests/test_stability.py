"""Stability sweep and property tests for the activations.

Grid: 0, +-1e-30, +-1, +-20, +-88, +-1e4, +-the dtype's largest finite value,
+-inf and NaN, in float16, bfloat16, float32 and float64.

Documented behaviour at the edges (README, "Edge cases"):
- finite input -> finite output and gradient wherever the mathematical value is
  finite in the dtype (selu(max) overflows to inf, as lambda * max does);
- NaN input -> NaN output;
- +-inf input -> the limit (relu(-inf) = 0, sigmoid(+-inf) = 1/0, tanh = +-1,
  elu(-inf) = -alpha, ...), with the limit of the derivative as gradient,
  except softmax, whose +inf entries give NaN (inf - inf), as tf.nn.softmax;
  -inf entries (masking) give probability 0 and gradient 0.
"""

import functools

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import keras_afl
from keras_afl import activations as A
from tests._checks import FLOAT_DTYPES, grads

LAM, ALF = 1.0507009873554805, 1.6732632423543772

ELEMENTWISE = {
    "relu": A.relu,
    "leaky_relu": functools.partial(A.leaky_relu, negative_slope=0.1),
    "prelu": lambda x: A.prelu(x, tf.constant([0.1], x.dtype)),
    "sigmoid": A.sigmoid,
    "tanh": A.tanh,
    "elu": A.elu,
    "elu_alpha": functools.partial(A.elu, alpha=0.5),
    "selu": A.selu,
}

# Limits at -inf and +inf: (value, derivative)
LIMITS = {
    "relu": ((0.0, 0.0), (np.inf, 1.0)),
    "leaky_relu": ((-np.inf, 0.1), (np.inf, 1.0)),
    "prelu": ((-np.inf, 0.1), (np.inf, 1.0)),
    "sigmoid": ((0.0, 0.0), (1.0, 0.0)),
    "tanh": ((-1.0, 0.0), (1.0, 0.0)),
    "elu": ((-1.0, 0.0), (np.inf, 1.0)),
    "elu_alpha": ((-0.5, 0.0), (np.inf, 1.0)),
    "selu": ((-LAM * ALF, 0.0), (np.inf, LAM)),
}


def finite_grid(dtype):
    big = float(tf.as_dtype(dtype).max)
    pts = [0.0, 1e-30, 1.0, 20.0, 88.0, 1e4, big]
    return np.array(sorted({s * p for p in pts for s in (1, -1)}))


def to64(t):
    return tf.cast(t, tf.float64).numpy()


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
class TestEdgeGrid:
    def test_finite_inputs_give_finite_grad(self, name, dtype):
        x = tf.cast(tf.constant(finite_grid(dtype)), dtype)
        y, (g,) = grads(ELEMENTWISE[name], x)
        y, g = to64(y), to64(g)
        xs = to64(x)
        # The value itself may overflow only where the exact result exceeds the dtype's range.
        with np.errstate(over="ignore"):
            exact = {"selu": LAM * xs}.get(name, xs)
        may_overflow = np.abs(exact) > float(tf.as_dtype(dtype).max)
        assert np.all(np.isfinite(y) | may_overflow), (xs, y)
        assert np.all(np.isfinite(g)), (xs, g)

    def test_infinities_give_documented_limits_grad(self, name, dtype):
        x = tf.cast(tf.constant([-np.inf, np.inf]), dtype)
        y, (g,) = grads(ELEMENTWISE[name], x)
        (v_lo, d_lo), (v_hi, d_hi) = LIMITS[name]
        rtol = 1e-2 if dtype in (tf.float16, tf.bfloat16) else 1e-6
        np.testing.assert_allclose(to64(y), [v_lo, v_hi], rtol=rtol)
        np.testing.assert_allclose(to64(g), [d_lo, d_hi], rtol=rtol)

    def test_nan_in_gives_nan_out(self, name, dtype):
        x = tf.cast(tf.constant([np.nan, 1.0]), dtype)
        y = to64(ELEMENTWISE[name](x))
        assert np.isnan(y[0]) and np.isfinite(y[1])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: d.name)
class TestSoftmaxEdges:
    def test_finite_extremes_grad(self, dtype):
        big = float(tf.as_dtype(dtype).max)
        x = tf.cast(tf.constant(np.array([[big, 0.0, -big], [1e4, -1e4, 0.0], [1e-30, 0.0, -1e-30]])), dtype)
        up = tf.cast(tf.constant([[1.0, -2.0, 0.5]] * 3), dtype)
        y, (g,) = grads(A.softmax, x, upstream=up)
        assert np.all(np.isfinite(to64(y))) and np.all(np.isfinite(to64(g)))
        np.testing.assert_allclose(to64(y)[0], [1, 0, 0])

    def test_minus_inf_masks_grad(self, dtype):
        x = tf.cast(tf.constant([[-np.inf, 0.0, 0.0]]), dtype)
        y, (g,) = grads(A.softmax, x, upstream=tf.cast(tf.constant([[3.0, 1.0, -1.0]]), dtype))
        np.testing.assert_allclose(to64(y), [[0.0, 0.5, 0.5]])
        # s * (g - <g, s>) with s = (0, .5, .5), g = (3, 1, -1): (0, .5, -.5)
        np.testing.assert_allclose(to64(g), [[0.0, 0.5, -0.5]])

    def test_plus_inf_gives_nan_as_tensorflow(self, dtype):
        x = tf.cast(tf.constant([[np.inf, 0.0]]), dtype)
        assert np.isnan(to64(A.softmax(x))[0, 0])
        assert np.isnan(to64(tf.nn.softmax(x))[0, 0])

    def test_nan_in_gives_nan_out_as_tensorflow(self, dtype):
        # The NaN entry is NaN; whether the rest of its row is NaN too depends on TensorFlow's
        # kernel (oneDNN's float32/bfloat16 softmax on AVX-512 CPUs keeps the other entries
        # finite, the Eigen kernel makes the row NaN): ours follows tf.nn.softmax in the same run.
        x = tf.cast(tf.constant([[np.nan, 0.0], [0.0, 1.0]]), dtype)
        ours, native = to64(A.softmax(x)), to64(tf.nn.softmax(x))
        assert np.isnan(ours[0, 0]) and np.all(np.isfinite(ours[1]))
        np.testing.assert_array_equal(np.isnan(ours), np.isnan(native))


# Property: analytic gradient == autodiff of the plain formula, random finite
# inputs away from the kink at 0. Tolerances per dtype (relative to the
# float64 autodiff at the same rounded input): the backward kernels run in the
# input dtype, so low-precision results differ by a few ulps of that dtype.
PLAIN = {
    "relu": lambda x: tf.maximum(x, tf.zeros_like(x)),
    "leaky_relu": lambda x: tf.where(x > 0, x, 0.1 * x),
    "prelu": lambda x: tf.where(x > 0, x, 0.1 * x),
    "sigmoid": lambda x: 1 / (1 + tf.exp(-x)),
    "tanh": lambda x: 1 - 2 / (tf.exp(2 * x) + 1),
    "elu": lambda x: tf.where(x > 0, x, tf.exp(tf.minimum(x, 0.0)) - 1),
    "elu_alpha": lambda x: tf.where(x > 0, x, 0.5 * (tf.exp(tf.minimum(x, 0.0)) - 1)),
    "selu": lambda x: LAM * tf.where(x > 0, x, ALF * (tf.exp(tf.minimum(x, 0.0)) - 1)),
    "softmax": lambda x: tf.exp(x - tf.reduce_max(x, -1, keepdims=True))
    / tf.reduce_sum(tf.exp(x - tf.reduce_max(x, -1, keepdims=True)), -1, keepdims=True),
}
FUNCS = {**ELEMENTWISE, "softmax": A.softmax}
PROPERTY_TOL = {tf.float16: 4e-3, tf.bfloat16: 3e-2, tf.float32: 1e-5, tf.float64: 1e-12}

away_from_kink = st.floats(-30, 30, allow_nan=False).filter(lambda v: abs(v) > 1e-2)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("name", sorted(FUNCS))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(x=hnp.arrays(np.float64, (3, 4), elements=away_from_kink),
       up=hnp.arrays(np.float64, (3, 4), elements=st.floats(-2, 2)))
def test_property_grad_equals_autodiff_of_plain_formula(name, dtype, x, up):
    xd = tf.cast(tf.constant(x), dtype)
    _, (g,) = grads(FUNCS[name], xd, upstream=tf.cast(up, dtype))
    _, (g_ref,) = grads(PLAIN[name], tf.cast(xd, tf.float64), upstream=tf.constant(up))
    tol = PROPERTY_TOL[dtype]
    scale = np.max(np.abs(up)) + 1e-3
    np.testing.assert_allclose(to64(g), g_ref.numpy(), rtol=tol, atol=tol * scale)


# The same property for every loss: random data drawn by hypothesis (the data
# makers of tests/test_losses.py, which keep away from the Huber/hinge kinks),
# analytic gradient in each dtype vs autodiff of the plain formula in float64
# at the rounded input. Losses compute float16/bfloat16 in float32 and round
# the gradient back, hence the same per-dtype tolerances.
from tests.test_losses import CASES as LOSS_CASES  # noqa: E402
from tests.test_losses import _tensors  # noqa: E402


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("name", sorted(LOSS_CASES))
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**20))
def test_property_loss_grad_equals_autodiff_of_plain_formula(name, dtype, seed):
    fn, make_data, _, plain = LOSS_CASES[name]
    y, x = make_data(seed)
    y_t, x_t = _tensors(y, x, dtype)
    _, (g,) = grads(lambda v: fn(y_t, v), x_t)
    _, (g_ref,) = grads(lambda v: plain(y_t, v), tf.cast(x_t, tf.float64))
    g, g_ref = to64(g), g_ref.numpy()
    tol = PROPERTY_TOL[dtype]
    np.testing.assert_allclose(g, g_ref, rtol=tol, atol=tol * (np.max(np.abs(g_ref)) + 1e-3))


# +-inf predictions in the losses: the exact limit, or NaN where TensorFlow's
# fused cross-entropy kernels meet 0 * inf -- never a different finite number.
# (README, "Edge cases".) Rows: z = -inf, +inf; columns of the table: label.
INF_LIMITS = {
    # name: (function, label, loss limit at z=-inf, at z=+inf)
    "afl_bce_y1": (lambda y, z: keras_afl.losses.binary_crossentropy(y, z, from_logits=True), 1.0, np.inf, 0.0),
    "afl_bce_y0": (lambda y, z: keras_afl.losses.binary_crossentropy(y, z, from_logits=True), 0.0, 0.0, np.inf),
    "focal_y1": (lambda y, z: keras_afl.losses.focal(y, z, from_logits=True, gamma=0.5), 1.0, np.inf, 0.0),
    "focal_y0": (lambda y, z: keras_afl.losses.focal(y, z, from_logits=True, gamma=0.5), 0.0, 0.0, np.inf),
    "afl_mse": (keras_afl.losses.mean_squared_error, 0.0, np.inf, np.inf),
    "afl_huber": (keras_afl.losses.huber, 0.0, np.inf, np.inf),
    "afl_hinge_y1": (keras_afl.losses.hinge, 1.0, np.inf, 0.0),
    "afl_hinge_y0": (keras_afl.losses.hinge, 0.0, 0.0, np.inf),
}


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("name", sorted(INF_LIMITS))
def test_infinite_predictions_give_the_limit_or_nan(name, dtype):
    fn, label, at_minus, at_plus = INF_LIMITS[name]
    z = tf.cast(tf.constant([[-np.inf], [np.inf]]), dtype)
    loss = to64(fn(tf.constant([[label], [label]]), z))
    for got, want in zip(loss, (at_minus, at_plus)):
        assert np.isnan(got) or got == want, (name, loss)
