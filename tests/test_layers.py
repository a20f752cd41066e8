"""keras_afl.layers: delegation, configs, training, PReLU's parameter, Softmax masks, dtypes."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
import yaml

import keras_afl
from keras_afl import activations as A
from keras_afl import layers as L
from keras_afl.cli import config as cli_config
from tests._checks import REPO, custom_gradient_ops, grads

# layer (with non-default settings where it has any) -> the function it must compute
LAYERS = {
    "ReLU": (lambda: L.ReLU(), A.relu),
    "LeakyReLU": (lambda: L.LeakyReLU(negative_slope=0.2), lambda x: A.leaky_relu(x, 0.2)),
    "Sigmoid": (lambda: L.Sigmoid(), A.sigmoid),
    "Tanh": (lambda: L.Tanh(), A.tanh),
    "Softmax": (lambda: L.Softmax(axis=1), lambda x: A.softmax(x, axis=1)),
    "ELU": (lambda: L.ELU(alpha=0.5), lambda x: A.elu(x, 0.5)),
    "SELU": (lambda: L.SELU(), A.selu),
    "PReLU": (
        lambda: L.PReLU(alpha_initializer=keras.initializers.Constant(0.3)),
        lambda x: A.prelu(x, tf.fill(x.shape[1:], tf.constant(0.3, x.dtype))),
    ),
}
NAMES = sorted(LAYERS)


def np_softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def sample(shape=(6, 5), seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-3, 3, size=shape).astype("float32")
    return np.where(np.abs(x) < 0.05, 0.5, x)


@pytest.mark.parametrize("name", NAMES)
class TestEveryLayer:
    def test_output_equals_function(self, name):
        make, fn = LAYERS[name]
        x = sample()
        np.testing.assert_allclose(make()(x).numpy(), fn(tf.constant(x)).numpy(), rtol=1e-6, atol=1e-7)

    def test_input_grad_is_the_functions_grad(self, name):
        make, fn = LAYERS[name]
        layer = make()
        x = tf.constant(sample(seed=1))
        up = tf.constant(np.random.default_rng(2).normal(size=x.shape).astype("float32"))
        _, (g_layer,) = grads(layer, x, upstream=up)
        _, (g_fn,) = grads(fn, x, upstream=up)
        np.testing.assert_allclose(g_layer.numpy(), g_fn.numpy(), rtol=1e-6, atol=1e-7)

    def test_layer_graph_holds_custom_gradient(self, name):
        make, _ = LAYERS[name]
        layer = make()
        layer.build((None, 5))
        assert custom_gradient_ops(layer, tf.TensorSpec([6, 5], tf.float32))

    def test_get_config_from_config_round_trip(self, name):
        make, _ = LAYERS[name]
        layer = make()
        layer.build((None, 5))
        config = layer.get_config()
        clone = type(layer).from_config(config)
        assert clone.get_config() == config
        x = sample(seed=3)
        clone.build((None, 5))
        if name == "PReLU":
            clone.set_weights(layer.get_weights())
        np.testing.assert_allclose(clone(x).numpy(), layer(x).numpy(), rtol=1e-7)

    def test_serialize_names_our_package(self, name):
        make, _ = LAYERS[name]
        config = keras.saving.serialize_keras_object(make())
        assert config["registered_name"] == f"keras_afl>{name}"

    def test_sequential_with_layer_trains(self, name):
        make, _ = LAYERS[name]
        keras.utils.set_random_seed(0)
        rng = np.random.default_rng(0)
        x = rng.normal(size=(256, 4)).astype("float32")
        y = (x[:, :1] + 0.5 * x[:, 1:2] > 0).astype("float32")
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(16), make(), keras.layers.Dense(1)])
        model.compile(keras.optimizers.Adam(0.02), loss=keras.losses.BinaryCrossentropy(from_logits=True))
        hist = model.fit(x, y, epochs=10, batch_size=64, verbose=0)
        assert hist.history["loss"][-1] < 0.8 * hist.history["loss"][0]

    @pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
    def test_mixed_precision_computes_in_compute_dtype(self, name, policy):
        make, _ = LAYERS[name]
        keras.mixed_precision.set_dtype_policy(policy)
        try:
            layer = make()
            y = layer(sample())
            assert y.dtype.name == policy.split("_")[1]
            for w in layer.weights:
                assert w.dtype == "float32"
        finally:
            keras.mixed_precision.set_dtype_policy("float32")


# layer -> (our settings, the Keras layer it mirrors, that layer's settings). Keras has no
# Sigmoid/Tanh/SELU layers: its `Activation` layer is their twin.
KERAS_TWINS = {
    "ReLU": ({}, keras.layers.ReLU, {}),
    "LeakyReLU": ({"negative_slope": 0.2}, keras.layers.LeakyReLU, {"negative_slope": 0.2}),
    "Sigmoid": ({}, keras.layers.Activation, {"activation": "sigmoid"}),
    "Tanh": ({}, keras.layers.Activation, {"activation": "tanh"}),
    "Softmax": ({"axis": 1}, keras.layers.Softmax, {"axis": 1}),
    "ELU": ({"alpha": 0.5}, keras.layers.ELU, {"alpha": 0.5}),
    "SELU": ({}, keras.layers.Activation, {"activation": "selu"}),
    "PReLU": ({}, keras.layers.PReLU, {}),
}


def scaled_subclass(base, call_super_build=True):
    """A subclass that adds a weight `k` in build() and multiplies the output by it."""

    class Scaled(base):
        def build(self, input_shape):
            if call_super_build:
                super().build(input_shape)
            self.k = self.add_weight(shape=(), initializer="ones", name="k")

        def call(self, inputs):
            return super().call(inputs) * self.k

    return Scaled


@pytest.mark.parametrize("name", NAMES)
class TestSubclassing:
    """Every layer subclasses as its Keras twin does: weights in build(), build() on first use."""

    def test_built_at_construction_as_keras(self, name):
        ours, twin, twin_kwargs = KERAS_TWINS[name]
        assert getattr(L, name)(**ours).built == twin(**twin_kwargs).built

    @pytest.mark.parametrize("call_super_build", [True, False], ids=["super_build", "own_build"])
    def test_subclass_build_adds_weight_on_first_call(self, name, call_super_build):
        ours_kwargs, twin, twin_kwargs = KERAS_TWINS[name]
        if name == "PReLU" and not call_super_build:
            pytest.skip("PReLU's alpha is created by its build(): a subclass must call it")
        layer = scaled_subclass(getattr(L, name), call_super_build)(**ours_kwargs)
        theirs = scaled_subclass(twin, call_super_build)(**twin_kwargs)
        # Keras 3.7 marks its activation layers built at construction, so a subclass's build()
        # never runs there; Keras 3.8+ runs it, and so does keras_afl on every Keras.
        keras_runs_build = not theirs.built
        assert layer.built is False
        x = sample(seed=9)
        y = layer(x)
        assert layer.built is True
        assert "k" in [w.name for w in layer.weights]
        if keras_runs_build:
            theirs(x)
            assert theirs.built is True
            assert len(layer.weights) == len(theirs.weights)
        plain = getattr(L, name)(**ours_kwargs)
        if name == "PReLU":
            plain.build(x.shape)
            plain.set_weights([w for w in layer.get_weights() if w.shape != ()])
        np.testing.assert_allclose(y.numpy(), plain(x).numpy(), rtol=1e-6)
        layer.k.assign(2.0)
        np.testing.assert_allclose(layer(x).numpy(), 2.0 * plain(x).numpy(), rtol=1e-6)

    def test_subclass_weight_trains_in_fit(self, name):
        ours_kwargs, _, _ = KERAS_TWINS[name]
        keras.utils.set_random_seed(0)
        layer = scaled_subclass(getattr(L, name))(**ours_kwargs)
        model = keras.Sequential([keras.Input((5,)), layer, keras.layers.Dense(1)])
        model.compile(keras.optimizers.SGD(0.1), loss="mse")
        model.fit(sample(seed=10), np.ones((6, 1), "float32"), epochs=2, verbose=0)
        assert any(w is layer.k for w in model.trainable_weights)
        assert float(layer.k.numpy()) != 1.0


def test_issue_example_subclass_of_elu():
    class S(L.ELU):
        def build(self, s):
            self.k = self.add_weight(shape=(), initializer="ones")

        def call(self, x):
            return super().call(x) * self.k

    x = np.ones((2, 3), "float32")
    np.testing.assert_array_equal(S()(x).numpy(), x)


class TestPReLU:
    def test_alpha_starts_at_quarter_as_he_et_al(self):
        layer = L.PReLU()
        layer.build((None, 3, 4))
        np.testing.assert_array_equal(layer.alpha.numpy(), np.full((3, 4), 0.25, "float32"))

    def test_shared_axes_give_one_alpha_per_channel(self):
        layer = L.PReLU(shared_axes=[1, 2])
        layer.build((None, 8, 8, 3))
        assert tuple(layer.alpha.shape) == (1, 1, 3)

    def test_alpha_grad_in_model_matches_hand_formula(self):
        layer = L.PReLU(shared_axes=[1])
        x = tf.constant(sample((4, 3, 5), seed=4))
        layer.build(x.shape)
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer(x))
        (ga,) = tape.gradient(loss, [layer.alpha])
        # d/dalpha of sum(prelu) = sum of min(x, 0) over the shared (and batch) axes.
        expected = np.minimum(x.numpy(), 0).sum(axis=(0, 1)).reshape(1, 5)
        np.testing.assert_allclose(ga.numpy(), expected, rtol=1e-5)

    def test_regularizer_and_constraint_are_applied_and_kept(self):
        layer = L.PReLU(alpha_regularizer=keras.regularizers.L2(0.1),
                        alpha_constraint=keras.constraints.NonNeg(), shared_axes=1)
        layer(sample((2, 3, 4)))
        assert float(sum(layer.losses)) == pytest.approx(0.1 * 4 * 0.25 ** 2, rel=1e-6)
        config = layer.get_config()
        assert config["shared_axes"] == [1]
        clone = L.PReLU.from_config(config)
        assert isinstance(clone.alpha_constraint, keras.constraints.NonNeg)
        assert isinstance(clone.alpha_regularizer, keras.regularizers.L2)

    def test_shared_axes_out_of_range_raises(self):
        with pytest.raises(ValueError, match=r"`shared_axes`=\[3\] is out of range for inputs of rank 3"):
            L.PReLU(shared_axes=[3]).build((None, 4, 5))

    def test_unknown_dim_without_sharing_raises(self):
        with pytest.raises(ValueError, match="add 1 to `shared_axes`"):
            L.PReLU().build((None, None, 5))


def _keras_softmax_masks_as_today():
    """Whether this Keras's Softmax refuses a mask that cannot apply and zeroes a fully masked
    row -- the behaviour keras_afl's Softmax follows (Keras 3.7 broadcast such masks or failed
    inside TensorFlow, and gave a fully masked row a uniform 1/K)."""
    x = np.zeros((1, 3), "float32")
    try:
        keras.layers.Softmax()(x, mask=np.ones((2, 4), bool))
    except ValueError:
        pass
    except Exception:  # noqa: BLE001 - TensorFlow's own shape error: the old behaviour
        return False
    else:
        return False
    return bool(np.all(keras.layers.Softmax()(x, mask=np.zeros((1, 3), bool)).numpy() == 0))


KERAS_MASKS_AS_TODAY = _keras_softmax_masks_as_today()
as_todays_keras = pytest.mark.skipif(
    not KERAS_MASKS_AS_TODAY,
    reason=f"Keras {keras.version()} predates the Softmax mask checks that the comparison needs")


class TestSoftmaxMask:
    def test_mask_matches_keras_softmax(self):
        x = sample((3, 6), seed=5)
        mask = np.random.default_rng(6).random((3, 6)) > 0.3
        mask[:, 0] = True
        ours = L.Softmax()(x, mask=mask).numpy()
        theirs = keras.layers.Softmax()(x, mask=mask).numpy()
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-7)
        assert np.all(ours[~mask] == 0.0)
        np.testing.assert_allclose(ours.sum(axis=-1), 1.0, rtol=1e-6)

    def test_masked_positions_get_no_grad(self):
        x = tf.constant(sample((2, 4), seed=7))
        mask = tf.constant([[True, True, False, True], [True, False, False, True]])
        up = tf.constant(np.random.default_rng(8).normal(size=(2, 4)).astype("float32"))
        _, (g,) = grads(lambda t: L.Softmax()(t, mask=mask), x, upstream=up)
        assert np.all(g.numpy()[~mask.numpy()] == 0.0)

    @as_todays_keras
    @pytest.mark.parametrize("x_shape, mask_shape", [((1, 3), (2, 3)), ((2, 3), (2, 4)),
                                                     ((2, 3), (1, 2, 3)), ((2, 3), (2, 3, 1))])
    def test_mask_that_cannot_apply_raises_naming_both_shapes_as_keras(self, x_shape, mask_shape):
        x, mask = np.ones(x_shape, "float32"), np.ones(mask_shape, bool)
        with pytest.raises(ValueError) as theirs:
            keras.layers.Softmax()(x, mask=mask)
        with pytest.raises(ValueError) as ours:
            L.Softmax()(x, mask=mask)
        for shapes in (f"inputs.shape={x_shape}", f"mask.shape={mask_shape}"):
            assert shapes in str(theirs.value) and shapes in str(ours.value)
        assert "Fix:" in str(ours.value)

    @as_todays_keras
    @pytest.mark.parametrize("mask_shape", [(3,), (1, 3), (4, 1), (1, 1)])
    def test_broadcast_masks_match_keras(self, mask_shape):
        x = sample((4, 3), seed=11)
        mask = np.random.default_rng(12).random(mask_shape) > 0.4
        ours = L.Softmax()(x, mask=mask).numpy()
        np.testing.assert_allclose(ours, keras.layers.Softmax()(x, mask=mask).numpy(), rtol=1e-6, atol=1e-7)

    @as_todays_keras
    def test_timestep_mask_is_broadcast_over_the_last_axis(self):
        # Keras's Softmax refuses a (batch, timesteps) mask on (batch, timesteps, classes)
        # inputs; ours reads it as (batch, timesteps, 1), which Keras itself applies.
        x = sample((8, 6, 3), seed=13)
        mask = np.random.default_rng(14).random((8, 6)) > 0.3
        with pytest.raises(ValueError):
            keras.layers.Softmax()(x, mask=mask)
        ours = L.Softmax()(x, mask=mask).numpy()
        expected = keras.layers.Softmax()(x, mask=mask[..., None]).numpy()
        np.testing.assert_allclose(ours, expected, rtol=1e-6, atol=1e-7)
        assert np.all(ours[~mask] == 0.0)

    @pytest.mark.parametrize("classes", [3, 6], ids=["3_classes", "classes_eq_timesteps"])
    @pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])
    def test_masking_layer_timestep_mask_in_fit(self, classes, jit_compile):
        rng = np.random.default_rng(15)
        x = rng.normal(size=(8, 6, 4)).astype("float32")
        lengths = rng.integers(2, 7, size=8)
        padded = np.arange(6)[None, :] >= lengths[:, None]
        x[padded] = 0.0
        y = np.eye(classes, dtype="float32")[rng.integers(0, classes, size=(8, 6))]
        keras.utils.set_random_seed(0)
        dense = keras.layers.Dense(classes)
        model = keras.Sequential([keras.Input((6, 4)), keras.layers.Masking(0.0), dense, L.Softmax()])
        model.compile("adam", loss="categorical_crossentropy", jit_compile=jit_compile)
        hist = model.fit(x, y, batch_size=4, epochs=2, verbose=0)
        assert np.all(np.isfinite(hist.history["loss"]))
        p = model.predict(x, batch_size=4, verbose=0)
        kernel, bias = (w.numpy() for w in dense.weights)
        expected = np.where(padded[..., None], 0.0, np_softmax(x @ kernel + bias))
        np.testing.assert_allclose(p, expected, rtol=1e-5, atol=1e-6)

    @pytest.mark.parametrize("axis", [0, -1])
    def test_masked_output_logits_only_for_keras_last_axis_loss(self, axis):
        # Keras's CCE reads `_keras_logits` as last-axis logits: a masked softmax over axis 0
        # must not offer them. Reference: the same probabilities and mask, without logits.
        x = sample((3, 3), seed=16)
        mask = np.array([[1, 1, 0], [1, 1, 1], [0, 1, 1]], bool)
        y_true = np.eye(3, dtype="float32")
        p = L.Softmax(axis=axis)(x, mask=mask)
        plain = tf.constant(p.numpy())
        if getattr(p, "_keras_mask", None) is not None:  # Keras 3.7 sets no mask on eager outputs
            plain._keras_mask = p._keras_mask
        loss = keras.losses.CategoricalCrossentropy()
        assert float(loss(y_true, p)) == pytest.approx(float(loss(y_true, plain)), rel=1e-5)

    def test_tuple_axis_config_round_trip(self):
        layer = L.Softmax(axis=(1, 2))
        assert L.Softmax.from_config(layer.get_config()).axis == (1, 2)


class TestLogitsFromLayers:
    def test_keras_bce_after_sigmoid_layer_is_exact(self):
        # label 0, logit 20: BCE = softplus(20) ~= 20 (Keras's clipped path would give 15.94).
        y = L.Sigmoid()(np.array([[20.0]], "float32"))
        assert float(keras.losses.BinaryCrossentropy()(np.zeros((1, 1)), y)) == pytest.approx(20.0, rel=1e-6)

    def test_keras_bce_after_sigmoid_layer_in_fit_has_live_grad(self):
        # A model whose sigmoid saturates still trains through the logits path.
        keras.utils.set_random_seed(1)
        model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, kernel_initializer="ones",
                                                                         bias_initializer=keras.initializers.Constant(30.0)),
                                  L.Sigmoid()])
        model.compile(keras.optimizers.SGD(0.1), loss="binary_crossentropy")
        x, y = np.zeros((8, 1), "float32"), np.zeros((8, 1), "float32")
        before = float(model.layers[0].bias.numpy()[0])
        model.fit(x, y, epochs=1, batch_size=8, verbose=0)
        after = float(model.layers[0].bias.numpy()[0])
        assert before - after == pytest.approx(0.1, rel=1e-3)  # gradient sigma(30) - 0 ~= 1


class TestBadSettings:
    def test_leaky_slope_type(self):
        with pytest.raises(TypeError, match=r"`negative_slope` must be a real number; received 'x'"):
            L.LeakyReLU(negative_slope="x")

    @pytest.mark.parametrize("slope", [-0.1, -1e-9, -2.0])
    def test_negative_leaky_slope_raises_as_keras(self, slope):
        with pytest.raises(ValueError, match=f"negative_slope={slope}"):
            keras.layers.LeakyReLU(negative_slope=slope)
        with pytest.raises(ValueError, match=rf"`negative_slope` must be >= 0.*received {slope}\. Fix:"):
            L.LeakyReLU(negative_slope=slope)

    def test_negative_leaky_slope_in_a_train_config_is_a_config_error(self):
        # The command line builds this layer from YAML: the slope is refused with the key, not a traceback.
        with open(os.path.join(REPO, "configs", "hinge_svm.yaml")) as f:
            raw = yaml.safe_load(f)
        raw["model"]["layers"].insert(1, {"type": "leaky_relu", "negative_slope": -0.1})
        with pytest.raises(cli_config.ConfigError, match=r"model.layers\[1\].negative_slope: value -0.1"):
            cli_config.validate(raw, "c.yaml")

    @pytest.mark.parametrize("slope", [0.0, 1.5])
    def test_zero_and_large_leaky_slopes_are_accepted_as_keras(self, slope):
        x = np.array([[-2.0, 3.0]], "float32")
        want = keras.layers.LeakyReLU(negative_slope=slope)(x).numpy()
        np.testing.assert_allclose(L.LeakyReLU(negative_slope=slope)(x).numpy(), want)

    def test_elu_alpha_range(self):
        with pytest.raises(ValueError, match=r"`alpha`.*received -0.5"):
            L.ELU(alpha=-0.5)

    def test_softmax_axis_type(self):
        with pytest.raises(TypeError, match=r"`axis` must be an int or a tuple of ints; received 1.5"):
            L.Softmax(axis=1.5)


def test_every_layer_class_is_tested_here():
    assert set(L.__all__) == set(LAYERS)
