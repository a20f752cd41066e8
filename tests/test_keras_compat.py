"""keras_afl._keras_compat: each private Keras/TensorFlow access still does its job here.

One test per function, against what Keras or TensorFlow itself does in the
same run. When a release moves something, the test of that function fails
with a message naming the Keras/TensorFlow versions and the function to update.
"""

import glob
import pathlib
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_afl  # noqa: F401  (installs keras_afl's names)
from keras_afl import _keras_compat as compat


def moved(function, what):
    return f"{compat.versions()} moved {what}: update keras_afl._keras_compat.{function}()"


def test_every_function_of_the_module_has_a_test_here():
    source = pathlib.Path(__file__).read_text().replace("compat.__all__", "")
    untested = [n for n in compat.__all__ if not re.search(rf"compat\.{n}\b", source)]
    assert not untested, f"keras_afl._keras_compat functions without a test: {untested}"


def test_the_moved_message_names_keras_tensorflow_and_the_function():
    e = compat._moved("Keras's name tables", "name_tables", "Strings will not resolve.",
                      ImportError("No module named 'keras.src.activations'"))
    assert isinstance(e, RuntimeError)
    text = str(e)
    for part in (f"Keras {keras.__version__}", f"TensorFlow {tf.__version__}",
                 "Keras's name tables", "ImportError", "keras_afl._keras_compat.name_tables()"):
        assert part in text, (part, text)
    assert compat.versions() == f"Keras {keras.__version__} / TensorFlow {tf.__version__}"


# --------------------------------------------------------------------------- name tables

def test_name_tables_are_what_keras_get_functions_read():
    tables = compat.name_tables()
    assert tables["activation"].get("relu") is keras.activations.relu, moved(
        "name_tables", "keras.src.activations.ALL_OBJECTS_DICT")

    def probe(y_true, y_pred):
        return y_pred

    name = "_keras_afl_compat_probe"
    try:
        tables["activation"][name] = probe
        tables["loss"][name] = probe
        tables["metric"][name] = probe
        assert keras.activations.get(name) is probe, moved("name_tables", "activations' table")
        assert keras.losses.get(name) is probe, moved("name_tables", "losses' table")
        assert keras.metrics.get(name) is probe, moved("name_tables", "metrics' table")
    finally:
        for table in tables.values():
            table.pop(name, None)


def test_explain_unknown_names_adds_to_the_error_of_every_lookup_keras_calls():
    # keras_afl installed the wrappers on import (their text: keras_afl.registry); a second call
    # changes nothing
    compat.explain_unknown_names(lambda kind, name: f"HINT {kind} {name}")
    lookups = (("activation", keras.activations.get, lambda n: keras.layers.Dense(1, activation=n)),
               ("loss", keras.losses.get, keras.losses.get),
               ("metric", keras.metrics.get, keras.metrics.get))
    for kind, get, call in lookups:
        assert getattr(get, "_keras_afl_explains", False), moved("explain_unknown_names",
                                                                  f"keras.{kind}s.get")
        with pytest.raises(ValueError, match=r"Could not interpret .*identifier: nope_x\. .+"):
            call("nope_x")
    assert keras.losses.get("mse") is keras.losses.mean_squared_error  # names still resolve
    with pytest.raises(ValueError, match="Could not interpret loss identifier: 3$"):
        keras.losses.get(3)  # not a string: Keras's message as it is


def test_compile_owner_defines_the_compile_that_load_model_compares():
    owner = compat.compile_owner()
    assert "compile" in vars(owner) and keras.Model.compile is vars(owner)["compile"]
    from keras.src.trainers.trainer import Trainer  # what compile_from_config compares with

    assert owner is Trainer, moved("compile_owner", "Trainer.compile")


def test_loss_functions_hold_keras_losses_and_ours():
    objects = compat.loss_functions()
    assert keras.losses.mean_squared_error in objects and keras.losses.MeanSquaredError in objects, \
        moved("loss_functions", "keras.src.losses.ALL_OBJECTS")
    assert keras_afl.losses.focal in objects  # registry.install() added it


# --------------------------------------------------------------------------- losses

class _Identity(keras.losses.Loss):
    """Keras's Loss machinery around per-sample values passed as y_pred (the reference)."""

    def call(self, y_true, y_pred):
        return y_pred


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "mean",
                                       "mean_with_sample_weight", "none", None])
def test_loss_reduction_is_what_keras_loss_call_does(reduction):
    reduce = compat.loss_reduction()
    values = tf.constant([1.0, 2.0, 3.0, 5.0])
    weights = tf.constant([0.5, 1.0, 2.0, 0.0])
    mask = tf.constant([True, False, True, True])
    masked = tf.identity(values)
    assert compat.set_keras_mask(masked, mask)
    want = _Identity(reduction=reduction)(tf.zeros([4]), masked, sample_weight=weights)
    got = reduce(values, sample_weight=weights, mask=mask, reduction=reduction, dtype="float32")
    np.testing.assert_allclose(got, want, rtol=1e-6, err_msg=moved(
        "loss_reduction", "keras.src.losses.loss.reduce_weighted_values"))


