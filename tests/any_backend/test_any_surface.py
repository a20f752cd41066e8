"""What a user touches, on the backend this process runs (tests/test_any_backend.py runs this file
on JAX and PyTorch too): activations and layers, string names in models, compile/fit/evaluate/
predict with the backend's default jit setting and without jit, PReLU's learned slope,
use_as_builtins, lint, ActivationStats, save and reload. References: NumPy formulas and Keras's
own built-ins in the same process."""

from __future__ import annotations

import numpy as np
import pytest

import keras
import keras_afl
from tests.any_backend._util import BACKEND, focal_reference, sigmoid, to_np, value_and_grads

A = keras_afl.activations
X = np.array([[-30.0, -3.0, -0.5, 0.0, 0.2, 2.0, 30.0]])


def _elu(x, a=1.0):
    return np.where(x > 0, x, a * np.expm1(np.minimum(x, 0)))


def _elu_grad(x, a=1.0):
    return np.where(x >= 0, 1.0, a * np.exp(np.minimum(x, 0)))


LAM, ALP = 1.0507009873554804934193349852946, 1.6732632423543772848170429916717
# name -> (function, NumPy value, NumPy derivative); kinks as TensorFlow's kernels.
ACTIVATIONS = {
    "relu": (A.relu, lambda x: np.maximum(x, 0), lambda x: (x > 0).astype(float)),
    "leaky_relu": (lambda x: A.leaky_relu(x, 0.1), lambda x: np.where(x > 0, x, 0.1 * x),
                   lambda x: np.where(x > 0, 1.0, 0.1)),
    "sigmoid": (A.sigmoid, sigmoid, lambda x: sigmoid(x) * sigmoid(-x)),
    "tanh": (A.tanh, np.tanh, lambda x: 1.0 / np.cosh(x) ** 2),
    "elu": (lambda x: A.elu(x, 0.5), lambda x: _elu(x, 0.5), lambda x: _elu_grad(x, 0.5)),
    "selu": (A.selu, lambda x: LAM * _elu(x, ALP), lambda x: LAM * _elu_grad(x, ALP)),
}


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_activation_values_and_gradients_match_numpy(name, dtype):
    fn, value, deriv = ACTIVATIONS[name]
    x = X.astype(dtype)
    g = np.linspace(-1.0, 2.0, x.size).reshape(x.shape).astype(dtype)
    y, (dx,) = value_and_grads(fn, x, upstream=g)
    tol = 1e-6 if dtype == "float32" else 1e-12
    assert y.dtype == np.dtype(dtype)
    np.testing.assert_allclose(y, value(X), rtol=tol, atol=tol)
    np.testing.assert_allclose(dx, g * deriv(X), rtol=tol, atol=tol)


def test_softmax_and_prelu_gradients_match_numpy():
    z = np.array([[1.0, 2.0, -1.0], [1e3, 0.0, -1e3]])
    g = np.array([[0.3, -1.0, 2.0], [1.0, 0.5, -0.5]])
    y, (dz,) = value_and_grads(A.softmax, z, upstream=g)
    e = np.exp(z - z.max(-1, keepdims=True))
    s = e / e.sum(-1, keepdims=True)
    np.testing.assert_allclose(y, s, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(dz, s * (g - (g * s).sum(-1, keepdims=True)), rtol=1e-12, atol=1e-15)
    x = np.array([[-2.0, 3.0], [-0.5, -4.0]])
    alpha = np.array([0.25, 0.1])
    y, (dx, da) = value_and_grads(A.prelu, x, alpha, upstream=g[:, :2])
    np.testing.assert_allclose(y, np.where(x > 0, x, alpha * x))
    np.testing.assert_allclose(dx, g[:, :2] * np.where(x > 0, 1.0, alpha))
    np.testing.assert_allclose(da, (g[:, :2] * np.minimum(x, 0)).sum(0))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_is_preserved(dtype):
    for name, (fn, _, _) in ACTIVATIONS.items():
        y = fn(keras.ops.cast(keras.ops.convert_to_tensor(X), dtype))
        assert keras.backend.standardize_dtype(y.dtype) == dtype, name


def test_bad_input_is_a_clear_error():
    with pytest.raises(TypeError, match="floating-point"):
        A.relu(np.array([1, 2], np.int32))
    with pytest.raises(ValueError, match="alpha"):
        A.elu(np.zeros(2, np.float32), alpha=-1.0)
    with pytest.raises(ValueError, match="alpha"):
        A.prelu(np.zeros((2, 3), np.float32), np.zeros(2, np.float32))
    with pytest.raises(ValueError, match="gamma"):
        keras_afl.losses.FocalLoss(gamma=-1.0)


def _model(loss="focal", metrics=("afl_bce",), jit_compile="auto", seed=0):
    keras.utils.set_random_seed(seed)
    L = keras_afl.layers
    model = keras.Sequential([
        keras.Input((6,)),
        keras.layers.Dense(8, activation="afl_relu"),
        L.LeakyReLU(0.1), L.PReLU(), L.ELU(0.5), L.SELU(), L.Tanh(), L.ReLU(),
        keras.layers.Dense(8, activation="afl_elu"),
        keras.layers.Dense(3, activation="afl_sigmoid"),
    ])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss, metrics=list(metrics),
                  jit_compile=jit_compile)
    return model


