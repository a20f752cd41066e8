"""BCE and binary focal loss from logits: second derivatives at z = 0 exactly.

`keras_afl.losses.binary._common._logit_parts` takes |z| as tf.maximum(z, -z), whose derivative
is the side's sign at z = 0 as well (tf.abs'(0) = 0 made the Hessian-vector product there 0 in
the |z| terms). Reference: the plain formula (softplus / sigmoid, no custom gradient) under
TensorFlow's autodiff, float64, at logits that include exact zeros.
"""

import numpy as np
import pytest
import tensorflow as tf

import keras_afl

L = keras_afl.losses

Z = np.array([[0.0, 0.0, 1.5, -2.0], [0.0, -0.0, 0.3, 0.0], [4.0, 0.0, -0.7, 0.0]])
Y_HARD = np.array([[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 1.0], [1.0, 1.0, 0.0, 0.0]])
Y_SOFT = np.array([[0.9, 0.2, 0.6, 0.1], [0.3, 0.7, 0.0, 1.0], [0.5, 0.45, 0.8, 0.05]])
W = np.array([0.5, -1.0, 2.0])           # weights of the per-sample losses
V = np.linspace(-1.0, 1.5, Z.size).reshape(Z.shape)  # the direction


def _plain_bce(y, z, pos_weight=1.0):
    ce = (1.0 - y) * tf.math.softplus(z) + pos_weight * y * tf.math.softplus(-z)
    return tf.reduce_mean(ce, -1)


def _plain_focal(y, z, gamma, alpha):
    p, q = tf.sigmoid(z), tf.sigmoid(-z)
    ce = y * tf.math.softplus(-z) + (1.0 - y) * tf.math.softplus(z)
    m = y * q + (1.0 - y) * p
    a = 1.0 if alpha is None else alpha * y + (1.0 - alpha) * (1.0 - y)
    return tf.reduce_mean(a * m**gamma * ce, -1)


def _hvp(f, y, z):
    z = tf.constant(z)
    with tf.GradientTape() as outer:
        outer.watch(z)
        with tf.GradientTape() as inner:
            inner.watch(z)
            s = tf.reduce_sum(f(tf.constant(y), z) * W)
        g = inner.gradient(s, z)
        t = tf.reduce_sum(g * V)
    return g.numpy(), outer.gradient(t, z).numpy()


CASES = [  # (name, afl loss, plain formula, labels)
    ("bce_hard", lambda y, z: L.binary_crossentropy(y, z, from_logits=True), _plain_bce, Y_HARD),
    ("bce_soft_pw", lambda y, z: L.binary_crossentropy(y, z, from_logits=True, pos_weight=2.5),
     lambda y, z: _plain_bce(y, z, 2.5), Y_SOFT),
    ("focal_g2", lambda y, z: L.focal(y, z, from_logits=True),
     lambda y, z: _plain_focal(y, z, 2.0, 0.25), Y_HARD),
    ("focal_g0_soft", lambda y, z: L.focal(y, z, from_logits=True, gamma=0.0, alpha=None),
     lambda y, z: _plain_focal(y, z, 0.0, None), Y_SOFT),
    ("focal_g0.5_soft", lambda y, z: L.focal(y, z, from_logits=True, gamma=0.5),
     lambda y, z: _plain_focal(y, z, 0.5, 0.25), Y_SOFT),
    ("focal_g2_ignore_positives", lambda y, z: L.FocalLoss(
        from_logits=True, ignore_class=-1, normalize="positives", reduction=None,
        dtype="float64")(np.where(Z == 1.5, -1.0, y), z), lambda y, z: _masked_focal(y, z), Y_HARD),
]

KEEP = np.where(Z == 1.5, 0.0, 1.0)  # the entry given ignore_class=-1 in the last case


def _masked_focal(y, z):
    """FocalLoss(ignore_class=-1, normalize="positives", reduction=None) by hand: each row's sum
    over its kept entries, over the batch's number of positive kept entries."""
    keep = tf.constant(KEEP)
    p, q = tf.sigmoid(z), tf.sigmoid(-z)
    ce = y * tf.math.softplus(-z) + (1.0 - y) * tf.math.softplus(z)
    m = y * q + (1.0 - y) * p
    a = 0.25 * y + 0.75 * (1.0 - y)
    count = tf.maximum(tf.reduce_sum(keep * tf.cast(y > 0, tf.float64)), 1.0)
    return tf.reduce_sum(keep * a * m**2 * ce, -1) / count


@pytest.mark.parametrize("name", [c[0] for c in CASES])
def test_hvp_at_zero_logits_equals_plain_formula_under_autodiff(name):
    _, afl, plain, y = next(c for c in CASES if c[0] == name)
    g, h = _hvp(afl, y, Z)
    g_ref, h_ref = _hvp(plain, y, Z)
    np.testing.assert_allclose(g, g_ref, rtol=1e-12, atol=1e-15, err_msg=f"{name}: gradient")
    np.testing.assert_allclose(h, h_ref, rtol=1e-11, atol=1e-15, err_msg=f"{name}: HVP")
    at0 = Z == 0.0
    assert np.all(h[at0] != 0.0), f"{name}: HVP 0 at z = 0 (abs'(0) = 0)"


def test_bce_hvp_at_zero_is_sigmoid_prime_over_n():
    # d2/dz2 of mean(softplus(z) - y z) = sigmoid'(z) / N = 0.25 / 4 at z = 0, hard labels.
    _, h = _hvp(lambda y, z: L.binary_crossentropy(y, z, from_logits=True), Y_HARD, Z)
    at0 = Z == 0.0
    np.testing.assert_allclose(h[at0], (W[:, None] * V * 0.25 / 4.0)[at0], rtol=1e-14)


def test_hvp_at_zero_in_graph_mode_equals_plain_formula():
    def hvp(f):
        @tf.function
        def run(y, z):
            with tf.GradientTape() as outer:
                outer.watch(z)
                with tf.GradientTape() as inner:
                    inner.watch(z)
                    s = tf.reduce_sum(f(y, z) * W)
                t = tf.reduce_sum(inner.gradient(s, z) * V)
            return outer.gradient(t, z)

        return run(tf.constant(Y_SOFT), tf.constant(Z)).numpy()

    got = hvp(lambda y, z: L.focal(y, z, from_logits=True, gamma=0.5))
    want = hvp(lambda y, z: _plain_focal(y, z, 0.5, 0.25))
    np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-15)
