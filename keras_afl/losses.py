"""Loss functions with analytic derivatives.

Each loss comes twice: a function that returns one value per sample (it
reduces the class/feature axis, like Keras's functional losses) and a thin
`keras.losses.Loss` subclass that stores the settings. The function validates
its settings, then calls a private `tf.custom_gradient` closure in which the
forward pass and its derivative with respect to `y_pred` (with respect to the
logits on the logits path) stand side by side. The per-sample mean (or sum)
over the last axis happens inside the closure, so the backward pass is one
expression, `upstream[..., None] * dL/dz`. Every backward pass is written with
differentiable TensorFlow ops, so second derivatives work too.

Reduction, sample weights, masks, distribution. The `Loss` classes leave
these to `keras.losses.Loss`, exactly as Keras's own losses do. `reduction`
is one of `"sum_over_batch_size"` (default; sum of the weighted per-sample
losses divided by their number), `"mean"` (the same), `"sum"`,
`"mean_with_sample_weight"` (divided by the sum of the sample weights), or
`"none"` / `None` (no reduction: one value per sample). `sample_weight` may be
a scalar, one weight per sample, or one per time step for sequence outputs.
A Keras mask on `y_pred` (`_keras_mask`, set by masking layers) zeroes the
masked entries and averages over the unmasked ones. Under `tf.distribute`,
the reduced loss is divided by the number of replicas. The loss is computed
in the Loss's `dtype` (`keras.config.floatx()` by default, float32 also under
a `mixed_float16` / `mixed_bfloat16` policy). Given float16/bfloat16
predictions and a float32 loss, the classes skip Keras's casts of `y_pred`
and `y_true` to float32 (a pass over memory each, and one more for the
gradient): the functions compute half precision in float32 anyway, and the
values and gradients are the same.

Logits and probabilities. Cross-entropies take probabilities by default
(`from_logits=False`) and logits with `from_logits=True`. When `y_pred` is the
output of a Sigmoid or Softmax (keras_afl's or Keras's, which attach the
logits as `_keras_logits`, or, in graph mode, a tensor made by a
`Sigmoid`/`Softmax` op), the loss uses the logits instead, stably, and the
gradient reaches the logits directly (the fused sigma(z) - y or
softmax(z) - y), as Keras does. The `Loss` classes carry the logits across
their cast of `y_pred` to the loss dtype, so this survives mixed precision.

Probabilities are clipped to [eps, 1 - eps] like Keras, eps =
`keras.config.epsilon()` (1e-7); the complement 1 - p is clipped in the same
way (so float16 inputs stay finite). Gradient convention at the clip: the
gradient is the derivative of the loss evaluated at the clipped probability
(a straight-through clip). Inside (eps, 1 - eps) that is the exact gradient;
outside it is the gradient at the boundary, finite (at most about 1/eps in
size) and never zero for a wrong prediction, where Keras's gradient is 0.

Categorical probabilities are first divided by their sum along the class axis
(as Keras does; a row summing to less than eps is divided by eps).

Labels (`y_true`) are constants: no gradient flows to them. float16 and
bfloat16 inputs are computed in float32 and the result cast back. Losses stay
finite in float16, but a gradient larger than float16's range (65504) -- such
as 1/p for a probability p < 1.5e-5 of the true class -- becomes inf when cast
back, as any float16 gradient of that size would; feed logits, or keep the
final activation in float32 under mixed precision.

Speed. In graph mode (`tf.function`, `model.fit`), a loss computed in float32
(float32, float16 or bfloat16 inputs) on at least 2**16 elements (2**10 per
sample when the batch size is unknown) runs as two XLA-compiled kernels
called from its custom gradient, forward and backward, whether or not the
model itself is compiled with XLA: one pass over memory each, half-precision
casts inside them, and nothing full-size kept from the forward for the
backward (the softmax losses keep two numbers per sample). Inside the kernels
on CPU, sums over the class axis are products with a column of ones, which
XLA vectorises (a reduction along a short last axis it does not). Each new
input shape compiles once (a fraction of a second). Eager calls, float64 and small losses
run plain TensorFlow ops; both paths compute the same formulas and agree to
float32 rounding. Set `KERAS_AFL_FUSE_LOSSES=0` before importing keras_afl
to turn the compiled path off (for a device without XLA). Measurements:
`benchmarks/results.md`.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import functools
import numbers
import os
import warnings

import keras
import numpy as np
import tensorflow as tf

from keras_afl._grad_utils import as_float_tensor, check_number, normalize_axis

__all__ = [
    "mean_squared_error", "binary_crossentropy", "categorical_crossentropy",
    "sparse_categorical_crossentropy", "focal", "categorical_focal",
    "sparse_categorical_focal", "huber", "hinge",
    "MeanSquaredError", "BinaryCrossentropy", "CategoricalCrossentropy",
    "SparseCategoricalCrossentropy", "FocalLoss", "CategoricalFocalLoss",
    "SparseCategoricalFocalLoss", "Huber", "Hinge",
]

_register = keras.saving.register_keras_serializable(package="keras_afl")
_HALF = (tf.float16, tf.bfloat16)
_LABEL_FORMATS = ("auto", "binary", "signed")


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


def _carried_logits(y, op_type):
    """The logits behind a sigmoid/softmax output, or None.

    Reads `_keras_logits` (set by keras_afl's and Keras's sigmoid/softmax);
    in graph mode, also the input of a `Sigmoid`/`Softmax` op.
    """
    logits = getattr(y, "_keras_logits", None)
    if logits is None and op_type is not None:
        try:
            op = y.op  # AttributeError for eager tensors
        except AttributeError:
            op = None
        if op is not None and op.type == op_type and len(op.inputs) == 1:
            logits = op.inputs[0]
    if logits is None or not tf.is_tensor(logits):
        return None
    if not logits.shape.is_compatible_with(y.shape):
        return None
    return logits


def _select(y_pred, from_logits, op_type, fn_name):
    """y_pred as a float tensor -> (tensor to use, whether it holds logits)."""
    y_pred = as_float_tensor(y_pred, "y_pred")
    if y_pred.shape.rank == 0:
        raise ValueError(f"`y_pred` must have rank >= 1; received a scalar in {fn_name}.")
    logits = _carried_logits(y_pred, op_type)
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


def _work(x):
    """x (y_pred) and its own dtype, which the loss result is cast back to.

    x is not cast here: `_custom_loss` casts half-precision inputs to float32,
    inside the compiled kernels when it takes the fused path (one pass over
    memory instead of three). Constants made for the loss use `_compute_dtype`.
    """
    return x, x.dtype


def _labels(y, x):
    """Labels in x's dtype (inside the loss bodies)."""
    return y if y.dtype == x.dtype else tf.cast(y, x.dtype)


# Set by the Loss classes while they call a loss function on a half-precision
# y_pred: the function then returns its float32 result, not a copy rounded to
# y_pred's dtype (Keras's `Loss.__call__` reduces in float32).
_FLOAT32_RESULT = contextvars.ContextVar("keras_afl_float32_result", default=False)


def _done(loss, dtype):
    if loss.dtype == dtype or (dtype in _HALF and _FLOAT32_RESULT.get()):
        return loss
    return tf.cast(loss, dtype)


@contextlib.contextmanager
def _switched_on(var):
    token = var.set(True)
    try:
        yield
    finally:
        var.reset(token)


def _float32_result():
    return _switched_on(_FLOAT32_RESULT)


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


def _tiny(dtype):
    return np.finfo(dtype.as_numpy_dtype).tiny


def _clip_pair(p, eps):
    """Clipped p and clipped 1 - p (both in [eps, 1 - eps])."""
    return (tf.clip_by_value(p, eps, 1.0 - eps),
            tf.clip_by_value(1.0 - p, eps, 1.0 - eps))


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


def _reshape_batch(flat, like):
    """Reshapes a flat per-sample tensor to like.shape[:-1], keeping the static shape."""
    out = tf.reshape(flat, tf.shape(like)[:-1])
    if not tf.executing_eagerly():
        out.set_shape(like.shape[:-1])
    return out


def _focal_factor(m, gamma):
    """m ** gamma, with exact shortcuts for the common exponents."""
    if gamma == 1.0:
        return m
    if gamma == 2.0:
        return tf.square(m)
    return tf.pow(m, gamma)


