"""keras_afl.losses: values, analytic gradients, Keras semantics, names, reload, errors."""

import functools
import inspect
import itertools
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_afl
from keras_afl import losses as L
from tests._checks import (
    FLOAT_DTYPES, custom_gradient_ops, grads, hvp, numeric_jacobian_error, run_python, tolerance,
)

EPS = 1e-7  # keras.config.epsilon()


# ---------------------------------------------------------------------------
# Independent NumPy references (float64).


def np_softplus(x):
    return np.logaddexp(0.0, x)


def np_sigmoid(x):
    return np.exp(-np_softplus(-x))


def np_log_softmax(z, axis=-1):
    m = np.max(z, axis=axis, keepdims=True)
    return z - m - np.log(np.sum(np.exp(z - m), axis=axis, keepdims=True))


def np_smooth_binary(y, ls):
    return y * (1 - ls) + 0.5 * ls


def np_bce(y, x, from_logits=False, ls=0.0, w=1.0):
    """PyTorch's BCEWithLogits definition: -[w y log p + (1 - y) log(1 - p)]."""
    y = np_smooth_binary(y, ls)
    if from_logits:
        log_p, log_q = -np_softplus(-x), -np_softplus(x)
    else:
        c = np.clip(x, EPS, 1 - EPS)
        log_p, log_q = np.log(c), np.log(1 - c)
    return np.mean(-(w * y * log_p + (1 - y) * log_q), axis=-1)


def np_focal(y, x, gamma=2.0, alpha=0.25, from_logits=False, ls=0.0):
    y = np_smooth_binary(y, ls)
    if from_logits:
        p = np_sigmoid(x)
        ce = y * np_softplus(-x) + (1 - y) * np_softplus(x)
    else:
        p = np.clip(x, EPS, 1 - EPS)
        ce = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    p_t = y * p + (1 - y) * (1 - p)
    a_t = 1.0 if alpha is None else alpha * y + (1 - alpha) * (1 - y)
    return np.mean(a_t * (1 - p_t) ** gamma * ce, axis=-1)


def np_categorical(y, x, gamma=0.0, alpha=None, from_logits=False, ls=0.0, axis=-1):
    k = x.shape[axis]
    y = y * (1 - ls) + ls / k
    if from_logits:
        log_p = np_log_softmax(x, axis)
    else:
        log_p = np.log(np.clip(x / np.sum(x, axis=axis, keepdims=True), EPS, 1 - EPS))
    p = np.exp(log_p)
    a = 1.0 if alpha is None else np.reshape(alpha, [-1] + [1] * (x.ndim - 1 - (axis % x.ndim)))
    return -np.sum(a * y * (1 - p) ** gamma * log_p, axis=axis)


def np_sparse(t, x, gamma=0.0, alpha=None, from_logits=False, ignore_class=None):
    valid = np.ones(t.shape, bool) if ignore_class is None else t != ignore_class
    onehot = np.eye(x.shape[-1])[np.where(valid, t, 0)]
    loss = np_categorical(onehot, x, gamma, alpha, from_logits)
    return np.where(valid, loss, 0.0)


def np_huber(y, x, delta=1.0):
    e = np.abs(x - y)
    return np.mean(np.where(e <= delta, 0.5 * e**2, delta * e - 0.5 * delta**2), axis=-1)


def np_hinge(y, x, signed=False):
    t = y if signed else 2 * y - 1
    return np.mean(np.maximum(0.0, 1 - t * x), axis=-1)


# ---------------------------------------------------------------------------
# Plain TF formulas, differentiated by autodiff (the second, independent gradient).


def tf_bce(y, x, from_logits=False, ls=0.0, w=1.0):
    y = y * (1 - ls) + 0.5 * ls
    if from_logits:
        elem = w * y * tf.math.softplus(-x) + (1 - y) * tf.math.softplus(x)
    else:
        c = tf.clip_by_value(x, EPS, 1 - EPS)
        elem = -(w * y * tf.math.log(c) + (1 - y) * tf.math.log(1 - c))
    return tf.reduce_mean(elem, -1)


def tf_focal(y, x, gamma=2.0, alpha=0.25, from_logits=False, ls=0.0):
    y = y * (1 - ls) + 0.5 * ls
    if from_logits:
        p = tf.sigmoid(x)
        ce = y * tf.math.softplus(-x) + (1 - y) * tf.math.softplus(x)
    else:
        p = tf.clip_by_value(x, EPS, 1 - EPS)
        ce = -(y * tf.math.log(p) + (1 - y) * tf.math.log(1 - p))
    a_t = 1.0 if alpha is None else alpha * y + (1 - alpha) * (1 - y)
    return tf.reduce_mean(a_t * tf.pow(y * (1 - p) + (1 - y) * p, gamma) * ce, -1)


def tf_categorical(y, x, gamma=0.0, alpha=None, from_logits=False, ls=0.0, axis=-1):
    y = y * (1 - ls) + ls / x.shape[axis]
    if from_logits:
        log_p = tf.nn.log_softmax(x, axis=axis)
    else:
        log_p = tf.math.log(tf.clip_by_value(x / tf.reduce_sum(x, axis, keepdims=True), EPS, 1 - EPS))
    a = 1.0 if alpha is None else tf.constant(alpha, x.dtype)
    return -tf.reduce_sum(a * y * tf.pow(1 - tf.exp(log_p), gamma) * log_p, axis)


def tf_sparse(t, x, gamma=0.0, alpha=None, from_logits=False, ignore_class=None):
    valid = tf.ones(t.shape, tf.bool) if ignore_class is None else tf.not_equal(t, ignore_class)
    onehot = tf.one_hot(tf.where(valid, t, 0), x.shape[-1], dtype=x.dtype)
    return tf.where(valid, tf_categorical(onehot, x, gamma, alpha, from_logits), tf.zeros([], x.dtype))


def tf_huber(y, x, delta=1.0):
    e = tf.abs(x - y)
    return tf.reduce_mean(tf.where(e <= delta, 0.5 * e**2, delta * e - 0.5 * delta**2), -1)


def tf_hinge(y, x, signed=False):
    t = y if signed else 2 * y - 1
    return tf.reduce_mean(tf.maximum(1 - t * x, 0.0), -1)


# ---------------------------------------------------------------------------
# Data, away from kinks and clip boundaries.

SHAPE = (4, 5)


def _rng(seed):
    return np.random.default_rng(seed)


def data_regression(seed, delta=None):
    r = _rng(seed)
    y = r.normal(size=SHAPE)
    e = r.uniform(0.1, 3.0, size=SHAPE) * r.choice([-1, 1], size=SHAPE)
    if delta is not None:  # keep |e| away from delta
        e = np.where(np.abs(np.abs(e) - delta) < 0.1, e * 1.5, e)
    return y, y + e


def data_hinge(seed, signed=False):
    r = _rng(seed)
    y = r.integers(0, 2, size=SHAPE).astype(float)
    x = r.uniform(-3, 3, size=SHAPE)
    t = 2 * y - 1
    x = np.where(np.abs(t * x - 1) < 0.1, x + 0.5 * t, x)  # away from the hinge point
    return (t if signed else y), x


def data_binary(seed, probs=False):
    r = _rng(seed)
    y = r.integers(0, 2, size=SHAPE).astype(float)
    x = r.uniform(0.05, 0.95, size=SHAPE) if probs else r.uniform(-4, 4, size=SHAPE)
    return y, x


def data_categorical(seed, probs=False, shape=SHAPE, axis=-1):
    r = _rng(seed)
    k = shape[axis]
    cls = r.integers(0, k, size=np.delete(np.array(shape), axis % len(shape)))
    y = np.moveaxis(np.eye(k)[cls], -1, axis)
    x = r.uniform(0.05, 1.0, size=shape) if probs else r.normal(scale=2.0, size=shape)
    return y, x


def data_sparse(seed, probs=False, ignore=None):
    r = _rng(seed)
    t = r.integers(0, SHAPE[-1], size=SHAPE[:-1])
    if ignore is not None:
        t[1] = ignore
    x = r.uniform(0.05, 1.0, size=SHAPE) if probs else r.normal(scale=2.0, size=SHAPE)
    return t, x


P = functools.partial
ALPHA5 = [0.1, 0.3, 0.5, 0.7, 0.9]
POSW5 = [0.5, 1.0, 2.0, 3.0, 0.0]

