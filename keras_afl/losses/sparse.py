"""Sparse categorical losses (integer class ids as labels): cross-entropy and focal loss."""

from __future__ import annotations

import keras

from keras_afl import _keras_compat
from keras_afl._grad_utils import check_number, normalize_axis
from keras_afl.losses import _positives
from keras_afl.losses._checks import ClassIdRule
from keras_afl.losses._base import _Loss, _tuple_or_value
from keras_afl.losses._core import (
    _SPLIT, _check_bool, _check_ignore_class, _check_weights, _class_axis_last, _class_sum,
    _custom_loss, _done, _dtype, _flag_samples, _float_input, _focal_factor, _per_class,
    _public_loss, _register, _select, o,
)
from keras_afl.losses.categorical import _softmax_stats, _softmax_times_minus

# What keras_afl.losses exports from this module (its __init__ reads this list).
__all__ = ["sparse_categorical_crossentropy", "sparse_categorical_focal",
           "SparseCategoricalCrossentropy", "SparseCategoricalFocalLoss"]


def _sparse_prepare(y_true, y_pred, from_logits, axis, ignore_class, fn_name):
    """Logits/probabilities (classes last, flattened to (M, K)), the ids as given (flat), the
    id rule (`_checks`) and the samples counted (not `ignore_class`). The loss bodies turn the
    ids into classes (`_class_ids`), inside the compiled kernels on TensorFlow's fused path.
    """
    y_pred = _float_input(y_pred, fn_name)
    rank = len(y_pred.shape)
    axis = normalize_axis(axis, rank)
    x, from_logits = _select(y_pred, from_logits, "softmax", fn_name, axis)
    t = y_true if keras.ops.is_tensor(y_true) else keras.ops.convert_to_tensor(y_true)
    name = keras.backend.standardize_dtype(t.dtype)
    if not name.startswith(("int", "uint", "float", "bfloat")):
        raise TypeError(f"`y_true` must hold integer class ids; received dtype {name}.")
    t_rank = o.rank(t)  # None: unknown while tracing (TensorFlow), checked when the graph runs
    if t_rank == rank and t.shape[axis] == 1:
        t = o.squeeze(t, axis)
        t_rank -= 1
    batch_shape = tuple(x.shape[:axis]) + tuple(x.shape[axis + 1:])
    if t_rank is not None and (t_rank != rank - 1 or any(
            a is not None and b is not None and a != b for a, b in zip(t.shape, batch_shape))):
        raise ValueError(
            f"{fn_name}: `y_true` must hold one class id per sample, with `y_pred`'s shape "
            f"without the class axis ({batch_shape}); received y_true.shape="
            f"{tuple(t.shape)} and y_pred.shape={tuple(x.shape)}."
        )
    dtype = _dtype(x)
    x = _class_axis_last(x, axis)
    static_batch = tuple(x.shape[:-1])
    batch = o.dynamic_shape(x)[:-1]
    x2 = o.reshape(x, (-1, _num_classes(x)))
    ids = o.reshape(t, (-1,))  # as given: a float id must be an integer, not truncated
    valid = None if ignore_class is None else ids != ignore_class
    rule = ClassIdRule(fn_name, ignore_class, x2.shape[-1])
    return x2, ids, rule, from_logits, (batch, static_batch), valid, dtype


def _num_classes(x):
    n = x.shape[-1]
    return n if n is not None else o.dynamic_shape(x)[-1]


def _class_ids(ids, num_classes, ignore_class):
    """(t, counted, ok) per sample from the ids as given: t the class (0 where ignored or
    invalid, so that gathers stay in bounds), counted whether the id is not ignore_class (None
    without one), ok whether it is a valid id or ignored. An invalid id -- out of
    [0, num_classes), or a float that is not an integer -- is flagged in the loss
    (`_flag_samples`) when the label checks are on."""
    t = ids if _dtype(ids) == "int64" else o.cast(ids, "int32")
    if not isinstance(num_classes, int):  # known only when the graph runs (TensorFlow)
        num_classes = o.cast(num_classes, _dtype(t))
    ok = (t >= 0) & (t < num_classes)
    if _dtype(ids).startswith(("float", "bfloat")):
        ok = ok & (ids == o.floor(ids))
    zero = o.zeros_like(t)
    if ignore_class is None:
        return o.where(ok, t, zero), None, ok
    counted = ids != ignore_class
    return o.where(ok & counted, t, zero), counted, ok | ~counted


