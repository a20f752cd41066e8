"""The machinery every loss shares: settings and input checks, dtypes, class-axis sums, and
`_custom_loss`, which runs a loss body as a plain custom gradient or as two XLA-compiled kernels.

The loss families (`regression`, `binary`, `categorical`, `sparse`) build on it; the switches of
the compiled path (`_FUSE`, `_FUSE_MIN_ELEMENTS`, `_FUSE_MIN_PER_SAMPLE`) live here.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import numbers
import os
import warnings

import keras
import numpy as np
import tensorflow as tf

from keras_afl import _keras_compat
from keras_afl._grad_utils import as_float_tensor, check_number, normalize_axis
from keras_afl.losses import _crossover
from keras_afl import _guard
from keras_afl.losses._checks import _BIG, under_xla
from keras_afl.losses._logits import _carried_logits

_register = keras.saving.register_keras_serializable(package="keras_afl")
_HALF = (tf.float16, tf.bfloat16)


# --------------------------------------------------------------------------
# Helpers: settings, inputs, shapes.


def _check_bool(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"`{name}` must be True or False; received {value!r}.")
    return bool(value)


def _check_weights(value, name, *, high=None):
    """None, a number, or a sequence of numbers (each in [0, high]) -> None, float or tuple."""
    if value is None:
        return None
    if tf.is_tensor(value) or isinstance(value, np.ndarray):
        value = np.asarray(value)
        value = value.item() if value.ndim == 0 else value.reshape(-1).tolist()
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError(f"`{name}` must not be empty; received {value!r}.")
        return tuple(check_number(v, f"{name}[{i}]", low=0.0, high=high) for i, v in enumerate(value))
    return check_number(value, name, low=0.0, high=high)


def _check_ignore_class(value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`ignore_class` must be an int or None; received {value!r}.")
    return int(value)


def _select(y_pred, from_logits, op_type, fn_name, axis=-1):
    """y_pred as a float tensor -> (tensor to use, whether it holds logits).

    The logits replace y_pred when the activation that made it is the loss's
    own: op_type `"Sigmoid"`, or `"Softmax"` over `axis` (see `_logits`).
    """
    y_pred = as_float_tensor(y_pred, "y_pred")
    if y_pred.shape.rank == 0:
        raise ValueError(f"`y_pred` must have rank >= 1; received a scalar in {fn_name}.")
    logits = _carried_logits(y_pred, op_type, axis)
    if logits is not None:
        if from_logits:
            warnings.warn(
                f"{fn_name} received `from_logits=True`, but `y_pred` was produced by a "
                "sigmoid or softmax activation and so holds probabilities; using its logits.",
                stacklevel=3,
            )
        return tf.cast(logits, y_pred.dtype), True
    return y_pred, from_logits


def _match_ranks(y_true, y_pred):
    """Keras's rule: squeeze or expand a trailing axis of size 1 when ranks differ by one."""
    rt, rp = y_true.shape.rank, y_pred.shape.rank
    if rt is None or rp is None or rt == rp:
        return y_true, y_pred
    if rt == rp + 1 and y_true.shape[-1] == 1:
        if rp == 1:
            y_pred = tf.expand_dims(y_pred, -1)
        else:
            y_true = tf.squeeze(y_true, -1)
    elif rp == rt + 1 and y_pred.shape[-1] == 1:
        if rt == 1:
            y_true = tf.expand_dims(y_true, -1)
        else:
            y_pred = tf.squeeze(y_pred, -1)
    return y_true, y_pred


def _dense_pair(y_true, x, fn_name):
    """Labels checked (numeric) and ranks matched; shapes checked (ValueError naming both).

    The labels keep their dtype: each loss body casts them to the computation
    dtype itself (`_labels`), so that the compiled path reads them as they are.
    """
    y_true = tf.convert_to_tensor(y_true)
    if not (y_true.dtype.is_floating or y_true.dtype.is_integer or y_true.dtype == tf.bool):
        raise TypeError(f"`y_true` must be numeric; received dtype {y_true.dtype.name}.")
    y_true, x = _match_ranks(y_true, x)
    if y_true.shape.rank is not None and x.shape.rank is not None and (
        y_true.shape.rank != x.shape.rank or not y_true.shape.is_compatible_with(x.shape)
    ):
        raise ValueError(
            f"{fn_name}: `y_true` and `y_pred` must have the same shape (up to a trailing "
            f"axis of size 1); received y_true.shape={tuple(y_true.shape)} and "
            f"y_pred.shape={tuple(x.shape)}."
        )
    return y_true, x


