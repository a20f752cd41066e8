"""Binary losses on JAX and PyTorch: hinge, binary cross-entropy and binary focal loss (see
`keras_afl.losses.binary` for the documentation; same formulas, stable forms and derivatives)."""

from __future__ import annotations

import keras
import numpy as np

from keras_afl._backend import ops
from keras_afl._grad_utils import check_number
from keras_afl._portable.losses._base import Loss
from keras_afl._portable.losses._checks import LabelRule
from keras_afl._portable.losses._core import (
    check_axis, check_bool, check_weights, class_mean, class_sum, custom_loss, dense_pair,
    dtype_of, float_input, focal_factor, inv_size, labels, per_class, public_loss,
    reduced_axis_last, register, select, tuple_or_value,
)

_LABEL_FORMATS = ("auto", "binary", "signed")


def _unit_labels(fn_name):
    """The label rule of BCE and the binary focal loss: labels in [0, 1]."""
    return LabelRule(
        fn_name, 0.0, 1.0, "labels in [0, 1] (the probability of the positive class)",
        "map the labels into [0, 1] first, e.g. (y + 1) / 2 for -1/+1 labels; class ids of more "
        "than two classes need a categorical or sparse categorical loss")


_HINGE_RULES = {  # "auto" takes any labels
    "binary": LabelRule("hinge", 0.0, 1.0, "labels in [0, 1] with label_format binary",
                        "for -1/+1 labels pass label_format signed (or auto, decided per batch)"),
    "signed": LabelRule("hinge", -1.0, 1.0, "labels in [-1, 1] with label_format signed",
                        "for 0/1 labels pass label_format binary (or auto, decided per batch)"),
}


def _clip_pair(p, eps):
    """Clipped p (in [eps, 1 - eps]) and 1 - (clipped p), Keras's formula to the bit."""
    o = ops()
    cp = o.minimum(o.maximum(p, o.scalar(eps, p)), o.scalar(1.0 - eps, p))
    return cp, 1.0 - cp


def _smooth_binary(y, ls):
    return y * (1.0 - ls) + 0.5 * ls if ls else y


def _check_label_format(label_format):
    if label_format not in _LABEL_FORMATS:
        raise ValueError(
            f"`label_format` must be one of {_LABEL_FORMATS}; received {label_format!r}."
        )


@register
@public_loss
def hinge(y_true, y_pred, label_format="auto"):
    """Hinge loss for binary classifiers with a margin. See `keras_afl.losses.hinge`.

    Formula: mean(max(0, 1 - t * y_pred)), t = y ("signed"), 2y - 1 ("binary"), or per batch
    ("auto": 2y - 1 when every label is 0 or 1); gradient -t / N where t * y_pred <= 1.
    """
    _check_label_format(label_format)
    y_pred = float_input(y_pred, "hinge")
    y_true, y_pred = dense_pair(y_true, y_pred, "hinge")
    return (custom_loss(_hinge, (label_format,), y_pred, y_true,
                        rule=_HINGE_RULES.get(label_format)), dtype_of(y_pred))


def _hinge(settings, x, y):
    (label_format,) = settings
    o = ops()
    y = labels(y, x)
    if label_format == "signed":
        t = y
    elif label_format == "binary":
        t = 2.0 * y - 1.0
    else:
        # b = 1 for a batch of 0/1 labels, else 0; y (1 + b) - b is 2y - 1 or y itself (exactly).
        b = o.cast(o.all((y == 0.0) | (y == 1.0)), dtype_of(x))
        t = y * (1.0 + b) - b
    m = 1.0 - t * x
    loss = class_mean(o.relu(m))

    def grad(g):
        return (g * -inv_size(x))[..., None] * t * o.cast(m >= 0.0, dtype_of(m))

    return loss, grad


# --------------------------------------------------------------------------
# Binary cross-entropy family.


@register
@public_loss
def binary_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, pos_weight=None,
                        axis=-1):
    """Binary cross-entropy, averaged over `axis`. See `keras_afl.losses.binary_crossentropy`.

    Logits: (1 - y) softplus(z) + w y softplus(-z), each label side in its own terms; gradient
    (1 - y) sigmoid(z) - w y sigmoid(-z). Probabilities clipped as Keras clips them, gradient
    (straight through the clip) (1 - y) / (1 - p) - w y / p; all over N.
    """
    from_logits = check_bool(from_logits, "from_logits")
    ls = check_number(label_smoothing, "label_smoothing", low=0.0, high=1.0)
    pw = check_weights(pos_weight, "pos_weight")
    x, from_logits = select(y_pred, from_logits, "sigmoid", "binary_crossentropy")
    y, x = reduced_axis_last(*dense_pair(y_true, x, "binary_crossentropy"), axis)
    w = per_class(pw, x, "pos_weight", "binary_crossentropy")
    weights = () if w is None else (w,)
    rule = _unit_labels("binary_crossentropy")
    if from_logits:
        return custom_loss(_bce_logits, (ls,), x, y, *weights, rule=rule), dtype_of(x)
    return (custom_loss(_bce_probabilities, (ls, keras.config.epsilon()), x, y, *weights, rule=rule),
            dtype_of(x))