def _weighted(loss, counted, ok):
    """A per-sample loss, 0 for ignored samples, bad ids flagged (`_flag_samples`)."""
    if counted is not None:
        loss = loss * o.cast(counted, _dtype(loss))
    return _flag_samples(loss, ~ok)


def _alpha_t(a, t):
    return a if a is None or not len(a.shape) else o.take(a, t)


def _unflattened(x2, batch):
    """The static shape of the (M, K) predictions before flattening: batch shape + (K,)."""
    return tuple(batch[1]) + tuple(x2.shape[-1:])


def _sparse_finish(flat_loss, batch, valid, dtype, ids=None, background=None):
    """(per-sample loss, y_pred's dtype, positives or None): with `background` (the losses'
    normalisation), whether each sample is a positive: counted and not of that class."""
    batch, static_batch = batch
    loss = o.set_static_shape(o.reshape(flat_loss, batch), static_batch)
    if valid is not None:
        # Tells keras.losses.Loss to average over the counted samples only.
        _keras_compat.set_backend_keras_mask(loss, o.reshape(valid, batch))
    positives = None
    if background is not None:
        positive = ids != background
        positive = positive if valid is None else positive & valid
        positives = o.reshape(o.cast(positive, _dtype(loss)), batch)
    return loss, dtype, positives


def _per_class_alpha(alpha, x, fn_name, like):
    """Per-class alpha as a tensor: its length checked against y_pred's classes (`like`: its
    static shape, classes last) at the first call (a ValueError naming alpha), or, where the
    number of classes is known only when the graph runs (TensorFlow), by an assertion naming it."""
    k = x.shape[-1]
    if isinstance(alpha, tuple) and k is not None and len(alpha) != k:
        raise ValueError(
            f"{fn_name}: `alpha` has {len(alpha)} values but `y_pred` has {k} classes (its "
            f"shape, classes last: {tuple(like)}); expected one weight per class, or a scalar.")
    a = _per_class(alpha, x, "alpha", fn_name)
    if a is None or not len(a.shape) or k is not None:
        return a
    return o.checked_when_run(a, o.dynamic_shape(x)[-1], len(alpha), (
        f"{fn_name}: `alpha` has {len(alpha)} values but y_pred has a different number of "
        "classes (printed below); give one value per class or a scalar"))


def _sparse_probabilities(settings, p, ids, a=None):
    """(Focal) sparse categorical cross-entropy from probabilities (M, K); see categorical_focal."""
    gamma, eps, ignore_class = settings
    t, counted, ok = _class_ids(ids, _num_classes(p), ignore_class)
    factor = o.scalar(1.0, p) if counted is None else o.cast(counted, _dtype(p))
    a_t = _alpha_t(a, t)
    s = o.maximum(_class_sum(p, keepdims=False), o.scalar(eps, p))
    n_t = o.take_last(p, t) / s
    c = o.clip(n_t, o.scalar(eps, p), o.scalar(1.0 - eps, p))
    lc = o.log(c)
    wt = factor if a_t is None else factor * a_t
    if gamma != 0.0:
        oc = 1.0 - c
        wt = wt * _focal_factor(oc, gamma)
    loss = _flag_samples(-wt * lc, ~ok)

    def grad(g):
        if gamma == 0.0:
            u = -wt / c
        else:
            u = wt * (gamma * lc / oc - 1.0 / c)
        onehot = o.one_hot(t, _num_classes(p), p)
        return (g * u / s)[:, None] * (onehot - n_t[:, None])

    return loss, grad