def _compute_dtype(dtype):
    """The dtype a loss is computed in: float32 for float16/bfloat16 inputs, else the input's."""
    return tf.float32 if dtype in _HALF else dtype


def _labels(y, x):
    """Labels in x's dtype (inside the loss bodies)."""
    return y if y.dtype == x.dtype else tf.cast(y, x.dtype)


def _done(loss, dtype):
    """What a loss function's body returns: the per-sample loss in its computation dtype and
    the dtype of y_pred, which the public function casts it back to (`_public_loss`)."""
    return loss, dtype


def _public_loss(body):
    """The public loss function of `body` (which ends in `return _done(loss, dtype)`): the loss
    cast back to y_pred's dtype, with any Keras mask kept on the result.

    `body` stays reachable as `function.in_compute_dtype`: the Loss classes call it for
    float16/bfloat16 predictions, whose per-sample losses Keras reduces in float32.
    """

    @functools.wraps(body)
    def public(*args, **kwargs):
        loss, dtype = body(*args, **kwargs)
        if loss.dtype == dtype:
            return loss
        mask = _keras_compat.keras_mask(loss)
        out = tf.cast(loss, dtype)
        if mask is not None:
            _keras_compat.set_keras_mask(out, mask)
        return out

    public.in_compute_dtype = body
    return public


@contextlib.contextmanager
def _switched_on(var, value=True):
    token = var.set(value)
    try:
        yield
    finally:
        var.reset(token)


def _kernel():
    return _switched_on(_IN_KERNEL)


def _inv_size(x, axis=-1):
    """1 / x.shape[axis] as a scalar of x's dtype (static when known)."""
    n = x.shape[axis]
    if n is not None:
        return tf.constant(1.0 / n if n else float("nan"), x.dtype)
    return 1.0 / tf.cast(tf.shape(x)[axis], x.dtype)


def _num_classes(x):
    n = x.shape[-1]
    return n if n is not None else tf.shape(x)[-1]


def _is_last(axis, x):
    rank = x.shape.rank
    return axis == -1 or (rank is not None and axis == rank - 1)


def _class_axis_last(x, axis):
    """Moves `axis` of x to the end (a transpose, differentiated by autodiff)."""
    rank = x.shape.rank
    if _is_last(axis, x):
        return x
    if rank is None:
        raise ValueError(f"`axis`={axis} needs a known rank; received a tensor of unknown rank.")
    perm = [i for i in range(rank) if i != axis] + [axis]
    return tf.transpose(x, perm)


def _check_axis(axis):
    """An int `axis` (Keras's argument: the axis a loss reduces); a TypeError otherwise."""
    if isinstance(axis, (tuple, list)):
        raise TypeError(
            f"`axis` must be a single int, the axis the loss averages over; received {axis!r}. "
            "Reshape y_true and y_pred so that those axes are one."
        )
    return normalize_axis(axis, None)


def _reduced_axis_last(y, x, axis):
    """Labels y and predictions x with `axis` (the axis the loss averages over) moved last."""
    axis = normalize_axis(_check_axis(axis), x.shape.rank)
    return _class_axis_last(y, axis), _class_axis_last(x, axis)


def _per_class(values, x, name, fn_name):
    """None, a float or a tuple -> None or a tensor broadcasting along the last axis of x."""
    if values is None:
        return None
    if isinstance(values, tuple):
        k = x.shape[-1]
        if k is not None and len(values) != k:
            raise ValueError(
                f"{fn_name}: `{name}` has {len(values)} values but `y_pred` has {k} entries on "
                f"its class/last axis (y_pred.shape={tuple(x.shape)}); give one value per entry "
                "or a scalar."
            )
    return tf.constant(values, _compute_dtype(x.dtype))


