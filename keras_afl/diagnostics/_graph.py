"""Walking a Keras model: the activation each layer applies and the layers feeding it."""

from __future__ import annotations

import dataclasses
import functools

import sys

import keras

from keras_afl import _keras_compat
from keras_afl import activations as _afl_activations
from keras_afl import layers as _afl_layers

# --------------------------------------------------------------------------- activations

_ACTIVATION_NAMES = ("linear", "relu", "relu6", "leaky_relu", "sigmoid", "tanh", "softmax",
                     "elu", "selu")


@functools.lru_cache(maxsize=1)
def _function_table():
    ka, a = keras.activations, _afl_activations
    pairs = [
        (ka.linear, "linear"), (ka.relu, "relu"), (ka.relu6, "relu"),
        (ka.leaky_relu, "leaky_relu"), (ka.sigmoid, "sigmoid"), (ka.tanh, "tanh"),
        (ka.softmax, "softmax"), (ka.elu, "elu"), (ka.selu, "selu"),
        (a.relu, "relu"), (a.leaky_relu, "leaky_relu"), (a.sigmoid, "sigmoid"),
        (a.tanh, "tanh"), (a.softmax, "softmax"), (a.elu, "elu"), (a.selu, "selu"),
    ]
    tf = sys.modules.get("tensorflow")  # tf.nn's functions, where TensorFlow is loaded
    if tf is not None:
        pairs += [
            (tf.nn.relu, "relu"), (tf.nn.relu6, "relu"), (tf.nn.leaky_relu, "leaky_relu"),
            (tf.nn.sigmoid, "sigmoid"), (tf.nn.tanh, "tanh"), (tf.nn.softmax, "softmax"),
            (tf.nn.elu, "elu"), (tf.nn.selu, "selu"),
        ]
    return {id(fn): kind for fn, kind in pairs}


def _function_kind(fn):
    """Kind of an activation function or string: "relu", "sigmoid", ..., or its own name."""
    if fn is None:
        return "linear"
    if isinstance(fn, str):
        try:
            fn = keras.activations.get(fn)
        except (ValueError, TypeError):
            return fn
    while isinstance(fn, functools.partial):
        fn = fn.func
    kind = _function_table().get(id(fn))
    if kind is not None:
        return kind
    name = getattr(fn, "__name__", type(fn).__name__)
    if name in _ACTIVATION_NAMES:
        return "relu" if name == "relu6" else name
    return name


_AFL_LAYER_KINDS = {
    _afl_layers.ReLU: "relu", _afl_layers.LeakyReLU: "leaky_relu", _afl_layers.PReLU: "prelu",
    _afl_layers.Sigmoid: "sigmoid", _afl_layers.Tanh: "tanh", _afl_layers.Softmax: "softmax",
    _afl_layers.ELU: "elu", _afl_layers.SELU: "selu",
}


def _is_affine(layer):
    """Dense, EinsumDense, Conv*: output = activation(affine(input)); not recurrent layers."""
    return (hasattr(layer, "kernel_initializer") and hasattr(layer, "activation")
            and not isinstance(layer, keras.layers.RNN))


def activation_of(layer):
    """The activation a layer applies, as a kind string, or None if it applies none.

    Kinds: "relu" (also ReLU6), "leaky_relu", "prelu", "sigmoid", "tanh",
    "softmax", "elu", "selu", or the function's own name ("gelu", ...). Reads
    keras_afl's layers, Keras's `ReLU`, `LeakyReLU`, `PReLU`, `ELU`, `Softmax`
    and `Activation` layers, and the `activation=` of Dense/Conv layers (a
    linear `activation=` gives None).

    Example:
    >>> import keras, keras_afl
    >>> activation_of(keras.layers.Dense(4, activation="afl_selu"))
    'selu'
    >>> activation_of(keras_afl.layers.Sigmoid()), activation_of(keras.layers.Dense(4))
    ('sigmoid', None)
    """
    for cls, kind in _AFL_LAYER_KINDS.items():
        if isinstance(layer, cls):
            return kind
    if isinstance(layer, keras.layers.ReLU):
        return "leaky_relu" if (layer.negative_slope or 0) > 0 else "relu"
    for cls, kind in ((keras.layers.LeakyReLU, "leaky_relu"), (keras.layers.PReLU, "prelu"),
                      (keras.layers.ELU, "elu"), (keras.layers.Softmax, "softmax")):
        if isinstance(layer, cls):
            return kind
    if isinstance(layer, keras.layers.Activation) or _is_affine(layer):
        kind = _function_kind(getattr(layer, "activation", None))
        return None if kind == "linear" else kind
    return None


