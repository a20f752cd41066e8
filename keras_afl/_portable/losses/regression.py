"""Regression losses on JAX and PyTorch: mean squared error and Huber (see
`keras_afl.losses.regression` for the documentation; same formulas and derivatives)."""

from __future__ import annotations

import keras

from keras_afl._backend import ops
from keras_afl._grad_utils import check_number
from keras_afl._portable._inputs import as_float
from keras_afl._portable.losses._base import Loss
from keras_afl._portable.losses._core import (
    class_mean, custom_loss, dense_pair, dtype_of, inv_size, label_tensor, labels,
    public_loss, register,
)


def _regression_inputs(y_true, y_pred):
    """(y_true, y_pred as a float tensor); an integer y_pred taken as Keras takes it (the labels
    cast to its integer dtype, a float32 result); booleans refused."""
    dtype = getattr(y_pred, "dtype", None)
    try:
        integer = dtype is not None and keras.backend.standardize_dtype(dtype).startswith(("int", "uint"))
    except (TypeError, ValueError):
        integer = False
    if not integer:
        return y_true, as_float(y_pred, "y_pred")
    o = ops()
    y_pred = keras.ops.convert_to_tensor(y_pred)
    out = keras.backend.result_type(dtype_of(y_pred), "float32")
    t = label_tensor(y_true)
    if dtype_of(t) != "bool":
        y_true = o.cast(o.cast(t, dtype_of(y_pred)), out)
    return y_true, o.cast(y_pred, out)


@register
@public_loss
def mean_squared_error(y_true, y_pred):
    """Mean squared error over the last axis. See `keras_afl.losses.mean_squared_error`.

    Formula: mean((y_pred - y_true)**2, axis=-1); gradient 2 (y_pred - y_true) / N.
    """
    y_true, y_pred = dense_pair(*_regression_inputs(y_true, y_pred), "mean_squared_error")
    return custom_loss(_mse, (), y_pred, y_true), dtype_of(y_pred)


def _mse(settings, x, y):
    y = labels(y, x)
    d = x - y
    loss = class_mean(d * d)

    def grad(g):
        return (g * (2.0 * inv_size(x)))[..., None] * d

    return loss, grad


@register
@public_loss
def huber(y_true, y_pred, delta=1.0):
    """Huber loss. See `keras_afl.losses.huber`.

    Formula: e = y_pred - y_true, c = min(|e|, delta), mean(0.5 c**2 + delta (|e| - c));
    gradient clip(e, -delta, delta) / N.
    """
    delta = check_number(delta, "delta", low=0.0, low_inclusive=False)
    y_true, y_pred = dense_pair(*_regression_inputs(y_true, y_pred), "huber")
    return custom_loss(_huber, (delta,), y_pred, y_true), dtype_of(y_pred)


def _huber(settings, x, y):
    (delta,) = settings
    o = ops()
    y = labels(y, x)
    d_t = o.scalar(delta, x)
    e = x - y
    a = o.abs(e)
    c = o.minimum(a, d_t)
    loss = class_mean(0.5 * (c * c) + d_t * (a - c))

    def grad(g):
        return (g * inv_size(x))[..., None] * o.minimum(o.maximum(e, -d_t), d_t)

    return loss, grad


@register
class MeanSquaredError(Loss):
    """Mean squared error loss. See `keras_afl.losses.MeanSquaredError`."""

    _fn = staticmethod(mean_squared_error)

    def __init__(self, reduction="sum_over_batch_size", name="mean_squared_error", dtype=None):
        super().__init__(reduction=reduction, name=name, dtype=dtype)


@register
class Huber(Loss):
    """Huber loss (`delta` saved in the config). See `keras_afl.losses.Huber`."""

    _fn = staticmethod(huber)

    def __init__(self, delta=1.0, reduction="sum_over_batch_size", name="huber", dtype=None):
        super().__init__(reduction=reduction, name=name, dtype=dtype)
        self.delta = check_number(delta, "delta", low=0.0, low_inclusive=False)

    def _settings(self):
        return {"delta": self.delta}
