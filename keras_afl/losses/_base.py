"""The base of every keras_afl `Loss` class: settings stored and saved, the loss function called in
`call()`, the logits carried across the dtype cast, half-precision inputs without extra passes.

Each class lives beside its function in its family module (`regression`, `binary`,
`categorical`, `sparse`).
"""

from __future__ import annotations

import inspect

import keras

from keras_afl import _keras_compat
from keras_afl._logits import attach_logits, carried_logits
from keras_afl.losses import _positives
from keras_afl.losses._core import _HALF, _dtype, o

_get_mask = _keras_compat.backend_keras_mask
_set_mask = _keras_compat.set_backend_keras_mask


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
    _logits_activation = None  # "sigmoid" / "softmax" for the cross-entropies
    # Settings added after 0.1.0 (Keras's arguments), saved only when not at their default:
    # files with default settings stay as they were, readable by earlier versions.
    _unsaved_defaults = {}
    # Settings of the class only (how the batch is reduced), not passed to the function.
    _reduction_settings = ()
    normalize = None  # "positives" / "positives_per_image" on the losses that count positives

    def __init__(self, reduction="sum_over_batch_size", name=None, dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self._given_dtype = dtype

    def _settings(self):
        return {}

    def call(self, y_true, y_pred):
        return type(self)._fn(y_true, y_pred, **self._settings())

    def __call__(self, y_true, y_pred, sample_weight=None):
        if self.normalize is not None:
            return self._call_normalized(y_true, y_pred, sample_weight)
        if self._half_input(y_pred):
            return self._call_half(y_true, y_pred, sample_weight)
        sample_weight = self._scalar_weight_broadcast(y_pred, sample_weight)
        return super().__call__(y_true, self._carry_logits(y_pred), sample_weight=sample_weight)

    def _positives_parts(self, y_true, y_pred):
        """(per-sample losses, each a sum over its entries, in the computation dtype with any
        Keras mask; the number of positive, non-ignored entries of each sample)."""
        raise NotImplementedError  # pragma: no cover - only classes with `normalize` call it

    def _call_normalized(self, y_true, y_pred, sample_weight):
        """`__call__` with `normalize` (`_positives.reduce`): the sum of the weighted per-sample
        losses over the number of positives, counted over every replica of `tf.distribute` (on
        JAX under `keras.distribution` the step is one program over the global batch, so the
        count is the global one already). y_pred is cast to the loss dtype as Keras does
        (keeping its logits and mask), half precision excepted."""
        in_mask = _get_mask(y_pred)
        with keras.name_scope(self.name):
            if not self._half_input(y_pred):
                y_pred = self._carry_logits(y_pred)
                if not keras.ops.is_tensor(y_pred) or _dtype(y_pred) != self.dtype:
                    mask = _get_mask(y_pred) if keras.ops.is_tensor(y_pred) else None
                    y_pred = o.cast(keras.ops.convert_to_tensor(y_pred), self.dtype)
                    if mask is not None:
                        _set_mask(y_pred, mask)
            if not keras.ops.is_tensor(y_true):
                y_true = keras.ops.convert_to_tensor(y_true, dtype=self.dtype)
            losses, positives = self._positives_parts(y_true, y_pred)
            mask = _positives.combined_mask(in_mask, _get_mask(losses))
            return _positives.reduce(losses, positives, sample_weight, mask, self.normalize,
                                     self.reduction, self.dtype)

    def _half_input(self, y_pred):
        # Only for our own call(): a subclass that overrides it is promised Keras's casts.
        return (_KERAS_REDUCE is not None and type(self).call is _Loss.call
                and keras.ops.is_tensor(y_pred) and _dtype(y_pred) in _HALF
                and self.dtype == "float32")

    def _call_half(self, y_true, y_pred, sample_weight):
        """`keras.losses.Loss.__call__` for a float16/bfloat16 y_pred, without its casts.

        Keras casts y_pred and y_true to the loss dtype (float32) first: a pass over
        memory each way for the predictions and their gradient. The loss functions
        compute half-precision inputs in float32 anyway, so here they get y_pred (and
        tensor labels) as they are and cast inside their kernels; the values and
        gradients are the same as after Keras's casts. Masks, sample weights and the
        reduction are Keras's own.
        """
        reduce, get_mask = _KERAS_REDUCE, _get_mask
        in_mask = get_mask(y_pred)
        with keras.name_scope(self.name):
            if not keras.ops.is_tensor(y_true):
                y_true = keras.ops.convert_to_tensor(y_true, dtype=self.dtype)
            losses = type(self)._fn.in_compute_dtype(y_true, y_pred, **self._settings())[0]
            mask = _positives.combined_mask(in_mask, get_mask(losses))
            return reduce(losses, sample_weight=sample_weight, mask=mask, reduction=self.reduction,
                          dtype=self.dtype)

    def _scalar_weight_broadcast(self, y_pred, sample_weight):
        """A scalar sample_weight as one weight per sample where the loss will carry a mask
        (`ignore_class`, or a masked y_pred), where the backend needs it (PyTorch: Keras 3.15's
        reduction multiplies the weight by the mask in place, which fails for a 0-d weight). With
        a mask the two give the same reduction (Keras multiplies the weight by the mask first);
        without one they would not (a scalar weight cancels in "mean_with_sample_weight"), so
        the weight is left alone then."""
        if (sample_weight is None or not o.SCALAR_WEIGHT_WITH_MASK_FAILS
                or not hasattr(y_pred, "shape") or len(y_pred.shape) < 2
                or (_get_mask(y_pred) is None and getattr(self, "ignore_class", None) is None)):
            return sample_weight
        weight = keras.ops.convert_to_tensor(sample_weight, dtype=self.dtype)
        if len(weight.shape):
            return sample_weight
        shape = list(y_pred.shape)
        del shape[getattr(self, "axis", -1)]
        return keras.ops.ones(shape, dtype=self.dtype) * weight

    def _carry_logits(self, y_pred):
        """Casts y_pred to the loss dtype itself, attaching the cast logits (and mask).

        Keras's `Loss.__call__` casts `y_pred` with `ops.convert_to_tensor`, which makes a new
        tensor without `_keras_logits`: under mixed precision the stable logits path would be
        lost. Casting here keeps it, and Keras's cast then returns the same tensor.
        """
        activation = self._logits_activation
        if activation is None or not keras.ops.is_tensor(y_pred) or _dtype(y_pred) == self.dtype:
            return y_pred
        axis = getattr(self, "axis", -1)
        logits = carried_logits(y_pred, activation, axis)
        if logits is None:
            return y_pred
        mask = _get_mask(y_pred)
        out = attach_logits(o.cast(y_pred, self.dtype), o.cast(logits, self.dtype), activation,
                            None if activation == "sigmoid" else axis)
        if mask is not None:
            _set_mask(out, mask)
        return out

    def get_config(self):
        config = super().get_config()
        config["dtype"] = (None if self._given_dtype is None
                           else keras.dtype_policies.get(self._given_dtype).name)
        settings = {**self._settings(), **{k: getattr(self, k) for k in self._reduction_settings}}
        config.update({k: v for k, v in settings.items()
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
