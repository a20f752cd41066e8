"""`keras-afl demo`: binary cross-entropy vs focal loss on a small, imbalanced, real data set.

What it does, step by step (each step prints one line; exit code 0 only if all pass):

1. data: scikit-learn's bundled handwritten digits (no download), framed as
   "is this an 8?" with the 8s subsampled to 6 % of the samples; a stratified
   train / validation / test split, features standardised on the train split.
2. train: the same model -- Dense(activation="afl_elu"), Dense + keras_afl PReLU,
   Dense(1) + keras_afl Sigmoid -- twice from the same seed and initial weights,
   with `loss="afl_bce"` and with `loss="focal"`.
3. compare: PR-AUC, ROC-AUC, F1 and minority-class recall on the held-out test
   split (scikit-learn metrics); F1 and recall at the threshold that maximises F1
   on the validation split, so that focal loss's less calibrated probabilities
   are not judged at 0.5.
4. save the focal model to `.keras`, reload it in a fresh Python process that
   only does `import keras_afl; keras.models.load_model(...)`, and check that the
   predictions match.
5. plots: training curves and precision-recall curves (PNG).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from keras_afl.cli.common import format_table, output_folder, pyplot, require, versions

SEED = 0
POSITIVE_DIGIT = 8
POSITIVE_FRACTION = 0.06
EPOCHS = 25
BATCH_SIZE = 32
LOSSES = ("afl_bce", "focal")


def lint_findings(model, loss):
    """`keras_afl.lint` of `model` trained with `loss`, as report lines.

    The demo prints every returned string as a `lint:` line after training
    (`["no findings"]` for the demo's well-built model).
    """
    import keras_afl

    return str(keras_afl.lint(model, loss=loss)).splitlines()


class _Steps:
    """Runs named steps, printing one status line each; remembers failures."""

    def __init__(self):
        self.failed = []

    def run(self, name, fn, *args):
        t0 = time.perf_counter()
        try:
            result = fn(*args)
        except Exception as e:  # a step failing is reported, not raised: exit code 1
            self.failed.append(name)
            print(f"  [FAILED] {name}: {type(e).__name__}: {e}", flush=True)
            return None
        print(f"  [ok] {name} ({time.perf_counter() - t0:.1f} s)", flush=True)
        return result


def load_data(seed=SEED):
    """Train / validation / test splits of the imbalanced "is it an 8?" digits task."""
    import numpy as np

    from keras_afl.cli import data as cli_data

    datasets = require("sklearn.datasets", "demo")
    digits = datasets.load_digits()
    x = np.asarray(digits.data, np.float64)
    y = (digits.target == POSITIVE_DIGIT).astype(np.int64)
    x, y = cli_data.subsample_positives(x, y, POSITIVE_FRACTION, seed)
    x_train, x_test, y_train, y_test = cli_data.split(x, y, 0.3, seed, True)
    x_train, x_val, y_train, y_val = cli_data.split(x_train, y_train, 0.2, seed + 1, True)
    mu, sd = x_train.mean(0), x_train.std(0)
    sd = np.where(sd > 0, sd, 1.0)
    f = lambda a: ((a - mu) / sd).astype(np.float32)  # noqa: E731
    return {"x_train": f(x_train), "y_train": y_train, "x_val": f(x_val), "y_val": y_val,
            "x_test": f(x_test), "y_test": y_test}


def build_model(n_features):
    import keras

    import keras_afl

    return keras.Sequential([
        keras.Input((n_features,)),
        keras.layers.Dense(32, activation="afl_elu"),     # a keras_afl activation by name
        keras.layers.Dense(16),
        keras_afl.layers.PReLU(),                         # learned slope, starts at 0.25
        keras.layers.Dense(1),
        keras_afl.layers.Sigmoid(),                       # carries its logits to the loss
    ], name="demo")


def train(data, loss, epochs):
    import keras

    keras.utils.set_random_seed(SEED)  # same initial weights and batches for both losses
    model = build_model(data["x_train"].shape[1])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss)
    hist = model.fit(data["x_train"], data["y_train"][:, None].astype("float32"),
                     validation_data=(data["x_val"], data["y_val"][:, None].astype("float32")),
                     epochs=epochs, batch_size=BATCH_SIZE, verbose=0)
    return {"model": model, "history": {k: [float(v) for v in vs]
                                        for k, vs in hist.history.items()}}


def best_threshold(y, score):
    """The threshold that maximises F1 on (y, score)."""
    import numpy as np

    metrics = require("sklearn.metrics", "demo")
    precision, recall, thresholds = metrics.precision_recall_curve(y, score)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return float(thresholds[int(np.argmax(f1[:-1]))])


def evaluate(data, model):
    from keras_afl.cli import data as cli_data

    val = model.predict(data["x_val"], verbose=0).ravel()
    test = model.predict(data["x_test"], verbose=0).ravel()
    threshold = best_threshold(data["y_val"], val)
    m = cli_data.binary_metrics(data["y_test"], test, threshold)
    return {"pr_auc": m["pr_auc"], "roc_auc": m["roc_auc"], "f1": m["f1"],
            "minority_recall": m["minority_recall"], "threshold": threshold, "scores": test}


def save_and_reload(model, data, out):
    """Saves to .keras, reloads in a fresh process, checks the predictions match."""
    import numpy as np

    path = os.path.join(out, "focal_model.keras")
    model.save(path)
    x = data["x_test"]
    np.save(os.path.join(out, "x_test.npy"), x)
    np.save(os.path.join(out, "predictions.npy"), model.predict(x, verbose=0))
    code = (
        "import sys, numpy as np, keras, keras_afl\n"
        "path, x, want = sys.argv[1], np.load(sys.argv[2]), np.load(sys.argv[3])\n"
        "got = keras.models.load_model(path).predict(x, verbose=0)\n"
        "diff = float(np.max(np.abs(got - want)))\n"
        "print(diff)\n"
        "raise SystemExit(0 if np.allclose(got, want, rtol=1e-5, atol=1e-6) else 1)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, path, os.path.join(out, "x_test.npy"),
         os.path.join(out, "predictions.npy")],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    if proc.returncode != 0:
        raise RuntimeError(f"the fresh process exited with {proc.returncode}: "
                           f"{(proc.stdout + proc.stderr).strip()[-1500:]}")
    return {"path": path, "max_abs_difference": float(proc.stdout.strip().splitlines()[-1])}


def plot(results, data, out):
    import numpy as np

    plt = pyplot("demo")
    metrics = require("sklearn.metrics", "demo")
    paths = []

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 3.6), squeeze=False)
    for ax, (loss, r) in zip(axes[0], results.items()):
        h = r["history"]
        epochs = np.arange(1, len(h["loss"]) + 1)
        ax.plot(epochs, h["loss"], label="train")
        ax.plot(epochs, h["val_loss"], "--", label="validation")
        ax.set_title(f'loss="{loss}"')
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("keras-afl demo: training curves", fontsize=11)
    fig.tight_layout()
    paths.append(os.path.join(out, "training_curves.png"))
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for loss, r in results.items():
        p, rc, _ = metrics.precision_recall_curve(data["y_test"], r["scores"])
        ax.step(rc, p, where="post", label=f'loss="{loss}" (PR-AUC {r["pr_auc"]:.3f})')
    base = float(np.mean(data["y_test"]))
    ax.axhline(base, color="grey", ls=":", label=f"chance ({base:.1%} positives)")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"precision-recall, test split (is it an {POSITIVE_DIGIT}?)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    fig.tight_layout()
    paths.append(os.path.join(out, "precision_recall.png"))
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths


def run(output="afl_demo_output", epochs=None):
    """Runs the demo; returns the exit code (0 only if every step succeeded)."""
    t_start = time.perf_counter()
    require("matplotlib", "demo")
    require("sklearn", "demo")
    epochs = epochs or EPOCHS
    out = os.path.abspath(output_folder(output, "--output"))
    print(f"keras-afl demo: binary cross-entropy vs focal loss on imbalanced data -> {out}")
    import keras

    import keras_afl  # noqa: F401  (installs "afl_bce", "focal", "afl_elu", ...)

    steps = _Steps()
    data = steps.run(f"data: scikit-learn digits (bundled), 'is it an {POSITIVE_DIGIT}?', "
                     f"positives subsampled to {POSITIVE_FRACTION:.0%}", load_data)
    if data is None:
        return 1
    n = {k: len(data[f"y_{k}"]) for k in ("train", "val", "test")}
    pos = {k: int(data[f"y_{k}"].sum()) for k in ("train", "val", "test")}
    print(f"       train {n['train']} ({pos['train']} positive), validation {n['val']} "
          f"({pos['val']}), test {n['test']} ({pos['test']}); {data['x_train'].shape[1]} features")

    results = {}
    for loss in LOSSES:
        trained = steps.run(f'train loss="{loss}": {epochs} epochs, Adam 1e-3, batch '
                            f'{BATCH_SIZE}', train, data, loss, epochs)
        if trained is None:
            continue
        scores = steps.run(f'evaluate loss="{loss}" on the test split', evaluate, data,
                           trained["model"])
        if scores is not None:
            results[loss] = {**trained, **scores}
        for finding in lint_findings(trained["model"], loss):
            print(f"       lint: {finding}")

    if results:
        rows = [(f'"{loss}"', r["pr_auc"], r["roc_auc"], r["f1"], r["minority_recall"],
                 r["threshold"]) for loss, r in results.items()]
        print(f"\nHeld-out test split: {n['test']} digits, {pos['test']} of them "
              f"{POSITIVE_DIGIT}s (the minority class)")
        print(format_table(("loss", "PR-AUC", "ROC-AUC", "F1", "minority recall",
                            "threshold*"), rows))
        print("  * F1 and recall at the threshold that maximises F1 on the validation split. "
              "PR-AUC\n    is the threshold-free headline for imbalanced data. One seed, one "
              "small data set:\n    differences of a few points are within run-to-run noise.\n")

    reload = None
    if "focal" in results:
        reload = steps.run("save the focal model to .keras and reload it in a fresh process",
                           save_and_reload, results["focal"]["model"], data, out)
        if reload:
            print(f"       {reload['path']}: predictions after reload match (max |difference| "
                  f"{reload['max_abs_difference']:.1e})")
    plots = None
    if len(results) == len(LOSSES):
        plots = steps.run("plots: training curves, precision-recall curves", plot, results,
                          data, out)
        if plots:
            for p in plots:
                print(f"       {p}")

    summary = {
        "data": {"source": "scikit-learn digits (bundled)", "positive_digit": POSITIVE_DIGIT,
                 "positive_fraction": POSITIVE_FRACTION, "sizes": n, "positives": pos},
        "epochs": epochs, "seed": SEED,
        "results": {loss: {k: v for k, v in r.items() if k not in ("model", "scores")}
                    for loss, r in results.items()},
        "reload": reload, "plots": plots, "failed_steps": steps.failed,
        "versions": versions(), "seconds": round(time.perf_counter() - t_start, 1),
    }
    with open(os.path.join(out, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2, default=str)
    keras.backend.clear_session()

    ok = not steps.failed and len(results) == len(LOSSES) and reload and plots
    took = time.perf_counter() - t_start
    if ok:
        print(f"\ndemo finished in {took:.0f} s: every step succeeded. Outputs in {out}")
        print("next: `keras-afl list`, `keras-afl plot focal`, `keras-afl train configs/...yaml`")
        return 0
    print(f"\ndemo FAILED after {took:.0f} s: {', '.join(steps.failed) or 'a step was skipped'}",
          file=sys.stderr)
    return 1
