"""Every access of keras_afl to private Keras / TensorFlow API, each behind one function.

Keras 3 and TensorFlow promise nothing about names outside their public API
(`keras.*` and `tf.*` as documented): a release may move them. keras_afl needs
a few for which no public API exists; this module is the one place that knows
them. Each function says why no public API serves (checked against Keras 3.15
and TensorFlow 2.21) and, where a release has moved what it reads, raises a
RuntimeError naming the Keras and TensorFlow versions and what moved -- not an
AttributeError or ImportError deep inside `fit()`. Callers that can do without
(a faster path, a nicer default) catch that RuntimeError and fall back.
tests/test_keras_compat.py calls every function here, so a release that moves
something fails there first, naming the function to update.

Not here, because they are public: `tf.raw_ops` (the fused gradient kernels),
`Layer.built`, `keras.dtype_policies.get`.
"""

from __future__ import annotations

import functools

import keras


def _tf():
    """TensorFlow, imported where a TensorFlow-only helper is called: this module imports on
    every backend."""
    import tensorflow as tf

    return tf

__all__ = [
    "KERAS_MASK", "KERAS_LOGITS", "KERAS_HISTORY", "INBOUND_NODES", "versions", "name_tables",
    "loss_functions", "loss_reduction", "keras_mask", "set_keras_mask", "backend_keras_mask",
    "set_backend_keras_mask", "keras_logits",
    "set_keras_logits", "producer", "call_inputs", "optimization_barrier", "summary_scalar",
    "explain_unknown_names", "compile_owner", "set_jax_state", "JAX_STEP_WRAPPER",
]

# Attributes Keras reads and writes on tensors and layers (conventions of its source, not API).
KERAS_MASK = "_keras_mask"        # a tensor's mask: set by masking layers, read by Loss.__call__
KERAS_LOGITS = "_keras_logits"    # a sigmoid/softmax output's logits, read by the cross-entropies
KERAS_HISTORY = "_keras_history"  # a KerasTensor's (operation, node_index, tensor_index)
INBOUND_NODES = "_inbound_nodes"  # a layer's calls in symbolic graphs, one Node per call


