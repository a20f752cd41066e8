"""Categorical losses with dense (one-hot or soft) labels: cross-entropy and focal loss."""

from __future__ import annotations

import keras

from keras_afl._grad_utils import check_number, normalize_axis
from keras_afl.losses import _positives
from keras_afl.losses._base import _Loss, _tuple_or_value
from keras_afl.losses._core import (
    _SPLIT, _check_bool, _check_weights, _class_axis_last, _class_sum, _custom_loss, _dense_pair,
    _done, _dtype, _float_input, _focal_factor, _inv_size, _labels, _per_class, _public_loss,
    _register, _select, o,
)

# What keras_afl.losses exports from this module (its __init__ reads this list).
__all__ = ["categorical_crossentropy", "categorical_focal", "CategoricalCrossentropy",
           "CategoricalFocalLoss"]


def _dense_categorical(y_true, y_pred, from_logits, axis, fn_name):
    """Shared preparation: logits/probabilities and labels with the class axis last."""
    y_pred = _float_input(y_pred, fn_name)
    axis = normalize_axis(axis, len(y_pred.shape))
    x, from_logits = _select(y_pred, from_logits, "softmax", fn_name, axis)
    y, x = _dense_pair(y_true, x, fn_name)
    dtype = _dtype(x)
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
    s = o.maximum(_class_sum(p), o.scalar(eps, p))
    n = p / s
    c = o.clip(n, o.scalar(eps, p), o.scalar(1.0 - eps, p))
    lc = o.log(c)
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
@_public_loss
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
                       (where softmax > 1/2 with softmax - 1 = expm1(log_softmax(z)), so
                       that a confidently right row keeps full relative accuracy)
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
    loss, saved = _cce_logits_forward(settings, z, y)
    return loss, lambda g: _cce_logits_backward(settings, g, saved, z, y)


_LOG_2 = 0.6931471805599453  # log(2)


def _softmax_stats(z):
    """Per-sample max m and l = log(sum(exp(z - m))) along the last axis; log_softmax = (z - m) - l.

    l = log1p(t + n - 1), with n the number of maxima (each adds exp(0) = 1) and t the sum over
    the other entries, summed apart: log(1 + t) would lose t below the dtype's epsilon, and
    with it every digit of a confidently right row's loss (-log_softmax at the maximum is
    l ~ t: 9.4e-14 for logits (30, 0, -30), which TF's kernels round to 0). A NaN entry falls
    in t, so its row's l is NaN. The count is a plain sum (cheap on a boolean); t, like every
    class sum, a product with ones in the compiled kernels. Entries are picked by products
    with 1.0 / 0.0, which XLA's CPU backend vectorises (a tf.where measured up to 2x slower).

    The compiled forward of the softmax losses saves (m, l) -- one number each per
    sample -- so that the backward is one pass over z: softmax = exp(z - m) * exp(-l).
    """
    m = o.max(z, axis=-1, keepdims=True)
    zm = z - m
    top = zm >= 0.0  # the maxima
    t = _class_sum(o.exp(zm) * o.cast(zm < 0.0, _dtype(z)))  # NaN * 0 stays NaN
    n = o.sum(o.cast(top, _dtype(z)), axis=-1, keepdims=True)
    return zm, (m, o.log1p(t + (n - 1.0)))


def _softmax(zm, l):
    """softmax = exp(z - m) * exp(-l), to a few ulp: exp((z - m) - l) would carry the rounding
    of the difference (ulp(40) relative error at z - m = -40)."""
    return o.exp(zm) * o.exp(-l)


def _near_one(zm, l):
    """1.0 where softmax > 1/2, else 0.0: only at a row's single maximum (z - m = 0, where
    log_softmax = -l, softmax = exp(-l) and 1 - softmax = -expm1(-l), one number per row) when
    l < log 2. A test of z - m against a per-row threshold (0 or 1), which XLA vectorises;
    the callers pick with products (a tf.where measured up to 2x slower on CPU)."""
    return o.cast(zm >= o.cast(l >= _LOG_2, _dtype(l)), _dtype(zm))


