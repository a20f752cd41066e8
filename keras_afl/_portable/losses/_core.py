"""What the portable losses share: settings checks, inputs and shapes, dtypes, label checks, and
`custom_loss`, which runs a loss body through `keras_afl._backend.custom_derivative`.

A loss body is `body(settings, x, *tensors) -> (per-sample loss, grad)` with `grad(upstream) ->
dloss/dx`, as on TensorFlow (`keras_afl.losses._core`): `settings` a tuple of Python values, the
tensors the labels and per-class constants (no gradient). The custom derivative's forward runs
the body for its loss and keeps nothing; its backward runs it again from the inputs and calls
`grad` (as TensorFlow's compiled path does: one pass each way, nothing full-size kept in
between), so the backward is differentiable as written (second derivatives). The softmax
losses have a forward/backward pair of their own (`SPLIT`) that passes the per-sample max and
log-sum-exp from one to the other.
"""

from __future__ import annotations

import contextlib
import functools
import numbers
import os
import warnings

import keras
import numpy as np

from keras_afl import _guard, _keras_compat
from keras_afl._backend import custom_derivative, ops
from keras_afl._grad_utils import check_number, normalize_axis
from keras_afl._portable._inputs import as_float
from keras_afl._portable._logits import carried_logits

def _registrar():
    """Registers the portable classes under keras_afl's names on JAX and PyTorch only.

    On TensorFlow the registered names belong to keras_afl.losses's classes; a TensorFlow process
    that imports this module (the cross-backend tests do) must not take them over."""
    from keras_afl._backend import backend

    if backend() == "tensorflow":
        return lambda obj: obj
    return keras.saving.register_keras_serializable(package="keras_afl")


register = _registrar()
HALF = ("float16", "bfloat16")


# --------------------------------------------------------------------------
# Settings (the same checks and messages as keras_afl.losses._core).


def check_bool(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"`{name}` must be True or False; received {value!r}.")
    return bool(value)


def check_weights(value, name, *, high=None):
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


