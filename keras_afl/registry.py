"""THE name table of keras_afl: every activation and loss, its string names, its notes and
what it is for.

Each `Entry` says what it is for (`family`, `y_pred`, `labels`, `expects()`);
`describe_loss()` and `KERAS_LOSSES` say the same of Keras's own losses, so
lint, the command line and the tests read one table instead of guessing from
names. The rows live in `keras_afl/_registry_table.py`. `get()` and `names()`
read it; so do the command line, the README table and the tests.

On `import keras_afl`, `install()` adds these names to Keras's own lookup tables (adding only, never replacing a Keras name; loss names are metric
names too, as Keras's are), because Keras 3's
`keras.activations.get` / `keras.losses.get` -- and so `Dense(activation=...)`
and `compile(loss=...)` -- read only those tables: neither
`register_keras_serializable` nor `custom_object_scope` makes a string resolve.
The tables are private Keras API; `keras_afl._keras_compat`, the one module
that touches Keras's internals, finds them. It also makes an unknown name an error that
names the closest registered ones (`Dense(activation="afl_eluu")`, `keras.losses.get("focall")`),
and `compile()` reject an unknown loss or metric name at once, where Keras keeps the string and
fails at the first `fit()`.
`use_as_builtins()` temporarily maps Keras's own names ("relu", "mse", ...) to
ours for code you cannot edit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import inspect
import threading
import types
import warnings

import keras

from keras_afl import _keras_compat, _purpose, _registry_table
from keras_afl._purpose import (ACTIVATION_FAMILIES, LABEL_FORMATS, LOSS_FAMILIES,  # noqa: F401
                                Y_PRED_KINDS, LossDescription)

__all__ = ["Entry", "get", "entry", "names", "entries", "install", "use_as_builtins",
           "describe_loss", "LossDescription", "KERAS_LOSSES", "LOSS_FAMILIES",
           "ACTIVATION_FAMILIES", "Y_PRED_KINDS", "LABEL_FORMATS"]


@dataclasses.dataclass(frozen=True)
class Entry:
    """One activation or loss in the table.

    Attributes:
        name: Canonical string name (`afl_relu`, `focal`, ...).
        kind: `"activation"` or `"loss"`.
        obj: The activation function, or the `keras.losses.Loss` subclass.
        aliases: Further string names.
        keras_names: Keras's own names that `use_as_builtins()` maps to `obj`.
        formula, derivative: Plain-text formulas (README table, `keras-afl list`).
        output_range: Range of the output (activations) or of the loss value.
        properties, uses, pairings: Notes from the article behind the project.
        family: What the entry is for. A loss: `"regression"`, `"binary"`,
            `"categorical"` or `"sparse"` (`LOSS_FAMILIES`). An activation:
            `"elementwise"`, or `"axis"` for one that normalises along an axis
            (softmax) (`ACTIVATION_FAMILIES`).
        y_pred: A loss: what it reads as `y_pred` with `from_logits=False`
            (`Y_PRED_KINDS`: "probabilities", "scores", "values", ...;
            `expects()` answers for a `from_logits` setting). An activation:
            what it outputs as a model's `y_pred` ("probabilities" for sigmoid
            and softmax, "non_negative" for ReLU, else "values").
        labels: A loss: the format of `y_true` (`LABEL_FORMATS`: "real",
            "binary" 0/1, "signed" -1/+1, "one_hot", "class_ids", ...); None
            for an activation.

    A loss entry's `function` is its per-sample function (`losses.focal` for
    `FocalLoss`), what its names resolve to as metrics. `describe_loss()`
    gives the same facts for Keras's own losses.

    Example:
    >>> import keras_afl
    >>> e = keras_afl.entry("focal")
    >>> e.family, e.y_pred, e.labels, e.expects(from_logits=True)
    ('binary', 'probabilities', 'binary', 'logits')
    """

    name: str
    kind: str
    obj: object
    aliases: tuple = ()
    keras_names: tuple = ()
    formula: str = ""
    derivative: str = ""
    output_range: str = ""
    properties: tuple = ()
    uses: tuple = ()
    pairings: tuple = ()
    family: str = ""
    y_pred: str = ""
    labels: str | None = None

    def __post_init__(self):
        _purpose.check(self.name, self.kind, self.family, self.y_pred, self.labels)

    @property
    def all_names(self):
        return (self.name, *self.aliases)

    @property
    def has_from_logits(self):
        """Whether the loss has a `from_logits` setting (False for activations)."""
        return self.kind == "loss" and "from_logits" in self.parameters()

    def expects(self, from_logits=False):
        """What this loss reads as `y_pred` with that `from_logits` setting.

        `y_pred`, except that a loss of "probabilities" given `from_logits=True`
        reads "logits". ValueError for `from_logits=True` on a loss without that
        setting, and for an activation.
        """
        if self.kind != "loss":
            raise ValueError(f"{self.name!r} is an {self.kind}, not a loss: it reads no y_pred "
                             f"(it outputs {self.y_pred}).")
        return _purpose.expects(self.name, self.y_pred, self.has_from_logits, from_logits)

    @property
    def function(self):
        """A loss's per-sample function (`keras_afl.losses.focal`, ...): its metric form."""
        if self.kind != "loss":
            raise ValueError(f"{self.name!r} is an {self.kind}, not a loss: it has no loss function.")
        return self.obj._fn

    def parameters(self):
        """Settings with their defaults, read from the function or constructor signature."""
        sig = inspect.signature(self.obj)
        skip = {"x", "y_true", "y_pred", "reduction", "name", "dtype", "kwargs"}
        return {
            p.name: (None if p.default is inspect.Parameter.empty else p.default)
            for p in sig.parameters.values()
            if p.name not in skip and p.kind is not p.VAR_KEYWORD
        }


