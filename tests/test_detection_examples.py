"""examples/detect_shapes.py and examples/segment_lesions.py: their parts against independent
references, and `keras-afl train` on their configs (configs/detector.yaml, configs/segmenter.yaml).

The scripts' full and --smoke runs are in tests/test_examples.py and tests/test_cli.py.
"""

import copy
import importlib.util
import json
import os

import keras
import numpy as np
import pytest
import yaml

import keras_afl
from keras_afl.cli import config as cli_config
from keras_afl.cli import main
from keras_afl.cli.common import ConfigError
from tests._checks import REPO

pytest.importorskip("pycocotools")


def _load(name):
    path = os.path.join(REPO, "examples", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"_test_example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


det = _load("detect_shapes")
seg = _load("segment_lesions")


def _iou_loop(a, b):
    """IoU of two boxes x0 y0 x1 y1, one pair at a time."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


# --------------------------------------------------------------------------- detector parts

def test_iou_matrix_matches_a_pairwise_loop():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 50, (12, 2))
    a = np.concatenate([xy[:7], xy[:7] + rng.uniform(1, 20, (7, 2))], 1)
    b = np.concatenate([xy[7:], xy[7:] + rng.uniform(1, 20, (5, 2))], 1)
    want = np.array([[_iou_loop(p, q) for q in b] for p in a])
    np.testing.assert_allclose(det.iou(a, b), want, rtol=1e-12)


def _clustered_boxes(rng, n):
    """`n` boxes x0 y0 x1 y1 in clusters (so that many overlap), a quarter with their corners
    swapped and a few of zero width; float32."""
    centres = rng.uniform(0, 64, (max(1, n // 8), 2))
    c = centres[rng.integers(0, len(centres), n)] + rng.normal(0, 2, (n, 2))
    wh = np.exp(rng.uniform(np.log(3), np.log(25), (n, 2)))
    boxes = np.concatenate([c - wh / 2, c + wh / 2], 1).astype("float32")
    boxes[: n // 4] = boxes[: n // 4][:, [2, 3, 0, 1]]
    boxes[:2, 2] = boxes[:2, 0]
    return boxes


@pytest.mark.parametrize("seed", range(6))
def test_nms_selects_what_tensorflow_combined_nms_selects(seed):
    """The NumPy NMS of `detect` (every backend) against `tf.image.combined_non_max_suppression`
    with the thresholds and limits drawn at random: the same boxes, scores, classes, order."""
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(1, 400)), int(rng.integers(1, 5))
    boxes = _clustered_boxes(rng, n)
    scores = (rng.uniform(0, 1, (n, k)) ** 3).astype("float32")  # distinct: no tie to order
    per_class, total = int(rng.integers(1, 120)), int(rng.integers(1, 150))
    iou_t, score_t = float(rng.choice([0.3, 0.5, 0.7])), float(rng.choice([0.0, 0.05, 0.2]))
    b, s, c, count = (np.asarray(v) for v in tf.image.combined_non_max_suppression(
        boxes[None, :, None, [1, 0, 3, 2]], scores[None], per_class, total,
        iou_threshold=iou_t, score_threshold=score_t, clip_boxes=False))
    m = int(count[0])
    got_b, got_s, got_c = det.nms(boxes, scores, iou_threshold=iou_t, score_threshold=score_t,
                                  max_per_class=per_class, max_total=total)
    assert len(got_s) == m
    np.testing.assert_array_equal(got_b, b[0, :m][:, [1, 0, 3, 2]])
    np.testing.assert_array_equal(got_s, s[0, :m])
    np.testing.assert_array_equal(got_c, c[0, :m].astype(int))


def test_nms_keeps_the_best_of_overlapping_boxes_per_class():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], "float32")
    scores = np.array([[0.9, 0.2], [0.8, 0.7], [0.01, 0.6]], "float32")
    b, s, c = det.nms(boxes, scores, iou_threshold=0.5, score_threshold=0.05)
    # class 0: box 1 (IoU 81/119 with box 0) is suppressed, box 2 is under the score threshold
    np.testing.assert_array_equal(s, np.float32([0.9, 0.7, 0.6]))
    np.testing.assert_array_equal(c, [0, 1, 1])
    np.testing.assert_array_equal(b, boxes[[0, 1, 2]])
    assert [len(v) for v in det.nms(boxes, np.zeros((3, 2), "float32"))] == [0, 0, 0]


def test_anchors_tile_the_image_in_the_order_of_the_model_outputs():
    anc = det.anchors()
    cells, per_cell = det.IMAGE_SIZE // det.STRIDE, len(det.ANCHOR_SIZES) * len(det.ANCHOR_RATIOS)
    assert anc.shape == (cells * cells * per_cell, 4)
    model = det.build_model(filters=4)
    out = model(np.zeros((1, 64, 64, 3), "float32"))
    assert tuple(out["cls"].shape) == (1, len(anc), len(det.CLASSES))
    assert tuple(out["box"].shape) == (1, len(anc), 4)
    centres = (anc[:, :2] + anc[:, 2:]) / 2
    # anchor i sits in row i // (cells * per_cell), column (i // per_cell) % cells
    i = np.arange(len(anc))
    np.testing.assert_allclose(centres[:, 1], (i // (cells * per_cell) + 0.5) * det.STRIDE, atol=1e-5)
    np.testing.assert_allclose(centres[:, 0], ((i // per_cell) % cells + 0.5) * det.STRIDE, atol=1e-5)
    sizes = np.sqrt((anc[:, 2] - anc[:, 0]) * (anc[:, 3] - anc[:, 1]))
    np.testing.assert_allclose(sorted(set(np.round(sizes, 4))), det.ANCHOR_SIZES, rtol=1e-5)


def test_box_encoding_round_trips():
    anc = det.anchors()[::97]
    rng = np.random.default_rng(1)
    boxes = np.concatenate([anc[:, :2] + rng.uniform(-3, 3, (len(anc), 2)), anc[:, 2:]], 1)
    np.testing.assert_allclose(det.decode(det.encode(boxes, anc), anc), boxes, atol=1e-4)


def test_targets_label_positives_the_ignore_band_and_negatives_by_iou():
    anc = det.anchors()
    boxes = np.array([[10.0, 12.0, 24.0, 25.0], [40.0, 30.0, 47.0, 36.0]], "float32")
    classes = np.array([2, 0])
    cls_t, box_t = det.targets(boxes, classes, anc)
    ious = np.array([[_iou_loop(a, b) for b in boxes] for a in anc])
    best = ious.max(1)
    forced = set(ious.argmax(0))
    for i in range(len(anc)):
        if best[i] >= 0.5 or i in forced:
            owner = (int(np.where(ious.argmax(0) == i)[0][0]) if i in forced
                     else int(ious[i].argmax()))
            want = np.eye(3)[classes[owner]]
            assert box_t[i, 4] == 1.0
        elif best[i] >= 0.4:
            want = np.full(3, -1.0)
            assert box_t[i, 4] == 0.0
        else:
            want = np.zeros(3)
            assert box_t[i, 4] == 0.0
        np.testing.assert_array_equal(cls_t[i], want, err_msg=f"anchor {i}, IoU {best[i]:.3f}")
    assert (cls_t == -1).any(), "the example boxes should put some anchors in the ignore band"
    # the small box (7x6 px) has no anchor at IoU >= 0.5: its best anchor is positive anyway
    assert ious[:, 1].max() < 0.5 and box_t[ious[:, 1].argmax(), 4] == 1.0


def test_box_loss_is_huber_on_positive_anchors_over_their_number():
    rng = np.random.default_rng(2)
    y = rng.normal(size=(2, 6, 5)).astype("float32")
    y[..., 4] = np.array([[1, 0, 0, 1, 0, 0], [0, 0, 1, 0, 0, 0]])
    p = rng.normal(scale=2.0, size=(2, 6, 4)).astype("float32")
    e = np.abs(p - y[..., :4])
    huber = np.where(e <= 1.0, 0.5 * e ** 2, e - 0.5).mean(-1)
    want = (huber * y[..., 4]).sum() / 3
    np.testing.assert_allclose(float(det.box_loss(y, p)), want, rtol=1e-5)
    y[..., 4] = 0  # no positives: 0, not NaN
    assert float(det.box_loss(y, p)) == 0.0


def test_shapes_have_tight_boxes_several_objects_and_frequent_small_ones():
    x, boxes, classes = det.make_shapes(40, seed=3)
    assert x.shape == (40, 64, 64, 3) and x.min() >= 0 and x.max() <= 1
    counts = [len(b) for b in boxes]
    assert min(counts) >= 1 and np.mean(counts) >= 3
    every = np.concatenate(boxes)
    assert (every[:, :2] >= 0).all() and (every[:, 2:] <= 64).all()
    areas = (every[:, 2] - every[:, 0]) * (every[:, 3] - every[:, 1])
    assert np.mean(areas < 12 ** 2) > 0.3, "small objects should be frequent"
    assert set(np.concatenate(classes)) == {0, 1, 2}
    assert np.array_equal(det.make_shapes(5, seed=3)[0], x[:5]), "fixed seed, same images"


def test_coco_map_counts_the_iou_thresholds_a_detection_passes():
    boxes = [np.array([[10.0, 10.0, 20.0, 20.0]]), np.array([[30.0, 30.0, 40.0, 40.0]])]
    classes = [np.array([0]), np.array([1])]
    perfect = [(b, np.array([0.9]), c) for b, c in zip(boxes, classes)]
    m = det.coco_map(boxes, classes, perfect)
    assert m["map"] == pytest.approx(1.0) and m["map50"] == pytest.approx(1.0)
    # shifted by 2 px: IoU 80/120 = 2/3 passes 4 of COCO's 10 thresholds (.5, .55, .6, .65)
    shifted = [(b + [2.0, 0.0, 2.0, 0.0], np.array([0.9]), c) for b, c in zip(boxes, classes)]
    assert _iou_loop(shifted[0][0][0], boxes[0][0]) == pytest.approx(2 / 3)
    m = det.coco_map(boxes, classes, shifted)
    assert m["map50"] == pytest.approx(1.0) and m["map"] == pytest.approx(0.4)
    wrong_class = [(b, np.array([0.9]), (c + 1) % 3) for b, c in zip(boxes, classes)]
    assert det.coco_map(boxes, classes, wrong_class)["map50"] == pytest.approx(0.0)
    assert det.coco_map(boxes, classes, [(np.zeros((0, 4)), [], [])] * 2)["map"] == 0.0


def test_detector_trains_with_the_losses_on_their_labels():
    """A few steps of the compiled detector: finite losses, a lower loss after training."""
    x, boxes, classes = det.make_shapes(16, seed=4)
    anc = det.anchors()
    cls_t, box_t = map(np.stack, zip(*(det.targets(b, c, anc) for b, c in zip(boxes, classes))))
    for _, loss in det.default_losses():
        keras.utils.set_random_seed(0)
        net = det.build_model(filters=8)
        net.compile(keras.optimizers.Adam(3e-3), loss={"cls": loss, "box": det.box_loss})
        h = net.fit(x, {"cls": cls_t, "box": box_t}, epochs=8, batch_size=8, verbose=0)
        losses = h.history["loss"]
        assert np.isfinite(losses).all() and losses[-1] < losses[0]


def test_detector_rejects_losses_it_cannot_train():
    with pytest.raises(ValueError, match="from_logits: true"):
        det.check_losses([("focal", keras_afl.losses.FocalLoss())])
    with pytest.raises(ValueError, match="binary-family loss"):
        det.check_losses([("scce", keras_afl.losses.SparseCategoricalCrossentropy(from_logits=True))])
    det.check_losses(det.default_losses())


# --------------------------------------------------------------------------- segmenter parts

def test_lesions_cover_about_one_percent_and_differ_from_the_tissue():
    x, y = seg.make_lesions(200, seed=5)
    assert x.shape == (200, 64, 64, 1) and y.shape == (200, 64, 64)
    fraction = np.bincount(y.ravel(), minlength=3) / y.size
    assert 0.005 < 1 - fraction[0] < 0.02
    assert fraction[1] > fraction[2] > 0  # bright lesions twice as frequent as dark ones
    img = x[..., 0]
    assert img[y == 1].mean() > img[y == 0].mean() + 0.2 > img[y == 2].mean() + 0.4


def test_iou_and_dice_count_pixels_over_the_split():
    y_true = np.array([[0, 1, 1, 2], [0, 0, 1, 0]])
    y_pred = np.array([[0, 1, 0, 2], [1, 0, 1, 0]])
    s = seg.iou_dice(y_true, y_pred)
    # class 1: TP 2 (the two matches), FP 1 ([1, 0]), FN 1 ([0, 2])
    assert s[1] == pytest.approx((2 / 4, 4 / 6))
    assert s[2] == pytest.approx((1.0, 1.0))
    # class 0: TP 3, FP 1, FN 1
    assert s[0] == pytest.approx((3 / 5, 6 / 8))
    assert np.isnan(seg.iou_dice(np.zeros((2, 2), int), np.zeros((2, 2), int))[1]).all()


def test_segmenter_smoke_says_why_a_class_has_no_score():
    """The --smoke split (4 test images) holds no dark lesion: a model that predicts none (on
    PyTorch) has IoU = Dice = 0 / 0 for it, printed as n/a with the reason, not as nan."""
    x, y = seg.make_lesions(seg.SMOKE["images"])
    test = y[-max(1, int(round(0.25 * len(y)))):]
    assert not (test == 2).any() and (test == 1).any()
    none_predicted = np.zeros_like(test)
    iou, dice = seg.iou_dice(test, none_predicted)[2]
    assert np.isnan(iou) and np.isnan(dice)
    text = seg._scores_text("dark lesion", iou, dice, len(test))
    assert "nan" not in text and "n/a" in text and "none in the 4 test images" in text
    assert seg._scores_text("bright lesion", 0.25, 0.4, 4) == "bright lesion: IoU 0.250 Dice 0.400"


def test_segmenter_losses_get_masks_in_their_format():
    """Sparse losses train on integer masks, categorical focal on one-hot masks: the same
    loss values as Keras's categorical focal on one-hot labels for the same logits."""
    x, y = seg.make_lesions(4, seed=6)
    net = seg.build_model(filters=4)
    logits = net(x)
    sparse_focal, _, cat_focal = (loss for _, loss in seg.default_losses())
    onehot = keras.utils.to_categorical(y, 3)
    keras_focal = keras.losses.CategoricalFocalCrossentropy(alpha=1.0, gamma=2.0, from_logits=True)
    want = keras_focal(onehot, logits)
    np.testing.assert_allclose(float(sparse_focal(y, logits)), float(want), rtol=1e-5)
    assert np.isfinite(float(cat_focal(onehot, logits)))
    with pytest.raises(ValueError, match="sparse or categorical"):
        seg.check_losses([("focal", keras_afl.losses.FocalLoss(from_logits=True))])


# --------------------------------------------------------------------------- keras-afl train

def _config(tmp_path, name, edit):
    cfg = yaml.safe_load(open(os.path.join(REPO, "configs", name)))
    cfg["example"] = os.path.join(REPO, "examples", os.path.basename(cfg["example"]))
    edit(cfg)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return str(path)


def test_example_configs_validate_with_the_scripts_defaults():
    cfg = cli_config.load(os.path.join(REPO, "configs", "detector.yaml"))
    assert cfg["example"] == os.path.join(REPO, "examples", "detect_shapes.py")
    assert set(cfg["data"]) == set(det.DATA) and cfg["model"] == {"filters": 32}
    assert [s["name"] for s in cfg["training"]["losses"]] == ["focal", "afl_bce"]
    assert cfg["training"]["losses"][0]["params"]["normalize"] == "positives"
    assert "validation_split" not in cfg["training"]
    cfg = cli_config.load(os.path.join(REPO, "configs", "segmenter.yaml"))
    assert [s["family"] for s in cfg["training"]["losses"]] == ["sparse", "sparse", "onehot"]


@pytest.mark.parametrize("edit, key, message", [
    (lambda c: c["data"].update(imagez=5), "data.imagez", "did you mean 'images'"),
    (lambda c: c["data"].update(images=2), "data.images", "out of range"),
    (lambda c: c["model"].update(filters=8.5), "model.filters", "expected an integer"),
    (lambda c: c["training"].update(validation_split=0.2), "training.validation_split",
     "its own test split"),
    (lambda c: c.update(lint=True), "lint", "model.layers configs"),
    (lambda c: c.update(example="missing.py"), "example", "no example script"),
])
def test_example_config_errors_name_the_key(tmp_path, edit, key, message):
    path = _config(tmp_path, "detector.yaml", edit)
    with pytest.raises(ConfigError) as err:
        cli_config.load(path)
    assert err.value.key == key and message in err.value.message


def test_example_config_with_a_loss_the_script_cannot_train_stops_before_training(tmp_path, capsys):
    def probabilities(cfg):
        cfg["training"]["compare"][0]["params"]["from_logits"] = False

    path = _config(tmp_path, "detector.yaml", probabilities)
    assert main(["train", path, "--smoke", "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "training.compare" in err and "set from_logits: true" in err
    assert not os.path.exists(tmp_path / "out" / "summary.json")


def test_segmenter_config_smoke_run_reports_per_class_iou_and_dice(tmp_path):
    out = tmp_path / "run"
    path = _config(tmp_path, "segmenter.yaml", lambda c: None)
    assert main(["train", path, "--smoke", "--quiet", "--output", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [r["loss"] for r in summary["runs"]][2].startswith("categorical_focal(")
    for r in summary["runs"]:
        assert {"iou_bright_lesion", "dice_dark_lesion", "mean_dice_lesions"} <= set(r["metrics"])
    assert summary["data"]["foreground_fraction"] > 0
    with open(summary["outputs"]["plot"], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    model = keras.models.load_model(summary["runs"][0]["model"])
    assert isinstance(model.loss, keras_afl.losses.SparseCategoricalFocalLoss)
    assert copy.deepcopy(summary["config"]["model"]) == {"filters": 8}


def test_lint_finds_no_error_in_the_example_models_with_their_losses():
    """What keras-afl train's lint check does for model.layers configs, on the scripts' models."""
    for label, loss in det.default_losses():
        found = keras_afl.lint(det.build_model(filters=4), loss={"cls": loss, "box": det.box_loss})
        assert not found.errors, (label, str(found))
    for label, loss in seg.default_losses():
        found = keras_afl.lint(seg.build_model(filters=4), loss=loss)
        assert not found.errors, (label, str(found))