# name -> (keras_afl function(y_true, y_pred), data(seed), NumPy reference, plain TF formula)
CASES = {
    "mse": (L.mean_squared_error, data_regression,
            lambda y, x: np.mean((x - y) ** 2, -1), lambda y, x: tf.reduce_mean(tf.square(x - y), -1)),
    "huber": (P(L.huber, delta=0.7), P(data_regression, delta=0.7), P(np_huber, delta=0.7),
              P(tf_huber, delta=0.7)),
    "hinge_binary": (L.hinge, data_hinge, np_hinge, tf_hinge),
    "hinge_signed": (P(L.hinge, label_format="signed"), P(data_hinge, signed=True),
                     P(np_hinge, signed=True), P(tf_hinge, signed=True)),
    "bce_logits": (P(L.binary_crossentropy, from_logits=True), data_binary,
                   P(np_bce, from_logits=True), P(tf_bce, from_logits=True)),
    "bce_logits_smooth_posweight": (
        P(L.binary_crossentropy, from_logits=True, label_smoothing=0.1, pos_weight=POSW5), data_binary,
        P(np_bce, from_logits=True, ls=0.1, w=np.array(POSW5)),
        P(tf_bce, from_logits=True, ls=0.1, w=tf.constant(POSW5, tf.float64))),
    "bce_probs": (L.binary_crossentropy, P(data_binary, probs=True), np_bce, tf_bce),
    "bce_probs_posweight": (P(L.binary_crossentropy, pos_weight=2.5), P(data_binary, probs=True),
                            P(np_bce, w=2.5), P(tf_bce, w=2.5)),
    "focal_logits": (P(L.focal, from_logits=True), data_binary,
                     P(np_focal, from_logits=True), P(tf_focal, from_logits=True)),
    "focal_logits_g05_smooth": (
        P(L.focal, gamma=0.5, alpha=None, from_logits=True, label_smoothing=0.2), data_binary,
        P(np_focal, gamma=0.5, alpha=None, from_logits=True, ls=0.2),
        P(tf_focal, gamma=0.5, alpha=None, from_logits=True, ls=0.2)),
    "focal_logits_g5": (P(L.focal, gamma=5.0, alpha=0.6, from_logits=True), data_binary,
                        P(np_focal, gamma=5.0, alpha=0.6, from_logits=True),
                        P(tf_focal, gamma=5.0, alpha=0.6, from_logits=True)),
    "focal_probs": (L.focal, P(data_binary, probs=True), np_focal, tf_focal),
    "focal_probs_g05_smooth": (
        P(L.focal, gamma=0.5, alpha=0.4, label_smoothing=0.1), P(data_binary, probs=True),
        P(np_focal, gamma=0.5, alpha=0.4, ls=0.1), P(tf_focal, gamma=0.5, alpha=0.4, ls=0.1)),
    "cce_logits": (P(L.categorical_crossentropy, from_logits=True), data_categorical,
                   P(np_categorical, from_logits=True), P(tf_categorical, from_logits=True)),
    "cce_logits_smooth": (P(L.categorical_crossentropy, from_logits=True, label_smoothing=0.1),
                          data_categorical, P(np_categorical, from_logits=True, ls=0.1),
                          P(tf_categorical, from_logits=True, ls=0.1)),
    "cce_logits_soft_unnormalised_labels": (
        P(L.categorical_crossentropy, from_logits=True),
        lambda s: (_rng(s).uniform(0, 1, size=SHAPE), _rng(s + 1).normal(size=SHAPE)),
        P(np_categorical, from_logits=True), P(tf_categorical, from_logits=True)),
    "cce_logits_axis1": (
        P(L.categorical_crossentropy, from_logits=True, axis=1),
        P(data_categorical, shape=(2, 3, 4), axis=1),
        P(np_categorical, from_logits=True, axis=1), P(tf_categorical, from_logits=True, axis=1)),
    "cce_probs": (L.categorical_crossentropy, P(data_categorical, probs=True), np_categorical,
                  tf_categorical),
    "cfocal_logits": (
        P(L.categorical_focal, alpha=ALPHA5, from_logits=True), data_categorical,
        P(np_categorical, gamma=2.0, alpha=ALPHA5, from_logits=True),
        P(tf_categorical, gamma=2.0, alpha=ALPHA5, from_logits=True)),
    "cfocal_logits_g05_smooth": (
        P(L.categorical_focal, gamma=0.5, from_logits=True, label_smoothing=0.1), data_categorical,
        P(np_categorical, gamma=0.5, from_logits=True, ls=0.1),
        P(tf_categorical, gamma=0.5, from_logits=True, ls=0.1)),
    "cfocal_probs": (
        P(L.categorical_focal, gamma=1.5, alpha=0.3), P(data_categorical, probs=True),
        P(np_categorical, gamma=1.5, alpha=0.3), P(tf_categorical, gamma=1.5, alpha=0.3)),
    "scce_logits": (P(L.sparse_categorical_crossentropy, from_logits=True), data_sparse,
                    P(np_sparse, from_logits=True), P(tf_sparse, from_logits=True)),
    "scce_logits_ignore": (
        P(L.sparse_categorical_crossentropy, from_logits=True, ignore_class=-1), P(data_sparse, ignore=-1),
        P(np_sparse, from_logits=True, ignore_class=-1), P(tf_sparse, from_logits=True, ignore_class=-1)),
    "scce_probs": (L.sparse_categorical_crossentropy, P(data_sparse, probs=True), np_sparse, tf_sparse),
    "sfocal_logits": (
        P(L.sparse_categorical_focal, alpha=ALPHA5, from_logits=True), data_sparse,
        P(np_sparse, gamma=2.0, alpha=ALPHA5, from_logits=True),
        P(tf_sparse, gamma=2.0, alpha=ALPHA5, from_logits=True)),
    "sfocal_logits_g05": (
        P(L.sparse_categorical_focal, gamma=0.5, from_logits=True), data_sparse,
        P(np_sparse, gamma=0.5, from_logits=True), P(tf_sparse, gamma=0.5, from_logits=True)),
    "sfocal_probs_ignore": (
        P(L.sparse_categorical_focal, gamma=1.5, alpha=0.3, ignore_class=2),
        P(data_sparse, probs=True, ignore=2),
        P(np_sparse, gamma=1.5, alpha=0.3, ignore_class=2),
        P(tf_sparse, gamma=1.5, alpha=0.3, ignore_class=2)),
}
NAMES = sorted(CASES)


def _tensors(y, x, dtype=tf.float64):
    y = tf.constant(y) if np.issubdtype(np.asarray(y).dtype, np.integer) else tf.constant(y, tf.float64)
    return y, tf.cast(tf.constant(x, tf.float64), dtype)


@pytest.mark.parametrize("name", NAMES)
class TestEveryLoss:
    def test_values_match_numpy(self, name):
        fn, data, ref, _ = CASES[name]
        y, x = data(0)
        got = fn(*_tensors(y, x)).numpy()
        np.testing.assert_allclose(got, ref(y, x), rtol=1e-12, atol=1e-12)

    def test_grad_matches_central_differences(self, name):
        fn, data, _, _ = CASES[name]
        y, x = data(1)
        y_t, _ = _tensors(y, x)
        assert numeric_jacobian_error(lambda v: fn(y_t, v), x) < 1e-7

    def test_grad_matches_autodiff_of_plain_formula(self, name):
        fn, data, _, plain = CASES[name]
        y, x = data(2)
        y_t, x_t = _tensors(y, x)
        up = tf.constant(_rng(3).normal(size=fn(y_t, x_t).shape))
        _, (g,) = grads(lambda v: fn(y_t, v), x_t, upstream=up)
        _, (g_ref,) = grads(lambda v: plain(y_t, v), x_t, upstream=up)
        np.testing.assert_allclose(g.numpy(), g_ref.numpy(), rtol=1e-9, atol=1e-12)

    def test_second_derivative_grad_matches_autodiff(self, name):
        fn, data, _, plain = CASES[name]
        y, x = data(4)
        y_t, x_t = _tensors(y, x)
        w = tf.constant(_rng(5).normal(size=fn(y_t, x_t).shape))
        v = tf.constant(_rng(6).normal(size=x_t.shape))
        h = hvp(lambda t: fn(y_t, t) * w, x_t, v)
        h_ref = hvp(lambda t: plain(y_t, t) * w, x_t, v)
        np.testing.assert_allclose(h.numpy(), h_ref.numpy(), rtol=1e-8, atol=1e-10)

    def test_graph_holds_the_custom_gradient(self, name):
        fn, data, _, _ = CASES[name]
        y, x = data(7)
        y_t, _ = _tensors(y, x)
        ops = custom_gradient_ops(lambda v: fn(y_t, v), tf.TensorSpec(np.shape(x), tf.float32))
        assert len(ops) == 1, [op.type for op in ops]

    def test_eager_function_and_xla_agree_grad(self, name):
        fn, data, _, _ = CASES[name]
        y, x = data(8)
        y_t, x_t = _tensors(y, x, tf.float32)
        if y_t.dtype == tf.float64:
            y_t = tf.cast(y_t, tf.float32)

        def value_and_grad(v):
            loss, (g,) = grads(lambda t: fn(y_t, t), v)
            return loss, g

        y0, g0 = value_and_grad(x_t)
        for compiled in (tf.function(value_and_grad), tf.function(value_and_grad, jit_compile=True)):
            y1, g1 = compiled(x_t)
            np.testing.assert_allclose(y1.numpy(), y0.numpy(), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(g1.numpy(), g0.numpy(), rtol=1e-5, atol=1e-6)

    @pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: d.name)
    def test_dtype_preserved_and_values_close_grad(self, name, dtype):
        fn, data, ref, plain = CASES[name]
        y, x = data(9)
        y_t, x_t = _tensors(y, x, dtype)
        loss, (g,) = grads(lambda t: fn(y_t, t), x_t)
        assert loss.dtype == dtype and g.dtype == dtype
        xr = tf.cast(x_t, tf.float64)  # the reference at the rounded input
        _, (g_ref,) = grads(lambda t: plain(y_t, t), xr)
        rtol, atol = tolerance(dtype)
        np.testing.assert_allclose(tf.cast(loss, tf.float64).numpy(), ref(y, xr.numpy()),
                                   rtol=rtol * 2, atol=atol * 4)
        np.testing.assert_allclose(tf.cast(g, tf.float64).numpy(), g_ref.numpy(),
                                   rtol=rtol * 2, atol=atol * 4)