def check_ignore_class(value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`ignore_class` must be an int or None; received {value!r}.")
    return int(value)


def check_axis(axis):
    """An int `axis` (Keras's argument: the axis a loss reduces); a TypeError otherwise."""
    if isinstance(axis, (tuple, list)):
        raise TypeError(
            f"`axis` must be a single int, the axis the loss averages over; received {axis!r}. "
            "Reshape y_true and y_pred so that those axes are one."
        )
    return normalize_axis(axis, None)


def tuple_or_value(v):
    return list(v) if isinstance(v, tuple) else v


# --------------------------------------------------------------------------
# Inputs, shapes, dtypes.


def dtype_of(x):
    return ops().dtype_name(x)


def compute_dtype(dtype):
    """The dtype a loss is computed in: float32 for float16/bfloat16 inputs, else the input's."""
    return "float32" if dtype in HALF else dtype


def float_input(y_pred, fn_name):
    """y_pred as a float tensor of rank >= 1 (TypeError / ValueError otherwise)."""
    y_pred = as_float(y_pred, "y_pred")
    if len(y_pred.shape) == 0:
        raise ValueError(f"`y_pred` must have rank >= 1; received a scalar in {fn_name}.")
    return y_pred


def label_tensor(y_true):
    """y_true as a tensor in its own dtype (numeric or boolean), or a TypeError."""
    y = y_true if _is_tensor(y_true) else keras.ops.convert_to_tensor(y_true)
    name = keras.backend.standardize_dtype(y.dtype)
    if not (name.startswith(("float", "int", "uint", "bfloat")) or name == "bool"):
        raise TypeError(f"`y_true` must be numeric; received dtype {name}.")
    return y


def _is_tensor(x):
    return keras.ops.is_tensor(x)


def is_floating(x):
    return dtype_of(x) in ("float16", "bfloat16", "float32", "float64")


def match_ranks(y_true, y_pred):
    """Keras's rule: squeeze or expand a trailing axis of size 1 when ranks differ by one."""
    o = ops()
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


def dense_pair(y_true, x, fn_name):
    """Labels checked (numeric) and ranks matched; shapes checked (ValueError naming both)."""
    y_true, x = match_ranks(label_tensor(y_true), x)
    if tuple(y_true.shape) != tuple(x.shape):
        raise ValueError(
            f"{fn_name}: `y_true` and `y_pred` must have the same shape (up to a trailing "
            f"axis of size 1); received y_true.shape={tuple(y_true.shape)} and "
            f"y_pred.shape={tuple(x.shape)}."
        )
    return y_true, x


def axis_last(x, axis):
    """Moves `axis` (non-negative) of x to the end (differentiated by autodiff)."""
    return x if axis == len(x.shape) - 1 else ops().moveaxis(x, axis, -1)


def reduced_axis_last(y, x, axis):
    """Labels y and predictions x with `axis` (the axis the loss averages over) moved last."""
    axis = normalize_axis(check_axis(axis), len(x.shape))
    return axis_last(y, axis), axis_last(x, axis)


def labels(y, x):
    """Labels in x's dtype (inside the loss bodies)."""
    return ops().cast(y, dtype_of(x))


def inv_size(x, axis=-1):
    """1 / x.shape[axis] as a scalar of x's dtype."""
    n = x.shape[axis]
    return ops().scalar(1.0 / n if n else float("nan"), x)


def class_sum(v, keepdims=True):
    return ops().sum(v, axis=-1, keepdims=keepdims)


def class_mean(v):
    return class_sum(v, keepdims=False) * inv_size(v)


def per_class(values, x, name, fn_name):
    """None, a float or a tuple -> None or a tensor broadcasting along the last axis of x."""
    if values is None:
        return None
    if isinstance(values, tuple):
        k = x.shape[-1]
        if len(values) != k:
            raise ValueError(
                f"{fn_name}: `{name}` has {len(values)} values but `y_pred` has {k} entries on "
                f"its class/last axis (y_pred.shape={tuple(x.shape)}); give one value per entry "
                "or a scalar."
            )
        values = list(values)
    return ops().constant(values, compute_dtype(dtype_of(x)), x)


def focal_factor(m, gamma):
    """m ** gamma, with exact shortcuts for the common exponents."""
    if gamma == 1.0:
        return m
    if gamma == 2.0:
        return m * m
    return m**gamma


def get_mask(x):
    """The Keras mask of a tensor, or None (Keras keeps masks of JAX arrays in a table by id;
    private Keras API, read through `keras_afl._keras_compat`)."""
    return _keras_compat.backend_keras_mask(x)


def set_mask(x, mask):
    _keras_compat.set_backend_keras_mask(x, mask)


def public_loss(body):
    """The public loss function of `body` (returning (per-sample loss, y_pred's dtype)): the
    loss cast back to that dtype, with any Keras mask kept on the result."""

    @functools.wraps(body)
    def public(*args, **kwargs):
        loss, dtype = body(*args, **kwargs)
        if dtype_of(loss) == dtype:
            return loss
        mask = get_mask(loss)
        out = ops().cast(loss, dtype)
        if mask is not None:
            set_mask(out, mask)
        return out

    return public


# --------------------------------------------------------------------------
# The custom derivative.

# body -> (forward, backward) where the forward hands per-sample statistics to the backward:
# forward(settings, x, *tensors) -> (loss, saved); backward(settings, g, saved, x, *tensors).
SPLIT = {}


def custom_loss(body, settings, x, *tensors, rule=None):
    """The per-sample loss of body with its analytic gradient (with respect to x only).

    x is cast to float32 first for float16/bfloat16 (autodiff casts the gradient back).
    `rule` (a `LabelRule` / `ClassIdRule` for tensors[0], or None): checked eagerly (an
    `InvalidLabelsError`); while traced (jax.jit, torch.compile), the samples with a bad label
    get a NaN loss and NaN gradients instead.
    """
    o = ops()
    compute = compute_dtype(dtype_of(x))
    x = o.cast(x, compute)
    split = SPLIT.get(body)
    if split:
        def forward(*xs):
            return split[0](settings, *xs)

        def backward(xs, y, saved, g):
            return (split[1](settings, g, saved, *xs),) + (None,) * (len(xs) - 1)
    else:
        def forward(*xs):
            return body(settings, *xs)[0], ()

        def backward(xs, y, saved, g):
            return (body(settings, *xs)[1](g),) + (None,) * (len(xs) - 1)

    forward.__name__ = body.__name__.strip("_")
    factor = None
    if rule is not None and _CHECK_LABELS and dtype_of(tensors[0]) != "bool":
        factor = _check_labels(rule, tensors[0], x)
    if factor is not None:
        # NaN in every entry of a bad sample, and so in its loss and every entry of its gradient
        # (d/dx of x * NaN is NaN whatever the loss's own derivative there, even an exact 0).
        factor = o.cast(factor, compute)
        x = x * factor[..., None]
    loss = custom_derivative(forward, backward)(x, *tensors)
    return loss if factor is None else loss * factor


def _check_labels(rule, y, x):
    """Checks the labels y of a loss on x: raises an `InvalidLabelsError` where Python runs
    between the loss and the update (eagerly; on PyTorch also inside a compiled Keras step, at
    the price of a graph break there); checks concrete labels closed over by a traced function
    once, on the host; returns the NaN factor of the traced labels' bad samples, having recorded
    the verdict for a guarded Keras step (`keras_afl._guard`)."""
    o = ops()
    if not o.is_traced(y):
        if o.is_traced(x):  # JAX: labels closed over by a jax.jit function
            rule.check_on_host(o.to_numpy(y))
        else:
            rule.check_eagerly(y)
        return None
    if _guard.collecting() and keras.backend.backend() == "torch":
        import torch

        # Outside Dynamo's trace (a graph break): the check and its message in plain Python.
        torch.compiler.disable(rule.check_eagerly)(y)
        return None
    _guard.record(rule, y)
    return rule.nan_factor(y)


# --------------------------------------------------------------------------
# Switches (same keys as keras_afl.losses.trace_options).


def _fuse_from_environment():
    value = os.environ.get("KERAS_AFL_FUSE_LOSSES", "1").strip().lower()
    return value not in ("0", "false", "no", "off")


_FUSE = _fuse_from_environment()  # reported only: JAX and PyTorch have no compiled loss kernels
_CHECK_LABELS = True


def trace_options():
    """The loss switches, as a dict (the keys of `keras_afl.losses.trace_options` on TensorFlow).

    `compiled_kernels`: reported (`KERAS_AFL_FUSE_LOSSES`), without effect on JAX and PyTorch,
    where no loss runs as TensorFlow's XLA-compiled kernels (under `jax.jit` XLA compiles the
    whole step anyway); `label_checks`: whether labels are checked (bad labels raise eagerly,
    and give NaN while traced).
    """
    return {"compiled_kernels": bool(_FUSE), "label_checks": bool(_CHECK_LABELS)}


@contextlib.contextmanager
def set_trace_options(*, compiled_kernels=None, label_checks=None):
    """Within the block, losses use these switches (`label_checks` is read when a loss is called
    or, under `jax.jit`, traced; `compiled_kernels` has no effect on JAX and PyTorch).

    Args:
        compiled_kernels: True/False, or None.
        label_checks: True/False, or None (off: bad labels give a number, unchecked).
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


def select(y_pred, from_logits, activation, fn_name, axis=-1):
    """y_pred as a float tensor -> (tensor to use, whether it holds logits).

    The logits replace y_pred when the activation that made it is the loss's own: "sigmoid", or
    "softmax" over `axis` (`keras_afl._portable._logits`; never on JAX).
    """
    y_pred = float_input(y_pred, fn_name)
    logits = carried_logits(y_pred, activation, axis)
    if logits is not None:
        if from_logits:
            warnings.warn(
                f"{fn_name} received `from_logits=True`, but `y_pred` was produced by a "
                "sigmoid or softmax activation and so holds probabilities; using its logits.",
                stacklevel=3,
            )
        return ops().cast(logits, dtype_of(y_pred)), True
    return y_pred, from_logits
