"""What the harness of JAX and PyTorch measures: its targets, its cases (ours and the backend's
own reference for each) and their inputs, for `keras_afl.bench.backends`."""

from __future__ import annotations

import numpy as np

BACKENDS = ("jax", "torch")
DEFAULT_SIZES = (16, 20)  # log2 of the number of elements
QUICK_SIZES = (10,)
DEFAULT_REPEATS = 15
# backend -> how its steps may run: JAX jit-compiles every step; PyTorch runs eagerly (as Keras
# trains there by default) or under torch.compile (Keras's jit_compile=True)
MODES = {"jax": ("jit",), "torch": ("eager", "compile")}
DEFAULT_MODES = {"jax": ("jit",), "torch": ("eager",)}
QUICK_REPEATS = 3
CLASSES = 16  # the last axis of every loss input (as the TensorFlow harness)
ROW = 1024  # the last axis of the activation inputs (rows of up to 1024 elements)

# backend -> kind -> (what the reference is, max ratio ours / reference)
TARGETS = {
    "jax": {"activation": ("jax.nn under jax.jit", 1.05), "loss": ("Keras's built-in, jax.jit", 1.0)},
    "torch": {"activation": ("torch.nn.functional", 1.1), "loss": ("Keras's built-in", 1.0)},
}
ACTIVATIONS = ("relu", "leaky_relu", "prelu", "sigmoid", "tanh", "softmax", "elu", "selu")
LOSSES = ("mse", "huber", "hinge", "bce_logits", "bce_probs", "focal_logits", "focal_probs",
          "cce_logits", "cce_probs", "sparse_cce_logits", "categorical_focal_logits",
          "sparse_categorical_focal_logits")
QUICK_ACTIVATIONS = ("relu", "prelu", "softmax")
QUICK_LOSSES = ("bce_logits", "focal_logits", "sparse_cce_logits")


def active_backend():
    """The backend Keras runs on, "jax" or "torch"; ValueError, naming the fix, on TensorFlow."""
    import keras

    name = keras.backend.backend()
    if name not in BACKENDS:
        raise ValueError(f"keras_afl.bench.backends times JAX and PyTorch; Keras runs on {name!r}. "
                         "Fix: KERAS_BACKEND=jax or torch (keras-afl --backend jax bench); on "
                         "TensorFlow, keras-afl bench runs the TensorFlow harness")
    return name


def native_activations(backend):
    """name -> (reference function, its name); PReLU takes (x, alpha), the others x."""
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        def keras_prelu(x, a):  # jax.nn has no PReLU: Keras's layer formula
            return jax.nn.relu(x) - a * jax.nn.relu(-x)

        return {
            "relu": (jax.nn.relu, "jax.nn.relu"),
            "leaky_relu": (lambda x: jax.nn.leaky_relu(x, 0.2), "jax.nn.leaky_relu"),
            "prelu": (keras_prelu, "relu(x) - a*relu(-x), jnp"),
            "sigmoid": (jax.nn.sigmoid, "jax.nn.sigmoid"),
            "tanh": (getattr(jax.nn, "tanh", jnp.tanh), "jax.nn.tanh"),
            "softmax": (jax.nn.softmax, "jax.nn.softmax"),
            "elu": (jax.nn.elu, "jax.nn.elu"),
            "selu": (jax.nn.selu, "jax.nn.selu"),
        }
    import torch.nn.functional as F

    return {
        "relu": (F.relu, "F.relu"),
        "leaky_relu": (lambda x: F.leaky_relu(x, 0.2), "F.leaky_relu"),
        "prelu": (F.prelu, "F.prelu"),
        "sigmoid": (F.sigmoid, "F.sigmoid"),
        "tanh": (F.tanh, "F.tanh"),
        "softmax": (lambda x: F.softmax(x, dim=-1), "F.softmax"),
        "elu": (F.elu, "F.elu"),
        "selu": (F.selu, "F.selu"),
    }


def our_activations():
    from keras_afl import activations as A

    return {"relu": A.relu, "leaky_relu": lambda x: A.leaky_relu(x, 0.2), "prelu": A.prelu,
            "sigmoid": A.sigmoid, "tanh": A.tanh, "softmax": A.softmax, "elu": A.elu,
            "selu": A.selu}