def _smooth_binary(y, ls):
    return y * (1.0 - ls) + 0.5 * ls if ls else y


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
# in the environment, or `keras_afl.losses._FUSE = False` before tracing.
_FUSE = _fuse_from_environment()
# Below these sizes the two kernel launches cost more than they save (and a
# compile is not worth its time and memory): the plain path. With an unknown
# batch size, the size of one sample decides.
_FUSE_MIN_ELEMENTS = 2**16
_FUSE_MIN_PER_SAMPLE = 2**10


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


def _fused(x, like=None):
    """Whether the loss on x takes the compiled path: graph mode, float32 computation, large.

    `like` is the prediction (or its static shape) that measures the size (default x).
    """
    if not (_FUSE and _compute_dtype(x.dtype) == tf.float32 and not tf.executing_eagerly()
            and _xla_available()):
        return False
    shape = x.shape if like is None else tf.TensorShape(getattr(like, "shape", like))
    if shape.rank is None or shape.rank == 0:
        return False
    n = shape.num_elements()
    if n is not None:
        return n >= _FUSE_MIN_ELEMENTS
    per_sample = shape[1:].num_elements()
    return per_sample is not None and per_sample >= _FUSE_MIN_PER_SAMPLE


def _barrier(*structure):
    """The tensors of a nested structure, behind an XLA optimization barrier (identity gradient).

    Inside a model compiled with XLA the compiled loss functions are inlined;
    the barrier keeps XLA from merging the backward's recomputation with the
    forward's, which would make it keep full-size intermediates in memory
    between the two.
    """
    from tensorflow.compiler.tf2xla.python import xla  # no public API

    @tf.custom_gradient
    def _identity(*tensors):
        return list(xla.optimization_barrier(*tensors)), lambda *g: list(g)

    flat = tf.nest.flatten(structure)
    return tf.nest.pack_sequence_as(structure, _identity(*flat) if flat else [])


# body -> (forward, backward) written for the compiled path, where the forward
# hands per-sample statistics to the backward (see `_softmax_stats`):
# forward(settings, x, *tensors) -> (loss, saved); backward(settings, upstream,
# saved, x, *tensors) -> dloss/dx. Filled in below the bodies.
_SPLIT = {}


@functools.lru_cache(maxsize=512)
def _compiled(body, settings, dtype):
    """XLA-compiled (forward, backward) of a loss body, shared by every trace with these settings.

    forward(x, *tensors) -> (loss, saved); backward(upstream, saved, x, *tensors) -> dloss/dx.
    x has `dtype`; a half-precision x is cast to float32 inside the kernels (and
    its gradient cast back there), so the casts cost no pass over memory of their own.
    """
    split = _SPLIT.get(body)
    compute = _compute_dtype(dtype)

    def forward(x, *tensors):
        x = tf.cast(x, compute)
        with _kernel():
            if split:
                return split[0](settings, x, *tensors)
            return body(settings, x, *tensors)[0], ()

    def backward(upstream, saved, x, *tensors):
        upstream, saved, x, tensors = _barrier(upstream, saved, x, tensors)
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


def _custom_loss(body, settings, x, *tensors, like=None):
    """The per-sample loss of body with its analytic gradient (with respect to x only).

    `like`: the prediction before any flattening, for the size rule of `_fused`.
    """
    if _fused(x, like):
        forward, backward = _compiled(body, settings, x.dtype)

        @tf.custom_gradient
        def _loss(x):
            loss, saved = forward(x, *tensors)

            def grad(upstream):
                return backward(upstream, saved, x, *tensors)

            return loss, grad

    else:
        compute = _compute_dtype(x.dtype)
        x = x if x.dtype == compute else tf.cast(x, compute)

        @tf.custom_gradient
        def _loss(x):
            return body(settings, x, *tensors)

    return _loss(x)


# --------------------------------------------------------------------------
# Regression.


@_register
def mean_squared_error(y_true, y_pred):
    """Mean squared error over the last axis.

    The default regression loss: a Gaussian negative log-likelihood up to
    constants. Smooth and convex, but outliers dominate it (use Huber then).

    Formula:
        loss = mean((y_pred - y_true)**2, axis=-1)

    Gradient:
        dloss/dy_pred = 2 * (y_pred - y_true) / N     (N = size of the last axis)

    Args:
        y_true: Targets, same shape as `y_pred` (a trailing axis of size 1 may differ).
        y_pred: Predictions, floating point.

    Returns:
        Tensor of shape `y_pred.shape[:-1]`, dtype of `y_pred`.

    Example:
    >>> import keras_afl
    >>> loss = keras_afl.losses.mean_squared_error([[0.0, 1.0]], [[1.0, 1.0]])
    >>> print(round(float(loss[0]), 4))
    0.5
    """
    y_pred = as_float_tensor(y_pred, "y_pred")
    y_true, y_pred = _dense_pair(y_true, y_pred, "mean_squared_error")
    y_pred, dtype = _work(y_pred)
    return _done(_custom_loss(_mse, (), y_pred, y_true), dtype)


def _mse(settings, x, y):
    y = _labels(y, x)
    d = x - y
    loss = _class_mean(tf.square(d))

    def grad(g):
        return (g * (2.0 * _inv_size(x)))[..., None] * d

    return loss, grad


@_register
def huber(y_true, y_pred, delta=1.0):
    """Huber loss: quadratic for small errors, linear for large ones.

    Robust regression: like MSE near zero (smooth, well conditioned), like MAE
    for errors beyond `delta` (outliers get a bounded gradient).

    Formula:
        e = y_pred - y_true,  c = min(|e|, delta)
        loss = mean(0.5 * c**2 + delta * (|e| - c), axis=-1)
             = mean(0.5 * e**2 if |e| <= delta else delta * (|e| - 0.5 * delta))

    Gradient:
        dloss/dy_pred = clip(e, -delta, delta) / N     (continuous; no kink convention needed)

    Args:
        y_true: Targets, same shape as `y_pred`.
        y_pred: Predictions, floating point.
        delta: Where the loss turns from quadratic to linear; a finite number > 0.

    Returns:
        Tensor of shape `y_pred.shape[:-1]`, dtype of `y_pred`.

    Example:
    >>> import keras_afl
    >>> loss = keras_afl.losses.huber([[0.0, 0.0]], [[0.5, 3.0]], delta=1.0)
    >>> print(round(float(loss[0]), 4))  # (0.125 + 2.5) / 2
    1.3125

    Reference:
        Huber, "Robust Estimation of a Location Parameter", Ann. Math. Statist. 1964.
    """
    delta = check_number(delta, "delta", low=0.0, low_inclusive=False)
    y_pred = as_float_tensor(y_pred, "y_pred")
    y_true, y_pred = _dense_pair(y_true, y_pred, "huber")
    y_pred, dtype = _work(y_pred)
    return _done(_custom_loss(_huber, (delta,), y_pred, y_true), dtype)


def _huber(settings, x, y):
    (delta,) = settings
    y = _labels(y, x)
    d_t = tf.constant(delta, x.dtype)
    e = x - y
    a = tf.abs(e)
    c = tf.minimum(a, d_t)
    loss = _class_mean(0.5 * tf.square(c) + d_t * (a - c))

    def grad(g):
        return (g * _inv_size(x))[..., None] * tf.clip_by_value(e, -d_t, d_t)

    return loss, grad


@_register
def hinge(y_true, y_pred, label_format="auto"):
    """Hinge loss for binary classifiers with a margin (SVM-style).

    `y_pred` is a raw score (no sigmoid); the loss is zero once the score has
    the label's sign with a margin of 1.

    Labels. With `label_format="signed"`, labels are -1 / +1 and used as is;
    with `"binary"`, labels are 0 / 1 and mapped to t = 2 * y - 1. With
    `"auto"` (default, Keras's rule), a batch whose labels are all 0 or 1 is
    taken as binary and mapped, any other batch is used as is. The two
    formats overlap only in the label 1, which maps to 1 either way, so
    `"auto"` tells them apart correctly for any batch of valid labels; state
    the format to skip the check (and to refuse nothing silently: with
    `"auto"`, a batch mixing -1, 0 and 1 is used as is).

    Formula:
        loss = mean(max(0, 1 - t * y_pred), axis=-1)

    Gradient:
        dloss/dy_pred = -t / N  if t * y_pred <= 1  else 0
        (at the hinge point t * y_pred = 1 the gradient is -t / N, as Keras)

    Args:
        y_true: Labels, same shape as `y_pred`.
        y_pred: Scores, floating point.
        label_format: `"auto"`, `"binary"` (0 / 1) or `"signed"` (-1 / +1).

    Returns:
        Tensor of shape `y_pred.shape[:-1]`, dtype of `y_pred`.

    Example:
    >>> import keras_afl
    >>> loss = keras_afl.losses.hinge([[0.0, 1.0]], [[0.5, 0.5]])
    >>> print(round(float(loss[0]), 4))  # t = (-1, 1): (1.5 + 0.5) / 2
    1.0
    """
    if label_format not in _LABEL_FORMATS:
        raise ValueError(
            f"`label_format` must be one of {_LABEL_FORMATS}; received {label_format!r}."
        )
    y_pred = as_float_tensor(y_pred, "y_pred")
    y_true, y_pred = _dense_pair(y_true, y_pred, "hinge")
    y_pred, dtype = _work(y_pred)
    return _done(_custom_loss(_hinge, (label_format,), y_pred, y_true), dtype)


