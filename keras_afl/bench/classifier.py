"""The model and data of the "classifier" suite, shared by the timing suite and the memory
program (`python -m keras_afl.bench.memory` must not be imported before it runs)."""

from __future__ import annotations

import keras
import numpy as np


def classifier(output):
    """The classifier of the "classifier" suite: 784 -> 3 x Dense(256, relu) -> Dense(10, output)."""
    hidden = [keras.layers.Dense(256, activation="relu") for _ in range(3)]
    return keras.Sequential([keras.Input((784,)), *hidden, keras.layers.Dense(10, activation=output)])


def classifier_data(batch, batches=4):
    """(x, one-hot y) for `batches` batches of the classifier."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch * batches, 784)).astype("float32")
    return x, np.eye(10, dtype="float32")[rng.integers(0, 10, batch * batches)]
