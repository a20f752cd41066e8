"""Label checks: labels that make no sense for a loss raise an error instead of giving a number.

What is checked: BCE and the binary focal loss take labels in [0, 1]; hinge labels in [0, 1]
with `label_format="binary"` and in [-1, 1] with `"signed"` and `"auto"`; the
sparse losses take integer class ids in [0, num_classes) or equal to `ignore_class` (a float
id such as 1.7 is refused, not truncated).

How a bad label is reported:
- eagerly, an `InvalidLabelsError`: a `ValueError`, and also the
  `tf.errors.InvalidArgumentError` that graph mode raises, so one `except` catches both;
- in graph mode (`tf.function`, `model.fit`), an assertion: an `InvalidArgumentError` with
  the same message (the loss, `y_true`, what it must hold, the values received, the fix);
- under XLA (`jit_compile=True`), which drops assertions: NaN loss and gradient for the
  samples with a bad label.

Cost, in graph mode: no pass over memory of its own. A dense rule adds to each element of the
loss, before the class-axis sum, minus its label's distance outside the range times 1e38
(`flag`): zero for a good label, so the loss is unchanged; a per-sample loss below zero then
marks a bad label (every loss here is >= 0), found with one reduction over the per-sample
losses. The labels' range, for the message, is computed only when the check fails (inside a
tf.cond, which costs a few microseconds a call). Eagerly, the labels' min and max are read
first. `_core._CHECK_LABELS = False` before tracing switches the checks off: for the benchmark
that measures them (`keras_afl.bench`, suite "checks"), not for use.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import tensorflow as tf

from keras_afl import _guard

_BIG = 1e38  # a label's distance outside its range, scaled to dwarf any loss


class InvalidLabelsError(tf.errors.InvalidArgumentError, ValueError):
    """Labels that make no sense for the loss, found eagerly (graph mode raises the same
    `InvalidArgumentError` from an assertion)."""

    def __init__(self, message):
        super().__init__(None, None, message)


class LabelRule(NamedTuple):
    """A loss's dense labels must lie in [low, high]."""

    fn_name: str
    low: float
    high: float
    expected: str  # e.g. "labels in [0, 1] (the probability of the positive class)"
    fix: str
    ignore: float | None = None  # a label value that is always accepted (the losses' ignore_class)

    def flag(self, loss, y):
        """The loss elements minus 1e38 x (y - low)(y - high) where that is > 0: unchanged for
        labels in [low, high], far below zero for the others (a NaN label gives NaN)."""
        if self.low == -self.high:  # [-h, h]: y^2 - h^2
            outside = tf.nn.relu(y * y - self.high * self.high)
        else:
            outside = tf.nn.relu((y if self.low == 0.0 else y - self.low) * (y - self.high))
        return loss - outside * _BIG

    def _message(self):
        also = "" if self.ignore is None else f" or ignore_class={_guard.fmt(self.ignore)}"
        return f"{self.fn_name}: `y_true` must hold {self.expected}{also}; received"

    def _good(self, values):
        ok = (values >= self.low) & (values <= self.high)  # a NaN label is bad
        return ok if self.ignore is None else ok | (values == self.ignore)

    def good(self, y):
        """Per label: whether it is accepted (a tensor or a NumPy array)."""
        return self._good(y)

    def message_parts(self):
        return self._message(), "flat index", "labels", self.fix

    def check_eagerly(self, y):
        """Raises an `InvalidLabelsError` naming the first label outside [low, high], if any."""
        values = y.numpy().reshape(-1)
        _raise_first_bad(self, values, self._good(values))

    def verdict(self, loss):
        return _verdict(loss)

    def assert_ok(self, ok, y):
        """Graph mode: fails with the message unless ok; the first bad label is found only then."""

        def data():
            flat = tf.reshape(y if y.dtype.is_floating else tf.cast(y, tf.float32), [-1])
            bad = tf.logical_not(self._good(flat))
            i = tf.argmax(tf.cast(bad, tf.int32), output_type=tf.int32)  # the first bad one
            v = flat[i]
            beyond = tf.where(v > self.high, v - self.high, self.low - v)
            return [self._message(), v, "at flat index", i, "(beyond the range by", beyond,
                    "; labels from", tf.reduce_min(flat), "to", tf.reduce_max(flat), f"). Fix: {self.fix}"]

        return _assert_lazily(ok, data, "check_labels")