_ACTIVATIONS = tuple(Entry(*args, **kwargs) for args, kwargs in _registry_table.ACTIVATIONS)
_LOSSES = tuple(Entry(*args, **kwargs) for args, kwargs in _registry_table.LOSSES)

_lock = threading.RLock()


def _lookup():
    out = {}
    for e in (*_ACTIVATIONS, *_LOSSES):
        for n in e.all_names:
            out[n] = e
    return out


def entries(kind=None):
    """All entries (optionally only `"activation"` or `"loss"`), in table order."""
    _check_kind(kind)
    return [e for e in (*_ACTIVATIONS, *_LOSSES) if kind is None or e.kind == kind]


def names(kind=None):
    """Every string name (canonical names and aliases), optionally of one kind.

    Example:
    >>> import keras_afl
    >>> keras_afl.names("activation")[:3]
    ['afl_relu', 'afl_leaky_relu', 'afl_sigmoid']
    """
    return [n for e in entries(kind) for n in e.all_names]


def _check_kind(kind):
    if kind not in (None, "activation", "loss"):
        raise ValueError(f"`kind` must be None, 'activation' or 'loss'; received {kind!r}.")


def _unknown(name, kind):
    valid = names(kind)
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    what = f"{kind} " if kind else ""
    return ValueError(
        f"Unknown keras_afl {what}name {name!r}.{hint} Valid names: {', '.join(valid)}."
    )


def entry(name, kind=None):
    """The `Entry` for a string name or alias; ValueError with the closest name if unknown."""
    _check_kind(kind)
    if not isinstance(name, str):
        raise TypeError(f"`name` must be a string; received {name!r} of type {type(name).__name__}.")
    e = _lookup().get(name)
    if e is None or (kind is not None and e.kind != kind):
        raise _unknown(name, kind)
    return e


def get(identifier, kind=None):
    """Resolves an activation or loss the way Keras's `get()` functions do.

    `None` and callables pass through; dicts are deserialized with
    `keras.saving.deserialize_keras_object`; strings are looked up in the
    table (an activation name gives the function, a loss name gives an instance
    of the loss class with default settings); anything else raises.

    Example:
    >>> import keras_afl
    >>> keras_afl.get("afl_relu") is keras_afl.activations.relu
    True
    """
    if identifier is None or (callable(identifier) and not isinstance(identifier, type)):
        return identifier
    if isinstance(identifier, dict):
        return keras.saving.deserialize_keras_object(identifier)
    if isinstance(identifier, str):
        e = entry(identifier, kind)
        return e.obj() if e.kind == "loss" else e.obj
    if isinstance(identifier, type):
        return identifier()
    raise TypeError(
        f"Cannot interpret {identifier!r} (type {type(identifier).__name__}) as an activation "
        "or loss; pass a string name, a callable, a config dict or None."
    )


KERAS_LOSSES = types.MappingProxyType({d.name: d for _, _, d in _purpose.keras_rows()})
"""What Keras's own losses are for: {Keras's function name: `LossDescription`}.

Every loss of `keras.losses` (function, class and the aliases `keras.losses.get`
resolves: "mse", "mae", "mape", "msle", "kld", "bce", ...) under its function
name, e.g. `KERAS_LOSSES["kl_divergence"]`: categorical, probabilities,
one-hot (distribution) labels. Decided from each loss's docstring and source.
"""


def describe_loss(loss):
    """What a loss is for -- keras_afl's or Keras's, by name, object, class or function.

    The one table that lint, the command line's configs, `plot` and `check`
    read: a keras_afl loss is described by its registry `Entry`, a Keras loss
    by `KERAS_LOSSES`. A `from_logits` setting of the loss given (a `Loss`
    object's, or a `functools.partial`'s keyword) is kept, so `.expects()`
    answers for it.

    Args:
        loss: A loss name (keras_afl's or Keras's, aliases included: "focal",
            "kld", "mse"), a `keras.losses.Loss` object or class, a loss
            function (`functools.partial` of one too), or a serialized loss
            config dict.

    Returns:
        A `LossDescription` (name, origin, family, y_pred, labels,
        has_from_logits, from_logits; `expects()`), or None for a loss that
        neither keras_afl nor Keras ships (a custom loss).

    Raises:
        ValueError: an unknown loss name (with the closest valid one).
        TypeError: `loss` is of a type no loss has.

    Example:
    >>> import keras, keras_afl
    >>> d = keras_afl.registry.describe_loss("kld")
    >>> d.name, d.family, d.y_pred, d.labels
    ('kl_divergence', 'categorical', 'probabilities', 'one_hot')
    >>> keras_afl.registry.describe_loss(keras.losses.BinaryCrossentropy(from_logits=True)).expects()
    'logits'
    """
    return _purpose.describe(loss, entries("loss"))