@_register
@_public_loss
def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False, ignore_class=None, axis=-1):
    """Categorical cross-entropy with integer class ids as labels.

    As `categorical_crossentropy` with one-hot labels, without building them.
    Class ids outside [0, num_classes), and float ids that are not integers
    (1.7 is refused, not truncated), raise an error naming them: eagerly an
    `InvalidLabelsError` (a `ValueError`; on TensorFlow also an
    `InvalidArgumentError`, the class of graph mode's assertion); where nothing
    can raise (XLA, `jax.jit`, `torch.compile`) such samples get a NaN loss and
    gradient instead of a silently wrong value (`keras_afl.losses.InvalidLabelsError`).

    Formula (t = class id):
        logits:        loss = logsumexp(z) - z_t
        probabilities: loss = -log(clip(p_t / sum p))

    Gradient:
        logits:        dloss/dz = softmax(z) - onehot(t)
        probabilities: dloss/dp = (n_t - onehot(t)) / (c_t * sum p),  n = p / sum p, c = clip(n)

    Args:
        y_true: Integer class ids (any numeric dtype), `y_pred`'s shape without
            the class axis (a trailing axis of size 1 is allowed).
        y_pred: Probabilities, or logits with `from_logits=True`.
        from_logits: Whether `y_pred` holds logits.
        ignore_class: A class id whose samples get loss 0 and are left out of
            the average (through a Keras mask), e.g. a "void" label; or None.
        axis: The class axis.

    Returns:
        Tensor of `y_pred`'s shape without `axis`, dtype of `y_pred`.

    Example:
    >>> import keras_afl
    >>> loss = keras_afl.losses.sparse_categorical_crossentropy([2], [[0.0, 0.0, 0.0]],
    ...                                                         from_logits=True)
    >>> print(round(float(loss[0]), 4))  # log 3
    1.0986
    """
    return _done(*_scce(y_true, y_pred, from_logits, ignore_class, axis)[:2])


def _scce(y_true, y_pred, from_logits, ignore_class, axis, background=None):
    """(per-sample loss in the computation dtype, y_pred's dtype, positives or None)."""
    from_logits = _check_bool(from_logits, "from_logits")
    ignore_class = _check_ignore_class(ignore_class)
    x, ids, rule, from_logits, batch, valid, dtype = _sparse_prepare(
        y_true, y_pred, from_logits, axis, ignore_class, "sparse_categorical_crossentropy")
    _positives.check_background_in_range(background, x.shape[-1], "sparse_categorical_crossentropy")

    like = _unflattened(x, batch)
    if not from_logits:
        loss = _custom_loss(_sparse_probabilities, (0.0, keras.config.epsilon(), ignore_class), x, ids,
                            like=like, rule=rule)
    else:
        loss = _custom_loss(_scce_logits, (ignore_class,), x, ids, like=like, rule=rule)
    return _sparse_finish(loss, batch, valid, dtype, ids, background)


def _scce_logits(settings, z, ids):
    loss, saved = _scce_logits_forward(settings, z, ids)
    return loss, lambda g: _scce_logits_backward(settings, g, saved, z, ids)


def _sparse_ce_and_stats(z, t):
    """-log_softmax(z)_t = l - (z_t - m) and the saved (m, l), from `_softmax_stats`: accurate
    for a confidently right sample, where TF's sparse kernel rounds the loss to 0."""
    zm, (m, l) = _softmax_stats(z)
    return l[:, 0] - o.take_last(zm, t), (m, l)


def _sparse_backprop(saved, z, t):
    """softmax(z) - onehot(t) from the saved statistics, accurate where softmax ~ 1."""
    m, l = saved[:2]
    return _softmax_times_minus(z - m, l, 1.0, o.one_hot(t, _num_classes(z), z))


def _scce_logits_forward(settings, z, ids):
    t, counted, ok = _class_ids(ids, _num_classes(z), *settings)
    ce, saved = _sparse_ce_and_stats(z, t)
    return _weighted(ce, counted, ok), saved


def _scce_logits_backward(settings, g, saved, z, ids):
    t, counted, _ = _class_ids(ids, _num_classes(z), *settings)
    g = g if counted is None else g * o.cast(counted, _dtype(g))
    return g[:, None] * _sparse_backprop(saved, z, t)


