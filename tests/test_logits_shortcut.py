"""The logits shortcut: a cross-entropy given a sigmoid/softmax output computes from its logits
only when that activation is the loss's own (sigmoid: binary losses; softmax over the loss's
axis: categorical losses), for keras_afl's and Keras's activations, eagerly, in `tf.function`
and under XLA. Any other pairing is the loss of the probabilities as given.

Expected values: the loss of the probabilities as a plain NumPy array (no logits can be
recovered from it), or, for a matched pair, of the logits with `from_logits=True`. The logits
reach +-30, where float32 probabilities saturate: there the two differ by far more than
rounding, so taking (or missing) the shortcut shows.
"""

import functools

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_afl
from keras_afl import losses as L
from keras_afl import _backend
from keras_afl._backend._tensorflow import _runner as LC

EPS = 1e-7  # keras.config.epsilon()
SHAPE = (2, 3, 4)  # softmax over axis 1 (3 entries) or the last axis (4 entries)


def _z(dtype=np.float32):
    z = np.random.RandomState(0).uniform(-4.0, 4.0, SHAPE)
    z[0, 0, :] = [30.0, -30.0, 0.0, 30.0]
    z[1, :, 2] = [-30.0, 30.0, 0.0]
    return z.astype(dtype)


def _labels():
    rng = np.random.RandomState(1)
    binary = (rng.uniform(size=SHAPE) < 0.5).astype("float32")
    binary[0, 0, :] = [0.0, 1.0, 1.0, 0.0]  # confidently wrong where the logits are +-30
    ids = {2: rng.randint(0, 4, SHAPE[:2]), 1: rng.randint(0, 3, (SHAPE[0], SHAPE[2]))}
    ids[2][0, 0], ids[1][1, 2] = 1, 0  # the class whose logit is -30
    onehot = {2: np.eye(4, dtype="float32")[ids[2]],
              1: np.moveaxis(np.eye(3, dtype="float32")[ids[1]], -1, 1)}
    return binary, ids, onehot


BINARY, IDS, ONEHOT = _labels()

# name -> (activation, kind, axis as a non-negative index; None for the sigmoid)
ACTIVATIONS = {
    "afl_sigmoid": (keras_afl.activations.sigmoid, "sigmoid", None),
    "keras_sigmoid": (keras.activations.sigmoid, "sigmoid", None),
    "afl_softmax_last": (functools.partial(keras_afl.activations.softmax, axis=-1), "softmax", 2),
    "keras_softmax_last": (functools.partial(keras.activations.softmax, axis=-1), "softmax", 2),
    "afl_softmax_axis1": (functools.partial(keras_afl.activations.softmax, axis=1), "softmax", 1),
    "keras_softmax_axis1": (functools.partial(keras.activations.softmax, axis=1), "softmax", 1),
}

# name -> (loss(y_pred, **kwargs) -> per-sample values, the activation it inverts, its axis)
LOSSES = {
    "bce": (lambda p, **k: L.binary_crossentropy(BINARY, p, **k), "sigmoid", None),
    "focal": (lambda p, **k: L.focal(BINARY, p, **k), "sigmoid", None),
    "focal_gamma0.5": (lambda p, **k: L.focal(BINARY, p, gamma=0.5, alpha=None, **k), "sigmoid",
                       None),
}
_CATEGORICAL = {  # name -> (function, labels by class axis)
    "cce": (L.categorical_crossentropy, ONEHOT),
    "categorical_focal": (L.categorical_focal, ONEHOT),
    "sparse_cce": (L.sparse_categorical_crossentropy, IDS),
    "sparse_focal": (L.sparse_categorical_focal, IDS),
}
for _axis in (2, 1):
    for _name, (_fn, _by_axis) in _CATEGORICAL.items():
        LOSSES[f"{_name}_axis{_axis}"] = (
            lambda p, f=_fn, y=_by_axis[_axis], a=_axis, **k: f(y, p, axis=a, **k), "softmax", _axis)


def _matched(act, loss):
    return ACTIVATIONS[act][1:] == LOSSES[loss][1:]


def _expected(act, loss, z):
    fn = LOSSES[loss][0]
    if _matched(act, loss):
        return fn(tf.constant(z), from_logits=True).numpy()
    return fn(np.asarray(ACTIVATIONS[act][0](z))).numpy()  # a NumPy array: no logits to find


MODES = {
    "eager": lambda f: f,
    "graph": tf.function,
    "xla": functools.partial(tf.function, jit_compile=True),
}


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("act", list(ACTIVATIONS))
def test_every_loss_takes_the_shortcut_only_for_its_own_activation(act, mode):
    activation = ACTIVATIONS[act][0]
    z = _z()

    def all_losses(z):
        p = activation(z)
        return {name: fn(p) for name, (fn, _, _) in LOSSES.items()}

    got = MODES[mode](all_losses)(tf.constant(z))
    for name in LOSSES:
        np.testing.assert_allclose(got[name].numpy(), _expected(act, name, z), rtol=2e-5, atol=1e-6,
                                   err_msg=f"{act} -> {name} ({mode})")