def test_keras_mask_reads_what_keras_masking_layers_set():
    x = np.array([[[0.0, 0.0], [1.0, 2.0], [0.0, 3.0]]], "float32")
    out = keras.layers.Masking(mask_value=0.0)(x)
    mask = compat.keras_mask(out)
    assert mask is not None, moved("keras_mask", f"the mask attribute {compat.KERAS_MASK}")
    np.testing.assert_array_equal(mask, np.any(x != 0.0, axis=-1))
    assert compat.keras_mask(tf.constant([1.0])) is None


def test_set_keras_mask_makes_keras_losses_skip_masked_samples():
    mask = tf.constant([True, False, True, False])

    class Masked(keras.losses.Loss):
        def call(self, y_true, y_pred):
            values = tf.identity(y_pred)
            assert compat.set_keras_mask(values, mask)
            return values

    got = Masked()(tf.zeros([4]), tf.constant([1.0, 20.0, 3.0, 40.0]))
    # Keras averages over the unmasked samples only: (1 + 3) / 2.
    assert float(got) == pytest.approx(2.0), moved(
        "set_keras_mask", f"the mask attribute {compat.KERAS_MASK} Loss.__call__ reads")
    assert compat.set_keras_mask(np.zeros(2), mask) is False  # NumPy arrays refuse attributes


def test_backend_keras_mask_reads_and_writes_what_keras_reads_on_any_backend():
    x = np.array([[[0.0, 0.0], [1.0, 2.0], [0.0, 3.0]]], "float32")
    out = keras.layers.Masking(mask_value=0.0)(x)
    mask = compat.backend_keras_mask(out)
    assert mask is not None, moved("backend_keras_mask", "keras.src.backend.common.masking")
    np.testing.assert_array_equal(mask, np.any(x != 0.0, axis=-1))
    # A tensor that refuses attributes (as JAX arrays do): Keras's table keeps its mask.
    refuses = np.zeros(4)
    compat.set_backend_keras_mask(refuses, tf.constant([True, False, True, False]))
    np.testing.assert_array_equal(compat.backend_keras_mask(refuses), [True, False, True, False])
    compat.set_backend_keras_mask(refuses, None)
    assert compat.backend_keras_mask(refuses) is None

    class Masked(keras.losses.Loss):
        def call(self, y_true, y_pred):
            values = tf.identity(y_pred)
            compat.set_backend_keras_mask(values, tf.constant([True, False, True, False]))
            return values

    got = Masked()(tf.zeros([4]), tf.constant([1.0, 20.0, 3.0, 40.0]))
    assert float(got) == pytest.approx(2.0), moved(  # (1 + 3) / 2: Keras read the mask
        "set_backend_keras_mask", "keras.src.backend.common.masking")


def test_keras_logits_reads_what_keras_sigmoid_and_softmax_set():
    z = tf.constant([[2.0, -1.0, 0.5]])
    for activation in (keras.activations.sigmoid, keras.activations.softmax):
        logits = compat.keras_logits(activation(z))
        assert logits is not None, moved("keras_logits", f"the attribute {compat.KERAS_LOGITS}")
        np.testing.assert_array_equal(logits, z)
    assert compat.keras_logits(tf.constant([1.0])) is None


def test_set_keras_logits_is_what_keras_crossentropy_reads():
    z = np.array([2.0, -1.0, 0.5], "float32")
    y = np.array([1.0, 0.0, 1.0], "float32")
    p = tf.constant([0.5, 0.5, 0.5])  # the probabilities say 0.5: Keras must use the logits
    assert compat.set_keras_logits(p, tf.constant(z))
    want = np.mean(np.logaddexp(0.0, z) - y * z)  # BCE from logits, by the formula
    got = keras.losses.binary_crossentropy(y, p)
    assert float(got) == pytest.approx(want, rel=1e-6), moved(
        "set_keras_logits", f"the attribute {compat.KERAS_LOGITS} the cross-entropies read")


# --------------------------------------------------------------------------- model graphs

def test_producer_is_the_layer_that_made_a_keras_tensor():
    inputs = keras.Input((3,))
    dense = keras.layers.Dense(2)
    out = dense(inputs)
    assert compat.producer(out) is dense, moved("producer", f"KerasTensor.{compat.KERAS_HISTORY}")
    assert isinstance(compat.producer(inputs), keras.layers.InputLayer)
    assert compat.producer(tf.constant(1.0)) is None
    assert compat.producer(keras.KerasTensor((2,))) is None  # made outside any layer


