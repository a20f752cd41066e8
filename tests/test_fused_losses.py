"""The compiled ("fused") loss path: same values, gradients and second derivatives as the plain path.

Large float32 losses in graph mode run as two XLA-compiled kernels (forward,
backward); small ones, eager calls and other dtypes take the plain path. The
size thresholds are lowered here so that the test data takes the fused path.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_afl import losses as L
from tests.test_losses import CASES, _tensors


@pytest.fixture
def fuse_everything(monkeypatch):
    monkeypatch.setattr(L, "_FUSE", True)
    monkeypatch.setattr(L, "_FUSE_MIN_ELEMENTS", 0)
    monkeypatch.setattr(L, "_FUSE_MIN_PER_SAMPLE", 0)
    yield


def _value_grad_hvp(fn, y, x):
    @tf.function(autograph=False)
    def run(x):
        with tf.GradientTape() as outer:
            outer.watch(x)
            with tf.GradientTape() as inner:
                inner.watch(x)
                per = fn(y, x)
                weights = tf.reshape(tf.range(1.0, 1.0 + tf.cast(tf.size(per), tf.float32)), tf.shape(per))
                loss = tf.reduce_sum(per * weights)
            g = inner.gradient(loss, x)
            gv = tf.reduce_sum(g * tf.cos(x))
        return loss, g, outer.gradient(gv, x, unconnected_gradients=tf.UnconnectedGradients.ZERO)

    return [t.numpy() for t in run(x)]


# One case per loss body and input kind (the full CASES table costs an XLA
# compilation each; these cover every compiled forward/backward).
FUSED_CASES = ["mse", "huber", "hinge_signed", "bce_logits_smooth_posweight", "bce_probs",
               "focal_logits_g05_smooth", "focal_probs", "cce_logits_axis1", "cce_probs",
               "cfocal_logits", "scce_logits_ignore", "sfocal_probs_ignore"]


@pytest.mark.parametrize("name", FUSED_CASES)
def test_fused_path_equals_plain_path_grad(name, fuse_everything, monkeypatch):
    fn, make_data, _, _ = CASES[name]
    y, x = make_data(3)
    y_t, x_t = _tensors(y, x, tf.float32)
    y_t = tf.cast(y_t, tf.float32) if y_t.dtype.is_floating else y_t
    fused = _value_grad_hvp(fn, y_t, x_t)
    monkeypatch.setattr(L, "_FUSE", False)
    plain = _value_grad_hvp(fn, y_t, x_t)
    for a, b in zip(fused, plain):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)


def test_fused_cases_exist():
    assert set(FUSED_CASES) <= set(CASES)


def test_fused_path_is_taken(fuse_everything):
    x = tf.TensorSpec([4, 5], tf.float32)
    graph = tf.function(lambda z: L.focal(tf.ones([4, 5]), z, from_logits=True)).get_concrete_function(x).graph
    calls = [op for op in graph.get_operations() if op.type in ("StatefulPartitionedCall", "PartitionedCall")]
    assert calls, "the fused loss did not call a compiled function"


def _segmentation_step(jit, fuse, monkeypatch):
    monkeypatch.setattr(L, "_FUSE", fuse)
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 32, 32, 3)).astype("float32")
    y = (rng.random((4, 32, 32, 1)) < 0.1).astype("float32")
    inputs = keras.Input((32, 32, 3))
    out = keras.layers.Conv2D(1, 3, padding="same", activation="afl_sigmoid")(
        keras.layers.Conv2D(8, 3, padding="same", activation="afl_relu")(inputs))
    model = keras.Model(inputs, out)
    model.compile(keras.optimizers.SGD(0.5), loss=L.FocalLoss(), jit_compile=jit)
    hist = model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    return hist.history["loss"], np.concatenate([w.ravel() for w in model.get_weights()])


@pytest.mark.slow
@pytest.mark.parametrize("jit", [False, True], ids=["graph", "xla-model"])
def test_fused_focal_in_fit_matches_plain(jit, fuse_everything, monkeypatch):
    loss_fused, w_fused = _segmentation_step(jit, True, monkeypatch)
    loss_plain, w_plain = _segmentation_step(jit, False, monkeypatch)
    np.testing.assert_allclose(loss_fused, loss_plain, rtol=1e-5)
    np.testing.assert_allclose(w_fused, w_plain, rtol=1e-4, atol=1e-6)