def _hinge(settings, x, y, b=None):
    (label_format,) = settings
    y = _labels(y, x)
    if label_format == "signed":
        t = y
    elif label_format == "binary":
        t = 2.0 * y - 1.0
    else:
        # "auto": b = 1 for a batch of 0/1 labels, else 0, decided on the labels in the
        # computation dtype; y (1 + b) - b is 2y - 1 for b = 1 and y itself (exactly) for b = 0.
        if b is None:
            b = tf.cast(tf.reduce_all((y == 0.0) | (y == 1.0)), x.dtype)
        t = y * (1.0 + b) - b
    m = 1.0 - t * x
    loss = _class_mean(tf.nn.relu(m))

    def grad(g):
        return (g * -_inv_size(x))[..., None] * t * tf.cast(m >= 0.0, m.dtype)

    return loss, grad


def _hinge_forward(settings, x, y):
    """The compiled forward: with "auto", both readings of the labels in the same pass as
    the batch's 0/1 test (no pass of its own), and b saved for the backward."""
    if settings[0] != "auto":
        return _hinge(settings, x, y)[0], ()
    y = _labels(y, x)
    b = tf.reduce_all((y == 0.0) | (y == 1.0))
    as_binary = _class_mean(tf.nn.relu(1.0 - (y * 2.0 - 1.0) * x))
    as_signed = _class_mean(tf.nn.relu(1.0 - y * x))
    return tf.where(b, as_binary, as_signed), (tf.cast(b, x.dtype),)


def _hinge_backward(settings, g, saved, x, y):
    return _hinge(settings, x, y, *saved)[1](g)


# --------------------------------------------------------------------------
# Binary cross-entropy family.


@_register
def binary_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, pos_weight=None):
    """Binary cross-entropy, averaged over the last axis.

    For binary and multi-label classification with a sigmoid output. Pass
    logits with `from_logits=True` (or the output of a Sigmoid, which carries
    its logits) for the stable path.

    Formula (z = logits, p = sigmoid(z) or the given probability,
    y smoothed: y * (1 - label_smoothing) + 0.5 * label_smoothing,
    w = pos_weight, 1 if None):
        loss = mean(-[w * y * log(p) + (1 - y) * log(1 - p)], axis=-1)
        logits: (1 - y) * z + (1 + (w - 1) * y) * softplus(-z)     (w = 1: softplus(z) - z * y)

    Gradient:
        logits:        dloss/dz = ((1 + (w - 1) * y) * sigmoid(z) - w * y) / N
        probabilities: dloss/dp = ((1 - y) / (1 - p) - w * y / p) / N at the clipped p
        (see the module docstring for the clip convention)

    Args:
        y_true: Labels in [0, 1], same shape as `y_pred`.
        y_pred: Probabilities, or logits with `from_logits=True`.
        from_logits: Whether `y_pred` holds logits.
        label_smoothing: In [0, 1]; squeezes the labels towards 0.5.
        pos_weight: Weight of the positive term, as PyTorch's
            `BCEWithLogitsLoss(pos_weight=...)`: a number >= 0 or one number per
            output (the last axis). None means 1.

    Returns:
        Tensor of shape `y_pred.shape[:-1]`, dtype of `y_pred`.

    Example:
    >>> import keras_afl
    >>> loss = keras_afl.losses.binary_crossentropy([[1.0, 0.0]], [[0.0, 0.0]], from_logits=True)
    >>> print(round(float(loss[0]), 4))  # log 2
    0.6931
    """
    from_logits = _check_bool(from_logits, "from_logits")
    ls = check_number(label_smoothing, "label_smoothing", low=0.0, high=1.0)
    pw = _check_weights(pos_weight, "pos_weight")
    x, from_logits = _select(y_pred, from_logits, "Sigmoid", "binary_crossentropy")
    y, x = _dense_pair(y_true, x, "binary_crossentropy")
    x, dtype = _work(x)
    w = _per_class(pw, x, "pos_weight", "binary_crossentropy")
    weights = () if w is None else (w,)
    if from_logits:
        return _done(_custom_loss(_bce_logits, (ls,), x, y, *weights), dtype)
    return _done(_custom_loss(_bce_probabilities, (ls, keras.config.epsilon()), x, y, *weights), dtype)


def _bce_logits(settings, z, y, w=None):
    (ls,) = settings
    y = _smooth_binary(_labels(y, z), ls)
    inv_n = _inv_size(z)
    if w is None:
        loss = _class_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=z))

        def grad(g):
            return (g * inv_n)[..., None] * (tf.math.sigmoid(z) - y)

    else:
        loss = _class_mean(tf.nn.weighted_cross_entropy_with_logits(labels=y, logits=z, pos_weight=w))

        def grad(g):
            return (g * inv_n)[..., None] * ((1.0 + (w - 1.0) * y) * tf.math.sigmoid(z) - w * y)

    return loss, grad


def _bce_probabilities(settings, p, y, w=None):
    ls, eps = settings
    y = _smooth_binary(_labels(y, p), ls)
    wy = y if w is None else w * y
    ny = 1.0 - y
    cp, cq = _clip_pair(p, eps)
    loss = -_class_mean(wy * tf.math.log(cp) + ny * tf.math.log(cq))

    def grad(g):
        return (g * _inv_size(p))[..., None] * (ny / cq - wy / cp)

    return loss, grad


@_register
def focal(y_true, y_pred, gamma=2.0, alpha=0.25, from_logits=False, label_smoothing=0.0):
    """Binary focal loss (multi-label), averaged over the last axis.

    Cross-entropy that down-weights easy, well-classified examples by
    (1 - p_t)**gamma, so that training focuses on hard ones: for dense
    detection and other heavily imbalanced problems. With gamma = 0 and
    alpha = None it is binary cross-entropy.

    `alpha` weights the positive class as in Lin et al.: alpha_t = alpha for
    y = 1 and 1 - alpha for y = 0, always applied unless `alpha=None`. (Keras's
    `BinaryFocalCrossentropy` ignores `alpha` unless `apply_class_balancing=True`;
    ours equals Keras's with `apply_class_balancing=True`.)

    Formula (p = sigmoid(z) or the given probability, q = 1 - p, y smoothed
    towards 0.5 by label_smoothing, m = 1 - p_t = y * q + (1 - y) * p,
    alpha_t = alpha * y + (1 - alpha) * (1 - y)):
        CE   = -[y * log(p) + (1 - y) * log(q)]       (logits: softplus(z) - z * y)
        loss = mean(alpha_t * m**gamma * CE, axis=-1)

    Gradient (computed without m**(gamma - 1), finite for every gamma >= 0):
        logits:        dloss/dz = alpha_t * m**gamma * [(p - y) - gamma * (2y - 1) * (p q / m) * CE] / N
        probabilities: dloss/dp = alpha_t * m**gamma * [gamma * (1 - 2y) * CE / m
                                  + (1 - y) / q - y / p] / N   at the clipped p
        (p q / m is evaluated as p q / max(m, tiny); where m underflows to 0 the
        term is 0, its limit up to the dtype's smallest normal number.)

    Args:
        y_true: Labels in [0, 1], same shape as `y_pred`.
        y_pred: Probabilities, or logits with `from_logits=True`.
        gamma: Focusing parameter, >= 0.
        alpha: Weight of the positive class in [0, 1], or None for no weighting.
        from_logits: Whether `y_pred` holds logits.
        label_smoothing: In [0, 1]; squeezes the labels towards 0.5.

    Returns:
        Tensor of shape `y_pred.shape[:-1]`, dtype of `y_pred`.

    Example:
    >>> import keras_afl
    >>> loss = keras_afl.losses.focal([[1.0]], [[0.0]], gamma=2.0, alpha=None, from_logits=True)
    >>> print(round(float(loss[0]), 4))  # 0.5**2 * log 2
    0.1733

    Reference:
        Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017.
    """
    gamma = check_number(gamma, "gamma", low=0.0)
    alpha = check_number(alpha, "alpha", low=0.0, high=1.0, allow_none=True)
    from_logits = _check_bool(from_logits, "from_logits")
    ls = check_number(label_smoothing, "label_smoothing", low=0.0, high=1.0)
    x, from_logits = _select(y_pred, from_logits, "Sigmoid", "focal")
    y, x = _dense_pair(y_true, x, "focal")
    x, dtype = _work(x)
    if from_logits:
        return _done(_custom_loss(_focal_logits, (gamma, alpha, ls), x, y), dtype)
    return _done(_custom_loss(_focal_probabilities, (gamma, alpha, ls, keras.config.epsilon()), x, y),
                 dtype)


