"""Labels that make no sense raise an error naming `y_true`, the bad value and the fix (issue 11,
item 9), eagerly and in graph mode, on the plain and on the compiled (fused) path; under XLA,
which drops assertions, the documented behaviour: NaN loss and gradient for the samples with a
bad label, the others untouched (`keras_afl.losses._checks`, README "Edge cases").

Before: BCE and focal took labels outside [0, 1], Hinge(label_format="binary") took -1 labels,
and the sparse losses truncated a float label such as 1.7 to 1, all giving a number.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_afl
from keras_afl import _backend
from keras_afl._backend._tensorflow import _runner as LC
from keras_afl.losses._checks import InvalidLabelsError

L = keras_afl.losses

UNIT = r"`y_true` must hold labels in \[0, 1\]"
DENSE = {
    # name: (loss function, message pattern, prediction maker)
    "bce_probabilities": (lambda y, x: L.binary_crossentropy(y, x), UNIT, "probs"),
    "bce_logits": (lambda y, x: L.binary_crossentropy(y, x, from_logits=True), UNIT, "logits"),
    "bce_logits_pos_weight_smoothed": (
        lambda y, x: L.binary_crossentropy(y, x, from_logits=True, pos_weight=2.0, label_smoothing=0.1),
        UNIT, "logits"),
    "focal_probabilities": (lambda y, x: L.focal(y, x), UNIT, "probs"),
    "focal_logits": (lambda y, x: L.focal(y, x, from_logits=True, gamma=0.5), UNIT, "logits"),
    "hinge_binary": (lambda y, x: L.hinge(y, x, label_format="binary"),
                     r"`y_true` must hold labels in \[0, 1\] with label_format binary", "logits"),
}
BAD_UNIT = {"minus_one": -1.0, "one_and_a_half": 1.5, "just_above_one": 1.0 + 2**-20}
# How each reads: eagerly in float32's shortest form, in graph mode as TensorFlow prints it; both
# with the flat index of the first bad label (graph mode also with its distance beyond the range).
SHOWN_EAGERLY = {-1.0: "received -1 at flat index 5", 1.5: "received 1.5 at flat index 5",
                 1.0 + 2**-20: "received 1.000001 at flat index 5"}
SHOWN_IN_GRAPH = {-1.0: "received] [-1] [at flat index] [5] [(beyond the range by] [1]",
                  1.5: "received] [1.5] [at flat index] [5] [(beyond the range by] [0.5]",
                  1.0 + 2**-20: "received] [1.00000095] [at flat index] [5] [(beyond the range by] "
                                "[9.53674316e-07]"}


def _inputs(kind, bad, rows=4, cols=3):
    """Labels with one bad entry (row 1) and predictions; float32."""
    rng = np.random.default_rng(0)
    y = (rng.random((rows, cols)) < 0.5).astype("float32")
    y[1, 2] = bad
    x = rng.normal(size=(rows, cols)).astype("float32")
    if kind == "probs":
        x = 1 / (1 + np.exp(-x))
    return tf.constant(y), tf.constant(x)


@pytest.fixture(params=["plain", "compiled"])
def path(request, monkeypatch):
    """The plain TensorFlow ops, or the compiled (fused) kernels for these small inputs."""
    if request.param == "compiled":
        monkeypatch.setitem(_backend._DEFAULTS, "compiled_kernels", True)
        monkeypatch.setattr(LC, "FUSE_MIN_ELEMENTS", 0)
    return request.param


def _graph(fn, *args, compiled_kernels=None):
    step = tf.function(fn, autograph=False)
    if compiled_kernels is not None:
        graph = step.get_concrete_function(*args).graph
        used = any(op.node_def.attr["_XlaMustCompile"].b for op in graph.get_operations())
        assert used == compiled_kernels
    return step(*args)


def _value_and_grad(fn, y, x):
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = fn(y, x)
    return loss, tape.gradient(loss, x)


# --------------------------------------------------------------------------- dense labels


@pytest.mark.parametrize("bad", list(BAD_UNIT.values()), ids=list(BAD_UNIT))
@pytest.mark.parametrize("name", sorted(DENSE))
def test_dense_bad_label_raises_eagerly_naming_the_value(name, bad):
    fn, pattern, kind = DENSE[name]
    y, x = _inputs(kind, bad)
    with pytest.raises(InvalidLabelsError, match=pattern) as info:
        fn(y, x)
    message = str(info.value)
    assert SHOWN_EAGERLY[bad] in message and "Fix:" in message
    # One except catches it in both modes: a ValueError, and graph mode's InvalidArgumentError.
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, tf.errors.InvalidArgumentError)


@pytest.mark.parametrize("bad", list(BAD_UNIT.values()), ids=list(BAD_UNIT))
@pytest.mark.parametrize("name", sorted(DENSE))
def test_dense_bad_label_fails_an_assertion_in_graph_mode(name, bad, path):
    fn, pattern, kind = DENSE[name]
    y, x = _inputs(kind, bad)
    with pytest.raises(tf.errors.InvalidArgumentError, match=pattern) as info:
        _graph(lambda y, x: _value_and_grad(fn, y, x), y, x, compiled_kernels=path == "compiled")
    message = str(info.value)
    assert "Fix:" in message and SHOWN_IN_GRAPH[bad] in message, message


@pytest.mark.parametrize("labels", [
    np.array([[0.0, 1.0, 0.3]], "float32"), np.array([[0, 1, 1]], "int32"), np.array([[True, False, True]]),
    np.array([[0.0, 1.0, 0.5]], "float64"),
], ids=["float_soft", "int", "bool", "float64"])
@pytest.mark.parametrize("name", sorted(DENSE))
def test_dense_good_labels_pass_eagerly_and_in_graph_mode(name, labels):
    fn, _, kind = DENSE[name]
    x = tf.constant([[0.2, 0.7, 0.4]], "float64" if labels.dtype == np.float64 else "float32")
    y = tf.constant(labels)
    want = fn(y, x).numpy()
    assert np.all(np.isfinite(want))
    np.testing.assert_allclose(_graph(fn, y, x).numpy(), want, rtol=1e-6)


def test_hinge_signed_and_auto_take_labels_in_minus_one_to_one():
    x = tf.constant([[0.3, -0.2]])
    L.hinge(tf.constant([[-1.0, 1.0]]), x, label_format="signed")
    for fmt in ("signed", "auto"):
        for run in (lambda f, *a: f(*a), _graph):
            with pytest.raises(tf.errors.InvalidArgumentError,
                               match=rf"\[-1, 1\].*with label_format {fmt}"):
                run(lambda y, x: L.hinge(y, x, label_format=fmt), tf.constant([[2.0, 1.0]]), x)
    # "auto" takes either format's labels as they come (hand computation: t = y for -1/+1)
    auto = L.hinge(tf.constant([[1.0, -1.0]]), x)
    np.testing.assert_allclose(auto.numpy(), [(max(0, 1 - 0.3) + max(0, 1 - 0.2)) / 2], rtol=1e-6)


def test_loss_classes_raise_eagerly_and_in_model_fit():
    y = np.array([[0.0], [2.0], [1.0], [0.0]], "float32")
    with pytest.raises(ValueError, match=UNIT):
        L.FocalLoss()(y, np.full((4, 1), 0.5, "float32"))
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile("sgd", L.BinaryCrossentropy(), jit_compile=False)
    with pytest.raises(tf.errors.InvalidArgumentError, match=UNIT):
        model.fit(np.ones((4, 3), "float32"), y, verbose=0)


# --------------------------------------------------------------------------- sparse labels

SPARSE = {
    "scce_logits": lambda t, z, **kw: L.sparse_categorical_crossentropy(t, z, from_logits=True, **kw),
    "scce_probabilities": lambda t, z, **kw: L.sparse_categorical_crossentropy(t, tf.nn.softmax(z), **kw),
    "sfocal_logits": lambda t, z, **kw: L.sparse_categorical_focal(t, z, from_logits=True,
                                                                   alpha=[0.2, 0.3, 0.5], **kw),
    "sfocal_probabilities": lambda t, z, **kw: L.sparse_categorical_focal(t, tf.nn.softmax(z), **kw),
}
IDS = r"class ids in `y_true` must be in \[0, num_classes\)"
BAD_IDS = {
    # name: (ids, ignore_class, the bad value named; always at index 1)
    "float_1.7": ([0.0, 1.7, 2.0], None, "1.7"),
    "float_minus_0.5": ([0.0, -0.5, 2.0], None, "-0.5"),
    "out_of_range_with_ignore_class": ([255, 3, 0], 255, "3"),
    "negative_int": ([0, -1, 2], None, "-1"),
    "float_near_ignore_class": ([0.0, 255.5, 1.0], 255, "255.5"),
}


@pytest.mark.parametrize("case", sorted(BAD_IDS))
@pytest.mark.parametrize("name", sorted(SPARSE))
def test_sparse_bad_ids_raise_eagerly_naming_the_value(name, case):
    ids, ignore_class, shown = BAD_IDS[case]
    with pytest.raises(InvalidLabelsError, match=IDS) as info:
        SPARSE[name](tf.constant(ids), tf.zeros([3, 3]), ignore_class=ignore_class)
    assert f"received {shown} at index 1 " in str(info.value) and "Fix:" in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("case", sorted(BAD_IDS))
@pytest.mark.parametrize("name", sorted(SPARSE))
def test_sparse_bad_ids_fail_an_assertion_in_graph_mode(name, case, path):
    ids, ignore_class, shown = BAD_IDS[case]
    fn = SPARSE[name]
    with pytest.raises(tf.errors.InvalidArgumentError, match=IDS) as info:
        _graph(lambda t, z: _value_and_grad(lambda t, z: fn(t, z, ignore_class=ignore_class), t, z),
               tf.constant(ids), tf.zeros([3, 3]), compiled_kernels=path == "compiled")
    assert "Fix:" in str(info.value) and f"received] [{shown}] [at index] [1]" in str(info.value)


@pytest.mark.parametrize("name", sorted(SPARSE))
def test_sparse_integral_float_ids_and_ignore_class_pass(name):
    fn = SPARSE[name]
    z = tf.constant(np.random.default_rng(1).normal(size=(3, 3)), tf.float32)
    want = fn(tf.constant([2, 0, 1]), z).numpy()
    np.testing.assert_allclose(fn(tf.constant([2.0, 0.0, 1.0]), z).numpy(), want, rtol=1e-6)
    np.testing.assert_allclose(_graph(fn, tf.constant([2.0, 0.0, 1.0]), z).numpy(), want, rtol=1e-6)
    ignored = _graph(lambda t, z: fn(t, z, ignore_class=255), tf.constant([2, 255, 1]), z).numpy()
    assert ignored[1] == 0.0 and np.isclose(ignored[0], want[0], rtol=1e-6)


# --------------------------------------------------------------------------- under XLA


@pytest.mark.parametrize("name", sorted(DENSE))
def test_dense_bad_label_under_xla_gives_nan_for_its_sample_only_grad(name, path):
    """The documented behaviour under jit_compile=True (assertions dropped): the sample with the
    bad label gets NaN loss and gradient; the other samples are exactly as with good labels."""
    fn, _, kind = DENSE[name]
    y, x = _inputs(kind, 1.5)
    xla = tf.function(lambda y, x: _value_and_grad(fn, y, x), jit_compile=True)
    loss, grad = (t.numpy() for t in xla(y, x))
    good_y = tf.tensor_scatter_nd_update(y, [[1, 2]], [1.0])
    want_loss, want_grad = (t.numpy() for t in xla(good_y, x))
    assert np.isnan(loss[1]) and np.all(np.isnan(grad[1]))
    rest = [0, 2, 3]
    np.testing.assert_allclose(loss[rest], want_loss[rest], rtol=1e-6)
    np.testing.assert_allclose(grad[rest], want_grad[rest], rtol=1e-6)


@pytest.mark.parametrize("name", sorted(SPARSE))
def test_sparse_bad_ids_under_xla_give_nan_for_their_samples_only_grad(name, path):
    fn = SPARSE[name]
    z = tf.constant(np.random.default_rng(2).normal(size=(4, 3)), tf.float32)
    xla = tf.function(lambda t, z: _value_and_grad(fn, t, z), jit_compile=True)
    loss, grad = (t.numpy() for t in xla(tf.constant([0.0, 1.7, 2.0, 7.0]), z))
    want_loss, want_grad = (t.numpy() for t in xla(tf.constant([0.0, 1.0, 2.0, 1.0]), z))
    assert np.all(np.isnan(loss[[1, 3]])) and np.all(np.isnan(grad[[1, 3]]))
    np.testing.assert_allclose(loss[[0, 2]], want_loss[[0, 2]], rtol=1e-6)
    np.testing.assert_allclose(grad[[0, 2]], want_grad[[0, 2]], rtol=1e-6)


def test_model_fit_under_xla_raises_after_the_step_and_keeps_the_weights():
    """XLA drops assertions: the step records the verdict, keeps every variable and keras_afl
    raises once it returns (keras_afl._guard); outside a Keras step the loss is NaN instead."""
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile("sgd", L.FocalLoss(), jit_compile=True)
    y = np.array([[0.0], [2.0], [1.0], [0.0]], "float32")
    before = [v.numpy().copy() for v in model.weights]
    with pytest.raises(L.InvalidLabelsError, match=UNIT):
        model.fit(np.ones((4, 3), "float32"), y, verbose=0, batch_size=4)
    for a, v in zip(before, model.weights):
        np.testing.assert_array_equal(a, v.numpy())
    step = tf.function(lambda y, x: L.focal(y, x), jit_compile=True)
    assert np.isnan(step(tf.constant(y), tf.fill([4, 1], 0.5)).numpy()[1])


def test_checks_switched_off_restore_the_unchecked_loss():
    """The benchmark's switch (`set_trace_options(label_checks=False)`, read when tracing): off, a
    bad label goes through as before the checks (a number), which is what the checks' cost is
    measured against."""
    y, x = _inputs("logits", 1.5)
    fn = DENSE["bce_logits"][0]
    with L.set_trace_options(label_checks=False):
        loss = _graph(fn, y, x).numpy()
    assert np.all(np.isfinite(loss))
    with pytest.raises(tf.errors.InvalidArgumentError):
        _graph(fn, y, x)


def test_under_xla_reads_whether_the_graph_being_built_is_compiled_by_xla():
    """The one private TensorFlow access of the checks (`_checks.under_xla`): it must tell a
    jit_compile=True function (and a function called inside one) from a plain tf.function."""
    from keras_afl._keras_compat import under_xla

    seen = {}

    def probe(x, key):
        seen[key] = under_xla()
        return x

    tf.function(lambda x: probe(x, "graph"))(tf.constant(1.0))
    tf.function(lambda x: probe(x, "xla"), jit_compile=True)(tf.constant(1.0))
    inner = tf.function(lambda x: probe(x, "inside_xla"))
    tf.function(lambda x: inner(x), jit_compile=True)(tf.constant(1.0))
    assert seen == {"graph": False, "xla": True, "inside_xla": True}


def test_set_trace_options_switches_label_checks_for_what_is_traced_in_the_block():
    y, z = tf.constant([[1.7]]), tf.constant([[0.5]])

    def traced():
        return tf.function(lambda y, z: keras_afl.losses.focal(y, z, from_logits=True))

    with keras_afl.losses.set_trace_options(label_checks=False):
        unchecked = traced()
        value = float(unchecked(y, z)[0])
    assert keras_afl.losses.trace_options()["label_checks"] is True
    assert np.isfinite(value)
    with pytest.raises(tf.errors.InvalidArgumentError, match="y_true"):
        traced()(y, z)
    # What was traced in the block keeps its switch.
    assert float(unchecked(y, z)[0]) == value
    with pytest.raises(TypeError, match="label_checks"):
        with keras_afl.losses.set_trace_options(label_checks="no"):
            pass
