"""Binary losses on JAX and PyTorch: hinge, binary cross-entropy and binary focal loss (see
`keras_afl.losses.binary` for the documentation; same formulas, stable forms and derivatives),
with ignored entries (`ignore_class`) and normalisation by positives (`normalize`)."""

from __future__ import annotations

import keras
import numpy as np

from keras_afl._backend import ops
from keras_afl._grad_utils import check_number
from keras_afl._portable.losses import _positives
from keras_afl._portable.losses._base import Loss
from keras_afl._portable.losses._checks import LabelRule
from keras_afl._portable.losses._core import (
    check_axis, check_bool, check_weights, class_mean, class_sum, custom_loss, dense_pair,
    dtype_of, float_input, focal_factor, inv_size, labels, per_class, public_loss,
    reduced_axis_last, register, select, set_mask, tuple_or_value,
)

_LABEL_FORMATS = ("auto", "binary", "signed")


def _unit_labels(fn_name, ignore=None):
    """The label rule of BCE and the binary focal loss: labels in [0, 1], or the loss's
    `ignore_class`."""
    return LabelRule(
        fn_name, 0.0, 1.0, "labels in [0, 1] (the probability of the positive class)",
        "map the labels into [0, 1] first, e.g. (y + 1) / 2 for -1/+1 labels, and mark entries "
        "to leave out with ignore_class; class ids of more than two classes need a categorical "
        "or sparse categorical loss", None if ignore is None else float(ignore))


def _entry_scale(y0, x, ignore, total):
    """(labels with ignored entries set to 0, the weight of each entry in its row's value).

    The weight is 1/N (the mean over the axis), or 1 with `total` (the sum, for the
    normalisation by positives); with `ignore`, 0 for an ignored entry and, for the mean,
    1/max(1, entries kept) for the others. Only called with `ignore` or `total` set.
    """
    o = ops()
    if ignore is None:
        return y0, o.scalar(1.0, x)
    keep = o.cast(y0 != ignore, dtype_of(x))
    y0 = y0 * keep  # an ignored label reads as 0, so no formula sees it
    if total:
        return y0, keep
    return y0, keep / o.maximum(class_sum(keep), o.scalar(1.0, x))


def _finish_binary(loss, y, x, ignore, total):
    """The row losses with, for `ignore`, a Keras mask leaving out rows with every entry
    ignored (so that Keras's mean counts the others only), and with `total` the number of
    positive (label > 0), non-ignored entries of each row, for the normalisation."""
    o = ops()
    yc = None
    if ignore is not None or total:
        yc = o.cast(y, dtype_of(x))
    keep = None if ignore is None else yc != ignore
    if keep is not None:
        set_mask(loss, o.max(o.cast(keep, "int32"), axis=-1) > 0)
    if not total:
        return loss, None
    positive = yc > 0.0 if keep is None else (yc > 0.0) & keep
    return loss, o.sum(o.cast(positive, dtype_of(x)), axis=-1)


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
                        axis=-1, ignore_class=None):
    """Binary cross-entropy, averaged over `axis`. See `keras_afl.losses.binary_crossentropy`.

    Logits: (1 - y) softplus(z) + w y softplus(-z), each label side in its own terms; gradient
    (1 - y) sigmoid(z) - w y sigmoid(-z). Probabilities clipped as Keras clips them, gradient
    (straight through the clip) (1 - y) / (1 - p) - w y / p; all over N. `ignore_class` (a label
    outside [0, 1]): those entries add nothing, each row is the mean over its other entries,
    and a row with every entry ignored is 0 and masked out of Keras's average.
    """
    loss, dtype, _ = _bce(y_true, y_pred, from_logits, label_smoothing, pos_weight, axis,
                          ignore_class, total=False)
    return loss, dtype


