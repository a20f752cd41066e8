"""The YAML config of `keras-afl train`: loading and whole-file validation.

`load(path)` reads a config, checks every key, type, range and name before
anything trains, and returns the normalised config (defaults filled in) that
`keras-afl train` runs and writes into its summary. Any problem raises a
`ConfigError` whose message names the file and the key:

    configs/x.yaml: model.layers[2].activation: unknown activation 'afl_rleu'; did you mean 'afl_relu'?

The schema is `SCHEMA` below (what `keras-afl train --help` prints; a string
constant, not this docstring, so that the help survives `python -OO`).
`loss_kind` says what a loss expects (its targets, its `y_pred`) for the rest
of the app, read from the registry (`keras_afl.registry.describe_loss`).
"""

from __future__ import annotations

import inspect
import os
import re

from keras_afl.cli import yaml_file
from keras_afl.cli.common import ConfigError, did_you_mean

SCHEMA = """\
    name: str                       (default: the file name without .yaml)
    description: str                (optional, copied to the summary)
    seed: int >= 0                  (default 0)
    lint: bool                      (default false; print keras_afl.lint's findings for each
                                     model before training, store them in summary.json; an
                                     error finding stops the run before training either way)
    activation_stats: bool          (default false; keras_afl.callbacks.ActivationStats on a
                                     validation batch: per-epoch dead / saturated fractions,
                                     mean and std of each activation, in the history)
    data:
      source: breast_cancer | digits | iris | wine | diabetes | outliers | csv
      path: FILE.csv                (csv only; relative to the config file)
      target: COLUMN                (csv only)
      task: binary | multiclass | regression   (csv only; inferred if omitted)
      positive_class: NAME or INDEX (classification: one class vs the rest -> binary)
      positive_fraction: (0, 0.5]   (binary: subsample positives to this fraction)
      n_samples, n_features, noise, outlier_fraction, outlier_scale   (outliers only)
      test_split: (0, 0.9]          (default 0.25; held out, stratified; metrics are on it)
      standardize: bool             (default true; features, and regression targets)
    model:
      layers:                       (in order; the input layer is added for you)
        - {type: dense, units: INT | output, activation: NAME, kernel_initializer: NAME, use_bias: bool}
          (type: dense may be left out; units: output = 1, or the number of classes)
        - {type: prelu} | {type: leaky_relu, negative_slope: F} | {type: elu, alpha: F}
        - {type: relu | sigmoid | tanh | selu | softmax}      (keras_afl layers)
        - {type: activation, activation: NAME}
        - {type: dropout | alpha_dropout, rate: [0, 1)} | {type: batch_normalization}
    training:
      loss: NAME | {name: NAME, params: {...}}      (exactly one of loss / compare)
      compare: [LOSS, LOSS, ...]    (train the same model once per loss, same seed)
      optimizer: NAME | {name: NAME, learning_rate: F}   (default adam, 0.001)
      epochs: int >= 1              (default 20)
      batch_size: int >= 1          (default 32)
      validation_split: [0, 0.9]    (default 0.2, stratified; 0 for none)

    An experiment whose model is not a stack of layers (a detector, a U-Net) runs
    an example script instead of `data.source` and `model.layers`:
    example: ../examples/detect_shapes.py   (relative to the config file; see
                                     configs/detector.yaml and configs/segmenter.yaml)
    data: {SETTING: VALUE}          (the script's DATA settings; the others keep defaults)
    model: {SETTING: VALUE}         (the script's MODEL settings)
    training: loss / compare, optimizer, epochs, batch_size   (as above; the script holds
                                     out its own test split, reports its own metrics)

Activation and loss names are keras_afl's string names or Keras's own. Targets
are encoded for the loss (one-hot for categorical losses). Test metrics
(scikit-learn): binary PR-AUC, ROC-AUC, F1, minority-class recall, accuracy
(threshold 0.5 on probabilities, 0 on hinge scores and logits); multiclass
accuracy, macro F1, balanced accuracy, lowest class recall; regression MAE,
RMSE, R^2 in the target's units. The `outliers` source adds its outliers to the
train and validation targets only, so the test error measures the clean signal.
"""

