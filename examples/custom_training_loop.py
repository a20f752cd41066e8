"""A custom training loop: `tf.GradientTape` through keras_afl functions and losses.

The activations and losses are ordinary differentiable TensorFlow functions
whose gradients are the hand-written ones, so they work in your own loop,
inside `tf.function`, exactly as in `fit()`.

    python examples/custom_training_loop.py
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_afl  # noqa: E402
from keras_afl import activations as A  # noqa: E402


def main():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2048, 8)).astype("float32")
    y = (x[:, 0] * x[:, 1] + np.sin(x[:, 2]) > 0).astype("float32")[:, None]

    # Plain variables and functions: no Keras model at all.
    w1 = tf.Variable(rng.normal(scale=0.5, size=(8, 32)).astype("float32"))
    b1 = tf.Variable(tf.zeros(32))
    w2 = tf.Variable(rng.normal(scale=0.2, size=(32, 1)).astype("float32"))
    b2 = tf.Variable(tf.zeros(1))
    params = [w1, b1, w2, b2]
    loss_fn = keras_afl.losses.FocalLoss(gamma=2.0, alpha=0.5, from_logits=True)
    optimizer = keras.optimizers.Adam(1e-2)

    def logits(xb):
        h = A.elu(xb @ w1 + b1)             # keras_afl.activations.elu, analytic gradient
        return h @ w2 + b2

    @tf.function
    def train_step(xb, yb):
        with tf.GradientTape() as tape:
            loss = loss_fn(yb, logits(xb))
        grads = tape.gradient(loss, params)
        optimizer.apply_gradients(zip(grads, params))
        return loss

    data = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(2048, seed=0).batch(64)
    first = last = None
    for epoch in range(15):
        losses = [float(train_step(xb, yb)) for xb, yb in data]
        first = first if first is not None else np.mean(losses)
        last = np.mean(losses)
    acc = float(np.mean((A.sigmoid(logits(x)).numpy() > 0.5) == y))
    print(f"focal loss {first:.4f} -> {last:.4f} over 15 epochs; training accuracy {acc:.3f}")
    if not (last < first and acc > 0.75):
        raise SystemExit("expected the loss to fall and accuracy above 0.75")


if __name__ == "__main__":
    main()
