"""The losses' runner on TensorFlow: a loss body as a plain custom gradient, or compiled into two
XLA kernels; and its label policy (raise eagerly, an assertion that gates the gradient in graph
mode, NaN and a verdict for the guarded step under XLA).

Each loss is a `body(settings, x, *tensors) -> (per-sample loss, grad)` (`keras_afl.losses._core`):
`settings` a tuple of Python values (hyper-parameters), `tensors` the labels and per-class
constants, `grad(upstream) -> dloss/dx`. The plain path runs the body as the custom gradient
itself: the backward pass reuses the forward's intermediates. The fused path (graph mode,
float32 computation, from a measured crossover size, `_crossover`) compiles the body twice with
XLA, as `forward(x, *tensors) -> loss` and `backward(upstream, x, *tensors) -> dloss/dx`, the
backward recomputing what it needs from the inputs: each becomes one kernel, one pass over
memory, and nothing but the inputs is kept between the two. Same formulas, same ops. The softmax
losses have a forward/backward pair of their own (`split`) that passes the per-sample max and
log-sum-exp from one to the other.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools

import tensorflow as tf

from keras_afl import _guard, _keras_compat
from keras_afl._backend import option
from keras_afl._backend._tensorflow import _crossover

# Tests force the compiled path with 0: an int here replaces the crossover table for every loss.
# With an unknown batch size, the size of one sample decides.
FUSE_MIN_ELEMENTS = None
FUSE_MIN_PER_SAMPLE = None

# True while the compiled kernels' Python functions are traced (`_compiled`): `class_sum`.
IN_KERNEL = contextvars.ContextVar("keras_afl_in_kernel", default=False)
# The label rule whose bad labels the loss bodies flag while they are traced (`flag_labels`).
FLAGGED = contextvars.ContextVar("keras_afl_flagged_labels", default=None)
_BIG = 1e38  # a label's distance outside its range, scaled to dwarf any loss


@contextlib.contextmanager
def switched(var, value=True):
    token = var.set(value)
    try:
        yield
    finally:
        var.reset(token)


@functools.lru_cache(maxsize=None)
def gpu_visible():
    return bool(tf.config.list_logical_devices("GPU"))


@functools.lru_cache(maxsize=None)
def _xla_available():
    return bool(tf.test.is_built_with_xla())


def _compute_dtype(dtype):
    return tf.float32 if dtype in (tf.float16, tf.bfloat16) else dtype


def large(shape, body=None):
    """Whether a static shape is at or above loss `body`'s crossover to the fused path
    (`_crossover`; None: not known)."""
    shape = tf.TensorShape(shape)
    if shape.rank is None or shape.rank == 0:
        return None
    least = _crossover.min_elements(body, FUSE_MIN_ELEMENTS)
    n = shape.num_elements()
    if n is not None:
        return n >= least
    per_sample = shape[1:].num_elements()
    return None if per_sample is None else per_sample >= _crossover.min_per_sample(
        least, FUSE_MIN_PER_SAMPLE)


def fused(x, like=None, body=None):
    """Whether loss `body` on x takes the compiled path: graph mode, float32 computation, large.

    `like` is the prediction (or its static shape) that measures the size (default x).
    """
    if not (option("compiled_kernels") and _compute_dtype(x.dtype) == tf.float32
            and not tf.executing_eagerly() and _xla_available()):
        return False
    return bool(large(x.shape if like is None else getattr(like, "shape", like), body))


def _barrier(*structure):
    """The tensors of a nested structure, behind an XLA optimization barrier (identity gradient).

    Inside a model compiled with XLA the compiled loss functions are inlined; the barrier keeps
    XLA from merging the backward's recomputation with the forward's, which would make it keep
    full-size intermediates in memory between the two.
    """
    @tf.custom_gradient
    def _identity(*tensors):  # the barrier is private TF API: keras_afl._keras_compat
        return _keras_compat.optimization_barrier(*tensors), lambda *g: list(g)

    flat = tf.nest.flatten(structure)
    return tf.nest.pack_sequence_as(structure, _identity(*flat) if flat else [])


@functools.lru_cache(maxsize=512)
def _compiled(body, split, settings, dtype, rule=None, xla=False):
    """XLA-compiled (forward, backward) of a loss body, shared by every trace with these settings.

    forward(x, *tensors) -> (loss, saved[, ok]); backward(upstream, saved, x, *tensors) -> dloss/dx.
    x has `dtype`; a half-precision x is cast to float32 inside the kernels (and its gradient
    cast back there), so the casts cost no pass over memory of their own. With a label `rule`,
    the body flags bad labels in its loss elements; in graph mode the forward returns whether
    none was found (ok, for the assertion); inside an XLA program (`xla`), the loss and, through
    `saved`, the gradient of a flagged sample are NaN.
    """
    compute = _compute_dtype(dtype)

    def forward(x, *tensors):
        x = tf.cast(x, compute)
        with switched(IN_KERNEL), switched(FLAGGED, rule):
            if split:
                loss, saved = split[0](settings, x, *tensors)
            else:
                loss, saved = body(settings, x, *tensors)[0], ()
        if rule is None:
            return loss, saved
        ok, factor = verdict(loss)
        return (loss * factor, (*saved, factor)) if xla else (loss, saved, ok)

    def backward(upstream, saved, x, *tensors):
        upstream, saved, x, tensors = _barrier(upstream, saved, x, tensors)
        if rule is not None and xla:
            *saved, factor = saved
            upstream = upstream * factor
        x = tf.cast(x, compute)
        with switched(IN_KERNEL):
            if split:
                dx = split[1](settings, upstream, saved, x, *tensors)
            else:
                dx = body(settings, x, *tensors)[1](upstream)
        return tf.cast(dx, dtype)

    name = body.__name__.strip("_")
    forward.__name__, backward.__name__ = f"{name}_forward", f"{name}_backward"
    return (tf.function(forward, jit_compile=True, autograph=False),
            tf.function(backward, jit_compile=True, autograph=False))


def run_loss(body, settings, x, tensors, *, like=None, rule=None, split=None):
    """The per-sample loss of body with its analytic gradient (with respect to x only).

    `like`: the prediction before any flattening, for the size rule of `fused`. `rule`: a label
    rule for tensors[0] (`keras_afl.losses._checks`), checked up front eagerly; in graph mode the
    body flags bad labels (`flag_labels`, `flag_samples`) and an assertion fails on them; under
    XLA, which drops assertions, the loss and gradient of a sample with a bad label are NaN.
    """
    if not option("label_checks") or (rule is not None and tensors[0].dtype == tf.bool):
        rule = None  # booleans are always 0 or 1
    if rule is not None and tf.executing_eagerly():
        rule.check_eagerly(tensors[0])
        rule = None
    use_fused, ok = fused(x, like, body), []
    xla = rule is not None and _keras_compat.under_xla()
    gate = []  # graph mode: the label check, which every gradient waits for

    def gated(dx):
        if not gate:
            return dx
        with tf.control_dependencies(gate):
            return tf.identity(dx)

    if use_fused:
        forward, backward = _compiled(body, split, settings, x.dtype, rule, xla)

        @tf.custom_gradient
        def _loss(x):
            loss, saved, *found = forward(x, *tensors)
            ok.extend(found)

            def grad(upstream):
                return gated(backward(upstream, saved, x, *tensors))

            return loss, grad

    else:
        compute = _compute_dtype(x.dtype)
        x = x if x.dtype == compute else tf.cast(x, compute)

        @tf.custom_gradient
        def _loss(x):
            loss, grad = body(settings, x, *tensors)
            return loss, lambda upstream: gated(grad(upstream))

    with switched(FLAGGED, None if use_fused else rule):
        loss = _loss(x)
    if rule is None:
        return loss
    if xla:
        # No assertion under XLA: NaN for the bad samples, and the verdict for a guarded Keras
        # step, which keeps the weights and raises (keras_afl._guard).
        _guard.record(rule, tensors[0])
        return loss if use_fused else loss * tf.stop_gradient(verdict(loss)[1])
    found = verdict(loss)[0] if not use_fused else ok[0]
    # The assertion gates the gradient: a failed check stops the step before any update.
    gate.append(assert_ok(rule, found, tensors[0]))
    return loss


# --------------------------------------------------------------------------
# Labels in graph mode: flagged in the loss's own pass, asserted once.
#
# A dense rule adds to each element of the loss, before the class-axis sum, minus its label's
# distance outside the range times 1e38 (`LabelRule.flag`): zero for a good label, so the loss is
# unchanged; a per-sample loss below zero then marks a bad label (every loss here is >= 0),
# found with one reduction over the per-sample losses. The labels' range, for the message, is
# computed only when the check fails (inside a tf.cond, a few microseconds a call).


def flag_labels(loss, y):
    """A loss body's elements (before the class-axis sum), with bad labels flagged when a label
    rule is active; unchanged otherwise."""
    rule = FLAGGED.get()
    return loss if rule is None else rule.flag(loss, y)


def flag_samples(loss, bad):
    """A per-sample loss with the samples `bad` flagged (minus 1e38) when a label rule is active
    (the sparse losses' invalid ids); unchanged otherwise."""
    if FLAGGED.get() is None:
        return loss
    return loss - tf.cast(bad, loss.dtype) * _BIG


def verdict(loss):
    """(ok, factor) from per-sample losses with bad labels flagged (far below zero; every loss
    here is >= 0): whether no sample is flagged, and per sample 1.0, or NaN where flagged."""
    bad = loss < 0.0
    return (tf.logical_not(tf.reduce_any(bad)),
            tf.where(bad, tf.constant(float("nan"), loss.dtype), tf.ones([], loss.dtype)))


def assert_ok(rule, ok, y):
    """Graph mode: fails with the rule's message unless ok; the first bad label is found only
    then (for class ids with num_classes unknown when tracing: the ids' range)."""

    def data():
        head, where, _, fix = rule.message_parts()
        num_classes = getattr(rule, "num_classes", False)
        if num_classes is None:
            return [head.replace("num_classes=None", "num_classes unknown"), "ids from",
                    tf.reduce_min(y), "to", tf.reduce_max(y), f". Fix: {fix}"]
        flat = tf.reshape(y if y.dtype.is_floating or num_classes else tf.cast(y, tf.float32), [-1])
        i = tf.argmax(tf.cast(tf.logical_not(rule.good(flat)), tf.int32), output_type=tf.int32)
        v = flat[i]
        data = [head, v, f"at {where}", i]
        if num_classes is False:  # a dense rule: how far out
            data += ["(beyond the range by", tf.where(v > rule.high, v - rule.high, rule.low - v),
                     "; labels from"]
        else:
            data += ["(ids from"]
        return data + [tf.reduce_min(flat), "to", tf.reduce_max(flat), f"). Fix: {fix}"]

    def fail():
        # In a guarded Keras step: BatchNormalization's statistics put back first (_guard).
        with tf.control_dependencies(_guard.restore_before_failing()):
            tf.raw_ops.Assert(condition=ok, data=data(), summarize=8, name="check_labels")
        return tf.constant(False)

    return tf.cond(ok, lambda: tf.constant(True), fail, name="check_labels")
