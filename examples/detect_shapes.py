"""A small single-stage detector trained from scratch: focal loss against BCE.

The setting where focal loss was introduced (Lin et al. 2017, RetinaNet): an
anchor-based detector scores every anchor of a dense grid, and almost all
anchors are easy background. The example generates its own data with NumPy
(64x64 images of circles, rectangles and triangles, 2 to 6 objects each, small
objects frequent), trains the same model twice with the same seed -- once
with `FocalLoss`, once with `BinaryCrossentropy` -- and evaluates both on a
held-out split with pycocotools (mAP@[.5:.95], mAP@.5).

What the losses get, as in RetinaNet:
  * per anchor and class a 0/1 label; anchors whose best IoU with an object is
    in the ignore band [0.4, 0.5) are labelled -1 (`ignore_class=-1`) and
    contribute nothing; every object's best anchor is positive even below 0.5;
  * the sum over anchors and classes divided by max(1, positive entries)
    (`normalize="positives"`), not by the number of anchors;
  * Huber box regression (`keras_afl.losses.huber`) on the positive anchors,
    normalised the same way; the classifier's bias starts at the prior 0.01.

    pip install "keras-afl[detection]"        # pycocotools, matplotlib
    python examples/detect_shapes.py          # a few minutes on 2 CPU cores
    python examples/detect_shapes.py --smoke  # seconds: tiny data, one epoch

`keras-afl train configs/detector.yaml` runs it from a config (`run` below).
"""

import argparse
import contextlib
import io
import json
import os
import textwrap
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_afl  # noqa: E402

CLASSES = ("circle", "rectangle", "triangle")
STRIDE = 4                            # the anchor grid: one cell per 4x4 pixels
ANCHOR_SIZES = (6.0, 12.0, 24.0)      # sqrt(w * h) in pixels
ANCHOR_RATIOS = (0.5, 1.0, 2.0)       # h / w
BOX_SCALE = np.array([0.1, 0.1, 0.2, 0.2], "float32")  # the usual target normalisation
POSITIVE_IOU, NEGATIVE_IOU = 0.5, 0.4  # IoU in [0.4, 0.5): ignored
IGNORE = -1

# Settings a config's `data:` and `model:` sections may change: name -> (default, low, high).
DATA = {"images": (640, 8, 100_000), "test_fraction": (0.25, 0.05, 0.5),
        "max_objects": (6, 1, 12), "min_size": (5.0, 3.0, 30.0), "max_size": (28.0, 6.0, 60.0)}
MODEL = {"filters": (32, 4, 256)}
IMAGE_SIZE = 64
SMOKE = {"images": 24, "epochs": 1}


# --------------------------------------------------------------------------- data

def make_shapes(images, *, max_objects=6, min_size=5.0, max_size=28.0, seed=0):
    """Images (n, 64, 64, 3) in [0, 1] and, per image, boxes (k, 4) x0 y0 x1 y1 and classes (k,).

    Object sizes are log-uniform in [min_size, max_size] pixels, so small objects
    are as frequent as the next octave up; objects do not touch, so no box is occluded.
    """
    rng = np.random.default_rng(seed)
    s = IMAGE_SIZE
    yy, xx = np.mgrid[0:s, 0:s].astype("float32") + 0.5
    x = np.empty((images, s, s, 3), "float32")
    boxes, classes = [], []
    for i in range(images):
        # background: a random colour gradient plus pixel noise
        c0, c1 = rng.uniform(0.0, 0.5, 3), rng.uniform(0.0, 0.5, 3)
        t = (np.cos(rng.uniform(0, np.pi)) * xx + np.sin(rng.uniform(0, np.pi)) * yy) / (2 * s)
        img = c0 + (c1 - c0) * (t[..., None] + 0.5)
        kept, labels = [], []
        for _ in range(rng.integers(2, max(2, max_objects) + 1)):
            for _attempt in range(20):
                size = np.exp(rng.uniform(np.log(min_size), np.log(max_size)))
                cls = int(rng.integers(len(CLASSES)))
                aspect = np.exp(rng.uniform(np.log(0.5), np.log(2.0))) if cls == 1 else 1.0
                w, h = size / np.sqrt(aspect), size * np.sqrt(aspect)
                x0, y0 = rng.uniform(0, s - w), rng.uniform(0, s - h)
                box = np.array([x0, y0, x0 + w, y0 + h])
                if not kept or iou(box[None] + [[-1, -1, 1, 1]], np.array(kept)).max() == 0:
                    break
            else:
                continue
            if cls == 0:
                r = w / 2
                mask = (xx - x0 - r) ** 2 + (yy - y0 - r) ** 2 <= r * r
            elif cls == 1:
                mask = (xx >= x0) & (xx <= x0 + w) & (yy >= y0) & (yy <= y0 + h)
            else:  # apex up: the half-width grows linearly from the apex to the base
                half_width = (yy - y0) * w / (2 * h)
                mask = (yy >= y0) & (yy <= y0 + h) & (np.abs(xx - x0 - w / 2) <= half_width)
            if mask.sum() < 4:
                continue
            ys, xs = np.nonzero(mask)  # the tight box of the drawn pixels
            kept.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
            labels.append(cls)
            img[mask] = rng.uniform(0.55, 1.0, 3)
        x[i] = np.clip(img + rng.normal(0, 0.05, img.shape), 0, 1)
        boxes.append(np.array(kept, "float32").reshape(-1, 4))
        classes.append(np.array(labels, "int64"))
    return x, boxes, classes


