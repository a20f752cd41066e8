"""The machinery every loss shares, written once over the active backend's operations
(`keras_afl._backend.ops`): settings and input checks, dtypes, class-axis sums, the logits
shortcut, the loss switches, and `_custom_loss`, which hands a loss body to the backend's runner
(`keras_afl._backend.run_loss`: TensorFlow's plain / XLA-compiled pair, or the custom derivative
of JAX and PyTorch, each with its label policy).

A loss body is `body(settings, x, *tensors) -> (per-sample loss, grad)` with `grad(upstream) ->
dloss/dx`: `settings` a tuple of Python values (hyper-parameters, closed over), `tensors` the
labels and per-class constants (no gradient). The forward pass and its derivative stand side by
side in the body; the family modules (`regression`, `binary`, `categorical`, `sparse`) write
theirs once for every backend.
"""

from __future__ import annotations

import contextlib
import functools
import numbers
import warnings

import keras
import numpy as np

from keras_afl import _backend, _keras_compat
from keras_afl._backend import ops
from keras_afl._grad_utils import as_float, check_number, normalize_axis
from keras_afl._logits import carried_logits

_register = keras.saving.register_keras_serializable(package="keras_afl")
_HALF = ("float16", "bfloat16")
o = ops()  # the backend is fixed for the life of the process


# --------------------------------------------------------------------------
# Settings.


def _check_bool(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"`{name}` must be True or False; received {value!r}.")
    return bool(value)


def _check_weights(value, name, *, high=None):
    """None, a number, or a sequence of numbers (each in [0, high]) -> None, float or tuple."""
    if value is None:
        return None
    if hasattr(value, "shape") and not isinstance(value, (list, tuple)):  # a tensor or an array
        value = np.asarray(keras.ops.convert_to_numpy(value))
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


def _check_axis(axis):
    """An int `axis` (Keras's argument: the axis a loss reduces); a TypeError otherwise."""
    if isinstance(axis, (tuple, list)):
        raise TypeError(
            f"`axis` must be a single int, the axis the loss averages over; received {axis!r}. "
            "Reshape y_true and y_pred so that those axes are one."
        )
    return normalize_axis(axis, None)


def _tuple_or_value(v):
    return list(v) if isinstance(v, tuple) else v


# --------------------------------------------------------------------------
# Inputs, shapes, dtypes.


def _dtype(x):
    """x's dtype name ("float32", ...)."""
    return o.dtype_name(x)


def _compute_dtype(dtype):
    """The dtype a loss is computed in: float32 for float16/bfloat16 inputs, else the input's."""
    return "float32" if dtype in _HALF else dtype


def _float_input(y_pred, fn_name):
    """y_pred as a float tensor of rank >= 1 (TypeError / ValueError otherwise)."""
    y_pred = as_float(y_pred, "y_pred")
    if len(y_pred.shape) == 0:
        raise ValueError(f"`y_pred` must have rank >= 1; received a scalar in {fn_name}.")
    return y_pred


def _label_tensor(y_true):
    """y_true as a tensor in its own dtype (numeric or boolean), or a TypeError."""
    y = y_true if keras.ops.is_tensor(y_true) else keras.ops.convert_to_tensor(y_true)
    name = keras.backend.standardize_dtype(y.dtype)
    if not (name.startswith(("float", "int", "uint", "bfloat")) or name == "bool"):
        raise TypeError(f"`y_true` must be numeric; received dtype {name}.")
    return y


def _match_ranks(y_true, y_pred):
    """Keras's rule: squeeze or expand a trailing axis of size 1 when ranks differ by one."""
    rt, rp = len(y_true.shape), len(y_pred.shape)
    if rt == rp + 1 and y_true.shape[-1] == 1:
        if rp == 1:
            y_pred = o.expand_dims(y_pred, -1)
        else:
            y_true = o.squeeze(y_true, -1)
    elif rp == rt + 1 and y_pred.shape[-1] == 1:
        if rt == 1:
            y_true = o.expand_dims(y_true, -1)
        else:
            y_pred = o.squeeze(y_pred, -1)
    return y_true, y_pred


def _dense_pair(y_true, x, fn_name):
    """Labels checked (numeric) and ranks matched; shapes checked (ValueError naming both).

    The labels keep their dtype: each loss body casts them to the computation dtype itself
    (`_labels`), so that TensorFlow's compiled path reads them as they are.
    """
    y_true, x = _match_ranks(_label_tensor(y_true), x)
    shapes = tuple(y_true.shape), tuple(x.shape)
    if len(shapes[0]) != len(shapes[1]) or any(
            a is not None and b is not None and a != b for a, b in zip(*shapes)):
        raise ValueError(
            f"{fn_name}: `y_true` and `y_pred` must have the same shape (up to a trailing "
            f"axis of size 1); received y_true.shape={shapes[0]} and y_pred.shape={shapes[1]}."
        )
    return y_true, x


def _labels(y, x):
    """Labels in x's dtype (inside the loss bodies)."""
    return y if _dtype(y) == _dtype(x) else o.cast(y, _dtype(x))


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
        if _dtype(loss) == dtype:
            return loss
        mask = _keras_compat.backend_keras_mask(loss)
        out = o.cast(loss, dtype)
        if mask is not None:
            _keras_compat.set_backend_keras_mask(out, mask)
        return out

    public.in_compute_dtype = body
    return public


def _inv_size(x, axis=-1):
    """1 / x.shape[axis] as a scalar of x's dtype (static when known)."""
    return o.inv_size(x, axis)


