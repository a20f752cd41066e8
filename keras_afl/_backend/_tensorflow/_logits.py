"""The logits behind a graph tensor: which op made it (`keras_afl._logits` reads this first from
keras_afl's own record on the tensor).

In graph mode (`tf.function`, `fit`, XLA), the op that made the tensor tells: a `Sigmoid`, a
`Softmax` (last axis), or what `tf.nn.softmax` (so Keras's softmax) builds for another axis -- a
`Transpose` of a `Softmax` of a `Transpose`, the second undoing the first; the softmax axis is
the one the first moves last. Anything else: unknown.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

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


def made_by_op(y):
    """(logits, activation, axis) of the sigmoid/softmax op that made the graph tensor y, if it
    is one; else None (eager tensors). axis is None for the sigmoid."""
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
