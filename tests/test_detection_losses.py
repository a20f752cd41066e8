"""Losses for detection and dense prediction (issue 14): ignored entries in the binary losses,
normalisation by positives, the sparse losses on [batch, H, W, K] outputs.

References: NumPy formulas in float64, the plain formula under TensorFlow autodiff, and Keras's
own losses (reductions, masks, KerasHub's RetinaNet convention) in the same run.
"""

import numpy as np
import pytest
import tensorflow as tf

import keras
import keras_afl
from tests._checks import grads, run_python

L = keras_afl.losses
F64 = {"dtype": "float64"}


def _rng(seed):
    return np.random.default_rng(seed)


def _softplus(x):
    return np.logaddexp(0.0, x)


def np_binary_entries(y, z, kind, gamma=2.0, alpha=0.25):
    """Per-entry BCE or focal loss from logits (float64), labels in [0, 1]."""
    ce = y * _softplus(-z) + (1 - y) * _softplus(z)
    if kind == "bce":
        return ce
    p = 1.0 / (1.0 + np.exp(-z))
    pt = y * p + (1 - y) * (1 - p)
    at = 1.0 if alpha is None else alpha * y + (1 - alpha) * (1 - y)
    return at * (1 - pt) ** gamma * ce


def tf_binary_entries(y, z, kind, gamma=2.0, alpha=0.25):
    """The same plain formula in TensorFlow ops (differentiated by autodiff)."""
    ce = y * tf.nn.softplus(-z) + (1 - y) * tf.nn.softplus(z)
    if kind == "bce":
        return ce
    p = tf.sigmoid(z)
    pt = y * p + (1 - y) * (1 - p)
    at = alpha * y + (1 - alpha) * (1 - y)
    return at * (1 - pt) ** gamma * ce


def ours(kind, **kw):
    if kind == "bce":
        return L.BinaryCrossentropy(from_logits=True, **kw)
    return L.FocalLoss(gamma=2.0, alpha=0.25, from_logits=True, **kw)


def ours_fn(kind):
    return L.binary_crossentropy if kind == "bce" else L.focal


def detection_batch(seed=0, batch=3, anchors=10, classes=4, ignore=-1.0):
    """Anchor labels [batch, anchors, classes]: one-hot positives, all-zero negatives, and
    ignored anchors (every entry `ignore`); images with 0, a few and many positives."""
    r = _rng(seed)
    y = np.zeros((batch, anchors, classes))
    state = r.choice(3, size=(batch, anchors), p=[0.6, 0.25, 0.15])  # 0 neg, 1 pos, 2 ignored
    state[0] = np.where(state[0] == 1, 0, state[0])  # image 0: no positive
    cls = r.integers(0, classes, size=(batch, anchors))
    y[state == 1, :] = 0.0
    y[np.nonzero(state == 1) + (cls[state == 1],)] = 1.0
    y[state == 2] = ignore
    z = r.normal(scale=2.0, size=(batch, anchors, classes))
    return y, z, state


# --------------------------------------------------------------------------- ignored entries


