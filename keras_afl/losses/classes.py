"""The `keras.losses.Loss` subclasses: settings stored, the loss functions called in `call()`."""

from __future__ import annotations

import inspect

import keras
import tensorflow as tf

from keras_afl import _keras_compat
from keras_afl._grad_utils import check_number, normalize_axis
from keras_afl.activations import _attach_logits
from keras_afl.losses._core import (
    _HALF, _check_axis, _check_bool, _check_ignore_class, _check_weights, _float32_result,
    _register,
)
from keras_afl.losses._logits import _carried_logits
from keras_afl.losses.binary import _LABEL_FORMATS, binary_crossentropy, focal, hinge
from keras_afl.losses.categorical import categorical_crossentropy, categorical_focal
from keras_afl.losses.regression import huber, mean_squared_error
from keras_afl.losses.sparse import sparse_categorical_crossentropy, sparse_categorical_focal


def _keras_reduce():
    """Keras's loss reduction (private: `keras_afl._keras_compat.loss_reduction`), or None.

    Used by the Loss classes' half-precision path; without it the classes call
    `keras.losses.Loss.__call__` (same results, with its casts).
    """
    try:
        return _keras_compat.loss_reduction()
    except RuntimeError:  # pragma: no cover - a Keras that moved it
        return None


_KERAS_REDUCE = _keras_reduce()


