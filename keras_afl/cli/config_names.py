"""The names a config may use, Keras's own and keras_afl's: activations, losses, optimizers,
initializers; and the checks of an activation or initializer name (`keras_afl.cli.config`)."""

from __future__ import annotations

from keras_afl.cli.common import did_you_mean


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


def check_activation(ck, value, key):
    import keras

    name = ck.string(value, key)
    try:
        keras.activations.get(name)
    except (ValueError, TypeError):
        ck.fail(key, f"unknown activation {name!r}{did_you_mean(name, activation_names())} "
                     "(`keras-afl list --kind activation` shows keras_afl's names)")
    return name


def check_initializer(ck, value, key):
    import keras

    name = ck.string(value, key)
    try:
        keras.initializers.get(name)
    except (ValueError, TypeError):
        valid = [n for n in dir(keras.initializers) if n.islower() and not n.startswith("_")
                 and n not in ("get", "serialize", "deserialize")]
        ck.fail(key, f"unknown initializer {name!r}{did_you_mean(name, valid)}")
    return name

