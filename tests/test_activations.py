"""keras_afl.activations: values, analytic gradients, higher order, dtypes, modes, errors."""

import functools

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_afl
from keras_afl import activations as A
from tests._checks import (
    FLOAT_DTYPES, custom_gradient_ops, grads, hvp, numeric_jacobian_error, tolerance,
)

LAM, ALF = 1.0507009873554805, 1.6732632423543772


def np_softmax(x, axis=-1):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


# name -> (keras_afl function, NumPy reference, plain TF formula differentiated by autodiff)
CASES = {
    "relu": (A.relu, lambda x: np.maximum(x, 0), lambda x: tf.maximum(x, tf.zeros_like(x))),
    "leaky_relu": (
        functools.partial(A.leaky_relu, negative_slope=0.2),
        lambda x: np.where(x > 0, x, 0.2 * x),
        lambda x: tf.where(x > 0, x, 0.2 * x),
    ),
    "sigmoid": (A.sigmoid, lambda x: 1 / (1 + np.exp(-x)), lambda x: 1 / (1 + tf.exp(-x))),
    "tanh": (A.tanh, np.tanh, lambda x: (tf.exp(x) - tf.exp(-x)) / (tf.exp(x) + tf.exp(-x))),
    "softmax": (A.softmax, np_softmax, lambda x: tf.exp(x) / tf.reduce_sum(tf.exp(x), -1, keepdims=True)),
    "softmax_axis0": (
        functools.partial(A.softmax, axis=0),
        functools.partial(np_softmax, axis=0),
        lambda x: tf.exp(x) / tf.reduce_sum(tf.exp(x), 0, keepdims=True),
    ),
    "elu": (A.elu, lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0))),
            lambda x: tf.where(x > 0, x, tf.exp(tf.minimum(x, 0.0)) - 1)),
    "elu_alpha": (
        functools.partial(A.elu, alpha=0.7),
        lambda x: np.where(x > 0, x, 0.7 * np.expm1(np.minimum(x, 0))),
        lambda x: tf.where(x > 0, x, 0.7 * (tf.exp(tf.minimum(x, 0.0)) - 1)),
    ),
    "selu": (A.selu, lambda x: LAM * np.where(x > 0, x, ALF * np.expm1(np.minimum(x, 0))),
             lambda x: LAM * tf.where(x > 0, x, ALF * (tf.exp(tf.minimum(x, 0.0)) - 1))),
    "prelu": (
        lambda x: A.prelu(x, tf.constant([0.1, 0.2, 0.3, 0.4, 0.5], x.dtype)),
        lambda x: np.where(x > 0, x, np.array([0.1, 0.2, 0.3, 0.4, 0.5]) * x),
        lambda x: tf.where(x > 0, x, tf.constant([0.1, 0.2, 0.3, 0.4, 0.5], x.dtype) * x),
    ),
}
NAMES = sorted(CASES)


