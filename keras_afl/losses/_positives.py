"""Ignored labels and normalisation by positives: the settings' checks and the reduction.

`normalize="positives"` (RetinaNet's convention): the sum of the per-entry losses over the batch
divided by max(1, number of positive, non-ignored entries) -- the count summed over every replica
under `tf.distribute` (on JAX under `keras.distribution` a step is one program over the global
batch, so the count is global already; PyTorch has no Keras distribution), so that the loss (summed over replicas, as Keras's gradients are) and its
gradients equal the single-device ones. `normalize="positives_per_image"`: each image's sum over
max(1, its own count), then the mean over the images of the global batch. What "positive" means
is each family's own (`_Loss._positives_parts`): a label > 0 (binary), a class other than
`background_class` (softmax losses).
"""

from __future__ import annotations

import math
import numbers

import keras
import numpy as np

from keras_afl._backend import ops

NORMALIZE = (None, "positives", "positives_per_image")
# With `normalize`, `reduction` is replaced by the normalisation: only these are accepted.
_NORMALIZED_REDUCTIONS = ("sum_over_batch_size", "none", None)


def check_binary_ignore(value):
    """`ignore_class` of the binary losses: None or a number outside [0, 1] (ValueError)."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"`ignore_class` must be a number (the label of the entries to leave out, e.g. -1 or "
            f"255) or None; received {value!r} of type {type(value).__name__}.")
    value = float(value)
    if not math.isfinite(value) or 0.0 <= value <= 1.0:
        raise ValueError(
            f"`ignore_class` must be a finite label value outside [0, 1]; received {value:g}. "
            "Labels in [0, 1] (0, 1 and soft labels between) are labels the loss learns from. "
            "Fix: mark the entries to leave out with a value no label takes, e.g. -1 or 255.")
    return int(value) if value.is_integer() else value


def check_normalize(value, reduction, cls_name):
    """`normalize`: None, "positives" or "positives_per_image"; with a reduction it replaces."""
    if value not in NORMALIZE:
        raise ValueError(
            f"{cls_name}: `normalize` must be one of {NORMALIZE}; received {value!r}. "
            "\"positives\" divides the batch's summed loss by its number of positive entries "
            "(RetinaNet); \"positives_per_image\" does so per image, then averages over images.")
    if value is not None and reduction not in _NORMALIZED_REDUCTIONS:
        raise ValueError(
            f"{cls_name}: `reduction`={reduction!r} cannot be combined with normalize={value!r}, "
            "which is the reduction itself. Fix: leave `reduction` at its default, or pass "
            "reduction=None for the per-sample terms whose sum is the loss.")
    return value


def check_background(background_class, normalize, ignore_class, cls_name):
    """`background_class` of the softmax losses: an int >= 0, required with normalize (and only
    meaningful there), different from ignore_class."""
    if background_class is None:
        if normalize is not None:
            raise ValueError(
                f"{cls_name}: normalize={normalize!r} needs `background_class`, the class id "
                "that is not a positive (received None). Fix: pass background_class=0 (or the "
                "id of your background class).")
        return None
    if isinstance(background_class, (bool, np.bool_)) or not isinstance(
            background_class, numbers.Integral):
        raise TypeError(f"{cls_name}: `background_class` must be an int class id or None; "
                        f"received {background_class!r}.")
    background_class = int(background_class)
    if background_class < 0:
        raise ValueError(f"{cls_name}: `background_class` must be a class id >= 0; received "
                         f"{background_class}.")
    if normalize is None:
        raise ValueError(
            f"{cls_name}: `background_class`={background_class} is used only to count positives "
            "for `normalize`, which is None. Fix: pass normalize=\"positives\" (or "
            "\"positives_per_image\"), or leave background_class out.")
    if ignore_class is not None and background_class == ignore_class:
        raise ValueError(
            f"{cls_name}: `background_class` and `ignore_class` are both {background_class}; "
            "a class cannot be learned as background and ignored. Fix: give them different ids.")
    return background_class


def set_normalization(loss, normalize, background_class, reduction):
    """Checks and stores `normalize` and `background_class` on a softmax Loss."""
    name = type(loss).__name__
    loss.normalize = check_normalize(normalize, reduction, name)
    loss.background_class = check_background(background_class, loss.normalize,
                                             getattr(loss, "ignore_class", None), name)


def check_background_in_range(background_class, num_classes, fn_name):
    """At the first call, when the number of classes is known: background_class < K."""
    if background_class is not None and isinstance(num_classes, int) and \
            background_class >= num_classes:
        raise ValueError(
            f"{fn_name}: `background_class`={background_class} is not a class id of y_pred, "
            f"which has {num_classes} classes; expected 0 <= background_class < {num_classes}.")


def _as_weights(sample_weight, losses, dtype):
    """Sample weights broadcast to the per-sample losses: a trailing axis of size 1 squeezed,
    missing trailing axes added (one weight per image weights all its entries)."""
    w = keras.ops.cast(keras.ops.convert_to_tensor(sample_weight), dtype)
    rank = len(losses.shape)
    if len(w.shape) == rank + 1 and w.shape[-1] == 1:
        w = keras.ops.squeeze(w, -1)
    while 0 < len(w.shape) < rank:
        w = w[..., None]
    return w


def reduce(losses, positives, sample_weight, mask, normalize, reduction, dtype):
    """The normalised loss of one replica's batch (its share of the global loss).

    losses: per-sample losses (each a sum over its entries), positives: the number of positive,
    non-ignored entries of each sample, same shape; sample weights multiply the losses (not the
    count); masked samples count for nothing. With reduction None / "none", the per-sample
    terms whose sum is that value.
    """
    k, o = keras.ops, ops()
    losses = k.cast(losses, dtype)
    positives = k.cast(positives, dtype)
    if len(losses.shape) == 0:
        losses, positives = losses[None], positives[None]
    if mask is not None:
        m = k.cast(mask, dtype)
        losses, positives = losses * m, positives * m
    if sample_weight is not None:
        losses = losses * _as_weights(sample_weight, losses, dtype)
    one = k.ones((), dtype)
    if normalize == "positives":
        count = k.maximum(k.stop_gradient(o.global_sum(k.sum(positives))), one)
        return losses / count if reduction in (None, "none") else k.sum(losses) / count
    axes = tuple(range(1, len(losses.shape)))
    per_image = k.stop_gradient(k.sum(positives, axis=axes, keepdims=True) if axes else positives)
    images = k.stop_gradient(o.global_sum(k.cast(k.shape(losses)[0], dtype)))
    terms = losses / (k.maximum(per_image, one) * k.maximum(images, one))
    return terms if reduction in (None, "none") else k.sum(terms)


def combined_mask(in_mask, out_mask):
    if in_mask is not None and out_mask is not None:
        return keras.ops.logical_and(keras.ops.cast(in_mask, "bool"),
                                     keras.ops.cast(out_mask, "bool"))
    return in_mask if in_mask is not None else out_mask