class TestIgnoreClass:
    @pytest.mark.parametrize("kind", ["bce", "focal"])
    @pytest.mark.parametrize("ignore", [-1, 255])
    def test_values_are_the_mean_over_entries_kept(self, kind, ignore):
        r = _rng(1)
        y = (r.uniform(size=(6, 5)) < 0.4).astype("float64")
        y[r.uniform(size=y.shape) < 0.3] = ignore
        y[2] = ignore  # a row with every entry ignored
        z = r.normal(scale=3.0, size=y.shape)
        keep = y != ignore
        per = np_binary_entries(np.where(keep, y, 0.0), z, kind) * keep
        expected = per.sum(-1) / np.maximum(keep.sum(-1), 1)
        got = ours_fn(kind)(tf.constant(y), tf.constant(z), from_logits=True, ignore_class=ignore)
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-15)
        mask = keras_afl._keras_compat.keras_mask(got)
        np.testing.assert_array_equal(mask.numpy(), keep.any(-1))

    @pytest.mark.parametrize("kind", ["bce", "focal"])
    @pytest.mark.parametrize("mode", ["eager", "graph", "xla"])
    def test_gradient_is_the_plain_formula_and_zero_on_ignored_entries_grad(self, kind, mode):
        r = _rng(2)
        y = (r.uniform(size=(4, 6)) < 0.4).astype("float64")
        y[r.uniform(size=y.shape) < 0.3] = -1.0
        z = r.normal(scale=3.0, size=y.shape)
        z[y == -1] = 1e4  # an extreme logit on an ignored entry: still no gradient, no NaN
        keep = tf.constant((y != -1).astype("float64"))
        y_kept = tf.constant(np.where(y == -1, 0.0, y))

        def plain(v):
            per = tf_binary_entries(y_kept, v, kind) * keep
            return tf.reduce_sum(per, -1) / tf.maximum(tf.reduce_sum(keep, -1), 1.0)

        def fn(v):
            return ours_fn(kind)(tf.constant(y), v, from_logits=True, ignore_class=-1)

        run = {"eager": fn, "graph": tf.function(fn),
               "xla": tf.function(fn, jit_compile=True)}[mode]
        up = tf.constant(r.uniform(0.5, 2.0, size=(4,)))
        got, (g,) = grads(run, tf.constant(z), upstream=up)
        ref, (g_ref,) = grads(plain, tf.constant(np.where(y == -1, 0.0, z)), upstream=up)
        np.testing.assert_allclose(got.numpy(), ref.numpy(), rtol=1e-10)
        assert np.all(np.isfinite(g.numpy()))
        np.testing.assert_array_equal(g.numpy()[y == -1], 0.0)
        np.testing.assert_allclose(g.numpy(), g_ref.numpy() * keep.numpy(), rtol=1e-9, atol=1e-15)

    @pytest.mark.parametrize("kind", ["bce", "focal"])
    def test_compiled_kernels_agree_with_the_plain_path_grad(self, kind):
        # 2^16 float32 elements in a tf.function: the compiled path (`_core._fused`).
        r = _rng(3)
        y = (r.uniform(size=(256, 256)) < 0.1).astype("float32")
        y[r.uniform(size=y.shape) < 0.2] = 255
        z = r.normal(scale=2.0, size=y.shape).astype("float32")

        def fn(v):
            return ours_fn(kind)(tf.constant(y), v, from_logits=True, ignore_class=255)

        eager, (g_eager,) = grads(fn, tf.constant(z))
        graph, (g_graph,) = tf.function(lambda v: grads(fn, v))(tf.constant(z))
        np.testing.assert_allclose(graph.numpy(), eager.numpy(), rtol=2e-5, atol=1e-7)
        np.testing.assert_allclose(g_graph.numpy(), g_eager.numpy(), rtol=2e-5, atol=1e-9)
        np.testing.assert_array_equal(g_graph.numpy()[y == 255], 0.0)

    @pytest.mark.parametrize("kind", ["bce", "focal"])
    @pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "mean_with_sample_weight",
                                           None])
    @pytest.mark.parametrize("weights", ["none", "per_pixel", "zero"])
    def test_every_reduction_with_weights_and_masks_equals_keras_on_the_kept_pixels(
            self, kind, reduction, weights):
        # A segmentation mask [batch, H, W, 1] with void pixels (255): ignoring them is Keras's
        # own loss with those pixels masked out (a Keras mask on y_pred), and a model mask too.
        r = _rng(4)
        y = (r.uniform(size=(2, 5, 4, 1)) < 0.3).astype("float64")
        void = r.uniform(size=(2, 5, 4)) < 0.25
        y[void] = 255
        p = tf.constant(r.uniform(0.02, 0.98, size=y.shape))
        model_mask = r.uniform(size=(2, 5, 4)) < 0.8
        sw = {"none": None, "per_pixel": r.uniform(0.2, 2.0, size=(2, 5, 4)),
              "zero": np.zeros((2, 5, 4))}[weights]
        if kind == "bce":
            theirs = keras.losses.BinaryCrossentropy(reduction=reduction, **F64)
            mine = L.BinaryCrossentropy(reduction=reduction, ignore_class=255, **F64)
        else:
            theirs = keras.losses.BinaryFocalCrossentropy(apply_class_balancing=True, alpha=0.25,
                                                         gamma=2.0, reduction=reduction, **F64)
            mine = L.FocalLoss(reduction=reduction, ignore_class=255, **F64)

        def with_mask(v, m):
            v = tf.identity(v)
            v._keras_mask = tf.constant(m)
            return v

        got = mine(tf.constant(y), with_mask(p, model_mask), sample_weight=sw)
        ref = theirs(tf.constant(np.where(void[..., None], 0.0, y)),
                     with_mask(p, model_mask & ~void), sample_weight=sw)
        np.testing.assert_allclose(got.numpy(), ref.numpy(), rtol=1e-9, atol=1e-12)

    @pytest.mark.parametrize("kind", ["bce", "focal"])
    @pytest.mark.parametrize("mode", ["graph", "xla"])
    def test_weights_and_masks_in_graph_and_xla_equal_eager(self, kind, mode):
        r = _rng(41)
        y = (r.uniform(size=(3, 6, 4)) < 0.3).astype("float32")
        y[r.uniform(size=y.shape) < 0.2] = 255
        y[1, 2] = 255  # a row with every entry ignored
        z = tf.constant(r.normal(size=y.shape).astype("float32"))
        sw = tf.constant(r.uniform(0.2, 2.0, size=(3, 6)).astype("float32"))
        mask = tf.constant(r.uniform(size=(3, 6)) < 0.8)
        loss = ours(kind, ignore_class=255)

        def fn(v):
            v = tf.identity(v)
            v._keras_mask = mask
            return loss(tf.constant(y), v, sample_weight=sw)

        run = tf.function(fn, jit_compile=mode == "xla")
        got, (g,) = grads(run, z)
        ref, (g_ref,) = grads(fn, z)
        np.testing.assert_allclose(float(got), float(ref), rtol=1e-6)
        np.testing.assert_allclose(g.numpy(), g_ref.numpy(), rtol=1e-5, atol=1e-9)
        np.testing.assert_array_equal(g.numpy()[y == 255], 0.0)

    @pytest.mark.parametrize("value", [0, 1, 0.5, 1.0, float("nan")])
    def test_ignore_label_that_is_a_label_raises_at_construction(self, value):
        for make in (lambda: L.FocalLoss(ignore_class=value),
                     lambda: L.BinaryCrossentropy(ignore_class=value),
                     lambda: L.focal([[0.0]], [[0.5]], ignore_class=value)):
            with pytest.raises(ValueError, match="ignore_class"):
                make()

    def test_ignore_label_of_a_wrong_type_raises(self):
        with pytest.raises(TypeError, match="ignore_class"):
            L.FocalLoss(ignore_class=True)
        with pytest.raises(TypeError, match="ignore_class"):
            L.BinaryCrossentropy(ignore_class="void")

    @pytest.mark.parametrize("graph", [False, True])
    def test_other_labels_are_still_checked(self, graph):
        fn = lambda t, v: L.focal(t, v, from_logits=True, ignore_class=255)  # noqa: E731
        run = tf.function(fn) if graph else fn
        z = tf.constant([[0.1, 0.2, 0.3]])
        assert np.isfinite(run(tf.constant([[0.0, 255.0, 1.0]]), z).numpy()).all()
        with pytest.raises(tf.errors.InvalidArgumentError, match="y_true"):
            run(tf.constant([[0.0, 255.0, -1.0]]), z)  # -1 is not the ignore label here

    def test_settings_survive_get_config_and_defaults_stay_unsaved(self):
        for cls in (L.FocalLoss, L.BinaryCrossentropy):
            plain = cls().get_config()
            assert "ignore_class" not in plain and "normalize" not in plain
            loss = cls(from_logits=True, ignore_class=255, normalize="positives_per_image")
            config = loss.get_config()
            assert config["ignore_class"] == 255 and config["normalize"] == "positives_per_image"
            again = cls.from_config(config)
            assert again.ignore_class == 255 and again.normalize == "positives_per_image"


