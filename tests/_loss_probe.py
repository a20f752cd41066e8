"""Runs keras_afl's portable losses on one Keras backend and prints what they compute, as JSON.

Usage (a fresh process per backend): KERAS_BACKEND=jax python tests/_portable_loss_probe.py
(or torch). TensorFlow is made unimportable first, so the run also shows that the portable
losses need none. Prints `RESULT` and one JSON object: for every case of `cases()`, the per-sample
loss, its gradient for an upstream gradient that is not all ones and (float64) a Hessian-vector
product of sum(w * loss), each with the backend's own differentiation; the Loss classes'
reductions; their configs; error messages; float16/bfloat16 dtypes; the logits shortcut; JAX's
jit behaviour with bad labels. tests/test_portable_losses.py compares all of it with keras_afl's
TensorFlow losses, whose runner (`tensorflow_runner`) lives here too, so both sides measure alike.

The package's `__init__` is bypassed (`import keras_afl` may not work on these backends yet):
the subpackages load from a stand-in `keras_afl` module, as tests/_portable_probe.py does.
"""

import json
import os
import sys
import types

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load():
    """keras_afl._portable.losses without the package's `__init__` (only when run as a script)."""
    sys.modules["tensorflow"] = None  # import tensorflow now raises ImportError
    # XLA's CPU compiler with its cheaper passes: the compiled grids compile several times
    # faster (the arithmetic is IEEE either way; fast math is off by default).
    os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0 "
                          "--xla_llvm_disable_expensive_passes=true")
    if "keras_afl" not in sys.modules:
        package = types.ModuleType("keras_afl")
        package.__path__ = [os.path.join(REPO, "keras_afl")]
        sys.modules["keras_afl"] = package
    from keras_afl._portable import activations, losses

    return losses, activations


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


def upstream(shape, seed):
    """An upstream gradient / weights / direction that is not all ones."""
    n = int(np.prod(shape)) if shape else 1
    r = np.random.default_rng(seed)
    return (np.linspace(-1.0, 2.0, n) + 0.1 * r.random(n)).reshape(shape)


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
# sample weight name). The test serializes the TensorFlow object; the probe deserializes it
# (a TensorFlow-saved config loading on this backend) and measures the value and d/dy_pred.
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


def class_errors(L, tensor):
    out = {}
    for key, cls, settings, kind in CLASS_ERRORS:
        try:
            loss = getattr(L, cls)(**settings)
            if kind is not None:
                y, x, _ = normalized_inputs(kind, None)
                loss(tensor(y), tensor(x))
            out[key] = None
        except (ValueError, TypeError) as e:
            out[key] = [isinstance(e, ValueError), isinstance(e, TypeError), str(e)]
    return out


def normalized(L, backend, tensor):
    """Per NORMALIZED_CASES, from the TensorFlow serialization (AFL_TF_NORMALIZED, a JSON list):
    [module, config, value, d sum(value) / d y_pred], float64."""
    import keras

    items = json.loads(os.environ.get("AFL_TF_NORMALIZED", "[]"))
    out = {}
    for (key, _, _, kind, sw_name), item in zip(NORMALIZED_CASES, items):
        loss = keras.saving.deserialize_keras_object(item)
        y, x, sw = normalized_inputs(kind, sw_name)
        y, x = tensor(y), tensor(x)
        sw = None if sw is None else tensor(sw)
        if backend == "jax":
            import jax
            import jax.numpy as jnp

            val = loss(y, x, sample_weight=sw)
            grad = jax.grad(lambda x: jnp.sum(loss(y, x, sample_weight=sw)))(x)
        else:
            import torch

            x.requires_grad_()
            val = loss(y, x, sample_weight=sw)
            (grad,) = torch.autograd.grad(torch.sum(val), x)
        out[key] = [type(loss).__module__, loss.get_config(), as_list(val), as_list(grad)]
    return out

# --------------------------------------------------------------------------
# Runners: value, gradient for an upstream gradient, Hessian-vector product, per backend.