SOURCES = ("breast_cancer", "digits", "iris", "wine", "diabetes", "outliers", "csv")
TASKS = ("binary", "multiclass", "regression")
NATURAL_TASK = {"breast_cancer": "binary", "digits": "multiclass", "iris": "multiclass",
                "wine": "multiclass", "diabetes": "regression", "outliers": "regression"}

_TOP_KEYS = ("name", "description", "seed", "lint", "activation_stats", "example", "data",
             "model", "training")
_DATA_COMMON = ("source", "positive_class", "positive_fraction", "test_split", "standardize")
_DATA_ONLY = {
    "csv": ("path", "target", "task"),
    "outliers": ("n_samples", "n_features", "noise", "outlier_fraction", "outlier_scale"),
}
_TRAINING_KEYS = ("loss", "compare", "optimizer", "epochs", "batch_size", "validation_split")

# layer type -> its keys (besides `type`)
LAYER_KEYS = {
    "dense": ("units", "activation", "kernel_initializer", "use_bias"),
    "activation": ("activation",),
    "dropout": ("rate",),
    "alpha_dropout": ("rate",),
    "batch_normalization": (),
    "prelu": (),
    "leaky_relu": ("negative_slope",),
    "elu": ("alpha",),
    "relu": (),
    "sigmoid": (),
    "tanh": (),
    "selu": (),
    "softmax": (),
}

_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


class _Checker:
    """Validation helpers bound to one file; every failure raises ConfigError(file, key, ...)."""

    def __init__(self, file):
        self.file = file

    def fail(self, key, message):
        raise ConfigError(self.file, key, message)

    def mapping(self, value, key):
        if not isinstance(value, dict):
            self.fail(key, f"expected a mapping (key: value lines), got {_describe(value)}")
        for k in value:
            if not isinstance(k, str):
                self.fail(key, f"keys must be strings, got {_describe(k)}")
        return value

    def keys(self, value, key, allowed, *, note=""):
        for k in value:
            if k not in allowed:
                self.fail(_join(key, k), f"unknown key{did_you_mean(k, allowed)} "
                                         f"(valid keys here: {', '.join(allowed)}){note}")

    def required(self, value, key, name):
        if name not in value:
            self.fail(_join(key, name), "required key is missing")
        return value[name]

    def string(self, value, key, *, choices=None):
        if not isinstance(value, str) or not value:
            self.fail(key, f"expected a non-empty string, got {_describe(value)}")
        if choices is not None and value not in choices:
            self.fail(key, f"unknown value {value!r}{did_you_mean(value, choices)} "
                           f"(expected one of: {', '.join(choices)})")
        return value

    def boolean(self, value, key):
        if not isinstance(value, bool):
            self.fail(key, f"expected true or false, got {_describe(value)}")
        return value

    def integer(self, value, key, *, low=None, high=None):
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, f"expected an integer, got {_describe(value)}")
        self._range(value, key, low, high, True, True)
        return value

    def number(self, value, key, *, low=None, high=None, low_open=False, high_open=False):
        # PyYAML reads `1e-3` (no dot) as a string (YAML 1.1); accept numeric strings.
        if isinstance(value, str) and _NUMBER.match(value.strip()):
            value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(key, f"expected a number, got {_describe(value)}")
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            self.fail(key, f"expected a finite number, got {value}")
        self._range(value, key, low, high, not low_open, not high_open)
        return value

    def _range(self, value, key, low, high, low_closed, high_closed):
        below = low is not None and (value < low if low_closed else value <= low)
        above = high is not None and (value > high if high_closed else value >= high)
        if below or above:
            lo = "-inf" if low is None else f"{low:g}"
            hi = "inf" if high is None else f"{high:g}"
            interval = f"{'[' if low_closed else '('}{lo}, {hi}{']' if high_closed else ')'}"
            self.fail(key, f"value {value:g} is out of range; expected a value in {interval}")


