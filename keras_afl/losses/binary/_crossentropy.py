"""Binary cross-entropy and binary focal loss (one output per label): functions, derivatives and
Loss classes, with ignored entries (`ignore_class`) and normalisation by positives (`normalize`)."""

from __future__ import annotations

import keras

from keras_afl._grad_utils import check_number
from keras_afl.losses import _positives
from keras_afl.losses._base import _Loss, _tuple_or_value
from keras_afl.losses._core import (
    _check_axis, _check_bool, _check_weights, _class_mean, _class_sum, _custom_loss, _dense_pair,
    _done, _dtype, _flag_labels, _focal_factor, _inv_size, _labels, _per_class, _public_loss,
    _reduced_axis_last, _register, _select, o,
)
from keras_afl.losses.binary._common import (
    _clip_pair, _entry_scale, _finish_binary, _log_max, _logit_parts, _smooth_binary, _unit_labels,
)

# What keras_afl.losses exports from this module (its __init__ reads this list).
__all__ = ["binary_crossentropy", "focal", "BinaryCrossentropy", "FocalLoss"]


# --------------------------------------------------------------------------
# Binary cross-entropy family.


@_register
@_public_loss
def binary_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, pos_weight=None,
                        axis=-1, ignore_class=None):
    """Binary cross-entropy, averaged over `axis` (the last by default).

    For binary and multi-label classification with a sigmoid output. Pass
    logits with `from_logits=True` (or the output of a Sigmoid, which carries
    its logits) for the stable path. Normalisation by the number of positives reduces over
    the batch: `BinaryCrossentropy(normalize=...)`.

    Formula (z = logits, p = sigmoid(z) or the given probability,
    y smoothed: y * (1 - label_smoothing) + 0.5 * label_smoothing,
    w = pos_weight, 1 if None):
        loss = mean(-[w * y * log(p) + (1 - y) * log(1 - p)], axis=-1)
        logits: (1 - y) * softplus(z) + w * y * softplus(-z)
        (each label side in its own terms, never softplus(z) - z * y or sigmoid(z) - y, which
        cancel: a confidently right positive is as accurate as a negative, to a few ulp)

    Gradient:
        logits:        dloss/dz = ((1 - y) * sigmoid(z) - w * y * sigmoid(-z)) / N
        probabilities: dloss/dp = ((1 - y) / (1 - p) - w * y / p) / N at the clipped p
        (see the module docstring for the clip convention)

    Args:
        y_true: Labels in [0, 1], same shape as `y_pred`.
        y_pred: Probabilities, or logits with `from_logits=True`.
        from_logits: Whether `y_pred` holds logits.
        label_smoothing: In [0, 1]; squeezes the labels towards 0.5.
        pos_weight: Weight of the positive term, as PyTorch's
            `BCEWithLogitsLoss(pos_weight=...)`: a number >= 0 or one number per
            output (along `axis`). None means 1.
        axis: The axis to average over (an int), as Keras's `axis`.
        ignore_class: None, or a label value outside [0, 1] (e.g. -1, or 255 for void
            pixels) marking entries to leave out: they add nothing to the loss or its
            gradient, each row is the mean over its other entries, and a row with every
            entry ignored is 0 and masked out of Keras's average (a Keras mask).

    Returns:
        Tensor of `y_pred`'s shape without `axis`, dtype of `y_pred`.

    Example:
    >>> import keras_afl
    >>> loss = keras_afl.losses.binary_crossentropy([[1.0, 0.0]], [[0.0, 0.0]], from_logits=True)
    >>> print(round(float(loss[0]), 4))  # log 2
    0.6931
    """
    loss, dtype, _ = _bce(y_true, y_pred, from_logits, label_smoothing, pos_weight, axis,
                          ignore_class, total=False)
    return _done(loss, dtype)


def _bce(y_true, y_pred, from_logits, label_smoothing, pos_weight, axis, ignore_class, total):
    """(row losses in the computation dtype, y_pred's dtype, positives per row or None): the
    mean over `axis`, or with `total` the sum and each row's number of positives."""
    from_logits = _check_bool(from_logits, "from_logits")
    ls = check_number(label_smoothing, "label_smoothing", low=0.0, high=1.0)
    pw = _check_weights(pos_weight, "pos_weight")
    ignore = _positives.check_binary_ignore(ignore_class)
    x, from_logits = _select(y_pred, from_logits, "sigmoid", "binary_crossentropy")
    y, x = _reduced_axis_last(*_dense_pair(y_true, x, "binary_crossentropy"), axis)
    dtype = _dtype(x)
    w = _per_class(pw, x, "pos_weight", "binary_crossentropy")
    weights = () if w is None else (w,)
    rule = _unit_labels("binary_crossentropy", ignore)
    # The default (no ignore label, the mean) keeps its settings, so its compiled kernels too.
    extra = () if ignore is None and not total else (ignore, total)
    if from_logits:
        loss = _custom_loss(_bce_logits, (ls, *extra), x, y, *weights, rule=rule)
    else:
        loss = _custom_loss(_bce_probabilities, (ls, keras.config.epsilon(), *extra), x, y,
                            *weights, rule=rule)
    loss, positives = _finish_binary(loss, y, x, ignore, total)
    return loss, dtype, positives