def versions():
    """"Keras <version> / <backend> <version>", for messages."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return f"Keras {keras.__version__} / TensorFlow {_tf().__version__}"
    try:
        import importlib

        return f"Keras {keras.__version__} / {backend} {importlib.import_module(backend).__version__}"
    except (ImportError, AttributeError):
        return f"Keras {keras.__version__} / {backend}"


def _moved(what, function, consequence, error=None):
    detail = f" ({type(error).__name__}: {error})" if error is not None else ""
    return RuntimeError(
        f"keras_afl could not find {what} in {versions()}{detail}: this release moved it. "
        f"{consequence} Please report this Keras/TensorFlow version to keras_afl "
        f"(keras_afl._keras_compat.{function}() needs updating).")


# --------------------------------------------------------------------------- name tables

def name_tables():
    """Keras's name tables: {"activation": dict, "loss": dict, "metric": dict}.

    Why private: Keras 3 has no public way to add names to
    `keras.activations.get` / `keras.losses.get` / `keras.metrics.get` (the last
    is how `compile(metrics=[...])` resolves a string, at the first
    fit/evaluate). They read only the `ALL_OBJECTS_DICT` of `keras.src.activations`,
    `keras.src.losses` and `keras.src.metrics`; neither `register_keras_serializable`
    nor `custom_object_scope` makes a string resolve.
    """
    try:
        from keras.src import activations as _ka
        from keras.src import losses as _kl
        from keras.src import metrics as _km

        tables = {"activation": _ka.ALL_OBJECTS_DICT, "loss": _kl.ALL_OBJECTS_DICT,
                  "metric": _km.ALL_OBJECTS_DICT}
    except (ImportError, AttributeError) as e:
        raise _moved("Keras's name tables (keras.src.{activations,losses,metrics}.ALL_OBJECTS_DICT)",
                     "name_tables", "String names such as compile(loss='focal') will not resolve; "
                     "pass objects instead (keras_afl.losses.FocalLoss()).", e) from e
    if not all(isinstance(t, dict) for t in tables.values()):
        raise _moved("Keras's name tables as dicts", "name_tables",
                     "String names such as compile(loss='focal') will not resolve.")
    return tables


def loss_functions():
    """Keras's set of its loss classes and functions (`keras.src.losses.ALL_OBJECTS`).

    Why private: `keras.metrics.MeanMetricWrapper` marks a metric "lower is
    better" (which `EarlyStopping` and `ModelCheckpoint` read in `mode="auto"`)
    only when its function is in this set, as Keras's own losses used as
    metrics are; there is no public way to mark a function as a loss.
    """
    try:
        from keras.src import losses as _kl

        objects = _kl.ALL_OBJECTS
    except (ImportError, AttributeError) as e:
        raise _moved("Keras's set of loss functions (keras.src.losses.ALL_OBJECTS)",
                     "loss_functions", "EarlyStopping(mode='auto') on a keras_afl loss used as a "
                     "metric will maximize it; pass mode='min'.", e) from e
    if not isinstance(objects, set):
        raise _moved("Keras's set of loss functions as a set", "loss_functions",
                     "EarlyStopping(mode='auto') on a keras_afl loss metric will maximize it.")
    return objects


# Keras's name lookups: kind -> the module whose `get` resolves a string of that kind.
_LOOKUP_MODULES = {"activation": "activations", "loss": "losses", "metric": "metrics"}


def explain_unknown_names(explain):
    """Makes Keras's error for an unknown string name say what to use instead.

    `keras.activations.get`, `keras.losses.get` and `keras.metrics.get` raise
    "Could not interpret ... identifier: NAME" for a name their table lacks. Each is replaced,
    where Keras calls it (`keras.src.activations.get`: every layer's `activation=`;
    `keras.src.losses.get`, `keras.src.metrics.get`: compile's names at the first fit/evaluate)
    and where users call it (`keras.activations.get`, ...), by a wrapper that calls it and, when
    it raises a ValueError for a string, raises that message followed by `explain(kind, name)`.
    Nothing else changes. Safe to call again.

    Why private: the lookups take no hook or custom message, and Keras's layers and trainer call
    the functions of the `keras.src` modules.
    """
    import importlib

    for kind, name in _LOOKUP_MODULES.items():
        try:
            modules = [importlib.import_module(f"keras.src.{name}"),
                       importlib.import_module(f"keras.{name}")]
            functions = [m.get for m in modules]
        except (ImportError, AttributeError) as e:
            raise _moved(f"Keras's name lookup keras.src.{name}.get", "explain_unknown_names",
                         "An unknown name gets Keras's own error, without the closest names.",
                         e) from e
        wrapped = {}
        for module, get in zip(modules, functions):
            if getattr(get, "_keras_afl_explains", False):
                continue
            if id(get) not in wrapped:
                wrapped[id(get)] = _explaining(get, kind, explain)
            module.get = wrapped[id(get)]


def _explaining(get, kind, explain):
    @functools.wraps(get)
    def lookup(identifier, *args, **kwargs):
        try:
            return get(identifier, *args, **kwargs)
        except ValueError as e:
            hint = explain(kind, identifier) if isinstance(identifier, str) else ""
            if not hint:
                raise
            raise ValueError(f"{e}. {hint}") from None

    lookup._keras_afl_explains = True
    return lookup


def compile_owner():
    """The class whose `compile` is `keras.Model.compile` (Keras's `Trainer`).

    A wrapper of `Model.compile` must replace the function on that class, not add one on
    `keras.Model`: Keras's `compile_from_config` (called by `load_model`) compares a model's
    `type(model).compile` with `Trainer.compile` and, when they differ, skips compiling the loaded
    model. Why private: `Trainer` is not public API.
    """
    owner = next((c for c in keras.Model.__mro__ if "compile" in vars(c)), None)
    if owner is None:
        raise _moved("the class that defines keras.Model.compile", "compile_owner",
                     "compile() cannot check names or resolve use_as_builtins() names.")
    return owner


# --------------------------------------------------------------------------- JAX's trainer

# The JAXTrainer method that turns one jitted step into the function `fit` calls per execution
# (`steps_per_execution` steps in a Python loop): keras_afl._guard wraps the step it is given, so
# that a bad label in any step of an execution raises there. Why private: no public hook runs
# between the steps of one execution.
JAX_STEP_WRAPPER = "_make_function"


def set_jax_state(model, state, sync=False):
    """Hands Keras's JAX trainer `state` (a dict: trainable_variables, ... as lists of arrays)
    as the state to put back into the model's variables (`jax_state_sync`; now if `sync`).

    JAXTrainer takes the weights out of the variables for a run of steps and keeps the steps'
    state in `_jax_state` until `jax_state_sync()`; a step that raises leaves the variables empty
    unless the trainer is handed a state. Why private: `_jax_state` is the trainer's own.
    """
    if not callable(getattr(model, "jax_state_sync", None)):
        raise _moved("JAXTrainer.jax_state_sync", "set_jax_state",
                     "A model whose step raised on JAX may be left without its weights.")
    model._jax_state = state
    model._jax_state_synced = False
    if sync:
        model.jax_state_sync()


# --------------------------------------------------------------------------- losses

def loss_reduction():
    """Keras's `reduce_weighted_values(values, sample_weight, mask, reduction, dtype)`.

    What `keras.losses.Loss.__call__` does after `call()`: sample weights, the
    mask and the reduction. Why private: the public way to run it is
    `Loss.__call__` itself, which first casts y_pred and y_true to the loss
    dtype -- a pass over memory each way for half-precision predictions that
    keras_afl's losses cast inside their kernels anyway.
    """
    try:
        from keras.src.losses.loss import reduce_weighted_values
    except ImportError as e:
        raise _moved("Keras's loss reduction (keras.src.losses.loss.reduce_weighted_values)",
                     "loss_reduction", "Losses fall back to keras.losses.Loss.__call__ (same "
                     "values, with its casts).", e) from e
    return reduce_weighted_values


def keras_mask(x):
    """The Keras mask a tensor carries (`x._keras_mask`), or None.

    Why private: Keras passes masks between layers and to `Loss.__call__` as
    this attribute; its getter (`keras.src.backend.get_keras_mask`) is not
    public either.
    """
    return getattr(x, KERAS_MASK, None)


def set_keras_mask(x, mask):
    """Attaches a Keras mask to a tensor, as Keras's masking layers do; False if `x` refuses it.

    A loss tensor with a mask makes `keras.losses.Loss` average over the
    unmasked samples only. Why private: as for `keras_mask`.
    """
    return set_attribute(x, KERAS_MASK, mask)


def backend_keras_mask(x):
    """The Keras mask of a tensor on any backend, or None: the `_keras_mask` attribute or, for
    tensors that refuse attributes (JAX arrays), the table Keras keeps their masks in.

    Why private: as for `keras_mask`; Keras's reader of that table
    (`keras.src.backend.common.masking.get_keras_mask`) is not public either. The portable
    losses (JAX, PyTorch) read masks with it.
    """
    return _masking("backend_keras_mask").get_keras_mask(x)


def set_backend_keras_mask(x, mask):
    """Attaches a Keras mask to a tensor on any backend (a JAX array's goes to Keras's table),
    as Keras's masking layers do. Why private: as for `backend_keras_mask`."""
    _masking("set_backend_keras_mask").set_keras_mask(x, mask)


def _masking(function):
    try:
        from keras.src.backend.common import masking

        masking.get_keras_mask, masking.set_keras_mask  # noqa: B018 - both must exist
    except (ImportError, AttributeError) as e:
        raise _moved("Keras's tensor masks (keras.src.backend.common.masking)", function,
                     "The portable losses' ignore_class cannot mark ignored samples on JAX and "
                     "PyTorch.", e) from e
    return masking


def keras_logits(x):
    """The logits a sigmoid/softmax output carries (`x._keras_logits`), or None.

    Why private: Keras's sigmoid/softmax record their input under this
    attribute and its cross-entropies use it when `from_logits=False`; no
    public API reads or writes it.
    """
    return getattr(x, KERAS_LOGITS, None)


def set_keras_logits(x, logits):
    """Records `logits` on a sigmoid/softmax output as Keras does; False if `x` refuses it."""
    return set_attribute(x, KERAS_LOGITS, logits)


def set_attribute(x, name, value):
    """Sets an attribute on a tensor; False if its type refuses it (JAX and NumPy arrays)."""
    try:
        setattr(x, name, value)
    except (AttributeError, TypeError):  # tensor types that refuse attributes (NumPy arrays, ...)
        return False
    return True


# --------------------------------------------------------------------------- model graphs

def producer(tensor):
    """The operation (layer) that made a symbolic tensor, or None (not a tracked KerasTensor).

    Why private: Keras 3 has no public way to go from a KerasTensor to the
    layer that produced it; the tensor's `_keras_history` records it. An
    `InputLayer` is returned as it is: callers decide what it means.
    """
    history = getattr(tensor, KERAS_HISTORY, None)
    if history is None:
        return None
    try:
        return history.operation
    except AttributeError as e:
        raise _moved("the operation in a KerasTensor's _keras_history", "producer",
                     "keras_afl.lint and ActivationStats cannot follow the model graph.", e) from e


def call_inputs(layer):
    """The first argument of each call of `layer` in a symbolic graph, one per call, in order.

    Why private: a layer's calls are its `_inbound_nodes`; the public
    `layer.input` gives the first call's input for a plain layer, but a
    functional model overrides it with its own inputs, and nothing public says
    how many times a layer was called (shared layers).
    """
    try:
        nodes = getattr(layer, INBOUND_NODES)
        return [node.arguments.args[0] if node.arguments.args else None for node in nodes]
    except AttributeError as e:
        raise _moved("a layer's calls (_inbound_nodes, Node.arguments.args)", "call_inputs",
                     "ActivationStats cannot probe nested models.", e) from e


# --------------------------------------------------------------------------- TensorFlow

def under_xla():
    """Whether the graph being built will be compiled by XLA (a `jit_compile=True` tf.function,
    or a function inside one), where assertions are dropped.

    Why private: no public API says so: tf.function enters an `XLAControlFlowContext` around a
    `jit_compile=True` call, which this reads (tests/test_labels.py fails loudly if TensorFlow
    moves it).
    """
    import tensorflow as tf
    from tensorflow.python.ops import control_flow_util  # no public API

    return control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())


def optimization_barrier(*tensors):
    """The tensors, unchanged, behind an XLA optimization barrier (a list).

    XLA does not move computation across the barrier. Why private: TensorFlow's
    public API exports no optimization barrier: the op lives in the tf2xla
    module `tensorflow.compiler.tf2xla.python.xla` and is not among `tf.raw_ops`;
    `keras.ops` has none.
    """
    try:
        from tensorflow.compiler.tf2xla.python import xla

        barrier = xla.optimization_barrier
    except (ImportError, AttributeError) as e:
        raise _moved("XLA's optimization barrier (tensorflow.compiler.tf2xla.python.xla)",
                     "optimization_barrier", "keras_afl's compiled loss path cannot run.",
                     e) from e
    return list(barrier(*tensors))


@functools.lru_cache(maxsize=None)
def _tensorboard_installed():
    try:
        import tensorboard.summary.v2  # noqa: F401  (what tf.summary.scalar imports)
    except ImportError:
        return False
    return True


def _write_scalar(tag, value, step):
    """What `tf.summary.scalar` writes, without the `tensorboard` package.

    tensorboard 2.21's `tf.summary.scalar` is `tf.summary.write` of the value as
    float32 with the scalar plugin's metadata (`tensorboard.plugins.scalar.metadata`:
    plugin "scalars", empty content; TensorBoard sets the data class when it loads
    the event).
    """
    tf = _tf()
    meta = tf.compat.v1.SummaryMetadata
    return tf.summary.write(tag, tf.cast(value, tf.float32), step=step,
                            metadata=meta(plugin_data=meta.PluginData(plugin_name="scalars")))


def summary_scalar(tag, value, step):
    """Writes a TensorBoard scalar to the default summary writer: `tf.summary.scalar`.

    Why not always `tf.summary.scalar`: it is implemented by the `tensorboard`
    package, which tensorflow-cpu 2.21 does not install, and raises without it.
    There the same event is written with `tf.summary.write` (`_write_scalar`),
    so the logs TensorBoard shows do not depend on where they were written.
    """
    if _tensorboard_installed():
        return _tf().summary.scalar(tag, value, step=step)
    return _write_scalar(tag, value, step)
