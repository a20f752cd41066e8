"""Keras callbacks that watch the activations while a model trains.

`ActivationStats` answers, once per epoch, the questions the advice behind
keras_afl raises: are ReLU units dying, are sigmoid/tanh units saturating,
do SELU activations keep mean 0 and standard deviation 1?
"""

from __future__ import annotations

import numbers
import os

import sys

import keras
import numpy as np

from keras_afl import _keras_compat
from keras_afl._backend import ops
from keras_afl.diagnostics import activation_of

__all__ = ["ActivationStats"]

SATURATION_THRESHOLD = 1e-3  # derivative below which a sigmoid/tanh output counts as saturated
_DEAD_KINDS = ("relu",)              # zero output and zero gradient for inputs <= 0
_SATURATING_KINDS = ("sigmoid", "tanh")


def _held_out_x(data):
    """The model input of `data`: x, the x of (x, y[, w]), or of a tf.data batch."""
    tf = sys.modules.get("tensorflow")  # a tf.data.Dataset exists only where TensorFlow is loaded
    if tf is not None and isinstance(data, tf.data.Dataset):
        try:
            data = next(iter(data.take(1)))
        except StopIteration:
            raise ValueError("`data` is an empty tf.data.Dataset; expected a batched dataset "
                             "with at least one batch (its first batch is used).") from None
    if isinstance(data, tuple):
        if not 1 <= len(data) <= 3:
            raise ValueError(f"`data` as a tuple must be (x,), (x, y) or (x, y, sample_weight); "
                             f"received a tuple of {len(data)} items.")
        data = data[0]
    if data is None or isinstance(data, (str, bytes, numbers.Number)):
        raise TypeError(
            f"`data` must be a held-out batch of model inputs: an array or tensor, an (x, y) "
            f"tuple or a batched tf.data.Dataset; received {data!r} (type {type(data).__name__}).")

    def to_tensor(v):
        if not keras.ops.is_tensor(v):
            v = np.asarray(v)
            if np.issubdtype(v.dtype, np.floating):
                v = v.astype(keras.config.floatx())
        return keras.ops.convert_to_tensor(v)

    return keras.tree.map_structure(to_tensor, data)