def test_the_grid_tells_the_shortcut_apart():
    # The test above can fail: on this data the logits and the probabilities give different
    # losses for every pairing (so a shortcut taken or missed changes the value).
    z = _z()
    for act, (activation, _, _) in ACTIVATIONS.items():
        p = np.asarray(activation(z))
        for name, (fn, _, _) in LOSSES.items():
            if _matched(act, name):
                a, b = fn(tf.constant(z), from_logits=True).numpy(), fn(p).numpy()
                assert np.max(np.abs(a - b)) > 1.0, (act, name)
    mismatched = sum(not _matched(a, n) for a in ACTIVATIONS for n in LOSSES)
    assert mismatched > sum(_matched(a, n) for a in ACTIVATIONS for n in LOSSES) > 0


# ---------------------------------------------------------------------------
# The issue's examples, against NumPy formulas.


def _np_cce(y, p, axis=-1):
    c = np.clip(p / np.sum(p, axis=axis, keepdims=True), EPS, 1 - EPS)
    return -np.sum(y * np.log(c), axis=axis)


def _np_focal(y, p, gamma=2.0, alpha=0.25):
    c = np.clip(p, EPS, 1 - EPS)
    p_t = y * c + (1 - y) * (1 - c)
    a_t = alpha * y + (1 - alpha) * (1 - y)
    return np.mean(-a_t * (1 - p_t) ** gamma * np.log(p_t), axis=-1)


Z_ISSUE = np.array([[2.0, -1.0, 0.5], [0.1, 0.2, 3.0]], "float32")
Y_ISSUE = np.eye(3, dtype="float32")[[0, 1]]


@pytest.mark.parametrize("sigmoid", [keras_afl.activations.sigmoid, keras.activations.sigmoid],
                         ids=["afl", "keras"])
def test_categorical_crossentropy_of_a_sigmoid_output_is_that_of_its_probabilities(sigmoid):
    p = sigmoid(tf.constant(Z_ISSUE))
    expected = np.mean(_np_cce(Y_ISSUE, 1 / (1 + np.exp(-Z_ISSUE.astype(float)))))
    assert expected == pytest.approx(1.0020, abs=1e-4)  # the issue's value
    assert float(L.CategoricalCrossentropy()(Y_ISSUE, p)) == pytest.approx(expected, rel=1e-5)
    assert float(tf.function(lambda z: L.CategoricalCrossentropy()(Y_ISSUE, sigmoid(z)))(
        tf.constant(Z_ISSUE))) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("softmax", [keras_afl.activations.softmax, keras.activations.softmax],
                         ids=["afl", "keras"])
def test_focal_loss_of_a_softmax_output_is_that_of_its_probabilities(softmax):
    z = Z_ISSUE.astype(float)
    p = np.exp(z) / np.sum(np.exp(z), -1, keepdims=True)
    expected = np.mean(_np_focal(Y_ISSUE, p))
    assert expected == pytest.approx(0.3370, abs=1e-4)  # the issue's value
    got = L.FocalLoss()(Y_ISSUE, softmax(tf.constant(Z_ISSUE)))
    assert float(got) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("softmax", [keras_afl.activations.softmax, keras.activations.softmax],
                         ids=["afl", "keras"])
def test_softmax_over_the_last_axis_and_a_loss_over_axis_1_agree_in_every_mode(softmax):
    z = np.random.RandomState(2).normal(size=(2, 3, 3)).astype("float32")
    y = np.moveaxis(np.eye(3, dtype="float32")[[[0, 1, 2], [2, 2, 0]]], -1, 1)
    p = np.exp(z) / np.sum(np.exp(z), -1, keepdims=True)
    expected = np.mean(_np_cce(y, p, axis=1))
    cce = L.CategoricalCrossentropy(axis=1)
    for mode, wrap in MODES.items():
        got = wrap(lambda z: cce(y, softmax(z)))(tf.constant(z))
        assert float(got) == pytest.approx(expected, rel=1e-5), mode


# ---------------------------------------------------------------------------
# The Loss classes (their cast of half-precision outputs), gradients, the compiled path.


# name -> (make the Loss, labels, the activation it inverts, its axis)
CLASSES = {
    "bce": (functools.partial(L.BinaryCrossentropy, reduction=None), BINARY, "sigmoid", None),
    "focal": (functools.partial(L.FocalLoss, reduction=None), BINARY, "sigmoid", None),
    "cce_axis1": (functools.partial(L.CategoricalCrossentropy, axis=1, reduction=None), ONEHOT[1],
                  "softmax", 1),
    "cce_last": (functools.partial(L.CategoricalCrossentropy, reduction=None), ONEHOT[2],
                 "softmax", 2),
    "sparse_focal_last": (functools.partial(L.SparseCategoricalFocalLoss, reduction=None), IDS[2],
                          "softmax", 2),
}


