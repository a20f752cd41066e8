"""What each loss is for -- keras_afl's and Keras's alike -- and the words that say it.

The registry's `Entry.family` / `y_pred` / `labels` and `describe_loss()` use
the vocabularies below; `keras_afl.registry` makes them public. lint, the
command line's configs, plot and check read these facts instead of guessing
them from a loss's name.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
import types

import keras

from keras_afl import _registry_table

LOSS_FAMILIES = types.MappingProxyType({
    "regression": "targets are values; the loss compares them with the prediction",
    "binary": "one yes/no label per output (binary or multi-label classification)",
    "categorical": "one distribution over the classes (the last axis) per sample",
    "sparse": "one integer class id per sample (or per position)",
})
ACTIVATION_FAMILIES = types.MappingProxyType({
    "elementwise": "applied to each value on its own",
    "axis": "normalises the values along an axis (softmax: `axis`)",
})
Y_PRED_KINDS = types.MappingProxyType({
    "probabilities": "in [0, 1]: one per output (binary), or a distribution over the class "
                     "axis (categorical, sparse)",
    "logits": "raw scores that the loss turns into probabilities (sigmoid / softmax)",
    "scores": "raw margin scores, compared with 0 (hinge)",
    "values": "real numbers",
    "non_negative": "values >= 0 (a rate, a count, a size)",
})
LABEL_FORMATS = types.MappingProxyType({
    "real": "real-valued targets",
    "non_negative": "targets >= 0 (counts, sizes)",
    "binary": "0 or 1 per output (soft labels in [0, 1] too)",
    "signed": "-1 or +1 per output (0/1 labels are converted)",
    "one_hot": "one-hot rows, or soft distributions, over the class axis",
    "class_ids": "integer class ids",
})


def check(name, kind, family, y_pred, labels):
    """ValueError unless an entry's purpose uses the vocabularies above."""
    if kind == "loss":
        allowed = (("family", family, LOSS_FAMILIES), ("y_pred", y_pred, Y_PRED_KINDS),
                   ("labels", labels, LABEL_FORMATS))
    else:
        allowed = (("family", family, ACTIVATION_FAMILIES), ("y_pred", y_pred, Y_PRED_KINDS))
        if labels is not None:
            raise ValueError(f"{name!r}: `labels` is for losses; an activation has None, "
                             f"received {labels!r}.")
    for what, value, words in allowed:
        if value not in words:
            raise ValueError(f"{name!r}: `{what}` must be one of {', '.join(words)}; "
                             f"received {value!r}.")


def expects(name, y_pred, has_from_logits, from_logits):
    """The `y_pred` kind a loss reads: `y_pred`, or "logits" for a probabilities loss
    given `from_logits=True`."""
    if not from_logits:
        return y_pred
    if not has_from_logits:
        raise ValueError(f"`from_logits`: {name!r} has no from_logits setting (it reads "
                         f"{y_pred}); received from_logits={from_logits!r}. Fix: leave it out.")
    return "logits" if y_pred == "probabilities" else y_pred


@dataclasses.dataclass(frozen=True)
class LossDescription:
    """What one loss (keras_afl's or Keras's) is for: `keras_afl.registry.describe_loss()`.

    Attributes:
        name: keras_afl's canonical name (`"focal"`) or Keras's function name
            (`"kl_divergence"` for `"kld"`, `KLDivergence`, ...).
        origin: `"keras_afl"` or `"keras"`.
        family: `"regression"`, `"binary"`, `"categorical"` or `"sparse"`
            (`keras_afl.registry.LOSS_FAMILIES`).
        y_pred: What the loss reads as `y_pred` with `from_logits=False`
            (`keras_afl.registry.Y_PRED_KINDS`).
        labels: The format of `y_true` (`keras_afl.registry.LABEL_FORMATS`).
        has_from_logits: Whether the loss has a `from_logits` setting.
        from_logits: That setting in the loss described (False for a name, a
            class or a function: their default).
    """

    name: str
    origin: str
    family: str
    y_pred: str
    labels: str
    has_from_logits: bool = False
    from_logits: bool = False

    def expects(self, from_logits=None):
        """What this loss reads as `y_pred`: `y_pred`, or "logits" with `from_logits=True`
        (default: the loss's own setting)."""
        value = self.from_logits if from_logits is None else from_logits
        return expects(self.name, self.y_pred, self.has_from_logits, value)