def sample(seed=0, shape=(4, 5)):
    """Random points kept 0.05 away from the kinks at 0."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-4, 4, size=shape)
    return np.where(np.abs(x) < 0.05, 0.5, x)


@pytest.mark.parametrize("name", NAMES)
class TestEveryActivation:
    def test_values_match_numpy(self, name):
        fn, ref, _ = CASES[name]
        x = sample()
        np.testing.assert_allclose(fn(tf.constant(x)).numpy(), ref(x), rtol=1e-12, atol=1e-12)

    def test_grad_matches_central_differences(self, name):
        fn, _, _ = CASES[name]
        assert numeric_jacobian_error(fn, sample(1)) < 1e-7

    def test_grad_matches_autodiff_of_plain_formula(self, name):
        fn, _, plain = CASES[name]
        x = tf.constant(sample(2))
        up = tf.constant(np.random.default_rng(3).normal(size=x.shape))
        _, (g,) = grads(fn, x, upstream=up)
        _, (g_ref,) = grads(plain, x, upstream=up)
        np.testing.assert_allclose(g.numpy(), g_ref.numpy(), rtol=1e-10, atol=1e-12)

    def test_second_derivative_grad_matches_autodiff(self, name):
        fn, _, plain = CASES[name]
        x = tf.constant(sample(4))
        v = tf.constant(np.random.default_rng(5).normal(size=x.shape))
        weights = tf.constant(np.random.default_rng(6).normal(size=x.shape))
        h = hvp(lambda t: fn(t) * weights, x, v)
        h_ref = hvp(lambda t: plain(t) * weights, x, v)
        np.testing.assert_allclose(h.numpy(), h_ref.numpy(), rtol=1e-9, atol=1e-10)

    def test_graph_holds_the_custom_gradient(self, name):
        fn, _, _ = CASES[name]
        ops = custom_gradient_ops(fn, tf.TensorSpec([4, 5], tf.float32))
        assert len(ops) == 1, [op.type for op in ops]

    def test_eager_function_and_xla_agree_grad(self, name):
        fn, _, _ = CASES[name]
        x = tf.constant(sample(7), tf.float32)

        def value_and_grad(x):
            y, (g,) = grads(fn, x)
            return y, g

        y0, g0 = value_and_grad(x)
        for compiled in (tf.function(value_and_grad), tf.function(value_and_grad, jit_compile=True)):
            y1, g1 = compiled(x)
            np.testing.assert_allclose(y1.numpy(), y0.numpy(), rtol=1e-6, atol=1e-7)
            # atol: XLA's own tanh/exp differ from TF's kernels by ~1 ulp, which
            # 1 - y**2 near saturation turns into ~1e-7 absolute.
            np.testing.assert_allclose(g1.numpy(), g0.numpy(), rtol=1e-6, atol=1e-6)

    @pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: d.name)
    def test_dtype_preserved_and_values_close_grad(self, name, dtype):
        fn, ref, plain = CASES[name]
        x64 = sample(8)
        x = tf.cast(tf.constant(x64), dtype)
        y, (g,) = grads(fn, x)
        assert y.dtype == dtype and g.dtype == dtype
        # Compare with the float64 reference at the *rounded* input.
        xr = tf.cast(x, tf.float64)
        _, (g_ref,) = grads(plain, xr)
        rtol, atol = tolerance(dtype)
        np.testing.assert_allclose(tf.cast(y, tf.float64).numpy(), ref(xr.numpy()), rtol=rtol, atol=atol * 4)
        np.testing.assert_allclose(tf.cast(g, tf.float64).numpy(), g_ref.numpy(), rtol=rtol, atol=atol * 4)


class TestConventionsAtKinks:
    """Documented derivative values exactly at x = 0 (TensorFlow's conventions)."""

    @pytest.mark.parametrize(
        "fn, expected",
        [
            (A.relu, 0.0),
            (functools.partial(A.leaky_relu, negative_slope=0.3), 0.3),
            (lambda x: A.prelu(x, tf.constant([0.25], x.dtype)), 0.25),
            (A.elu, 1.0),
            (functools.partial(A.elu, alpha=0.5), 1.0),
            (A.selu, LAM),
            (A.sigmoid, 0.25),  # sigma(0) (1 - sigma(0)) = 1/4 by hand
            (A.tanh, 1.0),
        ],
    )
    def test_grad_at_zero(self, fn, expected):
        _, (g,) = grads(fn, tf.zeros([1], tf.float64))
        assert g.numpy()[0] == pytest.approx(expected, rel=1e-12)


# (unsigned type of the same width, bits of the smallest normal) per dtype: inputs built
# from bit patterns, since converting a Python float flushes subnormals in some dtypes.
BITS = {tf.float16: (tf.uint16, 0x0400), tf.bfloat16: (tf.uint16, 0x0080),
        tf.float32: (tf.uint32, 0x0080_0000), tf.float64: (tf.uint64, 0x0010_0000_0000_0000)}


def tiny_inputs(dtype):
    """-0, +-smallest subnormal, -largest subnormal, -smallest normal, then tiny to large normals."""
    uint, normal = BITS[dtype]
    sign = 1 << (uint.size * 8 - 1)
    bits = [sign, 1, sign | 1, sign | (normal - 1), sign | normal]
    edge = tf.bitcast(tf.constant(bits, uint), dtype)
    normals = tf.cast(tf.constant([-1e-30, -1e-8, -1e-4, -1e-3, -1.0, -30.0, 0.0, 1e-3, 2.0]), dtype)
    return tf.concat([edge, normals], 0)


def elu_grad_reference(x64, alpha):
    """elu'(x) from the exact input (NumPy float64, IEEE comparisons): 1 for x >= 0, alpha e^x below."""
    return np.where(x64 < 0, alpha * np.exp(np.minimum(x64, 0.0)), 1.0)


class TestEluBranchFromInput:
    """elu'(x) for x < 0 is alpha * e^x even where the output is -0.0 (alpha = 0) or underflows."""

    @pytest.mark.parametrize("mode", ["eager", "graph", "xla"])
    @pytest.mark.parametrize("alpha", [0.0, 1e-3, 0.5, 1.0, 2.0])
    @pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: d.name)
    def test_grad_matches_reference_at_tiny_negatives(self, dtype, alpha, mode):
        x = tiny_inputs(dtype)

        def value_and_grad(x):
            return grads(functools.partial(A.elu, alpha=alpha), x)

        if mode != "eager":
            value_and_grad = tf.function(value_and_grad, jit_compile=mode == "xla")
        _, (g,) = value_and_grad(x)
        # Widened in NumPy (exact, subnormals kept); tf.cast would flush them to zero.
        x_np = x.numpy()
        want = elu_grad_reference(x_np.astype(np.float64), alpha).astype(x_np.dtype).astype(np.float64)
        # y + alpha cancels where e^x is below alpha's rounding error (x = -30): absolute error ~ alpha * eps.
        # (eps by hand: finfo of bfloat16 needs ml_dtypes >= 0.4, newer than TF 2.16 ships with.)
        eps = {tf.float16: 2.0**-10, tf.bfloat16: 2.0**-7, tf.float32: 2.0**-23, tf.float64: 2.0**-52}[dtype]
        atol = 2 * alpha * eps
        np.testing.assert_allclose(g.numpy().astype(np.float64), want, rtol=tolerance(dtype)[0], atol=atol)

    @pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: d.name)
    def test_alpha_zero_is_relu_grad(self, dtype):
        x = tf.cast(tf.constant(sample(20)), dtype)
        _, (g,) = grads(functools.partial(A.elu, alpha=0.0), x)
        _, (g_relu,) = grads(A.relu, x)
        np.testing.assert_array_equal(tf.cast(g, tf.float32).numpy(), tf.cast(g_relu, tf.float32).numpy())

    def test_alpha_zero_layer_from_config_grad(self):
        layer = keras_afl.layers.ELU.from_config(keras_afl.layers.ELU(alpha=0.0).get_config())
        x = tf.constant([[-2.0, -1e-30, 0.0, 3.0]])
        y, (g,) = grads(layer, x)
        np.testing.assert_array_equal(y.numpy(), [[0.0, 0.0, 0.0, 3.0]])
        np.testing.assert_array_equal(g.numpy(), [[0.0, 0.0, 1.0, 1.0]])