def jax_runner():
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)

    def tensor(a, dtype=None):
        a = jnp.asarray(a)
        return a if dtype is None else a.astype(dtype)

    def measured(f, y, x, hvp):
        val, vjp = jax.vjp(lambda x: f(y, x), x)
        (dx,) = vjp(jnp.asarray(upstream(val.shape, 1), val.dtype))
        h = None
        if hvp:
            w, v = jnp.asarray(upstream(val.shape, 2)), jnp.asarray(upstream(x.shape, 3))
            first = jax.grad(lambda x: jnp.sum(f(y, x) * w))
            h = jax.grad(lambda x: jnp.sum(first(x) * v))(x)
        return val, dx, h

    def run(f, y, x, hvp=False, dtype=None):
        return measured(f, tensor(y), tensor(x, dtype), hvp)

    def run_many(items):
        """[(f, y, x, hvp)] measured in one jax.jit program, the labels traced (the path of a
        jitted training step): one XLA compilation, far quicker here than JAX's op-by-op
        dispatch or a program per case."""
        fs = [(f, hvp) for f, _, _, hvp in items]

        def everything(ys, xs):
            return [measured(f, y, x, hvp) for (f, hvp), y, x in zip(fs, ys, xs)]

        return jax.jit(everything)([tensor(i[1]) for i in items], [tensor(i[2]) for i in items])

    run.many = run_many
    return run, tensor


def torch_runner():
    import torch

    def tensor(a, dtype=None):
        t = torch.tensor(np.asarray(a))
        return t if dtype is None else t.to(getattr(torch, dtype))

    def run(f, y, x, hvp=False, dtype=None):
        y, x = tensor(y), tensor(x, dtype).requires_grad_()
        val = f(y, x)
        (dx,) = torch.autograd.grad(val, x, torch.tensor(upstream(tuple(val.shape), 1), dtype=val.dtype))
        h = None
        if hvp:
            w = torch.tensor(upstream(tuple(val.shape), 2), dtype=val.dtype)
            v = torch.tensor(upstream(tuple(x.shape), 3), dtype=x.dtype)
            (first,) = torch.autograd.grad(torch.sum(f(y, x) * w), x, create_graph=True)
            h = (torch.autograd.grad(torch.sum(first * v), x)[0] if first.requires_grad
                 else torch.zeros_like(x))
        return val.detach(), dx, h

    return run, tensor


def tensorflow_runner():
    """The same measurements with TensorFlow's tapes (for keras_afl.losses, in the test process)."""
    import tensorflow as tf

    def tensor(a, dtype=None):
        t = tf.constant(np.asarray(a))
        return t if dtype is None else tf.cast(t, dtype)

    def run(f, y, x, hvp=False, dtype=None):
        y, x = tensor(y), tensor(x, dtype)
        with tf.GradientTape() as tape:
            tape.watch(x)
            val = f(y, x)
        dx = tape.gradient(val, x, output_gradients=tf.constant(upstream(tuple(val.shape), 1), val.dtype))
        h = None
        if hvp:
            w, v = tf.constant(upstream(tuple(val.shape), 2)), tf.constant(upstream(tuple(x.shape), 3))
            with tf.GradientTape() as outer:
                outer.watch(x)
                with tf.GradientTape() as inner:
                    inner.watch(x)
                    s = tf.reduce_sum(f(y, x) * w)
                first = inner.gradient(s, x)
                t = tf.reduce_sum(first * v)
            h = outer.gradient(t, x)
            h = tf.zeros_like(x) if h is None else h
        return val, dx, h

    return run, tensor


def as_list(a):
    """A tensor as nested float64 lists (None stays None)."""
    if a is None:
        return None
    if hasattr(a, "detach"):  # torch
        a = a.detach().float() if str(a.dtype) == "torch.bfloat16" else a.detach()
    return np.asarray(a, np.float64).tolist()