def _bce(y_true, y_pred, from_logits, label_smoothing, pos_weight, axis, ignore_class, total):
    """(row losses, y_pred's dtype, positives per row or None): the mean over `axis`, or with
    `total` the sum and each row's number of positives."""
    from_logits = check_bool(from_logits, "from_logits")
    ls = check_number(label_smoothing, "label_smoothing", low=0.0, high=1.0)
    pw = check_weights(pos_weight, "pos_weight")
    ignore = _positives.check_binary_ignore(ignore_class)
    x, from_logits = select(y_pred, from_logits, "sigmoid", "binary_crossentropy")
    y, x = reduced_axis_last(*dense_pair(y_true, x, "binary_crossentropy"), axis)
    w = per_class(pw, x, "pos_weight", "binary_crossentropy")
    weights = () if w is None else (w,)
    rule = _unit_labels("binary_crossentropy", ignore)
    extra = () if ignore is None and not total else (ignore, total)
    if from_logits:
        loss = custom_loss(_bce_logits, (ls, *extra), x, y, *weights, rule=rule)
    else:
        loss = custom_loss(_bce_probabilities, (ls, keras.config.epsilon(), *extra), x, y,
                           *weights, rule=rule)
    loss, positives = _finish_binary(loss, y, x, ignore, total)
    return loss, dtype_of(x), positives


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
    # settings: (ls,) for the mean over the axis; (ls, ignore, total) with an ignore label or
    # the sum (`_entry_scale`).
    ls, weighted = settings[0], len(settings) > 1
    y0 = labels(y, z)
    if weighted:
        y0, scale = _entry_scale(y0, z, *settings[1:])
    y = _smooth_binary(y0, ls)
    ny = 1.0 - y
    wy = y if w is None else w * y
    a, e, l1, pos, npos = _logit_parts(z)
    u = pos * ny + npos * wy
    ce = a * u + (l1 if w is None else (ny + wy) * l1)
    loss = class_sum(ce * scale, keepdims=False) if weighted else class_mean(ce)

    def grad(g):
        r = 1.0 / (1.0 + e)
        d = (pos - npos) * (r * u - (e * r) * (pos * wy + npos * ny))
        if weighted:
            return g[..., None] * scale * d
        return (g * inv_size(z))[..., None] * d

    return loss, grad


def _bce_probabilities(settings, p, y, w=None):
    ls, eps, weighted = settings[0], settings[1], len(settings) > 2
    o = ops()
    y0 = labels(y, p)
    if weighted:
        y0, scale = _entry_scale(y0, p, *settings[2:])
    y = _smooth_binary(y0, ls)
    wy = y if w is None else w * y
    ny = 1.0 - y
    cp, cq = _clip_pair(p, eps)
    ce = -(wy * o.log(cp) + ny * o.log(cq))
    loss = class_sum(ce * scale, keepdims=False) if weighted else class_mean(ce)

    def grad(g):
        if weighted:
            return g[..., None] * scale * (ny / cq - wy / cp)
        return (g * inv_size(p))[..., None] * (ny / cq - wy / cp)

    return loss, grad


@register
@public_loss
def focal(y_true, y_pred, gamma=2.0, alpha=0.25, from_logits=False, label_smoothing=0.0,
          apply_class_balancing=True, axis=-1, ignore_class=None):
    """Binary (multi-label) focal loss, averaged over `axis`. See `keras_afl.losses.focal`.

    loss = mean(alpha_t * m**gamma * CE), m = 1 - p_t, each label side in its own terms; the
    gradient is computed without m**(gamma - 1), finite for every gamma >= 0. `ignore_class`:
    as `binary_crossentropy`'s.
    """
    loss, dtype, _ = _focal(y_true, y_pred, gamma, alpha, from_logits, label_smoothing,
                            apply_class_balancing, axis, ignore_class, total=False)
    return loss, dtype


def _focal(y_true, y_pred, gamma, alpha, from_logits, label_smoothing, apply_class_balancing, axis,
           ignore_class, total):
    """(row losses, y_pred's dtype, positives per row or None): as `_bce`."""
    gamma = check_number(gamma, "gamma", low=0.0)
    alpha = check_number(alpha, "alpha", low=0.0, high=1.0, allow_none=True)
    if not check_bool(apply_class_balancing, "apply_class_balancing"):
        alpha = None
    from_logits = check_bool(from_logits, "from_logits")
    ls = check_number(label_smoothing, "label_smoothing", low=0.0, high=1.0)
    ignore = _positives.check_binary_ignore(ignore_class)
    x, from_logits = select(y_pred, from_logits, "sigmoid", "focal")
    y, x = reduced_axis_last(*dense_pair(y_true, x, "focal"), axis)
    rule = _unit_labels("focal", ignore)
    extra = () if ignore is None and not total else (ignore, total)  # as in `_bce`
    if from_logits:
        loss = custom_loss(_focal_logits, (gamma, alpha, ls, *extra), x, y, rule=rule)
    else:
        loss = custom_loss(_focal_probabilities, (gamma, alpha, ls, keras.config.epsilon(), *extra),
                           x, y, rule=rule)
    loss, positives = _finish_binary(loss, y, x, ignore, total)
    return loss, dtype_of(x), positives


