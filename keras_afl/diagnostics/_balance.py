"""The `focal-alpha-and-class-weight` rule: a focal loss's `alpha` and `class_weight` (or
per-class sample weights) both balance the classes, so the balance is applied twice."""

from __future__ import annotations

import functools
import inspect
import numbers

import keras
import numpy as np

from keras_afl.diagnostics._findings import _finding

# Keras's focal losses: class or function name -> how alpha is switched on.
_KERAS_FOCAL = {
    "BinaryFocalCrossentropy": "apply_class_balancing",
    "binary_focal_crossentropy": "apply_class_balancing",
    "CategoricalFocalCrossentropy": "always",
    "categorical_focal_crossentropy": "always",
}


def check_class_weight(class_weight):
    """`lint`'s `class_weight`: None, a dict {class: weight} (Keras's `fit(class_weight=...)`) or
    a sequence of per-class weights (those per-class sample weights were built from)."""
    if class_weight is None:
        return None
    if isinstance(class_weight, dict):
        values = list(class_weight.values())
    elif isinstance(class_weight, (list, tuple, np.ndarray)):
        values = list(np.asarray(class_weight, dtype=object).reshape(-1))
    else:
        raise TypeError(
            f"`class_weight` must be None, a dict {{class: weight}} (as given to fit()) or a list "
            f"of per-class weights; received {class_weight!r} "
            f"(type {type(class_weight).__name__}).")
    bad = [v for v in values if isinstance(v, bool) or not isinstance(v, numbers.Real)]
    if bad or not values:
        raise ValueError(
            f"`class_weight` must hold one number per class; received {class_weight!r}. "
            "Fix: pass e.g. class_weight={0: 1.0, 1: 10.0}.")
    return [float(v) for v in values]


def _settings(obj):
    """A loss's settings: a Loss object's config, or a function's defaults (with the keywords
    of a functools.partial)."""
    if isinstance(obj, keras.losses.Loss):
        try:
            config = dict(obj.get_config())
        except (NotImplementedError, TypeError):
            config = {}
        for key in ("alpha", "apply_class_balancing"):
            if hasattr(obj, key):
                config[key] = getattr(obj, key)
        fn = getattr(obj, "fn", None)  # Keras's LossFunctionWrapper: the function's own settings
        return ({**_settings(fn), **config, **getattr(obj, "_fn_kwargs", {})} if fn is not None
                else config)
    keywords = {}
    while isinstance(obj, functools.partial):
        keywords = {**obj.keywords, **keywords}
        obj = obj.func
    try:
        params = inspect.signature(obj).parameters
    except (TypeError, ValueError):
        return keywords
    return {**{p.name: p.default for p in params.values() if p.default is not p.empty}, **keywords}


def class_balance(obj, info):
    """How the loss `obj` (described by lint's `_LossInfo`) weights classes with `alpha`, as
    "alpha=0.25", or None when it applies none (or is no focal loss)."""
    settings = _settings(obj)
    alpha = settings.get("alpha")
    if alpha is None:
        return None
    if info.origin == "keras_afl":
        if info.name not in ("focal", "categorical_focal", "sparse_categorical_focal"):
            return None
        if info.name == "focal" and not settings.get("apply_class_balancing", True):
            return None
    else:
        switch = _KERAS_FOCAL.get(_name(obj))
        if switch is None or (switch != "always" and not settings.get(switch, False)):
            return None
    return f"alpha={list(alpha) if isinstance(alpha, (list, tuple)) else alpha}"


def _name(obj):
    if isinstance(obj, keras.losses.Loss):
        fn = getattr(obj, "fn", None)
        return getattr(fn, "__name__", None) if fn is not None else type(obj).__name__
    while isinstance(obj, functools.partial):
        obj = obj.func
    return getattr(obj, "__name__", "")


def double_balance(out_name, label, balance, weights):
    """The finding, or None when the class weights are all equal (a scale, not a balance)."""
    if weights is None or balance is None or len(set(weights)) < 2:
        return None
    shown = ", ".join(f"{w:g}" for w in weights[:6]) + (", ..." if len(weights) > 6 else "")
    return _finding(
        "focal-alpha-and-class-weight", f"output '{out_name}' + loss {label!r}",
        f"the focal loss weights the classes with {balance} and class_weight ({shown}) weights "
        "them again: the class balance is applied twice, so the rare class is over-weighted by "
        "the product of both (and the focusing term, which already favours hard, often rare, "
        "examples, on top).",
        "keep one: the loss's alpha (tuned with gamma, as in the focal loss paper) with no "
        "class_weight, or class_weight with alpha=None (apply_class_balancing=False for a binary "
        "focal loss).")