def test_second_derivatives_in_graph_mode_grad():
    """Hessian-vector products of every case inside one tf.function (one trace, to save time)."""
    inputs = {}
    for name in NAMES:
        fn, data, _, plain = CASES[name]
        y, x = data(14)
        y_t, x_t = _tensors(y, x)
        inputs[name] = (y_t, x_t, tf.constant(_rng(15).normal(size=x_t.shape)))

    @tf.function
    def all_hvps():
        return {name: hvp(lambda u, fn=CASES[name][0], y_t=y_t: fn(y_t, u), x_t, v)
                for name, (y_t, x_t, v) in inputs.items()}

    got = all_hvps()
    for name, (y_t, x_t, v) in inputs.items():
        want = hvp(lambda u: CASES[name][3](y_t, u), x_t, v)
        np.testing.assert_allclose(got[name].numpy(), want.numpy(), rtol=1e-8, atol=1e-10, err_msg=name)


# ---------------------------------------------------------------------------
# Reduces to known cases; constants by hand.


class TestKnownCases:
    @pytest.mark.parametrize("from_logits", [True, False])
    def test_focal_with_gamma_0_alpha_none_is_bce_grad(self, from_logits):
        y, x = data_binary(10, probs=not from_logits)
        y_t, x_t = _tensors(y, x)
        fl, (gf,) = grads(lambda t: L.focal(y_t, t, gamma=0.0, alpha=None, from_logits=from_logits), x_t)
        bce, (gb,) = grads(lambda t: L.binary_crossentropy(y_t, t, from_logits=from_logits), x_t)
        np.testing.assert_allclose(fl.numpy(), bce.numpy(), rtol=1e-12)
        np.testing.assert_allclose(gf.numpy(), gb.numpy(), rtol=1e-12, atol=1e-15)

    @pytest.mark.parametrize("from_logits", [True, False])
    def test_categorical_focal_with_gamma_0_is_cce_grad(self, from_logits):
        y, x = data_categorical(11, probs=not from_logits)
        y_t, x_t = _tensors(y, x)
        fl, (gf,) = grads(lambda t: L.categorical_focal(y_t, t, gamma=0.0, from_logits=from_logits), x_t)
        ce, (gc,) = grads(lambda t: L.categorical_crossentropy(y_t, t, from_logits=from_logits), x_t)
        np.testing.assert_allclose(fl.numpy(), ce.numpy(), rtol=1e-12)
        np.testing.assert_allclose(gf.numpy(), gc.numpy(), rtol=1e-10, atol=1e-14)

    @pytest.mark.parametrize("from_logits", [True, False])
    def test_sparse_equals_dense_with_one_hot_labels_grad(self, from_logits):
        t, x = data_sparse(12, probs=not from_logits)
        x_t = tf.constant(x)
        onehot = tf.one_hot(t, SHAPE[-1], dtype=tf.float64)
        for sparse, dense in [
            (P(L.sparse_categorical_crossentropy, t), P(L.categorical_crossentropy, onehot)),
            (P(L.sparse_categorical_focal, t, gamma=0.7, alpha=ALPHA5),
             P(L.categorical_focal, onehot, gamma=0.7, alpha=ALPHA5)),
        ]:
            ls, (gs,) = grads(lambda v: sparse(v, from_logits=from_logits), x_t)
            ld, (gd,) = grads(lambda v: dense(v, from_logits=from_logits), x_t)
            np.testing.assert_allclose(ls.numpy(), ld.numpy(), rtol=1e-12)
            np.testing.assert_allclose(gs.numpy(), gd.numpy(), rtol=1e-10, atol=1e-14)

    def test_hand_computed_constants(self):
        # BCE(label 1, logit 0) = log 2; focal (gamma 2, no alpha) = 0.5**2 log 2.
        assert float(L.binary_crossentropy([[1.0]], [[0.0]], from_logits=True)[0]) == pytest.approx(np.log(2))
        focal = float(L.focal([[1.0]], [[0.0]], alpha=None, from_logits=True)[0])
        assert focal == pytest.approx(0.25 * np.log(2))
        # alpha = 0.25 weights the positive: 0.25 * 0.25 * log 2; the negative gets 0.75.
        assert float(L.focal([[1.0]], [[0.0]], from_logits=True)[0]) == pytest.approx(0.0625 * np.log(2))
        assert float(L.focal([[0.0]], [[0.0]], from_logits=True)[0]) == pytest.approx(0.1875 * np.log(2))
        # pos_weight 3: -3 * log sigmoid(0) = 3 log 2 for a positive, log 2 for a negative.
        got = L.binary_crossentropy([[1.0, 0.0]], [[0.0, 0.0]], from_logits=True, pos_weight=3.0)
        assert float(got[0]) == pytest.approx(2 * np.log(2))
        # Huber(delta 1) of error 3: 1 * (3 - 0.5) = 2.5; hinge of score 0: 1.
        assert float(L.huber([[0.0]], [[3.0]])[0]) == pytest.approx(2.5)
        assert float(L.hinge([[1.0]], [[0.0]])[0]) == pytest.approx(1.0)

    def test_pos_weight_matches_pytorch_definition_grad(self):
        # -[w y log s(z) + (1 - y) log(1 - s(z))]; derivative (1 + (w - 1) y) s(z) - w y (by hand).
        y, z = data_binary(13)
        w = np.array(POSW5)
        y_t, z_t = _tensors(y, z)
        loss, (g,) = grads(lambda t: L.binary_crossentropy(y_t, t, from_logits=True, pos_weight=POSW5), z_t)
        np.testing.assert_allclose(loss.numpy(), np_bce(y, z, from_logits=True, w=w), rtol=1e-12)
        want = ((1 + (w - 1) * y) * np_sigmoid(z) - w * y) / SHAPE[-1]
        np.testing.assert_allclose(g.numpy(), want, rtol=1e-10, atol=1e-15)


# ---------------------------------------------------------------------------
# Extreme inputs and documented conventions.

GAMMAS = [0.0, 0.5, 1.0, 2.0, 5.0]
BIG_LOGITS = np.array([[-1e4, -100.0, -20.0, 0.0, 20.0, 100.0, 1e4]])


def _finite(*ts):
    return all(np.all(np.isfinite(tf.cast(t, tf.float64).numpy())) for t in ts)