def _focal_factor(m, gamma):
    """m ** gamma, with exact shortcuts for the common exponents."""
    if gamma == 1.0:
        return m
    if gamma == 2.0:
        return tf.square(m)
    return tf.pow(m, gamma)


# --------------------------------------------------------------------------
# The custom gradient: plain, or compiled into two fused kernels.
#
# Each loss is a `body(settings, x, *tensors) -> (per-sample loss, grad)`:
# `settings` is a tuple of Python values (hyper-parameters), `tensors` the
# labels and per-class constants, `grad(upstream) -> dloss/dx`. The plain path
# runs the body as the custom gradient itself: the backward pass reuses the
# forward's intermediates. The fused path (graph mode, float32, large inputs)
# compiles the body twice with XLA, as `forward(x, *tensors) -> loss` and
# `backward(upstream, x, *tensors) -> dloss/dx`, the backward recomputing what
# it needs from the inputs: each becomes one kernel, one pass over memory, and
# nothing but the inputs is kept between the two. Same formulas, same ops. The
# softmax losses have a forward/backward pair of their own (`_SPLIT`) that
# passes the per-sample max and log-sum-exp from one to the other.


def _fuse_from_environment():
    value = os.environ.get("KERAS_AFL_FUSE_LOSSES", "1").strip().lower()
    return value not in ("0", "false", "no", "off")


# Internal switch, read when a loss is traced. Off: KERAS_AFL_FUSE_LOSSES=0
# in the environment, or `keras_afl.losses._core._FUSE = False` before tracing.
_FUSE = _fuse_from_environment()
# Below a loss's measured crossover (`_crossover.CROSSOVER`, per loss body and mode: graph or
# XLA) the two kernel launches cost more than they save (and a compile is not worth its time
# and memory): the plain path. With an unknown batch size, the size of one sample decides.
# An int here replaces the table for every loss (tests force the compiled path with 0).
_FUSE_MIN_ELEMENTS = None
_FUSE_MIN_PER_SAMPLE = None


# True while the compiled kernels' Python functions are traced (`_compiled`).
_IN_KERNEL = contextvars.ContextVar("keras_afl_in_kernel", default=False)


@functools.lru_cache(maxsize=None)
def _gpu_visible():
    return bool(tf.config.list_logical_devices("GPU"))


def _class_sum(v, keepdims=True):
    """sum(v, axis=-1): in a compiled kernel on CPU, as a product with a column of ones.

    XLA's CPU backend computes a reduction along a short last axis (the class
    axis) one element at a time, and the element-wise work feeding it (exp, log,
    relu) the same way; as the input of a matrix product both are vectorised.
    Measured at 2^20 x 16 float32: hinge's relu-and-mean 58 -> 10 ms, BCE's
    softplus-and-mean 88 -> 42 ms, softmax's exp-and-sum 50 -> 23 ms. Not on
    GPUs, where TensorFloat-32 may round a product's inputs, nor on the plain path.
    """
    k = v.shape[-1]
    if not _IN_KERNEL.get() or k is None or _gpu_visible():
        return tf.reduce_sum(v, -1, keepdims=keepdims)
    out = tf.matmul(tf.reshape(v, [-1, k]), tf.ones([k, 1], v.dtype))
    if v.shape[:-1].is_fully_defined():
        batch = v.shape[:-1].as_list()
        return tf.reshape(out, batch + [1] if keepdims else batch)
    batch = tf.shape(v)[:-1]
    return tf.reshape(out, tf.concat([batch, [1]], 0) if keepdims else batch)


def _class_mean(v):
    """mean(v, axis=-1) (see `_class_sum`)."""
    if not _IN_KERNEL.get():
        return tf.reduce_mean(v, -1)
    return _class_sum(v, keepdims=False) * _inv_size(v)


@functools.lru_cache(maxsize=None)
def _xla_available():
    return bool(tf.test.is_built_with_xla())


def _large(shape, body=None):
    """Whether a static shape is at or above loss `body`'s crossover to the fused path
    (`_crossover`; None: not known)."""
    shape = tf.TensorShape(shape)
    if shape.rank is None or shape.rank == 0:
        return None
    least = _crossover.min_elements(body, _FUSE_MIN_ELEMENTS)
    n = shape.num_elements()
    if n is not None:
        return n >= least
    per_sample = shape[1:].num_elements()
    return None if per_sample is None else per_sample >= _crossover.min_per_sample(
        least, _FUSE_MIN_PER_SAMPLE)


