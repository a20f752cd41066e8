"""Runs keras_afl's losses on one Keras backend and prints what they compute, as JSON.

Usage (a fresh process per backend: Keras takes one backend per process):
    KERAS_BACKEND=jax python tests/_loss_probe.py        (or torch, or tensorflow)
On JAX and PyTorch TensorFlow is made unimportable first, so the run also shows that the losses
need none. Prints `RESULT` and one JSON object:
- "numbers": for every case of `cases()` in float64 (with a Hessian-vector product of
  sum(w * loss)) and float32, the per-sample loss and its gradient for an upstream gradient that
  is not all ones, each with the backend's own differentiation (the runners of
  tests/_backend_probe.py); float16/bfloat16 and their dtypes (`HALF_CASES`); the Loss classes'
  reductions and sample weights; `ignore_class`/`normalize`; the label checks switched off; the
  good samples of `JIT_CASES`;
- "errors": class, message and kind of every refused label or setting;
- "shortcut": the logits shortcut (TensorFlow and PyTorch carry the logits, JAX does not);
- "jit" (JAX): bad labels under jax.jit.
tests/test_losses_across_backends.py puts the three backends' numbers in one table.
"""

import json
import os
import sys

import numpy as np

from tests._backend_probe import as_list, dtype_name, runner, start

