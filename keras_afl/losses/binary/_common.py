"""What BCE and the binary focal loss share: their label rule, the weights of ignored entries and
the count of positives (`ignore_class`, `normalize`), the clip and the pieces of the logits."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_afl import _keras_compat
from keras_afl.losses._checks import LabelRule
from keras_afl.losses._core import _class_sum


def _unit_labels(fn_name, ignore=None):
    """The label rule of BCE and the binary focal loss: labels in [0, 1] (`_checks`), or the
    loss's `ignore_class`."""
    return LabelRule(
        fn_name, 0.0, 1.0, "labels in [0, 1] (the probability of the positive class)",
        "map the labels into [0, 1] first, e.g. (y + 1) / 2 for -1/+1 labels, and mark entries "
        "to leave out with ignore_class; class ids of more than two classes need a categorical "
        "or sparse categorical loss", None if ignore is None else float(ignore))


def _entry_scale(y0, x, ignore, total):
    """(labels with ignored entries set to 0, the weight of each entry in its row's value).

    The weight is 1/N (the mean over the axis), or 1 with `total` (the sum, for the
    normalisation by positives); with `ignore`, 0 for an ignored entry and, for the mean,
    1/max(1, entries kept) for the others. Only called with `ignore` or `total` set: the
    default path keeps its own expressions.
    """
    if ignore is None:
        return y0, tf.ones([], x.dtype)
    keep = tf.cast(tf.not_equal(y0, ignore), x.dtype)
    y0 = y0 * keep  # an ignored label reads as 0, so no formula sees it (no NaN to mask)
    if total:
        return y0, keep
    return y0, keep / tf.maximum(_class_sum(keep), 1.0)


def _finish_binary(loss, y, x, ignore, total):
    """The row losses with, for `ignore`, a Keras mask leaving out rows with every entry
    ignored (so that Keras's mean counts the others only), and with `total` the number of
    positive (label > 0), non-ignored entries of each row, for the normalisation."""
    yc = None
    if ignore is not None or total:
        yc = tf.cast(y, x.dtype) if y.dtype != x.dtype else y
    keep = None if ignore is None else tf.not_equal(yc, ignore)
    if keep is not None:
        _keras_compat.set_keras_mask(loss, tf.reduce_any(keep, -1))
    if not total:
        return loss, None
    positive = yc > 0.0 if keep is None else (yc > 0.0) & keep
    return loss, tf.reduce_sum(tf.cast(positive, x.dtype), -1)


def _tiny(dtype):
    return np.finfo(dtype.as_numpy_dtype).tiny


def _clip_pair(p, eps):
    """Clipped p (in [eps, 1 - eps]) and 1 - (clipped p), Keras's formula to the bit.

    1 - eps rounds in the dtype (0.99999988 in float32), so at p = 1 the complement is
    1.19e-7 in float32, not eps: Keras's loss there is -log(1.19e-7) = 15.94, not 16.12.
    Half precision is computed in float32, where the complement stays > 0.
    """
    cp = tf.clip_by_value(p, eps, 1.0 - eps)
    return cp, 1.0 - cp


def _smooth_binary(y, ls):
    return y * (1.0 - ls) + 0.5 * ls if ls else y


def _logit_parts(z):
    """The pieces both label sides are built from without cancellation (NUMERICS.md):
    |z|, e = exp(-|z|), log1p(e) and the side of z as 1.0 / 0.0 (pos: z >= 0; npos = 1 - pos),
    so that softplus(z) = pos |z| + log1p(e), softplus(-z) = npos |z| + log1p(e),
    sigmoid(|z|) = 1 / (1 + e) and sigmoid(-|z|) = e / (1 + e).

    Sides are picked by products with pos / npos (exact), which XLA's CPU backend
    vectorises; a tf.where in these kernels measured up to 1.5x slower.

    |z| is tf.maximum(z, -z), not tf.abs(z): the same number, but its derivative is the side's
    sign also at z = 0 (TensorFlow's Maximum gradient goes to the first argument at a tie: +1,
    the side z >= 0, for 0 and -0), where abs'(0) = 0 made the derivative of the backward pass
    -- Hessian-vector products, gradient penalties -- 0 instead of its exact value
    (sigmoid'(0) / N for BCE) at zero-initialised logits. Not z * (pos - npos) as on JAX /
    PyTorch (where max splits a tie): XLA materialises that sign as one more full-size fusion
    (8 fusions for BCE's value and gradient instead of 7, measured); with the maximum the fused
    program keeps abs's 7 fusions, one negation more in the two that read |z|.
    """
    pos = tf.cast(z >= 0.0, z.dtype)
    a = tf.maximum(z, -z)
    e = tf.exp(-a)
    return a, e, tf.math.log1p(e), pos, 1.0 - pos