def _focal_scale(y, x, alpha):
    """alpha_t / N = (alpha y + (1 - alpha)(1 - y)) / N, from the labels only (1 / N for None)."""
    inv_n = _inv_size(x)
    return inv_n if alpha is None else y * ((2.0 * alpha - 1.0) * inv_n) + (1.0 - alpha) * inv_n


def _focal_logits(settings, z, y):
    gamma, alpha, ls = settings
    y = _smooth_binary(_labels(y, z), ls)
    scale = _focal_scale(y, z, alpha)
    # One exp, one log1p, one division for CE, p and q: e = exp(-|z|), r = 1 / (1 + e).
    # CE is TF's sigmoid_cross_entropy_with_logits, op for op.
    pos = z >= 0.0
    e = tf.exp(tf.where(pos, -z, z))
    ce = (tf.where(pos, z, tf.zeros_like(z)) - z * y) + tf.math.log1p(e)
    r = 1.0 / (1.0 + e)
    p = tf.where(pos, r, e * r)  # sigmoid(z)
    if gamma == 0.0:
        f = scale
    else:
        q = tf.where(pos, e * r, r)  # sigmoid(-z), not 1 - p
        m = p + y * (q - p)  # y q + (1 - y) p
        f = scale * _focal_factor(m, gamma)
    loss = _class_sum(f * ce, keepdims=False)

    def grad(g):
        d = p - y
        if gamma != 0.0:  # gamma (2y - 1) (p q / m) CE
            d = d - (y * (2.0 * gamma) - gamma) * (p * q / tf.maximum(m, _tiny(z.dtype))) * ce
        return g[..., None] * f * d

    return loss, grad


def _focal_probabilities(settings, p, y):
    gamma, alpha, ls, eps = settings
    y = _smooth_binary(_labels(y, p), ls)
    scale = _focal_scale(y, p, alpha)
    cp, cq = _clip_pair(p, eps)
    lq = tf.math.log(cq)
    ce = -(lq + y * (tf.math.log(cp) - lq))
    if gamma == 0.0:
        f = scale
    else:
        m = cp + y * (cq - cp)  # y (1 - p) + (1 - y) p, >= eps
        f = scale * _focal_factor(m, gamma)
    loss = _class_sum(f * ce, keepdims=False)

    def grad(g):
        d = (1.0 - y) / cq - y / cp
        if gamma != 0.0:  # + gamma (1 - 2y) CE / m
            d = d + (gamma - y * (2.0 * gamma)) * ce / m
        return g[..., None] * f * d

    return loss, grad


# --------------------------------------------------------------------------
# Categorical cross-entropy family.


def _dense_categorical(y_true, y_pred, from_logits, axis, fn_name):
    """Shared preparation: logits/probabilities and labels with the class axis last."""
    y_pred = as_float_tensor(y_pred, "y_pred")
    axis = normalize_axis(axis, y_pred.shape.rank)
    x, from_logits = _select(y_pred, from_logits, "Softmax" if _is_last(axis, y_pred) else None,
                             fn_name)
    y, x = _dense_pair(y_true, x, fn_name)
    x, dtype = _work(x)
    y, x = _class_axis_last(y, axis), _class_axis_last(x, axis)
    return y, x, from_logits, dtype


def _smooth_categorical(y, ls, x):
    return y * (1.0 - ls) + ls * _inv_size(x) if ls else y


def _categorical_probabilities(settings, p, y, a=None):
    """(Focal) categorical cross-entropy from probabilities, classes on the last axis.

    Labels smoothed, then weighted by alpha (if any). Probabilities are normalised
    to sum to 1 (a row summing to less than eps is divided by eps), then clipped.
    """
    gamma, ls, eps = settings
    y = _smooth_categorical(_labels(y, p), ls, p)
    ay = y if a is None else a * y
    s = tf.maximum(_class_sum(p), eps)
    n = p / s
    c = tf.clip_by_value(n, eps, 1.0 - eps)
    lc = tf.math.log(c)
    if gamma == 0.0:
        weighted = ay
    else:
        oc = 1.0 - c  # >= about eps
        weighted = ay * _focal_factor(oc, gamma)
    loss = -_class_sum(weighted * lc, keepdims=False)

    def grad(g):
        # u = dloss/dc at the clipped point; then through the normalisation n = p / s.
        if gamma == 0.0:
            u = -weighted / c
        else:
            u = weighted * (gamma * lc / oc - 1.0 / c)
        du = u - _class_sum(u * n)
        return g[..., None] * du / s

    return loss, grad


@_register
def categorical_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    """Categorical cross-entropy between one-hot (or soft) labels and a distribution.

    For single-label multi-class classification with a softmax output. Pass
    logits with `from_logits=True` (or the output of a Softmax, which carries
    its logits) for the stable path.

    Formula (z = logits, y smoothed: y * (1 - ls) + ls / K, K = classes):
        logits:        loss = (sum y) * logsumexp(z) - sum(y * z)   = -sum(y * log_softmax(z))
        probabilities: loss = -sum(y * log(clip(p / sum p)))

    Gradient:
        logits:        dloss/dz = (sum y) * softmax(z) - y
                       (TF's fused kernel gives softmax(z) - y; the difference is added
                       back when some label row does not sum to 1)
        probabilities: with n = p / sum(p), c = clip(n), u = -y / c:
                       dloss/dp = (u - sum(u * n)) / sum(p)    (at the clipped point)

    Args:
        y_true: One-hot or soft labels, same shape as `y_pred`.
        y_pred: Probabilities, or logits with `from_logits=True`.
        from_logits: Whether `y_pred` holds logits.
        label_smoothing: In [0, 1]; mixes the labels with the uniform distribution.
        axis: The class axis.

    Returns:
        Tensor of `y_pred`'s shape without `axis`, dtype of `y_pred`.

    Example:
    >>> import keras_afl
    >>> loss = keras_afl.losses.categorical_crossentropy([[0.0, 0.0, 1.0]], [[30.0, 0.0, -30.0]],
    ...                                                  from_logits=True)
    >>> print(round(float(loss[0]), 4))  # logsumexp(30, 0, -30) + 30
    60.0
    """
    from_logits = _check_bool(from_logits, "from_logits")
    ls = check_number(label_smoothing, "label_smoothing", low=0.0, high=1.0)
    y, x, from_logits, dtype = _dense_categorical(
        y_true, y_pred, from_logits, axis, "categorical_crossentropy")
    if not from_logits:
        return _done(_custom_loss(_categorical_probabilities, (0.0, ls, keras.config.epsilon()), x, y),
                     dtype)
    return _done(_custom_loss(_cce_logits, (ls,), x, y), dtype)


def _cce_logits(settings, z, y):
    # TF's fused kernel: its loss is exact for any labels, its backprop softmax - y
    # only for labels that sum to 1. With s = sum(y), the gradient is
    # s softmax - y = s bp + (s - 1) y; the correction is skipped when every s == 1.
    (ls,) = settings
    y = _smooth_categorical(_labels(y, z), ls, z)
    flat_loss, flat_bp = tf.raw_ops.SoftmaxCrossEntropyWithLogits(
        features=tf.reshape(z, [-1, _num_classes(z)]),
        labels=tf.reshape(y, [-1, _num_classes(z)]))
    loss = _reshape_batch(flat_loss, z)
    bp = tf.reshape(flat_bp, tf.shape(z))

    def grad(g):
        s = tf.reduce_sum(y, -1, keepdims=True)
        d = tf.cond(tf.reduce_all(s == 1.0), lambda: bp, lambda: s * bp + (s - 1.0) * y)
        return g[..., None] * d

    return loss, grad