def test_call_inputs_lists_each_call_of_a_layer():
    a, b = keras.Input((3,)), keras.Input((3,))
    dense = keras.layers.Dense(2)
    dense(a)
    dense(b)
    got = compat.call_inputs(dense)
    assert len(got) == 2 and got[0] is a and got[1] is b, moved(
        "call_inputs", f"Layer.{compat.INBOUND_NODES} / Node.arguments.args")
    assert compat.call_inputs(keras.layers.Dense(2)) == []

    # A functional model used as a layer: its call's input, not its own `input`.
    inner_in = keras.Input((3,))
    inner = keras.Model(inner_in, keras.layers.Dense(2)(inner_in))
    outer_in = keras.Input((3,))
    inner(outer_in)
    assert inner.input is inner_in
    got = compat.call_inputs(inner)
    assert len(got) == 1 and got[0] is outer_in, moved("call_inputs", "a nested model's call")


# --------------------------------------------------------------------------- TensorFlow

@pytest.mark.parametrize("jit", [False, True])
def test_optimization_barrier_passes_its_tensors_through(jit):
    a = tf.constant([1.0, -2.0, 3.5])
    b = tf.constant([[1, 2]], tf.int32)
    run = tf.function(compat.optimization_barrier, jit_compile=True) if jit \
        else compat.optimization_barrier
    got = run(a, b)
    assert isinstance(got, list) and len(got) == 2, moved(
        "optimization_barrier", "tensorflow.compiler.tf2xla.python.xla.optimization_barrier")
    np.testing.assert_array_equal(got[0], a)
    np.testing.assert_array_equal(got[1], b)
    assert got[0].dtype == tf.float32 and got[1].dtype == tf.int32


def _scalar_events(log_dir):
    out = []
    for f in glob.glob(str(log_dir / "events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(f):
            event = tf.compat.v1.Event.FromString(record.numpy())
            out.extend((event.step, v) for v in event.summary.value)
    return out


def _write(log_dir, write):
    writer = tf.summary.create_file_writer(str(log_dir))
    with writer.as_default():
        write("h/mean", 0.25, 3)
    writer.close()
    return _scalar_events(log_dir)


def test_summary_scalar_writes_a_tensorboard_scalar(tmp_path):
    events = _write(tmp_path, compat.summary_scalar)
    assert len(events) == 1
    step, value = events[0]
    assert (step, value.tag) == (3, "h/mean")
    assert value.metadata.plugin_data.plugin_name == "scalars"
    assert tf.make_ndarray(value.tensor).dtype == np.float32
    assert float(tf.make_ndarray(value.tensor)) == 0.25


def test_summary_scalar_without_tensorboard_writes_what_tf_summary_scalar_writes(tmp_path):
    # Runs where the tensorboard package is installed (tf.summary.scalar needs it).
    pytest.importorskip("tensorboard.summary.v2")
    ours = _write(tmp_path / "ours", compat._write_scalar)
    theirs = _write(tmp_path / "tf", lambda tag, v, step: tf.summary.scalar(tag, v, step=step))
    assert [(s, v.SerializeToString()) for s, v in ours] == \
        [(s, v.SerializeToString()) for s, v in theirs]


# --------------------------------------------------------------------------- replaced by public API

@pytest.mark.parametrize("dtype", ["float64", "mixed_float16", "mixed_bfloat16",
                                   keras.DTypePolicy("mixed_float16")], ids=str)
def test_a_loss_config_keeps_its_dtype_policy_through_public_api(dtype):
    # get_config reads the policy with keras.dtype_policies.get (it read Loss._dtype_policy).
    loss = keras_afl.losses.FocalLoss(dtype=dtype)
    config = loss.get_config()
    assert config["dtype"] == (dtype if isinstance(dtype, str) else dtype.name)
    restored = keras_afl.losses.FocalLoss.from_config(config)
    assert restored.dtype == keras.losses.Loss(dtype=dtype).dtype  # Keras's compute dtype
    assert restored.get_config() == config


def test_set_jax_state_hands_the_trainer_a_state_that_jax_state_sync_puts_back():
    """What `set_jax_state` relies on: JAXTrainer keeps the steps' state in `_jax_state` and
    `jax_state_sync` assigns it to the variables; and the one-step wrapper keras_afl._guard wraps
    (`JAX_STEP_WRAPPER`) is what `make_train_function` calls. Read from Keras's source where JAX
    is not this process's backend."""
    import importlib.util
    import inspect

    if importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed")
    from keras.src.backend.jax.trainer import JAXTrainer  # the class the functions serve

    assert "_jax_state" in inspect.getsource(JAXTrainer.jax_state_sync), \
        moved("set_jax_state", "JAXTrainer._jax_state")
    assert f"self.{compat.JAX_STEP_WRAPPER}(" in inspect.getsource(JAXTrainer.make_train_function), \
        moved("JAX_STEP_WRAPPER", "JAXTrainer._make_function")

    class Trainer:  # the protocol, exercised: the state handed over is what the sync assigns
        def jax_state_sync(self):
            self.synced = dict(self._jax_state)

    trainer = Trainer()
    compat.set_jax_state(trainer, {"trainable_variables": [1.0]}, sync=True)
    assert trainer.synced == {"trainable_variables": [1.0]} and trainer._jax_state_synced is False
    with pytest.raises(RuntimeError, match="set_jax_state"):
        compat.set_jax_state(object(), {})
