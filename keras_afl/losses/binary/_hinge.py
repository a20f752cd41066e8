"""Hinge loss: binary labels (0/1 or -1/+1) and raw scores with a margin."""

from __future__ import annotations

from keras_afl.losses._base import _Loss
from keras_afl.losses._checks import LabelRule
from keras_afl.losses._core import (
    _KERNEL_SPLIT, _class_mean, _custom_loss, _dense_pair, _done, _dtype, _flag_labels, _float_input,
    _inv_size, _labels, _public_loss, _register, o,
)

# What keras_afl.losses exports from this module (its __init__ reads this list).
__all__ = ["hinge", "Hinge"]

_LABEL_FORMATS = ("auto", "binary", "signed")


_HINGE_RULES = {
    # "auto": either format's labels, so anything outside [-1, 1] (or NaN) is bad in both.
    "auto": LabelRule("hinge", -1.0, 1.0, "labels in [-1, 1] (0/1 or -1/+1) with label_format auto",
                      "map the labels to 0/1 or -1/+1 first (a class id of more than two classes "
                      "needs a categorical loss), and state label_format binary or signed"),
    "binary": LabelRule("hinge", 0.0, 1.0, "labels in [0, 1] with label_format binary",
                        "for -1/+1 labels pass label_format signed (or auto, decided per batch)"),
    "signed": LabelRule("hinge", -1.0, 1.0, "labels in [-1, 1] with label_format signed",
                        "for 0/1 labels pass label_format binary (or auto, decided per batch)"),
}


# --------------------------------------------------------------------------
# Hinge.


@_register
@_public_loss
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
    the format to skip the check (with `"auto"`, a batch mixing -1, 0 and 1 is
    used as is). Every format refuses labels that belong to neither: outside
    [-1, 1] (or NaN) with `"auto"` and `"signed"`, outside [0, 1] with
    `"binary"` (an `InvalidLabelsError`).

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
    y_pred = _float_input(y_pred, "hinge")
    y_true, y_pred = _dense_pair(y_true, y_pred, "hinge")
    dtype = _dtype(y_pred)
    return _done(_custom_loss(_hinge, (label_format,), y_pred, y_true,
                              rule=_HINGE_RULES.get(label_format)), dtype)


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
            b = o.cast(o.all((y == 0.0) | (y == 1.0)), _dtype(x))
        t = y * (1.0 + b) - b
    m = 1.0 - t * x
    loss = _class_mean(_flag_labels(o.relu(m), y))

    def grad(g):
        return (g * -_inv_size(x))[..., None] * t * o.cast(m >= 0.0, _dtype(m))

    return loss, grad


def _hinge_forward(settings, x, y):
    """The compiled forward: with "auto", both readings of the labels in the same pass as
    the batch's 0/1 test (no pass of its own), and b saved for the backward."""
    if settings[0] != "auto":
        return _hinge(settings, x, y)[0], ()
    y = _labels(y, x)
    b = o.all((y == 0.0) | (y == 1.0))
    as_binary = _class_mean(o.relu(1.0 - (y * 2.0 - 1.0) * x))
    as_signed = _class_mean(o.relu(1.0 - y * x))
    return o.where(b, as_binary, as_signed), (o.cast(b, _dtype(x)),)


def _hinge_backward(settings, g, saved, x, y):
    return _hinge(settings, x, y, *saved)[1](g)


_KERNEL_SPLIT[_hinge] = (_hinge_forward, _hinge_backward)


# --------------------------------------------------------------------------
# The Loss class.


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