# --------------------------------------------------------------------------- positives


def np_normalized(per_sample, positives, normalize, sample_weight=None):
    """Reference reduction: per-sample summed losses and positive counts, float64."""
    w = 1.0 if sample_weight is None else sample_weight
    if normalize == "positives":
        return float((per_sample * w).sum() / max(1.0, positives.sum()))
    axes = tuple(range(1, per_sample.ndim))
    s = (per_sample * w).sum(axis=axes)
    return float(np.mean(s / np.maximum(1.0, positives.sum(axis=axes))))


class TestNormalizeBinary:
    @pytest.mark.parametrize("kind", ["bce", "focal"])
    @pytest.mark.parametrize("normalize", ["positives", "positives_per_image"])
    @pytest.mark.parametrize("weighted", ["none", "per_anchor", "per_image"])
    def test_value_is_the_sum_over_the_positive_count(self, kind, normalize, weighted):
        y, z, state = detection_batch(seed=5)
        keep = y != -1
        per = (np_binary_entries(np.where(keep, y, 0.0), z, kind) * keep).sum(-1)
        positives = ((y > 0) & keep).sum(-1)
        sw = {"none": None, "per_anchor": _rng(6).uniform(0.5, 2.0, size=per.shape),
              "per_image": _rng(6).uniform(0.5, 2.0, size=per.shape[:1])}[weighted]
        # One weight per image weights each of its anchors.
        w = None if sw is None else sw.reshape(sw.shape + (1,) * (per.ndim - sw.ndim))
        expected = np_normalized(per, positives, normalize, w)
        loss = ours(kind, ignore_class=-1, normalize=normalize, **F64)
        got = loss(tf.constant(y), tf.constant(z), sample_weight=sw)
        np.testing.assert_allclose(float(got), expected, rtol=1e-12)

    @pytest.mark.parametrize("kind", ["bce", "focal"])
    @pytest.mark.parametrize("normalize", ["positives", "positives_per_image"])
    @pytest.mark.parametrize("mode", ["eager", "graph", "xla"])
    def test_gradient_is_the_plain_formula_grad(self, kind, normalize, mode):
        y, z, state = detection_batch(seed=7)
        keep = tf.constant((y != -1).astype("float64"))
        y_kept = tf.constant(np.where(y == -1, 0.0, y))
        pos = ((y > 0) & (y != -1)).sum(-1).astype("float64")

        def plain(v):
            per = tf.reduce_sum(tf_binary_entries(y_kept, v, kind) * keep, -1)
            if normalize == "positives":
                return tf.reduce_sum(per) / max(1.0, pos.sum())
            return tf.reduce_mean(tf.reduce_sum(per, -1) / np.maximum(1.0, pos.sum(-1)))

        loss = ours(kind, ignore_class=-1, normalize=normalize, **F64)
        fn = lambda v: loss(tf.constant(y), v)  # noqa: E731
        run = {"eager": fn, "graph": tf.function(fn),
               "xla": tf.function(fn, jit_compile=True)}[mode]
        got, (g,) = grads(run, tf.constant(z))
        ref, (g_ref,) = grads(plain, tf.constant(z))
        np.testing.assert_allclose(float(got), float(ref), rtol=1e-11)
        np.testing.assert_allclose(g.numpy(), g_ref.numpy(), rtol=1e-9, atol=1e-15)

    def test_no_positive_divides_by_one(self):
        y = np.zeros((2, 3, 2))
        z = _rng(8).normal(size=y.shape)
        got = L.BinaryCrossentropy(from_logits=True, normalize="positives", **F64)(y, z)
        np.testing.assert_allclose(float(got), np_binary_entries(y, z, "bce").sum(), rtol=1e-12)

    def test_reduction_none_gives_the_terms_whose_sum_is_the_loss(self):
        y, z, _ = detection_batch(seed=9)
        for normalize in ("positives", "positives_per_image"):
            total = ours("focal", ignore_class=-1, normalize=normalize, **F64)(y, z)
            terms = ours("focal", ignore_class=-1, normalize=normalize, reduction=None, **F64)(y, z)
            assert terms.shape == y.shape[:-1]
            np.testing.assert_allclose(float(tf.reduce_sum(terms)), float(total), rtol=1e-12)

    def test_a_keras_mask_removes_samples_from_loss_and_count(self):
        y, z, state = detection_batch(seed=10)
        mask = _rng(11).uniform(size=y.shape[:2]) < 0.7
        zt = tf.identity(tf.constant(z))
        zt._keras_mask = tf.constant(mask)
        got = ours("focal", ignore_class=-1, normalize="positives", **F64)(y, zt)
        keep = (y != -1)
        per = (np_binary_entries(np.where(keep, y, 0.0), z, "focal") * keep).sum(-1)
        positives = ((y > 0) & keep).sum(-1)
        np.testing.assert_allclose(float(got), np_normalized(per * mask, positives * mask,
                                                             "positives"), rtol=1e-12)

    def test_matches_kerashub_retinanet_convention_up_to_the_class_count_grad(self):
        # KerasHub's RetinaNet: Keras's BinaryFocalCrossentropy (it averages over the class axis)
        # with a per-anchor sample weight 1 / max(1, positive anchors), 0 for ignored anchors.
        y, z, state = detection_batch(seed=12, batch=4, anchors=30, classes=5)
        k = y.shape[-1]
        n_pos = max(1.0, float((state == 1).sum()))
        weight = np.where(state == 2, 0.0, 1.0 / n_pos)
        keras_focal = keras.losses.BinaryFocalCrossentropy(
            apply_class_balancing=True, alpha=0.25, gamma=2.0, from_logits=True, reduction="sum",
            **F64)
        y_keras = np.where(y == -1, 0.0, y)
        ref, (g_ref,) = grads(lambda v: keras_focal(y_keras, v, sample_weight=weight),
                              tf.constant(z))
        got, (g,) = grads(lambda v: ours("focal", ignore_class=-1, normalize="positives",
                                         **F64)(y, v), tf.constant(z))
        np.testing.assert_allclose(float(got), k * float(ref), rtol=1e-9)
        np.testing.assert_allclose(g.numpy(), k * g_ref.numpy(), rtol=1e-7, atol=1e-12)

    def test_bad_settings_raise_naming_them(self):
        with pytest.raises(ValueError, match="normalize"):
            L.FocalLoss(normalize="positive")
        with pytest.raises(ValueError, match="reduction"):
            L.BinaryCrossentropy(normalize="positives", reduction="sum")
        # Losses without positives (regression, hinge) do not offer it.
        for cls in (L.MeanSquaredError, L.Huber, L.Hinge):
            with pytest.raises(TypeError, match="normalize"):
                cls(normalize="positives")

    def test_a_config_asking_normalize_of_a_regression_loss_is_refused(self, tmp_path):
        from keras_afl.cli import config

        raw = {"data": {"source": "outliers"}, "model": {"layers": [{"units": "output"}]},
               "training": {"loss": {"name": "afl_huber", "params": {"normalize": "positives"}}}}
        with pytest.raises(Exception, match="normalize"):
            config.validate(raw, str(tmp_path / "x.yaml"))
        raw["training"]["loss"] = {"name": "focal", "params": {"normalize": "positives",
                                                               "ignore_class": -1}}
        raw["data"] = {"source": "breast_cancer"}
        cfg = config.validate(raw, str(tmp_path / "x.yaml"))
        assert cfg["training"]["losses"][0]["params"]["normalize"] == "positives"


