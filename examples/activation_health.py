"""Watch ReLU units die: keras_afl.callbacks.ActivationStats on a healthy and a broken run.

The same ReLU MLP is trained twice on a synthetic task -- once with Adam at
1e-3, once with Adam at 0.05, a learning rate too high for it. `keras_afl.lint`
finds nothing wrong with either model (the mistake is in the optimiser, not in
the architecture), and on this easy task the validation accuracy does not show
it either; `ActivationStats` does, after the first epoch: three quarters of
the second hidden layer's units are dead, and stay so -- capacity paid for and lost.

    python examples/activation_health.py [--plot dead_units.png] [--epochs 15]
"""

import argparse

import numpy as np

import keras
import keras_afl

HIDDEN = ("hidden1", "hidden2", "hidden3")
RUNS = {"Adam 1e-3": 1e-3, "Adam 0.05 (too high)": 0.05}


def data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2048, 20)).astype("float32")
    y = ((x[:, :5] ** 2).sum(axis=1) > 5).astype("float32")[:, None]  # a ball in 5 of 20 dims
    return (x[512:], y[512:]), (x[:512], y[:512])


def build():
    return keras.Sequential(
        [keras.Input((20,))]
        + [keras.layers.Dense(64, activation="relu", kernel_initializer="he_normal", name=n)
           for n in HIDDEN]
        + [keras.layers.Dense(1, activation="sigmoid", name="out")], name="relu_mlp")


def train(learning_rate, epochs, train_data, val_data):
    keras.utils.set_random_seed(0)  # same initial weights and batches for both runs
    model = build()
    model.compile(keras.optimizers.Adam(learning_rate), "binary_crossentropy",
                  metrics=["accuracy"])
    stats = keras_afl.callbacks.ActivationStats(val_data)  # the held-out batch
    hist = model.fit(*train_data, validation_data=val_data, epochs=epochs, batch_size=64,
                     verbose=0, callbacks=[stats])
    return model, hist.history


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(9, 3.6), sharey=True)
    for ax, (label, h) in zip(axes, results.items()):
        epochs = np.arange(1, len(h["loss"]) + 1)
        for name, marker in zip(HIDDEN, ("o", "s", "^")):
            ax.plot(epochs, h[f"{name}/dead_fraction"], marker=marker, ms=4, label=name)
        ax.set_title(f"{label}: val. accuracy {h['val_accuracy'][-1]:.2f}", fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("dead fraction (units never\npositive on the held-out batch)")
    axes[0].legend(fontsize=8)
    fig.suptitle("ReLU MLP, 3 x Dense(64): History['<layer>/dead_fraction'] from "
                 "keras_afl.callbacks.ActivationStats", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plot", metavar="PATH", help="write the dead-unit plot (PNG) here")
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args()

    train_data, val_data = data()
    results = {}
    for label, lr in RUNS.items():
        model, history = train(lr, args.epochs, train_data, val_data)
        results[label] = history
        print(f"{label}: keras_afl.lint -> {keras_afl.lint(model).summary()}")
        for name in HIDDEN:
            curve = " ".join(f"{v:.2f}" for v in history[f"{name}/dead_fraction"])
            print(f"  {name} dead fraction per epoch: {curve}")
        print(f"  validation accuracy after {args.epochs} epochs: "
              f"{history['val_accuracy'][-1]:.3f}")

    healthy, broken = (max(h[f"{n}/dead_fraction"][-1] for n in HIDDEN)
                       for h in results.values())
    if not (healthy <= 0.1 and broken >= 0.3):
        raise SystemExit(f"expected few dead units with lr 1e-3 and many with 0.05; got "
                         f"{healthy:.2f} and {broken:.2f}")
    if args.plot:
        plot(results, args.plot)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