def _takes_from_logits(fn):
    try:
        return "from_logits" in inspect.signature(fn).parameters
    except (TypeError, ValueError):  # pragma: no cover - a builtin without a signature
        return False


@functools.lru_cache(maxsize=1)
def keras_rows():
    """[(function, class or None, LossDescription)] for the Keras losses this Keras has."""
    out = []
    for fn_name, cls_name, family, y_pred, labels in _registry_table.KERAS_LOSSES:
        fn = getattr(keras.losses, fn_name, None)
        if fn is None:  # an older Keras without this loss
            continue
        d = LossDescription(fn_name, "keras", family, y_pred, labels, _takes_from_logits(fn))
        check(fn_name, "loss", family, y_pred, labels)
        out.append((fn, getattr(keras.losses, cls_name, None), d))
    return out


def _setting(obj):
    """The from_logits setting of a Loss object (attribute, else its config), or None."""
    value = getattr(obj, "from_logits", None)
    if value is None:
        try:
            value = obj.get_config().get("from_logits")
        except (NotImplementedError, TypeError, AttributeError):
            value = None
    return value


def _match(obj, afl_entries):
    """The LossDescription (from_logits unset) of a loss function, class or object, or None."""
    wrapped = getattr(obj, "fn", None) if isinstance(obj, keras.losses.Loss) else None
    candidates = [(e.function, e.obj, LossDescription(e.name, "keras_afl", e.family, e.y_pred,
                                                      e.labels, e.has_from_logits))
                  for e in afl_entries] + keras_rows()
    for exact in (True, False):
        for fn, cls, d in candidates:
            if exact and (obj is fn or obj is cls or type(obj) is cls
                          or (wrapped is not None and wrapped is fn)):
                return d
            if not exact and cls is not None and (
                    isinstance(obj, cls) or (isinstance(obj, type) and issubclass(obj, cls))):
                return d
    return None


def _names(afl_entries):
    keras_names = {n for n in dir(keras.losses) if not n.startswith("_")} - {
        "get", "serialize", "deserialize", "Loss"}
    return sorted({n for e in afl_entries for n in e.all_names} | keras_names)


def describe(loss, afl_entries):
    """`keras_afl.registry.describe_loss` (see there), given the registry's loss entries."""
    if isinstance(loss, str):
        try:
            obj = keras.losses.get(loss)
        except (ValueError, TypeError):
            obj = None
        if obj is None:
            valid = [n for n in _names(afl_entries) if n != loss]
            close = difflib.get_close_matches(loss, valid, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"Unknown loss name {loss!r}.{hint} Expected a keras_afl loss name "
                "(keras_afl.names('loss')) or one of Keras's (keras.losses.get resolves it)."
            )
    elif isinstance(loss, dict):
        obj = keras.losses.deserialize(loss)
    else:
        obj = loss
    settings = {}
    while isinstance(obj, functools.partial):
        settings = {**obj.keywords, **settings}
        obj = obj.func
    if isinstance(obj, keras.losses.Loss) and "from_logits" not in settings:
        settings["from_logits"] = _setting(obj)
    if not (callable(obj) or isinstance(obj, keras.losses.Loss)):
        raise TypeError(
            f"`loss` must be a loss name, a keras.losses.Loss object or class, or a loss "
            f"function; received {loss!r} (type {type(loss).__name__})."
        )
    d = _match(obj, afl_entries)
    if d is None:
        return None
    return dataclasses.replace(d, from_logits=bool(settings.get("from_logits") or False))