def _fused(x, like=None, body=None):
    """Whether loss `body` on x takes the compiled path: graph mode, float32 computation, large.

    `like` is the prediction (or its static shape) that measures the size (default x).
    """
    if not (_FUSE and _compute_dtype(x.dtype) == tf.float32 and not tf.executing_eagerly()
            and _xla_available()):
        return False
    return bool(_large(x.shape if like is None else getattr(like, "shape", like), body))


def _barrier(*structure):
    """The tensors of a nested structure, behind an XLA optimization barrier (identity gradient).

    Inside a model compiled with XLA the compiled loss functions are inlined;
    the barrier keeps XLA from merging the backward's recomputation with the
    forward's, which would make it keep full-size intermediates in memory
    between the two.
    """
    @tf.custom_gradient
    def _identity(*tensors):  # the barrier is private TF API: keras_afl._keras_compat
        return _keras_compat.optimization_barrier(*tensors), lambda *g: list(g)

    flat = tf.nest.flatten(structure)
    return tf.nest.pack_sequence_as(structure, _identity(*flat) if flat else [])


# body -> (forward, backward) written for the compiled path, where the forward
# hands per-sample statistics to the backward (see `categorical._softmax_stats`):
# forward(settings, x, *tensors) -> (loss, saved); backward(settings, upstream,
# saved, x, *tensors) -> dloss/dx. Each family module fills it in below its bodies.
_SPLIT = {}


@functools.lru_cache(maxsize=512)
def _compiled(body, settings, dtype, rule=None, xla=False):
    """XLA-compiled (forward, backward) of a loss body, shared by every trace with these settings.

    forward(x, *tensors) -> (loss, saved[, ok]); backward(upstream, saved, x, *tensors) -> dloss/dx.
    x has `dtype`; a half-precision x is cast to float32 inside the kernels (and
    its gradient cast back there), so the casts cost no pass over memory of their own.
    With a label `rule` (`_checks`), the body flags bad labels in its loss elements; in graph
    mode the forward returns whether none was found (ok, for the assertion); inside an XLA
    program (`xla`), the loss and, through `saved`, the gradient of a flagged sample are NaN.
    """
    split = _SPLIT.get(body)
    compute = _compute_dtype(dtype)

    def forward(x, *tensors):
        x = tf.cast(x, compute)
        with _kernel(), _labels_flagged(rule):
            if split:
                loss, saved = split[0](settings, x, *tensors)
            else:
                loss, saved = body(settings, x, *tensors)[0], ()
        if rule is None:
            return loss, saved
        ok, factor = rule.verdict(loss)
        return (loss * factor, (*saved, factor)) if xla else (loss, saved, ok)

    def backward(upstream, saved, x, *tensors):
        upstream, saved, x, tensors = _barrier(upstream, saved, x, tensors)
        if rule is not None and xla:
            *saved, factor = saved
            upstream = upstream * factor
        x = tf.cast(x, compute)
        with _kernel():
            if split:
                dx = split[1](settings, upstream, saved, x, *tensors)
            else:
                dx = body(settings, x, *tensors)[1](upstream)
        return tf.cast(dx, dtype)

    name = body.__name__.strip("_")
    forward.__name__, backward.__name__ = f"{name}_forward", f"{name}_backward"
    return (tf.function(forward, jit_compile=True, autograph=False),
            tf.function(backward, jit_compile=True, autograph=False))