class TestExtremeInputs:
    @pytest.mark.parametrize("gamma", GAMMAS)
    @pytest.mark.parametrize("label", [0.0, 1.0])
    @pytest.mark.parametrize("smoothing", [0.0, 0.1])
    def test_binary_losses_finite_on_huge_logits_grad(self, gamma, label, smoothing):
        z = tf.constant(BIG_LOGITS, tf.float32)
        y = tf.fill(z.shape, label)
        for fn in (P(L.focal, gamma=gamma), P(L.focal, gamma=gamma, alpha=None),
                   P(L.binary_crossentropy, pos_weight=2.0)):
            loss, (g,) = grads(lambda t: fn(y, t, from_logits=True, label_smoothing=smoothing), z)
            assert _finite(loss, g), (fn, loss, g)

    @pytest.mark.parametrize("gamma", GAMMAS)
    def test_binary_focal_keras_nan_case_is_finite_and_correct_grad(self, gamma):
        # Keras's BinaryFocalCrossentropy(from_logits=True, gamma=0.5) gives NaN here:
        # easy positives |z| >= ~90. The exact gradient is ~0 (by hand: -exp(-gamma sp(z)) ...).
        z = tf.constant([[100.0, 1e4]])
        y = tf.ones_like(z)
        loss, (g,) = grads(lambda t: L.focal(y, t, gamma=gamma, from_logits=True), z)
        assert _finite(loss, g)
        np.testing.assert_allclose(g.numpy(), 0.0, atol=1e-30)
        # ... and the confidently wrong case keeps its full gradient alpha_t * (p - y) / N.
        loss, (g,) = grads(lambda t: L.focal(1.0 - y, t, gamma=gamma, from_logits=True), z)
        np.testing.assert_allclose(g.numpy(), 0.75 / 2, rtol=1e-6)
        np.testing.assert_allclose(loss.numpy(), 0.75 * (100.0 + 1e4) / 2, rtol=1e-6)

    @pytest.mark.parametrize("gamma", GAMMAS)
    def test_categorical_losses_finite_on_huge_logits_grad(self, gamma):
        z = tf.constant([[1e4, 0.0, -1e4], [-1e4, 1e4, 0.0], [30.0, 0.0, -30.0]], tf.float32)
        for label in range(3):
            y = tf.one_hot([label] * 3, 3)
            t = tf.constant([label] * 3)
            for fn in (lambda v: L.categorical_focal(y, v, gamma=gamma, from_logits=True,
                                                     label_smoothing=0.1),
                       lambda v: L.categorical_focal(y, v, gamma=gamma, from_logits=True),
                       lambda v: L.sparse_categorical_focal(t, v, gamma=gamma, from_logits=True),
                       lambda v: L.categorical_crossentropy(y, v, from_logits=True)):
                loss, (g,) = grads(fn, z)
                assert _finite(loss, g), (gamma, label, loss, g)

    @pytest.mark.parametrize("gamma", GAMMAS)
    def test_probability_losses_finite_at_exact_0_and_1_grad(self, gamma):
        p = tf.constant([[0.0, 1.0, 0.0, 1.0, 0.5]])
        y = tf.constant([[0.0, 0.0, 1.0, 1.0, 1.0]])
        pc = tf.constant([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
        for fn in (lambda v: L.focal(y, v, gamma=gamma),
                   lambda v: L.binary_crossentropy(y, v, pos_weight=2.0),
                   lambda v: L.binary_crossentropy(y, v)):
            loss, (g,) = grads(fn, p)
            assert _finite(loss, g)
        for fn in (lambda v: L.categorical_focal(tf.one_hot([0, 0, 1], 3), v, gamma=gamma),
                   lambda v: L.sparse_categorical_focal(tf.constant([0, 0, 1]), v, gamma=gamma),
                   lambda v: L.sparse_categorical_crossentropy(tf.constant([0, 0, 1]), v)):
            loss, (g,) = grads(fn, pc)
            assert _finite(loss, g)

    @pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16], ids=lambda d: d.name)
    def test_half_precision_probabilities_stay_finite_grad(self, dtype):
        # Keras's float16 BCE from probabilities returns inf (1 - 1e-7 rounds to 1).
        p = tf.constant([[0.0, 1.0, 1.0]], dtype)
        y = tf.constant([[1.0, 0.0, 1.0]])
        for fn in (L.binary_crossentropy, L.focal):
            loss, (g,) = grads(lambda v: fn(y, v), p)
            assert loss.dtype == dtype and _finite(loss)
            # The boundary gradient 1/(3 eps) exceeds float16's range (documented);
            # bfloat16 has float32's range and stays finite.
            assert dtype == tf.float16 or _finite(g)
            assert np.isfinite(g.numpy()[0, 2])

    def test_categorical_30_0_minus30_loss_60_with_live_grad(self):
        # logsumexp(30, 0, -30) - (-30) = 60 + log(1 + e^-30 + e^-60) ~= 60 (by hand).
        z = tf.constant([[30.0, 0.0, -30.0]])
        y = tf.constant([[0.0, 0.0, 1.0]])
        for loss_obj in (L.CategoricalFocalLoss(from_logits=True),
                         L.CategoricalCrossentropy(from_logits=True),
                         L.CategoricalFocalLoss(gamma=0.5, alpha=[1.0, 1.0, 1.0], from_logits=True)):
            loss, (g,) = grads(lambda v: loss_obj(y, v), z)
            assert float(loss) == pytest.approx(60.0, rel=1e-6)
            np.testing.assert_allclose(g.numpy(), [[1.0, 0.0, -1.0]], atol=1e-6)
        # Keras clips: 0.25 * -log(1e-7) = 4.03 and a zero gradient (documented difference).
        keras_loss, (kg,) = grads(
            lambda v: keras.losses.CategoricalFocalCrossentropy(from_logits=True)(y, v), z)
        assert float(keras_loss) == pytest.approx(4.03, abs=0.01) and not np.any(kg.numpy())

    def test_clip_convention_gradient_is_the_boundary_gradient_grad(self):
        # Outside [eps, 1 - eps] the gradient is that at the clip boundary (module docstring):
        # dBCE/dp = ((1 - y) / (1 - c) - y / c) / N at c = clip(p).
        p = tf.constant([[0.0, 1.0, 0.0, 1.0]], tf.float64)
        y = tf.constant([[1.0, 0.0, 0.0, 1.0]], tf.float64)
        _, (g,) = grads(lambda v: L.binary_crossentropy(y, v), p)
        c = np.clip(p.numpy(), EPS, 1 - EPS)
        want = ((1 - y.numpy()) / np.clip(1 - p.numpy(), EPS, 1 - EPS) - y.numpy() / c) / 4
        np.testing.assert_allclose(g.numpy(), want, rtol=1e-9)
        assert g.numpy()[0, 0] == pytest.approx(-1 / EPS / 4, rel=1e-6)  # wrong and sure: live
        # The categorical loss takes the same convention: true class at p = 0.
        _, (gc,) = grads(lambda v: L.categorical_crossentropy([[1.0, 0.0]], v),
                         tf.constant([[0.0, 1.0]], tf.float64))
        assert gc.numpy()[0, 0] == pytest.approx(-1 / EPS + 1.0, rel=1e-6)

    def test_hinge_gradient_at_hinge_point_is_minus_t_grad(self):
        y = tf.constant([[1.0, 0.0]], tf.float64)
        x = tf.constant([[1.0, -1.0]], tf.float64)  # t * x = 1 for both
        _, (g,) = grads(lambda v: L.hinge(y, v), x)
        np.testing.assert_array_equal(g.numpy(), [[-0.5, 0.5]])

    def test_huber_gradient_at_delta_is_continuous_grad(self):
        x = tf.constant([[2.0, -2.0, 5.0]], tf.float64)
        _, (g,) = grads(lambda v: L.huber(tf.zeros_like(v), v, delta=2.0), x)
        np.testing.assert_array_equal(g.numpy(), [[2.0 / 3, -2.0 / 3, 2.0 / 3]])

    def test_nan_input_gives_nan_loss(self):
        for fn in (L.mean_squared_error, P(L.binary_crossentropy, from_logits=True),
                   P(L.focal, from_logits=True)):
            assert np.isnan(fn([[0.0, 1.0]], [[np.nan, 0.5]]).numpy()[0])


class TestHingeLabels:
    def test_auto_detects_binary_and_signed_labels(self):
        x = tf.constant([[0.3, -0.7, 2.0]], tf.float64)
        binary = tf.constant([[1.0, 0.0, 1.0]], tf.float64)
        signed = 2 * binary - 1
        want = np_hinge(binary.numpy(), x.numpy())
        np.testing.assert_allclose(L.hinge(binary, x).numpy(), want)
        np.testing.assert_allclose(L.hinge(signed, x).numpy(), want)
        np.testing.assert_allclose(L.hinge(binary, x, label_format="binary").numpy(), want)
        np.testing.assert_allclose(L.hinge(signed, x, label_format="signed").numpy(), want)

    def test_all_ones_batch_means_the_same_in_both_formats(self):
        x = tf.constant([[0.3, -0.7]], tf.float64)
        ones = tf.ones_like(x)
        for fmt in ("auto", "binary", "signed"):
            np.testing.assert_allclose(L.hinge(ones, x, label_format=fmt).numpy(),
                                       np_hinge(ones.numpy(), x.numpy()))

    def test_explicit_format_overrides_detection(self):
        # {0, 1} labels read as signed: label 0 gives max(0, 1) = 1 whatever the score.
        x = tf.constant([[5.0, 5.0]], tf.float64)
        y = tf.constant([[0.0, 1.0]], tf.float64)
        assert float(L.hinge(y, x, label_format="signed")[0]) == pytest.approx(0.5)
        assert float(L.hinge(y, x, label_format="binary")[0]) == pytest.approx(3.0)


# ---------------------------------------------------------------------------
# Pairing with sigmoid / softmax: the logits path and its fused gradient.