def _softmax_times_minus(zm, l, s, y):
    """s softmax - y from z - m and l (`_softmax_stats`); where softmax > 1/2, as
    s (softmax - 1) + (s - y), so that a confidently right row's gradient keeps its digits
    (softmax - 1 rounds to 0 for softmax within epsilon of 1)."""
    near = _near_one(zm, l)
    return near * (s * o.expm1(-l) + (s - y)) + (1.0 - near) * (s * _softmax(zm, l) - y)


def _cce_logits_forward(settings, z, y):
    (ls,) = settings
    y = _smooth_categorical(_labels(y, z), ls, z)
    zm, (m, l) = _softmax_stats(z)
    # -sum(y log_softmax(z)) = s l - sum(y (z - m)), s = sum(y): both terms >= 0 for labels >= 0
    # (z - m <= 0), so nothing cancels, and l is accurate for a confidently right row (TF's
    # fused kernel rounds such a loss, log1p(t) ~ t, to 0 below t ~ 6e-8 in float32).
    s = _class_sum(y)
    loss = (s * l - _class_sum(y * zm))[..., 0]
    # The label sum s is kept for the backward where the backend keeps per-row statistics
    # cheaply (TensorFlow's compiled kernels: one reduction pass fewer); under jax.jit, where
    # forward and backward are one program, summing again measured 1.2-1.3x faster.
    return loss, ((m, l, s) if o.KEEPS_ROW_STATISTICS else (m, l))


def _cce_logits_backward(settings, g, saved, z, y):
    (ls,) = settings
    y = _smooth_categorical(_labels(y, z), ls, z)
    m, l = saved[:2]
    s = saved[2] if len(saved) > 2 else _class_sum(y)
    return g[..., None] * _softmax_times_minus(z - m, l, s, y)


@_register
@_public_loss
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
        dloss/dz = p * sum(w) - w      (where p > 1/2: p * (sum(w) - w) - (1 - p) * w)
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


def _cfocal_logits(settings, z, y, a=None, stats=None):
    gamma, ls = settings
    y = _smooth_categorical(_labels(y, z), ls, z)
    ay = y if a is None else a * y
    # (z - m, l): accurate at p ~ 1 (see `_softmax_stats`), unlike a log_softmax kernel
    if stats is None:
        zm, (_, l) = _softmax_stats(z)
    else:
        zm, l = stats
    lp = zm - l
    om = -o.expm1(lp)  # 1 - p, accurate near p = 1
    weighted = ay if gamma == 0.0 else ay * _focal_factor(om, gamma)
    loss = -_class_sum(weighted * lp, keepdims=False)

    def grad(g):
        p = _softmax(zm, l)
        if gamma == 0.0:
            w = weighted
        else:
            pos = om > 0.0
            h = o.where(pos, -lp / o.where(pos, om, o.ones_like(om)), o.ones_like(om))
            w = weighted * (1.0 + gamma * p * h)
        # p sum(w) - w; where p > 1/2, as p (sum(w) - w) - (1 - p) w with the row's p and 1 - p:
        # for a one-hot row right with p ~ 1, sum(w) - w is exactly 0 and (1 - p) w keeps its
        # digits (p sum(w) - w keeps none). (Per element everywhere, it measured 1.25x slower.)
        sw = _class_sum(w)
        near = _near_one(zm, l)
        return g[..., None] * (near * (o.exp(-l) * (sw - w) + o.expm1(-l) * w)
                               + (1.0 - near) * (p * sw - w))

    return loss, grad


def _cfocal_logits_forward(settings, z, y, a=None):
    zm, (m, l) = _softmax_stats(z)
    return _cfocal_logits(settings, z, y, a, stats=(zm, l))[0], (m, l)


def _cfocal_logits_backward(settings, g, saved, z, y, a=None):
    m, l = saved
    return _cfocal_logits(settings, z, y, a, stats=(z - m, l))[1](g)


_SPLIT.update({
    _cce_logits: (_cce_logits_forward, _cce_logits_backward),
    _cfocal_logits: (_cfocal_logits_forward, _cfocal_logits_backward),
})


