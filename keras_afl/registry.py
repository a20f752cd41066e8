"""THE name table of keras_afl: every activation and loss, its string names and its notes.

`get()` and `names()` read it; so do the command line, the README table and the
tests. On `import keras_afl`, `install()` adds these names to Keras's own
lookup tables (adding only, never replacing a Keras name; loss names are metric
names too, as Keras's are), because Keras 3's
`keras.activations.get` / `keras.losses.get` -- and so `Dense(activation=...)`
and `compile(loss=...)` -- read only those tables: neither
`register_keras_serializable` nor `custom_object_scope` makes a string resolve.
The tables are private Keras API; `keras_afl._keras_compat`, the one module
that touches Keras's internals, finds them.
`use_as_builtins()` temporarily maps Keras's own names ("relu", "mse", ...) to
ours for code you cannot edit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import functools
import inspect
import threading
import warnings

import keras

from keras_afl import _keras_compat, activations, losses

__all__ = ["Entry", "get", "entry", "names", "entries", "install", "use_as_builtins"]


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

    A loss entry's `function` is its per-sample function (`losses.focal` for
    `FocalLoss`), what its names resolve to as metrics.
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

    @property
    def all_names(self):
        return (self.name, *self.aliases)

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


_ACTIVATIONS = (
    Entry(
        "afl_relu", "activation", activations.relu, keras_names=("relu",),
        formula="max(x, 0)", derivative="1 if x > 0 else 0  (0 at x = 0)",
        output_range="[0, inf)",
        properties=("non-saturating for x > 0", "sparse activation (about half the units are zero)",
                    "cheap to compute", "mitigates vanishing gradients", "units can die (x <= 0 forever)"),
        uses=("default hidden-layer activation", "convolutional networks", "deep architectures"),
        pairings=("hidden layers with any loss",),
    ),
    Entry(
        "afl_leaky_relu", "activation", activations.leaky_relu, keras_names=("leaky_relu",),
        formula="x if x > 0 else a*x", derivative="1 if x > 0 else a  (a at x = 0)",
        output_range="(-inf, inf)",
        properties=("prevents dead units", "keeps a gradient for negative inputs",
                    "slope a can be learned (PReLU)"),
        uses=("alternative to ReLU when dead units are a concern", "GAN discriminators"),
        pairings=("hidden layers with any loss",),
    ),
    Entry(
        "afl_sigmoid", "activation", activations.sigmoid, keras_names=("sigmoid",),
        formula="1 / (1 + exp(-x))", derivative="y (1 - y)",
        output_range="(0, 1)",
        properties=("smooth", "probabilistic output", "saturates: vanishing gradient for large |x|",
                    "not zero-centred"),
        uses=("binary and multi-label output layers", "LSTM/GRU gates"),
        pairings=("afl_bce / focal (binary cross-entropy family)",),
    ),
    Entry(
        "afl_tanh", "activation", activations.tanh, keras_names=("tanh",),
        formula="(e^x - e^-x) / (e^x + e^-x)", derivative="1 - y^2",
        output_range="(-1, 1)",
        properties=("zero-centred", "stronger gradient than sigmoid", "saturates for large |x|"),
        uses=("recurrent cells", "shallow networks", "outputs normalised to (-1, 1)"),
        pairings=("hidden layers; as output, MSE on targets in (-1, 1)",),
    ),
    Entry(
        "afl_softmax", "activation", activations.softmax, keras_names=("softmax",),
        formula="exp(x_i - max x) / sum_j exp(x_j - max x)",
        derivative="s_i (delta_ij - s_j); VJP s * (g - <g, s>)",
        output_range="(0, 1), sums to 1 along axis",
        properties=("outputs a probability distribution", "preserves ordering",
                    "emphasises the largest value"),
        uses=("multi-class output layers", "attention weights", "policy networks"),
        pairings=("afl_cce / categorical_focal (categorical cross-entropy family)",),
    ),
    Entry(
        "afl_elu", "activation", activations.elu, keras_names=("elu",),
        formula="x if x > 0 else alpha (exp(x) - 1)", derivative="1 if x > 0 else y + alpha  (1 at x = 0)",
        output_range="(-alpha, inf)",
        properties=("smooth for negative inputs", "mean activation nearer zero (less bias shift)",
                    "no dead units", "costlier than ReLU"),
        uses=("deep networks needing smooth gradients", "alternative to batch normalisation"),
        pairings=("hidden layers with any loss",),
    ),
    Entry(
        "afl_selu", "activation", activations.selu, keras_names=("selu",),
        formula="lambda (x if x > 0 else alpha (exp(x) - 1)), lambda=1.0507, alpha=1.6733",
        derivative="lambda if x > 0 else y + lambda alpha  (lambda at x = 0)",
        output_range="(-lambda alpha, inf)",
        properties=("self-normalising: activations keep mean 0, variance 1",
                    "needs LeCun-normal initialisation", "use AlphaDropout, not Dropout or BatchNorm"),
        uses=("deep fully connected networks without batch normalisation",),
        pairings=("hidden layers with any loss",),
    ),
)

_LOSSES = (
    Entry(
        "afl_mse", "loss", losses.MeanSquaredError, aliases=("afl_mean_squared_error",),
        keras_names=("mse", "mean_squared_error", "MSE", "MeanSquaredError"),
        formula="mean((y_pred - y_true)^2)", derivative="2 (y_pred - y_true) / N",
        output_range="[0, inf)",
        properties=("heavily penalises large errors", "differentiable everywhere", "non-negative",
                    "convex", "sensitive to outliers"),
        uses=("regression", "when outliers are rare or meaningful",
              "when large errors should be heavily penalised", "signal processing"),
        pairings=("linear output layer",),
    ),
    Entry(
        "afl_bce", "loss", losses.BinaryCrossentropy, aliases=("afl_binary_crossentropy",),
        keras_names=("binary_crossentropy", "bce", "BCE", "BinaryCrossentropy"),
        formula="mean(-[w y log p + (1 - y) log(1 - p)]),  p = sigmoid(z)",
        derivative="logits: ((1 + (w - 1) y) sigmoid(z) - w y) / N  (w = pos_weight)",
        output_range="[0, inf)",
        properties=("bounded below by 0, unbounded above",
                    "stronger gradients than MSE for probabilities",
                    "works well with probabilistic predictions", "natural pairing with sigmoid"),
        uses=("binary classification", "GANs", "anomaly detection",
              "multi-label classification (per label)"),
        pairings=("afl_sigmoid output (fused gradient sigmoid(z) - y)",),
    ),
    Entry(
        "afl_cce", "loss", losses.CategoricalCrossentropy, aliases=("afl_categorical_crossentropy",),
        keras_names=("categorical_crossentropy", "CategoricalCrossentropy"),
        formula="-sum(y log softmax(z))", derivative="logits: (sum y) softmax(z) - y",
        output_range="[0, inf)",
        properties=("measures the divergence between label and predicted distributions",
                    "natural pairing with softmax"),
        uses=("single-label multi-class classification",),
        pairings=("afl_softmax output (fused gradient softmax(z) - y)",),
    ),
    Entry(
        "afl_sparse_categorical_crossentropy", "loss", losses.SparseCategoricalCrossentropy,
        keras_names=("sparse_categorical_crossentropy", "SparseCategoricalCrossentropy"),
        formula="logsumexp(z) - z_t  (t = integer class id)",
        derivative="logits: softmax(z) - onehot(t)",
        output_range="[0, inf)",
        properties=("categorical cross-entropy without one-hot labels", "can ignore a void class"),
        uses=("multi-class classification with integer labels", "semantic segmentation"),
        pairings=("afl_softmax output (fused gradient softmax(z) - onehot(t))",),
    ),
    Entry(
        "focal", "loss", losses.FocalLoss, aliases=("binary_focal", "afl_focal"),
        keras_names=("binary_focal_crossentropy", "BinaryFocalCrossentropy"),
        formula="mean(alpha_t (1 - p_t)^gamma CE)",
        derivative="logits: alpha_t (1 - p_t)^gamma [(p - y) - gamma (2y - 1) (p q / (1 - p_t)) CE] / N",
        output_range="[0, inf)",
        properties=("reduces the impact of easy examples", "handles class imbalance",
                    "tunable focus on hard examples via gamma",
                    "generalises cross-entropy (gamma = 0, alpha = None)"),
        uses=("object detection", "highly imbalanced data sets", "dense prediction",
              "medical image segmentation"),
        pairings=("afl_sigmoid output (multi-label)",),
    ),
    Entry(
        "categorical_focal", "loss", losses.CategoricalFocalLoss, aliases=("afl_categorical_focal",),
        keras_names=("categorical_focal_crossentropy", "CategoricalFocalCrossentropy"),
        formula="-sum(alpha y (1 - p)^gamma log p),  p = softmax(z)",
        derivative="logits: p sum(w) - w,  w = alpha y (1 - p)^gamma (1 - gamma p log p / (1 - p))",
        output_range="[0, inf)",
        properties=("reduces the impact of easy examples", "handles class imbalance",
                    "generalises categorical cross-entropy (gamma = 0, alpha = None)"),
        uses=("imbalanced multi-class classification", "dense prediction"),
        pairings=("afl_softmax output",),
    ),
    Entry(
        "sparse_categorical_focal", "loss", losses.SparseCategoricalFocalLoss,
        aliases=("afl_sparse_categorical_focal",),
        formula="-alpha_t (1 - p_t)^gamma log p_t  (t = integer class id)",
        derivative=("logits: alpha_t (1 - p_t)^gamma (1 - gamma p_t log p_t / (1 - p_t)) "
                    "(softmax(z) - onehot(t))"),
        output_range="[0, inf)",
        properties=("categorical focal loss without one-hot labels", "can ignore a void class"),
        uses=("imbalanced multi-class classification with integer labels", "semantic segmentation"),
        pairings=("afl_softmax output",),
    ),
    Entry(
        "afl_huber", "loss", losses.Huber, keras_names=("huber", "Huber"),
        formula="mean(0.5 e^2 if |e| <= delta else delta (|e| - 0.5 delta)),  e = y_pred - y_true",
        derivative="clip(e, -delta, delta) / N",
        output_range="[0, inf)",
        properties=("combines MSE and MAE", "robust to outliers", "differentiable everywhere",
                    "sensitivity adjustable via delta"),
        uses=("regression with outliers", "robust optimisation", "reinforcement learning",
              "time series prediction"),
        pairings=("linear output layer",),
    ),
    Entry(
        "afl_hinge", "loss", losses.Hinge, keras_names=("hinge", "Hinge"),
        formula="mean(max(0, 1 - t y_pred)),  t in {-1, 1}",
        derivative="-t / N if t y_pred <= 1 else 0  (-t / N at the hinge point)",
        output_range="[0, inf)",
        properties=("maximum-margin classification", "non-differentiable at the hinge point",
                    "sparse gradients", "focuses on margin violations"),
        uses=("support vector machines", "maximum-margin classifiers", "structured prediction",
              "online learning"),
        pairings=("linear output layer (raw scores, labels -1/1 or 0/1)",),
    ),
)

_lock = threading.RLock()


def _table():
    return {e.name: e for e in (*_ACTIVATIONS, *_LOSSES)}


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
    return added


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
    signature = inspect.signature(original)

    @functools.wraps(original)
    def compile(self, *args, **kwargs):
        try:
            bound = signature.bind(self, *args, **kwargs)
        except TypeError:  # Keras's own error for a wrong call
            return original(self, *args, **kwargs)
        for arg, resolve in (("loss", _loss_now), ("metrics", _metric_now),
                             ("weighted_metrics", _metric_now)):
            if arg in bound.arguments:
                bound.arguments[arg] = _map_strings(bound.arguments[arg], resolve)
        return original(*bound.args, **bound.kwargs)

    compile._keras_afl_original = original
    return compile


_compile_patch = {"depth": 0, "owner": None}


def _patch_compile(enter):
    """Wraps `keras.Model.compile` while any loss block is open (nested blocks count)."""
    state = _compile_patch
    if enter:
        state["depth"] += 1
        if state["depth"] == 1:
            owner = next(c for c in keras.Model.__mro__ if "compile" in vars(c))
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
            _patch_compile(enter=True)
    try:
        yield
    finally:
        with _lock:
            if kind in (None, "loss"):
                _patch_compile(enter=False)
            for table, n, existed, old in reversed(saved):
                if existed:
                    table[n] = old
                else:
                    table.pop(n, None)