def _join(key, name):
    return f"{key}.{name}" if key else str(name)


def _describe(value):
    if value is None:
        return "nothing (null)"
    kind = {bool: "a boolean", int: "an integer", float: "a number", str: "the string",
            list: "a list", dict: "a mapping"}.get(type(value), type(value).__name__)
    if isinstance(value, (str, int, float, bool)):
        return f"{kind} {value!r}"
    return kind


# --------------------------------------------------------------------------- names

def keras_activation_names():
    """Keras's own activation names (public functions of keras.activations)."""
    import keras

    return [n for n in dir(keras.activations)
            if not n.startswith("_") and n not in ("get", "serialize", "deserialize")]


def keras_loss_names():
    """Keras's own loss names: its function names, class names and short aliases."""
    import keras

    names = [n for n in dir(keras.losses)
             if not n.startswith("_") and n not in ("get", "serialize", "deserialize", "Loss")]
    return names + ["mse", "mae", "mape", "msle", "kld", "logcosh"]


def activation_names():
    import keras_afl

    return keras_afl.names("activation") + keras_activation_names()


def loss_names():
    import keras_afl

    return keras_afl.names("loss") + keras_loss_names()


def optimizer_classes():
    """{lower-case name: optimizer class} for Keras's optimizers."""
    import keras

    out = {}
    for n in dir(keras.optimizers):
        obj = getattr(keras.optimizers, n)
        if (isinstance(obj, type) and issubclass(obj, keras.optimizers.Optimizer)
                and n not in ("Optimizer", "LossScaleOptimizer", "MultiOptimizer")):
            out[n.lower()] = obj
    return out


def _check_activation(ck, value, key):
    import keras

    name = ck.string(value, key)
    try:
        keras.activations.get(name)
    except (ValueError, TypeError):
        ck.fail(key, f"unknown activation {name!r}{did_you_mean(name, activation_names())} "
                     "(`keras-afl list --kind activation` shows keras_afl's names)")
    return name


def _check_initializer(ck, value, key):
    import keras

    name = ck.string(value, key)
    try:
        keras.initializers.get(name)
    except (ValueError, TypeError):
        valid = [n for n in dir(keras.initializers) if n.islower() and not n.startswith("_")
                 and n not in ("get", "serialize", "deserialize")]
        ck.fail(key, f"unknown initializer {name!r}{did_you_mean(name, valid)}")
    return name


# --------------------------------------------------------------------------- losses

# The registry's loss family -> the app's word for how `keras-afl train` encodes targets.
TARGETS = {"regression": "regression", "binary": "binary", "categorical": "onehot",
           "sparse": "sparse"}


def loss_kind(loss, *, from_logits=None):
    """What a loss expects, in the app's words: `(family, y_pred)`, read from the registry.

    `loss` is a keras_afl or Keras loss name, or a Loss object
    (`keras_afl.registry.describe_loss`, whose one table knows both). `family`
    is how `keras-afl train` encodes the targets: "binary", "onehot",
    "sparse" or "regression" (`TARGETS` of the registry's family). `y_pred`
    is how the app reads the predictions: "scores" (thresholded at 0) where
    the loss reads logits or hinge scores -- `from_logits=True` (default: the
    loss's own setting) makes a loss of probabilities read logits -- else
    "probabilities" (regression losses too: the app reads `y_pred` for binary
    tasks only). ValueError for a loss the registry does not describe.
    """
    import keras_afl

    d = keras_afl.registry.describe_loss(loss)
    if d is None:
        raise ValueError(f"keras_afl's registry does not describe the loss {loss!r}")
    kind = d.expects(from_logits)
    return TARGETS[d.family], "scores" if kind in ("logits", "scores") else "probabilities"