def _sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _softmax(z, axis=-1):
    e = np.exp(z - np.max(z, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


STABILITY_Z = np.array([-1e4, -1e3, -100.0, -30.0, -1.0, -1e-4, 0.0, 1e-4, 1.0, 30.0, 100.0, 1e3, 1e4])


def cases():
    """[(key, function name, kwargs, y_true, y_pred (float64), hvp wanted)]: the grids."""
    r = np.random.default_rng(13)
    z = r.normal(0.0, 3.0, (4, 6))
    hard = (r.random((4, 6)) < 0.5).astype(np.float64)
    soft = r.random((4, 6))
    signed = 2.0 * hard - 1.0
    out = [
        ("mse", "mean_squared_error", {}, r.normal(size=(4, 5)), r.normal(size=(4, 5))),
        ("huber", "huber", {}, r.normal(size=(4, 5)), 2.0 * r.normal(size=(4, 5))),
        ("huber_0.3", "huber", {"delta": 0.3}, r.normal(size=(4, 5)), r.normal(size=(4, 5))),
        ("hinge_auto01", "hinge", {}, hard, z),
        ("hinge_auto_signed", "hinge", {}, signed, z),
        ("hinge_binary", "hinge", {"label_format": "binary"}, hard, z),
        ("hinge_signed", "hinge", {"label_format": "signed"}, signed, z),
        ("bce_logits", "binary_crossentropy", {"from_logits": True}, hard, z),
        ("bce_logits_soft_ls", "binary_crossentropy", {"from_logits": True, "label_smoothing": 0.1},
         soft, z),
        ("bce_logits_pw", "binary_crossentropy", {"from_logits": True, "pos_weight": 2.5}, soft, z),
        ("bce_logits_pw_per_class", "binary_crossentropy",
         {"from_logits": True, "pos_weight": (0.5, 1.0, 2.0, 3.0)}, hard.T, z.T),
        ("bce_logits_axis0", "binary_crossentropy", {"from_logits": True, "axis": 0}, hard, z),
        ("bce_probs", "binary_crossentropy", {}, hard, _sigmoid(z)),
        ("bce_probs_ls_pw", "binary_crossentropy", {"label_smoothing": 0.2, "pos_weight": 3.0}, soft,
         _sigmoid(z)),
        ("focal_probs", "focal", {}, hard, _sigmoid(z)),
        ("focal_probs_g0.5_soft", "focal", {"gamma": 0.5, "label_smoothing": 0.1}, soft, _sigmoid(z)),
        ("focal_logits_noalpha", "focal", {"from_logits": True, "alpha": None}, hard, z),
        ("focal_logits_nobalance", "focal", {"from_logits": True, "apply_class_balancing": False},
         soft, z),
        ("focal_logits_axis0", "focal", {"from_logits": True, "axis": 0, "gamma": 1.5}, hard, z),
    ]
    # ignore_class: entries marked (every fifth, and the whole last row: its loss is 0).
    ignored = (np.arange(24).reshape(4, 6) % 5 == 0) | (np.arange(4)[:, None] == 3)
    out += [
        ("bce_logits_ignore", "binary_crossentropy", {"from_logits": True, "ignore_class": -1},
         np.where(ignored, -1.0, hard), z),
        ("bce_probs_ignore_ls_pw", "binary_crossentropy",
         {"ignore_class": 255, "pos_weight": 2.0, "label_smoothing": 0.1},
         np.where(ignored, 255.0, soft), _sigmoid(z)),
        ("focal_logits_ignore", "focal", {"from_logits": True, "ignore_class": -1},
         np.where(ignored, -1.0, hard), z),
        ("focal_logits_ignore_soft_g0.5", "focal",
         {"from_logits": True, "gamma": 0.5, "ignore_class": -1, "alpha": None},
         np.where(ignored, -1.0, soft), z),
        ("focal_probs_ignore_g0.5", "focal", {"gamma": 0.5, "ignore_class": -1.5},
         np.where(ignored, -1.5, soft), _sigmoid(z)),
    ]
    for gamma in (0.0, 0.5, 2.0, 5.0):
        out.append((f"focal_logits_g{gamma}", "focal", {"from_logits": True, "gamma": gamma}, hard, z))
        out.append((f"focal_logits_soft_g{gamma}", "focal",
                    {"from_logits": True, "gamma": gamma, "label_smoothing": 0.05}, soft, z))
    k = 5
    zc = r.normal(0.0, 3.0, (4, k))
    onehot = np.eye(k)[r.integers(0, k, 4)]
    soft_c = r.dirichlet(np.ones(k), 4)
    unnormalised = r.uniform(0.05, 1.0, (4, k))
    z3 = r.normal(0.0, 2.0, (2, k, 3))
    y3 = np.moveaxis(np.eye(k)[r.integers(0, k, (2, 3))], -1, 1)
    ids = r.integers(0, k, 4).astype(np.int32)
    ids_ignored = np.array([1, -1, 3, -1], np.int32)
    ids3 = r.integers(0, k, (2, 3)).astype(np.int32)
    alphas = (0.1, 0.2, 0.3, 0.25, 0.15)
    out += [
        ("cce_logits", "categorical_crossentropy", {"from_logits": True}, onehot, zc),
        ("cce_logits_soft_ls", "categorical_crossentropy", {"from_logits": True, "label_smoothing": 0.1},
         soft_c, zc),
        ("cce_probs", "categorical_crossentropy", {}, soft_c, unnormalised),
        ("cce_logits_axis1", "categorical_crossentropy", {"from_logits": True, "axis": 1}, y3, z3),
        ("cfocal_logits", "categorical_focal", {"from_logits": True}, onehot, zc),
        ("cfocal_logits_g0.5_alpha", "categorical_focal",
         {"from_logits": True, "gamma": 0.5, "alpha": alphas, "label_smoothing": 0.1}, soft_c, zc),
        ("cfocal_logits_g0", "categorical_focal", {"from_logits": True, "gamma": 0.0, "alpha": 0.3},
         onehot, zc),
        ("cfocal_probs", "categorical_focal", {"alpha": alphas}, soft_c, unnormalised),
        ("cfocal_probs_axis1", "categorical_focal", {"axis": 1, "gamma": 1.0}, y3, _softmax(z3, 1)),
        ("scce_logits", "sparse_categorical_crossentropy", {"from_logits": True}, ids, zc),
        ("scce_logits_ignore", "sparse_categorical_crossentropy",
         {"from_logits": True, "ignore_class": -1}, ids_ignored, zc),
        ("scce_probs", "sparse_categorical_crossentropy", {}, ids, unnormalised),
        ("scce_logits_axis1", "sparse_categorical_crossentropy", {"from_logits": True, "axis": 1}, ids3, z3),
        ("scce_float_ids", "sparse_categorical_crossentropy", {"from_logits": True},
         ids.astype(np.float64), zc),
        ("sfocal_logits", "sparse_categorical_focal", {"from_logits": True}, ids, zc),
        ("sfocal_logits_g0.5_alpha_ignore", "sparse_categorical_focal",
         {"from_logits": True, "gamma": 0.5, "alpha": alphas, "ignore_class": -1}, ids_ignored, zc),
        ("sfocal_probs", "sparse_categorical_focal", {"alpha": 0.4, "gamma": 3.0}, ids, unnormalised),
    ]
    # Stability: focal from logits up to |z| = 1e4 for every gamma, both labels; saturated softmax.
    zs = np.stack([STABILITY_Z, STABILITY_Z])
    ys = np.stack([np.zeros_like(STABILITY_Z), np.ones_like(STABILITY_Z)])
    for gamma in (0.0, 0.5, 2.0, 5.0):
        out.append((f"stable_focal_g{gamma}", "focal", {"from_logits": True, "gamma": gamma}, ys, zs))
    out.append(("stable_bce", "binary_crossentropy", {"from_logits": True}, ys, zs))
    zsat = np.array([[30.0, 0.0, -30.0], [1e4, 0.0, -1e4], [-1e4, 0.0, 1e4], [50.0, 50.0, -50.0]])
    ysat = np.eye(3)[[0, 2, 1, 0]]
    out += [
        ("stable_cce", "categorical_crossentropy", {"from_logits": True}, ysat, zsat),
        ("stable_cfocal_g0.5", "categorical_focal", {"from_logits": True, "gamma": 0.5}, ysat, zsat),
        ("stable_cfocal_g2", "categorical_focal", {"from_logits": True}, ysat, zsat),
        ("stable_scce", "sparse_categorical_crossentropy", {"from_logits": True},
         np.array([0, 2, 1, 0], np.int32), zsat),
        ("stable_sfocal", "sparse_categorical_focal", {"from_logits": True, "gamma": 0.5},
         np.array([0, 2, 1, 0], np.int32), zsat),
    ]
    return out


def prepare(y, x, dtype):
    """Labels in x's dtype where they are floats (ids stay integers), x in dtype (NumPy)."""
    y = y.astype(dtype) if y.dtype.kind == "f" else y
    return y, x.astype(dtype)


LOSS_CLASSES = [  # (class, settings, labels kind)
    ("MeanSquaredError", {}, "regression"),
    ("Huber", {"delta": 0.7}, "regression"),
    ("Hinge", {"label_format": "binary"}, "binary"),
    ("BinaryCrossentropy", {"from_logits": True, "label_smoothing": 0.1, "pos_weight": [1.0, 2.0, 0.5]},
     "binary"),
    ("FocalLoss", {"gamma": 1.5, "alpha": 0.3, "from_logits": True, "apply_class_balancing": False},
     "binary"),
    ("CategoricalCrossentropy", {"from_logits": True, "label_smoothing": 0.05}, "categorical"),
    ("CategoricalFocalLoss", {"gamma": 0.5, "alpha": [0.2, 0.3, 0.5], "from_logits": True}, "categorical"),
    ("SparseCategoricalCrossentropy", {"from_logits": True, "ignore_class": 1}, "sparse"),
    ("SparseCategoricalFocalLoss", {"alpha": [0.2, 0.3, 0.5], "ignore_class": 2}, "sparse"),
]
REDUCTIONS = ["sum_over_batch_size", "sum", "none", "mean_with_sample_weight"]


def class_inputs(kind):
    r = np.random.default_rng(7)
    x = r.normal(0.0, 2.0, (5, 3)).astype(np.float32)
    y = {"regression": r.normal(size=(5, 3)), "binary": (r.random((5, 3)) < 0.5) * 1.0,
         "categorical": np.eye(3)[[0, 2, 1, 1, 0]], "sparse": np.array([0, 2, 1, 1, 0])}[kind]
    if kind == "sparse":
        return y.astype(np.int32), np.abs(x) + 0.1
    return y.astype(np.float32), x


SAMPLE_WEIGHTS = {"none": None, "per_sample": np.array([0.5, 1.0, 0.0, 2.0, 1.5], np.float32),
                  "scalar": np.float32(0.7)}


BAD_INPUTS = [  # (key, function, kwargs, y_true, y_pred): labels or settings that must be refused
    ("bce_label_2", "binary_crossentropy", {}, [[0.0, 2.0, 1.0]], [[0.3, 0.4, 0.5]]),
    ("focal_label_neg", "focal", {"from_logits": True}, [[0.0, 1.0], [-1.0, 0.5]], [[0.3, 0.4], [1.0, 2.0]]),
    ("focal_label_nan", "focal", {}, [[0.0, float("nan")]], [[0.3, 0.4]]),
    ("hinge_binary_signed", "hinge", {"label_format": "binary"}, [[-1.0, 1.0]], [[0.3, 0.4]]),
    ("hinge_signed_2", "hinge", {"label_format": "signed"}, [[2.0, 1.0]], [[0.3, 0.4]]),
    ("scce_out_of_range", "sparse_categorical_crossentropy", {"from_logits": True}, [0, 3, 5],
     [[0.0, 1.0, 2.0]] * 3),
    ("scce_float_id", "sparse_categorical_crossentropy", {}, [0.0, 1.7], [[0.2, 0.8]] * 2),
    ("sfocal_ignore", "sparse_categorical_focal", {"ignore_class": 9}, [9, -2], [[0.2, 0.8]] * 2),
    ("gamma", "focal", {"gamma": -1.0}, [[1.0]], [[0.5]]),
    ("alpha", "focal", {"alpha": 1.5}, [[1.0]], [[0.5]]),
    ("alpha_len", "categorical_focal", {"alpha": [0.1, 0.2]}, [[1.0, 0.0, 0.0]], [[0.5, 0.3, 0.2]]),
    ("ls", "binary_crossentropy", {"label_smoothing": 1.5}, [[1.0]], [[0.5]]),
    ("from_logits", "binary_crossentropy", {"from_logits": "yes"}, [[1.0]], [[0.5]]),
    ("axis_tuple", "focal", {"axis": (0, 1)}, [[1.0]], [[0.5]]),
    ("label_format", "hinge", {"label_format": "pm1"}, [[1.0]], [[0.5]]),
    ("pos_weight_len", "binary_crossentropy", {"pos_weight": [1.0, 2.0]}, [[1.0, 0.0, 1.0]],
     [[0.5, 0.5, 0.5]]),
    ("pos_weight_neg", "binary_crossentropy", {"pos_weight": -1.0}, [[1.0]], [[0.5]]),
    ("ignore_class_float", "sparse_categorical_crossentropy", {"ignore_class": 1.5}, [0], [[0.5, 0.5]]),
    ("shape", "binary_crossentropy", {}, [[1.0, 0.0]], [[0.5, 0.5, 0.5]]),
    ("sparse_shape", "sparse_categorical_crossentropy", {}, [[0, 1]], [[0.5, 0.5]]),
    ("delta", "huber", {"delta": 0.0}, [[1.0]], [[0.5]]),
    ("bce_ignore_label_bad", "binary_crossentropy", {"ignore_class": -1}, [[0.0, -2.0, -1.0]],
     [[0.3, 0.4, 0.5]]),
    ("focal_ignore_in_range", "focal", {"ignore_class": 1}, [[1.0]], [[0.5]]),
    ("focal_ignore_half", "focal", {"ignore_class": 0.5}, [[1.0]], [[0.5]]),
    ("bce_ignore_type", "binary_crossentropy", {"ignore_class": "void"}, [[1.0]], [[0.5]]),
    ("bce_ignore_bool", "binary_crossentropy", {"ignore_class": True}, [[1.0]], [[0.5]]),
    ("focal_ignore_inf", "focal", {"ignore_class": float("inf")}, [[1.0]], [[0.5]]),
]

# The Loss classes with ignore_class / normalize, float64: (key, class, settings, inputs kind,
# sample weight name); the probe measures the value and d sum(value) / d y_pred.
NORMALIZED_CASES = [
    ("focal_logits_ignore_positives", "FocalLoss",
     {"from_logits": True, "ignore_class": -1, "normalize": "positives"}, "binary_logits", None),
    ("focal_probs_ignore_per_image_sw", "FocalLoss",
     {"gamma": 0.5, "ignore_class": -1, "normalize": "positives_per_image"}, "binary_probs",
     "per_image"),
    ("focal_logits_ignore_mean_sw", "FocalLoss", {"from_logits": True, "ignore_class": -1},
     "binary_logits", "per_row"),
    ("focal_logits_positives_none", "FocalLoss",
     {"from_logits": True, "normalize": "positives", "reduction": "none", "alpha": None},
     "binary_logits_clean", None),
    ("bce_logits_ignore_positives_pw_sw", "BinaryCrossentropy",
     {"from_logits": True, "ignore_class": -1, "pos_weight": 2.0, "normalize": "positives"},
     "binary_logits", "per_row"),
    ("bce_probs_ignore_per_image", "BinaryCrossentropy",
     {"ignore_class": -1, "label_smoothing": 0.1, "normalize": "positives_per_image"},
     "binary_probs", None),
    ("bce_logits_ignore_sum", "BinaryCrossentropy",
     {"from_logits": True, "ignore_class": -1, "reduction": "sum"}, "binary_logits", "per_row"),
    ("sfocal_logits_per_image_bg0", "SparseCategoricalFocalLoss",
     {"from_logits": True, "ignore_class": 255, "normalize": "positives_per_image",
      "background_class": 0}, "sparse", None),
    ("sfocal_probs_positives_alpha_sw", "SparseCategoricalFocalLoss",
     {"alpha": [0.1, 0.2, 0.3, 0.2, 0.2], "ignore_class": 255, "normalize": "positives",
      "background_class": 0}, "sparse_probs", "per_row"),
    ("scce_logits_positives_bg2", "SparseCategoricalCrossentropy",
     {"from_logits": True, "ignore_class": 255, "normalize": "positives", "background_class": 2},
     "sparse", "per_image"),
    ("cfocal_logits_positives_bg0", "CategoricalFocalLoss",
     {"from_logits": True, "alpha": [0.1, 0.2, 0.3, 0.2, 0.2], "normalize": "positives",
      "background_class": 0}, "categorical", None),
    ("cce_logits_per_image_bg2_none", "CategoricalCrossentropy",
     {"from_logits": True, "label_smoothing": 0.05, "normalize": "positives_per_image",
      "background_class": 2, "reduction": "none"}, "categorical", "per_row"),
]


def normalized_inputs(kind, sw_name):
    """(y_true, y_pred, sample weight or None) in float64: 3 images x 4 rows (anchors) x 5
    classes; ignored entries (binary: -1, a row and an image wholly ignored; sparse: 255)."""
    r = np.random.default_rng(21)
    z = r.normal(0.0, 2.0, (3, 4, 5))
    hard = (r.random((3, 4, 5)) < 0.3).astype(np.float64)
    ids = r.integers(0, 5, (3, 4))
    ignored = r.random((3, 4, 5)) < 0.2
    ignored[1, 2] = True
    ignored[2] = True
    sw = {None: None, "per_row": r.uniform(0.2, 2.0, (3, 4)), "per_image": np.array([0.5, 2.0, 1.0])}
    if kind.startswith("binary"):
        y = hard if kind == "binary_logits_clean" else np.where(ignored, -1.0, hard)
        x = _sigmoid(z) if kind == "binary_probs" else z
    elif kind.startswith("sparse"):
        y = np.where(ignored[..., 0], 255, ids).astype(np.int32)
        x = _softmax(z) if kind == "sparse_probs" else z
    else:
        y = np.eye(5)[ids]
        y[0, 3] = 0.0  # a row without a label (loss 0, not a positive)
        x = z
    return y, x, sw[sw_name]


CLASS_ERRORS = [  # (key, class, settings, inputs kind or None): refused at construction or call
    ("normalize_name", "FocalLoss", {"normalize": "positive"}, None),
    ("normalize_with_sum", "BinaryCrossentropy", {"normalize": "positives", "reduction": "sum"}, None),
    ("ignore_in_range", "FocalLoss", {"ignore_class": 0}, None),
    ("background_missing", "SparseCategoricalFocalLoss", {"normalize": "positives"}, None),
    ("background_without_normalize", "CategoricalCrossentropy", {"background_class": 0}, None),
    ("background_is_ignore", "SparseCategoricalCrossentropy",
     {"ignore_class": 0, "normalize": "positives", "background_class": 0}, None),
    ("background_negative", "CategoricalFocalLoss",
     {"normalize": "positives", "background_class": -1}, None),
    ("background_bool", "SparseCategoricalFocalLoss",
     {"normalize": "positives", "background_class": True}, None),
    ("background_out_of_range", "SparseCategoricalFocalLoss",
     {"normalize": "positives", "background_class": 7, "from_logits": True}, "sparse"),
    ("background_out_of_range_dense", "CategoricalCrossentropy",
     {"normalize": "positives_per_image", "background_class": 5, "from_logits": True},
     "categorical"),
]


JIT_CASES = [  # (key, function, kwargs, labels with a bad sample (the second), predictions)
    ("bce", "binary_crossentropy", {"from_logits": True}, [[0.0, 1.0], [2.0, 1.0], [1.0, 0.0]],
     [[0.5, -1.0], [2.0, 0.1], [-3.0, 4.0]]),
    ("focal", "focal", {}, [[0.0, 1.0], [1.0, -0.5], [1.0, 0.0]], [[0.5, 0.2], [0.9, 0.1], [0.3, 0.6]]),
    ("hinge", "hinge", {"label_format": "signed"}, [[-1.0, 1.0], [3.0, 1.0], [1.0, -1.0]],
     [[0.5, -1.0], [2.0, 0.1], [-3.0, 4.0]]),
    ("scce", "sparse_categorical_crossentropy", {"from_logits": True}, [0, 7, 2],
     [[0.5, -1.0, 2.0], [2.0, 0.1, 0.0], [-3.0, 4.0, 1.0]]),
    ("sfocal", "sparse_categorical_focal", {"ignore_class": 0}, [1.0, 1.5, 0.0],
     [[0.5, 0.2, 0.3], [0.2, 0.1, 0.7], [0.3, 0.6, 0.1]]),
]
JIT_WEIGHTS = np.array([1.0, 2.0, 3.0], np.float32)  # the samples' upstream gradient
GOOD = [0, 2]  # the samples with good labels


def jit_labels(key, y):
    return np.asarray(y, np.int32 if key == "scce" else np.float32)


def jit_with_bad_labels(L):
    """Under jax.jit: [loss, gradient for JIT_WEIGHTS] per JIT_CASES (the bad sample NaN, the
    others numbers)."""
    import jax
    import jax.numpy as jnp

    out = {}
    for key, name, kwargs, y, x in JIT_CASES:
        fn = getattr(L, name)
        y, x = jnp.asarray(jit_labels(key, y)), jnp.asarray(np.asarray(x, np.float32))
        loss = jax.jit(lambda y, x: fn(y, x, **kwargs))(y, x)
        grad = jax.jit(jax.grad(lambda x, y: jnp.sum(fn(y, x, **kwargs) * JIT_WEIGHTS)))(x, y)
        out[key] = [as_list(loss), as_list(grad)]
    return out


def good_samples(L, run):
    """"good:<key>/float32": [loss, gradient] of JIT_CASES' good samples (eagerly, their upstream
    gradient from JIT_WEIGHTS): what jax.jit gives them beside a bad one."""
    out = {}
    for key, name, kwargs, y, x in JIT_CASES:
        y, x = jit_labels(key, y)[GOOD], np.asarray(x, np.float32)[GOOD]
        val, dx, _ = run(function(L, name, kwargs), y, x, cotangent=JIT_WEIGHTS[GOOD])
        out[f"good:{key}/float32"] = [as_list(val), as_list(dx)]
    return out


def unchecked(L, tensor):
    """"unchecked:<key>/float32": [loss] of JIT_CASES with set_trace_options(label_checks=False)
    (a bad label gives a number, eagerly)."""
    out = {}
    with L.set_trace_options(label_checks=False):
        for key, name, kwargs, y, x in JIT_CASES:
            value = getattr(L, name)(tensor(jit_labels(key, y)), tensor(np.asarray(x, np.float32)),
                                     **kwargs)
            out[f"unchecked:{key}/float32"] = [as_list(value)]
    return out


SHORTCUT_Z = np.array([[-100.0, -30.0, 0.5, 30.0], [100.0, 20.0, -3.0, -100.0]], np.float32)
SHORTCUT_Y = np.array([[1.0, 1.0, 0.0, 0.0], [0.0, 1.0, 1.0, 1.0]], np.float32)
SHORTCUT_IDS = np.array([1, 3], np.int32)
SHORTCUT_CASES = [  # (key, activation, axis, loss, kwargs, labels, the loss's own activation)
    ("bce_keras_sigmoid", "keras.sigmoid", None, "binary_crossentropy", {}, "dense", True),
    ("focal_keras_sigmoid", "keras.sigmoid", None, "focal", {"gamma": 0.5}, "dense", True),
    ("bce_afl_sigmoid", "afl.sigmoid", None, "binary_crossentropy", {"pos_weight": 2.0}, "dense",
     True),
    ("cce_keras_softmax", "keras.softmax", -1, "categorical_crossentropy", {}, "dense", True),
    ("cfocal_afl_softmax", "afl.softmax", -1, "categorical_focal", {}, "dense", True),
    ("scce_keras_softmax", "keras.softmax", -1, "sparse_categorical_crossentropy", {}, "sparse",
     True),
    ("sfocal_afl_softmax", "afl.softmax", -1, "sparse_categorical_focal", {"gamma": 0.5}, "sparse",
     True),
    # Not the loss's own activation: the probabilities as given.
    ("bce_of_softmax", "keras.softmax", -1, "binary_crossentropy", {}, "dense", False),
    ("cce_of_sigmoid", "afl.sigmoid", None, "categorical_crossentropy", {}, "dense", False),
    ("cce_of_softmax_axis0", "afl.softmax", 0, "categorical_crossentropy", {}, "dense", False),
]


def shortcut(L, A, run, tensor):
    """Per SHORTCUT_CASES: [probabilities p, loss of p, its gradient with respect to the logits,
    the loss of p's values as a plain tensor, the loss from the logits (from_logits=True)]; and a
    FocalLoss in float32 given a float16 sigmoid output (mixed precision: the class casts y_pred
    and carries the logits across), without the gradient."""
    import keras

    out = {}
    for key, activation, axis, name, kwargs, kind, _ in SHORTCUT_CASES:
        make = {"keras.sigmoid": keras.activations.sigmoid, "afl.sigmoid": A.sigmoid,
                "keras.softmax": lambda z, axis: keras.activations.softmax(z, axis=axis),
                "afl.softmax": A.softmax}[activation]
        fn = getattr(L, name)
        y = SHORTCUT_IDS if kind == "sparse" else SHORTCUT_Y

        def probabilities(z, make=make, axis=axis):
            return make(z) if axis is None else make(z, axis)

        loss, grad, _ = run(lambda y, z, fn=fn, kwargs=kwargs: fn(y, probabilities(z), **kwargs), y,
                            SHORTCUT_Z)
        p = as_list(probabilities(tensor(SHORTCUT_Z)))
        plain = fn(tensor(y), tensor(np.asarray(p, np.float32)), **kwargs)
        logits = fn(tensor(y), tensor(SHORTCUT_Z), from_logits=True, **kwargs)
        out[key] = [p, as_list(loss), as_list(grad), as_list(plain), as_list(logits)]
    z16 = tensor(SHORTCUT_Z, "float16")
    p = keras.activations.sigmoid(z16)
    out["FocalLoss_float16_sigmoid"] = [
        as_list(p), as_list(L.FocalLoss()(tensor(SHORTCUT_Y), p)), None,
        as_list(L.FocalLoss()(tensor(SHORTCUT_Y), tensor(np.asarray(as_list(p), np.float16)))),
        as_list(L.FocalLoss(from_logits=True)(tensor(SHORTCUT_Y), z16))]
    return out


# The kinds of error, by their key in "errors": labels that make no sense (InvalidLabelsError).
LABEL_ERRORS = {"bce_label_2", "focal_label_neg", "focal_label_nan", "hinge_binary_signed",
                "hinge_signed_2", "scce_out_of_range", "scce_float_id", "sfocal_ignore",
                "bce_ignore_label_bad"} | {f"labels_{key}" for key, *_ in JIT_CASES}


def _error(call):
    """[class (module.name), an InvalidLabelsError, a ValueError, a TypeError, message], or None
    when `call` raises nothing."""
    import keras_afl

    try:
        call()
    except (ValueError, TypeError) as e:
        kind = type(e)
        return [f"{kind.__module__}.{kind.__qualname__}",
                isinstance(e, keras_afl.losses.InvalidLabelsError), isinstance(e, ValueError),
                isinstance(e, TypeError), str(e)]
    return None


def errors(L, tensor):
    """Per BAD_INPUTS, CLASS_ERRORS, an unknown config key (`config_<class>`) and the bad labels
    of JIT_CASES called eagerly (`labels_<key>`): `_error`'s record."""
    out = {key: _error(lambda: getattr(L, name)(np.asarray(y), np.asarray(x), **kwargs))
           for key, name, kwargs, y, x in BAD_INPUTS}

    def class_call(cls, settings, kind):
        loss = getattr(L, cls)(**settings)
        if kind is not None:
            y, x, _ = normalized_inputs(kind, None)
            loss(tensor(y), tensor(x))

    for key, cls, settings, kind in CLASS_ERRORS:
        out[key] = _error(lambda: class_call(cls, settings, kind))
    for cls, settings, _ in LOSS_CLASSES:
        config = getattr(L, cls)(**settings).get_config()
        out[f"config_{cls}"] = _error(lambda: getattr(L, cls).from_config({**config, "bogus": 1}))
    for key, name, kwargs, y, x in JIT_CASES:
        out[f"labels_{key}"] = _error(lambda: getattr(L, name)(
            tensor(jit_labels(key, y)), tensor(np.asarray(x, np.float32)), **kwargs))
    return out


def function(L, name, kwargs):
    fn = getattr(L, name)
    return lambda y, x: fn(y, x, **kwargs)


HALF_CASES = ["mse", "huber", "hinge_binary", "bce_logits", "bce_probs", "focal_logits_g2.0",
              "focal_probs", "cce_logits", "cfocal_probs", "scce_logits", "sfocal_logits"]


# Hessian-vector products on JAX by default for these cases only (one per loss body and
# branch): the rest cost XLA compilation time (AFL_PROBE_HVP=all measures them all).
HVP_KEYS = {"mse", "huber_0.3", "hinge_auto01", "bce_logits_soft_ls", "bce_logits_pw_per_class",
            "bce_probs_ls_pw", "focal_probs_g0.5_soft", "focal_logits_soft_g0.5", "focal_logits_g2.0",
            "focal_logits_axis0", "cce_logits_soft_ls", "cce_probs", "cfocal_logits_g0.5_alpha",
            "cfocal_probs", "scce_logits_ignore", "scce_probs", "sfocal_logits_g0.5_alpha_ignore",
            "sfocal_probs", "stable_bce", "stable_focal_g2.0", "bce_logits_ignore",
            "bce_probs_ignore_ls_pw", "focal_logits_ignore", "focal_probs_ignore_g0.5"}


def measure(L, run, all_hvp=True):
    """"grid:<case>/<dtype>": [value, gradient, HVP] for every case in float64 (with
    Hessian-vector products) and float32, and [value, gradient, [their dtypes]] in float16 and
    bfloat16 for the half cases (eagerly). With `run.many` (JAX), the float64/float32 grids run in
    one compiled program each."""
    out = {}
    for dtype in ("float64", "float32"):
        items = []
        for key, name, kwargs, y, x in cases():
            yy, xx = prepare(y, x, dtype)
            hvp = dtype == "float64" and (all_hvp or key in HVP_KEYS)
            items.append((key, function(L, name, kwargs), yy, xx, hvp))
        if hasattr(run, "many"):
            results = run.many([i[1:] for i in items])
        else:
            results = [run(f, y, x, hvp=hvp) for _, f, y, x, hvp in items]
        for (key, *_), (val, dx, h) in zip(items, results):
            out[f"grid:{key}/{dtype}"] = [as_list(val), as_list(dx), as_list(h)]
    for key, name, kwargs, y, x in cases():
        if key in HALF_CASES:
            f = function(L, name, kwargs)
            for dtype in ("float16", "bfloat16"):
                yy, xx = prepare(y, x, "float32")
                val, dx, _ = run(f, yy, xx, dtype=dtype)
                out[f"grid:{key}/{dtype}"] = [as_list(val), as_list(dx),
                                              [dtype_name(val), dtype_name(dx)]]
    return out


def measure_classes(L, tensor):
    """"class:<class>/<reduction>/<sample weight>": [value] (float32)."""
    out = {}
    for cls, settings, kind in LOSS_CLASSES:
        y, x = class_inputs(kind)
        for reduction in REDUCTIONS:
            for sw_name, sw in SAMPLE_WEIGHTS.items():
                loss = getattr(L, cls)(**settings, reduction=reduction)
                value = loss(tensor(y), tensor(x), sample_weight=None if sw is None else tensor(sw))
                out[f"class:{cls}/{reduction}/{sw_name}"] = [as_list(value)]
    return out


def normalized(L, run, tensor):
    """"normalized:<key>/float64": [value, gradient] per NORMALIZED_CASES."""
    out = {}
    for key, cls, settings, kind, sw_name in NORMALIZED_CASES:
        loss = getattr(L, cls)(**settings, dtype="float64")
        y, x, sw = normalized_inputs(kind, sw_name)
        sw = None if sw is None else tensor(sw)
        val, dx, _ = run(lambda y, x: loss(y, x, sample_weight=sw), y, x)
        out[f"normalized:{key}/float64"] = [as_list(val), as_list(dx)]
    return out


def main():
    backend = start()
    import keras_afl

    L = keras_afl.losses
    run, tensor = runner(backend)
    all_hvp = backend != "jax" or os.environ.get("AFL_PROBE_HVP") == "all"
    out = {
        "backend": backend,
        "numbers": {**measure(L, run, all_hvp), **measure_classes(L, tensor),
                    **normalized(L, run, tensor), **unchecked(L, tensor), **good_samples(L, run)},
        "errors": errors(L, tensor),
        "shortcut": shortcut(L, keras_afl.activations, run, tensor),
        "tensorflow_imported": sys.modules.get("tensorflow") is not None,
    }
    if backend == "jax":
        out["jit"] = jit_with_bad_labels(L)
    print("RESULT" + json.dumps(out))


if __name__ == "__main__":
    main()
