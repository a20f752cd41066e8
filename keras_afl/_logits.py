"""The logits shortcut: a sigmoid/softmax output that carries its logits, and the logits behind a
cross-entropy's `y_pred` when the activation that made it is the loss's own.

A cross-entropy given probabilities computes from the logits behind them only when the
activation that made them is the one the loss inverts: a sigmoid for the binary losses, a softmax
over the loss's own class axis for the categorical ones. Any other pairing (a sigmoid output fed
to a categorical cross-entropy, a softmax over another axis) is computed from the probabilities
as given. Keras's own losses take the shortcut whenever `_keras_logits` is there, whatever the
activation; this module is where we differ.

How the activation is known, most reliable first:

1. keras_afl's sigmoid/softmax record it on their output: `_keras_afl_logits = (logits,
   activation, axis)` (`attach_logits`).
2. On TensorFlow in graph mode (`tf.function`, `fit`, XLA), the op that made the tensor
   (`keras_afl._backend._tensorflow._logits.made_by_op`): a `Sigmoid`, a `Softmax`, or the
   transposes `tf.nn.softmax` builds around it for another axis.
3. A concrete tensor that carries only `_keras_logits` (Keras's sigmoid/softmax): the candidate
   activation of the logits is computed and compared with the tensor (a few ulp). Eager mode is
   not the performance path.

On JAX there is no shortcut (`ops().CARRIES_LOGITS` is False): the tracers of `jax.jit` and
`jax.grad` take no attributes, so it could apply only outside any transformation, and an eager
evaluation's loss would differ from the loss being trained. A cross-entropy on JAX computes from
the probabilities as given, clipped as Keras clips them.
"""

from __future__ import annotations

import keras
import numpy as np

from keras_afl import _keras_compat
from keras_afl._backend import ops

AFL_LOGITS = "_keras_afl_logits"  # keras_afl's record: (logits, activation, axis)


def attach_logits(y, logits, activation=None, axis=None):
    """Records `logits` on the output `y` of a sigmoid (axis None) or softmax over `axis`.

    Sets `_keras_logits` as Keras's own sigmoid/softmax do (for a sigmoid, a softmax over the
    last axis, or an unnamed `activation`: Keras's losses use it whatever the loss), and with
    `activation` "sigmoid" or "softmax" also `_keras_afl_logits = (logits, activation, axis)`.
    Tensors that refuse attributes (JAX arrays) are returned unchanged.
    """
    rank = len(y.shape)
    if activation is None or axis is None or axis == -1 or axis == rank - 1:
        _keras_compat.set_keras_logits(y, logits)
    if activation is not None:
        _keras_compat.set_attribute(y, AFL_LOGITS, (logits, activation, axis))
    return y


def _reproduces(y, logits, activation, axis):
    """Whether activation(logits) equals y to a few ulp (of y's dtype)."""
    o = ops()
    name = o.dtype_name(y)
    if o.dtype_name(logits) != name:
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
    o = ops()
    if activation is None or not o.CARRIES_LOGITS or not keras.ops.is_tensor(y):
        return None
    rank = len(y.shape)
    want = None if activation == "sigmoid" else axis % rank
    made = getattr(y, AFL_LOGITS, None) or o.made_by_op(y)
    if made is not None:
        logits, made_activation, made_axis = made
        if made_axis is not None:
            made_axis %= rank
        if made_activation != activation or made_axis != want:
            return None
    else:
        logits = _keras_compat.keras_logits(y)
        # Keras's sigmoid/softmax (the activation and axis unrecorded): checked by recomputing it.
        if (logits is None or not keras.ops.is_tensor(logits)
                or tuple(logits.shape) != tuple(y.shape) or o.is_traced(y) or o.is_traced(logits)
                or not _reproduces(y, logits, activation, want)):
            return None
    if not keras.ops.is_tensor(logits) or tuple(logits.shape) != tuple(y.shape):
        return None
    return logits