def _data(n=32, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype("float32")
    y = (rng.random((n, 3)) < 0.3).astype("float32")
    return x, y


@pytest.mark.parametrize("jit_compile", ["auto", False])
def test_fit_evaluate_predict_with_string_names(jit_compile):
    x, y = _data()
    model = _model(jit_compile=jit_compile)
    history = model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    p = model.predict(x, verbose=0)
    logs = model.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)
    # evaluate's loss and metric from the predictions, by the formulas (NumPy, float64):
    # the output carries its logits on PyTorch and TensorFlow, so the losses use them there:
    # equal to float32 rounding either way.
    np.testing.assert_allclose(logs["loss"], focal_reference(y, p).mean(), rtol=2e-5)
    eps = keras.config.epsilon()
    pc = np.clip(p.astype(np.float64), eps, 1 - eps)
    bce = np.mean(-(y * np.log(pc) + (1 - y) * np.log(1 - pc)), -1).mean()
    np.testing.assert_allclose(logs["afl_bce"], bce, rtol=2e-5)


def test_prelu_slope_learns_by_its_analytic_gradient():
    x = np.array([[-2.0, 1.0], [-1.0, -3.0], [0.5, -0.5]], np.float32)
    t = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 0.0]], np.float32)
    model = keras.Sequential([keras.Input((2,)), keras_afl.layers.PReLU(
        alpha_initializer=keras.initializers.Constant(0.25))])
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss="mse")
    model.train_on_batch(x, t)
    y = np.where(x > 0, x, 0.25 * x)
    # mse = mean_b mean_j (y - t)^2; d/dalpha_j = mean_b (2 / 2) (y - t) min(x, 0) / B... per unit j:
    grad = (2.0 / x.shape[1]) * ((y - t) * np.minimum(x, 0)).sum(0) / x.shape[0]
    np.testing.assert_allclose(to_np(model.layers[0].alpha), 0.25 - grad, rtol=1e-6)


KERAS_PAIRS = [  # (keras_afl loss, Keras's built-in with the same semantics, labels kind)
    (lambda: keras_afl.losses.MeanSquaredError(), lambda: keras.losses.MeanSquaredError(), "real"),
    (lambda: keras_afl.losses.Huber(), lambda: keras.losses.Huber(), "real"),
    (lambda: keras_afl.losses.Hinge(), lambda: keras.losses.Hinge(), "binary"),
    (lambda: keras_afl.losses.BinaryCrossentropy(), lambda: keras.losses.BinaryCrossentropy(),
     "binary"),
    (lambda: keras_afl.losses.FocalLoss(apply_class_balancing=False),
     lambda: keras.losses.BinaryFocalCrossentropy(), "binary"),
    (lambda: keras_afl.losses.CategoricalCrossentropy(),
     lambda: keras.losses.CategoricalCrossentropy(), "onehot"),
    (lambda: keras_afl.losses.CategoricalFocalLoss(alpha=0.25),
     lambda: keras.losses.CategoricalFocalCrossentropy(), "onehot"),
    (lambda: keras_afl.losses.SparseCategoricalCrossentropy(),
     lambda: keras.losses.SparseCategoricalCrossentropy(), "sparse"),
]