class TestLogitsPath:
    @pytest.mark.parametrize("sigmoid", [keras_afl.activations.sigmoid, keras.activations.sigmoid],
                             ids=["afl", "keras"])
    def test_probability_loss_on_sigmoid_output_uses_logits_grad(self, sigmoid):
        z = tf.constant([[20.0, -3.0, 0.5]])
        y = tf.constant([[0.0, 1.0, 1.0]])
        for loss_obj in (L.BinaryCrossentropy(), L.FocalLoss(gamma=0.0, alpha=None)):
            with tf.GradientTape() as tape:
                tape.watch(z)
                loss = loss_obj(y, sigmoid(z))
            g = tape.gradient(loss, z)
            # Fused: (sigmoid(z) - y) / N; the saturated first entry keeps gradient 1/3.
            np.testing.assert_allclose(g.numpy(), (np_sigmoid(z.numpy()) - y.numpy()) / 3, rtol=1e-5)
            assert float(loss) == pytest.approx(float(np.mean(np_bce(y.numpy(), z.numpy(), True))), rel=1e-5)

    @pytest.mark.parametrize("softmax", [keras_afl.activations.softmax, keras.activations.softmax],
                             ids=["afl", "keras"])
    def test_probability_loss_on_softmax_output_uses_logits_grad(self, softmax):
        z = tf.constant([[30.0, 0.0, -30.0]])
        for loss_obj, y in ((L.CategoricalCrossentropy(), tf.constant([[0.0, 0.0, 1.0]])),
                            (L.SparseCategoricalCrossentropy(), tf.constant([2])),
                            (L.CategoricalFocalLoss(gamma=0.0), tf.constant([[0.0, 0.0, 1.0]]))):
            with tf.GradientTape() as tape:
                tape.watch(z)
                loss = loss_obj(y, softmax(z))
            assert float(loss) == pytest.approx(60.0, rel=1e-6)
            np.testing.assert_allclose(tape.gradient(loss, z).numpy(), [[1.0, 0.0, -1.0]], atol=1e-6)

    def test_logits_survive_the_cast_to_the_loss_dtype_grad(self):
        # float16 sigmoid output (mixed precision), float32 loss: Keras's cast would drop the
        # logits and clip (gradient 0 at z = 12 where float16 sigmoid is exactly 1).
        z16 = tf.constant([[12.0, -12.0]], tf.float16)
        y = tf.constant([[0.0, 1.0]])
        for sigmoid in (keras_afl.activations.sigmoid, keras.activations.sigmoid):
            with tf.GradientTape() as tape:
                tape.watch(z16)
                y_pred = sigmoid(z16)
                assert float(y_pred[0, 0]) == 1.0
                loss = L.BinaryCrossentropy()(y, y_pred)
            g = tape.gradient(loss, z16)
            assert loss.dtype == tf.float32
            assert float(loss) == pytest.approx(12.0, rel=1e-4)  # softplus(12) ~ 12 (by hand)
            np.testing.assert_allclose(g.numpy().astype(float), [[0.5, -0.5]], rtol=1e-3)

    def test_fit_under_mixed_float16_keeps_the_logits_path(self):
        # A float16 sigmoid saturated at exactly 1 for label 0: through the logits the
        # gradient is sigmoid(z) - y = 1 (one SGD step moves the weights by lr * x);
        # Keras's own BCE clips there and leaves the weights unchanged.
        previous = keras.mixed_precision.global_policy()
        keras.mixed_precision.set_global_policy("mixed_float16")
        try:
            model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(
                1, activation="sigmoid", kernel_initializer=keras.initializers.Constant(8.0))])
            model.compile(optimizer=keras.optimizers.SGD(0.1), loss=L.BinaryCrossentropy())
            before = model.layers[0].kernel.numpy().copy()
            loss = model.train_on_batch(np.ones((8, 2), "float32"), np.zeros((8, 1), "float32"))
        finally:
            keras.mixed_precision.set_global_policy(previous)
        assert float(loss) == pytest.approx(16.0, rel=1e-3)  # softplus(16) (by hand), not 15.94
        np.testing.assert_allclose(before - model.layers[0].kernel.numpy(), 0.1, rtol=1e-3)

    def test_from_logits_true_on_a_sigmoid_output_warns_and_uses_the_logits(self):
        z = tf.constant([[20.0]])
        with pytest.warns(UserWarning, match="from_logits=True.*sigmoid or softmax"):
            loss = L.binary_crossentropy([[0.0]], keras_afl.activations.sigmoid(z), from_logits=True)
        assert float(loss[0]) == pytest.approx(20.0, rel=1e-6)

    def test_cast_keeps_the_mask(self):
        z16 = tf.constant([[12.0], [-12.0]], tf.float16)
        y_pred = keras.activations.sigmoid(z16)
        y_pred._keras_mask = tf.constant([True, False])
        loss = L.BinaryCrossentropy(reduction="sum")(tf.zeros([2, 1]), y_pred)
        assert float(loss) == pytest.approx(12.0, rel=1e-4)  # the masked sample is left out

    def test_graph_mode_sigmoid_and_softmax_ops_are_recognised(self):
        @tf.function
        def run(z, z16):
            y = tf.zeros_like(z)
            onehot = tf.one_hot([2], 3)
            return (L.BinaryCrossentropy()(y, tf.sigmoid(z)),
                    L.BinaryCrossentropy()(y, tf.sigmoid(z16)),  # through the cast
                    L.categorical_crossentropy(onehot, tf.nn.softmax(tf.constant([[30.0, 0.0, -30.0]]))))

        bce, bce16, cce = run(tf.constant([[20.0]]), tf.constant([[12.0]], tf.float16))
        assert float(bce) == pytest.approx(20.0, rel=1e-6)  # not the clipped 16.1
        assert float(bce16) == pytest.approx(12.0, rel=1e-4)
        assert float(cce[0]) == pytest.approx(60.0, rel=1e-6)


# ---------------------------------------------------------------------------
# Keras semantics: agreement with the built-ins over Keras's grid.

REDUCTIONS = ["sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none", None]

# name -> (our Loss, Keras's Loss (float64), data(seed) -> (y_true, y_pred))
KERAS_PAIRS = {
    "mse": (lambda **k: L.MeanSquaredError(**k), lambda **k: keras.losses.MeanSquaredError(**k),
            data_regression),
    "huber": (lambda **k: L.Huber(delta=0.7, **k), lambda **k: keras.losses.Huber(delta=0.7, **k),
              P(data_regression, delta=0.7)),
    "hinge": (lambda **k: L.Hinge(**k), lambda **k: keras.losses.Hinge(**k), data_hinge),
    "bce_logits": (lambda **k: L.BinaryCrossentropy(from_logits=True, label_smoothing=0.1, **k),
                   lambda **k: keras.losses.BinaryCrossentropy(from_logits=True, label_smoothing=0.1, **k),
                   data_binary),
    "bce_probs": (lambda **k: L.BinaryCrossentropy(**k), lambda **k: keras.losses.BinaryCrossentropy(**k),
                  P(data_binary, probs=True)),
    "focal_logits": (
        lambda **k: L.FocalLoss(gamma=1.5, alpha=0.3, from_logits=True, **k),
        lambda **k: keras.losses.BinaryFocalCrossentropy(
            apply_class_balancing=True, gamma=1.5, alpha=0.3, from_logits=True, **k), data_binary),
    "focal_probs": (
        lambda **k: L.FocalLoss(label_smoothing=0.1, **k),
        lambda **k: keras.losses.BinaryFocalCrossentropy(
            apply_class_balancing=True, label_smoothing=0.1, **k),
        P(data_binary, probs=True)),
    "cce_logits": (lambda **k: L.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1, **k),
                   lambda **k: keras.losses.CategoricalCrossentropy(
                       from_logits=True, label_smoothing=0.1, **k),
                   data_categorical),
    "cce_probs": (lambda **k: L.CategoricalCrossentropy(**k),
                  lambda **k: keras.losses.CategoricalCrossentropy(**k),
                  P(data_categorical, probs=True)),
    "cfocal_logits": (
        lambda **k: L.CategoricalFocalLoss(alpha=ALPHA5, from_logits=True, **k),
        lambda **k: keras.losses.CategoricalFocalCrossentropy(alpha=ALPHA5, from_logits=True, **k),
        data_categorical),
    "scce_logits": (lambda **k: L.SparseCategoricalCrossentropy(from_logits=True, **k),
                    lambda **k: keras.losses.SparseCategoricalCrossentropy(from_logits=True, **k),
                    data_sparse),
    "scce_probs_ignore": (
        lambda **k: L.SparseCategoricalCrossentropy(ignore_class=1, **k),
        lambda **k: keras.losses.SparseCategoricalCrossentropy(ignore_class=1, **k),
        lambda s: (np.array([0, 1, 4, 1]), _rows_sum_to_1(data_sparse(s, probs=True)[1]))),
}


def _rows_sum_to_1(x):
    return x / x.sum(-1, keepdims=True)


def _normalised(name, y, x):
    """Keras normalises categorical probabilities too; give it rows that sum to 1 anyway."""
    if name in ("cce_probs",):
        x = x / x.sum(-1, keepdims=True)
    return y, x