def _custom_loss(body, settings, x, *tensors, like=None, rule=None):
    """The per-sample loss of body with its analytic gradient (with respect to x only).

    `like`: the prediction before any flattening, for the size rule of `_fused`.
    `rule`: a label rule for tensors[0] (`_checks`: `LabelRule`, `ClassIdRule`), checked up
    front eagerly; in graph mode the body flags bad labels (`_flag_labels`, `_flag_samples`)
    and an assertion fails on them; under XLA, which drops assertions, the loss and gradient
    of a sample with a bad label are NaN instead.
    """
    if not _CHECK_LABELS or (rule is not None and tensors[0].dtype == tf.bool):
        rule = None  # booleans are always 0 or 1
    if rule is not None and tf.executing_eagerly():
        rule.check_eagerly(tensors[0])
        rule = None
    fused, ok, xla = _fused(x, like, body), [], rule is not None and under_xla()
    gate = []  # graph mode: the label check, which every gradient waits for

    def gated(dx):
        if not gate:
            return dx
        with tf.control_dependencies(gate):
            return tf.identity(dx)

    if fused:
        forward, backward = _compiled(body, settings, x.dtype, rule, xla)

        @tf.custom_gradient
        def _loss(x):
            loss, saved, *verdict = forward(x, *tensors)
            ok.extend(verdict)

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

    with _labels_flagged(None if fused else rule):
        loss = _loss(x)
    if rule is None:
        return loss
    if xla:
        # No assertion under XLA: NaN for the bad samples, and the verdict for a guarded Keras
        # step, which keeps the weights and raises (keras_afl._guard).
        _guard.record(rule, tensors[0])
        return loss if fused else loss * tf.stop_gradient(rule.verdict(loss)[1])
    verdict = rule.verdict(loss)[0] if not fused else ok[0]
    # The assertion gates the gradient: a failed check stops the step before any update.
    gate.append(rule.assert_ok(verdict, tensors[0]))
    return loss


# Label checks on (`_checks`); read when a loss is traced. Off only to measure their cost.
_CHECK_LABELS = True


def trace_options():
    """The switches a loss reads when it is traced, as a dict.

    `compiled_kernels`: whether float32 losses from their measured crossover size up
    (`_crossover`) run as the two XLA-compiled kernels (off with `KERAS_AFL_FUSE_LOSSES=0`);
    `label_checks`: whether labels are checked (bad labels raise; see the module docstring).

    Example:
    >>> import keras_afl
    >>> keras_afl.losses.trace_options()["label_checks"]
    True
    """
    return {"compiled_kernels": bool(_FUSE), "label_checks": bool(_CHECK_LABELS)}


@contextlib.contextmanager
def set_trace_options(*, compiled_kernels=None, label_checks=None):
    """Within the block, losses traced (first call of a `tf.function`, `fit`) use these switches.

    For measurements and for devices without XLA: a `tf.function` traced inside the block keeps
    what it was traced with. None leaves a switch as it is.

    Args:
        compiled_kernels: True/False, or None.
        label_checks: True/False, or None (off: bad labels give a number, as under XLA).

    Example:
    >>> import keras_afl
    >>> with keras_afl.losses.set_trace_options(label_checks=False):
    ...     keras_afl.losses.trace_options()["label_checks"]
    False
    """
    global _FUSE, _CHECK_LABELS
    for name, value in (("compiled_kernels", compiled_kernels), ("label_checks", label_checks)):
        if value is not None and not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"`{name}` must be True, False or None; received {value!r}.")
    before = _FUSE, _CHECK_LABELS
    if compiled_kernels is not None:
        _FUSE = bool(compiled_kernels)
    if label_checks is not None:
        _CHECK_LABELS = bool(label_checks)
    try:
        yield
    finally:
        _FUSE, _CHECK_LABELS = before


# The label rule whose bad labels the loss bodies flag while they are traced (`_flag_labels`).
_FLAGGED = contextvars.ContextVar("keras_afl_flagged_labels", default=None)


def _labels_flagged(rule):
    return _switched_on(_FLAGGED, rule)


def _flag_labels(loss, y):
    """A loss body's elements (before the class-axis sum), with bad labels flagged when a label
    rule is active (`_checks.LabelRule.flag`: far below zero); unchanged otherwise."""
    rule = _FLAGGED.get()
    return loss if rule is None else rule.flag(loss, y)


def _flag_samples(loss, bad):
    """A per-sample loss with the samples `bad` flagged (minus 1e38) when a label rule is
    active (the sparse losses' invalid ids); unchanged otherwise."""
    if _FLAGGED.get() is None:
        return loss
    return loss - tf.cast(bad, loss.dtype) * _BIG
