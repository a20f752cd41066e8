"""Bad labels never corrupt a model (issue 19, items 1-3 and the hinge labels of item 11), on the
backend this process runs (TensorFlow here; JAX and PyTorch in their own runs).

Every compile setting of `fit`: TensorFlow graph mode and `jit_compile=True`, JAX's jit, PyTorch
eager and `jit_compile=True` (torch.compile), and `run_eagerly=True`. A batch with a bad label
stops training with `keras_afl.losses.InvalidLabelsError` naming the loss, `y_true`, the bad value
and the fix; no weight, optimizer variable or non-trainable variable changes; and the model
trains and evaluates with good labels afterwards, as a model whose plain `keras.losses.Loss`
raised does.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import keras_afl
from keras_afl.losses import InvalidLabelsError

from tests.any_backend._util import BACKEND, to_np

SETTINGS = {"compiled": dict(jit_compile=True), "not_compiled": dict(jit_compile=False),
            "run_eagerly": dict(run_eagerly=True)}

# (loss, output units, output activation, good labels, bad labels, the bad value as printed)
CASES = {
    "focal": ("focal", 1, "afl_sigmoid", [[0.0], [1.0], [0.0], [1.0]],
              [[0.0], [1.0], [2.0], [1.0]], "2"),
    "afl_bce": ("afl_bce", 1, "afl_sigmoid", [[0.0], [1.0], [0.0], [1.0]],
                [[0.0], [-0.5], [0.0], [1.0]], "-0.5"),
    "sparse_ce": ("afl_sparse_categorical_crossentropy", 3, "afl_softmax", [0, 1, 2, 1],
                  [0, 1, 5, 1], "5"),
    "sparse_focal": (keras_afl.losses.SparseCategoricalFocalLoss(from_logits=True), 3, None,
                     [0, 1, 2, 1], [0, -1, 2, 1], "-1"),
    "hinge_auto": ("afl_hinge", 1, None, [[-1.0], [1.0], [-1.0], [1.0]],
                   [[-1.0], [1.0], [3.0], [1.0]], "3"),
}


def _model(case, setting):
    loss, units, activation, *_ = CASES[case]
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="afl_elu"),
                              keras.layers.BatchNormalization(),
                              keras.layers.Dense(units, activation=activation)])
    model.compile(keras.optimizers.Adam(0.05), loss=loss, **SETTINGS[setting])
    return model


def _state(model):
    """Every variable of the model and its optimizer, as NumPy arrays."""
    return [np.array(to_np(v.value)) for v in model.variables + model.optimizer.variables]


X = np.random.default_rng(0).normal(size=(4, 3)).astype("float32")


# Every compile setting for one dense and one sparse rule; the other losses on the setting each
# backend trains with by default (and TensorFlow under XLA too, its GPU default), to keep the suite
# short (torch.compile takes seconds a model).
DEFAULT = {"tensorflow": "not_compiled", "jax": "compiled", "torch": "not_compiled"}[BACKEND]
PAIRS = sorted({(case, setting) for case in ("focal", "sparse_ce") for setting in SETTINGS}
               | {(case, DEFAULT) for case in CASES} | {(case, "compiled") for case in CASES
                                                          if BACKEND == "tensorflow"})


@pytest.mark.parametrize("case, setting", PAIRS)
def test_a_bad_batch_raises_and_changes_no_weight(case, setting):
    _, _, _, good, bad, printed = CASES[case]
    model = _model(case, setting)
    good, bad = np.asarray(good, "float32"), np.asarray(bad, "float32")
    if case.startswith("sparse"):
        good, bad = good.astype("int32"), bad.astype("int32")
    model.fit(X, good, batch_size=4, epochs=2, verbose=0)  # momentum and moving stats set
    before = _state(model)
    with pytest.raises(InvalidLabelsError) as info:
        model.fit(X, bad, batch_size=4, epochs=1, verbose=0, shuffle=False)
    message = str(info.value)
    assert "`y_true`" in message and "Fix:" in message, message
    assert f"received {printed} at" in message, message
    loss_name = {"afl_bce": "binary_crossentropy", "sparse_ce": "sparse_categorical_crossentropy",
                 "sparse_focal": "sparse_categorical_focal", "hinge_auto": "hinge"}.get(case, case)
    assert message.startswith(loss_name), message
    after = _state(model)
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)  # not one variable moved, not even the iterations
    # ... and the model is still usable: it evaluates and trains on good labels.
    history = model.fit(X, good, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    assert np.isfinite(model.evaluate(X, good, verbose=0))
    assert all(np.isfinite(w).all() for w in _state(model))


@pytest.mark.parametrize("setting", sorted({DEFAULT, "compiled", "run_eagerly"}))
def test_evaluate_with_bad_labels_raises_and_leaves_the_model_usable(setting):
    model = _model("focal", setting)
    good = np.asarray(CASES["focal"][3], "float32")
    model.fit(X, good, batch_size=4, epochs=1, verbose=0)
    before = _state(model)
    with pytest.raises(InvalidLabelsError, match="focal: `y_true` must hold labels in"):
        model.evaluate(X, np.asarray(CASES["focal"][4], "float32"), verbose=0)
    for a, b in zip(before, _state(model)):
        np.testing.assert_array_equal(a, b)
    assert np.isfinite(model.evaluate(X, good, verbose=0))


@pytest.mark.parametrize("setting", sorted({DEFAULT, "compiled"}))
def test_a_bad_batch_inside_an_execution_of_several_steps_raises(setting):
    """steps_per_execution=3 with the bad batch in the middle of an execution: the error is not
    lost with the execution's last logs, and the model stays finite and usable."""
    if BACKEND == "torch":
        pytest.skip("Keras runs one step per execution on PyTorch (steps_per_execution must be 1)")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="afl_sigmoid")])
    model.compile(keras.optimizers.Adam(0.05), loss="focal", steps_per_execution=3,
                  **SETTINGS[setting])
    x = np.random.default_rng(1).normal(size=(12, 3)).astype("float32")
    y = np.array([0.0, 1.0] * 6, "float32")[:, None]
    model.fit(x, y, batch_size=2, epochs=1, verbose=0)
    bad = y.copy()
    bad[2] = 2.0  # batch 1 of execution 0
    with pytest.raises(InvalidLabelsError, match="received 2 at"):
        model.fit(x, bad, batch_size=2, epochs=1, verbose=0, shuffle=False)
    assert all(np.isfinite(w).all() for w in _state(model))
    assert np.isfinite(model.evaluate(x, y, verbose=0))


