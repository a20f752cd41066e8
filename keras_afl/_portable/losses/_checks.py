"""Label checks on JAX and PyTorch, with the messages of `keras_afl.losses._checks`.

Called eagerly (PyTorch unless compiled; JAX outside `jax.jit`), a loss given bad labels raises
an `InvalidLabelsError` (a `ValueError`) naming the loss, `y_true`, the first bad value, how many
are bad and the fix. The check is one comparison and one reduction on the device, and one
boolean read back; the message's numbers are computed only when it fails. While traced
(`jax.jit`, `torch.compile`), where nothing can raise, the samples with a bad label get a NaN loss
and NaN gradients, as TensorFlow's losses under XLA (the other samples are unaffected).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from keras_afl._backend import ops


class InvalidLabelsError(ValueError):
    """Labels that make no sense for the loss (the `ValueError` side of TensorFlow's
    `keras_afl.losses._checks.InvalidLabelsError`)."""


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
        also = "" if self.ignore is None else f" or ignore_class={_fmt(self.ignore)}"
        return f"{self.fn_name}: `y_true` must hold {self.expected}{also}; received"

    def check_eagerly(self, y):
        """Raises an `InvalidLabelsError` naming the first label outside [low, high], if any."""
        o = ops()
        if bool(o.to_numpy(o.all(self._ok(y)))):
            return
        values = o.to_numpy(y).reshape(-1)
        _raise_first_bad(self._message(), values, self._ok(values), "flat index", "labels",
                         self.fix)

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

    def check_eagerly(self, ids):
        """Raises an `InvalidLabelsError` naming the first invalid id, if any."""
        o = ops()
        floating = o.dtype_name(ids).startswith(("float", "bfloat"))
        if bool(o.to_numpy(o.all(self.ok(ids, floating)))):
            return
        values = o.to_numpy(ids)
        _raise_first_bad(f"{self.fn_name}: {self._expected()}, with num_classes={self.num_classes}; "
                         "received", values, self.ok(values, floating), "index", "ids",
                         self._FIX + ".")

    def nan_factor(self, ids):
        o = ops()
        floating = o.dtype_name(ids).startswith(("float", "bfloat"))
        return _nan_where(~self.ok(ids, floating), "float32")


def _raise_first_bad(head, values, ok, where, what, fix):
    """Raises an `InvalidLabelsError` naming the first of `values` (flat, numpy) not ok."""
    bad = np.flatnonzero(~ok)
    if bad.size:
        raise InvalidLabelsError(
            f"{head} {_fmt(values[bad[0]])} at {where} {bad[0]} ({bad.size} of {values.size} bad; "
            f"{what} from {_fmt(np.min(values))} to {_fmt(np.max(values))}). Fix: {fix}")


def _fmt(value):
    """A label as it reads in its own dtype: 1.7, -1, 1.000001 (float32's 1 + 2^-20), 3."""
    value = np.asarray(value)[()]
    if isinstance(value, np.floating):
        return np.format_float_positional(value, unique=True, trim="-")
    return str(value)