def _softmax_stats(z):
    """Per-sample max m and l = log(sum(exp(z - m))) along the last axis; log_softmax = (z - m) - l.

    The compiled forward of the softmax losses saves (m, l) -- one number each per
    sample -- so that the backward is one pass over z: softmax = exp((z - m) - l),
    exactly as TF's LogSoftmax kernel computes it.
    """
    m = tf.reduce_max(z, -1, keepdims=True)
    zm = z - m
    return zm, (m, tf.math.log(_class_sum(tf.exp(zm))))


def _cce_logits_forward(settings, z, y):
    (ls,) = settings
    y = _smooth_categorical(_labels(y, z), ls, z)
    zm, (m, l) = _softmax_stats(z)
    # TF's kernel: sum(y (l - (z - m))) = s l - sum(y (z - m)), s = sum(y); both terms >= 0
    # for labels >= 0 (z - m <= 0), so nothing cancels.
    s = _class_sum(y)
    loss = (s * l - _class_sum(y * zm))[..., 0]
    return loss, (m, l, s)


def _cce_logits_backward(settings, g, saved, z, y):
    (ls,) = settings
    y = _smooth_categorical(_labels(y, z), ls, z)
    m, l, s = saved
    return g[..., None] * (s * tf.exp((z - m) - l) - y)  # s softmax - y


@_register
def categorical_focal(y_true, y_pred, gamma=2.0, alpha=None, from_logits=False, label_smoothing=0.0,
                      axis=-1):
    """Categorical focal loss: categorical cross-entropy with focusing, per class.

    For imbalanced single-label multi-class problems. With gamma = 0 and
    alpha = None it is categorical cross-entropy. Computed through
    log-softmax from logits, so a confidently wrong prediction keeps its full
    loss and gradient (Keras clips probabilities: logits (30, 0, -30) with
    true class 2 give Keras 4.03 and gradient 0; here about 60, gradient ~ (1, 0, -1)).

    Formula (p = softmax(z) or the given normalised, clipped probabilities;
    alpha a scalar or one weight per class; y smoothed as in categorical_crossentropy):
        loss = -sum(alpha * y * (1 - p)**gamma * log(p))

    Gradient (logits; 1 - p = -expm1(log p), h = -log(p) / (1 - p), h = 1 where p = 1):
        w = alpha * y * (1 - p)**gamma * (1 + gamma * p * h)
        dloss/dz = p * sum(w) - w
    Probabilities, with n = p / sum(p), c = clip(n):
        u = alpha * y * (1 - c)**gamma * (gamma * log(c) / (1 - c) - 1 / c)
        dloss/dp = (u - sum(u * n)) / sum(p)         (at the clipped point)

    Args:
        y_true: One-hot or soft labels, same shape as `y_pred`.
        y_pred: Probabilities, or logits with `from_logits=True`.
        gamma: Focusing parameter, >= 0.
        alpha: None, a weight in [0, 1], or one weight in [0, 1] per class.
        from_logits: Whether `y_pred` holds logits.
        label_smoothing: In [0, 1].
        axis: The class axis.

    Returns:
        Tensor of `y_pred`'s shape without `axis`, dtype of `y_pred`.

    Example:
    >>> import keras_afl
    >>> loss = keras_afl.losses.categorical_focal([[0.0, 0.0, 1.0]], [[30.0, 0.0, -30.0]],
    ...                                           from_logits=True)
    >>> print(round(float(loss[0]), 4))
    60.0

    Reference:
        Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017.
    """
    gamma = check_number(gamma, "gamma", low=0.0)
    alpha = _check_weights(alpha, "alpha", high=1.0)
    from_logits = _check_bool(from_logits, "from_logits")
    ls = check_number(label_smoothing, "label_smoothing", low=0.0, high=1.0)
    y, x, from_logits, dtype = _dense_categorical(y_true, y_pred, from_logits, axis, "categorical_focal")
    a = _per_class(alpha, x, "alpha", "categorical_focal")
    alphas = () if a is None else (a,)
    if not from_logits:
        return _done(_custom_loss(_categorical_probabilities, (gamma, ls, keras.config.epsilon()), x, y,
                                  *alphas), dtype)
    return _done(_custom_loss(_cfocal_logits, (gamma, ls), x, y, *alphas), dtype)


def _cfocal_logits(settings, z, y, a=None, lp=None):
    gamma, ls = settings
    y = _smooth_categorical(_labels(y, z), ls, z)
    ay = y if a is None else a * y
    if lp is None:
        lp = tf.nn.log_softmax(z, axis=-1)
    if gamma == 0.0:
        weighted = ay
    else:
        om = -tf.math.expm1(lp)  # 1 - p, accurate near p = 1
        weighted = ay * _focal_factor(om, gamma)
    loss = -_class_sum(weighted * lp, keepdims=False)

    def grad(g):
        p = tf.exp(lp)
        if gamma == 0.0:
            w = weighted
        else:
            pos = om > 0.0
            h = tf.where(pos, -lp / tf.where(pos, om, tf.ones_like(om)), tf.ones_like(om))
            w = weighted * (1.0 + gamma * p * h)
        return g[..., None] * (p * _class_sum(w) - w)

    return loss, grad


def _cfocal_logits_forward(settings, z, y, a=None):
    zm, (m, l) = _softmax_stats(z)
    return _cfocal_logits(settings, z, y, a, lp=zm - l)[0], (m, l)


def _cfocal_logits_backward(settings, g, saved, z, y, a=None):
    m, l = saved
    return _cfocal_logits(settings, z, y, a, lp=(z - m) - l)[1](g)


# --------------------------------------------------------------------------
# Sparse (integer label) categorical family.


def _sparse_prepare(y_true, y_pred, from_logits, axis, ignore_class, fn_name):
    """Logits/probabilities (classes last, flattened to (M, K)), labels and per-sample factor.

    factor is 1 for counted samples, 0 for `ignore_class`, NaN for labels out
    of [0, K) (which also fail a tf.debugging assertion outside XLA).
    """
    y_pred = as_float_tensor(y_pred, "y_pred")
    rank = y_pred.shape.rank
    axis = normalize_axis(axis, rank)
    last = _is_last(axis, y_pred)
    x, from_logits = _select(y_pred, from_logits, "Softmax" if last else None, fn_name)
    t = tf.convert_to_tensor(y_true)
    if not (t.dtype.is_integer or t.dtype.is_floating):
        raise TypeError(f"`y_true` must hold integer class ids; received dtype {t.dtype.name}.")
    if t.shape.rank is not None and rank is not None and t.shape.rank == rank and t.shape[axis] == 1:
        t = tf.squeeze(t, axis)
    batch_shape = x.shape[:axis].concatenate(x.shape[axis + 1:]) if rank is not None and not last \
        else x.shape[:-1]
    if t.shape.rank is not None and rank is not None and (
        t.shape.rank != rank - 1 or not t.shape.is_compatible_with(batch_shape)
    ):
        raise ValueError(
            f"{fn_name}: `y_true` must hold one class id per sample, with `y_pred`'s shape "
            f"without the class axis ({tuple(batch_shape)}); received y_true.shape="
            f"{tuple(t.shape)} and y_pred.shape={tuple(x.shape)}."
        )
    x, dtype = _work(x)
    x = _class_axis_last(x, axis)
    static_batch = x.shape[:-1]
    t = tf.cast(t, tf.int32) if t.dtype != tf.int64 else t
    k = _num_classes(x)
    batch = tf.shape(x)[:-1]
    x2 = tf.reshape(x, [-1, k])
    t = tf.reshape(t, [-1])
    valid = None if ignore_class is None else tf.not_equal(t, tf.cast(ignore_class, t.dtype))
    counted = t if valid is None else tf.where(valid, t, tf.zeros_like(t))
    in_range = (counted >= 0) & (counted < tf.cast(k, t.dtype))
    tf.debugging.Assert(
        tf.reduce_all(in_range),
        [f"{fn_name}: class ids in `y_true` must be in [0, num_classes)"
         + ("" if ignore_class is None else f" or equal ignore_class={ignore_class}")
         + "; num_classes and the smallest and largest ids received:",
         k, tf.reduce_min(counted), tf.reduce_max(counted)],
        name="check_class_ids",
    )
    safe = tf.where(in_range, counted, tf.zeros_like(counted))
    one = tf.ones([], _compute_dtype(x.dtype))
    factor = tf.where(in_range, one, tf.constant(float("nan"), one.dtype))
    if valid is not None:
        factor = tf.where(valid, factor, tf.zeros_like(factor))
    return x2, safe, factor, from_logits, (batch, static_batch), valid, dtype