# --------------------------------------------------------------------------- softmax losses


def segmentation_batch(seed, batch=2, h=4, w=5, k=6, ignore=255):
    r = _rng(seed)
    ids = r.integers(0, k, size=(batch, h, w))
    ids[r.uniform(size=ids.shape) < 0.2] = ignore
    ids[0, 0, :] = 0  # some background for sure
    z = r.normal(scale=2.0, size=(batch, h, w, k))
    return ids, z


def onehot_rows(ids, k, ignore=255):
    """One-hot labels; an ignored pixel is an all-zero row (its categorical loss is 0)."""
    return np.eye(k)[np.where(ids == ignore, 0, ids)] * (ids != ignore)[..., None]


class TestSparseDense:
    @pytest.mark.parametrize("k", [3, 21, 1000])
    @pytest.mark.parametrize("focal", [False, True])
    @pytest.mark.parametrize("mode", ["eager", "graph", "xla"])
    def test_sparse_on_image_logits_equals_one_hot_categorical_grad(self, k, focal, mode):
        ids, z = segmentation_batch(13, h=4 if k == 1000 else 8, w=3 if k == 1000 else 8, k=k)
        alpha = tuple(_rng(14).uniform(0.1, 0.9, size=k)) if focal else None
        y = onehot_rows(ids, k)
        if focal:
            sparse = lambda v: L.sparse_categorical_focal(  # noqa: E731
                ids, v, gamma=2.0, alpha=alpha, from_logits=True, ignore_class=255)
            dense = lambda v: L.categorical_focal(y, v, gamma=2.0, alpha=alpha,  # noqa: E731
                                                  from_logits=True)
        else:
            sparse = lambda v: L.sparse_categorical_crossentropy(  # noqa: E731
                ids, v, from_logits=True, ignore_class=255)
            dense = lambda v: L.categorical_crossentropy(y, v, from_logits=True)  # noqa: E731
        run = {"eager": sparse, "graph": tf.function(sparse),
               "xla": tf.function(sparse, jit_compile=True)}[mode]
        up = tf.constant(_rng(15).uniform(0.5, 1.5, size=ids.shape))
        got, (g,) = grads(run, tf.constant(z), upstream=up)
        ref, (g_ref,) = grads(dense, tf.constant(z), upstream=up)
        np.testing.assert_allclose(got.numpy(), ref.numpy(), rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(g.numpy(), g_ref.numpy(), rtol=1e-9, atol=1e-14)
        np.testing.assert_array_equal(g.numpy()[ids == 255], 0.0)

    def test_float32_compiled_path_on_a_segmentation_batch_equals_one_hot_grad(self):
        # 2 x 64 x 64 x 21 float32 in a tf.function: the compiled kernels, both losses.
        ids, z = segmentation_batch(16, batch=2, h=64, w=64, k=21)
        z = z.astype("float32")
        alpha = tuple(float(a) for a in _rng(17).uniform(0.1, 0.9, size=21))
        y = onehot_rows(ids, 21).astype("float32")
        sparse = L.SparseCategoricalFocalLoss(alpha=alpha, from_logits=True, ignore_class=255,
                                              reduction="sum")
        dense = L.CategoricalFocalLoss(alpha=alpha, from_logits=True, reduction="sum")
        got, (g,) = tf.function(lambda v: grads(lambda u: sparse(ids, u), v))(tf.constant(z))
        ref, (g_ref,) = grads(lambda u: dense(y, u), tf.constant(z))
        np.testing.assert_allclose(float(got), float(ref), rtol=1e-5)
        np.testing.assert_allclose(g.numpy(), g_ref.numpy(), rtol=1e-4, atol=1e-8)

    def test_alpha_of_the_wrong_length_raises_naming_alpha_at_the_first_call(self):
        ids, z = segmentation_batch(18, k=6)
        loss = L.SparseCategoricalFocalLoss(alpha=[0.25] * 5, from_logits=True, ignore_class=255)
        with pytest.raises(ValueError, match=r"`alpha` has 5 values .* 6 classes"):
            loss(ids, z)
        with pytest.raises(ValueError, match="alpha"):
            tf.function(lambda t, v: loss(t, v))(ids, z)

    def test_alpha_length_checked_when_classes_are_known_only_at_run_time(self):
        ids, z = segmentation_batch(19, k=6)
        fn = tf.function(lambda t, v: L.sparse_categorical_focal(t, v, alpha=[0.25] * 7,
                                                                 from_logits=True),
                         input_signature=[tf.TensorSpec(None, tf.int64),
                                          tf.TensorSpec([None, None, None, None], tf.float64)])
        with pytest.raises(tf.errors.InvalidArgumentError, match="alpha"):
            fn(np.where(ids == 255, 0, ids), z)

    @pytest.mark.parametrize("mode", ["eager", "graph"])
    def test_class_ids_out_of_range_in_dense_outputs_raise_naming_y_true(self, mode):
        ids, z = segmentation_batch(20, k=6)
        ids[1, 2, 3] = 6
        loss = L.SparseCategoricalFocalLoss(from_logits=True, ignore_class=255)
        run = (lambda t, v: loss(t, v)) if mode == "eager" else tf.function(lambda t, v: loss(t, v))
        with pytest.raises(tf.errors.InvalidArgumentError, match="y_true"):
            run(ids, z)

    def test_class_ids_out_of_range_under_xla_give_nan_for_that_pixel_only(self):
        ids, z = segmentation_batch(21, k=6)
        ids[1, 2, 3] = 6
        fn = tf.function(lambda v: L.sparse_categorical_focal(ids, v, from_logits=True,
                                                              ignore_class=255), jit_compile=True)
        out = fn(tf.constant(z)).numpy()
        assert np.isnan(out[1, 2, 3]) and np.isfinite(np.delete(out.ravel(), np.ravel_multi_index(
            (1, 2, 3), out.shape))).all()


class TestNormalizeSoftmax:
    @pytest.mark.parametrize("name", ["sparse_focal", "sparse_ce", "focal", "ce"])
    @pytest.mark.parametrize("normalize", ["positives", "positives_per_image"])
    def test_value_and_gradient_are_the_plain_sum_over_non_background_pixels_grad(
            self, name, normalize):
        ids, z = segmentation_batch(22, k=5)
        k = 5
        y = onehot_rows(ids, k)
        positives = ((ids != 255) & (ids != 0)).astype("float64")
        alpha = (0.1, 0.3, 0.5, 0.7, 0.9)
        common = dict(from_logits=True, normalize=normalize, background_class=0, **F64)
        sparse = name.startswith("sparse")
        if name == "sparse_focal":
            loss = L.SparseCategoricalFocalLoss(alpha=alpha, ignore_class=255, **common)
        elif name == "sparse_ce":
            loss = L.SparseCategoricalCrossentropy(ignore_class=255, **common)
        elif name == "focal":
            loss = L.CategoricalFocalLoss(alpha=alpha, **common)
        else:
            loss = L.CategoricalCrossentropy(**common)
        a = np.asarray(alpha) if "focal" in name else np.ones(k)
        gamma = 2.0 if "focal" in name else 0.0

        def plain(v):
            logp = tf.nn.log_softmax(v)
            per = -tf.reduce_sum(y * a * (1 - tf.exp(logp)) ** gamma * logp, -1)
            if normalize == "positives":
                return tf.reduce_sum(per) / max(1.0, positives.sum())
            return tf.reduce_mean(tf.reduce_sum(per, [1, 2]) /
                                  np.maximum(1.0, positives.sum((1, 2))))

        got, (g,) = grads(lambda v: loss(ids if sparse else y, v), tf.constant(z))
        ref, (g_ref,) = grads(plain, tf.constant(z))
        np.testing.assert_allclose(float(got), float(ref), rtol=1e-11)
        np.testing.assert_allclose(g.numpy(), g_ref.numpy(), rtol=1e-9, atol=1e-15)

    def test_background_class_rules(self):
        with pytest.raises(ValueError, match="background_class"):
            L.SparseCategoricalFocalLoss(normalize="positives")
        with pytest.raises(ValueError, match="background_class"):
            L.CategoricalFocalLoss(background_class=0)  # meaningless without normalize
        with pytest.raises(ValueError, match="background_class"):
            L.SparseCategoricalCrossentropy(ignore_class=3, background_class=3,
                                            normalize="positives")
        ids, z = segmentation_batch(23, k=5)
        with pytest.raises(ValueError, match="background_class"):
            L.SparseCategoricalFocalLoss(from_logits=True, normalize="positives",
                                         background_class=5)(ids, z)

    def test_settings_survive_get_config(self):
        for cls in (L.SparseCategoricalFocalLoss, L.SparseCategoricalCrossentropy,
                    L.CategoricalFocalLoss, L.CategoricalCrossentropy):
            assert "normalize" not in cls().get_config()
            loss = cls(normalize="positives", background_class=2)
            again = cls.from_config(loss.get_config())
            assert (again.normalize, again.background_class) == ("positives", 2)


# --------------------------------------------------------------------------- Keras workflows


def _detector(anchors=12, classes=3):
    inputs = keras.Input((anchors, 4))
    h = keras.layers.Dense(8, activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Dense(classes)(h))


class TestInModels:
    def test_fit_with_settings_from_the_registry_name_trains_and_matches_the_function_grad(self):
        y, _, _ = detection_batch(seed=24, batch=8, anchors=12, classes=3)
        x = _rng(25).normal(size=(8, 12, 4)).astype("float32")
        params = {"from_logits": True, "ignore_class": -1, "normalize": "positives"}
        keras.utils.set_random_seed(0)
        model = _detector()
        model.compile(keras.optimizers.SGD(0.1), loss=keras_afl.entry("focal").obj(**params))
        expected = float(L.FocalLoss(**params)(y, model(x)))
        first = model.evaluate(x, y.astype("float32"), batch_size=8, verbose=0)
        np.testing.assert_allclose(first, expected, rtol=1e-5)
        history = model.fit(x, y.astype("float32"), batch_size=8, epochs=5, verbose=0)
        assert history.history["loss"][-1] < history.history["loss"][0]

    def test_jit_compiled_model_agrees_with_eager(self):
        ids, _ = segmentation_batch(26, batch=4, h=6, w=6, k=4)
        x = _rng(27).normal(size=(4, 6, 6, 2)).astype("float32")
        losses = []
        for jit in (False, True):
            keras.utils.set_random_seed(0)
            inputs = keras.Input((6, 6, 2))
            model = keras.Model(inputs, keras.layers.Conv2D(4, 3, padding="same")(inputs))
            model.compile("sgd", loss=L.SparseCategoricalFocalLoss(
                from_logits=True, ignore_class=255, normalize="positives", background_class=0),
                jit_compile=jit, run_eagerly=not jit)
            losses.append(model.fit(x, ids, batch_size=4, epochs=2, verbose=0).history["loss"])
        np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)

    @pytest.mark.slow
    def test_saved_model_reloads_its_settings_in_a_fresh_process(self, tmp_path):
        path = tmp_path / "det.keras"
        keras.utils.set_random_seed(0)
        model = _detector()
        model.compile("sgd", loss=L.FocalLoss(from_logits=True, ignore_class=-1,
                                              normalize="positives_per_image"))
        model.save(path)
        out = run_python(f"""
            import keras, keras_afl
            m = keras.models.load_model({str(path)!r})
            loss = m.loss
            print(type(loss).__name__, loss.ignore_class, loss.normalize)
        """)
        assert out.strip().splitlines()[-1] == "FocalLoss -1 positives_per_image"


