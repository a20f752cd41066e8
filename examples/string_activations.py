"""keras_afl activations by name in a plain keras.Sequential model.

After `import keras_afl`, the names "afl_relu", "afl_elu", "afl_selu",
"afl_tanh", "afl_softmax", ... work anywhere Keras takes an activation string
(`Dense(activation=...)`, `keras.layers.Activation(...)`), next to Keras's own.

    python examples/string_activations.py
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_afl  # noqa: E402,F401  (adds the "afl_*" names to Keras)


def make_data(n=1500, classes=3, seed=0):
    """Three Gaussian blobs in 4 dimensions."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=2.0, size=(classes, 4))
    y = rng.integers(0, classes, n)
    x = centers[y] + rng.normal(size=(n, 4))
    return x.astype("float32"), y


def main():
    keras.utils.set_random_seed(0)
    x, y = make_data()
    model = keras.Sequential([
        keras.Input((4,)),
        keras.layers.Dense(32, activation="afl_relu"),
        keras.layers.Dense(32, activation="afl_elu"),
        keras.layers.Dense(16, activation="afl_selu", kernel_initializer="lecun_normal"),
        keras.layers.Dense(16),
        keras.layers.Activation("afl_tanh"),              # as a layer, by name
        keras.layers.Dense(3, activation="afl_softmax"),
    ])
    model.compile("adam", loss="afl_sparse_categorical_crossentropy", metrics=["accuracy"])
    hist = model.fit(x[:1200], y[:1200], epochs=10, batch_size=64, verbose=0)
    _, acc = model.evaluate(x[1200:], y[1200:], verbose=0)
    for layer in model.layers:
        fn = getattr(layer, "activation", None)
        if fn is not None and fn.__name__ != "linear":
            print(f"  {layer.name:<12} -> {fn.__module__}.{fn.__name__}")
    print(f"train loss {hist.history['loss'][0]:.3f} -> {hist.history['loss'][-1]:.3f}; "
          f"held-out accuracy {acc:.3f}")
    if not acc > 0.8:
        raise SystemExit(f"expected the blobs to be separable (accuracy > 0.8), got {acc:.3f}")


if __name__ == "__main__":
    main()