def _class_sum(v, keepdims=True):
    """sum(v, axis=-1) (on TensorFlow's compiled path a product with ones: `ops.class_sum`)."""
    return o.class_sum(v, keepdims)


def _class_mean(v):
    return o.class_mean(v)


def _is_last(axis, x):
    rank = len(x.shape)
    return axis == -1 or axis == rank - 1


def _class_axis_last(x, axis):
    """Moves `axis` of x to the end (differentiated by autodiff)."""
    return x if _is_last(axis, x) else o.moveaxis(x, axis, -1)


def _reduced_axis_last(y, x, axis):
    """Labels y and predictions x with `axis` (the axis the loss averages over) moved last."""
    axis = normalize_axis(_check_axis(axis), len(x.shape))
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
        values = list(values)
    return o.constant(values, _compute_dtype(_dtype(x)), x)


def _focal_factor(m, gamma):
    """m ** gamma, with exact shortcuts for the common exponents. For gamma < 1, m is at least
    the dtype's smallest normal number: m ** gamma's derivative, gamma m ** (gamma - 1), is
    infinite at m = 0 (where m underflows, for a confidently right prediction), which made the
    second derivatives NaN there; the value changes only where m is subnormal or 0."""
    if gamma == 1.0:
        return m
    if gamma == 2.0:
        return o.square(m)
    if gamma < 1.0:
        name = _dtype(m)
        tiny = np.finfo(np.float32 if name == "bfloat16" else name).tiny
        m = o.maximum(m, o.scalar(float(tiny), m))
    return o.pow(m, gamma)


def _flag_labels(loss, y):
    """A loss body's elements (before the class-axis sum), with bad labels flagged where the
    backend's runner asks for it (TensorFlow's graph-mode assertion); unchanged otherwise."""
    return o.flag_labels(loss, y)


def _flag_samples(loss, bad):
    """A per-sample loss with the samples `bad` flagged (as `_flag_labels`; the sparse ids)."""
    return o.flag_samples(loss, bad)


def _select(y_pred, from_logits, activation, fn_name, axis=-1):
    """y_pred as a float tensor -> (tensor to use, whether it holds logits).

    The logits replace y_pred when the activation that made it is the loss's own: "sigmoid", or
    "softmax" over `axis` (`keras_afl._logits`).
    """
    y_pred = _float_input(y_pred, fn_name)
    logits = carried_logits(y_pred, activation, axis)
    if logits is not None:
        if from_logits:
            warnings.warn(
                f"{fn_name} received `from_logits=True`, but `y_pred` was produced by a "
                "sigmoid or softmax activation and so holds probabilities; using its logits.",
                stacklevel=3,
            )
        return o.cast(logits, _dtype(y_pred)), True
    return y_pred, from_logits


# --------------------------------------------------------------------------
# The custom gradient.

# body -> (forward, backward) where the forward hands per-sample statistics to the backward
# (the softmax losses): forward(settings, x, *tensors) -> (loss, saved); backward(settings,
# upstream, saved, x, *tensors) -> dloss/dx. Each family module fills it in below its bodies.
_SPLIT = {}
# body -> such a pair used only by TensorFlow's compiled kernels (hinge's "auto": both readings
# of the labels in the one pass that tests them); elsewhere the body itself is faster.
_KERNEL_SPLIT = {}


def _custom_loss(body, settings, x, *tensors, like=None, rule=None):
    """The per-sample loss of body with its analytic gradient (with respect to x only).

    `like`: the prediction before any flattening (TensorFlow's size rule for the compiled path).
    `rule`: a label rule for tensors[0] (`_checks.LabelRule`, `ClassIdRule`), or None.
    """
    return _backend.run_loss(body, settings, x, tensors, like=like, rule=rule,
                             split=_SPLIT.get(body), kernel_split=_KERNEL_SPLIT.get(body))


# --------------------------------------------------------------------------
# Switches.


def trace_options():
    """The switches a loss reads when it is called or traced, as a dict.

    `compiled_kernels`: whether, on TensorFlow, float32 losses from their measured crossover size
    up run as two XLA-compiled kernels (off with `KERAS_AFL_FUSE_LOSSES=0`; no effect on JAX and
    PyTorch, where no loss has compiled kernels of its own: under `jax.jit` XLA compiles the
    whole step); `label_checks`: whether labels are checked (see `InvalidLabelsError`).

    Example:
    >>> import keras_afl
    >>> keras_afl.losses.trace_options()["label_checks"]
    True
    """
    return {name: bool(_backend.option(name)) for name in ("compiled_kernels", "label_checks")}


@contextlib.contextmanager
def set_trace_options(*, compiled_kernels=None, label_checks=None):
    """Within the block (this thread or task only), losses use these switches.

    A loss reads them when it is called or traced (the first call of a `tf.function`, `fit`,
    `jax.jit`): a compiled function traced inside the block keeps what it was traced with. For
    measurements and for devices without XLA. None leaves a switch as it is.

    Args:
        compiled_kernels: True/False, or None.
        label_checks: True/False, or None (off: bad labels give a number, unchecked).

    Example:
    >>> import keras_afl
    >>> with keras_afl.losses.set_trace_options(label_checks=False):
    ...     keras_afl.losses.trace_options()["label_checks"]
    False
    """
    for name, value in (("compiled_kernels", compiled_kernels), ("label_checks", label_checks)):
        if value is not None and not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"`{name}` must be True, False or None; received {value!r}.")
    with _backend.options_set(compiled_kernels=compiled_kernels, label_checks=label_checks):
        yield