# --------------------------------------------------------------------------
# The Loss classes.

def _categorical_positives(loss, y_true, y_pred):
    """(per-row losses in the computation dtype, 1.0 for each positive row)."""
    values, _ = type(loss)._fn.in_compute_dtype(y_true, y_pred, **loss._settings())
    y = o.cast(keras.ops.convert_to_tensor(y_true), _dtype(values))
    y = _class_axis_last(y, normalize_axis(loss.axis, len(y.shape)))
    _positives.check_background_in_range(loss.background_class, y.shape[-1], type(loss).__name__)
    mass = o.sum(y, axis=-1) - y[..., loss.background_class]
    return values, o.cast(mass >= 0.5, _dtype(values))


@_register
class CategoricalCrossentropy(_Loss):
    """Categorical cross-entropy loss. See `keras_afl.losses.categorical_crossentropy`.

    Args:
        from_logits: Whether `y_pred` holds logits.
        label_smoothing: In [0, 1].
        axis: The class axis.
        reduction, name, dtype: As `keras.losses.Loss`.
        normalize: None (Keras's `reduction`), `"positives"` or `"positives_per_image"`: the
            summed loss over the number of positive rows, counted over every replica (see
            `keras_afl.losses.FocalLoss`). A row is positive when its label mass on the
            classes other than `background_class` is at least 1/2 (one-hot: not background;
            an all-zero row, loss 0, is not counted). Keyword only.
        background_class: The class id that is not a positive; required with `normalize`,
            and only meaningful there; keyword only.

    Example:
    >>> import keras_afl
    >>> cce = keras_afl.losses.CategoricalCrossentropy(from_logits=True)
    >>> print(round(float(cce([[0.0, 1.0]], [[0.0, 0.0]])), 4))
    0.6931
    """

    _fn = staticmethod(categorical_crossentropy)
    _logits_activation = "softmax"
    _unsaved_defaults = {"normalize": None, "background_class": None}
    _reduction_settings = ("normalize", "background_class")

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1,
                 reduction="sum_over_batch_size", name="categorical_crossentropy", dtype=None, *,
                 normalize=None, background_class=None):
        super().__init__(reduction=reduction, name=name, dtype=dtype)
        self.from_logits = _check_bool(from_logits, "from_logits")
        self.label_smoothing = check_number(label_smoothing, "label_smoothing", low=0.0, high=1.0)
        self.axis = normalize_axis(axis, None)
        _positives.set_normalization(self, normalize, background_class, reduction)

    _positives_parts = _categorical_positives

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
        normalize, background_class: As `CategoricalCrossentropy`'s; keyword only.

    Example:
    >>> import keras_afl
    >>> cf = keras_afl.losses.CategoricalFocalLoss(gamma=1.0, from_logits=True)
    >>> print(round(float(cf([[0.0, 1.0]], [[0.0, 0.0]])), 4))  # 0.5 * log 2
    0.3466
    """

    _fn = staticmethod(categorical_focal)
    _logits_activation = "softmax"
    _unsaved_defaults = {"normalize": None, "background_class": None}
    _reduction_settings = ("normalize", "background_class")

    def __init__(self, gamma=2.0, alpha=None, from_logits=False, label_smoothing=0.0, axis=-1,
                 reduction="sum_over_batch_size", name="categorical_focal", dtype=None, *,
                 normalize=None, background_class=None):
        super().__init__(reduction=reduction, name=name, dtype=dtype)
        self.gamma = check_number(gamma, "gamma", low=0.0)
        self.alpha = _check_weights(alpha, "alpha", high=1.0)
        self.from_logits = _check_bool(from_logits, "from_logits")
        self.label_smoothing = check_number(label_smoothing, "label_smoothing", low=0.0, high=1.0)
        self.axis = normalize_axis(axis, None)
        _positives.set_normalization(self, normalize, background_class, reduction)

    _positives_parts = _categorical_positives

    def _settings(self):
        return {"gamma": self.gamma, "alpha": _tuple_or_value(self.alpha),
                "from_logits": self.from_logits, "label_smoothing": self.label_smoothing,
                "axis": self.axis}

