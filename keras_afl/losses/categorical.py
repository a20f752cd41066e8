"""Categorical losses with dense (one-hot or soft) labels: cross-entropy and focal loss."""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_afl._grad_utils import as_float_tensor, check_number, normalize_axis
from keras_afl.losses._core import (
    _SPLIT, _check_bool, _check_weights, _class_axis_last, _class_sum, _custom_loss, _dense_pair,
    _done, _focal_factor, _inv_size, _labels, _large, _num_classes, _per_class, _register,
    _select, _work,
)


def _reshape_batch(flat, like):
    """Reshapes a flat per-sample tensor to like.shape[:-1], keeping the static shape."""
    out = tf.reshape(flat, tf.shape(like)[:-1])
    if not tf.executing_eagerly():
        out.set_shape(like.shape[:-1])
    return out


def _dense_categorical(y_true, y_pred, from_logits, axis, fn_name):
    """Shared preparation: logits/probabilities and labels with the class axis last."""
    y_pred = as_float_tensor(y_pred, "y_pred")
    axis = normalize_axis(axis, y_pred.shape.rank)
    x, from_logits = _select(y_pred, from_logits, "Softmax", fn_name, axis)
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
    logits with `from_logits=True` (or the output of a softmax over `axis`, which carries
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
        if _large(z.shape) is False:
            # Small (an MLP's classes): the arithmetic, exact for s == 1 (1 * bp + 0 * y),
            # costs less than a tf.cond's function call (measured: the 4 x 512 MLP's step
            # 1.01x -> 0.98x the built-in's time).
            d = s * bp + (s - 1.0) * y
        else:  # large or unknown: skip two passes over memory when every row sums to 1
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


_SPLIT.update({
    _cce_logits: (_cce_logits_forward, _cce_logits_backward),
    _cfocal_logits: (_cfocal_logits_forward, _cfocal_logits_backward),
})
