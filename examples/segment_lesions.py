"""A small U-Net on lesion-like images where the foreground is about 1 % of the pixels.

Medical image segmentation is one of focal loss's named uses: a lesion covers
a few dozen pixels of an image, so per-pixel cross-entropy is dominated by
easy background. The example generates its own data with NumPy (64x64
grey-level "tissue" with 0 to 3 small lesions of two kinds: bright ones, and
rarer dark ones), trains the same U-Net with the same seed once per loss and
reports per-class IoU and Dice on a held-out split:

  * sparse categorical focal loss on integer masks (no one-hot in memory);
  * sparse categorical cross-entropy, the usual baseline;
  * categorical focal loss with a per-class alpha, on one-hot masks.

    python examples/segment_lesions.py          # a few minutes on 2 CPU cores
    python examples/segment_lesions.py --smoke  # seconds: tiny data, one epoch (its 4 test
                                                # images hold no dark lesion: n/a, not a score)

`keras-afl train configs/segmenter.yaml` runs it from a config (`run` below).
"""

import argparse
import json
import os
import textwrap
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_afl  # noqa: E402

CLASSES = ("background", "bright lesion", "dark lesion")
IMAGE_SIZE = 64

# Settings a config's `data:` and `model:` sections may change: name -> (default, low, high).
DATA = {"images": (480, 8, 100_000), "test_fraction": (0.25, 0.05, 0.5),
        "lesions_per_image": (1.25, 0.1, 5.0), "contrast": (0.4, 0.05, 1.0)}
MODEL = {"filters": (8, 4, 128)}
SMOKE = {"images": 16, "epochs": 1}


# --------------------------------------------------------------------------- data

def make_lesions(images, *, lesions_per_image=1.25, contrast=0.4, seed=0):
    """Images (n, 64, 64, 1) around 0, integer masks (n, 64, 64): 0 background, 1 bright, 2 dark.

    Tissue: a smooth random field plus pixel noise. Lesions: ellipses with radii
    of 1.5 to 5 pixels, a Poisson number per image, bright (+contrast) twice as
    often as dark (-contrast), with a soft edge.
    """
    rng = np.random.default_rng(seed)
    s = IMAGE_SIZE
    yy, xx = np.mgrid[0:s, 0:s].astype("float32")
    coarse = np.linspace(0, s - 1, 5)
    x = np.empty((images, s, s, 1), "float32")
    y = np.zeros((images, s, s), "int32")
    for i in range(images):
        field = rng.normal(0, 0.1, (5, 5))  # bilinear upsampling of a coarse random grid
        rows = np.array([np.interp(np.arange(s), coarse, r) for r in field])
        img = np.array([np.interp(np.arange(s), coarse, c) for c in rows.T]).T
        for _ in range(rng.poisson(lesions_per_image)):
            cls = 1 if rng.random() < 2 / 3 else 2
            a, b = rng.uniform(1.5, 5.0, 2)
            cx, cy, th = rng.uniform(6, s - 6), rng.uniform(6, s - 6), rng.uniform(0, np.pi)
            u = ((xx - cx) * np.cos(th) + (yy - cy) * np.sin(th)) / a
            v = (-(xx - cx) * np.sin(th) + (yy - cy) * np.cos(th)) / b
            r2 = u * u + v * v
            sign = 1.0 if cls == 1 else -1.0
            img += sign * contrast * np.clip(1.3 - r2, 0, 1)  # flat top, soft edge
            y[i][r2 <= 1] = cls
        x[i, ..., 0] = img + rng.normal(0, 0.06, (s, s))
    return x, y


# --------------------------------------------------------------------------- model

def build_model(filters=8, classes=len(CLASSES)):
    """A three-level U-Net returning per-pixel logits (n, 64, 64, classes)."""
    f = filters

    def block(x, n):
        x = keras.layers.Conv2D(n, 3, padding="same", activation="relu")(x)
        return keras.layers.Conv2D(n, 3, padding="same", activation="relu")(x)

    inp = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 1))
    e1 = block(inp, f)
    e2 = block(keras.layers.MaxPooling2D()(e1), 2 * f)
    e3 = block(keras.layers.MaxPooling2D()(e2), 4 * f)
    x = block(keras.layers.MaxPooling2D()(e3), 8 * f)
    for skip, n in ((e3, 4 * f), (e2, 2 * f), (e1, f)):
        x = keras.layers.UpSampling2D()(x)
        x = block(keras.layers.Concatenate()([x, skip]), n)
    return keras.Model(inp, keras.layers.Conv2D(classes, 1)(x), name="lesion_unet")


