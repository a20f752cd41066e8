"""Keras objects from a validated `keras-afl train` config: the model, its loss, its optimizer.

`build_model` makes the `keras.Sequential` of the config's layers (keras_afl's
layers and Keras's, string activations resolved by Keras after
`import keras_afl`), with the output layer sized for the data and the loss;
`make_loss` and `make_optimizer` turn a validated spec into the object
`compile()` takes. Validation is `keras_afl.cli.config`'s job: nothing here
re-checks a spec.
"""

from __future__ import annotations

from keras_afl.cli import config
from keras_afl.cli import data as cli_data


def build_model(layers, data, spec, name="model"):
    """A keras.Sequential from validated layer specs (`units: output` resolved)."""
    import keras

    import keras_afl

    out_units = cli_data.output_units(data, spec["family"])
    model = keras.Sequential(name=name)
    model.add(keras.Input((data.n_features,)))
    for s in layers:
        kind = s["type"]
        if kind == "dense":
            kw = {}
            if "kernel_initializer" in s:
                kw["kernel_initializer"] = s["kernel_initializer"]
            if "use_bias" in s:
                kw["use_bias"] = s["use_bias"]
            units = out_units if s["units"] == "output" else s["units"]
            model.add(keras.layers.Dense(units, activation=s["activation"], **kw))
        elif kind == "activation":
            model.add(keras.layers.Activation(s["activation"]))
        elif kind == "dropout":
            model.add(keras.layers.Dropout(s["rate"]))
        elif kind == "alpha_dropout":
            model.add(keras.layers.AlphaDropout(s["rate"]))
        elif kind == "batch_normalization":
            model.add(keras.layers.BatchNormalization())
        elif kind == "prelu":
            model.add(keras_afl.layers.PReLU())
        elif kind == "leaky_relu":
            model.add(keras_afl.layers.LeakyReLU(negative_slope=s["negative_slope"]))
        elif kind == "elu":
            model.add(keras_afl.layers.ELU(alpha=s["alpha"]))
        else:
            cls = {"relu": "ReLU", "sigmoid": "Sigmoid", "tanh": "Tanh", "selu": "SELU",
                   "softmax": "Softmax"}[kind]
            model.add(getattr(keras_afl.layers, cls)())
    return model


def make_loss(spec):
    """The loss object (or Keras's name) for a validated loss spec."""
    import keras
    import keras_afl

    if not spec["params"]:
        return spec["name"]
    try:
        return keras_afl.entry(spec["name"], "loss").obj(**spec["params"])
    except ValueError:
        return getattr(keras.losses, spec["name"])(**spec["params"])


def make_optimizer(spec):
    """The Keras optimizer of a validated optimizer spec (name, learning rate)."""
    return config.optimizer_classes()[spec["name"].lower()](learning_rate=spec["learning_rate"])