class TestKerasGrid:
    @pytest.mark.parametrize("name", sorted(KERAS_PAIRS))
    def test_matches_keras_for_every_weighting_and_reduction_grad(self, name):
        ours, theirs, data = KERAS_PAIRS[name]
        y, x = _normalised(name, *data(20))
        y_t = tf.constant(y) if y.dtype.kind == "i" else tf.constant(y, tf.float64)
        x_t = tf.constant(x, tf.float64)
        weights = [None, 2.5, _rng(21).uniform(0.1, 2.0, size=SHAPE[0]), np.zeros(SHAPE[0])]
        for reduction in REDUCTIONS:
            a = ours(reduction=reduction, dtype="float64")
            b = theirs(reduction=reduction, dtype="float64")
            for sw in weights:
                got, (g,) = grads(lambda v: a(y_t, v, sample_weight=sw), x_t)
                want, (g_ref,) = grads(lambda v: b(y_t, v, sample_weight=sw), x_t)
                assert got.dtype == tf.float64 and got.shape == want.shape, (reduction, sw)
                np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6, atol=1e-12,
                                           err_msg=f"{reduction} {sw}")
                np.testing.assert_allclose(g.numpy(), g_ref.numpy(), rtol=1e-6, atol=1e-12,
                                           err_msg=f"{reduction} {sw}")

    @pytest.mark.parametrize("reduction", REDUCTIONS)
    def test_per_timestep_weights_and_masks_match_keras(self, reduction):
        r = _rng(22)
        y = np.eye(4)[r.integers(0, 4, size=(3, 5))]
        z = r.normal(size=(3, 5, 4))
        sw = r.uniform(0, 2, size=(3, 5))
        mask = tf.constant(r.uniform(size=(3, 5)) > 0.3)
        for ours, theirs in (
            (L.CategoricalCrossentropy(from_logits=True, reduction=reduction, dtype="float64"),
             keras.losses.CategoricalCrossentropy(from_logits=True, reduction=reduction, dtype="float64")),
            (L.MeanSquaredError(reduction=reduction, dtype="float64"),
             keras.losses.MeanSquaredError(reduction=reduction, dtype="float64")),
        ):
            for use_mask in (False, True):
                x = tf.constant(z)
                if use_mask:
                    x._keras_mask = mask
                got = ours(tf.constant(y), x, sample_weight=sw)
                want = theirs(tf.constant(y), x, sample_weight=sw)
                np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6, atol=1e-12)

    def test_sparse_focal_matches_keras_categorical_focal_on_one_hot(self):
        t, x = data_sparse(23)
        onehot = np.eye(SHAPE[-1])[t]
        got = L.SparseCategoricalFocalLoss(gamma=1.5, alpha=ALPHA5, from_logits=True, dtype="float64")(t, x)
        want = keras.losses.CategoricalFocalCrossentropy(
            gamma=1.5, alpha=ALPHA5, from_logits=True, dtype="float64")(onehot, x)
        assert float(got) == pytest.approx(float(want), rel=1e-6)

    @pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
    def test_mixed_precision_computes_in_float32(self, policy):
        y, z = data_binary(24)
        previous = keras.mixed_precision.global_policy()
        keras.mixed_precision.set_global_policy(policy)
        try:
            half = keras.mixed_precision.global_policy().compute_dtype
            for loss_obj in (L.FocalLoss(from_logits=True), L.MeanSquaredError(), L.Huber()):
                got = loss_obj(y, tf.constant(z, half))
                assert got.dtype == tf.float32
                want = loss_obj(y, tf.cast(tf.constant(z, half), tf.float32))
                assert float(got) == float(want)
        finally:
            keras.mixed_precision.set_global_policy(previous)

    def test_dtype_argument_sets_the_computation_dtype(self):
        y, z = data_binary(25)
        assert L.FocalLoss(dtype="float64")(y, z).dtype == tf.float64
        assert L.FocalLoss()(y, z).dtype == tf.float32


# ---------------------------------------------------------------------------
# Keras's arguments and inputs: every argument of the Keras counterpart, with Keras's meaning.

_SPARSE_SMOOTHING = ("integer labels have nothing to smooth (Keras's SparseCategoricalCrossentropy "
                     "has no label_smoothing either); the Keras counterpart is its categorical "
                     "focal loss on one-hot labels")
# (keras_afl name, argument of the Keras counterpart it lacks) -> why. Positional order is
# not compared: ours keeps its own (e.g. FocalLoss(gamma, alpha, ...)); Keras's arguments
# added later are keyword-only in the classes.
MISSING_KERAS_ARGUMENTS = {
    ("sparse_categorical_focal", "label_smoothing"): _SPARSE_SMOOTHING,
    ("SparseCategoricalFocalLoss", "label_smoothing"): _SPARSE_SMOOTHING,
}


def _loss_counterparts():
    from tests.test_readme import COUNTERPARTS  # the one table of Keras counterparts

    return {ours: theirs for ours, theirs in COUNTERPARTS.items()
            if ours.__module__.startswith("keras_afl.losses")}


def _binary_cases(axis):
    """(ours, Keras's, y_pred kind) for the binary losses' `axis` and `apply_class_balancing`."""
    f64 = {"dtype": "float64", "reduction": None}
    return [
        (L.BinaryCrossentropy(axis=axis, **f64), keras.losses.BinaryCrossentropy(axis=axis, **f64),
         "p"),
        (L.BinaryCrossentropy(from_logits=True, label_smoothing=0.1, axis=axis, **f64),
         keras.losses.BinaryCrossentropy(from_logits=True, label_smoothing=0.1, axis=axis, **f64),
         "z"),
        (L.FocalLoss(gamma=1.5, apply_class_balancing=False, axis=axis, **f64),
         keras.losses.BinaryFocalCrossentropy(gamma=1.5, axis=axis, **f64), "p"),
        (L.FocalLoss(alpha=0.3, from_logits=True, apply_class_balancing=True, axis=axis, **f64),
         keras.losses.BinaryFocalCrossentropy(alpha=0.3, from_logits=True, apply_class_balancing=True,
                                              axis=axis, **f64), "z"),
        (functools.partial(L.binary_crossentropy, axis=axis),
         functools.partial(keras.losses.binary_crossentropy, axis=axis), "p"),
        (functools.partial(L.focal, gamma=0.5, apply_class_balancing=False, axis=axis),
         functools.partial(keras.losses.binary_focal_crossentropy, gamma=0.5, axis=axis), "p"),
    ]


class TestKerasArguments:
    def test_every_argument_of_the_keras_counterpart_is_accepted(self):
        missing = set()
        for ours, theirs in _loss_counterparts().items():
            mine = inspect.signature(ours).parameters
            missing |= {(ours.__name__, p) for p in inspect.signature(theirs).parameters
                        if p not in mine}
        # Equality: a Keras argument missing and undocumented fails, and so does a stale entry.
        assert missing == set(MISSING_KERAS_ARGUMENTS)

    @pytest.mark.parametrize("axis", [-1, 1, 0])
    def test_binary_axis_and_class_balancing_mean_what_they_mean_in_keras_grad(self, axis):
        r = _rng(40)
        y = tf.constant((r.uniform(size=(2, 3, 4)) < 0.5).astype("float64"))
        z = tf.constant(r.normal(size=(2, 3, 4)))
        inputs = {"z": z, "p": tf.sigmoid(z) * 1.0}  # a product: no logits to recover
        for ours, theirs, kind in _binary_cases(axis):
            got, (g,) = grads(lambda v: ours(y, v), inputs[kind])
            want, (g_ref,) = grads(lambda v: theirs(y, v), inputs[kind])
            assert got.shape == want.shape, (ours, axis)
            np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6, err_msg=str(ours))
            np.testing.assert_allclose(g.numpy(), g_ref.numpy(), rtol=1e-6, atol=1e-12,
                                       err_msg=str(ours))

    def test_new_arguments_are_checked_and_saved_only_when_set(self):
        for make in (L.BinaryCrossentropy, L.FocalLoss, L.binary_crossentropy):
            with pytest.raises(TypeError, match="`axis` must be a single int"):
                make(axis=(1, 2)) if isinstance(make, type) else make([[1.0]], [[0.5]], axis=(0, 1))
        with pytest.raises(TypeError, match="apply_class_balancing"):
            L.FocalLoss(apply_class_balancing="yes")
        # Default settings: the config (so the saved file) is what it was before.
        assert "axis" not in L.BinaryCrossentropy().get_config()
        assert not {"axis", "apply_class_balancing"} & set(L.FocalLoss().get_config())
        loss = L.FocalLoss.from_config(L.FocalLoss(apply_class_balancing=False, axis=1).get_config())
        assert (loss.apply_class_balancing, loss.axis) == (False, 1)

    @pytest.mark.parametrize("dtype", ["int8", "int16", "int32", "int64", "uint8"])
    def test_integer_predictions_in_regression_losses_as_keras(self, dtype):
        y_true = tf.constant([[1.0, 2.5], [3.0, 4.0]])  # 2.5: cast to the integer dtype, as Keras
        y_pred = tf.constant(np.array([[2, 2], [3, 7]], dtype))
        got = L.mean_squared_error(y_true, y_pred)
        want = keras.losses.mean_squared_error(y_true, y_pred)
        assert got.dtype == want.dtype
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-7)
        assert float(L.MeanSquaredError()(y_true, y_pred)) == pytest.approx(
            float(keras.losses.MeanSquaredError()(y_true, y_pred)), rel=1e-7)
        # Huber in floating point (Keras's integer arithmetic rounds its 0.5 and delta to ints).
        got = L.huber(y_true, y_pred, delta=1.5)
        assert got.dtype == tf.float32
        np.testing.assert_allclose(got.numpy(), np_huber(np.array([[1, 2], [3, 4]]),
                                                         np.array([[2, 2], [3, 7]]), 1.5), rtol=1e-6)

    def test_integer_predictions_do_not_wrap_around(self):
        # Keras squares an int8 error of 12 in int8 (144 wraps to -112); here 144 (by hand).
        assert float(L.mean_squared_error([[0]], np.array([[12]], np.int8))[0]) == 144.0

    def test_probabilities_at_0_and_1_give_keras_float32_values(self):
        assert float(L.BinaryCrossentropy()([[1, 0], [1, 0]], [[1, 1], [1, 0]])) == float(
            keras.losses.BinaryCrossentropy()([[1, 0], [1, 0]], [[1, 1], [1, 0]]))
        assert float(L.BinaryCrossentropy()([[1, 0], [1, 0]], [[1, 1], [1, 0]])) == pytest.approx(
            3.98559, abs=1e-5)  # the value: (-log(2**-23) + ~0) / 4
        pairs = np.array(list(itertools.product([0.0, 1.0], repeat=2)), "float32")
        y, p = np.repeat(pairs, 4, 0), np.tile(pairs, (4, 1))  # every 0/1 label x 0/1 prediction
        y3 = np.eye(3, dtype="float32")[[0, 1, 2, 0, 1, 2, 0, 1, 2]]
        p3 = np.array([[1, 0, 0]] * 3 + [[0, 1, 0]] * 3 + [[1, 1, 0]] * 3, "float32")
        cases = {
            "bce": (L.binary_crossentropy(y, p), keras.losses.binary_crossentropy(y, p)),
            "bce smoothed": (L.binary_crossentropy(y, p, label_smoothing=0.1),
                             keras.losses.binary_crossentropy(y, p, label_smoothing=0.1)),
            "focal balanced": (L.focal(y, p),
                               keras.losses.binary_focal_crossentropy(y, p, apply_class_balancing=True)),
            "focal gamma 0.5": (L.focal(y, p, gamma=0.5, apply_class_balancing=False),
                                keras.losses.binary_focal_crossentropy(y, p, gamma=0.5)),
            "cce": (L.categorical_crossentropy(y3, p3), keras.losses.categorical_crossentropy(y3, p3)),
            "categorical focal": (L.categorical_focal(y3, p3, alpha=0.25),
                                  keras.losses.categorical_focal_crossentropy(y3, p3)),
        }
        for name, (got, want) in cases.items():
            assert got.dtype == want.dtype == tf.float32
            # Focal: Keras's focal factor takes the unclipped p (exactly 0 where p_t = 1; here
            # (2**-23)**gamma times a loss of 2**-23): a few ulp of float32, or below 1e-9.
            np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6, atol=1e-9, err_msg=name)

    def test_gradient_at_probability_0_and_1_stays_live_in_float32_grad(self):
        # Straight-through clip: the gradient at the boundary, with Keras's complement 2**-23
        # (1 - float32(1 - 1e-7)) for p = 1; Keras's own gradient there is 0.
        p, y = tf.constant([[1.0, 0.0]]), tf.constant([[0.0, 1.0]])
        for fn in (L.binary_crossentropy, functools.partial(L.focal, gamma=0.0, alpha=None)):
            _, (g,) = grads(lambda v: fn(y, v), p)
            np.testing.assert_allclose(g.numpy(), [[2.0**23 / 2, -1 / np.float32(EPS) / 2]], rtol=1e-6)
        _, (g_keras,) = grads(lambda v: keras.losses.binary_crossentropy(y, v), p)
        assert not np.any(g_keras.numpy())


