"""What BCE and the binary focal loss share: their label rule, the weights of ignored entries and
the count of positives (`ignore_class`, `normalize`), the clip and the pieces of the logits."""

from __future__ import annotations

import numpy as np

from keras_afl import _keras_compat
from keras_afl.losses._checks import LabelRule
from keras_afl.losses._core import _class_sum, _dtype, o


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
        return y0, o.scalar(1.0, x)
    keep = o.cast(y0 != ignore, _dtype(x))
    y0 = y0 * keep  # an ignored label reads as 0, so no formula sees it (no NaN to mask)
    if total:
        return y0, keep
    return y0, keep / o.maximum(_class_sum(keep), o.scalar(1.0, x))


def _finish_binary(loss, y, x, ignore, total):
    """The row losses with, for `ignore`, a Keras mask leaving out rows with every entry
    ignored (so that Keras's mean counts the others only), and with `total` the number of
    positive (label > 0), non-ignored entries of each row, for the normalisation."""
    yc = None
    if ignore is not None or total:
        yc = o.cast(y, _dtype(x)) if _dtype(y) != _dtype(x) else y
    keep = None if ignore is None else yc != ignore
    if keep is not None:
        _keras_compat.set_backend_keras_mask(loss, o.any(keep, axis=-1))
    if not total:
        return loss, None
    positive = yc > 0.0 if keep is None else (yc > 0.0) & keep
    return loss, o.sum(o.cast(positive, _dtype(x)), axis=-1)


def _log_max(dtype):
    """log of the largest finite number of the float dtype named `dtype`, less 2 (exp of it is
    finite, and 1 + it too)."""
    return float(np.log(np.finfo(np.float32 if dtype == "bfloat16" else dtype).max)) - 2.0




def _clip_pair(p, eps):
    """Clipped p (in [eps, 1 - eps]) and 1 - (clipped p), Keras's formula to the bit.

    1 - eps rounds in the dtype (0.99999988 in float32), so at p = 1 the complement is
    1.19e-7 in float32, not eps: Keras's loss there is -log(1.19e-7) = 15.94, not 16.12.
    Half precision is computed in float32, where the complement stays > 0.
    """
    cp = o.clip(p, o.scalar(eps, p), o.scalar(1.0 - eps, p))
    return cp, 1.0 - cp


def _smooth_binary(y, ls):
    return y * (1.0 - ls) + 0.5 * ls if ls else y


def _logit_parts(z):
    """The pieces both label sides are built from without cancellation (NUMERICS.md):
    |z|, e = exp(-|z|), log1p(e) and the side of z as 1.0 / 0.0 (pos: z >= 0; npos = 1 - pos),
    so that softplus(z) = pos |z| + log1p(e), softplus(-z) = npos |z| + log1p(e),
    sigmoid(|z|) = 1 / (1 + e) and sigmoid(-|z|) = e / (1 + e).

    Sides are picked by products with pos / npos (exact), which XLA's CPU backend
    vectorises; a where in these kernels measured up to 1.5x slower on TensorFlow.

    |z| is the backend's `side_abs`, not abs(z): the same number, but its derivative is the
    side's sign also at z = 0, where abs'(0) = 0 made the derivative of the backward pass --
    Hessian-vector products, gradient penalties -- 0 instead of its exact value (sigmoid'(0) / N
    for BCE) at zero-initialised logits (TensorFlow: max(z, -z), whose gradient goes to the
    first argument at a tie, keeping XLA's fusions; JAX and PyTorch: z (pos - npos)).
    """
    pos = o.cast(z >= 0.0, _dtype(z))
    npos = 1.0 - pos
    a = o.side_abs(z, pos, npos)
    e = o.exp(-a)
    return a, e, o.log1p(e), pos, npos