class TestSaturation:
    @pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: d.name)
    def test_huge_inputs_stay_finite_grad(self, dtype):
        x = tf.cast(tf.constant([-1e4, -88.0, -20.0, 20.0, 88.0, 1e4]), dtype)
        for fn in (A.relu, A.leaky_relu, A.sigmoid, A.tanh, A.softmax, A.elu,
                   functools.partial(A.elu, alpha=0.5), A.selu):
            y, (g,) = grads(fn, x)
            assert np.all(np.isfinite(tf.cast(y, tf.float32).numpy())), fn
            assert np.all(np.isfinite(tf.cast(g, tf.float32).numpy())), fn

    def test_softmax_of_huge_logits_is_exact_one_hot(self):
        y = A.softmax(tf.constant([[1e4, 0.0, -1e4]]))
        np.testing.assert_array_equal(y.numpy(), [[1.0, 0.0, 0.0]])

    def test_nan_input_gives_nan_output(self):
        x = tf.constant([np.nan, 1.0])
        for fn in (A.relu, A.leaky_relu, A.sigmoid, A.tanh, A.elu, A.selu,
                   functools.partial(A.elu, alpha=0.5)):
            assert np.isnan(fn(x).numpy()[0]), fn


class TestPReLUFunction:
    def test_alpha_grad_summed_to_alpha_shape(self):
        x = tf.constant(sample(9, (3, 4, 5)))
        alpha = tf.constant(np.full((1, 5), 0.3))
        up = tf.constant(np.random.default_rng(1).normal(size=(3, 4, 5)))
        _, (gx, ga) = grads(A.prelu, x, alpha, upstream=up)
        assert ga.shape == alpha.shape
        # Hand formula: d/dalpha = sum of upstream * min(x, 0) over the broadcast axes.
        expected = np.sum(up.numpy() * np.minimum(x.numpy(), 0), axis=(0, 1)).reshape(1, 5)
        np.testing.assert_allclose(ga.numpy(), expected, rtol=1e-12)

    def test_alpha_grad_matches_central_differences(self):
        err = numeric_jacobian_error(A.prelu, sample(10, (3, 5)), np.linspace(0.1, 0.5, 5))
        assert err < 1e-7

    def test_alpha_second_derivative_grad_matches_autodiff(self):
        x = tf.constant(sample(11, (3, 5)))
        alpha = tf.constant(np.linspace(0.1, 0.5, 5))

        def mixed(fn):
            with tf.GradientTape() as outer:
                outer.watch(alpha)
                with tf.GradientTape() as inner:
                    inner.watch(x)
                    y = tf.reduce_sum(fn(x, alpha) ** 2)
                gx = inner.gradient(y, x)
                s = tf.reduce_sum(gx)
            return outer.gradient(s, alpha)

        got = mixed(A.prelu)
        want = mixed(lambda x, a: tf.where(x > 0, x, a * x))
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-10)

    def test_unbroadcastable_alpha_raises_naming_both_shapes(self):
        with pytest.raises(ValueError, match=r"`alpha` of shape \(3,\).*\(2, 5\)"):
            A.prelu(tf.zeros([2, 5]), tf.zeros([3]))