def _unflattened(x2, batch):
    """The static shape of the (M, K) predictions before flattening: batch shape + (K,)."""
    return batch[1].concatenate(x2.shape[-1:])


def _sparse_finish(flat_loss, batch, valid, dtype):
    batch, static_batch = batch
    loss = tf.reshape(flat_loss, batch)
    if not tf.executing_eagerly():
        loss.set_shape(static_batch)
    loss = _done(loss, dtype)
    if valid is not None:
        # Tells keras.losses.Loss to average over the counted samples only.
        try:
            loss._keras_mask = tf.reshape(valid, tf.shape(loss))
        except AttributeError:  # pragma: no cover - tensor types that refuse attributes
            pass
    return loss


def _sparse_probabilities(settings, p, t, factor, a_t=None):
    """(Focal) sparse categorical cross-entropy from probabilities (M, K); see categorical_focal."""
    gamma, eps = settings
    s = tf.maximum(_class_sum(p, keepdims=False), eps)
    n_t = tf.gather(p, t, batch_dims=1) / s
    c = tf.clip_by_value(n_t, eps, 1.0 - eps)
    lc = tf.math.log(c)
    wt = factor if a_t is None else factor * a_t
    if gamma != 0.0:
        oc = 1.0 - c
        wt = wt * _focal_factor(oc, gamma)
    loss = -wt * lc

    def grad(g):
        if gamma == 0.0:
            u = -wt / c
        else:
            u = wt * (gamma * lc / oc - 1.0 / c)
        onehot = tf.one_hot(t, _num_classes(p), dtype=p.dtype)
        return (g * u / s)[:, None] * (onehot - n_t[:, None])

    return loss, grad


@_register
def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False, ignore_class=None, axis=-1):
    """Categorical cross-entropy with integer class ids as labels.

    As `categorical_crossentropy` with one-hot labels, without building them.
    Class ids outside [0, num_classes) raise `InvalidArgumentError` (a
    `tf.debugging` assertion) eagerly and in `tf.function`; under XLA
    (`jit_compile=True`), which drops assertions, such samples get a NaN loss
    and gradient instead of a silently wrong value.

    Formula (t = class id):
        logits:        loss = logsumexp(z) - z_t
        probabilities: loss = -log(clip(p_t / sum p))

    Gradient:
        logits:        dloss/dz = softmax(z) - onehot(t)
        probabilities: dloss/dp = (n_t - onehot(t)) / (c_t * sum p),  n = p / sum p, c = clip(n)

    Args:
        y_true: Integer class ids (any numeric dtype), `y_pred`'s shape without
            the class axis (a trailing axis of size 1 is allowed).
        y_pred: Probabilities, or logits with `from_logits=True`.
        from_logits: Whether `y_pred` holds logits.
        ignore_class: A class id whose samples get loss 0 and are left out of
            the average (through a Keras mask), e.g. a "void" label; or None.
        axis: The class axis.

    Returns:
        Tensor of `y_pred`'s shape without `axis`, dtype of `y_pred`.

    Example:
    >>> import keras_afl
    >>> loss = keras_afl.losses.sparse_categorical_crossentropy([2], [[0.0, 0.0, 0.0]],
    ...                                                         from_logits=True)
    >>> print(round(float(loss[0]), 4))  # log 3
    1.0986
    """
    from_logits = _check_bool(from_logits, "from_logits")
    ignore_class = _check_ignore_class(ignore_class)
    x, t, factor, from_logits, batch, valid, dtype = _sparse_prepare(
        y_true, y_pred, from_logits, axis, ignore_class, "sparse_categorical_crossentropy")

    if not from_logits:
        loss = _custom_loss(_sparse_probabilities, (0.0, keras.config.epsilon()), x, t, factor,
                            like=_unflattened(x, batch))
    else:
        loss = _custom_loss(_scce_logits, (), x, t, factor, like=_unflattened(x, batch))
    return _sparse_finish(loss, batch, valid, dtype)


def _scce_logits(settings, z, t, factor):
    ce, bp = tf.raw_ops.SparseSoftmaxCrossEntropyWithLogits(features=z, labels=t)
    loss = factor * ce

    def grad(g):
        return (g * factor)[:, None] * bp

    return loss, grad


def _sparse_ce_and_stats(z, t):
    """TF's sparse kernel's loss, log(sum(exp(z - m))) - (z_t - m), and the saved (m, l)."""
    zm, (m, l) = _softmax_stats(z)
    return l[:, 0] - tf.gather(zm, t, batch_dims=1), (m, l)


def _sparse_backprop(saved, z, t):
    """softmax(z) - onehot(t) from the saved statistics (the sparse kernel's backprop)."""
    m, l = saved[:2]
    return tf.exp((z - m) - l) - tf.one_hot(t, _num_classes(z), dtype=z.dtype)


def _scce_logits_forward(settings, z, t, factor):
    ce, saved = _sparse_ce_and_stats(z, t)
    return factor * ce, saved


def _scce_logits_backward(settings, g, saved, z, t, factor):
    return (g * factor)[:, None] * _sparse_backprop(saved, z, t)


@_register
def sparse_categorical_focal(y_true, y_pred, gamma=2.0, alpha=None, from_logits=False,
                             ignore_class=None, axis=-1):
    """Categorical focal loss with integer class ids as labels.

    As `categorical_focal` with one-hot labels; `alpha` is None, a scalar, or
    one weight per class (picked by the label). Class ids out of range are
    handled as in `sparse_categorical_crossentropy`.

    Formula (t = class id, log p_t = -(logsumexp(z) - z_t)):
        loss = -alpha_t * (1 - p_t)**gamma * log(p_t)

    Gradient (logits; 1 - p_t = -expm1(log p_t), h = -log(p_t) / (1 - p_t), 1 where p_t = 1):
        dloss/dz = alpha_t * (1 - p_t)**gamma * (1 + gamma * p_t * h) * (softmax(z) - onehot(t))
    Probabilities: dloss/dp = u * (onehot(t) - n_t) / sum(p) with
        u = alpha_t * (1 - c_t)**gamma * (gamma * log(c_t) / (1 - c_t) - 1 / c_t).

    Args:
        y_true: Integer class ids, `y_pred`'s shape without the class axis.
        y_pred: Probabilities, or logits with `from_logits=True`.
        gamma: Focusing parameter, >= 0.
        alpha: None, a weight in [0, 1], or one weight in [0, 1] per class.
        from_logits: Whether `y_pred` holds logits.
        ignore_class: A class id to leave out (loss 0, masked), or None.
        axis: The class axis.

    Returns:
        Tensor of `y_pred`'s shape without `axis`, dtype of `y_pred`.

    Example:
    >>> import keras_afl
    >>> loss = keras_afl.losses.sparse_categorical_focal([1], [[0.0, 0.0]], gamma=1.0,
    ...                                                  from_logits=True)
    >>> print(round(float(loss[0]), 4))  # 0.5 * log 2
    0.3466

    Reference:
        Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017.
    """
    gamma = check_number(gamma, "gamma", low=0.0)
    alpha = _check_weights(alpha, "alpha", high=1.0)
    from_logits = _check_bool(from_logits, "from_logits")
    ignore_class = _check_ignore_class(ignore_class)
    x, t, factor, from_logits, batch, valid, dtype = _sparse_prepare(
        y_true, y_pred, from_logits, axis, ignore_class, "sparse_categorical_focal")
    a = _per_class(alpha, x, "alpha", "sparse_categorical_focal")
    a_t = None if a is None else (tf.gather(a, t) if a.shape.rank else a)

    alphas = () if a_t is None else (a_t,)
    if not from_logits:
        loss = _custom_loss(_sparse_probabilities, (gamma, keras.config.epsilon()), x, t, factor, *alphas,
                            like=_unflattened(x, batch))
    else:
        loss = _custom_loss(_sfocal_logits, (gamma,), x, t, factor, *alphas, like=_unflattened(x, batch))
    return _sparse_finish(loss, batch, valid, dtype)


def _sfocal_logits(settings, z, t, factor, a_t=None, ce_bp=None):
    (gamma,) = settings
    wt0 = factor if a_t is None else factor * a_t
    if ce_bp is None:
        ce_bp = tf.raw_ops.SparseSoftmaxCrossEntropyWithLogits(features=z, labels=t)
    ce, bp = ce_bp
    if gamma == 0.0:
        wt = wt0
    else:
        om = -tf.math.expm1(-ce)  # 1 - p_t
        wt = wt0 * _focal_factor(om, gamma)
    loss = wt * ce

    def grad(g):
        if gamma == 0.0:
            w = wt
        else:
            p_t = tf.exp(-ce)
            pos = om > 0.0
            h = tf.where(pos, ce / tf.where(pos, om, tf.ones_like(om)), tf.ones_like(om))
            w = wt * (1.0 + gamma * p_t * h)
        return (g * w)[:, None] * bp

    return loss, grad