def _bce_logits(settings, z, y, w=None):
    # Per label side (NUMERICS.md): CE = (1 - y) softplus(z) + w y softplus(-z), terms >= 0, and
    # dCE/dz = (1 - y) sigmoid(z) - w y sigmoid(-z). The textbook softplus(z) - z y and
    # sigmoid(z) - y cancel for a confidently right positive (y = 1, z = 30: no digit left).
    # With u, v the weights of the sides z is against and for: CE = u |z| + (1 + (w - 1) y) log1p(e),
    # dCE/dz = sign(z) (u sigmoid(|z|) - v sigmoid(-|z|)).
    # settings: (ls,) for the mean over the axis; (ls, ignore, total) with an ignore label or
    # the sum (`_entry_scale`).
    ls, weighted = settings[0], len(settings) > 1
    y0 = _labels(y, z)
    if weighted:
        y0, scale = _entry_scale(y0, z, *settings[1:])
    y = _smooth_binary(y0, ls)
    ny = 1.0 - y
    wy = y if w is None else w * y
    a, e, l1, pos, npos = _logit_parts(z)
    u = pos * ny + npos * wy
    ce = _flag_labels(a * u + (l1 if w is None else (ny + wy) * l1), y0)
    loss = _class_sum(ce * scale, keepdims=False) if weighted else _class_mean(ce)

    def grad(g):
        r = 1.0 / (1.0 + e)
        d = (pos - npos) * (r * u - (e * r) * (pos * wy + npos * ny))
        if weighted:
            return g[..., None] * scale * d
        return (g * _inv_size(z))[..., None] * d

    return loss, grad


def _bce_probabilities(settings, p, y, w=None):
    ls, eps, weighted = settings[0], settings[1], len(settings) > 2
    y0 = _labels(y, p)
    if weighted:
        y0, scale = _entry_scale(y0, p, *settings[2:])
    y = _smooth_binary(y0, ls)
    wy = y if w is None else w * y
    ny = 1.0 - y
    cp, cq = _clip_pair(p, eps)
    ce = _flag_labels(-(wy * o.log(cp) + ny * o.log(cq)), y0)
    loss = _class_sum(ce * scale, keepdims=False) if weighted else _class_mean(ce)

    def grad(g):
        if weighted:
            return g[..., None] * scale * (ny / cq - wy / cp)
        return (g * _inv_size(p))[..., None] * (ny / cq - wy / cp)

    return loss, grad