# ---------------------------------------------------------------------------
# Names, compile(), use_as_builtins, configs.

LOSS_CLASSES = [L.MeanSquaredError, L.BinaryCrossentropy, L.CategoricalCrossentropy,
                L.SparseCategoricalCrossentropy, L.FocalLoss, L.CategoricalFocalLoss,
                L.SparseCategoricalFocalLoss, L.Huber, L.Hinge]

# Non-default settings for every class (the reload test uses them too).
NON_DEFAULT = {
    "MeanSquaredError": {"reduction": "sum"},
    "BinaryCrossentropy": {"from_logits": True, "label_smoothing": 0.1, "pos_weight": [2.0, 0.5],
                           "axis": 1},
    "CategoricalCrossentropy": {"from_logits": True, "label_smoothing": 0.2},
    "SparseCategoricalCrossentropy": {"from_logits": True, "ignore_class": 1},
    "FocalLoss": {"gamma": 3.0, "alpha": 0.4, "apply_class_balancing": False, "axis": 1},
    "CategoricalFocalLoss": {"gamma": 1.5, "alpha": [0.2, 0.8], "label_smoothing": 0.1},
    "SparseCategoricalFocalLoss": {"gamma": 0.5, "alpha": [0.3, 0.7], "from_logits": True},
    "Huber": {"delta": 2.0},
    "Hinge": {"label_format": "binary", "name": "my_hinge"},
}


def _task(entry_name):
    """(labels, output activation) for a loss, from what the registry says it reads."""
    entry = keras_afl.entry(entry_name)
    if entry.family == "regression":
        return "regression", None
    if entry.family == "binary":
        return "binary", "sigmoid" if entry.y_pred == "probabilities" else None
    return entry.family, "softmax"


def _toy_data(task, seed=0):
    r = _rng(seed)
    x = r.normal(size=(64, 4)).astype("float32")
    score = x @ np.array([1.0, -2.0, 0.5, 1.5]) + 0.3
    if task == "regression":
        return x, score.reshape(-1, 1).astype("float32"), 1
    if task == "binary":
        return x, (score > 0).astype("float32").reshape(-1, 1), 1
    cls = np.digitize(score, [-1.0, 1.0])
    if task == "sparse":
        return x, cls.astype("int32"), 3
    return x, np.eye(3, dtype="float32")[cls], 3


class TestNames:
    @pytest.mark.parametrize("name", keras_afl.names("loss"))
    def test_compile_with_string_name_trains(self, name):
        task, act = _task(keras_afl.entry(name).name)
        x, y, units = _toy_data(task)
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(units, activation=act)])
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss=name, jit_compile=False)
        hist = model.fit(x, y, epochs=3, batch_size=32, verbose=0).history["loss"]
        assert np.all(np.isfinite(hist)) and hist[-1] < hist[0], hist

    def test_keras_get_returns_our_instance(self):
        for e in keras_afl.entries("loss"):
            for n in e.all_names:
                assert isinstance(keras.losses.get(n), e.obj), n

    def test_use_as_builtins_maps_keras_names(self):
        keras_table = keras_afl.registry._keras_tables()["loss"]
        for e in keras_afl.entries("loss"):
            assert set(e.keras_names) <= set(keras_table), e.keras_names  # Keras's real names
        with keras_afl.use_as_builtins("loss"):
            for e in keras_afl.entries("loss"):
                for n in e.keras_names:
                    assert isinstance(keras.losses.get(n), e.obj), n
            model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
            model.compile(loss="mse")
            model.evaluate(np.zeros((2, 4)), np.zeros((2, 1)), verbose=0)
            # compile() resolved the string inside the block (Keras's CompileLoss keeps it here).
            resolved = [entry[1] for entry in model._compile_loss._flat_losses]
            assert isinstance(resolved[0], L.MeanSquaredError)
        assert not isinstance(keras.losses.get("mse"), L.MeanSquaredError)

    @pytest.mark.parametrize("cls", LOSS_CLASSES, ids=lambda c: c.__name__)
    def test_get_config_from_config_round_trip(self, cls):
        loss_obj = cls(**NON_DEFAULT[cls.__name__], dtype="float64")
        config = loss_obj.get_config()
        json.dumps(config)  # plain JSON
        for key, value in NON_DEFAULT[cls.__name__].items():
            assert config[key] == value, key
        again = cls.from_config(config)
        assert again.get_config() == config
        restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss_obj))
        assert type(restored) is cls and restored.get_config() == config and restored.dtype == "float64"

    def test_every_registered_loss_is_tested_here(self):
        registered = {e.obj.__name__ for e in keras_afl.entries("loss")}
        assert registered == set(NON_DEFAULT)

    def test_registered_as_keras_serializable(self):
        for cls in LOSS_CLASSES:
            assert keras.saving.get_registered_name(cls) == f"keras_afl>{cls.__name__}"


# ---------------------------------------------------------------------------
# Bad input.