class _Loss(keras.losses.Loss):
    """Base: stores settings, delegates to the function, keeps logits across the dtype cast."""

    _fn = None
    _logits_op = None  # "Sigmoid" / "Softmax" for the cross-entropies
    # Settings added after 0.1.0 (Keras's arguments), saved only when not at their default:
    # files with default settings stay as they were, readable by earlier versions.
    _unsaved_defaults = {}

    def __init__(self, reduction="sum_over_batch_size", name=None, dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self._given_dtype = dtype

    def _settings(self):
        return {}

    def call(self, y_true, y_pred):
        return type(self)._fn(y_true, y_pred, **self._settings())

    def __call__(self, y_true, y_pred, sample_weight=None):
        if self._half_input(y_pred):
            return self._call_half(y_true, y_pred, sample_weight)
        return super().__call__(y_true, self._carry_logits(y_pred), sample_weight=sample_weight)

    def _half_input(self, y_pred):
        # Only for our own call(): a subclass that overrides it is promised Keras's casts.
        return (_KERAS_REDUCE is not None and type(self).call is _Loss.call and tf.is_tensor(y_pred)
                and y_pred.dtype in _HALF and tf.as_dtype(self.dtype) == tf.float32)

    def _call_half(self, y_true, y_pred, sample_weight):
        """`keras.losses.Loss.__call__` for a float16/bfloat16 y_pred, without its casts.

        Keras casts y_pred and y_true to the loss dtype (float32) first: a pass over
        memory each way for the predictions and their gradient. The loss functions
        compute half-precision inputs in float32 anyway, so here they get y_pred (and
        tensor labels) as they are and cast inside their kernels; the values and
        gradients are the same as after Keras's casts. Masks, sample weights and the
        reduction are Keras's own.
        """
        reduce, get_mask = _KERAS_REDUCE, _keras_compat.keras_mask
        in_mask = get_mask(y_pred)
        with tf.name_scope(self.name):
            if not tf.is_tensor(y_true):
                y_true = tf.convert_to_tensor(y_true, dtype=self.dtype)
            with _float32_result():
                losses = self.call(y_true, y_pred)
            out_mask = get_mask(losses)
            if in_mask is not None and out_mask is not None:
                mask = in_mask & out_mask
            else:
                mask = in_mask if in_mask is not None else out_mask
            return reduce(losses, sample_weight=sample_weight, mask=mask, reduction=self.reduction,
                          dtype=self.dtype)

    def _carry_logits(self, y_pred):
        """Casts y_pred to the loss dtype itself, attaching the cast logits (and mask).

        Keras's `Loss.__call__` casts `y_pred` with `ops.convert_to_tensor`, which
        makes a new tensor without `_keras_logits`: under mixed precision the
        stable logits path would be lost. Casting here keeps it, and Keras's cast
        then returns the same tensor.
        """
        if self._logits_op is None or not tf.is_tensor(y_pred):
            return y_pred
        if tf.as_dtype(y_pred.dtype) == tf.as_dtype(self.dtype):
            return y_pred
        axis = getattr(self, "axis", -1)
        logits = _carried_logits(y_pred, self._logits_op, axis)
        if logits is None:
            return y_pred
        mask = _keras_compat.keras_mask(y_pred)
        activation = self._logits_op.lower()
        out = _attach_logits(tf.cast(y_pred, self.dtype), tf.cast(logits, self.dtype), activation,
                             None if activation == "sigmoid" else axis)
        if mask is not None and not _keras_compat.set_keras_mask(out, mask):
            return y_pred  # pragma: no cover - tensor types that refuse attributes
        return out

    def get_config(self):
        config = super().get_config()
        config["dtype"] = (None if self._given_dtype is None
                           else keras.dtype_policies.get(self._given_dtype).name)
        config.update({k: v for k, v in self._settings().items()
                       if k not in self._unsaved_defaults or v != self._unsaved_defaults[k]})
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        dtype = config.get("dtype")
        if isinstance(dtype, dict):  # a serialized DTypePolicy
            config["dtype"] = keras.dtype_policies.deserialize(dtype)
        valid = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
        unknown = sorted(set(config) - set(valid))
        if unknown:
            raise ValueError(
                f"{cls.__name__}.from_config: unknown setting(s) {unknown} in config {config!r}; "
                f"expected only {valid}. The file may come from another keras_afl version: "
                "remove the unknown keys or upgrade keras_afl."
            )
        return cls(**config)


def _tuple_or_value(v):
    return list(v) if isinstance(v, tuple) else v


@_register
class MeanSquaredError(_Loss):
    """Mean squared error loss. See `keras_afl.losses.mean_squared_error`.

    Args:
        reduction, name, dtype: As `keras.losses.Loss` (see the module docstring).

    Example:
    >>> import keras_afl
    >>> print(round(float(keras_afl.losses.MeanSquaredError()([[0.0, 1.0]], [[1.0, 1.0]])), 4))
    0.5
    """

    _fn = staticmethod(mean_squared_error)

    def __init__(self, reduction="sum_over_batch_size", name="mean_squared_error", dtype=None):
        super().__init__(reduction=reduction, name=name, dtype=dtype)


@_register
class Huber(_Loss):
    """Huber loss. See `keras_afl.losses.huber`.

    Unlike Keras 3's `Huber`, `delta` is saved in the config and survives a
    `.keras` save/reload.

    Args:
        delta: Where the loss turns from quadratic to linear; > 0.
        reduction, name, dtype: As `keras.losses.Loss`.

    Example:
    >>> import keras_afl
    >>> print(round(float(keras_afl.losses.Huber(delta=1.0)([[0.0, 0.0]], [[0.5, 3.0]])), 4))
    1.3125
    """

    _fn = staticmethod(huber)

    def __init__(self, delta=1.0, reduction="sum_over_batch_size", name="huber", dtype=None):
        super().__init__(reduction=reduction, name=name, dtype=dtype)
        self.delta = check_number(delta, "delta", low=0.0, low_inclusive=False)

    def _settings(self):
        return {"delta": self.delta}


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


@_register
class BinaryCrossentropy(_Loss):
    """Binary cross-entropy loss. See `keras_afl.losses.binary_crossentropy`.

    Args:
        from_logits: Whether `y_pred` holds logits.
        label_smoothing: In [0, 1].
        pos_weight: None, a number >= 0, or one per output (as PyTorch's `BCEWithLogitsLoss`).
        reduction, name, dtype: As `keras.losses.Loss`.
        axis: The axis to average over (an int), as Keras's `axis`; keyword only.

    Example:
    >>> import keras_afl
    >>> bce = keras_afl.losses.BinaryCrossentropy(from_logits=True, pos_weight=2.0)
    >>> print(round(float(bce([[1.0]], [[0.0]])), 4))  # 2 log 2
    1.3863
    """

    _fn = staticmethod(binary_crossentropy)
    _logits_op = "Sigmoid"
    _unsaved_defaults = {"axis": -1}

    def __init__(self, from_logits=False, label_smoothing=0.0, pos_weight=None,
                 reduction="sum_over_batch_size", name="binary_crossentropy", dtype=None, *,
                 axis=-1):
        super().__init__(reduction=reduction, name=name, dtype=dtype)
        self.from_logits = _check_bool(from_logits, "from_logits")
        self.label_smoothing = check_number(label_smoothing, "label_smoothing", low=0.0, high=1.0)
        self.pos_weight = _check_weights(pos_weight, "pos_weight")
        self.axis = _check_axis(axis)

    def _settings(self):
        return {"from_logits": self.from_logits, "label_smoothing": self.label_smoothing,
                "pos_weight": _tuple_or_value(self.pos_weight), "axis": self.axis}


@_register
class FocalLoss(_Loss):
    """Binary (multi-label) focal loss. See `keras_afl.losses.focal`.

    `alpha` weights the positives (alpha for y = 1, 1 - alpha for y = 0) and is
    applied unless None or `apply_class_balancing=False`; Keras's
    `BinaryFocalCrossentropy` has the same argument but defaults to False.

    Args:
        gamma: Focusing parameter, >= 0.
        alpha: Weight of the positive class in [0, 1], or None.
        from_logits: Whether `y_pred` holds logits.
        label_smoothing: In [0, 1].
        reduction, name, dtype: As `keras.losses.Loss`.
        apply_class_balancing: Whether `alpha` is applied (default True); keyword only.
        axis: The axis to average over (an int), as Keras's `axis`; keyword only.

    Example:
    >>> import keras_afl
    >>> fl = keras_afl.losses.FocalLoss(gamma=2.0, alpha=None, from_logits=True)
    >>> print(round(float(fl([[1.0]], [[0.0]])), 4))
    0.1733
    """

    _fn = staticmethod(focal)
    _logits_op = "Sigmoid"
    _unsaved_defaults = {"apply_class_balancing": True, "axis": -1}

    def __init__(self, gamma=2.0, alpha=0.25, from_logits=False, label_smoothing=0.0,
                 reduction="sum_over_batch_size", name="focal", dtype=None, *,
                 apply_class_balancing=True, axis=-1):
        super().__init__(reduction=reduction, name=name, dtype=dtype)
        self.gamma = check_number(gamma, "gamma", low=0.0)
        self.alpha = check_number(alpha, "alpha", low=0.0, high=1.0, allow_none=True)
        self.from_logits = _check_bool(from_logits, "from_logits")
        self.label_smoothing = check_number(label_smoothing, "label_smoothing", low=0.0, high=1.0)
        self.apply_class_balancing = _check_bool(apply_class_balancing, "apply_class_balancing")
        self.axis = _check_axis(axis)

    def _settings(self):
        return {"gamma": self.gamma, "alpha": self.alpha, "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing,
                "apply_class_balancing": self.apply_class_balancing, "axis": self.axis}


@_register
class CategoricalCrossentropy(_Loss):
    """Categorical cross-entropy loss. See `keras_afl.losses.categorical_crossentropy`.

    Args:
        from_logits: Whether `y_pred` holds logits.
        label_smoothing: In [0, 1].
        axis: The class axis.
        reduction, name, dtype: As `keras.losses.Loss`.

    Example:
    >>> import keras_afl
    >>> cce = keras_afl.losses.CategoricalCrossentropy(from_logits=True)
    >>> print(round(float(cce([[0.0, 1.0]], [[0.0, 0.0]])), 4))
    0.6931
    """

    _fn = staticmethod(categorical_crossentropy)
    _logits_op = "Softmax"

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1,
                 reduction="sum_over_batch_size", name="categorical_crossentropy", dtype=None):
        super().__init__(reduction=reduction, name=name, dtype=dtype)
        self.from_logits = _check_bool(from_logits, "from_logits")
        self.label_smoothing = check_number(label_smoothing, "label_smoothing", low=0.0, high=1.0)
        self.axis = normalize_axis(axis, None)

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

    Example:
    >>> import keras_afl
    >>> cf = keras_afl.losses.CategoricalFocalLoss(gamma=1.0, from_logits=True)
    >>> print(round(float(cf([[0.0, 1.0]], [[0.0, 0.0]])), 4))  # 0.5 * log 2
    0.3466
    """

    _fn = staticmethod(categorical_focal)
    _logits_op = "Softmax"

    def __init__(self, gamma=2.0, alpha=None, from_logits=False, label_smoothing=0.0, axis=-1,
                 reduction="sum_over_batch_size", name="categorical_focal", dtype=None):
        super().__init__(reduction=reduction, name=name, dtype=dtype)
        self.gamma = check_number(gamma, "gamma", low=0.0)
        self.alpha = _check_weights(alpha, "alpha", high=1.0)
        self.from_logits = _check_bool(from_logits, "from_logits")
        self.label_smoothing = check_number(label_smoothing, "label_smoothing", low=0.0, high=1.0)
        self.axis = normalize_axis(axis, None)

    def _settings(self):
        return {"gamma": self.gamma, "alpha": _tuple_or_value(self.alpha),
                "from_logits": self.from_logits, "label_smoothing": self.label_smoothing,
                "axis": self.axis}


@_register
class SparseCategoricalCrossentropy(_Loss):
    """Sparse categorical cross-entropy loss. See `keras_afl.losses.sparse_categorical_crossentropy`.

    Args:
        from_logits: Whether `y_pred` holds logits.
        ignore_class: A class id to leave out of the loss, or None.
        axis: The class axis.
        reduction, name, dtype: As `keras.losses.Loss`.

    Example:
    >>> import keras_afl
    >>> scce = keras_afl.losses.SparseCategoricalCrossentropy(from_logits=True)
    >>> print(round(float(scce([1], [[0.0, 0.0]])), 4))
    0.6931
    """

    _fn = staticmethod(sparse_categorical_crossentropy)
    _logits_op = "Softmax"

    def __init__(self, from_logits=False, ignore_class=None, axis=-1,
                 reduction="sum_over_batch_size", name="sparse_categorical_crossentropy", dtype=None):
        super().__init__(reduction=reduction, name=name, dtype=dtype)
        self.from_logits = _check_bool(from_logits, "from_logits")
        self.ignore_class = _check_ignore_class(ignore_class)
        self.axis = normalize_axis(axis, None)

    def _settings(self):
        return {"from_logits": self.from_logits, "ignore_class": self.ignore_class, "axis": self.axis}


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

    Example:
    >>> import keras_afl
    >>> sf = keras_afl.losses.SparseCategoricalFocalLoss(gamma=1.0, from_logits=True)
    >>> print(round(float(sf([1], [[0.0, 0.0]])), 4))
    0.3466
    """

    _fn = staticmethod(sparse_categorical_focal)
    _logits_op = "Softmax"

    def __init__(self, gamma=2.0, alpha=None, from_logits=False, ignore_class=None, axis=-1,
                 reduction="sum_over_batch_size", name="sparse_categorical_focal", dtype=None):
        super().__init__(reduction=reduction, name=name, dtype=dtype)
        self.gamma = check_number(gamma, "gamma", low=0.0)
        self.alpha = _check_weights(alpha, "alpha", high=1.0)
        self.from_logits = _check_bool(from_logits, "from_logits")
        self.ignore_class = _check_ignore_class(ignore_class)
        self.axis = normalize_axis(axis, None)

    def _settings(self):
        return {"gamma": self.gamma, "alpha": _tuple_or_value(self.alpha),
                "from_logits": self.from_logits, "ignore_class": self.ignore_class, "axis": self.axis}