@pytest.mark.parametrize("mode", ["eager", "graph"])
@pytest.mark.parametrize("act", list(ACTIVATIONS))
def test_loss_classes_on_float16_outputs_take_the_shortcut_only_when_matched(act, mode):
    activation, kind, axis = ACTIVATIONS[act]
    z16 = _z(np.float16)

    def all_losses(z):
        p = activation(z)
        return {name: make()(y, p) for name, (make, y, _, _) in CLASSES.items()}

    got = MODES[mode](all_losses)(tf.constant(z16))
    p16 = np.asarray(activation(z16))
    for name, (make, y, want, want_axis) in CLASSES.items():
        if (kind, axis) == (want, want_axis):
            expected = make(from_logits=True)(y, z16.astype("float32"))
        else:
            expected = make()(y, p16.astype("float32"))
        np.testing.assert_allclose(got[name].numpy(), expected.numpy(), rtol=1e-5, atol=1e-6,
                                   err_msg=f"{act} -> {name} ({mode})")


@pytest.mark.parametrize("act", ["keras_sigmoid", "keras_softmax_last", "keras_softmax_axis1"])
def test_gradient_reaches_the_logits_only_through_the_matching_loss_grad(act):
    # Matched: the fused gradient sigmoid(z) - y / softmax(z) - y, nonzero at saturated
    # wrong entries. Not matched: the derivative of the loss of the probabilities, through
    # the activation's own gradient, as autodiff of that composition gives it.
    activation, kind, axis = ACTIVATIONS[act]
    z = tf.constant(_z())
    for name in ("bce", "cce_axis1", "cce_axis2"):
        fn = LOSSES[name][0]
        with tf.GradientTape() as tape:
            tape.watch(z)
            total = tf.reduce_sum(tf.function(lambda z: fn(activation(z)))(z))
        g = tape.gradient(total, z).numpy()
        if _matched(act, name):
            with tf.GradientTape() as tape:
                tape.watch(z)
                ref = tf.reduce_sum(fn(z, from_logits=True))
        else:
            with tf.GradientTape() as tape:
                tape.watch(z)
                p = activation(z)
                q = tf.identity(p)  # an op between: nothing to recover the logits from
                ref = tf.reduce_sum(fn(q))
        np.testing.assert_allclose(g, tape.gradient(ref, z).numpy(), rtol=1e-4, atol=1e-6,
                                   err_msg=f"{act} -> {name}")


def test_unrecognised_outputs_take_no_shortcut():
    z = _z()
    # A graph-mode softmax whose output is changed after the activation (a masked softmax).
    @tf.function
    def masked(z):
        p = keras.activations.softmax(z) * tf.constant([1.0, 1.0, 1.0, 0.0])
        return L.categorical_crossentropy(ONEHOT[2], p)

    p = np.asarray(keras.activations.softmax(z)) * np.array([1.0, 1.0, 1.0, 0.0], "float32")
    np.testing.assert_allclose(masked(tf.constant(z)).numpy(),
                               L.categorical_crossentropy(ONEHOT[2], p).numpy(), rtol=1e-5)
    # An eager tensor carrying logits that do not make it.
    fake = tf.constant(np.full(SHAPE, 0.25, "float32"))
    fake._keras_logits = tf.constant(z)
    np.testing.assert_allclose(L.categorical_crossentropy(ONEHOT[2], fake).numpy(),
                               np.full(SHAPE[:2], np.log(4.0)), rtol=1e-6)


@pytest.fixture
def fused(monkeypatch):
    """The compiled (XLA-kernel) path of graph mode, for inputs of any size."""
    monkeypatch.setattr(LC, "FUSE_MIN_ELEMENTS", 0)
    monkeypatch.setattr(LC, "FUSE_MIN_PER_SAMPLE", 0)
    monkeypatch.setitem(_backend._DEFAULTS, "compiled_kernels", True)


@pytest.mark.parametrize("act", ["keras_sigmoid", "afl_softmax_last", "keras_softmax_axis1"])
def test_compiled_path_takes_the_shortcut_only_when_matched(fused, act):
    activation = ACTIVATIONS[act][0]
    z = _z()

    def all_losses(z):
        p = activation(z)
        return {name: LOSSES[name][0](p) for name in ("bce", "cce_axis1", "cce_axis2")}

    graph = tf.function(all_losses).get_concrete_function(tf.TensorSpec(SHAPE)).graph
    assert sum(op.node_def.attr["_XlaMustCompile"].b for op in graph.get_operations()) >= 3
    got = tf.function(all_losses)(tf.constant(z))
    for name, value in got.items():
        np.testing.assert_allclose(value.numpy(), _expected(act, name, z), rtol=2e-5, atol=1e-6,
                                   err_msg=f"{act} -> {name}")
