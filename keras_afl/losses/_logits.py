"""The logits shortcut: which activation made `y_pred`, and its logits when it is the loss's own.

A cross-entropy given probabilities computes from the logits behind them only
when the activation that made them is the one the loss inverts: a sigmoid for
the binary losses, a softmax over the loss's own class axis for the
categorical ones. Any other pairing (a sigmoid output fed to a categorical
cross-entropy, a softmax over another axis) is computed from the
probabilities as given. Keras's own losses take the shortcut whenever
`_keras_logits` is there, whatever the activation; this module is where we
differ.

How the activation is known, most reliable first:

1. keras_afl's sigmoid/softmax record it on their output: `_keras_afl_logits =
   (logits, activation, axis)` (`keras_afl.activations._attach_logits`).
2. In graph mode (`tf.function`, `fit`, XLA), the op that made the tensor: a
   `Sigmoid`, a `Softmax` (last axis), or what `tf.nn.softmax` (so Keras's
   softmax) builds for another axis -- a `Transpose` of a `Softmax` of a
   `Transpose`, the second undoing the first; the softmax axis is the one the
   first moves last.
3. An eager tensor that carries only `_keras_logits` (Keras's sigmoid/softmax):
   the candidate activation of the logits is computed and compared with the
   tensor (a few ulp). Eager mode is not the performance path.

Anything else (a graph tensor whose op tells nothing, an eager one whose
logits do not reproduce it): no shortcut.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_afl import _keras_compat
from keras_afl._grad_utils import normalize_axis

# Op type -> activation name; the loss functions name the activation they invert by op type.
_ACTIVATIONS = {"Sigmoid": "sigmoid", "Softmax": "softmax"}


def _static(t, depth=0):
    """The value of a small integer tensor built from constants (trace time), or None.

    `tf.get_static_value`, plus the `Sub`/`Add`/`Range`/`Pack`/`ConcatV2` of
    which `tf.nn.softmax` builds its transposes' permutations (rank - 1 is a `Sub`).
    """
    value = tf.get_static_value(t)
    if value is not None:
        return np.asarray(value)
    if depth > 8:
        return None
    try:
        op = t.op
    except AttributeError:  # eager tensors
        return None
    args = [_static(i, depth + 1) for i in op.inputs]
    if any(a is None for a in args):
        return None
    if op.type == "Sub":
        return args[0] - args[1]
    if op.type in ("Add", "AddV2"):
        return args[0] + args[1]
    if op.type == "Range":
        return np.arange(*(int(a) for a in args))
    if op.type == "Pack":
        return np.stack(args, axis=op.get_attr("axis"))
    if op.type == "ConcatV2":
        return np.concatenate([np.reshape(a, [-1]) for a in args[:-1]])
    return None


def _softmax_axis_of_transposes(op, rank):
    """The axis of a softmax written as Transpose(Softmax(Transpose(x, p)), q), q undoing p."""
    inner = op.inputs[0].op
    if inner.type != "Softmax" or inner.inputs[0].op.type != "Transpose":
        return None
    first = inner.inputs[0].op
    p, q = _static(first.inputs[1]), _static(op.inputs[1])
    if p is None or q is None or p.shape != (rank,) or q.shape != (rank,):
        return None
    p, q = p.astype(int).tolist(), q.astype(int).tolist()
    if sorted(p) != list(range(rank)) or any(p[q[k]] != k for k in range(rank)):
        return None
    return first.inputs[0], p[-1]


def _made_by(y):
    """(logits, activation, axis) of the sigmoid/softmax that made y, if known; else None.

    axis is None for the sigmoid. From keras_afl's record, or in graph mode from the op.
    """
    record = getattr(y, "_keras_afl_logits", None)
    if record is not None:
        return record
    try:
        op = y.op
    except AttributeError:  # eager tensors have no op
        return None
    rank = y.shape.rank
    if op.type in _ACTIVATIONS and len(op.inputs) == 1:
        axis = None if op.type == "Sigmoid" else (-1 if rank is None else rank - 1)
        return op.inputs[0], _ACTIVATIONS[op.type], axis
    if op.type == "Transpose" and rank is not None:
        found = _softmax_axis_of_transposes(op, rank)
        if found is not None:
            return found[0], "softmax", found[1]
    return None


def _reproduces(y, logits, activation, axis):
    """Whether activation(logits) equals y to a few ulp (eager tensors only)."""
    if not y.dtype.is_floating:
        return False
    if logits.dtype != y.dtype:
        logits = tf.cast(logits, y.dtype)
    made = tf.math.sigmoid(logits) if activation == "sigmoid" else tf.nn.softmax(logits, axis=axis)
    info = np.finfo(y.dtype.as_numpy_dtype)
    a = np.asarray(made, np.float64)
    b = np.asarray(y, np.float64)
    return bool(np.all(np.abs(a - b) <= 8.0 * float(info.eps) * np.abs(b) + float(info.tiny)))


def _carried_logits(y, op_type, axis=-1):
    """The logits behind y when the activation that made it is the loss's own; else None.

    op_type: `"Sigmoid"` (the binary losses), `"Softmax"` over `axis` (the
    categorical ones), or None (no shortcut).
    """
    if op_type is None or not tf.is_tensor(y):
        return None
    activation = _ACTIVATIONS[op_type]
    rank = y.shape.rank
    want = None if activation == "sigmoid" else normalize_axis(axis, rank)
    made = _made_by(y)
    if made is not None:
        logits, made_activation, made_axis = made
        if made_axis is not None and made_axis < 0 and rank is not None:
            made_axis %= rank
        if made_activation != activation or made_axis != want:
            return None
    else:
        logits = _keras_compat.keras_logits(y)
        # Keras's sigmoid/softmax (the activation and axis unrecorded): eager tensors only.
        if not (tf.is_tensor(logits) and _is_eager(y) and _is_eager(logits)
                and logits.shape == y.shape and _reproduces(y, logits, activation, want)):
            return None
    if not tf.is_tensor(logits) or not logits.shape.is_compatible_with(y.shape):
        return None
    return logits


def _is_eager(y):
    try:
        y.op  # noqa: B018 - raises AttributeError for eager tensors
    except AttributeError:
        return True
    return False
