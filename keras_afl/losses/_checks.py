"""Label checks: labels that make no sense for a loss raise an error instead of giving a number.

What is checked: BCE and the binary focal loss take labels in [0, 1]; hinge labels in [0, 1]
with `label_format="binary"` and in [-1, 1] with `"signed"` and `"auto"`; the sparse losses take
integer class ids in [0, num_classes) or equal to `ignore_class` (a float id such as 1.7 is
refused, not truncated).

How a bad label is reported, on every backend:
- where Python runs between the loss and the update (eagerly, PyTorch, JAX outside `jax.jit`),
  an `InvalidLabelsError`: a `ValueError` naming the loss, `y_true`, the first bad value, its
  index, how many are bad, the labels' range and the fix (on TensorFlow also the
  `tf.errors.InvalidArgumentError` that graph mode raises, so one `except` catches both);
- in TensorFlow's graph mode (`tf.function`, `model.fit`), an assertion with the same message
  that gates the gradient;
- where nothing can raise (XLA, `jax.jit`, `torch.compile`), NaN loss and gradient for the
  samples with a bad label; inside a Keras step the step keeps the weights and raises the same
  error afterwards (`keras_afl._guard`).

How each backend runs the rules: `keras_afl._backend` (`_tensorflow._runner`, `_portable`).
`set_trace_options(label_checks=False)` switches the checks off: for the benchmark that
measures them (`keras-afl bench --suites checks`), not for use.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from keras_afl import _guard
from keras_afl._backend import adapter, ops

_BIG = 1e38  # a label's distance outside its range, scaled to dwarf any loss


class InvalidLabelsError(adapter().LabelErrorBase):
    """Labels that make no sense for the loss: a `ValueError` naming the loss, `y_true`, the
    first bad value and the fix (on TensorFlow also a `tf.errors.InvalidArgumentError`, the
    class of graph mode's assertion)."""

    def __init__(self, message):
        super().__init__(message)


def _nan_where(bad):
    """Per sample: NaN where `bad`, else 1.0 (float32)."""
    o = ops()
    one = o.ones_like(o.cast(bad, "float32"))
    return o.where(bad, one * float("nan"), one)


class LabelRule(NamedTuple):
    """A loss's dense labels must lie in [low, high]."""

    fn_name: str
    low: float
    high: float
    expected: str  # e.g. "labels in [0, 1] (the probability of the positive class)"
    fix: str
    ignore: float | None = None  # a label value that is always accepted (the losses' ignore_class)

    def good(self, y):
        """Per label: whether it is accepted (a tensor or a NumPy array; a NaN label is bad)."""
        if not isinstance(y, np.ndarray) and not ops().dtype_name(y).startswith(("float", "bfloat")):
            y = ops().cast(y, "float32")  # integer labels (TensorFlow compares like dtypes only)
        ok = (y >= self.low) & (y <= self.high)
        return ok if self.ignore is None else ok | (y == self.ignore)

    def flag(self, loss, y):
        """The loss elements minus 1e38 x (y - low)(y - high) where that is > 0: unchanged for
        labels in [low, high], far below zero for the others (a NaN label gives NaN)."""
        o = ops()
        if self.low == -self.high:  # [-h, h]: y^2 - h^2
            outside = o.relu(y * y - self.high * self.high)
        else:
            outside = o.relu((y if self.low == 0.0 else y - self.low) * (y - self.high))
        return loss - outside * _BIG

    def message_parts(self):
        also = "" if self.ignore is None else f" or ignore_class={_guard.fmt(self.ignore)}"
        head = f"{self.fn_name}: `y_true` must hold {self.expected}{also}; received"
        return head, "flat index", "labels", self.fix

    def check_eagerly(self, y):
        """Raises an `InvalidLabelsError` naming the first label outside [low, high], if any."""
        o = ops()
        within = None if self.ignore is not None else _within(o, y, self.low, self.high)
        if not (within if within is not None else bool(o.to_numpy(o.all(self.good(y))))):
            self.check_on_host(o.to_numpy(y))

    def check_on_host(self, values):
        """`check_eagerly` of concrete labels as a NumPy array."""
        values = np.asarray(values).reshape(-1)
        _raise_first_bad(self, values, self.good(values))

    def nan_factor(self, y):
        """Per sample (y's last axis reduced): NaN where a label is bad, else 1."""
        o = ops()
        return _nan_where(o.max(o.cast(~self.good(y), "float32"), axis=-1) > 0)


class ClassIdRule(NamedTuple):
    """A sparse loss's labels must be integer class ids in [0, num_classes) or ignore_class (the
    loss bodies flag invalid ids themselves on TensorFlow's graph path: `flag_samples`)."""

    fn_name: str
    ignore_class: int | None
    num_classes: int | None  # None: known only when the graph runs (TensorFlow)

    _FIX = ("pass integer class ids below y_pred's number of classes (labels stored as floats: "
            "keras.ops.cast(keras.ops.round(y_true), 'int32'); one-hot labels: the categorical "
            "loss instead; a void label: ignore_class)")

    def ok(self, ids, floating):
        """Per id: a valid class id, or ignored (ids: a tensor or a NumPy array)."""
        ok = (ids >= 0) & (ids < self.num_classes)
        if floating:
            o = np if isinstance(ids, np.ndarray) else ops()
            ok = ok & (o.floor(ids) == ids)
        return ok if self.ignore_class is None else ok | (ids == self.ignore_class)

    def good(self, ids):
        """Per id: whether it is accepted (a tensor or a NumPy array)."""
        if isinstance(ids, np.ndarray):
            return self.ok(ids, np.issubdtype(ids.dtype, np.floating))
        return self.ok(ids, ops().dtype_name(ids).startswith(("float", "bfloat")))

    def message_parts(self):
        expected = ("class ids in `y_true` must be in [0, num_classes)"
                    + ("" if self.ignore_class is None
                       else f" or equal ignore_class={self.ignore_class}") + ", and integers")
        return (f"{self.fn_name}: {expected}, with num_classes={self.num_classes}; received",
                "index", "ids", self._FIX + ".")

    def check_eagerly(self, ids):
        """Raises an `InvalidLabelsError` naming the first invalid id, if any."""
        o = ops()
        within = None
        if (self.ignore_class is None and self.num_classes is not None
                and not o.dtype_name(ids).startswith(("float", "bfloat"))):
            within = _within(o, ids, 0, self.num_classes - 1)
        if not (within if within is not None else bool(o.to_numpy(o.all(self.good(ids))))):
            self.check_on_host(o.to_numpy(ids))

    def check_on_host(self, values):
        """`check_eagerly` of concrete ids as a NumPy array."""
        values = np.asarray(values).reshape(-1)
        _raise_first_bad(self, values, self.good(values))

    def nan_factor(self, ids):
        return _nan_where(~self.good(ids))


def _within(o, y, low, high):
    """Whether every entry of y lies in [low, high] (a NaN does not), from the backend's fused
    min-max in one pass (`value_range`), or None where it has none (the rule's comparisons
    then)."""
    value_range = getattr(o, "value_range", None)
    if value_range is None:
        return None
    bounds = value_range(y)
    return bounds is None or (bounds[0] >= low and bounds[1] <= high)


def _raise_first_bad(rule, values, ok):
    """Raises the `InvalidLabelsError` of `rule` naming the first of `values` (flat, NumPy) not ok."""
    bad = np.flatnonzero(~ok)
    if bad.size:
        head, where, what, fix = rule.message_parts()
        raise InvalidLabelsError(_guard.first_bad_message(
            head, values[bad[0]], bad[0], bad.size, values.size, np.min(values), np.max(values),
            where, what, fix))