def _sfocal_logits_forward(settings, z, t, factor, a_t=None):
    ce, saved = _sparse_ce_and_stats(z, t)
    return _sfocal_logits(settings, z, t, factor, a_t, ce_bp=(ce, None))[0], (*saved, ce)


def _sfocal_logits_backward(settings, g, saved, z, t, factor, a_t=None):
    ce_bp = (saved[2], _sparse_backprop(saved, z, t))
    return _sfocal_logits(settings, z, t, factor, a_t, ce_bp=ce_bp)[1](g)


_SPLIT.update({
    _hinge: (_hinge_forward, _hinge_backward),
    _cce_logits: (_cce_logits_forward, _cce_logits_backward),
    _cfocal_logits: (_cfocal_logits_forward, _cfocal_logits_backward),
    _scce_logits: (_scce_logits_forward, _scce_logits_backward),
    _sfocal_logits: (_sfocal_logits_forward, _sfocal_logits_backward),
})


# --------------------------------------------------------------------------
# Loss classes.


def _keras_reduce():
    """Keras's mask getter and reduction (not public API; Keras 3.7-3.15 have both), or None.

    Used by the Loss classes' half-precision path; without them the classes call
    `keras.losses.Loss.__call__` (same results, with its casts).
    """
    try:
        from keras.src.backend import get_keras_mask
        from keras.src.losses.loss import reduce_weighted_values
    except ImportError:  # pragma: no cover - a Keras that moved them
        return None
    return get_keras_mask, reduce_weighted_values


_KERAS_REDUCE = _keras_reduce()