def _logit_parts(z):
    """|z|, e = exp(-|z|), log1p(e) and the side of z as 1.0 / 0.0 (pos: z >= 0; npos = 1 - pos).

    |z| is z (pos - npos), not abs(z): the same number, but its derivative is the side's sign
    also at z = 0, where the side chosen is z >= 0. abs'(0) = 0 (TensorFlow, PyTorch) would make
    the derivative of the backward pass, the second derivative, 0 there instead of its exact
    value (e.g. sigmoid'(0) / N for BCE) -- at zero-initialised logits, where a gradient
    penalty starts.
    """
    o = ops()
    pos = o.cast(z >= 0.0, dtype_of(z))
    npos = 1.0 - pos
    a = z * (pos - npos)
    e = o.exp(-a)
    return a, e, o.log1p(e), pos, npos


def _bce_logits(settings, z, y, w=None):
    # CE = (1 - y) softplus(z) + w y softplus(-z) = u |z| + (1 + (w - 1) y) log1p(e), with u, v the
    # weights of the sides z is against and for; dCE/dz = sign(z) (u sigmoid(|z|) - v sigmoid(-|z|)).
    (ls,) = settings
    y = _smooth_binary(labels(y, z), ls)
    ny = 1.0 - y
    wy = y if w is None else w * y
    a, e, l1, pos, npos = _logit_parts(z)
    u = pos * ny + npos * wy
    loss = class_mean(a * u + (l1 if w is None else (ny + wy) * l1))

    def grad(g):
        r = 1.0 / (1.0 + e)
        d = (pos - npos) * (r * u - (e * r) * (pos * wy + npos * ny))
        return (g * inv_size(z))[..., None] * d

    return loss, grad


def _bce_probabilities(settings, p, y, w=None):
    ls, eps = settings
    o = ops()
    y = _smooth_binary(labels(y, p), ls)
    wy = y if w is None else w * y
    ny = 1.0 - y
    cp, cq = _clip_pair(p, eps)
    loss = class_mean(-(wy * o.log(cp) + ny * o.log(cq)))

    def grad(g):
        return (g * inv_size(p))[..., None] * (ny / cq - wy / cp)

    return loss, grad


@register
@public_loss
def focal(y_true, y_pred, gamma=2.0, alpha=0.25, from_logits=False, label_smoothing=0.0,
          apply_class_balancing=True, axis=-1):
    """Binary (multi-label) focal loss, averaged over `axis`. See `keras_afl.losses.focal`.

    loss = mean(alpha_t * m**gamma * CE), m = 1 - p_t, each label side in its own terms; the
    gradient is computed without m**(gamma - 1), finite for every gamma >= 0.
    """
    gamma = check_number(gamma, "gamma", low=0.0)
    alpha = check_number(alpha, "alpha", low=0.0, high=1.0, allow_none=True)
    if not check_bool(apply_class_balancing, "apply_class_balancing"):
        alpha = None
    from_logits = check_bool(from_logits, "from_logits")
    ls = check_number(label_smoothing, "label_smoothing", low=0.0, high=1.0)
    x, from_logits = select(y_pred, from_logits, "sigmoid", "focal")
    y, x = reduced_axis_last(*dense_pair(y_true, x, "focal"), axis)
    if from_logits:
        return custom_loss(_focal_logits, (gamma, alpha, ls), x, y, rule=_unit_labels("focal")), dtype_of(x)
    return (custom_loss(_focal_probabilities, (gamma, alpha, ls, keras.config.epsilon()), x, y,
                        rule=_unit_labels("focal")), dtype_of(x))


def _focal_scale(y, ny, x, alpha):
    """alpha_t / N = (alpha y + (1 - alpha)(1 - y)) / N, from the labels only (1 / N for None)."""
    n = x.shape[-1]
    inv_n = inv_size(x)
    if alpha is None:
        return inv_n
    o = ops()
    return y * o.scalar(alpha / n, x) + ny * o.scalar((1.0 - alpha) / n, x)


