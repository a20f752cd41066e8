"""Categorical losses on JAX and PyTorch with dense (one-hot or soft) labels: cross-entropy and
focal loss (see `keras_afl.losses.categorical`; same formulas, stable forms and derivatives)."""

from __future__ import annotations

import keras

from keras_afl._backend import ops
from keras_afl._grad_utils import check_number, normalize_axis
from keras_afl._portable.losses import _positives
from keras_afl._portable.losses._base import Loss
from keras_afl._portable.losses._core import (
    SPLIT, axis_last, check_bool, check_weights, class_sum, custom_loss, dense_pair, dtype_of,
    float_input, focal_factor, inv_size, labels, per_class, public_loss, register, select,
    tuple_or_value,
)

_LOG_2 = 0.6931471805599453  # log(2)


def _dense_categorical(y_true, y_pred, from_logits, axis, fn_name):
    """Logits/probabilities and labels with the class axis last."""
    y_pred = float_input(y_pred, fn_name)
    axis = normalize_axis(axis, len(y_pred.shape))
    x, from_logits = select(y_pred, from_logits, "softmax", fn_name, axis)
    y, x = dense_pair(y_true, x, fn_name)
    return axis_last(y, axis), axis_last(x, axis), from_logits, dtype_of(x)


def _smooth_categorical(y, ls, x):
    return y * (1.0 - ls) + ls * inv_size(x) if ls else y


def _categorical_probabilities(settings, p, y, a=None):
    """(Focal) categorical cross-entropy from probabilities (normalised, then clipped)."""
    gamma, ls, eps = settings
    o = ops()
    y = _smooth_categorical(labels(y, p), ls, p)
    ay = y if a is None else a * y
    s = o.maximum(class_sum(p), o.scalar(eps, p))
    n = p / s
    c = o.minimum(o.maximum(n, o.scalar(eps, p)), o.scalar(1.0 - eps, p))
    lc = o.log(c)
    if gamma == 0.0:
        weighted = ay
    else:
        oc = 1.0 - c
        weighted = ay * focal_factor(oc, gamma)
    loss = -class_sum(weighted * lc, keepdims=False)

    def grad(g):
        # u = dloss/dc at the clipped point; then through the normalisation n = p / s.
        if gamma == 0.0:
            u = -weighted / c
        else:
            u = weighted * (gamma * lc / oc - 1.0 / c)
        du = u - class_sum(u * n)
        return g[..., None] * du / s

    return loss, grad


@register
@public_loss
def categorical_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    """Categorical cross-entropy. See `keras_afl.losses.categorical_crossentropy`.

    Logits: (sum y) logsumexp(z) - sum(y z), gradient (sum y) softmax(z) - y (accurate where
    softmax ~ 1); probabilities normalised and clipped as Keras does.
    """
    from_logits = check_bool(from_logits, "from_logits")
    ls = check_number(label_smoothing, "label_smoothing", low=0.0, high=1.0)
    y, x, from_logits, dtype = _dense_categorical(
        y_true, y_pred, from_logits, axis, "categorical_crossentropy")
    if not from_logits:
        return custom_loss(_categorical_probabilities, (0.0, ls, keras.config.epsilon()), x, y), dtype
    return custom_loss(_cce_logits, (ls,), x, y), dtype


def softmax_stats(z):
    """(z - m, (m, l)): the per-sample max m and l = log(sum(exp(z - m))) = log1p(t + n - 1), with
    n the number of maxima and t the sum over the other entries (accurate for l ~ t << 1)."""
    o = ops()
    m = o.max(z, axis=-1, keepdims=True)
    zm = z - m
    dtype = dtype_of(z)
    t = class_sum(o.exp(zm) * o.cast(zm < 0.0, dtype))  # NaN * 0 stays NaN
    n = o.sum(o.cast(zm >= 0.0, dtype), axis=-1, keepdims=True)
    return zm, (m, o.log1p(t + (n - 1.0)))


