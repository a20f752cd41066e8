"""Sparse categorical losses on JAX and PyTorch (integer class ids as labels): cross-entropy and
focal loss (see `keras_afl.losses.sparse`; same formulas, stable forms and derivatives).

`ignore_class`: the ignored samples get loss 0 and a Keras mask on the per-sample loss, so that
`keras.losses.Loss` averages over the counted samples only (Keras keeps the mask of a JAX array,
which takes no attributes, in a table of its own).
"""

from __future__ import annotations

import keras

from keras_afl._backend import ops
from keras_afl._grad_utils import check_number, normalize_axis
from keras_afl._portable.losses import _positives
from keras_afl._portable.losses._base import Loss
from keras_afl._portable.losses._checks import ClassIdRule
from keras_afl._portable.losses._core import (
    SPLIT, axis_last, check_bool, check_ignore_class, check_weights, class_sum, custom_loss,
    dtype_of, float_input, focal_factor, per_class, public_loss, register, select, set_mask,
    tuple_or_value,
)
from keras_afl._portable.losses.categorical import softmax_stats, softmax_times_minus


def _sparse_prepare(y_true, y_pred, from_logits, axis, ignore_class, fn_name):
    """Logits/probabilities (classes last, flattened to (M, K)), the ids as given (flat), the id
    rule and the samples counted (not `ignore_class`)."""
    o = ops()
    y_pred = float_input(y_pred, fn_name)
    rank = len(y_pred.shape)
    axis = normalize_axis(axis, rank)
    x, from_logits = select(y_pred, from_logits, "softmax", fn_name, axis)
    t = y_true if keras.ops.is_tensor(y_true) else keras.ops.convert_to_tensor(y_true)
    name = keras.backend.standardize_dtype(t.dtype)
    if not name.startswith(("int", "uint", "float", "bfloat")):
        raise TypeError(f"`y_true` must hold integer class ids; received dtype {name}.")
    if len(t.shape) == rank and t.shape[axis] == 1:
        t = o.squeeze(t, axis)
    batch_shape = tuple(x.shape[:axis]) + tuple(x.shape[axis + 1:])
    if tuple(t.shape) != batch_shape:
        raise ValueError(
            f"{fn_name}: `y_true` must hold one class id per sample, with `y_pred`'s shape "
            f"without the class axis ({batch_shape}); received y_true.shape="
            f"{tuple(t.shape)} and y_pred.shape={tuple(x.shape)}."
        )
    dtype = dtype_of(x)
    x = axis_last(x, axis)
    k = x.shape[-1]
    x2 = o.reshape(x, (-1, k))
    ids = o.reshape(t, (-1,))  # as given: a float id must be an integer, not truncated
    valid = None if ignore_class is None else ids != ignore_class
    return x2, ids, ClassIdRule(fn_name, ignore_class, k), from_logits, batch_shape, valid, dtype


def _class_ids(ids, num_classes, ignore_class):
    """(t, counted, ok) per sample: t the class (0 where ignored or invalid), counted whether the
    id is not ignore_class (None without one), ok whether it is a valid id or ignored."""
    o = ops()
    t = ids if dtype_of(ids) == "int64" else o.cast(ids, "int32")
    ok = (ids >= 0) & (ids < num_classes)
    if dtype_of(ids).startswith(("float", "bfloat")):
        ok = ok & (o.floor(ids) == ids)
    zero = o.zeros_like(t)
    if ignore_class is None:
        return o.where(ok, t, zero), None, ok
    counted = ids != ignore_class
    return o.where(ok & counted, t, zero), counted, ok | ~counted


def _alpha_t(a, t):
    """alpha[t] for a per-class alpha (as is for a scalar or None)."""
    if a is None or not len(a.shape):
        return a
    o = ops()
    return o.sum(o.one_hot(t, a.shape[0], a) * a, axis=-1)


def _sparse_finish(flat_loss, batch_shape, valid, dtype, ids=None, background=None):
    """(per-sample loss, y_pred's dtype, positives or None): with `background` (the losses'
    normalisation), whether each sample is a positive: counted and not of that class."""
    o = ops()
    loss = o.reshape(flat_loss, batch_shape)
    if valid is not None:
        # Tells keras.losses.Loss to average over the counted samples only.
        set_mask(loss, o.reshape(valid, batch_shape))
    positives = None
    if background is not None:
        positive = ids != background
        positive = positive if valid is None else positive & valid
        positives = o.reshape(o.cast(positive, dtype_of(loss)), batch_shape)
    return loss, dtype, positives


