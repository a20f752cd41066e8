"""The base of the portable `Loss` classes: settings stored and saved exactly as the TensorFlow
classes save them (`keras_afl.losses._base`: same class names, config keys and values, the
same unknown-key error), so a `.keras` file moves between backends; the loss function called
in `call()`; the logits carried across Keras's cast of `y_pred` to the loss dtype.

Reduction, sample weights and masks are `keras.losses.Loss`'s own, except with `normalize`
(`_positives.reduce`, as on TensorFlow). Given float16/bfloat16
predictions, Keras casts them to the loss dtype (float32) before `call()`: the values and
gradients are those of the functions, which compute half precision in float32 anyway.
"""

from __future__ import annotations

import inspect

import keras

from keras_afl._backend import ops
from keras_afl._portable._logits import attach_logits, carried_logits
from keras_afl._portable.losses import _positives
from keras_afl._portable.losses._core import dtype_of, get_mask, set_mask


class Loss(keras.losses.Loss):
    """Base: stores settings, delegates to the function, keeps logits across the dtype cast."""

    _fn = None
    _logits_activation = None  # "sigmoid" / "softmax" for the cross-entropies
    # Settings added after 0.1.0, saved only when not at their default (as on TensorFlow).
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
        sample_weight = self._scalar_weight_broadcast(y_pred, sample_weight)
        return super().__call__(y_true, self._carry_logits(y_pred), sample_weight=sample_weight)

    def _positives_parts(self, y_true, y_pred):
        """(per-sample losses, each a sum over its entries, with any Keras mask; the number of
        positive, non-ignored entries of each sample)."""
        raise NotImplementedError  # pragma: no cover - only classes with `normalize` call it

    def _call_normalized(self, y_true, y_pred, sample_weight):
        """`__call__` with `normalize` (`_positives.reduce`): the sum of the weighted per-sample
        losses over the number of positives of the batch. y_pred is cast to the loss dtype as
        Keras does (keeping its logits and mask). On JAX under `keras.distribution` the step is
        one program over the global batch, so the count is the global one already."""
        in_mask = get_mask(y_pred)
        y_pred = self._carry_logits(y_pred)
        if not keras.ops.is_tensor(y_pred) or dtype_of(y_pred) != \
                keras.backend.standardize_dtype(self.dtype):
            mask = get_mask(y_pred) if keras.ops.is_tensor(y_pred) else None
            y_pred = ops().cast(keras.ops.convert_to_tensor(y_pred), self.dtype)
            if mask is not None:
                set_mask(y_pred, mask)
        if not keras.ops.is_tensor(y_true):
            y_true = keras.ops.convert_to_tensor(y_true, dtype=self.dtype)
        losses, positives = self._positives_parts(y_true, y_pred)
        mask = _positives.combined_mask(in_mask, get_mask(losses))
        return _positives.reduce(losses, positives, sample_weight, mask, self.normalize,
                                 self.reduction, self.dtype)

    def _scalar_weight_broadcast(self, y_pred, sample_weight):
        """A scalar sample_weight as one weight per sample where the loss will carry a mask
        (`ignore_class`, or a masked y_pred), on PyTorch: Keras 3.15's reduction multiplies the
        weight by the mask in place, which fails there for a 0-d weight ("output with shape []
        doesn't match the broadcast shape"). With a mask the two give the same reduction (Keras
        multiplies the weight by the mask first); without one they would not (a scalar weight
        cancels in "mean_with_sample_weight"), so the weight is left alone then."""
        if (sample_weight is None or keras.backend.backend() != "torch"
                or not hasattr(y_pred, "shape") or len(y_pred.shape) < 2
                or (get_mask(y_pred) is None and getattr(self, "ignore_class", None) is None)):
            return sample_weight
        weight = keras.ops.convert_to_tensor(sample_weight, dtype=self.dtype)
        if len(weight.shape):
            return sample_weight
        shape = list(y_pred.shape)
        del shape[getattr(self, "axis", -1)]
        return keras.ops.ones(shape, dtype=self.dtype) * weight

    def _carry_logits(self, y_pred):
        """Casts y_pred to the loss dtype itself, attaching the cast logits (and the mask):
        Keras's cast makes a new tensor without them (mixed precision would lose the shortcut)."""
        if self._logits_activation is None or not keras.ops.is_tensor(y_pred):
            return y_pred
        if dtype_of(y_pred) == keras.backend.standardize_dtype(self.dtype):
            return y_pred
        axis = getattr(self, "axis", -1)
        logits = carried_logits(y_pred, self._logits_activation, axis)
        if logits is None:
            return y_pred
        o = ops()
        mask = get_mask(y_pred)
        out = attach_logits(o.cast(y_pred, self.dtype), o.cast(logits, self.dtype),
                            self._logits_activation,
                            None if self._logits_activation == "sigmoid" else axis)
        if mask is not None:
            set_mask(out, mask)
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