def loss_cases():
    """name -> (ours, Keras's, Keras's name): fresh Loss objects, as the TensorFlow harness."""
    import keras

    from keras_afl import losses as L

    k = keras.losses
    focal = dict(gamma=2.0, alpha=0.25)
    kfocal = dict(apply_class_balancing=True, **focal)
    kcfocal = k.CategoricalFocalCrossentropy(from_logits=True, **focal)

    def keras_sparse_focal(y_true, y_pred):  # Keras has no sparse focal loss: one-hot first
        return kcfocal(keras.ops.one_hot(y_true, CLASSES, dtype=y_pred.dtype), y_pred)

    return {
        "mse": (L.MeanSquaredError(), k.MeanSquaredError(), "MeanSquaredError"),
        "huber": (L.Huber(), k.Huber(), "Huber"),
        "hinge": (L.Hinge(), k.Hinge(), "Hinge"),
        "bce_logits": (L.BinaryCrossentropy(from_logits=True),
                       k.BinaryCrossentropy(from_logits=True), "BinaryCrossentropy"),
        "bce_probs": (L.BinaryCrossentropy(), k.BinaryCrossentropy(), "BinaryCrossentropy"),
        "focal_logits": (L.FocalLoss(from_logits=True, **focal),
                         k.BinaryFocalCrossentropy(from_logits=True, **kfocal),
                         "BinaryFocalCrossentropy"),
        "focal_probs": (L.FocalLoss(**focal), k.BinaryFocalCrossentropy(**kfocal),
                        "BinaryFocalCrossentropy"),
        "cce_logits": (L.CategoricalCrossentropy(from_logits=True),
                       k.CategoricalCrossentropy(from_logits=True), "CategoricalCrossentropy"),
        "cce_probs": (L.CategoricalCrossentropy(), k.CategoricalCrossentropy(),
                      "CategoricalCrossentropy"),
        "sparse_cce_logits": (L.SparseCategoricalCrossentropy(from_logits=True),
                              k.SparseCategoricalCrossentropy(from_logits=True),
                              "SparseCategoricalCrossentropy"),
        "categorical_focal_logits": (L.CategoricalFocalLoss(from_logits=True, **focal),
                                     k.CategoricalFocalCrossentropy(from_logits=True, **focal),
                                     "CategoricalFocalCrossentropy"),
        "sparse_categorical_focal_logits": (L.SparseCategoricalFocalLoss(from_logits=True, **focal),
                                            keras_sparse_focal,
                                            "one_hot + CategoricalFocalCrossentropy"),
    }


def _tensor(v, dtype):
    from keras import ops

    v = np.asarray(v)
    if v.dtype.kind in "iu":
        return ops.convert_to_tensor(v.astype(np.int32), dtype="int32")
    return ops.cast(ops.convert_to_tensor(v.astype(np.float32)), dtype)


def activation_inputs(size, dtype):
    """x and the upstream gradient g (`size` elements, rows of up to ROW) and PReLU's alpha."""
    cols = min(size, ROW)
    rng = np.random.default_rng(1)
    shape = (size // cols, cols)
    return (_tensor(rng.normal(size=shape), dtype), _tensor(rng.normal(size=shape), dtype),
            _tensor(np.full((cols,), 0.25), dtype))


def loss_inputs(loss, size, dtype):
    """(y_true, y_pred) of `size` elements for keras_afl loss `loss`, as the registry describes it
    (the TensorFlow harness's inputs: regression real values, binary 10 % ones, categorical
    one-hot rows, sparse int32 ids; probabilities where the loss reads them)."""
    from keras_afl import registry

    what = registry.describe_loss(loss)
    family, y_pred = what.family, what.expects()
    rows = max(size // CLASSES, 1)
    rng = np.random.default_rng(0)
    z = rng.normal(size=(rows, CLASSES)) * 3
    if family == "regression":
        y = rng.normal(size=(rows, CLASSES))
    elif family == "binary":
        y = (rng.random((rows, CLASSES)) < 0.1).astype(np.float64)
        if y_pred == "probabilities":
            z = 1 / (1 + np.exp(-z))
    else:
        labels = rng.integers(0, CLASSES, rows)
        if y_pred == "probabilities":
            e = np.exp(z - z.max(-1, keepdims=True))
            z = e / e.sum(-1, keepdims=True)
        if family == "sparse":
            return _tensor(labels, "int32"), _tensor(z, dtype)
        y = np.eye(CLASSES)[labels]
    return _tensor(y, dtype), _tensor(z, dtype)