def _softmax(zm, l):
    o = ops()
    return o.exp(zm) * o.exp(-l)


def _near_one(zm, l):
    """1.0 where softmax > 1/2 (a row's single maximum when l < log 2), else 0.0."""
    o = ops()
    dtype = dtype_of(zm)
    return o.cast(zm >= o.cast(l >= _LOG_2, dtype), dtype)


def softmax_times_minus(zm, l, s, y):
    """s softmax - y from z - m and l; where softmax > 1/2, as s (softmax - 1) + (s - y)."""
    o = ops()
    near = _near_one(zm, l)
    return near * (s * o.expm1(-l) + (s - y)) + (1.0 - near) * (s * _softmax(zm, l) - y)


def _cce_logits_forward(settings, z, y):
    (ls,) = settings
    y = _smooth_categorical(labels(y, z), ls, z)
    zm, (m, l) = softmax_stats(z)
    s = class_sum(y)
    loss = (s * l - class_sum(y * zm))[..., 0]
    return loss, (m, l)


def _cce_logits_backward(settings, g, saved, z, y):
    (ls,) = settings
    y = _smooth_categorical(labels(y, z), ls, z)
    m, l = saved
    return g[..., None] * softmax_times_minus(z - m, l, class_sum(y), y)


def _cce_logits(settings, z, y):
    loss, saved = _cce_logits_forward(settings, z, y)
    return loss, lambda g: _cce_logits_backward(settings, g, saved, z, y)


@register
@public_loss
def categorical_focal(y_true, y_pred, gamma=2.0, alpha=None, from_logits=False, label_smoothing=0.0,
                      axis=-1):
    """Categorical focal loss. See `keras_afl.losses.categorical_focal`.

    loss = -sum(alpha * y * (1 - p)**gamma * log(p)), through log-softmax from logits.
    """
    gamma = check_number(gamma, "gamma", low=0.0)
    alpha = check_weights(alpha, "alpha", high=1.0)
    from_logits = check_bool(from_logits, "from_logits")
    ls = check_number(label_smoothing, "label_smoothing", low=0.0, high=1.0)
    y, x, from_logits, dtype = _dense_categorical(y_true, y_pred, from_logits, axis, "categorical_focal")
    a = per_class(alpha, x, "alpha", "categorical_focal")
    alphas = () if a is None else (a,)
    if not from_logits:
        return (custom_loss(_categorical_probabilities, (gamma, ls, keras.config.epsilon()), x, y,
                            *alphas), dtype)
    return custom_loss(_cfocal_logits, (gamma, ls), x, y, *alphas), dtype


def _cfocal_logits(settings, z, y, a=None, stats=None):
    gamma, ls = settings
    o = ops()
    y = _smooth_categorical(labels(y, z), ls, z)
    ay = y if a is None else a * y
    if stats is None:
        zm, (_, l) = softmax_stats(z)
    else:
        zm, l = stats
    lp = zm - l
    om = -o.expm1(lp)  # 1 - p, accurate near p = 1
    weighted = ay if gamma == 0.0 else ay * focal_factor(om, gamma)
    loss = -class_sum(weighted * lp, keepdims=False)

    def grad(g):
        p = _softmax(zm, l)
        if gamma == 0.0:
            w = weighted
        else:
            pos = om > 0.0
            one = o.ones_like(om)
            h = o.where(pos, -lp / o.where(pos, om, one), one)
            w = weighted * (1.0 + gamma * p * h)
        sw = class_sum(w)
        near = _near_one(zm, l)
        return g[..., None] * (near * (o.exp(-l) * (sw - w) + o.expm1(-l) * w)
                               + (1.0 - near) * (p * sw - w))

    return loss, grad


def _cfocal_logits_forward(settings, z, y, a=None):
    zm, (m, l) = softmax_stats(z)
    return _cfocal_logits(settings, z, y, a, stats=(zm, l))[0], (m, l)


def _cfocal_logits_backward(settings, g, saved, z, y, a=None):
    m, l = saved
    return _cfocal_logits(settings, z, y, a, stats=(z - m, l))[1](g)


