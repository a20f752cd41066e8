"""What the harness measures: the targets, the cases (ours against the built-in) and their inputs.

A loss case's inputs follow what the registry says the loss is for
(`keras_afl.registry.describe_loss`): its family gives the labels (regression:
real values, binary: 0/1, categorical: one-hot rows, sparse: int32 class ids)
and what it reads as `y_pred` gives the predictions (logits or scores: raw
values, probabilities: their sigmoid or softmax).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from keras_afl import activations as A
from keras_afl import losses as L
from keras_afl import registry

DEFAULT_SUITES = ("activations", "losses", "training", "memory", "checks")
SUITES = (*DEFAULT_SUITES, "classifier", "sweep")
MODES = ("graph", "xla")
DTYPES = ("float32", "bfloat16")
DEFAULT_SIZES = (16, 20, 24)  # log2 of the number of elements

# name -> (description, max ratio ours / reference)
TARGETS = {
    "activation_native": ("activation <= 1.05x the native op (graph and XLA)", 1.05),
    "activation_floor": ("activation <= 1.3x the bandwidth floor at 2^24", 1.3),
    "loss_graph": ("loss <= 0.5x Keras in graph mode", 0.5),
    "loss_xla": ("loss <= 1.0x Keras under XLA", 1.0),
    "mlp": ("MLP training >= 1.0x the built-in's steps/s", 1.0),
    "dense_focal": ("dense-prediction focal training >= 1.3x steps/s", 1 / 1.3),
    "memory": ("peak memory <= 1.0x the built-in's", 1.0),
    "label_checks": ("label checks cost <= 5% of the loss's time (2^20)", 1.05),
    "classifier_steps": ("classifier training >= 1.0x Keras's steps/s (batch 32-512)", 1.0),
    "classifier_memory": ("classifier training peak memory <= 1.0x Keras's", 1.0),
    # the sweep (`sweep.sweep_summary` checks every loss row against the 1.0x target)
    "sweep_loss": ("loss <= 1.0x Keras at every size and mode", 1.0),
    "sweep_loss_graph_large": ("loss <= 0.5x Keras in graph mode from 2^20 elements up", 0.5),
    "sweep_activation": ("activation <= 1.05x the native op at every size", 1.05),
}
FLOOR_SIZE = 2**24
SMALL = 2**22  # below: three times the repeats
CHECK_SIZE = 2**20  # the label checks' cost is measured at this size


def _keras_prelu(x, alpha):
    """Keras's PReLU layer formula: relu(x) - alpha * relu(-x)."""
    return tf.nn.relu(x) - alpha * tf.nn.relu(-x)


# name -> (ours, reference); PReLU takes (x, alpha), the others x
ACTIVATIONS = {
    "relu": (A.relu, tf.nn.relu),
    "leaky_relu": (lambda x: A.leaky_relu(x, 0.2), lambda x: tf.nn.leaky_relu(x, 0.2)),
    "prelu": (A.prelu, _keras_prelu),
    "sigmoid": (A.sigmoid, tf.math.sigmoid),
    "tanh": (A.tanh, tf.math.tanh),
    "softmax": (A.softmax, tf.nn.softmax),
    "elu": (A.elu, tf.nn.elu),
    "selu": (A.selu, tf.nn.selu),
}
CLASSES = 16  # size of the last axis of every loss input


def loss_cases():
    """name -> (ours, Keras's). Fresh Loss objects on every call; `loss_inputs` makes their inputs."""
    k = keras.losses
    focal = dict(gamma=2.0, alpha=0.25)
    kfocal = dict(apply_class_balancing=True, **focal)
    kcfocal = k.CategoricalFocalCrossentropy(from_logits=True, **focal)

    def keras_sparse_focal(y_true, y_pred):  # Keras has no sparse focal loss: one-hot first
        return kcfocal(tf.one_hot(y_true, CLASSES, dtype=y_pred.dtype), y_pred)

    return {
        "mse": (L.MeanSquaredError(), k.MeanSquaredError()),
        "huber": (L.Huber(), k.Huber()),
        "hinge": (L.Hinge(), k.Hinge()),
        "bce_logits": (L.BinaryCrossentropy(from_logits=True), k.BinaryCrossentropy(from_logits=True)),
        "bce_probs": (L.BinaryCrossentropy(), k.BinaryCrossentropy()),
        "focal_logits": (L.FocalLoss(from_logits=True, **focal),
                         k.BinaryFocalCrossentropy(from_logits=True, **kfocal)),
        "focal_probs": (L.FocalLoss(**focal), k.BinaryFocalCrossentropy(**kfocal)),
        "cce_logits": (L.CategoricalCrossentropy(from_logits=True),
                       k.CategoricalCrossentropy(from_logits=True)),
        "cce_probs": (L.CategoricalCrossentropy(), k.CategoricalCrossentropy()),
        "sparse_cce_logits": (L.SparseCategoricalCrossentropy(from_logits=True),
                              k.SparseCategoricalCrossentropy(from_logits=True)),
        "categorical_focal_logits": (L.CategoricalFocalLoss(from_logits=True, **focal),
                                     k.CategoricalFocalCrossentropy(from_logits=True, **focal)),
        "sparse_categorical_focal_logits": (L.SparseCategoricalFocalLoss(from_logits=True, **focal),
                                            keras_sparse_focal),
    }


