"""Keras's name lookups and `compile`, taught keras_afl's names (`keras_afl.registry` installs
these): an unknown name's error lists the closest registered names, `compile` checks its loss,
metric and activation names at once (Keras waits for the first `fit`), and `use_as_builtins`
resolves Keras's own names to keras_afl's inside `compile` (`patch_compile`).

Every private Keras access goes through `keras_afl._keras_compat`.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import warnings

import keras

from keras_afl import _keras_compat
from keras_afl.registry import _keras_tables, entries


# Names Keras's compile resolves by the shapes of y_true and y_pred, in any case, not from its
# tables (keras/src/trainers/compile_utils.py: get_loss, get_metric).
_SHAPE_NAMES = {"loss": ("crossentropy", "ce"), "metric": ("accuracy", "acc")}


def _explain_unknown(kind, name):
    """What to say of a name that Keras's `kind` table ("activation", "loss", "metric") lacks:
    the closest registered names (keras_afl's and Keras's, difflib), then keras_afl's names of
    that kind. Keras's lookups add it to their error (`install()`).

    Example:
    >>> import keras_afl._compile_names
    >>> keras_afl._compile_names._explain_unknown("loss", "focall")[:76]
    "Did you mean 'focal' (keras_afl) or 'afl_focal' (keras_afl, alias of focal)?"
    """
    ours = "activation" if kind == "activation" else "loss"
    table = _keras_tables()[kind]
    owner = {n: e for e in entries(ours) for n in e.all_names}
    close = difflib.get_close_matches(name, [n for n in table if isinstance(n, str)], n=3,
                                      cutoff=0.6)

    def who(n):
        e = owner.get(n)
        if e is None:
            return "Keras"
        return "keras_afl" if n == e.name else f"keras_afl, alias of {e.name}"

    hint = " or ".join(f"{c!r} ({who(c)})" for c in close)
    hint = f"Did you mean {hint}? " if close else ""
    return (f"{hint}keras_afl's {ours} names: {', '.join(e.name for e in entries(ours))} "
            f"(with aliases: keras_afl.names({ours!r})); Keras's own: the functions and classes "
            f"of keras.{_KERAS_MODULES[kind]}.")


_KERAS_MODULES = {"activation": "activations", "loss": "losses", "metric": "metrics"}


def _unknown_names(value, table, shape_names):
    """The strings in `value` (a name; a list, tuple or dict of them per output, nested) that
    neither `table` nor `shape_names` resolves; a dict with a "class_name" is a serialized
    object, not names."""
    if isinstance(value, str):
        return [] if value in table or value.lower() in shape_names else [value]
    if isinstance(value, dict):
        value = [] if "class_name" in value else list(value.values())
    if isinstance(value, (list, tuple)):
        return [n for v in value for n in _unknown_names(v, table, shape_names)]
    return []


def _compile_checking_names(original):
    """`Model.compile` that rejects a loss or metric name Keras cannot resolve, with the closest
    names; Keras itself keeps the strings and fails at the first fit() / evaluate()."""
    def check(arguments):
        tables = _keras_tables()
        for arg, kind in (("loss", "loss"), ("metrics", "metric"), ("weighted_metrics", "metric")):
            for name in _unknown_names(arguments.get(arg), tables[kind], _SHAPE_NAMES[kind]):
                raise ValueError(f"compile({arg}=...): Keras has no {kind} named {name!r} (its "
                                 f"first fit() or evaluate() would fail). "
                                 f"{_explain_unknown(kind, name)}")

    compile = _compile_with(original, check)
    compile._keras_afl_checks_names = True
    return compile


def _compile_with(original, before):
    """`Model.compile` that first runs `before` on its arguments by name (a dict it may change)."""
    signature = inspect.signature(original)

    @functools.wraps(original)
    def compile(self, *args, **kwargs):
        try:
            bound = signature.bind(self, *args, **kwargs)
        except TypeError:  # Keras's own error for a wrong call
            return original(self, *args, **kwargs)
        before(bound.arguments)
        return original(*bound.args, **bound.kwargs)

    return compile


def install_name_checks():
    """Keras's errors for unknown names say the closest ones, and `compile()` rejects an unknown
    loss or metric name at once. Where a Keras release moved what this wraps, a warning says so
    and names work as before."""
    try:
        _keras_compat.explain_unknown_names(_explain_unknown)
        owner = _keras_compat.compile_owner()
    except RuntimeError as e:
        warnings.warn(str(e), RuntimeWarning, stacklevel=3)
        return
    compile, inner = vars(owner)["compile"], vars(owner)["compile"]
    while inner is not None:  # already checking, maybe inside a use_as_builtins() block's wrapper
        if getattr(inner, "_keras_afl_checks_names", False):
            return
        inner = getattr(inner, "_keras_afl_original", None)
    owner.compile = _compile_checking_names(compile)


def _map_strings(value, resolve):
    """`value` (a name, or a list / tuple / dict of them, nested) with each string resolved."""
    if isinstance(value, str):
        return resolve(value)
    if type(value) in (list, tuple):
        return type(value)(_map_strings(v, resolve) for v in value)
    if type(value) is dict:
        return {k: _map_strings(v, resolve) for k, v in value.items()}
    return value


def _loss_now(name):
    """A Keras loss name the block maps to one of ours -> our canonical name (else `name`)."""
    e = {x.obj: x for x in entries("loss")}.get(_keras_tables()["loss"].get(name))
    return name if e is None or name in e.all_names else e.name


def _metric_now(name):
    """A Keras metric name the block maps to one of our losses -> that metric, keeping `name`."""
    e = {x.function: x for x in entries("loss")}.get(_keras_tables()["metric"].get(name))
    if e is None or name in e.all_names:
        return name
    return keras.metrics.MeanMetricWrapper(e.function, name=name)


def _compile_resolving_builtins(original):
    """`Model.compile` that resolves the block's names now, not at the first fit/evaluate.

    Keras 3 keeps `compile(loss="mse", metrics=["mse"])` as strings and looks them
    up when `fit()` / `evaluate()` first runs -- after the block may have ended
    and restored Keras's names. Resolved here, the model trains with keras_afl's
    loss wherever it runs, and a saved model stores our name (or the metric).
    """
    def resolve(arguments):
        for arg, now in (("loss", _loss_now), ("metrics", _metric_now),
                         ("weighted_metrics", _metric_now)):
            if arg in arguments:
                arguments[arg] = _map_strings(arguments[arg], now)

    compile = _compile_with(original, resolve)
    compile._keras_afl_original = original
    return compile


_compile_patch = {"depth": 0, "owner": None}


def patch_compile(enter):
    """Wraps `keras.Model.compile` while any loss block is open (nested blocks count)."""
    state = _compile_patch
    if enter:
        state["depth"] += 1
        if state["depth"] == 1:
            owner = _keras_compat.compile_owner()
            state["owner"] = owner
            owner.compile = _compile_resolving_builtins(vars(owner)["compile"])
        return
    state["depth"] -= 1
    if state["depth"] == 0:
        owner = state["owner"]
        current = vars(owner).get("compile")
        original = getattr(current, "_keras_afl_original", None)
        if original is not None:
            owner.compile = original