class TestLogitsCarried:
    def test_keras_bce_on_our_sigmoid_takes_logits_path(self):
        # BCE(label 0, logit 20) = softplus(20) = 20 + log1p(exp(-20)) ~= 20.000000002.
        y = A.sigmoid(tf.constant([[20.0]]))
        loss = keras.losses.BinaryCrossentropy()(tf.constant([[0.0]]), y)
        assert float(loss) == pytest.approx(20.0, rel=1e-6)

    def test_keras_cce_on_our_softmax_takes_logits_path(self):
        # CCE(true class 2, logits (30, 0, -30)) = logsumexp - (-30) ~= 60.
        y = A.softmax(tf.constant([[30.0, 0.0, -30.0]]))
        loss = keras.losses.CategoricalCrossentropy()(tf.constant([[0.0, 0.0, 1.0]]), y)
        assert float(loss) == pytest.approx(60.0, rel=1e-6)


class TestBadInput:
    @pytest.mark.parametrize("fn", [A.relu, A.sigmoid, A.tanh, A.softmax, A.elu, A.selu, A.leaky_relu])
    @pytest.mark.parametrize("value", [np.array([1, 2], np.int32), np.array([True]), tf.constant(["a"])],
                             ids=["int", "bool", "string"])
    def test_non_float_input_raises_type_error(self, fn, value):
        with pytest.raises(TypeError, match=r"`x` must have a floating-point dtype"):
            fn(value)

    def test_python_list_is_float32(self):
        assert A.relu([1, 2]).dtype == tf.float32

    def test_numpy_float64_stays_float64(self):
        assert A.relu(np.array([1.0, -2.0])).dtype == tf.float64

    @pytest.mark.parametrize("bad", [float("nan"), float("inf"), "0.1", None])
    def test_bad_negative_slope(self, bad):
        with pytest.raises((ValueError, TypeError), match="negative_slope"):
            A.leaky_relu([1.0], negative_slope=bad)

    @pytest.mark.parametrize("dtype", [tf.float32, tf.float64], ids=lambda d: d.name)
    def test_negative_slope_accepted_as_keras_function_grad(self, dtype):
        x = tf.constant([-2.0, -0.5, 0.0, 3.0], dtype)
        y, (g,) = grads(functools.partial(A.leaky_relu, negative_slope=-0.3), x)
        want = keras.activations.leaky_relu(x, negative_slope=-0.3)
        np.testing.assert_allclose(y.numpy(), want.numpy(), rtol=1e-6)
        np.testing.assert_allclose(g.numpy(), [-0.3, -0.3, -0.3, 1.0], rtol=1e-6)  # slope at 0, as TF

    def test_negative_elu_alpha(self):
        with pytest.raises(ValueError, match=r"`alpha` must be a finite number in \[0.0, inf\]; received -1.0"):
            A.elu([1.0], alpha=-1.0)

    def test_softmax_axis_out_of_range(self):
        with pytest.raises(ValueError, match=r"`axis`=2 is out of range for an input of rank 2"):
            A.softmax(tf.zeros([2, 3]), axis=2)

    def test_softmax_axis_tuple_matches_numpy(self):
        x = sample(12, (2, 3, 4))
        want = np.exp(x) / np.exp(x).sum(axis=(1, 2), keepdims=True)
        np.testing.assert_allclose(A.softmax(tf.constant(x), axis=(1, 2)).numpy(), want, rtol=1e-12)
        err = numeric_jacobian_error(lambda t: A.softmax(t, axis=(1, 2)), x)
        assert err < 1e-7


def test_every_registered_activation_is_tested_here():
    tested = {"afl_" + n for n in CASES} | {"afl_softmax"}
    registered = {e.name for e in keras_afl.entries("activation")}
    assert registered <= tested, registered - tested
