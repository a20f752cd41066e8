"""Peak memory of a few training steps, measured in a process of its own.

    python -m keras_afl.bench.memory ours|builtin mlp DEPTH WIDTH BATCH STEPS
    python -m keras_afl.bench.memory ours|builtin dense SIZE CLASSES BATCH STEPS
    python -m keras_afl.bench.memory ours|builtin classifier LOSS graph|xla BATCH STEPS

Builds the model (keras_afl's layers, activations and focal loss, or the same
model from Keras's built-ins; for the classifier, the same Keras model with keras_afl's loss
LOSS or Keras's, `bench.cases.CLASSIFIER_LOSSES`), runs STEPS training steps of Keras's own train
function and prints one JSON line: the process's peak resident set size
(`peak_mib`) and the peak before the steps (`before_mib`). The harness's
"memory" suite (`keras_afl.bench.suites.bench_memory`) starts one such process
per variant, so that neither sees the other's memory; nothing here runs on import.
"""

from __future__ import annotations

import json
import sys

import keras
import numpy as np
import tensorflow as tf

import keras_afl
from keras_afl.bench.classifier import classifier, classifier_data
from keras_afl.bench.rss import peak_mib

USAGE = ("usage: python -m keras_afl.bench.memory ours|builtin mlp DEPTH WIDTH BATCH STEPS\n"
         "       python -m keras_afl.bench.memory ours|builtin dense SIZE CLASSES BATCH STEPS\n"
         "       python -m keras_afl.bench.memory ours|builtin classifier LOSS graph|xla BATCH STEPS")


def parse(argv):
    """(ours, kind, a, b, batch, steps) from the command line; ValueError with the usage."""
    if len(argv) != 6 or argv[0] not in ("ours", "builtin") or argv[1] not in ("mlp", "dense", "classifier"):
        raise ValueError(f"received {' '.join(argv)!r}\n{USAGE}")
    if argv[1] == "classifier":
        from keras_afl.bench.cases import CLASSIFIER_LOSSES

        if argv[2] not in CLASSIFIER_LOSSES or argv[3] not in ("graph", "xla"):
            raise ValueError(f"LOSS is one of {', '.join(CLASSIFIER_LOSSES)} and MODE graph or xla; "
                             f"received {' '.join(argv[2:4])!r}\n{USAGE}")
        try:
            batch, steps = map(int, argv[4:])
        except ValueError:
            raise ValueError(f"BATCH and STEPS are integers; received {' '.join(argv[4:])!r}\n{USAGE}") \
                from None
        return argv[0] == "ours", "classifier", argv[2], argv[3], batch, steps
    try:
        a, b, batch, steps = map(int, argv[2:])
    except ValueError:
        raise ValueError(f"DEPTH/SIZE, WIDTH/CLASSES, BATCH and STEPS are integers; received "
                         f"{' '.join(argv[2:])!r}\n{USAGE}") from None
    return argv[0] == "ours", argv[1], a, b, batch, steps


def measure(ours, kind, a, b, batch, steps):
    """{"peak_mib", "before_mib"} of `steps` training steps of the model described."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    if kind == "classifier":  # a = keras_afl's loss name, b = graph | xla
        return _measure_classifier(ours, a, b, batch, steps)
    sigmoid = keras_afl.layers.Sigmoid() if ours else keras.layers.Activation("sigmoid")
    if kind == "mlp":  # a = depth, b = width; ELU
        act = keras_afl.activations.elu if ours else "elu"
        inputs = keras.Input((b,))
        h = inputs
        for _ in range(a):
            h = keras.layers.Dense(b, activation=act)(h)
        out = sigmoid(keras.layers.Dense(1)(h))
        x = rng.normal(size=(batch, b)).astype("float32")
        y = (x[:, :1] > 0).astype("float32")
    else:  # a = map size, b = classes; the dense-prediction net of the training benchmark
        act = keras_afl.activations.relu if ours else "relu"
        inputs = keras.Input((a, a, 3))
        h = keras.layers.Conv2D(8, 3, padding="same", activation=act)(inputs)
        out = sigmoid(keras.layers.Conv2D(b, 1)(h))
        x = rng.normal(size=(batch, a, a, 3)).astype("float32")
        y = (rng.random((batch, a, a, b)) < 0.05).astype("float32")
    model = keras.Model(inputs, out)
    loss = (keras_afl.losses.FocalLoss() if ours
            else keras.losses.BinaryFocalCrossentropy(apply_class_balancing=True, alpha=0.25))
    model.compile(keras.optimizers.SGD(0.01), loss=loss, jit_compile=False)
    it = iter(tf.data.Dataset.from_tensors((x, y)).repeat())
    model.make_train_function()
    before = peak_mib()
    for _ in range(steps):
        model.train_function(it)
    return {"peak_mib": peak_mib(), "before_mib": before}


def _measure_classifier(ours, name, mode, batch, steps):
    from keras_afl.bench.cases import CLASSIFIER_LOSSES

    keras_loss, output = CLASSIFIER_LOSSES[name]
    model = classifier(output)
    model.compile(keras.optimizers.SGD(0.01), loss=name if ours else keras_loss(), jit_compile=mode == "xla")
    x, y = classifier_data(batch)
    it = iter(tf.data.Dataset.from_tensor_slices((x, y)).batch(batch, drop_remainder=True).repeat())
    model.make_train_function()
    before = peak_mib()
    for _ in range(steps):
        model.train_function(it)
    return {"peak_mib": peak_mib(), "before_mib": before}


def main(argv=None):
    try:
        args = parse(sys.argv[1:] if argv is None else argv)
    except ValueError as e:
        print(e, file=sys.stderr)
        return 2
    print(json.dumps(measure(*args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