def check_cases():
    """name -> a fresh Loss with label checks: the losses whose labels are checked."""
    return {
        "bce_logits": L.BinaryCrossentropy(from_logits=True),
        "focal_logits": L.FocalLoss(from_logits=True, gamma=2.0, alpha=0.25),
        "hinge_binary": L.Hinge(label_format="binary"),
        "sparse_cce_logits": L.SparseCategoricalCrossentropy(from_logits=True),
    }


LOSSES = tuple(loss_cases())
QUICK_ACTIVATIONS = ("relu", "prelu", "sigmoid")
QUICK_LOSSES = ("bce_logits", "focal_logits", "sparse_cce_logits")

# Peak memory: name -> (the arguments of `python -m keras_afl.bench.memory` after the variant,
# description); quick: smaller
MEMORY_CASES = {
    "deep_mlp_8x1024_elu_focal": (("mlp", 8, 1024, 8192, 2), "8 x Dense(1024, elu), focal; batch 8192"),
    "dense_128px_16class_focal": (("dense", 128, 16, 16, 2),
                                  "the dense-prediction focal net of the training rows; batch 16"),
}
QUICK_MEMORY_CASES = {"deep_mlp_3x64_elu_focal": (("mlp", 3, 64, 32, 1), "3 x Dense(64, elu); batch 32")}

# The classifier at ordinary sizes (suite "classifier"): 784 -> 3 x Dense(256, relu) -> Dense(10)
# -> softmax or sigmoid, one-hot labels, the same Keras model for both; keras_afl's loss (by its
# registered name) -> (Keras's same loss, the output activation)
CLASSIFIER_LOSSES = {
    "afl_cce": (lambda: keras.losses.CategoricalCrossentropy(), "softmax"),
    "afl_bce": (lambda: keras.losses.BinaryCrossentropy(), "sigmoid"),
    "focal": (lambda: keras.losses.BinaryFocalCrossentropy(apply_class_balancing=True, alpha=0.25,
                                                           gamma=2.0), "sigmoid"),
}
CLASSIFIER_BATCHES = (32, 128, 512)


def activation_inputs(size, dt):
    """x and the upstream gradient g (`size` elements, rows of up to 1024) and PReLU's alpha."""
    cols = min(size, 1024)
    shape = [size // cols, cols]
    x = tf.cast(tf.random.stateless_normal(shape, seed=[1, 2]), dt)
    g = tf.cast(tf.random.stateless_normal(shape, seed=[3, 4]), dt)
    return x, g, tf.fill([cols], tf.constant(0.25, dt))


def loss_inputs(loss, size, dt):
    """(y_true, y_pred) of `size` elements for keras_afl loss `loss`, as the registry describes it."""
    what = registry.describe_loss(loss)
    family, y_pred = what.family, what.expects()
    rows = max(size // CLASSES, 1)
    rng = np.random.default_rng(0)
    z = rng.normal(size=(rows, CLASSES)).astype("float32") * 3
    if family == "regression":
        y = rng.normal(size=(rows, CLASSES)).astype("float32")
    elif family == "binary":
        y = (rng.random((rows, CLASSES)) < 0.1).astype("float32")
        if y_pred == "probabilities":
            z = 1 / (1 + np.exp(-z))
    else:
        labels = rng.integers(0, CLASSES, rows)
        if y_pred == "probabilities":
            e = np.exp(z - z.max(-1, keepdims=True))
            z = e / e.sum(-1, keepdims=True)
        if family == "sparse":
            return tf.constant(labels.astype("int32")), tf.cast(tf.constant(z), dt)
        y = np.eye(CLASSES, dtype="float32")[labels]
    return tf.cast(tf.constant(y), dt), tf.cast(tf.constant(z), dt)