def _check_loss(ck, value, key):
    """Validates one loss spec; returns {"name", "params", "label", "family", "outputs"}."""
    import keras
    import keras_afl

    if isinstance(value, dict):
        ck.keys(value, key, ("name", "params"))
        name = ck.string(ck.required(value, key, "name"), _join(key, "name"))
        params = ck.mapping(value.get("params") or {}, _join(key, "params"))
        name_key = _join(key, "name")
    else:
        name = ck.string(value, key)
        params, name_key = {}, key

    try:
        e = keras_afl.entry(name, "loss")
    except (ValueError, TypeError):
        e = None
    if e is not None:
        allowed = [p for p in e.parameters()]
        for p in params:
            if p not in allowed:
                ck.fail(_join(_join(key, "params"), p),
                        f"{name!r} has no parameter {p!r}{did_you_mean(p, allowed)} "
                        f"(its parameters: {', '.join(allowed) or 'none'})")
        factory = e.obj
    else:
        try:
            resolved = keras.losses.get(name)
        except (ValueError, TypeError):
            resolved = None
        if resolved is None:
            ck.fail(name_key, f"unknown loss {name!r}{did_you_mean(name, loss_names())} "
                              "(`keras-afl list --kind loss` shows keras_afl's names)")
        cls = getattr(keras.losses, name, None)
        if isinstance(cls, type):
            factory = cls
            allowed = [p for p in inspect.signature(cls).parameters
                       if p not in ("self", "reduction", "name", "dtype", "kwargs")]
            for p in params:
                if p not in allowed:
                    ck.fail(_join(_join(key, "params"), p),
                            f"{name!r} has no parameter {p!r}{did_you_mean(p, allowed)} "
                            f"(its parameters: {', '.join(allowed) or 'none'})")
        else:
            if params:
                ck.fail(_join(key, "params"),
                        f"Keras's {name!r} is a function and takes no parameters; use a keras_afl "
                        "loss or a Keras loss class name (e.g. 'Huber') to pass parameters")
            factory = None
    loss = name
    if factory is not None:
        try:
            loss = factory(**params)  # the loss validates its own settings
        except (ValueError, TypeError) as err:
            ck.fail(_join(key, "params"), f"invalid parameters for {name!r}: {err}")

    try:
        family, outputs = loss_kind(loss)  # with its from_logits setting
    except ValueError as err:
        ck.fail(name_key, f"{name!r}: {err}; use a keras_afl or Keras loss")
    label = name if not params else name + "(" + ", ".join(f"{k}={v}" for k, v in params.items()) + ")"
    return {"name": name, "params": dict(params), "label": label, "family": family,
            "outputs": outputs}


# --------------------------------------------------------------------------- sections

def _check_data(ck, raw):
    key = "data"
    d = ck.mapping(raw, key)
    source = ck.string(ck.required(d, key, "source"), "data.source", choices=SOURCES)
    allowed = _DATA_COMMON + _DATA_ONLY.get(source, ())
    for k in d:
        if k not in allowed:
            owner = [s for s, ks in _DATA_ONLY.items() if k in ks]
            if owner:
                ck.fail(_join(key, k), f"only valid with source: {owner[0]} (this config has "
                                       f"source: {source})")
    ck.keys(d, key, allowed)
    out = {"source": source}
    if source == "csv":
        out["path"] = ck.string(ck.required(d, key, "path"), "data.path")
        out["target"] = ck.string(ck.required(d, key, "target"), "data.target")
        out["task"] = (ck.string(d["task"], "data.task", choices=TASKS)
                       if "task" in d else None)
    if source == "outliers":
        out["n_samples"] = ck.integer(d.get("n_samples", 1000), "data.n_samples", low=20,
                                      high=10_000_000)
        out["n_features"] = ck.integer(d.get("n_features", 8), "data.n_features", low=1,
                                       high=10_000)
        out["noise"] = ck.number(d.get("noise", 0.1), "data.noise", low=0)
        out["outlier_fraction"] = ck.number(d.get("outlier_fraction", 0.1),
                                            "data.outlier_fraction", low=0, high=0.5)
        out["outlier_scale"] = ck.number(d.get("outlier_scale", 10.0), "data.outlier_scale",
                                         low=0)
    if "positive_class" in d:
        pc = d["positive_class"]
        if isinstance(pc, bool) or not isinstance(pc, (str, int)):
            ck.fail("data.positive_class", f"expected a class name or index, got {_describe(pc)}")
        out["positive_class"] = pc
    else:
        out["positive_class"] = None
    out["positive_fraction"] = (
        ck.number(d["positive_fraction"], "data.positive_fraction", low=0, high=0.5,
                  low_open=True) if "positive_fraction" in d else None)
    out["test_split"] = ck.number(d.get("test_split", 0.25), "data.test_split", low=0,
                                  high=0.9, low_open=True)
    out["standardize"] = ck.boolean(d.get("standardize", True), "data.standardize")
    return out


