"""`compile(loss="focal")` on imbalanced data.

A synthetic binary problem with 5 % positives. Focal loss (Lin et al. 2017)
multiplies cross-entropy by (1 - p_t)^gamma, so the many easy negatives stop
dominating the gradient. Its settings are keyword arguments of
`keras_afl.losses.FocalLoss`; the string "focal" gives the defaults
(gamma=2, alpha=0.25). PR-AUC is the metric to watch on imbalanced data.

    python examples/focal_imbalanced.py
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_afl  # noqa: E402


def make_data(n=6000, positive_fraction=0.05, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < positive_fraction).astype("float32")
    x = rng.normal(size=(n, 10)) + y[:, None] * np.linspace(1.2, 0.0, 10)
    return x.astype("float32"), y[:, None]


def build():
    return keras.Sequential([
        keras.Input((10,)),
        keras.layers.Dense(32, activation="afl_relu"),
        keras.layers.Dense(1),
        keras_afl.layers.Sigmoid(),          # the loss takes the stable logits path
    ])


def main():
    x, y = make_data()
    x_train, y_train, x_test, y_test = x[:4500], y[:4500], x[4500:], y[4500:]
    print(f"positives: {y_train.mean():.1%} of train, {int(y_test.sum())} of {len(y_test)} test")
    results = {}
    for loss in ("focal", keras_afl.losses.FocalLoss(gamma=3.0, alpha=0.5)):
        keras.utils.set_random_seed(0)
        model = build()
        model.compile(keras.optimizers.Adam(3e-3), loss=loss,
                      metrics=[keras.metrics.AUC(curve="PR", name="pr_auc")])
        model.fit(x_train, y_train, epochs=6, batch_size=128, verbose=0)
        _, pr_auc = model.evaluate(x_test, y_test, verbose=0)
        name = loss if isinstance(loss, str) else f"FocalLoss(gamma={loss.gamma}, alpha={loss.alpha})"
        results[name] = pr_auc
        print(f"loss={name!s:<32} test PR-AUC {pr_auc:.3f}  (chance: {y_test.mean():.3f})")
    if not all(v > 2 * y_test.mean() for v in results.values()):
        raise SystemExit("expected PR-AUC well above chance")


if __name__ == "__main__":
    main()