def anchors():
    """(A, 4) anchor boxes x0 y0 x1 y1, in the order of the model's outputs (row, column, anchor)."""
    cells = IMAGE_SIZE // STRIDE
    shapes = [(size / np.sqrt(r), size * np.sqrt(r)) for size in ANCHOR_SIZES for r in ANCHOR_RATIOS]
    cy, cx = (np.mgrid[0:cells, 0:cells] + 0.5) * STRIDE
    out = [np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1) for w, h in shapes]
    return np.stack(out, 2).reshape(-1, 4).astype("float32")


def iou(a, b):
    """IoU matrix (len(a), len(b)) of boxes x0 y0 x1 y1."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), -1)
    area = lambda z: (z[:, 2] - z[:, 0]) * (z[:, 3] - z[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def encode(boxes, anc):
    """Box regression targets of `boxes` relative to anchors `anc` (both (n, 4))."""
    wa, ha = anc[:, 2] - anc[:, 0], anc[:, 3] - anc[:, 1]
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    t = np.stack([(boxes[:, 0] + w / 2 - anc[:, 0] - wa / 2) / wa,
                  (boxes[:, 1] + h / 2 - anc[:, 1] - ha / 2) / ha,
                  np.log(w / wa), np.log(h / ha)], -1)
    return (t / BOX_SCALE).astype("float32")


def decode(t, anc):
    """The inverse of `encode`."""
    t = t * BOX_SCALE
    wa, ha = anc[:, 2] - anc[:, 0], anc[:, 3] - anc[:, 1]
    cx, cy = anc[:, 0] + wa / 2 + t[:, 0] * wa, anc[:, 1] + ha / 2 + t[:, 1] * ha
    w, h = wa * np.exp(t[:, 2]), ha * np.exp(t[:, 3])
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)


def targets(boxes, classes, anc):
    """Per image: class labels (A, K) in {1, 0, -1 ignored} and box targets (A, 5).

    An anchor is positive for its best object at IoU >= 0.5, negative below 0.4,
    ignored between (every class entry -1); each object's best anchor is positive
    whatever its IoU, so small objects get one. Box column 4 marks the positives.
    """
    n = len(anc)
    cls_t = np.zeros((n, len(CLASSES)), "float32")
    box_t = np.zeros((n, 5), "float32")
    if len(boxes) == 0:
        return cls_t, box_t
    m = iou(anc, boxes)
    best, best_iou = m.argmax(1), m.max(1)
    positive = best_iou >= POSITIVE_IOU
    forced = m.argmax(0)
    positive[forced] = True
    best[forced] = np.arange(len(boxes))
    cls_t[(best_iou >= NEGATIVE_IOU) & ~positive] = IGNORE
    cls_t[positive, classes[best[positive]]] = 1.0
    box_t[positive, :4] = encode(boxes[best[positive]], anc[positive])
    box_t[positive, 4] = 1.0
    return cls_t, box_t


# --------------------------------------------------------------------------- model

def build_model(filters=32, prior=0.01):
    """A small fully convolutional detector: stride-4 features, class and box heads."""
    f = filters
    a, k = len(ANCHOR_SIZES) * len(ANCHOR_RATIOS), len(CLASSES)

    def conv(n, s=1):
        return keras.layers.Conv2D(n, 3, strides=s, padding="same", activation="relu")

    inp = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3))
    x = conv(f // 2)(inp)
    x = conv(f, 2)(x)
    x = conv(f)(x)
    x = conv(2 * f, 2)(x)
    x = conv(2 * f)(x)
    x = conv(2 * f)(x)
    c = conv(2 * f)(x)
    c = keras.layers.Conv2D(a * k, 3, padding="same", bias_initializer=keras.initializers.Constant(
        -np.log((1 - prior) / prior)))(c)          # every anchor starts at p = prior
    b = conv(2 * f)(x)
    b = keras.layers.Conv2D(a * 4, 3, padding="same")(b)
    return keras.Model(inp, {"cls": keras.layers.Reshape((-1, k), name="cls")(c),
                             "box": keras.layers.Reshape((-1, 4), name="box")(b)},
                       name="shape_detector")


def box_loss(y_true, y_pred):
    """Huber on the positive anchors (column 4 of y_true), summed / max(1, positives)."""
    positive = y_true[..., 4]
    per_anchor = keras_afl.losses.huber(y_true[..., :4], y_pred, delta=1.0)
    return keras.ops.sum(per_anchor * positive) / keras.ops.maximum(keras.ops.sum(positive), 1.0)


def check_losses(losses):
    """ValueError unless every loss is a binary-family loss that reads logits."""
    for label, loss in losses:
        d = keras_afl.registry.describe_loss(loss)
        if d is None or d.family != "binary":
            raise ValueError(f"loss {label!r}: the detector scores each anchor and class with a "
                             "sigmoid; use a binary-family loss (focal, afl_bce)")
        if d.expects(getattr(loss, "from_logits", None)) != "logits":
            raise ValueError(f"loss {label!r} reads probabilities; the detector outputs logits: "
                             "set from_logits: true")


def default_losses():
    """The comparison: the same ignore band and normalisation, with and without focusing."""
    common = dict(from_logits=True, ignore_class=IGNORE, normalize="positives")
    return [("focal(gamma=2, alpha=0.25)",
             keras_afl.losses.FocalLoss(gamma=2.0, alpha=0.25, **common)),
            ("bce", keras_afl.losses.BinaryCrossentropy(**common))]


# --------------------------------------------------------------------------- evaluation

def detect(model, x, anc, *, score=0.05, iou_threshold=0.5, max_boxes=100):
    """Per image, (boxes (n, 4), scores (n,), classes (n,)) after per-class NMS."""
    out = model.predict(x, verbose=0, batch_size=64)
    probs = 0.5 * (1 + np.tanh(out["cls"] / 2))  # sigmoid, without overflow
    boxes = np.stack([decode(t, anc) for t in out["box"]])
    return [nms(b, p, iou_threshold=iou_threshold, score_threshold=score,
                max_per_class=max_boxes, max_total=max_boxes) for b, p in zip(boxes, probs)]


def nms(boxes, scores, *, iou_threshold=0.5, score_threshold=0.05, max_per_class=100,
        max_total=100):
    """Per-class greedy non-maximum suppression, then the best `max_total` boxes of all classes.

    `boxes` (n, 4) x0 y0 x1 y1 are shared by the classes, `scores` (n, classes). In NumPy on
    the host, so it runs on every Keras backend, with the numbers of TensorFlow's
    `tf.image.combined_non_max_suppression(..., clip_boxes=False)` (tested against it): per
    class, the boxes scoring above `score_threshold` in decreasing order, each kept when its IoU
    with every box kept before it is at most `iou_threshold`, up to `max_per_class`; then all
    kept boxes by decreasing score, up to `max_total`. IoU in float32, computed as TensorFlow's
    kernel does. Boxes of equal score are taken in index order (TensorFlow's order for them is
    unspecified).

    Returns:
        (boxes (m, 4), scores (m,), classes (m,)), best first.
    """
    boxes = np.asarray(boxes, np.float32)
    scores = np.asarray(scores, np.float32)
    lo, hi = np.minimum(boxes[:, :2], boxes[:, 2:]), np.maximum(boxes[:, :2], boxes[:, 2:])
    area = (hi[:, 0] - lo[:, 0]) * (hi[:, 1] - lo[:, 1])

    def iou_with(i, others):
        side = np.maximum(np.minimum(hi[i], hi[others]) - np.maximum(lo[i], lo[others]), 0)
        inter = side[:, 0] * side[:, 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = inter / (area[i] + area[others] - inter)
        return np.where((area[i] <= 0) | (area[others] <= 0), np.float32(0), iou)

    per_class = min(max_per_class, len(boxes))
    kept_index, kept_class = [], []
    for c in range(scores.shape[1]):
        s = scores[:, c]
        order = np.flatnonzero(s > np.float32(score_threshold))
        order = order[np.argsort(-s[order], kind="stable")]
        kept = []
        while order.size and len(kept) < per_class:
            kept.append(order[0])
            order = order[1:][iou_with(order[0], order[1:]) <= np.float32(iou_threshold)]
        kept_index += kept
        kept_class += [c] * len(kept)
    index, classes = np.asarray(kept_index, int), np.asarray(kept_class, int)
    best = np.argsort(-scores[index, classes], kind="stable")[:max_total]
    return boxes[index[best]], scores[index[best], classes[best]], classes[best]


def coco_map(true_boxes, true_classes, detections, *, small=12):
    """COCO-style AP from pycocotools: mAP@[.5:.95], mAP@.5, and AP of objects under small^2 px.

    COCO's own size ranges (32^2, 96^2 pixels) would put every object of a
    64x64 image in "small"; here "small" is < 12^2 px, "medium" 12^2 to 24^2.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = {"images": [{"id": i} for i in range(len(true_boxes))],
          "categories": [{"id": c} for c in range(len(CLASSES))], "annotations": []}
    for i, (bs, cs) in enumerate(zip(true_boxes, true_classes)):
        for b, c in zip(bs, cs):
            w, h = float(b[2] - b[0]), float(b[3] - b[1])
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": i,
                                      "category_id": int(c), "bbox": [float(b[0]), float(b[1]), w, h],
                                      "area": w * h, "iscrowd": 0})
    dets = [{"image_id": i, "category_id": int(c), "score": float(s),
             "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]}
            for i, (bs, ss, cs) in enumerate(detections) for b, s, c in zip(bs, ss, cs)]
    if not dets:
        return {"map": 0.0, "map50": 0.0, "map_small": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints as it goes
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        e = COCOeval(coco, coco.loadRes(dets), "bbox")
        e.params.areaRng = [[0, 1e10], [0, small ** 2], [small ** 2, (2 * small) ** 2],
                            [(2 * small) ** 2, 1e10]]
        e.evaluate()
        e.accumulate()
        e.summarize()
    # stats: AP@[.5:.95], AP@.5, AP@.75, AP small, medium, large (-1: no objects of that size)
    return {"map": float(e.stats[0]), "map50": float(e.stats[1]),
            "map_small": max(0.0, float(e.stats[3]))}


def plot(path, x, true_boxes, detections, *, images=4, threshold=0.3):
    """Test images (rows): the true boxes, then each loss's boxes scoring >= threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = ["truth", *detections]
    fig, axes = plt.subplots(images, len(cols), figsize=(2.6 * len(cols), 2.6 * images),
                             squeeze=False)
    colours = ("tab:red", "tab:green", "tab:blue")
    for i in range(images):
        for j, name in enumerate(cols):
            ax = axes[i, j]
            ax.imshow(x[i], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(textwrap.fill(name, 30), fontsize=9)
            shown = ([(b, 1.0, c) for b, c in zip(*true_boxes[i])] if name == "truth"
                     else [d for d in zip(*detections[name][i]) if d[1] >= threshold])
            for b, s, c in shown:
                ax.add_patch(matplotlib.patches.Rectangle(
                    (b[0] - 0.5, b[1] - 0.5), b[2] - b[0], b[3] - b[1], fill=False,
                    color=colours[c], lw=1.2))
                if name != "truth":
                    ax.text(b[0], b[1] - 1, f"{s:.2f}", color=colours[c], fontsize=6)
    fig.suptitle(f"held-out images: boxes with score >= {threshold} "
                 f"(red {CLASSES[0]}, green {CLASSES[1]}, blue {CLASSES[2]})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --------------------------------------------------------------------------- the experiment

def run(losses, *, data=None, model=None, epochs=30, batch_size=16, optimizer=None, seed=0,
        out_dir=".", smoke=False, verbose=1):
    """Trains the detector once per loss (same seed, same data) and evaluates each.

    Args:
        losses: [(label, loss)] classification losses (binary family, logits).
        data, model: Settings from `DATA` and `MODEL` (defaults for the ones not given).
        optimizer: A function returning a fresh optimizer (default Adam, 1e-3).
        smoke: A few images and one epoch, for the tests.

    Returns:
        {"data": summary, "runs": [{"loss", "metrics", "history", "model", "timings_s"}],
         "outputs": {"plot": path}}; each model is saved in `out_dir`.
    """
    check_losses(losses)
    try:
        import pycocotools  # noqa: F401
    except ImportError:
        raise ImportError('the detector is evaluated with pycocotools, which is not installed: '
                          'pip install "keras-afl[detection]"') from None
    d = {k: v[0] for k, v in DATA.items()} | dict(data or {})
    m = {k: v[0] for k, v in MODEL.items()} | dict(model or {})
    if smoke:
        d["images"], epochs = min(d["images"], SMOKE["images"]), SMOKE["epochs"]
    optimizer = optimizer or (lambda: keras.optimizers.Adam(1e-3))
    x, boxes, classes = make_shapes(d["images"], max_objects=d["max_objects"],
                                    min_size=d["min_size"], max_size=d["max_size"], seed=seed)
    n_test = max(1, int(round(d["test_fraction"] * len(x))))
    anc = anchors()
    cls_t, box_t = map(np.stack, zip(*(targets(b, c, anc) for b, c in zip(boxes, classes))))
    train = slice(0, len(x) - n_test)
    test = slice(len(x) - n_test, len(x))
    counts = [len(b) for b in boxes]
    summary = {"images": len(x), "n_train": len(x) - n_test, "n_test": n_test,
               "objects_per_image": float(np.mean(counts)), "anchors": len(anc),
               "positive_anchors_per_image": float((box_t[..., 4] > 0).sum(1).mean()),
               "ignored_anchors_per_image": float((cls_t[..., 0] == IGNORE).sum(1).mean()),
               "small_object_fraction": float(np.mean([
                   (b[2] - b[0]) * (b[3] - b[1]) < 144 for bs in boxes for b in bs]))}
    if verbose:
        print(f"shapes: {summary['n_train']} train / {n_test} test images, "
              f"{summary['objects_per_image']:.1f} objects per image "
              f"({summary['small_object_fraction']:.0%} under 12x12 px); {len(anc)} anchors, "
              f"{summary['positive_anchors_per_image']:.1f} positive and "
              f"{summary['ignored_anchors_per_image']:.1f} ignored per image")
    runs, detections = [], {}
    for label, loss in losses:
        keras.utils.set_random_seed(seed)
        net = build_model(m["filters"])
        net.compile(optimizer=optimizer(), loss={"cls": loss, "box": box_loss})
        t0 = time.perf_counter()
        hist = net.fit(x[train], {"cls": cls_t[train], "box": box_t[train]}, epochs=epochs,
                       batch_size=batch_size, verbose=0)
        t_fit = time.perf_counter() - t0
        t0 = time.perf_counter()
        detections[label] = detect(net, x[test], anc)
        metrics = coco_map(boxes[test], classes[test], detections[label])
        path = os.path.join(out_dir, f"detector_{_slug(label)}.keras")
        net.save(path)
        history = {k: [float(v) for v in vs] for k, vs in hist.history.items()}
        runs.append({"loss": label, "metrics": metrics, "history": history, "model": path,
                     "timings_s": {"fit": round(t_fit, 2),
                                   "evaluate": round(time.perf_counter() - t0, 2)}})
        if verbose:
            print(f"  {label:<28} mAP@[.5:.95] {metrics['map']:.3f}  mAP@.5 {metrics['map50']:.3f}"
                  f"  AP small {metrics['map_small']:.3f}   ({t_fit:.0f} s)")
    png = os.path.join(out_dir, "detections.png")
    plot(png, x[test], list(zip(boxes[test], classes[test])), detections)
    return {"data": summary, "runs": runs, "outputs": {"plot": png}}


def _slug(text):
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in text).strip("_")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny data, one epoch (seconds)")
    p.add_argument("--output", default="detect_shapes_out", help="folder for models and the PNG")
    args = p.parse_args(argv)
    os.makedirs(args.output, exist_ok=True)
    result = run(default_losses(), out_dir=args.output, smoke=args.smoke)
    with open(os.path.join(args.output, "results.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    (focal, f_m), (bce, b_m) = ((r["loss"], r["metrics"]) for r in result["runs"])
    print(f"\nfocal - bce: mAP@[.5:.95] {f_m['map'] - b_m['map']:+.3f}, "
          f"mAP@.5 {f_m['map50'] - b_m['map50']:+.3f} (one seed, one split)")
    print(f"wrote {result['outputs']['plot']}")
    if not args.smoke and max(f_m["map50"], b_m["map50"]) < 0.3:
        raise SystemExit("expected a trained detector to reach mAP@.5 above 0.3")


if __name__ == "__main__":
    main()