class ClassIdRule(NamedTuple):
    """A sparse loss's labels must be integer class ids in [0, num_classes) or ignore_class.

    The loss bodies flag invalid ids themselves (`_core._flag_samples`)."""

    fn_name: str
    ignore_class: int | None
    num_classes: int | None  # None: known only when the graph runs

    def _expected(self):
        return ("class ids in `y_true` must be in [0, num_classes)"
                + ("" if self.ignore_class is None else f" or equal ignore_class={self.ignore_class}")
                + ", and integers")

    _FIX = ("pass integer class ids below y_pred's number of classes (labels stored as floats: "
            "tf.cast(tf.round(y_true), tf.int32); one-hot labels: the categorical loss instead; "
            "a void label: ignore_class)")

    def _ok(self, ids, xp):
        """Per id: a valid class id, or ignored (xp: numpy or the TF ops `_TF`)."""
        ok = (ids >= 0) & (ids < self.num_classes)
        if ids.dtype.is_floating if xp is _TF else np.issubdtype(ids.dtype, np.floating):
            ok = ok & xp.equal(xp.floor(ids), ids)
        return ok if self.ignore_class is None else ok | xp.equal(ids, self.ignore_class)

    def good(self, ids):
        """Per id: whether it is accepted (a tensor; num_classes known)."""
        return self._ok(ids, _TF)

    def message_parts(self):
        return (f"{self.fn_name}: {self._expected()}, with num_classes={self.num_classes}; "
                "received", "index", "ids", self._FIX + ".")

    def check_eagerly(self, ids):
        """Raises an `InvalidLabelsError` naming the first invalid id, if any."""
        values = ids.numpy().reshape(-1)
        _raise_first_bad(self, values, self._ok(values, np))

    def verdict(self, loss):
        return _verdict(loss)

    def assert_ok(self, ok, ids):
        """Graph mode: fails with the message unless ok; the first invalid id is found only then
        (with num_classes known when tracing; else the ids' range)."""

        def data():
            head = [f"{self.fn_name}: {self._expected()}; num_classes ="]
            values = ids
            if self.num_classes is None:
                return head + ["unknown; received ids from", tf.reduce_min(values), "to",
                               tf.reduce_max(values), f". Fix: {self._FIX}."]
            bad = tf.logical_not(self._ok(values, _TF))
            i = tf.argmax(tf.cast(bad, tf.int32), output_type=tf.int32)
            return head + [self.num_classes, "; received", values[i], "at index", i, "(ids from",
                           tf.reduce_min(values), "to", tf.reduce_max(values), f"). Fix: {self._FIX}."]

        return _assert_lazily(ok, data, "check_class_ids")


class _TF:
    """The two array functions `ClassIdRule._ok` needs, as TensorFlow ops."""

    equal, floor = staticmethod(tf.equal), staticmethod(tf.floor)


def _raise_first_bad(rule, values, ok):
    """Raises the `InvalidLabelsError` of `rule` naming the first of `values` (flat, NumPy) not ok."""
    bad = np.flatnonzero(~ok)
    if bad.size:
        head, where, what, fix = rule.message_parts()
        raise InvalidLabelsError(_guard.first_bad_message(
            head, values[bad[0]], bad[0], bad.size, values.size, np.min(values), np.max(values),
            where, what, fix))


def _verdict(loss):
    """(ok, factor) from per-sample losses with bad labels flagged (far below zero; every loss
    here is >= 0): whether no sample is flagged, and per sample 1.0, or NaN where flagged."""
    bad = loss < 0.0
    return (tf.logical_not(tf.reduce_any(bad)),
            tf.where(bad, tf.constant(float("nan"), loss.dtype), tf.ones([], loss.dtype)))


def under_xla():
    """Whether the graph being built will be compiled by XLA (a `jit_compile=True` tf.function,
    or a function inside one), where assertions are dropped. No public API says so: tf.function
    enters an `XLAControlFlowContext` around a `jit_compile=True` call, which this reads
    (tests/test_labels.py fails loudly if TensorFlow moves it)."""
    from tensorflow.python.ops import control_flow_util  # no public API

    return control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())


def _assert_lazily(ok, data, name):
    """An assertion whose data (a function returning it) is computed only when ok is False:
    the `Assert` op inside the false branch of a tf.cond (XLA drops the Assert). Returns the
    cond's output, for the gradients to wait on."""

    def fail():
        # In a guarded Keras step: BatchNormalization's statistics put back first (_guard).
        with tf.control_dependencies(_guard.restore_before_failing()):
            tf.raw_ops.Assert(condition=ok, data=data(), summarize=8, name=name)
        return tf.constant(False)

    return tf.cond(ok, lambda: tf.constant(True), fail, name=name)
