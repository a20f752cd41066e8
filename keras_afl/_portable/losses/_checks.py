"""Label checks on JAX and PyTorch, with the messages of `keras_afl.losses._checks`.

Called eagerly (PyTorch, JAX outside `jax.jit`), a loss given bad labels raises an
`InvalidLabelsError` (a `ValueError`) naming the loss, `y_true`, the first bad value, how many
are bad and the fix. The check is one comparison and one reduction on the device, and one
boolean read back; the message's numbers are computed only when it fails. Labels that are
concrete while `y_pred` is traced (closed over by a `jax.jit` function) are checked once, on the
host, when the function is traced. While the labels themselves are traced (`jax.jit`,
`torch.compile`), where nothing can raise, the samples with a bad label get a NaN loss and NaN
gradients, as TensorFlow's losses under XLA (the other samples are unaffected); inside a Keras
training or test step the loss also records its verdict, and the step keeps the weights and
raises (`keras_afl._guard`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from keras_afl import _guard
from keras_afl._backend import ops


class InvalidLabelsError(ValueError):
    """Labels that make no sense for the loss: a `ValueError` naming the loss, `y_true`, the
    first bad value and the fix (on TensorFlow also a `tf.errors.InvalidArgumentError`)."""

    def __init__(self, message):  # TensorFlow's signature: one message
        super().__init__(message)


def _nan_where(bad, like_dtype):
    """Per sample: NaN where `bad`, else 1.0 (in `like_dtype`)."""
    o = ops()
    one = o.ones_like(o.cast(bad, like_dtype))
    return o.where(bad, one * float("nan"), one)


class LabelRule(NamedTuple):
    """A loss's dense labels must lie in [low, high]."""

    fn_name: str
    low: float
    high: float
    expected: str
    fix: str
    ignore: float | None = None  # a label value that is always accepted (the losses' ignore_class)

    def _ok(self, y):
        ok = (y >= self.low) & (y <= self.high)  # a NaN label is bad
        return ok if self.ignore is None else ok | (y == self.ignore)

    def _message(self):
        also = "" if self.ignore is None else f" or ignore_class={_guard.fmt(self.ignore)}"
        return f"{self.fn_name}: `y_true` must hold {self.expected}{also}; received"

    def good(self, y):
        """Per label: whether it is accepted (a tensor or a NumPy array)."""
        return self._ok(y)

    def message_parts(self):
        return self._message(), "flat index", "labels", self.fix

    def check_eagerly(self, y):
        """Raises an `InvalidLabelsError` naming the first label outside [low, high], if any."""
        o = ops()
        if not bool(o.to_numpy(o.all(self._ok(y)))):
            self.check_on_host(o.to_numpy(y))

    def check_on_host(self, values):
        """`check_eagerly` of concrete labels as a NumPy array."""
        values = np.asarray(values).reshape(-1)
        _raise_first_bad(self, values, self._ok(values))

    def nan_factor(self, y):
        """Per sample (y's last axis reduced): NaN where a label is bad, else 1."""
        o = ops()
        bad = o.max(o.cast(~self._ok(y), "float32"), axis=-1) > 0
        return _nan_where(bad, "float32")


class ClassIdRule(NamedTuple):
    """A sparse loss's labels must be integer class ids in [0, num_classes) or ignore_class."""

    fn_name: str
    ignore_class: int | None
    num_classes: int

    def _expected(self):
        return ("class ids in `y_true` must be in [0, num_classes)"
                + ("" if self.ignore_class is None else f" or equal ignore_class={self.ignore_class}")
                + ", and integers")

    _FIX = ("pass integer class ids below y_pred's number of classes (labels stored as floats: "
            "tf.cast(tf.round(y_true), tf.int32); one-hot labels: the categorical loss instead; "
            "a void label: ignore_class)")

    def ok(self, ids, floating):
        """Per id: a valid class id, or ignored (ids: a tensor or a NumPy array)."""
        ok = (ids >= 0) & (ids < self.num_classes)
        if floating:
            o = np if isinstance(ids, np.ndarray) else ops()
            ok = ok & (o.floor(ids) == ids)
        return ok if self.ignore_class is None else ok | (ids == self.ignore_class)

    def good(self, ids):
        """Per id: whether it is accepted (a tensor)."""
        return self.ok(ids, ops().dtype_name(ids).startswith(("float", "bfloat")))

    def message_parts(self):
        return (f"{self.fn_name}: {self._expected()}, with num_classes={self.num_classes}; "
                "received", "index", "ids", self._FIX + ".")

    def check_eagerly(self, ids):
        """Raises an `InvalidLabelsError` naming the first invalid id, if any."""
        o = ops()
        if not bool(o.to_numpy(o.all(self.good(ids)))):
            self.check_on_host(o.to_numpy(ids))

    def check_on_host(self, values):
        """`check_eagerly` of concrete ids as a NumPy array."""
        values = np.asarray(values).reshape(-1)
        floating = np.issubdtype(values.dtype, np.floating)
        _raise_first_bad(self, values, self.ok(values, floating))

    def nan_factor(self, ids):
        o = ops()
        floating = o.dtype_name(ids).startswith(("float", "bfloat"))
        return _nan_where(~self.ok(ids, floating), "float32")


def _raise_first_bad(rule, values, ok):
    """Raises the `InvalidLabelsError` of `rule` naming the first of `values` (flat, NumPy) not ok."""
    bad = np.flatnonzero(~ok)
    if bad.size:
        raise InvalidLabelsError(_guard.first_bad_message(
            *rule.message_parts()[:1], values[bad[0]], bad[0], bad.size, values.size,
            np.min(values), np.max(values), *rule.message_parts()[1:]))