@pytest.mark.parametrize("pair", range(len(KERAS_PAIRS)))
def test_losses_equal_keras_builtins_on_ordinary_inputs(pair):
    ours, theirs, kind = (f() if callable(f) else f for f in KERAS_PAIRS[pair])
    rng = np.random.default_rng(pair)
    p = rng.uniform(0.05, 0.95, size=(5, 4)).astype("float32")
    if kind == "real":
        y = rng.normal(size=(5, 4)).astype("float32")
    elif kind == "binary":
        y = (rng.random((5, 4)) < 0.5).astype("float32")
    else:
        p = p / p.sum(-1, keepdims=True)
        ids = rng.integers(0, 4, size=5)
        y = np.eye(4, dtype="float32")[ids] if kind == "onehot" else ids
    w = rng.uniform(0.5, 2.0, size=5).astype("float32")
    got = to_np(ours(y, p, sample_weight=w))
    want = to_np(theirs(y, p, sample_weight=w))
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-7)


def test_bad_labels_raise_naming_the_fix():
    p = np.full((2, 2), 0.5, np.float32)
    with pytest.raises(ValueError, match="y_true"):
        keras_afl.losses.focal(np.array([[0.0, 2.0], [1.0, 0.0]], np.float32), p)
    with pytest.raises(ValueError, match="y_true"):
        keras_afl.losses.sparse_categorical_crossentropy(np.array([0, 5]), p)


def test_use_as_builtins_swaps_keras_names():
    with keras_afl.use_as_builtins():
        assert keras.activations.get("relu") is keras_afl.activations.relu
        assert type(keras.losses.get("binary_crossentropy")) is not type(keras.losses.get("mse"))
    assert keras.activations.get("relu") is keras.activations.relu


def test_lint_flags_from_logits_on_a_probability_output():
    # An error on JAX, where fit/evaluate trace the model (jit by default) and a traced output
    # carries no logits; a warning where keras_afl's loss recovers them (TensorFlow, PyTorch).
    # Each matches what evaluate() computes.
    x, y = _data(8)
    loss = keras_afl.losses.FocalLoss(from_logits=True)
    model = _model(loss=loss, metrics=())
    (finding,) = [f for f in keras_afl.lint(model) if f.rule == "probability-output-from-logits"]
    p = to_np(model.predict(x, verbose=0))
    evaluated = model.evaluate(x, y, batch_size=8, verbose=0)
    if BACKEND == "jax":
        assert finding.severity == "error"
        as_logits = to_np(keras_afl.losses.FocalLoss(from_logits=True)(y, p))
        np.testing.assert_allclose(evaluated, as_logits, rtol=1e-5)
    else:
        assert finding.severity == "warning"
        np.testing.assert_allclose(evaluated, focal_reference(y, p).mean(), rtol=1e-5)


def test_activation_stats_figures_match_numpy():
    x, _ = _data(16)
    model = _model()
    stats = keras_afl.callbacks.ActivationStats(x)
    stats.set_model(model)
    figures = stats.compute()
    probe = keras.Model(model.inputs, model.layers[0].output)
    h = keras.ops.convert_to_numpy(probe(x))
    name = model.layers[0].name
    key = [k for k in figures if k.endswith("/mean") and name in k][0]
    np.testing.assert_allclose(figures[key], h.mean(), rtol=1e-5)
    dead = [k for k in figures if k.endswith("/dead_fraction") and name in k][0]
    np.testing.assert_allclose(figures[dead], 1.0 - np.mean(np.any(h > 0, axis=0)), rtol=1e-6)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_training_is_finite(policy):
    keras.mixed_precision.set_global_policy(policy)
    try:
        x, y = _data()
        model = _model(loss=keras_afl.losses.FocalLoss(gamma=0.5))
        history = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][0])
        assert keras.backend.standardize_dtype(model(x[:2]).dtype) == policy.split("_")[1]
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_keras_file_round_trip_in_this_process(tmp_path):
    x, y = _data()
    loss = keras_afl.losses.FocalLoss(gamma=1.5, alpha=0.4, label_smoothing=0.1)
    model = _model(loss=loss)
    model.fit(x, y, epochs=1, verbose=0)
    path = str(tmp_path / "m.keras")
    model.save(path)
    again = keras.saving.load_model(path)
    for saved, loaded in zip(model.get_weights(), again.get_weights(), strict=True):
        np.testing.assert_array_equal(loaded, saved)  # copied from the file: exact
    # Predictions to float32 rounding: a matrix product need not repeat its last bit.
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-6, atol=1e-6)
    assert again.loss.get_config() == loss.get_config()