@_register
@_public_loss
def focal(y_true, y_pred, gamma=2.0, alpha=0.25, from_logits=False, label_smoothing=0.0,
          apply_class_balancing=True, axis=-1, ignore_class=None):
    """Binary focal loss (multi-label), averaged over `axis` (the last by default).

    Cross-entropy that down-weights easy, well-classified examples by
    (1 - p_t)**gamma, so that training focuses on hard ones: for dense
    detection and other heavily imbalanced problems. With gamma = 0 and
    alpha = None it is binary cross-entropy.

    `alpha` weights the positive class as in Lin et al.: alpha_t = alpha for
    y = 1 and 1 - alpha for y = 0, applied unless `alpha=None` or
    `apply_class_balancing=False`. (Keras's `BinaryFocalCrossentropy` has the same
    `apply_class_balancing` but defaults to False, ignoring `alpha`.)

    Normalisation by the number of positives (RetinaNet) reduces over the whole batch, so it
    is a setting of the class, `FocalLoss(normalize=...)`, not of this per-sample function.

    Formula (p = sigmoid(z) or the given probability, q = 1 - p, y smoothed
    towards 0.5 by label_smoothing, m = 1 - p_t = y * q + (1 - y) * p,
    alpha_t = alpha * y + (1 - alpha) * (1 - y)):
        CE   = -[y * log(p) + (1 - y) * log(q)]
               (logits: y * softplus(-z) + (1 - y) * softplus(z), q = sigmoid(-z), not 1 - p:
               each label side in its own terms, so an easy positive keeps the relative
               accuracy of an easy negative, a few ulp, in loss and gradient)
        loss = mean(alpha_t * m**gamma * CE, axis=-1)

    Gradient (computed without m**(gamma - 1), finite for every gamma >= 0):
        logits:        dloss/dz = alpha_t * m**gamma * [((1 - y) p - y q)
                                  + gamma * (1 - 2y) * (p q / m) * CE] / N
        probabilities: dloss/dp = alpha_t * m**gamma * [gamma * (1 - 2y) * CE / m
                                  + (1 - y) / q - y / p] / N   at the clipped p
        (p q / m is evaluated as 1 / (u (1 + exp|z|) + v (1 + exp(-|z|))), u and v
        the label weights of the sides z is against and for: no division by m,
        which underflows, so second derivatives stay finite for |z| up to 1e4.)

    Args:
        y_true: Labels in [0, 1], same shape as `y_pred`.
        y_pred: Probabilities, or logits with `from_logits=True`.
        gamma: Focusing parameter, >= 0.
        alpha: Weight of the positive class in [0, 1], or None for no weighting.
        from_logits: Whether `y_pred` holds logits.
        label_smoothing: In [0, 1]; squeezes the labels towards 0.5.
        apply_class_balancing: Whether `alpha` is applied (Keras's argument; default True here).
        axis: The axis to average over (an int), as Keras's `axis`.
        ignore_class: None, or a label value outside [0, 1] (e.g. -1 for anchors between the
            IoU thresholds, 255 for void pixels) marking entries to leave out: they add
            nothing to the loss or its gradient, each row is the mean over its other entries,
            and a row with every entry ignored is 0 and masked out of Keras's average.

    Returns:
        Tensor of `y_pred`'s shape without `axis`, dtype of `y_pred`.

    Example:
    >>> import keras_afl
    >>> loss = keras_afl.losses.focal([[1.0]], [[0.0]], gamma=2.0, alpha=None, from_logits=True)
    >>> print(round(float(loss[0]), 4))  # 0.5**2 * log 2
    0.1733

    Reference:
        Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017.
    """
    loss, dtype, _ = _focal(y_true, y_pred, gamma, alpha, from_logits, label_smoothing,
                            apply_class_balancing, axis, ignore_class, total=False)
    return _done(loss, dtype)


def _focal(y_true, y_pred, gamma, alpha, from_logits, label_smoothing, apply_class_balancing, axis,
           ignore_class, total):
    """(row losses in the computation dtype, y_pred's dtype, positives per row or None): as
    `_bce`."""
    gamma = check_number(gamma, "gamma", low=0.0)
    alpha = check_number(alpha, "alpha", low=0.0, high=1.0, allow_none=True)
    if not _check_bool(apply_class_balancing, "apply_class_balancing"):
        alpha = None
    from_logits = _check_bool(from_logits, "from_logits")
    ls = check_number(label_smoothing, "label_smoothing", low=0.0, high=1.0)
    ignore = _positives.check_binary_ignore(ignore_class)
    x, from_logits = _select(y_pred, from_logits, "sigmoid", "focal")
    y, x = _reduced_axis_last(*_dense_pair(y_true, x, "focal"), axis)
    dtype = _dtype(x)
    rule = _unit_labels("focal", ignore)
    extra = () if ignore is None and not total else (ignore, total)  # as in `_bce`
    if from_logits:
        loss = _custom_loss(_focal_logits, (gamma, alpha, ls, *extra), x, y, rule=rule)
    else:
        settings = (gamma, alpha, ls, keras.config.epsilon(), *extra)
        loss = _custom_loss(_focal_probabilities, settings, x, y, rule=rule)
    loss, positives = _finish_binary(loss, y, x, ignore, total)
    return loss, dtype, positives


def _focal_scale(y, ny, inv_n, alpha):
    """alpha_t / N = (alpha y + (1 - alpha)(1 - y)) / N, from the labels only (1 / N for None).

    inv_n: 1 / N, or each entry's weight (`_entry_scale`). ny = 1 - y; the two terms have one
    sign, so soft labels lose nothing to cancellation.
    """
    return inv_n if alpha is None else y * (alpha * inv_n) + ny * ((1.0 - alpha) * inv_n)