def check_losses(losses):
    """ValueError unless every loss is a softmax loss (sparse or one-hot labels) on logits."""
    for label, loss in losses:
        d = keras_afl.registry.describe_loss(loss)
        if d is None or d.family not in ("sparse", "categorical"):
            raise ValueError(f"loss {label!r}: the U-Net gives softmax logits per pixel; use a "
                             "sparse or categorical loss (sparse_categorical_focal, "
                             "afl_sparse_categorical_crossentropy, categorical_focal)")
        if d.expects(getattr(loss, "from_logits", None)) != "logits":
            raise ValueError(f"loss {label!r} reads probabilities; the U-Net outputs logits: "
                             "set from_logits: true")


def default_losses():
    alpha = [0.1, 0.9, 0.9]  # alpha_t per class: the lesions weigh 9x the background
    return [
        ("sparse focal (gamma=2)",
         keras_afl.losses.SparseCategoricalFocalLoss(gamma=2.0, from_logits=True)),
        ("sparse cross-entropy", keras_afl.losses.SparseCategoricalCrossentropy(from_logits=True)),
        (f"categorical focal (gamma=2, alpha={alpha})",
         keras_afl.losses.CategoricalFocalLoss(gamma=2.0, alpha=alpha, from_logits=True)),
    ]


# --------------------------------------------------------------------------- evaluation

def iou_dice(y_true, y_pred, classes=len(CLASSES)):
    """Per-class IoU and Dice over all pixels of the split (pooled, not per image).

    IoU = TP / (TP + FP + FN), Dice = 2 TP / (2 TP + FP + FN); NaN for a class
    that is neither in the truth nor in the prediction.
    """
    out = {}
    for c in range(classes):
        t, p = y_true == c, y_pred == c
        tp, fp, fn = np.sum(t & p), np.sum(~t & p), np.sum(t & ~p)
        denom = tp + fp + fn
        out[c] = (tp / denom if denom else float("nan"),
                  2 * tp / (2 * tp + fp + fn) if denom else float("nan"))
    return out