class TestBadInput:
    @pytest.mark.parametrize("make, match", [
        (lambda: L.FocalLoss(gamma=-1.0), r"`gamma` must be a finite number in \[0.0, inf\]; received -1.0"),
        (lambda: L.CategoricalFocalLoss(gamma=float("nan")), r"`gamma`.*received nan"),
        (lambda: L.FocalLoss(alpha=1.5), r"`alpha` must be a finite number in \[0.0, 1.0\]; received 1.5"),
        (lambda: L.CategoricalFocalLoss(alpha=[0.2, 1.2]), r"`alpha\[1\]`.*\[0.0, 1.0\]; received 1.2"),
        (lambda: L.SparseCategoricalFocalLoss(alpha=[]), r"`alpha` must not be empty"),
        (lambda: L.Huber(delta=0.0), r"`delta` must be a finite number in \(0.0, inf\]; received 0.0"),
        (lambda: L.BinaryCrossentropy(label_smoothing=1.5), r"`label_smoothing`.*\[0.0, 1.0\]; received 1.5"),
        (lambda: L.CategoricalCrossentropy(label_smoothing=-0.1), r"`label_smoothing`.*received -0.1"),
        (lambda: L.BinaryCrossentropy(pos_weight=-1.0),
         r"`pos_weight` must be .*\[0.0, inf\]; received -1.0"),
        (lambda: L.BinaryCrossentropy(pos_weight=[1.0, -2.0]), r"`pos_weight\[1\]`.*received -2.0"),
        (lambda: L.Hinge(label_format="plusminus"), r"`label_format` must be one of .*'plusminus'"),
    ])
    def test_invalid_settings_raise_value_error_at_construction(self, make, match):
        with pytest.raises(ValueError, match=match):
            make()

    def test_invalid_settings_raise_in_functions_too(self):
        with pytest.raises(ValueError, match="gamma"):
            L.focal([[1.0]], [[0.5]], gamma=-2.0)
        with pytest.raises(ValueError, match="delta"):
            L.huber([[1.0]], [[0.5]], delta=-1.0)

    @pytest.mark.parametrize("bad", ["yes", 1, None])
    def test_from_logits_must_be_bool(self, bad):
        with pytest.raises(TypeError, match="from_logits"):
            L.BinaryCrossentropy(from_logits=bad)

    def test_ignore_class_must_be_int(self):
        with pytest.raises(TypeError, match="ignore_class"):
            L.SparseCategoricalCrossentropy(ignore_class=1.5)

    @pytest.mark.parametrize("fn", [L.mean_squared_error, L.binary_crossentropy, L.focal, L.huber, L.hinge,
                                    L.categorical_crossentropy, L.categorical_focal])
    def test_mismatched_shapes_raise_naming_both(self, fn):
        with pytest.raises(ValueError, match=r"y_true.shape=\(2, 3\) and y_pred.shape=\(2, 4\)"):
            fn(tf.zeros([2, 3]), tf.fill([2, 4], 0.5))

    def test_sparse_label_shape_mismatch_names_both(self):
        with pytest.raises(ValueError, match=r"y_true.shape=\(3,\) and y_pred.shape=\(2, 4\)"):
            L.sparse_categorical_crossentropy(tf.zeros([3], tf.int32), tf.zeros([2, 4]))

    def test_wrong_number_of_per_class_values_raises(self):
        with pytest.raises(ValueError, match=r"`alpha` has 2 values but `y_pred` has 3 entries"):
            L.CategoricalFocalLoss(alpha=[0.5, 0.5])(tf.one_hot([0], 3), tf.fill([1, 3], 1 / 3))
        with pytest.raises(ValueError, match=r"`pos_weight` has 2 values .* 3 entries"):
            L.binary_crossentropy(tf.zeros([1, 3]), tf.zeros([1, 3]), pos_weight=[1.0, 2.0])

    @pytest.mark.parametrize("fn", [L.sparse_categorical_crossentropy, L.sparse_categorical_focal])
    @pytest.mark.parametrize("from_logits", [True, False])
    @pytest.mark.parametrize("labels", [[0, 3], [-1, 0]], ids=["too_large", "negative"])
    def test_out_of_range_labels_raise_eager_and_in_graph(self, fn, from_logits, labels):
        z = tf.fill([2, 3], 0.3)
        expected = r"class ids in `y_true` must be in \[0, num_classes\)"
        with pytest.raises(tf.errors.InvalidArgumentError, match=expected):
            fn(tf.constant(labels), z, from_logits=from_logits)
        with pytest.raises(tf.errors.InvalidArgumentError, match="class ids"):
            tf.function(lambda t, v: fn(t, v, from_logits=from_logits))(tf.constant(labels), z)

    def test_out_of_range_labels_give_nan_under_xla_grad(self):
        # XLA drops assertions: the offending sample gets a NaN loss and gradient (documented).
        @tf.function(jit_compile=True)
        def run(t, z):
            loss, (g,) = grads(lambda v: L.sparse_categorical_crossentropy(t, v, from_logits=True), z)
            return loss, g

        loss, g = run(tf.constant([0, 7]), tf.zeros([2, 3]))
        assert np.isfinite(loss.numpy()[0]) and np.isnan(loss.numpy()[1])
        assert np.all(np.isfinite(g.numpy()[0])) and np.all(np.isnan(g.numpy()[1]))

    def test_ignored_class_is_not_out_of_range(self):
        loss = L.sparse_categorical_crossentropy(tf.constant([255, 1]), tf.zeros([2, 3]), ignore_class=255,
                                                 from_logits=True)
        np.testing.assert_allclose(loss.numpy(), [0.0, np.log(3)], rtol=1e-6)

    def test_non_float_prediction_raises_type_error(self):
        # Integer predictions only for the regression losses, as Keras (TestKerasArguments);
        # booleans nowhere (Keras fails on them too).
        with pytest.raises(TypeError, match="`y_pred` must have a floating-point dtype"):
            L.binary_crossentropy([[1.0]], np.array([[1]], np.int32))
        with pytest.raises(TypeError, match="`y_pred` must have a floating-point dtype"):
            L.mean_squared_error([[1.0]], np.array([[True]]))


# ---------------------------------------------------------------------------
# Saved models reload with their settings, in a fresh process.


@pytest.mark.slow
def test_every_loss_class_and_string_name_survives_keras_reload(tmp_path):
    """Huber(delta=2.0), FocalLoss(gamma=3.0, alpha=0.4) and every other class with
    non-default settings, plus compile(loss="focal"), saved to .keras and evaluated
    in a fresh process (Keras 3.15 reloads its own Huber with delta 1.0)."""
    tasks = {
        "MeanSquaredError": ("regression", None), "Huber": ("regression", None),
        "Hinge": ("binary", None), "BinaryCrossentropy": ("binary2", None),
        "FocalLoss": ("binary", "sigmoid"), "CategoricalCrossentropy": ("categorical", None),
        "CategoricalFocalLoss": ("categorical2", "softmax"),
        "SparseCategoricalCrossentropy": ("sparse", None),
        "SparseCategoricalFocalLoss": ("sparse2", None), "string:focal": ("binary", "sigmoid"),
    }
    expected = {}
    for key, (task, act) in tasks.items():
        x, y, units = _toy_data(task.rstrip("2"), seed=1)
        if task.endswith("2"):  # two outputs / two classes for the per-class settings
            units = 2
            y = {"binary2": lambda: np.concatenate([y, 1 - y], -1),
                 "categorical2": lambda: np.eye(2, dtype="float32")[(x[:, 0] > 0).astype(int)],
                 "sparse2": lambda: (x[:, 0] > 0).astype("int32")}[task]()
        keras.utils.set_random_seed(1)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(units, activation=act)])
        loss = "focal" if key.startswith("string:") else getattr(L, key)(**NON_DEFAULT[key])
        model.compile(optimizer="sgd", loss=loss)
        path = str(tmp_path / f"{key.replace(':', '_')}.keras")
        model.save(path)
        np.save(str(tmp_path / f"{key.replace(':', '_')}_x.npy"), x)
        np.save(str(tmp_path / f"{key.replace(':', '_')}_y.npy"), y)
        expected[key] = (path, float(model.evaluate(x, y, verbose=0)))

    out = run_python(f"""
        import json, numpy as np, keras, keras_afl
        paths = {json.dumps({k: v[0] for k, v in expected.items()})}
        result = {{}}
        for key, path in paths.items():
            model = keras.models.load_model(path)
            stem = path[:-len(".keras")]
            x, y = np.load(stem + "_x.npy"), np.load(stem + "_y.npy")
            loss_obj = model.loss
            config = loss_obj.get_config() if hasattr(loss_obj, "get_config") else loss_obj
            result[key] = [float(model.evaluate(x, y, verbose=0)), config]
        print("RESULT" + json.dumps(result))
    """)
    result = json.loads(out.split("RESULT", 1)[1])
    for key, (_, want) in expected.items():
        got, config = result[key]
        assert got == pytest.approx(want, rel=1e-6), key
        if not key.startswith("string:"):
            for setting, value in NON_DEFAULT[key].items():
                assert config[setting] == value, (key, setting)
    assert result["Huber"][1]["delta"] == 2.0
    assert result["FocalLoss"][1]["gamma"] == 3.0 and result["FocalLoss"][1]["alpha"] == 0.4


@pytest.mark.parametrize("rows_sum_to_one", [True, False])
def test_large_cce_from_logits_gradient_with_soft_labels_grad(rows_sum_to_one):
    """Above the size rule the plain path (here float64) picks the backprop with a tf.cond on
    whether every label row sums to 1; below it, with arithmetic. Both give s softmax(z) - y."""
    r = _rng(40)
    z = r.normal(size=(4, 2**14))
    y = r.uniform(0.0, 1.0, size=z.shape)
    y = y / y.sum(-1, keepdims=True) if rows_sum_to_one else y
    from keras_afl._backend._tensorflow import _runner
    assert _runner.large(z.shape) and not _runner.large(z[:, :8].shape)
    for cols in (z.shape[1], 8):
        zc, yc = z[:, :cols], y[:, :cols]
        zt = tf.constant(zc)
        with tf.GradientTape() as tape:
            tape.watch(zt)
            loss = L.categorical_crossentropy(tf.constant(yc), zt, from_logits=True)
        g = tape.gradient(loss, zt).numpy()
        s = yc.sum(-1, keepdims=True)
        want = s * np.exp(np_log_softmax(zc)) - yc
        np.testing.assert_allclose(g, want, rtol=1e-10, atol=1e-12)