def dtype_name(a):
    return str(a.dtype).replace("torch.", "")


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
    """Every case in float64 (with Hessian-vector products) and float32, and the half cases
    (eagerly). With `run.many` (JAX), the float64/float32 grids run in one compiled program each."""
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
            out[f"{key}/{dtype}"] = [as_list(val), as_list(dx), as_list(h)]
    for key, name, kwargs, y, x in cases():
        if key in HALF_CASES:
            f = function(L, name, kwargs)
            for dtype in ("float16", "bfloat16"):
                yy, xx = prepare(y, x, "float32")
                val, dx, _ = run(f, yy, xx, dtype=dtype)
                out[f"{key}/{dtype}"] = [as_list(val), as_list(dx), [dtype_name(val), dtype_name(dx)]]
    return out


def measure_classes(L, tensor):
    out = {}
    for cls, settings, kind in LOSS_CLASSES:
        y, x = class_inputs(kind)
        for reduction in REDUCTIONS:
            for sw_name, sw in SAMPLE_WEIGHTS.items():
                loss = getattr(L, cls)(**settings, reduction=reduction)
                value = loss(tensor(y), tensor(x), sample_weight=None if sw is None else tensor(sw))
                out[f"{cls}/{reduction}/{sw_name}"] = as_list(value)
    return out


def signatures(L):
    """{public name: [[parameter, kind, default], ...]} of every function and class __init__."""
    import inspect

    out = {}
    for name in L.__all__:
        obj = getattr(L, name)
        target = obj.__init__ if isinstance(obj, type) else obj
        out[name] = [[p.name, p.kind.name, repr(p.default)]
                     for p in inspect.signature(target).parameters.values() if p.name != "self"]
    return out


def class_configs(L):
    """Each class's config, whether from_config(config) gives it back, and the unknown-key error."""
    out = {}
    for cls, settings, _ in LOSS_CLASSES:
        config = getattr(L, cls)(**settings).get_config()
        again = getattr(L, cls).from_config(config).get_config() == config
        try:
            getattr(L, cls).from_config({**config, "bogus": 1})
            unknown = None
        except ValueError as e:
            unknown = str(e)
        out[cls] = [config, again, unknown]
    return out


def errors(L, tensor):
    out = {}
    for key, name, kwargs, y, x in BAD_INPUTS:
        try:
            getattr(L, name)(np.asarray(y), np.asarray(x), **kwargs)
            out[key] = None
        except (ValueError, TypeError) as e:
            out[key] = [isinstance(e, ValueError), isinstance(e, TypeError), str(e)]
    return out


SHORTCUT_Z = np.array([[-100.0, -30.0, 0.5, 30.0], [100.0, 20.0, -3.0, -100.0]], np.float32)
SHORTCUT_Y = np.array([[1.0, 1.0, 0.0, 0.0], [0.0, 1.0, 1.0, 1.0]], np.float32)
SHORTCUT_CASES = [  # (key, activation, axis, loss, kwargs, labels): y_pred = activation(z)
    ("bce_keras_sigmoid", "keras.sigmoid", None, "binary_crossentropy", {}, "dense"),
    ("focal_keras_sigmoid", "keras.sigmoid", None, "focal", {"gamma": 0.5}, "dense"),
    ("bce_afl_sigmoid", "afl.sigmoid", None, "binary_crossentropy", {"pos_weight": 2.0}, "dense"),
    ("cce_keras_softmax", "keras.softmax", -1, "categorical_crossentropy", {}, "dense"),
    ("cfocal_afl_softmax", "afl.softmax", -1, "categorical_focal", {}, "dense"),
    ("scce_keras_softmax", "keras.softmax", -1, "sparse_categorical_crossentropy", {}, "sparse"),
    ("sfocal_afl_softmax", "afl.softmax", -1, "sparse_categorical_focal", {"gamma": 0.5}, "sparse"),
    # Not the loss's own activation: the probabilities as given.
    ("bce_of_softmax", "keras.softmax", -1, "binary_crossentropy", {}, "dense"),
    ("cce_of_sigmoid", "afl.sigmoid", None, "categorical_crossentropy", {}, "dense"),
    ("cce_of_softmax_axis0", "afl.softmax", 0, "categorical_crossentropy", {}, "dense"),
]
SHORTCUT_IDS = np.array([1, 3], np.int32)