def _keras_tables():
    """Keras's name tables, {"activation": dict, "loss": dict, "metric": dict}.

    Private Keras API (no public way adds a name to `keras.activations.get`,
    `keras.losses.get` or `keras.metrics.get`): `keras_afl._keras_compat`
    reads them, and raises a RuntimeError naming the Keras version if they moved.
    """
    return _keras_compat.name_tables()


def _keras_loss_functions():
    """Keras's set of its loss functions (private, `keras_afl._keras_compat`), or None.

    Only the direction `EarlyStopping(mode="auto")` gives our loss metrics
    depends on it: where a Keras release moved it, a warning says so and
    everything else works.
    """
    try:
        return _keras_compat.loss_functions()
    except RuntimeError as e:
        warnings.warn(str(e), RuntimeWarning, stacklevel=2)
        return None


def _targets(e):
    """[(Keras table name, object)] an entry's names map to: a loss is a metric too.

    As for Keras's own loss names, `compile(metrics=["focal"])` is the mean of
    the per-sample loss (default settings) over the samples seen.
    """
    if e.kind == "loss":
        return [("loss", e.obj), ("metric", e.function)]
    return [(e.kind, e.obj)]


def install():
    """Adds every keras_afl name to Keras's tables; never replaces a Keras name.

    Activation names go to `keras.activations.get`'s table, loss names to
    `keras.losses.get`'s and, as the per-sample loss function, to
    `keras.metrics.get`'s (so a loss name works in `compile(metrics=...)`, as
    Keras's own do). Returns the names that were added (already-present names
    of ours count as added).
    """
    added = []
    with _lock:
        tables = _keras_tables()
        loss_functions = _keras_loss_functions()
        for e in entries():
            for n in e.all_names:
                ok = True
                for kind, obj in _targets(e):
                    current = tables[kind].get(n)
                    if current is None or current is obj:
                        tables[kind][n] = obj
                    else:
                        ok = False
                if ok:
                    added.append(n)
            if e.kind == "loss" and loss_functions is not None:
                loss_functions.add(e.function)
        from keras_afl import _compile_names  # it reads this module's table

        _compile_names.install_name_checks()
    return added


@contextlib.contextmanager
def use_as_builtins(kind=None):
    """Maps Keras's own names ("relu", "sigmoid", "mse", ...) to keras_afl's, then restores them.

    For code you cannot edit: inside the block, `Dense(8, activation="relu")`
    gets `keras_afl.activations.relu` and `compile(loss="mse")` gets
    `keras_afl.losses.MeanSquaredError`. Activations resolve when the layer is
    built from its string, so build the model inside the block. A `compile()`
    inside the block resolves its loss and metric names at once (Keras itself
    waits until the first `fit()` / `evaluate()`): the loss becomes our
    canonical name (`"mse"` -> `"afl_mse"`) and a metric our loss as a metric
    under the name given (`history["mse"]`), so the model trains, evaluates,
    saves and reloads with keras_afl's losses wherever `fit()` runs. Keras's
    shape-dependent shortcuts `"crossentropy"` / `"ce"` and `"accuracy"` stay
    Keras's. Keras's entries, and `keras.Model.compile`, are restored on exit,
    even after an error.

    Args:
        kind: None (both), "activation" or "loss".

    Example:
    >>> import keras, keras_afl
    >>> with keras_afl.use_as_builtins():
    ...     keras.activations.get("relu") is keras_afl.activations.relu
    True
    >>> keras.activations.get("relu") is keras_afl.activations.relu
    False
    """
    from keras_afl import _compile_names  # it reads this module's table

    _check_kind(kind)
    with _lock:
        tables = _keras_tables()
        saved = []
        for e in entries(kind):
            for table_kind, obj in _targets(e):
                table = tables[table_kind]
                for n in e.keras_names:
                    saved.append((table, n, n in table, table.get(n)))
                    table[n] = obj
        if kind in (None, "loss"):
            _compile_names.patch_compile(enter=True)
    try:
        yield
    finally:
        with _lock:
            if kind in (None, "loss"):
                _compile_names.patch_compile(enter=False)
            for table, n, existed, old in reversed(saved):
                if existed:
                    table[n] = old
                else:
                    table.pop(n, None)
