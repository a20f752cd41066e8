"""keras_afl's losses on TensorFlow, JAX and PyTorch in one table, each backend measured in a fresh
process by tests/_loss_probe.py (TensorFlow made unimportable on JAX and PyTorch).

- The numbers: one test per case checks every backend's against TensorFlow's -- values,
  gradients for an upstream gradient that is not all ones and Hessian-vector products over the
  grids (float64 to 1e-10 relative, float32 to 1e-5, each with an absolute floor near 0 scaled to
  the case), the stability sweep, float16/bfloat16 (dtype kept, values to the half dtype's
  rounding), the Loss classes' reductions and sample weights, `ignore_class`/`normalize`, the
  label checks switched off -- and, for a few cases, against NumPy, so that the backends cannot
  agree on a wrong number unnoticed.
- The errors: one test per refused label or setting checks that every backend raises the same
  class (`keras_afl.losses._checks.InvalidLabelsError`, a ValueError, for bad labels) with the
  same message.
- The logits shortcut (TensorFlow and PyTorch; JAX computes from the probabilities as given) and
  bad labels under jax.jit (NaN for their samples only).
"""

import numpy as np
import pytest

from tests import _loss_probe as P
from tests._backend_probe import upstream
from tests._checks import probe_backends

RTOL = {"float64": 1e-10, "float32": 1e-5, "float16": 2e-3, "bfloat16": 1e-2}
INVALID_LABELS = "keras_afl.losses._checks.InvalidLabelsError"


@pytest.fixture(scope="module")
def probed(tmp_path_factory):
    results = probe_backends("_loss_probe.py", tmp_path_factory)
    if set(results) == {"tensorflow"}:
        pytest.skip("neither JAX nor PyTorch is installed (pip install 'keras-afl[jax]')")
    return results


@pytest.fixture(scope="module")
def table(probed):
    """{case: {backend: {variant: numbers}}}: a case is "<section>:<name>" ("grid:bce_logits",
    "class:FocalLoss", ...), a variant its dtype (and reduction / sample weight) after the "/"."""
    out = {}
    for backend, result in probed.items():
        for key, numbers in result["numbers"].items():
            case, variant = key.split("/", 1)
            out.setdefault(case, {}).setdefault(backend, {})[variant] = numbers
    return out


def close(got, want, rtol, what):
    """Relative to rtol, with an absolute floor of rtol * 1e-3 of the case's largest entry."""
    want = np.asarray(want, np.float64)
    got = np.asarray(got, np.float64)
    finite = want[np.isfinite(want)]
    scale = float(np.max(np.abs(finite))) if finite.size else 1.0
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * 1e-3 * scale + 1e-300,
                               equal_nan=False, err_msg=what)


def _case(key):
    return next(c for c in P.cases() if c[0] == key)


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


def check_numpy(key, variants, where):
    _, _, _, y, z = _case(key)
    value, dz = _numpy_reference(key, y, z)
    val, dx, _ = variants["float64"]
    close(val, value, 1e-12, f"{where}: value vs NumPy")
    close(dx, upstream(value.shape, 1)[..., None] * dz, 1e-12, f"{where}: gradient vs NumPy")


def check_hvp_at_zero_logits(key, variants, where):
    # BCE from logits: d2/dz2 of mean(softplus(z) - y z) is sigmoid'(z) / N = 0.25 / N at z = 0;
    # the HVP of sum(w * loss) in direction v is w * v * 0.25 / N there.
    _, _, _, y, x = _case(key)
    h = np.asarray(variants["float64"][2])
    w, v = upstream((x.shape[0],), 2), upstream(x.shape, 3)
    at0 = x == 0.0
    close(h[at0], (w[:, None] * v * 0.25 / x.shape[-1])[at0], 1e-12, f"{where}: HVP at z = 0")


def check_finite(key, variants, where):
    # The loss, its gradient and (where measured) the HVP are numbers at every logit up to 1e4.
    for dtype in ("float64", "float32"):
        for quantity, a in zip(("value", "gradient", "HVP"), variants[dtype]):
            assert a is None or np.all(np.isfinite(a)), f"{where} {dtype}: {quantity} {a}"


def check_ignored(key, variants, where):
    # The gradient is exactly 0 on every ignored entry, and the row all ignored has loss 0 (its
    # mask takes it out of the mean).
    _, _, kwargs, y, _ = _case(key)
    val, dx = (np.asarray(a) for a in variants["float64"][:2])
    ignored = y == kwargs["ignore_class"]
    assert np.all(dx[ignored] == 0.0) and np.all(dx[~ignored] != 0.0), where
    assert val[3] == 0.0 and np.all(dx[3] == 0.0), where


CHECKS = {  # grid case: checks of each backend's own numbers, beside the comparison
    "bce_logits": [check_numpy], "focal_logits_g2.0": [check_numpy], "cce_logits": [check_numpy],
    "stable_bce": [check_hvp_at_zero_logits, check_finite],
    **{key: [check_finite] for key, *_ in P.cases()
       if key.startswith("stable_") and key != "stable_bce"},
    **{key: [check_ignored] for key in ("bce_logits_ignore", "bce_probs_ignore_ls_pw",
                                        "focal_logits_ignore", "focal_probs_ignore_g0.5")},
}
NUMBER_CASES = ([f"grid:{key}" for key, *_ in P.cases()]
                + [f"class:{c}" for c, *_ in P.LOSS_CLASSES]
                + [f"normalized:{key}" for key, *_ in P.NORMALIZED_CASES]
                + [f"unchecked:{key}" for key, *_ in P.JIT_CASES]
                + [f"good:{key}" for key, *_ in P.JIT_CASES])