def _focal_labels(settings, x, y, n_settings):
    """(labels as read, smoothed labels, 1 - them, alpha_t / N) of a focal body whose first
    `n_settings` settings are its own; the rest are (ignore, total) when given (`_entry_scale`)."""
    y0 = _labels(y, x)
    if len(settings) > n_settings:
        y0, inv_n = _entry_scale(y0, x, *settings[n_settings:])
    else:
        inv_n = _inv_size(x)
    y = _smooth_binary(y0, settings[2])
    ny = 1.0 - y
    return y0, y, ny, _focal_scale(y, ny, inv_n, settings[1])


def _focal_logits(settings, z, y):
    gamma = settings[0]
    y0, y, ny, scale = _focal_labels(settings, z, y, 3)
    # Each label side in its own terms (NUMERICS.md), every sum of terms of one sign:
    # CE = y softplus(-z) + (1 - y) softplus(z), m = 1 - p_t = y q + (1 - y) p and
    # p - y = (1 - y) p - y q (p = sigmoid(z), q = sigmoid(-z)), so a confidently right
    # positive keeps its digits as a negative does (m = p + y (q - p) gave m = 0 at y = 1,
    # z = 20 in float32). With u, v the label weights of the sides z is against and for
    # (u = 1 - y, v = y for z >= 0; swapped for z < 0), r = sigmoid(|z|), s = sigmoid(-|z|):
    # CE = u |z| + log1p(e), m = u r + v s, p - y = sign(z) (u r - v s), p q = r s.
    # One exp, one log1p, one division.
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
        f = scale * _focal_factor(m, gamma)
    loss = _class_sum(_flag_labels(f * ce, y0), keepdims=False)

    def grad(g):
        d = f * ((pos - npos) * (r * u - s * v))
        if gamma != 0.0:  # + gamma (1 - 2y) (p q / m) CE f
            d = d + (gamma * (ny - y)) * ce * _pq_over_m_times_f(gamma, f, scale, m, r, s, u, v,
                                                                  a, e)
        return g[..., None] * d

    return loss, grad


def _pq_over_m_times_f(gamma, f, scale, m, r, s, u, v, a, e):
    """(p q / m) f, f = alpha_t m**gamma / N, never dividing by m (which underflows, and whose
    square in the derivative of a division -- second derivatives -- underflows sooner): for
    gamma >= 1 as p q m**(gamma - 1) alpha_t / N; below, p q / m = r s / (u r + v s) =
    1 / (u (1 + exp|z|) + v (1 + e)), a denominator >= 1 (exp|z| capped below overflow)."""
    if gamma == 1.0:
        return (r * s) * scale
    if gamma > 1.0:
        return (r * s) * (scale * _focal_factor(m, gamma - 1.0))
    big = o.scalar(_log_max(_dtype(a)), a)
    return f / (u * (1.0 + o.exp(o.minimum(a, big))) + v * (1.0 + e))


def _focal_probabilities(settings, p, y):
    gamma, eps = settings[0], settings[3]
    y0, y, ny, scale = _focal_labels(settings, p, y, 4)
    cp, cq = _clip_pair(p, eps)
    ce = -(y * o.log(cp) + ny * o.log(cq))  # per side, as the logits path
    if gamma == 0.0:
        f = scale
    else:
        m = y * cq + ny * cp  # y (1 - p) + (1 - y) p, >= eps
        f = scale * _focal_factor(m, gamma)
    loss = _class_sum(_flag_labels(f * ce, y0), keepdims=False)

    def grad(g):
        d = ny / cq - y / cp
        if gamma != 0.0:  # + gamma (1 - 2y) CE / m
            d = d + (gamma * (ny - y)) * ce / m
        return g[..., None] * f * d

    return loss, grad


# --------------------------------------------------------------------------
# The Loss classes.


