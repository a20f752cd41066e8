"""keras_afl's losses on JAX and PyTorch (`keras_afl._portable.losses`) against keras_afl's
TensorFlow losses in this process: values, gradients for an upstream gradient that is not all
ones, and Hessian-vector products over the grids of `tests/_portable_loss_probe.py` (float64 to
1e-10 relative, float32 to 1e-5, each with an absolute floor near 0 scaled to the case); the
stability sweep; float16/bfloat16 dtypes; the Loss classes' reductions and sample weights; their
configs and cross-backend deserialization; error messages; the logits shortcut (PyTorch) and its
absence (JAX); bad labels under jax.jit. Plus NumPy references for a few losses, so that the two
paths cannot agree on a wrong number unnoticed.

Each backend runs once, in a fresh process with TensorFlow made unimportable; a backend that is
not installed is skipped.
"""

import importlib.util
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_afl
from tests import _portable_loss_probe as P
from tests._checks import REPO, run_python

PROBE = os.path.join(REPO, "tests", "_portable_loss_probe.py")
L = keras_afl.losses
RTOL = {"float64": 1e-10, "float32": 1e-5}


def _tf_serialized():
    return [keras.saving.serialize_keras_object(getattr(L, cls)(**settings))
            for cls, settings, _ in P.LOSS_CLASSES]


def _tf_normalized():
    return [keras.saving.serialize_keras_object(getattr(L, cls)(**settings, dtype="float64"))
            for _, cls, settings, _, _ in P.NORMALIZED_CASES]


def _probe(backend, **env):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed (pip install 'keras-afl[{backend}]')")
    stdout = run_python(f"import runpy; runpy.run_path({PROBE!r}, run_name='__main__')",
                        env={"KERAS_BACKEND": backend, "JAX_ENABLE_X64": "1",
                             "AFL_TF_SERIALIZED": json.dumps(_tf_serialized()),
                             "AFL_TF_NORMALIZED": json.dumps(_tf_normalized()), **env},
                        timeout=600)
    result = json.loads(stdout.split("RESULT", 1)[1])
    assert result["backend"] == backend
    return result


@pytest.fixture(scope="module", params=["jax", "torch"])
def probed(request):
    return _probe(request.param)


@pytest.fixture(scope="module")
def tf_cases():
    """keras_afl's TensorFlow losses on every grid case, measured as the probe measures."""
    run, _ = P.tensorflow_runner()
    out = {}
    for key, name, kwargs, y, x in P.cases():
        f = P.function(L, name, kwargs)
        for dtype in ("float64", "float32"):
            yy, xx = P.prepare(y, x, dtype)
            out[f"{key}/{dtype}"] = [np.asarray(a, np.float64) if a is not None else None
                                     for a in run(f, yy, xx, hvp=dtype == "float64")]
        if key in P.HALF_CASES:
            for dtype in ("float16", "bfloat16"):
                yy, xx = P.prepare(y, x, "float32")
                val, dx, _ = run(f, yy, xx, dtype=dtype)
                out[f"{key}/{dtype}"] = [tf.cast(val, tf.float64).numpy(), tf.cast(dx, tf.float64).numpy(),
                                         [val.dtype.name, dx.dtype.name]]
    return out


def close(got, want, rtol, what):
    """Relative to rtol, with an absolute floor of rtol * 1e-3 of the case's largest entry."""
    want = np.asarray(want, np.float64)
    got = np.asarray(got, np.float64)
    finite = want[np.isfinite(want)]
    scale = float(np.max(np.abs(finite))) if finite.size else 1.0
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * 1e-3 * scale + 1e-300, err_msg=what)


CASE_KEYS = [key for key, *_ in P.cases()]


def test_public_names_and_options_match_tensorflow_without_importing_it(probed):
    assert probed["names"] == sorted(L.__all__)
    assert set(probed["trace_options"]) == set(L.trace_options())
    assert not probed["tensorflow_imported"]


@pytest.mark.parametrize("key", CASE_KEYS)
def test_values_grads_and_hvp_equal_tensorflow_path(probed, tf_cases, key):
    for dtype in ("float64", "float32"):
        val, dx, h = probed["cases"][f"{key}/{dtype}"]
        tval, tdx, th = tf_cases[f"{key}/{dtype}"]
        where = f"{probed['backend']} {key} {dtype}"
        close(val, tval, RTOL[dtype], f"{where}: value")
        close(dx, tdx, RTOL[dtype], f"{where}: gradient")
        if h is not None:
            close(h, th, RTOL[dtype], f"{where}: Hessian-vector product")
    if probed["backend"] == "torch":  # JAX measures a subset by default (the slow test: all)
        assert probed["cases"][f"{key}/float64"][2] is not None