def _sparse_probabilities(settings, p, ids, a=None):
    """(Focal) sparse categorical cross-entropy from probabilities (M, K)."""
    gamma, eps, ignore_class = settings
    o = ops()
    k = p.shape[-1]
    t, counted, ok = _class_ids(ids, k, ignore_class)
    factor = o.scalar(1.0, p) if counted is None else o.cast(counted, dtype_of(p))
    a_t = _alpha_t(a, t)
    s = o.maximum(class_sum(p, keepdims=False), o.scalar(eps, p))
    n_t = o.take_last(p, t) / s
    c = o.minimum(o.maximum(n_t, o.scalar(eps, p)), o.scalar(1.0 - eps, p))
    lc = o.log(c)
    wt = factor if a_t is None else factor * a_t
    if gamma != 0.0:
        oc = 1.0 - c
        wt = wt * focal_factor(oc, gamma)
    loss = -wt * lc

    def grad(g):
        if gamma == 0.0:
            u = -wt / c
        else:
            u = wt * (gamma * lc / oc - 1.0 / c)
        return (g * u / s)[:, None] * (o.one_hot(t, k, p) - n_t[:, None])

    return loss, grad


@register
@public_loss
def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False, ignore_class=None, axis=-1):
    """Categorical cross-entropy with integer class ids as labels. See
    `keras_afl.losses.sparse_categorical_crossentropy`.

    Logits: logsumexp(z) - z_t, gradient softmax(z) - onehot(t) (accurate where softmax ~ 1).
    """
    return _scce(y_true, y_pred, from_logits, ignore_class, axis)[:2]


def _scce(y_true, y_pred, from_logits, ignore_class, axis, background=None):
    """(per-sample loss, y_pred's dtype, positives or None)."""
    from_logits = check_bool(from_logits, "from_logits")
    ignore_class = check_ignore_class(ignore_class)
    x, ids, rule, from_logits, batch, valid, dtype = _sparse_prepare(
        y_true, y_pred, from_logits, axis, ignore_class, "sparse_categorical_crossentropy")
    _positives.check_background_in_range(background, x.shape[-1], "sparse_categorical_crossentropy")
    if not from_logits:
        loss = custom_loss(_sparse_probabilities, (0.0, keras.config.epsilon(), ignore_class), x,
                           ids, rule=rule)
    else:
        loss = custom_loss(_scce_logits, (ignore_class,), x, ids, rule=rule)
    return _sparse_finish(loss, batch, valid, dtype, ids, background)


def _sparse_ce_and_stats(z, t):
    """-log_softmax(z)_t = l - (z_t - m), and (m, l)."""
    zm, (m, l) = softmax_stats(z)
    return l[:, 0] - ops().take_last(zm, t), (m, l)


def _sparse_backprop(saved, z, t):
    """softmax(z) - onehot(t) from the saved statistics, accurate where softmax ~ 1."""
    m, l = saved[:2]
    return softmax_times_minus(z - m, l, 1.0, ops().one_hot(t, z.shape[-1], z))


def _scce_logits_forward(settings, z, ids):
    t, counted, _ = _class_ids(ids, z.shape[-1], *settings)
    ce, saved = _sparse_ce_and_stats(z, t)
    return (ce if counted is None else ce * ops().cast(counted, dtype_of(ce))), saved


def _scce_logits_backward(settings, g, saved, z, ids):
    t, counted, _ = _class_ids(ids, z.shape[-1], *settings)
    g = g if counted is None else g * ops().cast(counted, dtype_of(g))
    return g[:, None] * _sparse_backprop(saved, z, t)


def _scce_logits(settings, z, ids):
    loss, saved = _scce_logits_forward(settings, z, ids)
    return loss, lambda g: _scce_logits_backward(settings, g, saved, z, ids)


@register
@public_loss
def sparse_categorical_focal(y_true, y_pred, gamma=2.0, alpha=None, from_logits=False,
                             ignore_class=None, axis=-1):
    """Categorical focal loss with integer class ids as labels. See
    `keras_afl.losses.sparse_categorical_focal`.

    loss = -alpha_t (1 - p_t)**gamma log(p_t), log p_t = -(logsumexp(z) - z_t).
    """
    return _sfocal(y_true, y_pred, gamma, alpha, from_logits, ignore_class, axis)[:2]


def _sfocal(y_true, y_pred, gamma, alpha, from_logits, ignore_class, axis, background=None):
    """(per-sample loss, y_pred's dtype, positives or None)."""
    gamma = check_number(gamma, "gamma", low=0.0)
    alpha = check_weights(alpha, "alpha", high=1.0)
    from_logits = check_bool(from_logits, "from_logits")
    ignore_class = check_ignore_class(ignore_class)
    x, ids, rule, from_logits, batch, valid, dtype = _sparse_prepare(
        y_true, y_pred, from_logits, axis, ignore_class, "sparse_categorical_focal")
    _positives.check_background_in_range(background, x.shape[-1], "sparse_categorical_focal")
    a = per_class(alpha, x, "alpha", "sparse_categorical_focal")
    alphas = () if a is None else (a,)
    if not from_logits:
        loss = custom_loss(_sparse_probabilities, (gamma, keras.config.epsilon(), ignore_class), x,
                           ids, *alphas, rule=rule)
    else:
        loss = custom_loss(_sfocal_logits, (gamma, ignore_class), x, ids, *alphas, rule=rule)
    return _sparse_finish(loss, batch, valid, dtype, ids, background)