SPLIT.update({
    _cce_logits: (_cce_logits_forward, _cce_logits_backward),
    _cfocal_logits: (_cfocal_logits_forward, _cfocal_logits_backward),
})


# --------------------------------------------------------------------------
# The Loss classes.


def _categorical_positives(loss, y_true, y_pred):
    """(per-row losses, 1.0 for each positive row)."""
    o = ops()
    values = type(loss)._fn(y_true, y_pred, **loss._settings())
    y = o.cast(keras.ops.convert_to_tensor(y_true), dtype_of(values))
    y = axis_last(y, normalize_axis(loss.axis, len(y.shape)))
    _positives.check_background_in_range(loss.background_class, y.shape[-1], type(loss).__name__)
    mass = class_sum(y, keepdims=False) - y[..., loss.background_class]
    return values, o.cast(mass >= 0.5, dtype_of(values))


@register
class CategoricalCrossentropy(Loss):
    """Categorical cross-entropy loss. See `keras_afl.losses.CategoricalCrossentropy`.

    `normalize` (keyword only): None (Keras's `reduction`), "positives" or
    "positives_per_image": the summed loss over the number of positive rows, those whose label
    mass on the classes other than `background_class` (keyword only; required with `normalize`)
    is at least 1/2. On JAX under `keras.distribution` the step is one program over the global
    batch, so the count is global."""

    _fn = staticmethod(categorical_crossentropy)
    _logits_activation = "softmax"
    _unsaved_defaults = {"normalize": None, "background_class": None}
    _reduction_settings = ("normalize", "background_class")
    _positives_parts = _categorical_positives

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1,
                 reduction="sum_over_batch_size", name="categorical_crossentropy", dtype=None, *,
                 normalize=None, background_class=None):
        super().__init__(reduction=reduction, name=name, dtype=dtype)
        self.from_logits = check_bool(from_logits, "from_logits")
        self.label_smoothing = check_number(label_smoothing, "label_smoothing", low=0.0, high=1.0)
        self.axis = normalize_axis(axis, None)
        _positives.set_normalization(self, normalize, background_class, reduction)

    def _settings(self):
        return {"from_logits": self.from_logits, "label_smoothing": self.label_smoothing,
                "axis": self.axis}


@register
class CategoricalFocalLoss(Loss):
    """Categorical focal loss. See `keras_afl.losses.CategoricalFocalLoss`.

    `normalize` (keyword only): None (Keras's `reduction`), "positives" or
    "positives_per_image": the summed loss over the number of positive rows, those whose label
    mass on the classes other than `background_class` (keyword only; required with `normalize`)
    is at least 1/2. On JAX under `keras.distribution` the step is one program over the global
    batch, so the count is global."""

    _fn = staticmethod(categorical_focal)
    _logits_activation = "softmax"
    _unsaved_defaults = {"normalize": None, "background_class": None}
    _reduction_settings = ("normalize", "background_class")
    _positives_parts = _categorical_positives

    def __init__(self, gamma=2.0, alpha=None, from_logits=False, label_smoothing=0.0, axis=-1,
                 reduction="sum_over_batch_size", name="categorical_focal", dtype=None, *,
                 normalize=None, background_class=None):
        super().__init__(reduction=reduction, name=name, dtype=dtype)
        self.gamma = check_number(gamma, "gamma", low=0.0)
        self.alpha = check_weights(alpha, "alpha", high=1.0)
        self.from_logits = check_bool(from_logits, "from_logits")
        self.label_smoothing = check_number(label_smoothing, "label_smoothing", low=0.0, high=1.0)
        self.axis = normalize_axis(axis, None)
        _positives.set_normalization(self, normalize, background_class, reduction)

    def _settings(self):
        return {"gamma": self.gamma, "alpha": tuple_or_value(self.alpha),
                "from_logits": self.from_logits, "label_smoothing": self.label_smoothing,
                "axis": self.axis}