def _check_model(ck, raw):
    m = ck.mapping(raw, "model")
    ck.keys(m, "model", ("layers",))
    layers = ck.required(m, "model", "layers")
    if not isinstance(layers, list) or not layers:
        ck.fail("model.layers", f"expected a non-empty list of layers, got {_describe(layers)}")
    out = []
    for i, layer in enumerate(layers):
        key = f"model.layers[{i}]"
        layer = ck.mapping(layer, key)
        kind = ck.string(layer.get("type", "dense"), _join(key, "type"),
                         choices=tuple(LAYER_KEYS))
        ck.keys(layer, key, ("type", *LAYER_KEYS[kind]))
        spec = {"type": kind}
        if kind == "dense":
            units = ck.required(layer, key, "units")
            if units != "output":
                units = ck.integer(units, _join(key, "units"), low=1, high=1_000_000)
            spec["units"] = units
            act = layer.get("activation")
            spec["activation"] = None if act is None else _check_activation(
                ck, act, _join(key, "activation"))
            if "kernel_initializer" in layer:
                spec["kernel_initializer"] = _check_initializer(
                    ck, layer["kernel_initializer"], _join(key, "kernel_initializer"))
            if "use_bias" in layer:
                spec["use_bias"] = ck.boolean(layer["use_bias"], _join(key, "use_bias"))
        elif kind == "activation":
            spec["activation"] = _check_activation(
                ck, ck.required(layer, key, "activation"), _join(key, "activation"))
        elif kind in ("dropout", "alpha_dropout"):
            spec["rate"] = ck.number(ck.required(layer, key, "rate"), _join(key, "rate"),
                                     low=0, high=1, high_open=True)
        elif kind == "leaky_relu":
            spec["negative_slope"] = ck.number(layer.get("negative_slope", 0.01),
                                               _join(key, "negative_slope"), low=0)
        elif kind == "elu":
            spec["alpha"] = ck.number(layer.get("alpha", 1.0), _join(key, "alpha"), low=0)
        out.append(spec)
    if not any(s["type"] == "dense" for s in out):
        ck.fail("model.layers", "needs at least one dense layer (the output layer)")
    return {"layers": out}