# --------------------------------------------------------------------------- model walking

# Layers that pass an activation's output on unchanged in kind (walked through to find it).
_PASS_THROUGH = tuple(getattr(keras.layers, n) for n in (
    "Dropout", "AlphaDropout", "GaussianDropout", "GaussianNoise", "Reshape", "Flatten",
    "Identity", "ActivityRegularization") if hasattr(keras.layers, n))


def _producer(tensor):
    """The layer that made a symbolic tensor, or None.

    Keras 3 has no public way to go from a KerasTensor to the layer that
    produced it: `keras_afl._keras_compat.producer` reads it.
    """
    op = _keras_compat.producer(tensor)
    if op is None or isinstance(op, keras.layers.InputLayer):
        return None
    return op


def _flat_layers(model):
    out = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            out.extend(_flat_layers(layer))
        elif not isinstance(layer, keras.layers.InputLayer):
            out.append(layer)
    return out


class _Graph:
    """The layers of a model in order, with each layer's (single) predecessor."""

    def __init__(self, model):
        self.model = model
        self.layers = _flat_layers(model)
        self.index = {id(l): i for i, l in enumerate(self.layers)}

    def before(self, layer):
        """The layer feeding `layer` (None for an input, a merge or an unknown)."""
        try:
            inp = layer.input
        except (AttributeError, ValueError, RuntimeError):  # unbuilt or shared layer
            inp = None
        if inp is not None:
            if isinstance(inp, (list, tuple, dict)):
                return None
            prev = _producer(inp)
            if isinstance(prev, keras.Model):
                return self.output_layers_of(prev)[0][1] if prev.outputs else None
            return prev
        i = self.index.get(id(layer))
        if i and isinstance(self.model, keras.Sequential):
            return self.layers[i - 1]
        return None

    def output_layers_of(self, model):
        """[(output name, layer)] for a model's outputs, in order."""
        try:
            tensors = list(model.outputs)
        except (AttributeError, ValueError):
            tensors = []
        if not tensors:
            layers = _flat_layers(model)
            return [(layers[-1].name, layers[-1])] if layers else []
        names = getattr(model, "output_names", None)
        out = []
        for i, t in enumerate(tensors):
            layer = _producer(t)
            if isinstance(layer, keras.Model):
                layer = self.output_layers_of(layer)[0][1]
            if layer is None:
                continue
            name = names[i] if names and i < len(names) else layer.name
            out.append((name, layer))
        return out

    def feeding_weights(self, layer):
        """The Dense/Conv layer whose output reaches `layer` through pass-through layers."""
        prev = self.before(layer)
        seen = 0
        while prev is not None and seen < 50:
            if _is_affine(prev):
                return prev
            if not isinstance(prev, (*_PASS_THROUGH, keras.layers.BatchNormalization)):
                return None
            prev, seen = self.before(prev), seen + 1
        return None


@dataclasses.dataclass
class _Site:
    """Where an activation is applied: the layer, its kind, the Dense/Conv that feeds it."""

    layer: object
    kind: str
    weights: object


def _sites(graph):
    out = []
    for layer in graph.layers:
        kind = activation_of(layer)
        if kind is None:
            continue
        weights = layer if _is_affine(layer) else graph.feeding_weights(layer)
        out.append(_Site(layer, kind, weights))
    return out


def _last_dim(layer):
    try:
        shape = layer.output.shape
        return None if shape[-1] is None else int(shape[-1])
    except (AttributeError, ValueError, RuntimeError, IndexError, TypeError):
        return getattr(layer, "units", None) or getattr(layer, "filters", None)


def _output_site(graph, layer):
    """(kind, units, layer) of the activation that produces an output: kind "linear" for a
    Dense/Conv without activation, None when it cannot be told (a merge, a Lambda ...)."""
    seen = 0
    while layer is not None and seen < 50:
        kind = activation_of(layer)
        if kind is not None:
            units = _last_dim(layer)
            if units is None:
                w = layer if _is_affine(layer) else graph.feeding_weights(layer)
                units = _last_dim(w) if w is not None else None
            return kind, units, layer
        if _is_affine(layer):
            return "linear", _last_dim(layer), layer
        if not isinstance(layer, _PASS_THROUGH):
            return None, None, layer
        layer, seen = graph.before(layer), seen + 1
    return None, None, layer