def plot(path, x, y, predictions, *, images=4):
    """Rows: test images with lesions; columns: image, true mask, each loss's mask."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    cmap = ListedColormap(["black", "gold", "deepskyblue"])
    show = [i for i in range(len(y)) if (y[i] > 0).any()][:images] or list(range(min(images, len(y))))
    cols = ["image", "truth", *predictions]
    fig, axes = plt.subplots(len(show), len(cols), figsize=(2.3 * len(cols), 2.4 * len(show)),
                             squeeze=False)
    for r, i in enumerate(show):
        for j, name in enumerate(cols):
            ax = axes[r, j]
            if name == "image":
                ax.imshow(x[i, ..., 0], cmap="gray", interpolation="nearest")
            else:
                mask = y[i] if name == "truth" else predictions[name][i]
                ax.imshow(mask, cmap=cmap, vmin=0, vmax=2, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(textwrap.fill(name, 30), fontsize=7)
    fig.suptitle("held-out images: gold = bright lesion, blue = dark lesion", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --------------------------------------------------------------------------- the experiment

def run(losses, *, data=None, model=None, epochs=20, batch_size=16, optimizer=None, seed=0,
        out_dir=".", smoke=False, verbose=1):
    """Trains the U-Net once per loss (same seed, same data) and evaluates each.

    Args:
        losses: [(label, loss)]: sparse losses get integer masks, categorical ones one-hot.
        data, model: Settings from `DATA` and `MODEL` (defaults for the ones not given).
        optimizer: A function returning a fresh optimizer (default Adam, 3e-3).
        smoke: A few images and one epoch, for the tests.

    Returns:
        {"data": summary, "runs": [{"loss", "metrics", "history", "model", "timings_s"}],
         "outputs": {"plot": path}}; each model is saved in `out_dir`.
    """
    check_losses(losses)
    d = {k: v[0] for k, v in DATA.items()} | dict(data or {})
    m = {k: v[0] for k, v in MODEL.items()} | dict(model or {})
    if smoke:
        d["images"], epochs = min(d["images"], SMOKE["images"]), SMOKE["epochs"]
    optimizer = optimizer or (lambda: keras.optimizers.Adam(3e-3))
    x, y = make_lesions(d["images"], lesions_per_image=d["lesions_per_image"],
                        contrast=d["contrast"], seed=seed)
    n_test = max(1, int(round(d["test_fraction"] * len(x))))
    train, test = slice(0, len(x) - n_test), slice(len(x) - n_test, len(x))
    counts = np.bincount(y.ravel(), minlength=len(CLASSES)) / y.size
    summary = {"images": len(x), "n_train": len(x) - n_test, "n_test": n_test,
               "pixel_fraction": {c: float(f) for c, f in zip(CLASSES, counts)},
               "foreground_fraction": float(1 - counts[0])}
    if verbose:
        print(f"lesions: {summary['n_train']} train / {n_test} test images; pixels: "
              + ", ".join(f"{c} {f:.2%}" for c, f in zip(CLASSES, counts)))
    runs, predictions = [], {}
    for label, loss in losses:
        sparse = keras_afl.registry.describe_loss(loss).family == "sparse"
        targets = y if sparse else keras.utils.to_categorical(y, len(CLASSES)).astype("float32")
        keras.utils.set_random_seed(seed)
        net = build_model(m["filters"])
        net.compile(optimizer=optimizer(), loss=loss)
        t0 = time.perf_counter()
        hist = net.fit(x[train], targets[train], epochs=epochs, batch_size=batch_size, verbose=0)
        t_fit = time.perf_counter() - t0
        t0 = time.perf_counter()
        predictions[label] = np.argmax(net.predict(x[test], verbose=0, batch_size=64), -1)
        scores = iou_dice(y[test], predictions[label])
        metrics = {}
        for c, name in enumerate(CLASSES):
            key = name.replace(" ", "_")
            metrics[f"iou_{key}"], metrics[f"dice_{key}"] = (float(v) for v in scores[c])
        present = [scores[c][1] for c in (1, 2) if not np.isnan(scores[c][1])]
        metrics["mean_dice_lesions"] = float(np.mean(present)) if present else float("nan")
        path = os.path.join(out_dir, f"unet_{_slug(label)}.keras")
        net.save(path)
        runs.append({"loss": label, "metrics": metrics, "model": path,
                     "history": {k: [float(v) for v in vs] for k, vs in hist.history.items()},
                     "timings_s": {"fit": round(t_fit, 2),
                                   "evaluate": round(time.perf_counter() - t0, 2)}})
        if verbose:
            print(f"  {label:<44} " + "  ".join(
                _scores_text(name, *scores[c], n_test) for c, name in enumerate(CLASSES) if c)
                  + f"   ({t_fit:.0f} s)")
    png = os.path.join(out_dir, "segmentations.png")
    plot(png, x[test], y[test], predictions)
    return {"data": summary, "runs": runs, "outputs": {"plot": png}}


def _scores_text(name, iou, dice, n_test):
    """"bright lesion: IoU 0.412 Dice 0.583", or why there are no numbers: a class in neither the
    truth nor the predictions of the test images has IoU = Dice = 0 / 0 (NaN in the metrics). A
    --smoke run's 4 test images hold no dark lesion, and a model trained for one epoch on 12
    images may predict none: it does on PyTorch, where the initial weights are other random
    numbers (each backend draws them with its own generator), and predicts a few false dark
    pixels on TensorFlow and JAX (IoU = Dice = 0)."""
    if np.isnan(iou):
        return f"{name}: IoU/Dice n/a (none in the {n_test} test images, none predicted)"
    return f"{name}: IoU {iou:.3f} Dice {dice:.3f}"


def _slug(text):
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in text).strip("_")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny data, one epoch (seconds)")
    p.add_argument("--output", default="segment_lesions_out", help="folder for models and the PNG")
    args = p.parse_args(argv)
    os.makedirs(args.output, exist_ok=True)
    result = run(default_losses(), out_dir=args.output, smoke=args.smoke)
    with open(os.path.join(args.output, "results.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {result['outputs']['plot']}")
    best = max(r["metrics"]["mean_dice_lesions"] for r in result["runs"])
    if not args.smoke and not best > 0.5:
        raise SystemExit(f"expected a trained U-Net to reach a lesion Dice above 0.5, got {best:.3f}")


if __name__ == "__main__":
    main()