def _check_training(ck, raw):
    t = ck.mapping(raw, "training")
    ck.keys(t, "training", _TRAINING_KEYS)
    if ("loss" in t) == ("compare" in t):
        ck.fail("training", "give exactly one of `loss` (one run) or `compare` (a list of "
                            "losses, one run each)")
    if "loss" in t:
        losses = [_check_loss(ck, t["loss"], "training.loss")]
    else:
        comp = t["compare"]
        if not isinstance(comp, list) or len(comp) < 2:
            ck.fail("training.compare", f"expected a list of at least two losses, got "
                                        f"{_describe(comp)}")
        losses = [_check_loss(ck, v, f"training.compare[{i}]") for i, v in enumerate(comp)]
        seen = {}
        for i, spec in enumerate(losses):
            if spec["label"] in seen:
                ck.fail(f"training.compare[{i}]", f"{spec['label']!r} is already "
                                                  f"training.compare[{seen[spec['label']]}]")
            seen[spec["label"]] = i
    families = {s["family"] for s in losses}
    if len(families) > 1 and families != {"onehot", "sparse"}:
        ck.fail("training.compare", "the losses need different kinds of targets ("
                + ", ".join(f"{s['name']}: {s['family']}" for s in losses) + ")")

    opt = t.get("optimizer", "adam")
    okey = "training.optimizer"
    classes = optimizer_classes()
    if isinstance(opt, dict):
        ck.keys(opt, okey, ("name", "learning_rate"))
        oname = ck.string(ck.required(opt, okey, "name"), _join(okey, "name"))
        name_key = _join(okey, "name")
        lr = ck.number(opt.get("learning_rate", 0.001), _join(okey, "learning_rate"), low=0,
                       high=10, low_open=True)
    else:
        oname, name_key, lr = ck.string(opt, okey), okey, 0.001
    if oname.lower() not in classes:
        ck.fail(name_key, f"unknown optimizer {oname!r}{did_you_mean(oname.lower(), classes)}")
    return {
        "losses": losses,
        "optimizer": {"name": oname.lower(), "learning_rate": lr},
        "epochs": ck.integer(t.get("epochs", 20), "training.epochs", low=1, high=100_000),
        "batch_size": ck.integer(t.get("batch_size", 32), "training.batch_size", low=1,
                                 high=1_000_000),
        "validation_split": ck.number(t.get("validation_split", 0.2),
                                      "training.validation_split", low=0, high=0.9),
    }


def validate(raw, file):
    """Checks a parsed config; returns the normalised config (or raises ConfigError)."""
    ck = _Checker(file)
    raw = ck.mapping(raw, "")
    ck.keys(raw, "", _TOP_KEYS)
    stem = os.path.splitext(os.path.basename(file))[0]
    cfg = {
        "name": ck.string(raw.get("name", stem), "name"),
        "description": ck.string(raw["description"], "description") if "description" in raw
        else "",
        "seed": ck.integer(raw.get("seed", 0), "seed", low=0, high=2**32 - 1),
        "lint": ck.boolean(raw.get("lint", False), "lint"),
        "activation_stats": ck.boolean(raw.get("activation_stats", False), "activation_stats"),
    }
    if not re.match(r"^[\w.-]+$", cfg["name"]):
        ck.fail("name", f"{cfg['name']!r} must be usable as a folder name (letters, digits, "
                        "'_', '-', '.')")
    if "example" in raw:  # an example script's experiment: keras_afl.cli.example_task
        from keras_afl.cli import example_task

        return example_task.validate(ck, raw, cfg, file)
    cfg["data"] = _check_data(ck, ck.required(raw, "", "data"))
    cfg["model"] = _check_model(ck, ck.required(raw, "", "model"))
    cfg["training"] = _check_training(ck, ck.required(raw, "", "training"))
    if cfg["data"]["positive_fraction"] is not None and cfg["data"]["source"] != "csv":
        task = NATURAL_TASK[cfg["data"]["source"]]
        if task == "regression":
            ck.fail("data.positive_fraction", f"only for binary tasks; {cfg['data']['source']!r} "
                                              "is a regression data set")
        if task == "multiclass" and cfg["data"]["positive_class"] is None:
            ck.fail("data.positive_fraction", f"{cfg['data']['source']!r} has several classes: "
                                              "set data.positive_class to make it binary")
    if cfg["data"]["source"] in ("diabetes", "outliers") and cfg["data"]["positive_class"] is not None:
        ck.fail("data.positive_class", f"{cfg['data']['source']!r} is a regression data set")
    return cfg


def load(path):
    """Reads (`yaml_file.read`) and validates the config file at `path`."""
    return validate(yaml_file.read(path), path)