@_register
@_public_loss
def sparse_categorical_focal(y_true, y_pred, gamma=2.0, alpha=None, from_logits=False,
                             ignore_class=None, axis=-1):
    """Categorical focal loss with integer class ids as labels.

    As `categorical_focal` with one-hot labels; `alpha` is None, a scalar, or
    one weight per class (picked by the label). Class ids out of range are
    handled as in `sparse_categorical_crossentropy`. Dense outputs (segmentation) need no
    one-hot: `[batch, H, W, K]` logits with `[batch, H, W]` ids, `ignore_class=255` for void
    pixels. A per-class `alpha` whose length is not the number of classes raises a ValueError
    naming `alpha` at the first call. Normalisation by the number of non-background samples
    reduces over the batch: `SparseCategoricalFocalLoss(normalize=..., background_class=...)`.

    Formula (t = class id, log p_t = -(logsumexp(z) - z_t)):
        loss = -alpha_t * (1 - p_t)**gamma * log(p_t)

    Gradient (logits; 1 - p_t = -expm1(log p_t), h = -log(p_t) / (1 - p_t), 1 where p_t = 1):
        dloss/dz = alpha_t * (1 - p_t)**gamma * (1 + gamma * p_t * h) * (softmax(z) - onehot(t))
    Probabilities: dloss/dp = u * (onehot(t) - n_t) / sum(p) with
        u = alpha_t * (1 - c_t)**gamma * (gamma * log(c_t) / (1 - c_t) - 1 / c_t).

    Args:
        y_true: Integer class ids, `y_pred`'s shape without the class axis.
        y_pred: Probabilities, or logits with `from_logits=True`.
        gamma: Focusing parameter, >= 0.
        alpha: None, a weight in [0, 1], or one weight in [0, 1] per class.
        from_logits: Whether `y_pred` holds logits.
        ignore_class: A class id to leave out (loss 0, masked), or None.
        axis: The class axis.

    Returns:
        Tensor of `y_pred`'s shape without `axis`, dtype of `y_pred`.

    Example:
    >>> import keras_afl
    >>> loss = keras_afl.losses.sparse_categorical_focal([1], [[0.0, 0.0]], gamma=1.0,
    ...                                                  from_logits=True)
    >>> print(round(float(loss[0]), 4))  # 0.5 * log 2
    0.3466

    Reference:
        Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017.
    """
    return _done(*_sfocal(y_true, y_pred, gamma, alpha, from_logits, ignore_class, axis)[:2])


def _sfocal(y_true, y_pred, gamma, alpha, from_logits, ignore_class, axis, background=None):
    """(per-sample loss in the computation dtype, y_pred's dtype, positives or None)."""
    gamma = check_number(gamma, "gamma", low=0.0)
    alpha = _check_weights(alpha, "alpha", high=1.0)
    from_logits = _check_bool(from_logits, "from_logits")
    ignore_class = _check_ignore_class(ignore_class)
    x, ids, rule, from_logits, batch, valid, dtype = _sparse_prepare(
        y_true, y_pred, from_logits, axis, ignore_class, "sparse_categorical_focal")
    _positives.check_background_in_range(background, x.shape[-1], "sparse_categorical_focal")
    a = _per_class_alpha(alpha, x, "sparse_categorical_focal", _unflattened(x, batch))

    alphas = () if a is None else (a,)
    like = _unflattened(x, batch)
    if not from_logits:
        loss = _custom_loss(_sparse_probabilities, (gamma, keras.config.epsilon(), ignore_class), x, ids,
                            *alphas, like=like, rule=rule)
    else:
        loss = _custom_loss(_sfocal_logits, (gamma, ignore_class), x, ids, *alphas, like=like, rule=rule)
    return _sparse_finish(loss, batch, valid, dtype, ids, background)


def _sfocal_logits(settings, z, ids, a=None, saved=None):
    gamma, ignore_class = settings
    t, counted, ok = _class_ids(ids, _num_classes(z), ignore_class)
    a_t = _alpha_t(a, t)
    wt0 = o.scalar(1.0, z) if counted is None else o.cast(counted, _dtype(z))
    wt0 = wt0 if a_t is None else wt0 * a_t
    if saved is None:
        ce, stats = _sparse_ce_and_stats(z, t)
        saved = (*stats, ce)
    ce = saved[2]
    if gamma == 0.0:
        wt = wt0
    else:
        om = -o.expm1(-ce)  # 1 - p_t
        wt = wt0 * _focal_factor(om, gamma)
    loss = _flag_samples(wt * ce, ~ok)

    def grad(g):
        if gamma == 0.0:
            w = wt
        else:
            p_t = o.exp(-ce)
            pos = om > 0.0
            h = o.where(pos, ce / o.where(pos, om, o.ones_like(om)), o.ones_like(om))
            w = wt * (1.0 + gamma * p_t * h)
        return (g * w)[:, None] * _sparse_backprop(saved, z, t)

    return loss, grad


def _sfocal_logits_forward(settings, z, ids, a=None):
    t = _class_ids(ids, _num_classes(z), settings[1])[0]
    ce, stats = _sparse_ce_and_stats(z, t)
    saved = (*stats, ce)
    return _sfocal_logits(settings, z, ids, a, saved)[0], saved


def _sfocal_logits_backward(settings, g, saved, z, ids, a=None):
    return _sfocal_logits(settings, z, ids, a, saved)[1](g)


