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

The checks are split by what they check: `config_checker` (one file's values:
types, keys, ranges), `config_names` (activation, loss, optimizer and
initializer names), `config_training` (the `training:` section, `loss_kind`)
and `example_task` (configs that run an example script); this module holds the
schema, the `data:` and `model:` sections and the whole file.
"""

from __future__ import annotations

import os
import re

from keras_afl.cli import example_task, yaml_file
from keras_afl.cli.common import ConfigError
from keras_afl.cli.config_checker import Checker, describe, join_key
from keras_afl.cli.config_names import (activation_names, check_activation, check_initializer,
                                        keras_activation_names, keras_loss_names, loss_names,
                                        optimizer_classes)
from keras_afl.cli.config_training import TARGETS, check_training, loss_kind

# What the rest of the app and the tests read from here, those of the other config_* modules too.
__all__ = ["SCHEMA", "SOURCES", "TASKS", "NATURAL_TASK", "LAYER_KEYS", "TARGETS", "ConfigError",
           "activation_names", "keras_activation_names", "keras_loss_names", "load", "loss_kind",
           "loss_names", "optimizer_classes", "validate"]

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
                ck.fail(join_key(key, k), f"only valid with source: {owner[0]} (this config has "
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
            ck.fail("data.positive_class", f"expected a class name or index, got {describe(pc)}")
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
        ck.fail("model.layers", f"expected a non-empty list of layers, got {describe(layers)}")
    out = []
    for i, layer in enumerate(layers):
        key = f"model.layers[{i}]"
        layer = ck.mapping(layer, key)
        kind = ck.string(layer.get("type", "dense"), join_key(key, "type"),
                         choices=tuple(LAYER_KEYS))
        ck.keys(layer, key, ("type", *LAYER_KEYS[kind]))
        spec = {"type": kind}
        if kind == "dense":
            units = ck.required(layer, key, "units")
            if units != "output":
                units = ck.integer(units, join_key(key, "units"), low=1, high=1_000_000)
            spec["units"] = units
            act = layer.get("activation")
            spec["activation"] = None if act is None else check_activation(
                ck, act, join_key(key, "activation"))
            if "kernel_initializer" in layer:
                spec["kernel_initializer"] = check_initializer(
                    ck, layer["kernel_initializer"], join_key(key, "kernel_initializer"))
            if "use_bias" in layer:
                spec["use_bias"] = ck.boolean(layer["use_bias"], join_key(key, "use_bias"))
        elif kind == "activation":
            spec["activation"] = check_activation(
                ck, ck.required(layer, key, "activation"), join_key(key, "activation"))
        elif kind in ("dropout", "alpha_dropout"):
            spec["rate"] = ck.number(ck.required(layer, key, "rate"), join_key(key, "rate"),
                                     low=0, high=1, high_open=True)
        elif kind == "leaky_relu":
            spec["negative_slope"] = ck.number(layer.get("negative_slope", 0.01),
                                               join_key(key, "negative_slope"), low=0)
        elif kind == "elu":
            spec["alpha"] = ck.number(layer.get("alpha", 1.0), join_key(key, "alpha"), low=0)
        out.append(spec)
    if not any(s["type"] == "dense" for s in out):
        ck.fail("model.layers", "needs at least one dense layer (the output layer)")
    return {"layers": out}


def validate(raw, file):
    """Checks a parsed config; returns the normalised config (or raises ConfigError)."""
    ck = Checker(file)
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
        return example_task.validate(ck, raw, cfg, file)
    cfg["data"] = _check_data(ck, ck.required(raw, "", "data"))
    cfg["model"] = _check_model(ck, ck.required(raw, "", "model"))
    cfg["training"] = check_training(ck, ck.required(raw, "", "training"))
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

