"""Reliability across settings: mixed precision, XLA models, gradient penalties, bad input."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_afl
from keras_afl import activations as A
from keras_afl import layers as L
from keras_afl import losses as Ls
from tests._dist_worker import LOSS_TARGETS, build, data


@pytest.fixture
def policy(request):
    keras.mixed_precision.set_dtype_policy(request.param)
    yield request.param
    keras.mixed_precision.set_dtype_policy("float32")


class TestMixedPrecision:
    @pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"], indirect=True)
    def test_focal_training_with_loss_scaling_has_no_nan(self, policy):
        keras.utils.set_random_seed(0)
        x, y = data("binary", n=256)
        model = keras.Sequential([
            keras.Input((8,)), keras.layers.Dense(32), L.ELU(), keras.layers.Dense(32), L.PReLU(),
            keras.layers.Dense(32), L.SELU(), keras.layers.Dense(1), L.Sigmoid(),
        ])
        opt = keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(0.01))
        model.compile(opt, loss="focal")
        hist = model.fit(x, y, epochs=3, batch_size=32, verbose=0)
        assert np.all(np.isfinite(hist.history["loss"]))
        assert hist.history["loss"][-1] < hist.history["loss"][0]
        assert model.layers[-1].compute_dtype == policy.split("_")[1]
        for w in model.weights:
            assert w.dtype == "float32" and np.all(np.isfinite(w.numpy())), w.path

    @pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"], indirect=True)
    def test_every_loss_computes_in_float32(self, policy):
        for e in keras_afl.entries("loss"):
            assert e.obj().dtype == "float32", e.name

    def test_float16_saturated_sigmoid_then_bce_gives_12_and_unit_grad(self):
        # z = +12 with label 0 and z = -12 with label 1: BCE = softplus(12) = 12.000006
        # and d/dz = sigma(z) - y = +-(1 - 6e-6). Keras's clipped path gives 15.94 / 0, or -inf.
        z = tf.constant([[12.0], [-12.0]], tf.float16)
        y = tf.constant([[0.0], [1.0]])
        keras.mixed_precision.set_dtype_policy("mixed_float16")
        try:
            sigmoid = L.Sigmoid()
        finally:
            keras.mixed_precision.set_dtype_policy("float32")
        with tf.GradientTape() as tape:
            tape.watch(z)
            p = sigmoid(z)
            loss = Ls.BinaryCrossentropy(reduction=None)(y, p)
        g = tape.gradient(loss, z)
        assert p.dtype == tf.float16 and loss.dtype == tf.float32
        np.testing.assert_allclose(loss.numpy(), [12.000006, 12.000006], rtol=1e-5)
        np.testing.assert_allclose(g.numpy().ravel(), [1.0, -1.0], rtol=1e-3)


def _one_step_all_losses(jit):
    """One full-batch SGD step of a model with one output head per keras_afl loss.

    One model (one XLA compilation) covers every loss: each head's weights
    change only by its own loss's gradient.
    """
    names = sorted(LOSS_TARGETS)
    keras.utils.set_random_seed(0)
    x, _ = data("regression", n=64)
    inputs = keras.Input((8,))
    trunk = L.PReLU()(keras.layers.Dense(16)(L.ELU()(keras.layers.Dense(16)(inputs))))
    outputs, targets = [], []
    for name in names:
        kind = LOSS_TARGETS[name]
        h = L.Tanh()(keras.layers.Dense(8)(trunk))
        if kind == "regression":
            out = keras.layers.Dense(1)(h)
        elif kind == "binary":
            out = L.Sigmoid()(keras.layers.Dense(1)(h))
        else:
            out = L.Softmax()(keras.layers.Dense(3)(h))
        outputs.append(out)
        targets.append(data(kind, n=64)[1])
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.SGD(0.1), loss=names, jit_compile=jit)
    hist = model.fit(x, targets, batch_size=64, epochs=1, shuffle=False, verbose=0)
    return hist.history, model.get_weights()


@pytest.mark.slow
class TestXLA:
    def test_compiled_model_matches_graph_mode_for_every_loss_grad(self):
        # One full-batch SGD step: the weight change is lr * gradient, so equal
        # weights after the step mean equal gradients; fit's loss is the value
        # at the initial weights.
        h_graph, w_graph = _one_step_all_losses(jit=False)
        h_xla, w_xla = _one_step_all_losses(jit=True)
        assert h_xla["loss"][0] == pytest.approx(h_graph["loss"][0], rel=1e-6)
        # Per-output losses (their keys carry layer names that differ between
        # the two models, so compare as sorted values; the weights below are
        # compared head by head).
        per_graph = sorted(v[0] for k, v in h_graph.items() if k.endswith("_loss"))
        per_xla = sorted(v[0] for k, v in h_xla.items() if k.endswith("_loss"))
        assert len(per_graph) == len(LOSS_TARGETS)
        np.testing.assert_allclose(per_xla, per_graph, rtol=1e-6)
        for a, b in zip(w_xla, w_graph):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

    def test_every_loss_is_covered(self):
        assert {e.name for e in keras_afl.entries("loss")} == set(LOSS_TARGETS)


def _critic(ours):
    """A WGAN critic from keras_afl layers, or the same from Keras built-ins."""
    if ours:
        acts = [L.LeakyReLU(0.2), L.ELU(), L.Tanh(), L.SELU(), L.Sigmoid()]
    else:
        acts = [keras.layers.LeakyReLU(0.2), keras.layers.Activation("elu"), keras.layers.Activation("tanh"),
                keras.layers.Activation("selu"), keras.layers.Activation("sigmoid")]
    layers = [keras.Input((6,))]
    for act in acts:
        layers += [keras.layers.Dense(12), act]
    layers += [keras.layers.Dense(1)]
    return keras.Sequential(layers)


def _gp_step(critic, loss, real, fake, eps):
    """Critic gradients of a WGAN-GP-style objective (needs second derivatives)."""
    with tf.GradientTape() as outer:
        x_hat = eps * real + (1 - eps) * fake
        with tf.GradientTape() as inner:
            inner.watch(x_hat)
            d_hat = critic(x_hat)
        gx = inner.gradient(d_hat, x_hat)
        penalty = tf.reduce_mean((tf.norm(gx, axis=1) - 1.0) ** 2)
        adversarial = loss(tf.ones([real.shape[0], 1]), critic(real)) + loss(tf.zeros([fake.shape[0], 1]), critic(fake))
        total = adversarial + 10.0 * penalty
    return total, outer.gradient(total, critic.trainable_variables)


class TestGradientPenalty:
    def test_wgan_gp_step_matches_keras_builtins_grad(self):
        keras.utils.set_random_seed(0)
        ours, theirs = _critic(True), _critic(False)
        theirs.set_weights(ours.get_weights())
        rng = np.random.default_rng(0)
        real, fake = (tf.constant(rng.normal(size=(16, 6)), tf.float32) for _ in range(2))
        eps = tf.constant(rng.random((16, 1)), tf.float32)
        t_ours, g_ours = _gp_step(ours, Ls.BinaryCrossentropy(from_logits=True), real, fake, eps)
        t_ref, g_ref = _gp_step(theirs, keras.losses.BinaryCrossentropy(from_logits=True), real, fake, eps)
        assert float(t_ours) == pytest.approx(float(t_ref), rel=1e-5)
        for a, b in zip(g_ours, g_ref):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-6)
        # The penalty really contributes second-order terms: without it the gradients differ.
        assert any(float(tf.reduce_max(tf.abs(g))) > 0 for g in g_ours)

    def test_gp_training_step_in_graph_mode_runs(self):
        keras.utils.set_random_seed(1)
        critic = _critic(True)
        opt = keras.optimizers.Adam(1e-3)
        loss = Ls.BinaryCrossentropy(from_logits=True)
        rng = np.random.default_rng(1)
        real, fake = (tf.constant(rng.normal(size=(16, 6)), tf.float32) for _ in range(2))
        eps = tf.constant(rng.random((16, 1)), tf.float32)

        @tf.function
        def step():
            total, grads = _gp_step(critic, loss, real, fake, eps)
            opt.apply_gradients(zip(grads, critic.trainable_variables))
            return total

        values = [float(step()) for _ in range(20)]
        assert all(np.isfinite(values)) and values[-1] < values[0]


class TestBadInput:
    @pytest.mark.parametrize("fn", [A.relu, A.sigmoid, A.softmax, A.selu])
    def test_scalar_softmax_and_friends_explain(self, fn):
        if fn is A.softmax:
            with pytest.raises(ValueError, match=r"needs an input of rank >= 1; received a scalar"):
                fn(1.0)
        else:  # element-wise functions accept scalars
            assert fn(1.0).shape == ()

    def test_loss_config_with_unknown_key_names_it(self):
        with pytest.raises(ValueError, match=r"FocalLoss.from_config: unknown setting\(s\) \['bogus'\].*expected only"):
            Ls.FocalLoss.from_config({"gamma": 2.0, "bogus": 1})

    def test_layer_config_with_unknown_key_names_it(self):
        with pytest.raises(TypeError, match=r"Unrecognized keyword arguments passed to ELU: \{'bogus': 3\}"):
            L.ELU.from_config({"alpha": 1.0, "bogus": 3})

    @pytest.mark.parametrize("make, match", [
        (lambda: A.elu([1.0], alpha="x"), r"`alpha` must be a real number; received 'x'"),
        (lambda: L.LeakyReLU(negative_slope=[0.1]), r"`negative_slope` must be a real number; received \[0.1\]"),
        (lambda: Ls.Huber(delta=[1.0]), r"`delta` must be a real number; received \[1.0\]"),
        (lambda: Ls.FocalLoss(gamma="2"), r"`gamma` must be a real number; received '2'"),
        (lambda: A.prelu([1.0], np.array([1])), r"`alpha` must have a floating-point dtype.*received dtype int64"),
        (lambda: Ls.binary_crossentropy(tf.constant([["a"]]), [[0.5]]), r"`y_true` must be numeric; received dtype string"),
        (lambda: L.Softmax(axis=3)(np.zeros((2, 3))), r"`axis`=3 is out of range for an input of rank 2"),
        (lambda: Ls.categorical_crossentropy(np.zeros((2, 3)), np.zeros((2, 3)), axis=5), r"`axis`=5 is out of range"),
    ])
    def test_non_numeric_and_out_of_range_settings(self, make, match):
        with pytest.raises((TypeError, ValueError), match=match):
            make()