def _numpy_reference(key, y, z):
    """Per-sample losses and d loss/d z in float64 by hand, for a few logits cases."""
    sp = np.logaddexp(0.0, z)  # softplus
    sig = 1.0 / (1.0 + np.exp(-z))
    n = z.shape[-1]
    if key == "bce_logits":
        return np.mean(sp - y * z, -1), (sig - y) / n
    if key == "focal_logits_g2.0":  # alpha 0.25; m = 1 - p_t; d/dz by the product rule
        a = 0.25 * y + 0.75 * (1 - y)
        ce = y * np.logaddexp(0.0, -z) + (1 - y) * sp
        m = y * (1 - sig) + (1 - y) * sig
        dm = (1 - 2 * y) * sig * (1 - sig)
        return np.mean(a * m**2 * ce, -1), a * (2 * m * dm * ce + m**2 * (sig - y)) / n
    if key == "cce_logits":
        lse = np.log(np.sum(np.exp(z - z.max(-1, keepdims=True)), -1)) + z.max(-1)
        return lse - np.sum(y * z, -1), np.exp(z - lse[:, None]) - y
    raise KeyError(key)


@pytest.mark.parametrize("key", ["bce_logits", "focal_logits_g2.0", "cce_logits"])
def test_values_and_grads_equal_numpy_formula(probed, key):
    _, _, _, y, z = next(c for c in P.cases() if c[0] == key)
    value, dz = _numpy_reference(key, y, z)
    g = P.upstream(value.shape, 1)
    val, dx, _ = probed["cases"][f"{key}/float64"]
    close(val, value, 1e-12, f"{probed['backend']} {key}: value vs NumPy")
    close(dx, g[..., None] * dz, 1e-12, f"{probed['backend']} {key}: gradient vs NumPy")


def test_hvp_at_zero_logits_equals_exact_second_derivative(probed):
    # BCE from logits: d2/dz2 of mean(softplus(z) - y z) is sigmoid'(z) / N = 0.25 / N at z = 0;
    # the HVP of sum(w * loss) in direction v is w * v * 0.25 / N there.
    key = "stable_bce"
    _, _, _, y, x = next(c for c in P.cases() if c[0] == key)
    h = np.asarray(probed["cases"][f"{key}/float64"][2])
    w, v = P.upstream((x.shape[0],), 2), P.upstream(x.shape, 3)
    at0 = x == 0.0
    close(h[at0], (w[:, None] * v * 0.25 / x.shape[-1])[at0], 1e-12, f"{probed['backend']} {key}")


def test_stability_sweep_finite(probed):
    for key in CASE_KEYS:
        if key.startswith("stable_"):
            for dtype in ("float64", "float32"):
                val, dx, _ = probed["cases"][f"{key}/{dtype}"]
                assert np.all(np.isfinite(val)) and np.all(np.isfinite(dx)), f"{key} {dtype}"


@pytest.mark.parametrize("key", P.HALF_CASES)
def test_half_precision_dtype_preserved_and_values_equal_tensorflow(probed, tf_cases, key):
    for dtype in ("float16", "bfloat16"):
        val, dx, dtypes = probed["cases"][f"{key}/{dtype}"]
        tval, tdx, tdtypes = tf_cases[f"{key}/{dtype}"]
        assert dtypes == [dtype, dtype] == tdtypes
        # Computed in float32 on both paths, rounded once to the half dtype.
        rtol = 1e-2 if dtype == "bfloat16" else 2e-3
        close(val, tval, rtol, f"{probed['backend']} {key} {dtype}: value")
        close(dx, tdx, rtol, f"{probed['backend']} {key} {dtype}: gradient")


def test_loss_classes_reductions_and_sample_weights_equal_tensorflow(probed):
    for cls, settings, kind in P.LOSS_CLASSES:
        y, x = P.class_inputs(kind)
        for reduction in P.REDUCTIONS:
            for sw_name, sw in P.SAMPLE_WEIGHTS.items():
                want = getattr(L, cls)(**settings, reduction=reduction)(y, x, sample_weight=sw)
                got = probed["classes"][f"{cls}/{reduction}/{sw_name}"]
                close(got, want.numpy(), 1e-5, f"{probed['backend']} {cls} {reduction} {sw_name}")