_SPLIT.update({
    _scce_logits: (_scce_logits_forward, _scce_logits_backward),
    _sfocal_logits: (_sfocal_logits_forward, _sfocal_logits_backward),
})


# --------------------------------------------------------------------------
# The Loss classes.


@_register
class SparseCategoricalCrossentropy(_Loss):
    """Sparse categorical cross-entropy loss. See `keras_afl.losses.sparse_categorical_crossentropy`.

    Args:
        from_logits: Whether `y_pred` holds logits.
        ignore_class: A class id to leave out of the loss, or None.
        axis: The class axis.
        reduction, name, dtype: As `keras.losses.Loss`.
        normalize: None (Keras's `reduction`), `"positives"` or `"positives_per_image"`: the
            summed loss over the number of positives, the samples (pixels, anchors) of a class
            other than `background_class` and not `ignore_class`, counted over every replica
            (see `keras_afl.losses.FocalLoss`); keyword only.
        background_class: The class id that is not a positive; required with `normalize`, and
            only meaningful there; keyword only.

    Example:
    >>> import keras_afl
    >>> scce = keras_afl.losses.SparseCategoricalCrossentropy(from_logits=True)
    >>> print(round(float(scce([1], [[0.0, 0.0]])), 4))
    0.6931
    """

    _fn = staticmethod(sparse_categorical_crossentropy)
    _logits_activation = "softmax"
    _unsaved_defaults = {"normalize": None, "background_class": None}
    _reduction_settings = ("normalize", "background_class")

    def __init__(self, from_logits=False, ignore_class=None, axis=-1,
                 reduction="sum_over_batch_size", name="sparse_categorical_crossentropy", dtype=None,
                 *, normalize=None, background_class=None):
        super().__init__(reduction=reduction, name=name, dtype=dtype)
        self.from_logits = _check_bool(from_logits, "from_logits")
        self.ignore_class = _check_ignore_class(ignore_class)
        self.axis = normalize_axis(axis, None)
        _positives.set_normalization(self, normalize, background_class, reduction)

    def _settings(self):
        return {"from_logits": self.from_logits, "ignore_class": self.ignore_class, "axis": self.axis}

    def _positives_parts(self, y_true, y_pred):
        loss, _, positives = _scce(y_true, y_pred, **self._settings(),
                                   background=self.background_class)
        return loss, positives


@_register
class SparseCategoricalFocalLoss(_Loss):
    """Sparse categorical focal loss. See `keras_afl.losses.sparse_categorical_focal`.

    Args:
        gamma: Focusing parameter, >= 0.
        alpha: None, a weight in [0, 1], or one weight per class.
        from_logits: Whether `y_pred` holds logits.
        ignore_class: A class id to leave out of the loss, or None.
        axis: The class axis.
        reduction, name, dtype: As `keras.losses.Loss`.
        normalize, background_class: As `SparseCategoricalCrossentropy`'s; keyword only.

    Example:
    >>> import keras_afl
    >>> sf = keras_afl.losses.SparseCategoricalFocalLoss(gamma=1.0, from_logits=True)
    >>> print(round(float(sf([1], [[0.0, 0.0]])), 4))
    0.3466
    """

    _fn = staticmethod(sparse_categorical_focal)
    _logits_activation = "softmax"
    _unsaved_defaults = {"normalize": None, "background_class": None}
    _reduction_settings = ("normalize", "background_class")

    def __init__(self, gamma=2.0, alpha=None, from_logits=False, ignore_class=None, axis=-1,
                 reduction="sum_over_batch_size", name="sparse_categorical_focal", dtype=None, *,
                 normalize=None, background_class=None):
        super().__init__(reduction=reduction, name=name, dtype=dtype)
        self.gamma = check_number(gamma, "gamma", low=0.0)
        self.alpha = _check_weights(alpha, "alpha", high=1.0)
        self.from_logits = _check_bool(from_logits, "from_logits")
        self.ignore_class = _check_ignore_class(ignore_class)
        self.axis = normalize_axis(axis, None)
        _positives.set_normalization(self, normalize, background_class, reduction)

    def _settings(self):
        return {"gamma": self.gamma, "alpha": _tuple_or_value(self.alpha),
                "from_logits": self.from_logits, "ignore_class": self.ignore_class, "axis": self.axis}

    def _positives_parts(self, y_true, y_pred):
        loss, _, positives = _sfocal(y_true, y_pred, **self._settings(),
                                     background=self.background_class)
        return loss, positives