@_register
class BinaryCrossentropy(_Loss):
    """Binary cross-entropy loss. See `keras_afl.losses.binary_crossentropy`.

    Args:
        from_logits: Whether `y_pred` holds logits.
        label_smoothing: In [0, 1].
        pos_weight: None, a number >= 0, or one per output (as PyTorch's `BCEWithLogitsLoss`).
        reduction, name, dtype: As `keras.losses.Loss`.
        axis: The axis to average over (an int), as Keras's `axis`; keyword only.
        ignore_class: None, or a label value outside [0, 1] whose entries are left out (see
            `binary_crossentropy`); keyword only.
        normalize: None (Keras's `reduction`), `"positives"` or `"positives_per_image"`: the
            summed loss divided by the number of positive entries (see `FocalLoss`); keyword only.

    Example:
    >>> import keras_afl
    >>> bce = keras_afl.losses.BinaryCrossentropy(from_logits=True, pos_weight=2.0)
    >>> print(round(float(bce([[1.0]], [[0.0]])), 4))  # 2 log 2
    1.3863
    """

    _fn = staticmethod(binary_crossentropy)
    _logits_activation = "sigmoid"
    _unsaved_defaults = {"axis": -1, "ignore_class": None, "normalize": None}
    _reduction_settings = ("normalize",)

    def __init__(self, from_logits=False, label_smoothing=0.0, pos_weight=None,
                 reduction="sum_over_batch_size", name="binary_crossentropy", dtype=None, *,
                 axis=-1, ignore_class=None, normalize=None):
        super().__init__(reduction=reduction, name=name, dtype=dtype)
        self.from_logits = _check_bool(from_logits, "from_logits")
        self.label_smoothing = check_number(label_smoothing, "label_smoothing", low=0.0, high=1.0)
        self.pos_weight = _check_weights(pos_weight, "pos_weight")
        self.axis = _check_axis(axis)
        self.ignore_class = _positives.check_binary_ignore(ignore_class)
        self.normalize = _positives.check_normalize(normalize, reduction, type(self).__name__)

    def _settings(self):
        return {"from_logits": self.from_logits, "label_smoothing": self.label_smoothing,
                "pos_weight": _tuple_or_value(self.pos_weight), "axis": self.axis,
                "ignore_class": self.ignore_class}

    def _positives_parts(self, y_true, y_pred):
        s = self._settings()
        loss, _, positives = _bce(y_true, y_pred, s["from_logits"], s["label_smoothing"],
                                  s["pos_weight"], s["axis"], s["ignore_class"], total=True)
        return loss, positives


@_register
class FocalLoss(_Loss):
    """Binary (multi-label) focal loss. See `keras_afl.losses.focal`.

    `alpha` weights the positives (alpha for y = 1, 1 - alpha for y = 0) and is
    applied unless None or `apply_class_balancing=False`; Keras's
    `BinaryFocalCrossentropy` has the same argument but defaults to False.

    For dense detection (RetinaNet): labels `[batch, anchors, classes]`, `ignore_class=-1` on
    the anchors between the IoU thresholds, and `normalize="positives"`: the loss is the sum
    over every non-ignored entry divided by max(1, number of positive entries, label > 0) of
    the batch -- not the mean over anchors and classes, which a few hundred positives among
    100k anchors would make tiny. `"positives_per_image"` divides each image's sum by its own
    count and averages over the images. Sample weights multiply the entries' losses (not the
    count); masked samples count for nothing. Under `tf.distribute` (Mirrored,
    MultiWorkerMirrored) the counts are summed over the replicas (an all-reduce in the replica
    context), so the loss and gradients equal a single-device run on the global batch: each
    replica returns its share (the global loss is their sum; Keras's `fit()` sums gradients
    and reports the sum). With `normalize` the `reduction` must stay at its default, or be
    None for the per-sample terms whose sum is the loss.

    Args:
        gamma: Focusing parameter, >= 0.
        alpha: Weight of the positive class in [0, 1], or None.
        from_logits: Whether `y_pred` holds logits.
        label_smoothing: In [0, 1].
        reduction, name, dtype: As `keras.losses.Loss`.
        apply_class_balancing: Whether `alpha` is applied (default True); keyword only.
        axis: The axis to average over (an int), as Keras's `axis`; keyword only.
        ignore_class: None, or a label value outside [0, 1] (-1, 255) whose entries add
            nothing to the loss or gradient (see `focal`); keyword only.
        normalize: None (Keras's `reduction`), `"positives"` or `"positives_per_image"`
            (above); keyword only.

    Example:
    >>> import keras_afl
    >>> fl = keras_afl.losses.FocalLoss(gamma=2.0, alpha=None, from_logits=True)
    >>> print(round(float(fl([[1.0]], [[0.0]])), 4))
    0.1733
    >>> # two anchors, three classes: one positive entry, one anchor ignored
    >>> det = keras_afl.losses.FocalLoss(gamma=0.0, alpha=None, from_logits=True,
    ...                                  ignore_class=-1, normalize="positives")
    >>> print(round(float(det([[[0.0, 1.0, 0.0], [-1.0, -1.0, -1.0]]], [[[0.0] * 3] * 2])), 4))
    2.0794
    """

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
        self.from_logits = _check_bool(from_logits, "from_logits")
        self.label_smoothing = check_number(label_smoothing, "label_smoothing", low=0.0, high=1.0)
        self.apply_class_balancing = _check_bool(apply_class_balancing, "apply_class_balancing")
        self.axis = _check_axis(axis)
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