def _sfocal_logits(settings, z, ids, a=None, saved=None):
    gamma, ignore_class = settings
    o = ops()
    t, counted, _ = _class_ids(ids, z.shape[-1], ignore_class)
    a_t = _alpha_t(a, t)
    wt0 = o.scalar(1.0, z) if counted is None else o.cast(counted, dtype_of(z))
    wt0 = wt0 if a_t is None else wt0 * a_t
    if saved is None:
        ce, stats = _sparse_ce_and_stats(z, t)
        saved = (*stats, ce)
    ce = saved[2]
    if gamma == 0.0:
        wt = wt0
    else:
        om = -o.expm1(-ce)  # 1 - p_t
        wt = wt0 * focal_factor(om, gamma)
    loss = wt * ce

    def grad(g):
        if gamma == 0.0:
            w = wt
        else:
            p_t = o.exp(-ce)
            pos = om > 0.0
            one = o.ones_like(om)
            h = o.where(pos, ce / o.where(pos, om, one), one)
            w = wt * (1.0 + gamma * p_t * h)
        return (g * w)[:, None] * _sparse_backprop(saved, z, t)

    return loss, grad


def _sfocal_logits_forward(settings, z, ids, a=None):
    t = _class_ids(ids, z.shape[-1], settings[1])[0]
    ce, stats = _sparse_ce_and_stats(z, t)
    saved = (*stats, ce)
    return _sfocal_logits(settings, z, ids, a, saved)[0], saved


def _sfocal_logits_backward(settings, g, saved, z, ids, a=None):
    return _sfocal_logits(settings, z, ids, a, saved)[1](g)


SPLIT.update({
    _scce_logits: (_scce_logits_forward, _scce_logits_backward),
    _sfocal_logits: (_sfocal_logits_forward, _sfocal_logits_backward),
})


# --------------------------------------------------------------------------
# The Loss classes.


@register
class SparseCategoricalCrossentropy(Loss):
    """Sparse categorical cross-entropy loss. See `keras_afl.losses.SparseCategoricalCrossentropy`.

    `normalize` (keyword only): None (Keras's `reduction`), "positives" or
    "positives_per_image": the summed loss over the number of positives, the samples of a class
    other than `background_class` (keyword only; required with `normalize`) and not
    `ignore_class`. On JAX under `keras.distribution` the step is one program over the global
    batch, so the count is global."""

    _fn = staticmethod(sparse_categorical_crossentropy)
    _logits_activation = "softmax"
    _unsaved_defaults = {"normalize": None, "background_class": None}
    _reduction_settings = ("normalize", "background_class")

    def __init__(self, from_logits=False, ignore_class=None, axis=-1,
                 reduction="sum_over_batch_size", name="sparse_categorical_crossentropy", dtype=None,
                 *, normalize=None, background_class=None):
        super().__init__(reduction=reduction, name=name, dtype=dtype)
        self.from_logits = check_bool(from_logits, "from_logits")
        self.ignore_class = check_ignore_class(ignore_class)
        self.axis = normalize_axis(axis, None)
        _positives.set_normalization(self, normalize, background_class, reduction)

    def _settings(self):
        return {"from_logits": self.from_logits, "ignore_class": self.ignore_class, "axis": self.axis}

    def _positives_parts(self, y_true, y_pred):
        loss, _, positives = _scce(y_true, y_pred, **self._settings(),
                                   background=self.background_class)
        return loss, positives


@register
class SparseCategoricalFocalLoss(Loss):
    """Sparse categorical focal loss. See `keras_afl.losses.SparseCategoricalFocalLoss`.

    `normalize` (keyword only): None (Keras's `reduction`), "positives" or
    "positives_per_image": the summed loss over the number of positives, the samples of a class
    other than `background_class` (keyword only; required with `normalize`) and not
    `ignore_class`. On JAX under `keras.distribution` the step is one program over the global
    batch, so the count is global."""

    _fn = staticmethod(sparse_categorical_focal)
    _logits_activation = "softmax"
    _unsaved_defaults = {"normalize": None, "background_class": None}
    _reduction_settings = ("normalize", "background_class")

    def __init__(self, gamma=2.0, alpha=None, from_logits=False, ignore_class=None, axis=-1,
                 reduction="sum_over_batch_size", name="sparse_categorical_focal", dtype=None, *,
                 normalize=None, background_class=None):
        super().__init__(reduction=reduction, name=name, dtype=dtype)
        self.gamma = check_number(gamma, "gamma", low=0.0)
        self.alpha = check_weights(alpha, "alpha", high=1.0)
        self.from_logits = check_bool(from_logits, "from_logits")
        self.ignore_class = check_ignore_class(ignore_class)
        self.axis = normalize_axis(axis, None)
        _positives.set_normalization(self, normalize, background_class, reduction)

    def _settings(self):
        return {"gamma": self.gamma, "alpha": tuple_or_value(self.alpha),
                "from_logits": self.from_logits, "ignore_class": self.ignore_class, "axis": self.axis}

    def _positives_parts(self, y_true, y_pred):
        loss, _, positives = _sfocal(y_true, y_pred, **self._settings(),
                                     background=self.background_class)
        return loss, positives