def _focal_scale(y, ny, x, alpha, inv_n=None):
    """alpha_t / N = (alpha y + (1 - alpha)(1 - y)) / N, from the labels only (1 / N for None).

    inv_n: None for 1 / N, or each entry's weight (`_entry_scale`)."""
    o = ops()
    if inv_n is not None:
        return inv_n if alpha is None else y * (alpha * inv_n) + ny * ((1.0 - alpha) * inv_n)
    n = x.shape[-1]
    if alpha is None:
        return inv_size(x)
    return y * o.scalar(alpha / n, x) + ny * o.scalar((1.0 - alpha) / n, x)


def _focal_labels(settings, x, y, n_settings):
    """(smoothed labels, 1 - them, alpha_t / N) of a focal body whose first `n_settings`
    settings are its own; the rest are (ignore, total) when given (`_entry_scale`)."""
    y0, inv_n = labels(y, x), None
    if len(settings) > n_settings:
        y0, inv_n = _entry_scale(y0, x, *settings[n_settings:])
    y = _smooth_binary(y0, settings[2])
    ny = 1.0 - y
    return y, ny, _focal_scale(y, ny, x, settings[1], inv_n)


def _focal_logits(settings, z, y):
    gamma = settings[0]
    o = ops()
    y, ny, scale = _focal_labels(settings, z, y, 3)
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
    gamma, eps = settings[0], settings[3]
    o = ops()
    y, ny, scale = _focal_labels(settings, p, y, 4)
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
    _unsaved_defaults = {"axis": -1, "ignore_class": None, "normalize": None}
    _reduction_settings = ("normalize",)

    def __init__(self, from_logits=False, label_smoothing=0.0, pos_weight=None,
                 reduction="sum_over_batch_size", name="binary_crossentropy", dtype=None, *,
                 axis=-1, ignore_class=None, normalize=None):
        super().__init__(reduction=reduction, name=name, dtype=dtype)
        self.from_logits = check_bool(from_logits, "from_logits")
        self.label_smoothing = check_number(label_smoothing, "label_smoothing", low=0.0, high=1.0)
        self.pos_weight = check_weights(pos_weight, "pos_weight")
        self.axis = check_axis(axis)
        self.ignore_class = _positives.check_binary_ignore(ignore_class)
        self.normalize = _positives.check_normalize(normalize, reduction, type(self).__name__)

    def _settings(self):
        return {"from_logits": self.from_logits, "label_smoothing": self.label_smoothing,
                "pos_weight": tuple_or_value(self.pos_weight), "axis": self.axis,
                "ignore_class": self.ignore_class}

    def _positives_parts(self, y_true, y_pred):
        s = self._settings()
        loss, _, positives = _bce(y_true, y_pred, s["from_logits"], s["label_smoothing"],
                                  s["pos_weight"], s["axis"], s["ignore_class"], total=True)
        return loss, positives


@register
class FocalLoss(Loss):
    """Binary (multi-label) focal loss. See `keras_afl.losses.FocalLoss`."""

    _fn = staticmethod(focal)
    _logits_activation = "sigmoid"
    _unsaved_defaults = {"apply_class_balancing": True, "axis": -1, "ignore_class": None,
                         "normalize": None}
    _reduction_settings = ("normalize",)

    def __init__(self, gamma=2.0, alpha=0.25, from_logits=False, label_smoothing=0.0,
                 reduction="sum_over_batch_size", name="focal", dtype=None, *,
                 apply_class_balancing=True, axis=-1, ignore_class=None, normalize=None):
        super().__init__(reduction=reduction, name=name, dtype=dtype)
        self.gamma = check_number(gamma, "gamma", low=0.0)
        self.alpha = check_number(alpha, "alpha", low=0.0, high=1.0, allow_none=True)
        self.from_logits = check_bool(from_logits, "from_logits")
        self.label_smoothing = check_number(label_smoothing, "label_smoothing", low=0.0, high=1.0)
        self.apply_class_balancing = check_bool(apply_class_balancing, "apply_class_balancing")
        self.axis = check_axis(axis)
        self.ignore_class = _positives.check_binary_ignore(ignore_class)
        self.normalize = _positives.check_normalize(normalize, reduction, type(self).__name__)

    def _settings(self):
        return {"gamma": self.gamma, "alpha": self.alpha, "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing,
                "apply_class_balancing": self.apply_class_balancing, "axis": self.axis,
                "ignore_class": self.ignore_class}

    def _positives_parts(self, y_true, y_pred):
        loss, _, positives = _focal(y_true, y_pred, **self._settings(), total=True)
        return loss, positives