def test_signatures_equal_tensorflow(probed):
    tf_signatures = P.signatures(L)
    assert sorted(probed["signatures"]) == sorted(tf_signatures)
    for name, params in probed["signatures"].items():
        assert params == tf_signatures[name], name


def test_configs_equal_tensorflow_and_round_trip(probed):
    for cls, settings, _ in P.LOSS_CLASSES:
        config, again, _ = probed["configs"][cls]
        assert config == json.loads(json.dumps(getattr(L, cls)(**settings).get_config())), cls
        assert again, cls


@pytest.mark.parametrize("cls", [c for c, *_ in P.LOSS_CLASSES])
def test_unknown_setting_error_equals_tensorflow(probed, cls):
    settings = next(s for c, s, _ in P.LOSS_CLASSES if c == cls)
    tf_config = getattr(L, cls)(**settings).get_config()
    with pytest.raises(ValueError) as e:
        getattr(L, cls).from_config({**tf_config, "bogus": 1})
    assert probed["configs"][cls][2] == str(e.value)


def test_tensorflow_serializations_deserialize_to_portable_classes(probed):
    got = probed["deserialized"]
    assert len(got) == len(P.LOSS_CLASSES)
    for (module, config), (cls, settings, _) in zip(got, P.LOSS_CLASSES):
        assert module.startswith("keras_afl._portable.losses"), module
        assert config == json.loads(json.dumps(getattr(L, cls)(**settings).get_config())), cls


@pytest.mark.parametrize("key", [k for k, *_ in P.BAD_INPUTS])
def test_bad_input_errors_equal_tensorflow(probed, key):
    _, name, kwargs, y, x = next(b for b in P.BAD_INPUTS if b[0] == key)
    with pytest.raises((ValueError, TypeError)) as e:
        getattr(L, name)(np.asarray(y), np.asarray(x), **kwargs)
    want = [isinstance(e.value, ValueError), isinstance(e.value, TypeError), str(e.value)]
    assert probed["errors"][key] == want


@pytest.mark.parametrize("key", [k for k, *_ in P.CLASS_ERRORS])
def test_normalize_and_ignore_class_errors_equal_tensorflow(probed, key):
    _, cls, settings, kind = next(c for c in P.CLASS_ERRORS if c[0] == key)
    with pytest.raises((ValueError, TypeError)) as e:
        loss = getattr(L, cls)(**settings)
        if kind is not None:
            y, x, _ = P.normalized_inputs(kind, None)
            loss(y, tf.constant(x))
    assert probed["class_errors"][key] == [isinstance(e.value, ValueError),
                                           isinstance(e.value, TypeError), str(e.value)]


@pytest.mark.parametrize("key", [k for k, *_ in P.NORMALIZED_CASES])
def test_tensorflow_saved_ignore_and_normalize_losses_load_and_equal_tensorflow(probed, key):
    # The TensorFlow object's serialization, deserialized on the backend (a portable class with
    # the same config), then its value and d sum(value) / d y_pred against TensorFlow's in float64.
    _, cls, settings, kind, sw_name = next(c for c in P.NORMALIZED_CASES if c[0] == key)
    module, config, val, grad = probed["normalized"][key]
    loss = getattr(L, cls)(**settings, dtype="float64")
    assert module.startswith("keras_afl._portable.losses"), module
    assert config == json.loads(json.dumps(loss.get_config()))
    new = {"ignore_class", "normalize", "background_class"}
    assert {k for k in new if k in settings} <= set(config)  # saved when set
    y, x, sw = P.normalized_inputs(kind, sw_name)
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        want = loss(y, x, sample_weight=sw)
        total = tf.reduce_sum(want)
    where = f"{probed['backend']} {key}"
    # Keras 3.15's own reduction (without `normalize`) returns float32 on PyTorch for a float64
    # loss (measured, with or without ignore_class); with `normalize` the reduction is ours.
    rtol = 1e-10 if "normalize" in settings or probed["backend"] == "jax" else 1e-6
    close(val, want.numpy(), rtol, f"{where}: value")
    close(grad, tape.gradient(total, x).numpy(), rtol, f"{where}: gradient")