class ActivationStats(keras.callbacks.Callback):
    """Per-epoch health figures of every activation, on a held-out batch.

    At the end of every `every`-th epoch (epochs 0, `every`, 2 `every`, ...,
    counting from 0 as Keras's TensorBoard callback does) it runs the model
    once, in inference mode, on the held-out batch -- one extra forward pass
    through a `keras.Model(model.input, [activation outputs])` built once --
    and computes, for each activation layer (keras_afl's layers, Keras's
    `ReLU`, `LeakyReLU`, `PReLU`, `ELU`, `Softmax`, `Activation`, and
    Dense/Conv layers with a non-linear `activation=`), over its output:

    - `<layer>/mean`, `<layer>/std`: mean and standard deviation of all
      outputs (SELU layers should stay near 0 and 1);
    - `<layer>/dead_fraction` (ReLU layers only; ReLU6 counts): the fraction
      of units whose output is never positive on the batch -- such a unit has
      zero gradient for every sample. A unit is one index of the last axis
      (a channel of a convolution, taken over all positions);
    - `<layer>/saturated_fraction` (sigmoid and tanh only): the fraction of
      (sample, unit) outputs whose local derivative is below 1e-3 --
      y (1 - y) for sigmoid (|x| > 6.9), 1 - y^2 for tanh (|x| > 3.8).

    The figures go into the epoch's `logs`, so `History` (the return value of
    `fit()`) records them, and into `self.history` (with the epoch numbers in
    `self.epochs`: with `every` > 1, History's lists have one entry per
    computed epoch only). With `log_dir`, they are also written as TensorBoard
    scalars (step = epoch) to `log_dir`.

    The model needs symbolic inputs: a functional model, or a Sequential (it
    has them once built, which `fit()` does before the first epoch ends); a
    subclassed model has none. Layers inside nested models (a Sequential or
    functional model used as a layer) are probed too, as `keras_afl.lint`
    walks them, and named by their path: `<sub-model>/<layer>/mean`, ... A
    layer or nested model called more than once (shared) is skipped.

    Args:
        data: The held-out batch: inputs x (array, tensor, list or dict of
            them), an `(x, y)` or `(x, y, sample_weight)` tuple, or a batched
            `tf.data.Dataset` (its first batch is taken once).
        log_dir: Folder for TensorBoard event files, or None.
        every: Compute every `every` epochs (int >= 1).

    Example:
    >>> import numpy as np, keras, keras_afl
    >>> model = keras.Sequential([keras.Input((3,)),
    ...                           keras.layers.Dense(4, activation="relu", name="hidden"),
    ...                           keras.layers.Dense(1, activation="sigmoid", name="out")])
    >>> model.compile("adam", "binary_crossentropy")
    >>> x, y = np.ones((8, 3), "float32"), np.ones((8, 1), "float32")
    >>> stats = keras_afl.callbacks.ActivationStats(x)
    >>> hist = model.fit(x, y, epochs=2, verbose=0, callbacks=[stats])
    >>> sorted(k for k in hist.history if "/" in k)  # doctest: +NORMALIZE_WHITESPACE
    ['hidden/dead_fraction', 'hidden/mean', 'hidden/std',
     'out/mean', 'out/saturated_fraction', 'out/std']
    """

    def __init__(self, data, log_dir=None, every=1):
        super().__init__()
        if isinstance(every, bool) or not isinstance(every, numbers.Integral) or every < 1:
            raise ValueError(f"`every` must be an integer >= 1 (compute every N epochs); "
                             f"received {every!r}.")
        if log_dir is not None and not isinstance(log_dir, (str, os.PathLike)):
            raise TypeError(f"`log_dir` must be a folder path (str) or None; received "
                            f"{log_dir!r} (type {type(log_dir).__name__}).")
        self.every = int(every)
        self.log_dir = None if log_dir is None else os.fspath(log_dir)
        if self.log_dir is not None:
            _require_summary_writer(self.log_dir)  # now, not after the first epoch's training
        self._x = _held_out_x(data)
        self.history = {}
        self.epochs = []
        self._probe = None       # (compiled function, [(layer name, kind)]) for self._probe_model
        self._probe_model = None
        self._writer = None

    # ---------------------------------------------------------------- the probe

    def _build_probe(self):
        model = self.model
        try:  # Sequential: `inputs` only; functional: `input` keeps a dict/list structure
            inputs = model.inputs if isinstance(model, keras.Sequential) else model.input
            if isinstance(model, keras.Sequential) and len(inputs) == 1:
                inputs = inputs[0]
        except (AttributeError, ValueError) as e:
            raise ValueError(
                f"ActivationStats needs a model with defined inputs (a functional model or a "
                f"built Sequential); model '{model.name}' ({type(model).__name__}) has none "
                f"({e}). Fix: build the model as keras.Sequential([keras.Input(shape), ...]) "
                "or keras.Model(inputs, outputs).") from None
        layers, outputs = _activation_outputs(model)
        probe = keras.Model(inputs, outputs, name=f"{model.name}_activation_probe")
        kinds = [k for _, k in layers]

        def compute(x):
            outs = probe(x, training=False)
            if not isinstance(outs, (list, tuple)):
                outs = [outs]
            return keras.ops.concatenate([_figures(o, k) for o, k in zip(outs, kinds)], 0) \
                if kinds else keras.ops.zeros([0])

        compute = ops().traced_once(compute)  # on TensorFlow one graph, traced once

        self._probe_model = probe
        self._probe = (compute, layers)

    def compute(self):
        """{`<layer>/<figure>`: value} on the held-out batch, now (no logging)."""
        if self._probe is None or self._probe_model is None:
            self._build_probe()
        compute, layers = self._probe
        values = keras.ops.convert_to_numpy(compute(self._x)).tolist() if layers else []
        out, i = {}, 0
        for name, kind in layers:
            out[f"{name}/mean"], out[f"{name}/std"] = values[i], values[i + 1]
            i += 2
            if kind in _DEAD_KINDS:
                out[f"{name}/dead_fraction"] = values[i]
                i += 1
            if kind in _SATURATING_KINDS:
                out[f"{name}/saturated_fraction"] = values[i]
                i += 1
        return out

    # ---------------------------------------------------------------- callback hooks

    def on_train_begin(self, logs=None):
        self._probe = None  # the model may have changed since the last fit()

    def on_epoch_end(self, epoch, logs=None):
        if epoch % self.every:
            return
        figures = self.compute()
        self.epochs.append(int(epoch))
        for k, v in figures.items():
            self.history.setdefault(k, []).append(v)
        if logs is not None:
            logs.update(figures)
        if self.log_dir is not None:
            if self._writer is None:
                self._writer = _summary_writer(self.log_dir)
            with self._writer.as_default():
                for k, v in figures.items():
                    _keras_compat.summary_scalar(k, v, int(epoch))
            self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _activation_outputs(model, prefix=""):
    """[(path, kind)] and the symbolic outputs, in `model`'s graph, of its activation layers.

    Nested models (a Sequential or functional model used as a layer) are
    walked as `keras_afl.lint` walks them; their layers are named by the path
    from the top model, `"<sub-model>/<layer>"`. Their outputs live in the
    nested model's own graph: a model from its inputs to them is called on the
    tensor that feeds the nested model, which puts them in the outer graph.
    """
    layers, outputs = [], []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            fed = _fed_tensor(layer)
            try:
                own = layer.inputs[0] if isinstance(layer, keras.Sequential) else layer.input
            except (AttributeError, ValueError, IndexError, TypeError):  # subclassed: no graph
                continue
            if fed is None or own is None:
                continue
            sub_layers, sub_outputs = _activation_outputs(layer, f"{prefix}{layer.name}/")
            if not sub_outputs:
                continue
            sub_probe = keras.Model(own, sub_outputs, name=f"{layer.name}_activation_probe")
            outs = sub_probe(fed)
            layers.extend(sub_layers)
            outputs.extend(outs if isinstance(outs, (list, tuple)) else [outs])
            continue
        kind = activation_of(layer)
        if kind is None:
            continue
        try:
            out = layer.output
        except (AttributeError, ValueError, RuntimeError):  # shared or unbuilt layer
            continue
        layers.append((prefix + layer.name, kind))
        outputs.append(out)
    return layers, outputs