def shortcut(L, A, tensor, backend):
    """[probabilities, loss, gradient with respect to z (None on JAX)] per SHORTCUT_CASES."""
    import keras

    out = {}
    for key, activation, axis, name, kwargs, kind in SHORTCUT_CASES:
        make = {"keras.sigmoid": keras.activations.sigmoid, "afl.sigmoid": A.sigmoid,
                "keras.softmax": lambda z, axis: keras.activations.softmax(z, axis=axis),
                "afl.softmax": A.softmax}[activation]
        y = tensor(SHORTCUT_IDS if kind == "sparse" else SHORTCUT_Y)
        z = tensor(SHORTCUT_Z)
        fn = getattr(L, name)
        if backend == "torch":
            z.requires_grad_()
        p = make(z) if axis is None else make(z, axis)
        loss = fn(y, p, **kwargs)
        grad = None
        if backend == "torch":
            import torch

            (grad,) = torch.autograd.grad(torch.sum(loss * torch.tensor([1.0, 0.5])), z)
        out[key] = [as_list(p), as_list(loss), as_list(grad)]
    # A Loss class in float32 given a float16 sigmoid output (mixed precision): the class casts
    # y_pred itself and carries the logits across (PyTorch).
    p = keras.activations.sigmoid(tensor(SHORTCUT_Z, "float16"))
    out["FocalLoss_float16_sigmoid"] = [as_list(p), as_list(L.FocalLoss()(tensor(SHORTCUT_Y), p)), None]
    return out


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


def jit_with_bad_labels(L):
    """Under jax.jit: [loss, gradient] per JIT_CASES (the bad sample NaN, the others numbers)."""
    import jax
    import jax.numpy as jnp

    out = {}
    for key, name, kwargs, y, x in JIT_CASES:
        fn = getattr(L, name)
        y = jnp.asarray(np.asarray(y, np.int32 if key == "scce" else np.float32))
        x = jnp.asarray(np.asarray(x, np.float32))
        loss = jax.jit(lambda y, x: fn(y, x, **kwargs))(y, x)
        grad = jax.jit(jax.grad(lambda x, y: jnp.sum(fn(y, x, **kwargs) * jnp.array([1.0, 2.0, 3.0]))))(x, y)
        out[key] = [as_list(loss), as_list(grad)]
    return out


def unchecked(L, tensor):
    """With set_trace_options(label_checks=False), a bad label gives a number, eagerly."""
    out = {}
    with L.set_trace_options(label_checks=False):
        for key, name, kwargs, y, x in JIT_CASES:
            try:
                value = getattr(L, name)(tensor(np.asarray(y)), tensor(np.asarray(x, np.float32)), **kwargs)
                out[key] = as_list(value)
            except ValueError as e:
                out[key] = str(e)
    return out


def deserialized(L):
    """keras.saving.deserialize_keras_object of the TensorFlow classes' serializations
    (environment variable AFL_TF_SERIALIZED, a JSON list): [class module, config] each."""
    import keras

    out = []
    for item in json.loads(os.environ.get("AFL_TF_SERIALIZED", "[]")):
        obj = keras.saving.deserialize_keras_object(item)
        out.append([type(obj).__module__, obj.get_config()])
    return out


def main():
    L, A = _load()
    import keras

    backend = keras.backend.backend()
    run, tensor = {"jax": jax_runner, "torch": torch_runner}[backend]()
    out = {
        "backend": backend,
        "names": sorted(L.__all__),
        "trace_options": L.trace_options(),
        "cases": measure(L, run, backend != "jax" or os.environ.get("AFL_PROBE_HVP") == "all"),
        "classes": measure_classes(L, tensor),
        "configs": class_configs(L),
        "signatures": signatures(L),
        "errors": errors(L, tensor),
        "shortcut": shortcut(L, A, tensor, backend),
        "unchecked": unchecked(L, tensor),
        "deserialized": deserialized(L),
        "normalized": normalized(L, backend, tensor),
        "class_errors": class_errors(L, tensor),
        "tensorflow_imported": sys.modules.get("tensorflow") is not None,
    }
    if backend == "jax":
        out["jit"] = jit_with_bad_labels(L)
    print("RESULT" + json.dumps(out))


if __name__ == "__main__":
    main()
