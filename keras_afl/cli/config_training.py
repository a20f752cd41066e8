"""The `training:` section of a config: its losses (what each expects, `loss_kind`), optimizer,
epochs, batch size, validation split. Shared by `model.layers` configs
(`keras_afl.cli.config`) and example-script configs (`keras_afl.cli.example_task`)."""

from __future__ import annotations

import inspect

from keras_afl.cli.common import did_you_mean
from keras_afl.cli.config_checker import describe, join_key
from keras_afl.cli.config_names import loss_names, optimizer_classes

_TRAINING_KEYS = ("loss", "compare", "optimizer", "epochs", "batch_size", "validation_split")

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


def check_loss(ck, value, key):
    """Validates one loss spec; returns {"name", "params", "label", "family", "outputs"}."""
    import keras
    import keras_afl

    if isinstance(value, dict):
        ck.keys(value, key, ("name", "params"))
        name = ck.string(ck.required(value, key, "name"), join_key(key, "name"))
        params = ck.mapping(value.get("params") or {}, join_key(key, "params"))
        name_key = join_key(key, "name")
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
                ck.fail(join_key(join_key(key, "params"), p),
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
                    ck.fail(join_key(join_key(key, "params"), p),
                            f"{name!r} has no parameter {p!r}{did_you_mean(p, allowed)} "
                            f"(its parameters: {', '.join(allowed) or 'none'})")
        else:
            if params:
                ck.fail(join_key(key, "params"),
                        f"Keras's {name!r} is a function and takes no parameters; use a keras_afl "
                        "loss or a Keras loss class name (e.g. 'Huber') to pass parameters")
            factory = None
    loss = name
    if factory is not None:
        try:
            loss = factory(**params)  # the loss validates its own settings
        except (ValueError, TypeError) as err:
            ck.fail(join_key(key, "params"), f"invalid parameters for {name!r}: {err}")

    try:
        family, outputs = loss_kind(loss)  # with its from_logits setting
    except ValueError as err:
        ck.fail(name_key, f"{name!r}: {err}; use a keras_afl or Keras loss")
    label = name if not params else name + "(" + ", ".join(f"{k}={v}" for k, v in params.items()) + ")"
    return {"name": name, "params": dict(params), "label": label, "family": family,
            "outputs": outputs}


def check_training(ck, raw):
    """The normalised `training:` section: its losses (`check_loss`), optimizer, epochs,
    batch size and validation split."""
    t = ck.mapping(raw, "training")
    ck.keys(t, "training", _TRAINING_KEYS)
    if ("loss" in t) == ("compare" in t):
        ck.fail("training", "give exactly one of `loss` (one run) or `compare` (a list of "
                            "losses, one run each)")
    if "loss" in t:
        losses = [check_loss(ck, t["loss"], "training.loss")]
    else:
        comp = t["compare"]
        if not isinstance(comp, list) or len(comp) < 2:
            ck.fail("training.compare", f"expected a list of at least two losses, got "
                                        f"{describe(comp)}")
        losses = [check_loss(ck, v, f"training.compare[{i}]") for i, v in enumerate(comp)]
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
        oname = ck.string(ck.required(opt, okey, "name"), join_key(okey, "name"))
        name_key = join_key(okey, "name")
        lr = ck.number(opt.get("learning_rate", 0.001), join_key(okey, "learning_rate"), low=0,
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

