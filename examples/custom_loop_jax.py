"""A custom training loop on JAX: `jax.value_and_grad` through keras_afl's layers and loss.

On JAX a Keras model is a pure function of its variables: `model.stateless_call`
takes them as arguments and returns the outputs and the new non-trainable
values, and an optimizer's `stateless_apply` returns new weights and optimizer
state. The whole step -- forward, `jax.value_and_grad`, update -- is one
`jax.jit` program. keras_afl's activations and losses differentiate by their
analytic derivatives (`jax.custom_vjp`), the same ones `fit()` uses.

    KERAS_BACKEND=jax python examples/custom_loop_jax.py
"""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402

if keras.backend.backend() != "jax":
    raise SystemExit(f"this example runs on JAX; Keras runs on {keras.backend.backend()!r}. "
                     "Fix: KERAS_BACKEND=jax python examples/custom_loop_jax.py")

import jax  # noqa: E402

import keras_afl  # noqa: E402

EPOCHS = 12
BATCH = 128


def main():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2048, 8)).astype("float32")
    y = (x[:, 0] * x[:, 1] + np.sin(x[:, 2]) > 0).astype("float32")[:, None]

    model = keras.Sequential([
        keras.Input((8,)),
        keras.layers.Dense(32, activation="afl_elu"),   # keras_afl's elu, by its string name
        keras.layers.Dense(32),
        keras_afl.layers.PReLU(),                        # a learned slope, analytic gradient
        keras.layers.Dense(1),                           # logits
    ])
    loss_fn = keras_afl.losses.FocalLoss(gamma=2.0, alpha=0.5, from_logits=True)
    optimizer = keras.optimizers.Adam(1e-2)
    optimizer.build(model.trainable_variables)

    def loss_and_updates(trainable, non_trainable, xb, yb):
        logits, non_trainable = model.stateless_call(trainable, non_trainable, xb, training=True)
        return loss_fn(yb, logits), non_trainable

    grad_fn = jax.value_and_grad(loss_and_updates, has_aux=True)

    @jax.jit
    def train_step(state, xb, yb):
        trainable, non_trainable, optimizer_vars = state
        (loss, non_trainable), grads = grad_fn(trainable, non_trainable, xb, yb)
        trainable, optimizer_vars = optimizer.stateless_apply(optimizer_vars, grads, trainable)
        return loss, (trainable, non_trainable, optimizer_vars)

    state = ([v.value for v in model.trainable_variables],
             [v.value for v in model.non_trainable_variables],
             [v.value for v in optimizer.variables])
    epoch_losses = []
    for epoch in range(EPOCHS):
        order = rng.permutation(len(x))
        losses = []
        for start in range(0, len(x), BATCH):
            batch = order[start:start + BATCH]
            loss, state = train_step(state, x[batch], y[batch])
            losses.append(float(loss))
        epoch_losses.append(np.mean(losses))

    # The trained values back into the model's variables: predict(), save() and lint see them.
    for variable, value in zip(model.trainable_variables, state[0]):
        variable.assign(value)
    for variable, value in zip(model.non_trainable_variables, state[1]):
        variable.assign(value)
    probabilities = keras_afl.activations.sigmoid(model.predict(x, verbose=0))
    acc = float(np.mean((np.asarray(probabilities) > 0.5) == y))
    first, last = epoch_losses[0], epoch_losses[-1]
    print(f"JAX, jax.jit + jax.value_and_grad: focal loss {first:.4f} -> {last:.4f} over "
          f"{EPOCHS} epochs; training accuracy {acc:.3f}")
    if not (last < 0.7 * first and acc > 0.75):
        raise SystemExit("expected the loss to fall by 30 % and accuracy above 0.75")


if __name__ == "__main__":
    main()