def _focal_logits(settings, z, y):
    gamma, alpha, ls = settings
    o = ops()
    y = _smooth_binary(labels(y, z), ls)
    ny = 1.0 - y
    scale = _focal_scale(y, ny, z, alpha)
    # CE = u |z| + log1p(e), m = u r + v s, p - y = sign(z) (u r - v s), p q = r s, with u, v the
    # label weights of the sides z is against and for, r = sigmoid(|z|), s = sigmoid(-|z|).
    a, e, l1, pos, npos = _logit_parts(z)
    u = pos * ny + npos * y
    v = pos * y + npos * ny
    ce = a * u + l1
    r = 1.0 / (1.0 + e)
    s = e * r
    if gamma == 0.0:
        f = scale
    else:
        m = r * u + s * v
        f = scale * focal_factor(m, gamma)
    loss = class_sum(f * ce, keepdims=False)

    def grad(g):
        d = (pos - npos) * (r * u - s * v)
        if gamma != 0.0:  # + gamma (1 - 2y) (p q / m) CE
            # p q / m = r s / (u r + v s) = 1 / (u (1 + exp|z|) + v (1 + e)): no division by m,
            # which underflows (TensorFlow's r s / max(m, tiny) has the same value wherever the
            # term counts, f = alpha_t m**gamma / N being 0 where m is), and a denominator >= 1
            # whose square does not underflow, so that JAX's derivative of the division, which
            # squares it, stays finite (second derivatives for |z| up to 1e4).
            big = o.scalar(float(np.log(np.finfo(dtype_of(z)).max)) - 2.0, z)
            ratio = 1.0 / (u * (1.0 + o.exp(o.minimum(a, big))) + v * (1.0 + e))
            d = d + (gamma * (ny - y)) * ratio * ce
        return g[..., None] * f * d

    return loss, grad


def _focal_probabilities(settings, p, y):
    gamma, alpha, ls, eps = settings
    o = ops()
    y = _smooth_binary(labels(y, p), ls)
    ny = 1.0 - y
    scale = _focal_scale(y, ny, p, alpha)
    cp, cq = _clip_pair(p, eps)
    ce = -(y * o.log(cp) + ny * o.log(cq))
    if gamma == 0.0:
        f = scale
    else:
        m = y * cq + ny * cp  # y (1 - p) + (1 - y) p, >= eps
        f = scale * focal_factor(m, gamma)
    loss = class_sum(f * ce, keepdims=False)

    def grad(g):
        d = ny / cq - y / cp
        if gamma != 0.0:  # + gamma (1 - 2y) CE / m
            d = d + (gamma * (ny - y)) * ce / m
        return g[..., None] * f * d

    return loss, grad


# --------------------------------------------------------------------------
# The Loss classes (the TensorFlow classes' names, arguments and configs).


@register
class Hinge(Loss):
    """Hinge loss. See `keras_afl.losses.Hinge`."""

    _fn = staticmethod(hinge)

    def __init__(self, label_format="auto", reduction="sum_over_batch_size", name="hinge", dtype=None):
        super().__init__(reduction=reduction, name=name, dtype=dtype)
        _check_label_format(label_format)
        self.label_format = label_format

    def _settings(self):
        return {"label_format": self.label_format}


@register
class BinaryCrossentropy(Loss):
    """Binary cross-entropy loss. See `keras_afl.losses.BinaryCrossentropy`."""

    _fn = staticmethod(binary_crossentropy)
    _logits_activation = "sigmoid"
    _unsaved_defaults = {"axis": -1}

    def __init__(self, from_logits=False, label_smoothing=0.0, pos_weight=None,
                 reduction="sum_over_batch_size", name="binary_crossentropy", dtype=None, *,
                 axis=-1):
        super().__init__(reduction=reduction, name=name, dtype=dtype)
        self.from_logits = check_bool(from_logits, "from_logits")
        self.label_smoothing = check_number(label_smoothing, "label_smoothing", low=0.0, high=1.0)
        self.pos_weight = check_weights(pos_weight, "pos_weight")
        self.axis = check_axis(axis)

    def _settings(self):
        return {"from_logits": self.from_logits, "label_smoothing": self.label_smoothing,
                "pos_weight": tuple_or_value(self.pos_weight), "axis": self.axis}


@register
class FocalLoss(Loss):
    """Binary (multi-label) focal loss. See `keras_afl.losses.FocalLoss`."""

    _fn = staticmethod(focal)
    _logits_activation = "sigmoid"
    _unsaved_defaults = {"apply_class_balancing": True, "axis": -1}

    def __init__(self, gamma=2.0, alpha=0.25, from_logits=False, label_smoothing=0.0,
                 reduction="sum_over_batch_size", name="focal", dtype=None, *,
                 apply_class_balancing=True, axis=-1):
        super().__init__(reduction=reduction, name=name, dtype=dtype)
        self.gamma = check_number(gamma, "gamma", low=0.0)
        self.alpha = check_number(alpha, "alpha", low=0.0, high=1.0, allow_none=True)
        self.from_logits = check_bool(from_logits, "from_logits")
        self.label_smoothing = check_number(label_smoothing, "label_smoothing", low=0.0, high=1.0)
        self.apply_class_balancing = check_bool(apply_class_balancing, "apply_class_balancing")
        self.axis = check_axis(axis)

    def _settings(self):
        return {"gamma": self.gamma, "alpha": self.alpha, "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing,
                "apply_class_balancing": self.apply_class_balancing, "axis": self.axis}