class _Loss(keras.losses.Loss):
    """Base: stores settings, delegates to the function, keeps logits across the dtype cast."""

    _fn = None
    _logits_op = None  # "Sigmoid" / "Softmax" for the cross-entropies

    def __init__(self, reduction="sum_over_batch_size", name=None, dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self._given_dtype = dtype

    def _settings(self):
        return {}

    def call(self, y_true, y_pred):
        return type(self)._fn(y_true, y_pred, **self._settings())

    def __call__(self, y_true, y_pred, sample_weight=None):
        if self._half_input(y_pred):
            return self._call_half(y_true, y_pred, sample_weight)
        return super().__call__(y_true, self._carry_logits(y_pred), sample_weight=sample_weight)

    def _half_input(self, y_pred):
        return (_KERAS_REDUCE is not None and tf.is_tensor(y_pred) and y_pred.dtype in _HALF
                and tf.as_dtype(self.dtype) == tf.float32)

    def _call_half(self, y_true, y_pred, sample_weight):
        """`keras.losses.Loss.__call__` for a float16/bfloat16 y_pred, without its casts.

        Keras casts y_pred and y_true to the loss dtype (float32) first: a pass over
        memory each way for the predictions and their gradient. The loss functions
        compute half-precision inputs in float32 anyway, so here they get y_pred (and
        tensor labels) as they are and cast inside their kernels; the values and
        gradients are the same as after Keras's casts. Masks, sample weights and the
        reduction are Keras's own.
        """
        get_mask, reduce = _KERAS_REDUCE
        in_mask = get_mask(y_pred)
        with tf.name_scope(self.name):
            if not tf.is_tensor(y_true):
                y_true = tf.convert_to_tensor(y_true, dtype=self.dtype)
            with _float32_result():
                losses = self.call(y_true, y_pred)
            out_mask = get_mask(losses)
            if in_mask is not None and out_mask is not None:
                mask = in_mask & out_mask
            else:
                mask = in_mask if in_mask is not None else out_mask
            return reduce(losses, sample_weight=sample_weight, mask=mask, reduction=self.reduction,
                          dtype=self.dtype)

    def _carry_logits(self, y_pred):
        """Casts y_pred to the loss dtype itself, attaching the cast logits (and mask).

        Keras's `Loss.__call__` casts `y_pred` with `ops.convert_to_tensor`, which
        makes a new tensor without `_keras_logits`: under mixed precision the
        stable logits path would be lost. Casting here keeps it, and Keras's cast
        then returns the same tensor.
        """
        if self._logits_op is None or not tf.is_tensor(y_pred):
            return y_pred
        if tf.as_dtype(y_pred.dtype) == tf.as_dtype(self.dtype):
            return y_pred
        logits = _carried_logits(y_pred, self._logits_op)
        if logits is None:
            return y_pred
        mask = getattr(y_pred, "_keras_mask", None)
        out = tf.cast(y_pred, self.dtype)
        try:
            out._keras_logits = tf.cast(logits, self.dtype)
            if mask is not None:
                out._keras_mask = mask
        except AttributeError:  # pragma: no cover - tensor types that refuse attributes
            return y_pred
        return out

    def get_config(self):
        config = super().get_config()
        config["dtype"] = None if self._given_dtype is None else self._dtype_policy.name
        config.update(self._settings())
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        dtype = config.get("dtype")
        if isinstance(dtype, dict):  # a serialized DTypePolicy
            config["dtype"] = keras.dtype_policies.deserialize(dtype)
        valid = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
        unknown = sorted(set(config) - set(valid))
        if unknown:
            raise ValueError(
                f"{cls.__name__}.from_config: unknown setting(s) {unknown} in config {config!r}; "
                f"expected only {valid}. The file may come from another keras_afl version: "
                "remove the unknown keys or upgrade keras_afl."
            )
        return cls(**config)


def _tuple_or_value(v):
    return list(v) if isinstance(v, tuple) else v


@_register
class MeanSquaredError(_Loss):
    """Mean squared error loss. See `keras_afl.losses.mean_squared_error`.

    Args:
        reduction, name, dtype: As `keras.losses.Loss` (see the module docstring).

    Example:
    >>> import keras_afl
    >>> print(round(float(keras_afl.losses.MeanSquaredError()([[0.0, 1.0]], [[1.0, 1.0]])), 4))
    0.5
    """

    _fn = staticmethod(mean_squared_error)

    def __init__(self, reduction="sum_over_batch_size", name="mean_squared_error", dtype=None):
        super().__init__(reduction=reduction, name=name, dtype=dtype)


@_register
class Huber(_Loss):
    """Huber loss. See `keras_afl.losses.huber`.

    Unlike Keras 3's `Huber`, `delta` is saved in the config and survives a
    `.keras` save/reload.

    Args:
        delta: Where the loss turns from quadratic to linear; > 0.
        reduction, name, dtype: As `keras.losses.Loss`.

    Example:
    >>> import keras_afl
    >>> print(round(float(keras_afl.losses.Huber(delta=1.0)([[0.0, 0.0]], [[0.5, 3.0]])), 4))
    1.3125
    """

    _fn = staticmethod(huber)

    def __init__(self, delta=1.0, reduction="sum_over_batch_size", name="huber", dtype=None):
        super().__init__(reduction=reduction, name=name, dtype=dtype)
        self.delta = check_number(delta, "delta", low=0.0, low_inclusive=False)

    def _settings(self):
        return {"delta": self.delta}


@_register
class Hinge(_Loss):
    """Hinge loss. See `keras_afl.losses.hinge` (labels 0/1 or -1/+1, `label_format`).

    Args:
        label_format: `"auto"`, `"binary"` (0 / 1) or `"signed"` (-1 / +1).
        reduction, name, dtype: As `keras.losses.Loss`.

    Example:
    >>> import keras_afl
    >>> print(round(float(keras_afl.losses.Hinge()([[0.0, 1.0]], [[0.5, 0.5]])), 4))
    1.0
    """

    _fn = staticmethod(hinge)

    def __init__(self, label_format="auto", reduction="sum_over_batch_size", name="hinge", dtype=None):
        super().__init__(reduction=reduction, name=name, dtype=dtype)
        if label_format not in _LABEL_FORMATS:
            raise ValueError(
                f"`label_format` must be one of {_LABEL_FORMATS}; received {label_format!r}."
            )
        self.label_format = label_format

    def _settings(self):
        return {"label_format": self.label_format}


@_register
class BinaryCrossentropy(_Loss):
    """Binary cross-entropy loss. See `keras_afl.losses.binary_crossentropy`.

    Args:
        from_logits: Whether `y_pred` holds logits.
        label_smoothing: In [0, 1].
        pos_weight: None, a number >= 0, or one per output (as PyTorch's `BCEWithLogitsLoss`).
        reduction, name, dtype: As `keras.losses.Loss`.

    Example:
    >>> import keras_afl
    >>> bce = keras_afl.losses.BinaryCrossentropy(from_logits=True, pos_weight=2.0)
    >>> print(round(float(bce([[1.0]], [[0.0]])), 4))  # 2 log 2
    1.3863
    """

    _fn = staticmethod(binary_crossentropy)
    _logits_op = "Sigmoid"

    def __init__(self, from_logits=False, label_smoothing=0.0, pos_weight=None,
                 reduction="sum_over_batch_size", name="binary_crossentropy", dtype=None):
        super().__init__(reduction=reduction, name=name, dtype=dtype)
        self.from_logits = _check_bool(from_logits, "from_logits")
        self.label_smoothing = check_number(label_smoothing, "label_smoothing", low=0.0, high=1.0)
        self.pos_weight = _check_weights(pos_weight, "pos_weight")

    def _settings(self):
        return {"from_logits": self.from_logits, "label_smoothing": self.label_smoothing,
                "pos_weight": _tuple_or_value(self.pos_weight)}


@_register
class FocalLoss(_Loss):
    """Binary (multi-label) focal loss. See `keras_afl.losses.focal`.

    `alpha` weights the positives (alpha for y = 1, 1 - alpha for y = 0) and is
    always applied unless None; Keras's `BinaryFocalCrossentropy` applies it
    only with `apply_class_balancing=True`.

    Args:
        gamma: Focusing parameter, >= 0.
        alpha: Weight of the positive class in [0, 1], or None.
        from_logits: Whether `y_pred` holds logits.
        label_smoothing: In [0, 1].
        reduction, name, dtype: As `keras.losses.Loss`.

    Example:
    >>> import keras_afl
    >>> fl = keras_afl.losses.FocalLoss(gamma=2.0, alpha=None, from_logits=True)
    >>> print(round(float(fl([[1.0]], [[0.0]])), 4))
    0.1733
    """

    _fn = staticmethod(focal)
    _logits_op = "Sigmoid"

    def __init__(self, gamma=2.0, alpha=0.25, from_logits=False, label_smoothing=0.0,
                 reduction="sum_over_batch_size", name="focal", dtype=None):
        super().__init__(reduction=reduction, name=name, dtype=dtype)
        self.gamma = check_number(gamma, "gamma", low=0.0)
        self.alpha = check_number(alpha, "alpha", low=0.0, high=1.0, allow_none=True)
        self.from_logits = _check_bool(from_logits, "from_logits")
        self.label_smoothing = check_number(label_smoothing, "label_smoothing", low=0.0, high=1.0)

    def _settings(self):
        return {"gamma": self.gamma, "alpha": self.alpha, "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing}


@_register
class CategoricalCrossentropy(_Loss):
    """Categorical cross-entropy loss. See `keras_afl.losses.categorical_crossentropy`.

    Args:
        from_logits: Whether `y_pred` holds logits.
        label_smoothing: In [0, 1].
        axis: The class axis.
        reduction, name, dtype: As `keras.losses.Loss`.

    Example:
    >>> import keras_afl
    >>> cce = keras_afl.losses.CategoricalCrossentropy(from_logits=True)
    >>> print(round(float(cce([[0.0, 1.0]], [[0.0, 0.0]])), 4))
    0.6931
    """

    _fn = staticmethod(categorical_crossentropy)
    _logits_op = "Softmax"

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1,
                 reduction="sum_over_batch_size", name="categorical_crossentropy", dtype=None):
        super().__init__(reduction=reduction, name=name, dtype=dtype)
        self.from_logits = _check_bool(from_logits, "from_logits")
        self.label_smoothing = check_number(label_smoothing, "label_smoothing", low=0.0, high=1.0)
        self.axis = normalize_axis(axis, None)

    def _settings(self):
        return {"from_logits": self.from_logits, "label_smoothing": self.label_smoothing,
                "axis": self.axis}


@_register
class CategoricalFocalLoss(_Loss):
    """Categorical focal loss. See `keras_afl.losses.categorical_focal`.

    Args:
        gamma: Focusing parameter, >= 0.
        alpha: None, a weight in [0, 1], or one weight per class.
        from_logits: Whether `y_pred` holds logits.
        label_smoothing: In [0, 1].
        axis: The class axis.
        reduction, name, dtype: As `keras.losses.Loss`.

    Example:
    >>> import keras_afl
    >>> cf = keras_afl.losses.CategoricalFocalLoss(gamma=1.0, from_logits=True)
    >>> print(round(float(cf([[0.0, 1.0]], [[0.0, 0.0]])), 4))  # 0.5 * log 2
    0.3466
    """

    _fn = staticmethod(categorical_focal)
    _logits_op = "Softmax"

    def __init__(self, gamma=2.0, alpha=None, from_logits=False, label_smoothing=0.0, axis=-1,
                 reduction="sum_over_batch_size", name="categorical_focal", dtype=None):
        super().__init__(reduction=reduction, name=name, dtype=dtype)
        self.gamma = check_number(gamma, "gamma", low=0.0)
        self.alpha = _check_weights(alpha, "alpha", high=1.0)
        self.from_logits = _check_bool(from_logits, "from_logits")
        self.label_smoothing = check_number(label_smoothing, "label_smoothing", low=0.0, high=1.0)
        self.axis = normalize_axis(axis, None)

    def _settings(self):
        return {"gamma": self.gamma, "alpha": _tuple_or_value(self.alpha),
                "from_logits": self.from_logits, "label_smoothing": self.label_smoothing,
                "axis": self.axis}


@_register
class SparseCategoricalCrossentropy(_Loss):
    """Sparse categorical cross-entropy loss. See `keras_afl.losses.sparse_categorical_crossentropy`.

    Args:
        from_logits: Whether `y_pred` holds logits.
        ignore_class: A class id to leave out of the loss, or None.
        axis: The class axis.
        reduction, name, dtype: As `keras.losses.Loss`.

    Example:
    >>> import keras_afl
    >>> scce = keras_afl.losses.SparseCategoricalCrossentropy(from_logits=True)
    >>> print(round(float(scce([1], [[0.0, 0.0]])), 4))
    0.6931
    """

    _fn = staticmethod(sparse_categorical_crossentropy)
    _logits_op = "Softmax"

    def __init__(self, from_logits=False, ignore_class=None, axis=-1,
                 reduction="sum_over_batch_size", name="sparse_categorical_crossentropy", dtype=None):
        super().__init__(reduction=reduction, name=name, dtype=dtype)
        self.from_logits = _check_bool(from_logits, "from_logits")
        self.ignore_class = _check_ignore_class(ignore_class)
        self.axis = normalize_axis(axis, None)

    def _settings(self):
        return {"from_logits": self.from_logits, "ignore_class": self.ignore_class, "axis": self.axis}


@_register
class SparseCategoricalFocalLoss(_Loss):
    """Sparse categorical focal loss. See `keras_afl.losses.sparse_categorical_focal`.

    Args:
        gamma: Focusing parameter, >= 0.
        alpha: None, a weight in [0, 1], or one weight per class.
        from_logits: Whether `y_pred` holds logits.
        ignore_class: A class id to leave out of the loss, or None.
        axis: The class axis.
        reduction, name, dtype: As `keras.losses.Loss`.

    Example:
    >>> import keras_afl
    >>> sf = keras_afl.losses.SparseCategoricalFocalLoss(gamma=1.0, from_logits=True)
    >>> print(round(float(sf([1], [[0.0, 0.0]])), 4))
    0.3466
    """

    _fn = staticmethod(sparse_categorical_focal)
    _logits_op = "Softmax"

    def __init__(self, gamma=2.0, alpha=None, from_logits=False, ignore_class=None, axis=-1,
                 reduction="sum_over_batch_size", name="sparse_categorical_focal", dtype=None):
        super().__init__(reduction=reduction, name=name, dtype=dtype)
        self.gamma = check_number(gamma, "gamma", low=0.0)
        self.alpha = _check_weights(alpha, "alpha", high=1.0)
        self.from_logits = _check_bool(from_logits, "from_logits")
        self.ignore_class = _check_ignore_class(ignore_class)
        self.axis = normalize_axis(axis, None)

    def _settings(self):
        return {"gamma": self.gamma, "alpha": _tuple_or_value(self.alpha),
                "from_logits": self.from_logits, "ignore_class": self.ignore_class, "axis": self.axis}