def test_ignored_entries_add_nothing_on_the_backend(probed):
    # Independent of TensorFlow: the gradient is exactly 0 on every ignored entry, and the row
    # all ignored has loss 0 (its mask takes it out of the mean).
    for key in ("bce_logits_ignore", "bce_probs_ignore_ls_pw", "focal_logits_ignore",
                "focal_probs_ignore_g0.5"):
        _, _, kwargs, y, _ = next(c for c in P.cases() if c[0] == key)
        val, dx, _ = probed["cases"][f"{key}/float64"]
        ignored = y == kwargs["ignore_class"]
        assert np.all(np.asarray(dx)[ignored] == 0.0), key
        assert np.asarray(val)[3] == 0.0 and np.all(np.asarray(dx)[3] == 0.0), key
        assert np.all(np.asarray(dx)[~ignored] != 0.0), key


def test_logits_shortcut_on_torch_and_probabilities_as_given_on_jax(probed):
    z = tf.constant(P.SHORTCUT_Z)
    weights = tf.constant([1.0, 0.5])
    for key, activation, axis, name, kwargs, kind in P.SHORTCUT_CASES:
        p, loss, grad = probed["shortcut"][key]
        y = P.SHORTCUT_IDS if kind == "sparse" else P.SHORTCUT_Y
        own = (name in ("binary_crossentropy", "focal")) == (axis is None) and axis in (None, -1)
        where = f"{probed['backend']} {key}"
        if probed["backend"] == "torch" and own:
            with tf.GradientTape() as tape:
                tape.watch(z)
                want = getattr(L, name)(y, z, from_logits=True, **kwargs)
                total = tf.reduce_sum(want * weights)
            close(loss, want.numpy(), 1e-5, f"{where}: loss from the logits")
            close(grad, tape.gradient(total, z).numpy(), 1e-5, f"{where}: gradient at the logits")
        else:  # the probabilities as given (clipped): a bounded loss
            want = getattr(L, name)(y, tf.constant(np.asarray(p, np.float32)), **kwargs)
            close(loss, want.numpy(), 1e-5, f"{where}: loss from the probabilities")
            if probed["backend"] == "jax":
                assert grad is None


def test_loss_class_keeps_the_shortcut_across_its_float32_cast(probed):
    p, loss, _ = probed["shortcut"]["FocalLoss_float16_sigmoid"]
    if probed["backend"] == "torch":  # the loss of the float16 logits, computed in float32
        want = L.FocalLoss(from_logits=True)(P.SHORTCUT_Y, tf.constant(P.SHORTCUT_Z, tf.float16))
    else:  # the probabilities as given
        want = L.FocalLoss()(P.SHORTCUT_Y, tf.constant(np.asarray(p, np.float16)))
    close(loss, want.numpy(), 1e-5, f"{probed['backend']} FocalLoss of a float16 sigmoid output")


def test_bad_labels_under_jax_jit_give_nan_for_their_samples_only(probed):
    if probed["backend"] != "jax":
        pytest.skip("jax.jit only")
    for key, name, kwargs, y, x in P.JIT_CASES:
        loss, grad = (np.asarray(a, np.float64) for a in probed["jit"][key])
        assert np.isnan(loss[1]) and np.all(np.isnan(grad[1])), key
        good = [0, 2]
        ids = np.asarray(y)[good]
        y_good = ids.astype(np.int32) if key == "scce" else ids.astype(np.float32)
        x_good = tf.constant(np.asarray(x, np.float32)[good])
        with tf.GradientTape() as tape:
            tape.watch(x_good)
            want = getattr(L, name)(y_good, x_good, **kwargs)
            total = tf.reduce_sum(want * tf.constant([1.0, 3.0]))
        close(loss[good], want.numpy(), 1e-5, f"jit {key}: the good samples' loss")
        close(grad[good], tape.gradient(total, x_good).numpy(), 1e-5, f"jit {key}: their gradient")


def test_label_checks_off_gives_numbers_as_tensorflow(probed):
    with L.set_trace_options(label_checks=False):
        for key, name, kwargs, y, x in P.JIT_CASES:
            got = probed["unchecked"][key]
            assert not isinstance(got, str), got
            want = getattr(L, name)(np.asarray(y), np.asarray(x, np.float32), **kwargs)
            close(got, want.numpy(), 1e-5, f"{probed['backend']} {key} unchecked")


@pytest.mark.slow
def test_every_hessian_vector_product_on_jax_equals_tensorflow(tf_cases):
    probed = _probe("jax", AFL_PROBE_HVP="all")
    for key in CASE_KEYS:
        h = probed["cases"][f"{key}/float64"][2]
        close(h, tf_cases[f"{key}/float64"][2], 1e-10, f"jax {key}: Hessian-vector product")
