"""Regression losses: mean squared error and Huber, written once for every backend."""

from __future__ import annotations

import keras

from keras_afl._grad_utils import as_float, check_number
from keras_afl.losses._base import _Loss
from keras_afl.losses._core import (
    _class_mean, _custom_loss, _dense_pair, _done, _dtype, _inv_size, _label_tensor, _labels,
    _public_loss, _register, o,
)

# What keras_afl.losses exports from this module (its __init__ reads this list).
__all__ = ["mean_squared_error", "huber", "MeanSquaredError", "Huber"]


def _regression_inputs(y_true, y_pred):
    """(y_true, y_pred as a float tensor); an integer y_pred taken as Keras takes it.

    Keras's regression losses accept integer predictions: the labels are cast to
    y_pred's dtype (so float labels are truncated, as there) and the result has
    Keras's dtype, result_type(y_pred.dtype, "float32") = float32. The arithmetic
    is floating point here (Keras squares in the integer dtype, where errors of
    12 or more wrap around in int8). Booleans are refused, as by Keras.
    """
    dtype = getattr(y_pred, "dtype", None)
    try:
        integer = dtype is not None and keras.backend.standardize_dtype(dtype).startswith(
            ("int", "uint"))
    except (TypeError, ValueError):
        integer = False
    if not integer:
        return y_true, as_float(y_pred, "y_pred")
    y_pred = keras.ops.convert_to_tensor(y_pred)
    out = keras.backend.result_type(_dtype(y_pred), "float32")
    labels = _label_tensor(y_true)
    if _dtype(labels) != "bool":
        y_true = o.cast(o.cast(labels, _dtype(y_pred)), out)
    return y_true, o.cast(y_pred, out)


@_register
@_public_loss
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
        y_pred: Predictions, floating point, or integer as Keras takes them (the
            labels cast to that integer dtype first; a float32 result).

    Returns:
        Tensor of shape `y_pred.shape[:-1]`, dtype of `y_pred`.

    Example:
    >>> import keras_afl
    >>> loss = keras_afl.losses.mean_squared_error([[0.0, 1.0]], [[1.0, 1.0]])
    >>> print(round(float(loss[0]), 4))
    0.5
    """
    y_true, y_pred = _dense_pair(*_regression_inputs(y_true, y_pred), "mean_squared_error")
    dtype = _dtype(y_pred)
    return _done(_custom_loss(_mse, (), y_pred, y_true), dtype)


def _mse(settings, x, y):
    y = _labels(y, x)
    d = x - y
    loss = _class_mean(o.square(d))

    def grad(g):
        return (g * (2.0 * _inv_size(x)))[..., None] * d

    return loss, grad


@_register
@_public_loss
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
        y_pred: Predictions, floating point or integer (computed in float32, where
            Keras's integer arithmetic rounds 0.5 and `delta` to integers).
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
    y_true, y_pred = _dense_pair(*_regression_inputs(y_true, y_pred), "huber")
    dtype = _dtype(y_pred)
    return _done(_custom_loss(_huber, (delta,), y_pred, y_true), dtype)


def _huber(settings, x, y):
    (delta,) = settings
    y = _labels(y, x)
    d_t = o.scalar(delta, x)
    e = x - y
    c = o.clip(e, -d_t, d_t)  # e where |e| <= delta, else +-delta: the gradient's numerator
    h = 0.5 * c
    # c (e - c/2): e**2 / 2 where |e| <= delta, else delta (|e| - delta/2); the select picks
    # between two spellings of it, as Keras's Huber ends in a select: under jax.jit on a CPU XLA
    # then computes the elements in one fused loop and reduces them, where a product alone went
    # into a YNNPACK reduction that kept e in memory (4 fusions, as Keras's, not 5; 0.40-0.86x
    # the time, same-run A/B).
    loss = _class_mean(o.where(c == e, h * e, c * (e - h)))

    def grad(g):
        return (g * _inv_size(x))[..., None] * c

    return loss, grad


# --------------------------------------------------------------------------
# The Loss classes.


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