class _RaisingLoss(keras.losses.Loss):
    """A plain Keras loss that raises inside the step, as Keras's own bad-input errors do."""

    def call(self, y_true, y_pred):
        raise ValueError("plain loss refused the batch")


def test_a_plain_keras_loss_raising_eagerly_leaves_the_model_usable():
    """Item 2: after any error raised by a step (here: a plain loss, run eagerly), later
    evaluate() and fit() work (on JAX Keras used to leave the variables emptied)."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile("sgd", loss="mse", run_eagerly=True)
    model.fit(X, np.zeros((4, 1), "float32"), verbose=0)
    before = _state(model)
    model.compile("sgd", loss=_RaisingLoss(), run_eagerly=True)
    with pytest.raises(ValueError, match="plain loss refused"):
        model.fit(X, np.zeros((4, 1), "float32"), verbose=0)
    model.compile("sgd", loss="mse", run_eagerly=True)
    for a, b in zip(before[:2], _state(model)[:2]):
        np.testing.assert_array_equal(a, b)
    assert np.isfinite(model.evaluate(X, np.zeros((4, 1), "float32"), verbose=0))


FUNCTIONS = {  # name: (labels, kwargs)
    "mean_squared_error": ([[0.0, 1.0, 0.5], [1.0, 0.0, 0.25]], {}),
    "huber": ([[0.0, 1.0, 0.5], [1.0, 0.0, 0.25]], {}),
    "hinge": ([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]], {}),
    "binary_crossentropy": ([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]], {"from_logits": True}),
    "focal": ([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]], {"from_logits": True}),
    "categorical_crossentropy": ([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], {"from_logits": True}),
    "categorical_focal": ([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], {"from_logits": True}),
    "sparse_categorical_crossentropy": ([1, 0], {"from_logits": True}),
    "sparse_categorical_focal": ([2, 0], {"from_logits": True}),
}
LOGITS = np.array([[-1.5, 0.25, 2.0], [0.5, -0.75, 1.0]], "float32")


def _closed_over_grad(name):
    """The gradient of sum(loss) with the labels closed over (constants) by a compiled function
    (jax.jit / torch.compile / tf.function(jit_compile=True)), and the eager gradient."""
    labels, kwargs = FUNCTIONS[name]
    fn = getattr(keras_afl.losses, name)
    y = keras.ops.convert_to_tensor(np.asarray(labels, "int32" if name.startswith("sparse")
                                               else "float32"))
    if BACKEND == "jax":
        import jax

        grad = jax.grad(lambda x: fn(y, x, **kwargs).sum())
        return np.asarray(jax.jit(grad)(LOGITS)), np.asarray(grad(LOGITS))
    if BACKEND == "torch":
        import torch

        def grad(f):
            x = torch.tensor(LOGITS, requires_grad=True)
            f(x).backward()
            return x.grad.numpy()

        compiled = torch.compile(lambda x: fn(y, x, **kwargs).sum(), backend="aot_eager")
        return grad(compiled), grad(lambda x: fn(y, x, **kwargs).sum())
    import tensorflow as tf

    def grad(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            total = tf.reduce_sum(fn(y, x, **kwargs))
        return tape.gradient(total, x)

    x = tf.constant(LOGITS)
    return tf.function(grad, jit_compile=True)(x).numpy(), grad(x).numpy()


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_labels_closed_over_by_a_compiled_function_give_the_eager_gradient(name):
    compiled, eager = _closed_over_grad(name)
    np.testing.assert_allclose(compiled, eager, rtol=1e-6, atol=1e-7)
    # The eager reference against central differences of the loss itself.
    labels, kwargs = FUNCTIONS[name]
    fn = getattr(keras_afl.losses, name)
    y = np.asarray(labels, "int32" if name.startswith("sparse") else "float32")
    x64 = LOGITS.astype("float64")

    def total(x):
        return float(np.sum(to_np(fn(y, keras.ops.convert_to_tensor(x), **kwargs))))

    h, numeric = 1e-6, np.zeros_like(x64)
    for i in np.ndindex(*x64.shape):
        e = np.zeros_like(x64)
        e[i] = h
        numeric[i] = (total(x64 + e) - total(x64 - e)) / (2 * h)
    np.testing.assert_allclose(eager, numeric, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("bad", [3.0, float("nan"), -2.0])
def test_hinge_auto_refuses_labels_of_neither_format(bad):
    with pytest.raises(InvalidLabelsError, match="hinge: `y_true` must hold labels in \\[-1, 1\\]"):
        keras_afl.losses.Hinge()(np.array([[1.0], [bad]], "float32"), np.zeros((2, 1), "float32"))
    # Both formats' labels still pass.
    for labels in ([[0.0], [1.0]], [[-1.0], [1.0]]):
        assert np.isfinite(to_np(keras_afl.losses.Hinge()(np.array(labels, "float32"),
                                                           np.zeros((2, 1), "float32"))))


def test_invalid_labels_error_is_exported_and_a_value_error():
    assert issubclass(keras_afl.losses.InvalidLabelsError, ValueError)
    assert "InvalidLabelsError" in keras_afl.losses.__all__