# --------------------------------------------------------------------------- lint


class TestLintClassBalanceTwice:
    RULE = "focal-alpha-and-class-weight"

    @staticmethod
    def model(units, activation):
        return keras.Sequential([keras.Input((4,)),
                                 keras.layers.Dense(units, activation=activation)])

    @pytest.mark.parametrize("loss", [
        "focal", L.FocalLoss(alpha=0.5), L.CategoricalFocalLoss(alpha=0.25),
        keras.losses.BinaryFocalCrossentropy(apply_class_balancing=True),
    ])
    def test_focal_alpha_with_class_weight_warns(self, loss):
        units = 3 if isinstance(loss, L.CategoricalFocalLoss) else 1
        model = self.model(units, "softmax" if units == 3 else "sigmoid")
        found = keras_afl.lint(model, loss=loss, class_weight={0: 1.0, 1: 4.0})
        assert [f.rule for f in found] == [self.RULE]
        assert found[0].severity == "warning" and "alpha=" in found[0].message

    @pytest.mark.parametrize("loss", [
        L.FocalLoss(alpha=None), L.FocalLoss(apply_class_balancing=False), "afl_bce",
        keras.losses.BinaryFocalCrossentropy(),  # Keras applies alpha only when asked
    ])
    def test_no_warning_when_only_one_balances(self, loss):
        found = keras_afl.lint(self.model(1, "sigmoid"), loss=loss, class_weight={0: 1.0, 1: 4.0})
        assert self.RULE not in [f.rule for f in found]

    def test_no_warning_without_class_weight_or_with_equal_weights(self):
        model = self.model(1, "sigmoid")
        assert self.RULE not in [f.rule for f in keras_afl.lint(model, loss="focal")]
        found = keras_afl.lint(model, loss="focal", class_weight={0: 2.0, 1: 2.0})
        assert self.RULE not in [f.rule for f in found]

    def test_per_class_sample_weights_given_as_a_list_and_the_compiled_loss(self):
        model = self.model(3, "softmax")
        model.compile(loss=L.SparseCategoricalFocalLoss(alpha=[0.2, 0.3, 0.5]))
        assert [f.rule for f in keras_afl.lint(model, class_weight=[1.0, 1.0, 8.0])] == [self.RULE]
        assert self.RULE in keras_afl.diagnostics.RULES

    def test_bad_class_weight_raises_naming_it(self):
        with pytest.raises(TypeError, match="class_weight"):
            keras_afl.lint(self.model(1, "sigmoid"), loss="focal", class_weight=3.0)
        with pytest.raises(ValueError, match="class_weight"):
            keras_afl.lint(self.model(1, "sigmoid"), loss="focal", class_weight={0: "a"})
