"""The logits shortcut on the JAX and PyTorch backends: a sigmoid/softmax output that carries its
logits, and the logits behind a cross-entropy's `y_pred` when the activation that made it is the
loss's own (a sigmoid for the binary losses, a softmax over the loss's axis for the categorical
ones), as `keras_afl.losses._logits` decides on TensorFlow eagerly.

PyTorch tensors take attributes: Keras's sigmoid/softmax set `_keras_logits` on their output,
and keras_afl's portable sigmoid/softmax (`attach_logits`) also record which activation and
axis made it (`_keras_afl_logits`). On JAX there is no shortcut: the tracers of `jax.jit` and
`jax.grad` take no attributes (concrete arrays do, in recent JAX), so a shortcut could apply only
outside any transformation, and the loss of an eager evaluation would differ from the loss
being trained. A cross-entropy on JAX computes from the probabilities as given, clipped as
Keras clips them.
"""

from __future__ import annotations

import numpy as np

from keras_afl._backend import backend, ops

KERAS_LOGITS = "_keras_logits"  # Keras's sigmoid/softmax record their input under this name
AFL_LOGITS = "_keras_afl_logits"  # keras_afl's: (logits, activation, axis)


def attach_logits(y, logits, activation, axis=None):
    """Records `logits` on the output `y` of a sigmoid (axis None) or softmax over `axis`.

    Sets `_keras_logits` as Keras's own sigmoid/softmax do (for a sigmoid or a softmax over the
    last axis), and `_keras_afl_logits = (logits, activation, axis)`. Tensors that refuse
    attributes (JAX tracers) are returned unchanged.
    """
    rank = len(y.shape)
    if axis is None or axis == -1 or axis == rank - 1:
        _set(y, KERAS_LOGITS, logits)
    _set(y, AFL_LOGITS, (logits, activation, axis))
    return y


def _set(y, name, value):
    try:
        setattr(y, name, value)
    except (AttributeError, TypeError):  # JAX arrays and other C types
        return False
    return True


def _reproduces(y, logits, activation, axis):
    """Whether activation(logits) equals y to a few ulp (of y's dtype)."""
    o = ops()
    name = o.dtype_name(y)
    if logits.dtype != y.dtype:
        logits = o.cast(logits, name)
    made = o.sigmoid(logits) if activation == "sigmoid" else o.softmax(logits, axis=axis)
    a = np.asarray(o.to_numpy(made), np.float64)
    b = np.asarray(o.to_numpy(y), np.float64)
    info = np.finfo(np.float32 if name == "bfloat16" else name)
    eps = 2.0**-7 if name == "bfloat16" else float(info.eps)
    return bool(np.all(np.abs(a - b) <= 8.0 * eps * np.abs(b) + float(info.tiny)))


def carried_logits(y, activation, axis=-1):
    """The logits behind y when `activation` ("sigmoid", or "softmax" over `axis`) made it; else
    None (always on JAX: see the module docstring)."""
    if activation is None or not hasattr(y, "shape") or backend() == "jax":
        return None
    o = ops()
    rank = len(y.shape)
    want = None if activation == "sigmoid" else axis % rank
    record = getattr(y, AFL_LOGITS, None)
    if record is not None:
        logits, made_activation, made_axis = record
        if made_axis is not None:
            made_axis %= rank
        if made_activation != activation or made_axis != want:
            return None
    else:
        logits = getattr(y, KERAS_LOGITS, None)
        # Keras's sigmoid/softmax (the activation and axis unrecorded): checked by recomputing it.
        if (logits is None or not hasattr(logits, "shape") or tuple(logits.shape) != tuple(y.shape)
                or o.is_traced(y) or not _reproduces(y, logits, activation, want)):
            return None
    if tuple(logits.shape) != tuple(y.shape):
        return None
    return logits