def _fed_tensor(sub_model):
    """What a nested model is called on in its parent's graph, or None (shared, never called).

    Keras 3 has no public way to read it: `sub_model.input` is the nested model's
    own input for a functional model (the outer tensor for a Sequential), so
    this reads the model's calls (`keras_afl._keras_compat.call_inputs`).
    """
    calls = _keras_compat.call_inputs(sub_model)
    return calls[0] if len(calls) == 1 else None


def _summary_writer(log_dir):
    """A TensorBoard event writer (`tf.summary`), on every backend where TensorFlow is installed.

    TensorBoard's event files are written by TensorFlow, as Keras's own `TensorBoard` callback
    writes them on every backend.
    """
    _require_summary_writer(log_dir)
    import tensorflow as tf

    return tf.summary.create_file_writer(log_dir)


def _require_summary_writer(log_dir):
    """ImportError naming the fix unless TensorFlow, which writes the event files, is installed.

    Checked without importing TensorFlow (seconds, and a second framework in a JAX or PyTorch
    process): `ActivationStats` checks at construction, before any training.
    """
    import importlib.util

    try:
        found = importlib.util.find_spec("tensorflow") is not None
    except (ImportError, ValueError):  # a broken or half-imported package
        found = False
    if not found:
        raise ImportError(
            f"ActivationStats(log_dir={log_dir!r}) writes TensorBoard event files with "
            "tf.summary, and TensorFlow is not installed. Fix: pip install tensorflow-cpu (Keras "
            "keeps running on its backend), or pass log_dir=None and keep the figures another "
            "way: they are in `history`, the epoch logs and History, and "
            "keras.callbacks.CSVLogger(path) placed after this callback writes them to a file.")


def _figures(out, kind):
    """[mean, std, (dead fraction), (saturated fraction)] of one activation output."""
    ops = keras.ops
    y = ops.cast(out, "float32")
    flat = ops.reshape(y, [-1, ops.shape(y)[-1] if len(y.shape) else 1])
    figs = [ops.mean(flat), ops.std(flat)]
    if kind in _DEAD_KINDS:
        alive = ops.any(flat > 0, axis=0)
        figs.append(1.0 - ops.mean(ops.cast(alive, "float32")))
    if kind in _SATURATING_KINDS:
        deriv = flat * (1.0 - flat) if kind == "sigmoid" else 1.0 - ops.square(flat)
        figs.append(ops.mean(ops.cast(deriv < SATURATION_THRESHOLD, "float32")))
    return ops.stack(figs)