def rtol(case, variant, backend):
    if case.startswith("normalized:"):
        # Keras 3.15's own reduction (without `normalize`) returns float32 on PyTorch for a float64
        # loss (measured, with or without ignore_class); with `normalize` the reduction is ours.
        settings = next(c[2] for c in P.NORMALIZED_CASES if c[0] == case.split(":")[1])
        return 1e-6 if backend == "torch" and "normalize" not in settings else 1e-10
    return RTOL.get(variant, RTOL["float32"])  # the classes, unchecked and good samples: float32


def test_probes_ran_without_tensorflow(probed):
    assert {b: r["tensorflow_imported"] for b, r in probed.items()} == {
        b: b == "tensorflow" for b in probed}


@pytest.mark.parametrize("case", NUMBER_CASES)
def test_numbers_equal_on_every_backend(table, case):
    row = table[case]
    want = row["tensorflow"]
    for backend, variants in row.items():  # TensorFlow first: its own checks
        where = f"{backend} {case}"
        assert set(variants) == set(want), where
        if case.startswith("grid:") and backend != "jax":
            assert variants["float64"][2] is not None, where
        for check in CHECKS.get(case.removeprefix("grid:"), []):
            check(case.removeprefix("grid:"), variants, where)
        for variant, numbers in variants.items():
            if variant in ("float16", "bfloat16"):  # [value, gradient, their dtypes]
                assert numbers[2] == [variant, variant] == want[variant][2], where
                numbers, reference = numbers[:2], want[variant][:2]
            else:
                reference = want[variant]
            for quantity, got, ref in zip(("value", "gradient", "HVP"), numbers, reference):
                if got is None and (ref is None or backend == "jax" and quantity == "HVP"):
                    continue  # none in float32; a subset on JAX by default (the slow test: all)
                close(got, ref, rtol(case, variant, backend), f"{where}/{variant}: {quantity}")


ERROR_KEYS = ([k for k, *_ in P.BAD_INPUTS] + [k for k, *_ in P.CLASS_ERRORS]
              + [f"config_{c}" for c, *_ in P.LOSS_CLASSES]
              + [f"labels_{k}" for k, *_ in P.JIT_CASES])


@pytest.mark.parametrize("key", ERROR_KEYS)
def test_error_class_and_message_equal_on_every_backend(probed, key):
    # [class, an InvalidLabelsError, a ValueError, a TypeError, message] per backend.
    records = {backend: result["errors"][key] for backend, result in probed.items()}
    want = records["tensorflow"]
    assert want is not None, f"{key}: TensorFlow raised nothing"
    assert records == {backend: want for backend in records}
    if key in P.LABEL_ERRORS:
        assert want[:4] == [INVALID_LABELS, True, True, False], want
    else:
        assert not want[1] and want[0] != INVALID_LABELS, want


def test_logits_shortcut_on_tensorflow_and_torch_probabilities_as_given_on_jax(probed):
    own = {key: is_own for key, *_, is_own in P.SHORTCUT_CASES}
    own["FocalLoss_float16_sigmoid"] = True
    tf = probed["tensorflow"]["shortcut"]
    for key, is_own in own.items():
        # Keras's float16 sigmoid rounds differently on JAX (one float16 ulp at z = -3).
        p_rtol, rtol = (RTOL["float16"],) * 2 if "float16" in key else (1e-6, 1e-5)
        for backend, result in probed.items():
            p, loss, grad, plain, logits = result["shortcut"][key]
            where = f"{backend} {key}"
            close(p, tf[key][0], p_rtol, f"{where}: probabilities")
            close(plain, tf[key][3], rtol, f"{where}: loss of the probabilities as given")
            close(logits, tf[key][4], rtol, f"{where}: loss from the logits")
            carried = is_own and backend != "jax"
            close(loss, logits if carried else plain, 1e-5, f"{where}: loss")
            if carried or not is_own:  # the same path as TensorFlow's
                close(loss, tf[key][1], rtol, f"{where}: loss vs TensorFlow")
                if grad is not None:
                    close(grad, tf[key][2], rtol, f"{where}: gradient at the logits vs TensorFlow")


def test_bad_labels_under_jax_jit_give_nan_for_their_samples_only(probed):
    if "jax" not in probed:
        pytest.skip("JAX is not installed")
    for key, *_ in P.JIT_CASES:
        loss, grad = (np.asarray(a, np.float64) for a in probed["jax"]["jit"][key])
        assert np.isnan(loss[1]) and np.all(np.isnan(grad[1])), key
        good_loss, good_grad = probed["tensorflow"]["numbers"][f"good:{key}/float32"]
        close(loss[P.GOOD], good_loss, 1e-5, f"jit {key}: the good samples' loss")
        close(grad[P.GOOD], good_grad, 1e-5, f"jit {key}: their gradient")


@pytest.mark.slow
def test_every_hessian_vector_product_on_jax_equals_tensorflow(table):
    if "jax" not in table["grid:mse"]:
        pytest.skip("JAX is not installed")
    jax = probe_backends("_loss_probe.py", env={"AFL_PROBE_HVP": "all"}, backends=("jax",))["jax"]
    for key, *_ in P.cases():
        h = jax["numbers"][f"grid:{key}/float64"][2]
        close(h, table[f"grid:{key}"]["tensorflow"]["float64"][2], 1e-10, f"jax {key}: HVP")
