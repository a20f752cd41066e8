"""`keras-afl check [NAME...] [--dtype ...]`: gradient checks on the user's own machine.

For every function and dtype, at random points kept away from kinks:

* the analytic gradient -- the function's custom gradient, computed in the
  dtype on the Keras backend's default device (the GPU, if one is visible) --
  as a vector-Jacobian product with a random upstream gradient;
* against central differences of the same function in float64 (step 1e-6,
  one element at a time, as `tf.test.compute_gradient`) at the same
  (dtype-rounded) points;
* against autodiff of a plain reference formula in float64 (the activation
  cases and `LOSS_REFERENCES` below: written with `keras.ops`, independently
  of keras_afl, and differentiated by the backend's own autodiff);
* and whether values and gradients stay finite at extreme inputs in the dtype.

It runs on the Keras backend of the process (TensorFlow, JAX or PyTorch:
`keras-afl --backend jax check`); differentiation is `keras_afl.cli._autodiff`'s
(`tf.GradientTape`, `jax.vjp`, `torch.autograd`). On JAX, float64 needs
`jax_enable_x64`, which the command switches on for its process.

The error is max |analytic - reference| / (1 + |reference|), element-wise; the
tolerances are per dtype (`TOLERANCES`). Exit code 1 if any check fails.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np

from keras_afl.cli import _autodiff as AD
from keras_afl.cli.common import CLIError, format_table

LAM, ALF = 1.0507009873554805, 1.6732632423543772

# dtype -> (tolerance vs central differences, tolerance vs autodiff of the plain formula)
TOLERANCES = {
    "float64": (1e-6, 1e-10),   # central differences with step 1e-6: ~1e-10 typical
    "float32": (1e-5, 1e-5),    # ~100 float32 ulps (eps 1.2e-7)
    "float16": (5e-3, 5e-3),    # ~5 float16 ulps (eps 9.8e-4)
    "bfloat16": (4e-2, 4e-2),   # ~5 bfloat16 ulps (eps 7.8e-3)
}


@dataclasses.dataclass
class Case:
    """One function to check.

    `fn(const, *inputs)` is keras_afl's function, `ref(const, *inputs)` the plain
    formula; `inputs` are differentiated, `const` (labels) is not.
    `sample(rng)` gives (const, inputs) in float64 away from kinks;
    `extremes(dtype)` gives a list of (const, inputs) whose values and
    gradients must stay finite.
    """

    name: str
    fn: object
    ref: object
    sample: object
    extremes: object


# --------------------------------------------------------------------------- references

def _ops():
    from keras import ops

    return ops


def _away(x, points, margin=0.05):
    """Moves entries of `x` within `margin` of any kink in `points` by 2 * margin."""
    for p in points:
        x = np.where(np.abs(x - p) < margin, x + 2 * margin, x)
    return x


def _act_sample(shape=(4, 5), kinks=(0.0,)):
    def sample(rng):
        return None, [_away(rng.uniform(-4, 4, size=shape), kinks)]
    return sample


def _act_extremes(dtype):
    big = [1e4, 100.0, 20.0]
    return [(None, [np.array([[-b for b in big] + [0.0] + big] * 2)])]


def _activation_cases():
    from keras_afl import activations as A

    ops = _ops()
    relu_ref = lambda c, x: ops.where(x > 0, x, 0 * x)  # noqa: E731
    exp_neg = lambda x: ops.exp(ops.where(x < 0, x, 0 * x)) - 1  # noqa: E731
    alpha = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    return {
        "afl_relu": Case("afl_relu", lambda c, x: A.relu(x), relu_ref, _act_sample(),
                         _act_extremes),
        "afl_leaky_relu": Case(
            "afl_leaky_relu", lambda c, x: A.leaky_relu(x, negative_slope=0.2),
            lambda c, x: ops.where(x > 0, x, 0.2 * x), _act_sample(), _act_extremes),
        "afl_sigmoid": Case("afl_sigmoid", lambda c, x: A.sigmoid(x),
                            lambda c, x: 1 / (1 + ops.exp(-x)), _act_sample(kinks=()), _act_extremes),
        "afl_tanh": Case("afl_tanh", lambda c, x: A.tanh(x),
                         lambda c, x: (ops.exp(x) - ops.exp(-x)) / (ops.exp(x) + ops.exp(-x)),
                         _act_sample(kinks=()), _act_extremes),
        "afl_softmax": Case("afl_softmax", lambda c, x: A.softmax(x),
                            lambda c, x: ops.exp(x) / ops.sum(ops.exp(x), -1, keepdims=True),
                            _act_sample(kinks=()), _act_extremes),
        "afl_elu": Case("afl_elu", lambda c, x: A.elu(x),
                        lambda c, x: ops.where(x > 0, x, exp_neg(x)), _act_sample(),
                        _act_extremes),
        "afl_selu": Case("afl_selu", lambda c, x: A.selu(x),
                         lambda c, x: LAM * ops.where(x > 0, x, ALF * exp_neg(x)), _act_sample(),
                         _act_extremes),
        "prelu": Case(
            "prelu", lambda c, x, a: A.prelu(x, a), lambda c, x, a: ops.where(x > 0, x, a * x),
            lambda rng: (None, [_away(rng.uniform(-4, 4, size=(4, 5)), (0.0,)), alpha]),
            lambda dtype: [(None, [_act_extremes(dtype)[0][1][0][:, :5], alpha])]),
    }


# Plain per-sample loss formulas (mean over the last axis, as Keras's losses), written
# from the definitions, independently of keras_afl.losses. y: labels, p: predictions.
# Written with keras.ops, avoiding the ops that lose float64 in Keras 3.15 (on PyTorch
# ops.maximum / ops.minimum return float32 for float64 inputs, and ops.mean computes in
# float32 on PyTorch and JAX): a mean is a sum over the count, a max a where.

def _mean(x):
    return _ops().sum(x, axis=-1) / x.shape[-1]


def _bce(y, p):
    ops = _ops()
    return -_mean(y * ops.log(p) + (1 - y) * ops.log(1 - p))


def _binary_focal(y, p, gamma=2.0, alpha=0.25):
    ops = _ops()
    p_t = y * p + (1 - y) * (1 - p)
    a_t = y * alpha + (1 - y) * (1 - alpha)
    return _mean(-a_t * (1 - p_t) ** gamma * ops.log(p_t))


def _cce(y, p):
    ops = _ops()
    return -ops.sum(y * ops.log(p), axis=-1)


def _categorical_focal(y, p, gamma=2.0, alpha=1.0):
    ops = _ops()
    return -ops.sum(alpha * (1 - p) ** gamma * y * ops.log(p), axis=-1)


def _huber(y, p, delta=1.0):
    ops = _ops()
    e = ops.abs(p - y)
    return _mean(ops.where(e <= delta, 0.5 * e**2, delta * (e - 0.5 * delta)))


def _hinge(y, s):
    ops = _ops()
    t = 2 * y - 1  # labels {0, 1} -> {-1, 1}
    return _mean(ops.where(1 - t * s > 0, 1 - t * s, 0 * s))


def _mse(y, p):
    return _mean((p - y) ** 2)


def _onehot(y, n):
    ops = _ops()
    return ops.one_hot(ops.cast(y, "int32"), n, dtype="float64")


# loss name -> (constructor settings, plain formula ref(y_true, y_pred)); what the loss is
# fed (`_input_kind`) comes from the registry's family and `expects()`.
LOSS_REFERENCES = {
    "afl_mse": ({}, _mse),
    "afl_huber": ({}, _huber),
    "afl_bce": ({}, _bce),
    "focal": ({}, _binary_focal),
    "afl_hinge": ({}, _hinge),
    "afl_cce": ({}, _cce),
    "categorical_focal": ({}, _categorical_focal),
    "afl_sparse_categorical_crossentropy": ({}, _cce),
    "sparse_categorical_focal": ({}, _categorical_focal),
}
# extra settings checked under their own row names
LOSS_VARIANTS = {
    "focal(from_logits)": ("focal", {"from_logits": True},
                           lambda y, z: _binary_focal(y, _ops().sigmoid(z))),
    "focal(gamma=0.5)": ("focal", {"gamma": 0.5}, lambda y, p: _binary_focal(y, p, gamma=0.5)),
    "afl_bce(from_logits)": ("afl_bce", {"from_logits": True},
                             lambda y, z: _bce(y, _ops().sigmoid(z))),
    "afl_huber(delta=0.5)": ("afl_huber", {"delta": 0.5}, lambda y, p: _huber(y, p, delta=0.5)),
}


def _input_kind(entry, settings):
    """What a loss with `settings` is checked on, from the registry: "error" (regression:
    y_pred = y_true + error), "prob" / "logit" / "score" (binary: a probability, a logit, a
    hinge score), "softmax" / "sparse_softmax" (categorical / sparse: differentiated w.r.t.
    logits through keras.ops.softmax, one-hot or integer labels)."""
    reads = entry.expects(from_logits=bool(settings.get("from_logits")))
    if entry.family == "regression":
        return "error"
    if entry.family in ("categorical", "sparse") and reads == "probabilities":
        return "softmax" if entry.family == "categorical" else "sparse_softmax"
    if entry.family == "binary" and reads in ("probabilities", "logits", "scores"):
        return {"probabilities": "prob", "logits": "logit", "scores": "score"}[reads]
    raise ValueError(f"keras-afl check has no inputs for a {entry.family} loss of {reads} "
                     f"({entry.name} with {settings})")


_CLASSES = 4


def _loss_case(name, entry, settings, ref):
    ops = _ops()
    loss = entry.obj(**settings)
    kind = _input_kind(entry, settings)
    n = 6

    def our(c, x):
        if kind in ("softmax", "sparse_softmax"):
            x = ops.softmax(x)
        return loss.call(c, x)

    def plain(c, x):
        y = c
        if kind == "sparse_softmax":
            y = ops.cast(_onehot(c, _CLASSES), x.dtype)
        if kind in ("softmax", "sparse_softmax"):
            x = ops.softmax(x)
        return ref(y, x)

    def sample(rng):
        if kind in ("softmax", "sparse_softmax"):
            labels = rng.integers(0, _CLASSES, size=n)
            c = labels if kind == "sparse_softmax" else np.eye(_CLASSES)[labels]
            return c, [rng.uniform(-3, 3, size=(n, _CLASSES))]
        if kind == "error":
            y = rng.normal(size=(n, 1))
            e = _away(rng.uniform(-3, 3, size=(n, 1)), (-1, -0.5, 0.5, 1, 0))
            return y, [y + e]
        y = rng.integers(0, 2, size=(n, 1)).astype(np.float64)
        if kind == "prob":
            return y, [rng.uniform(0.05, 0.95, size=(n, 1))]
        if kind == "logit":
            return y, [rng.uniform(-4, 4, size=(n, 1))]
        s = rng.uniform(-3, 3, size=(n, 1))  # hinge: kink where t * s = 1
        return y, [_away(s, (1.0, -1.0))]

    def extremes(dtype):
        # Extreme, yet with a true gradient the dtype can hold: in float16 (largest
        # value 65504) 1/p overflows for p < 1.5e-5, and a softmax of logits +-10
        # underflows, so float16 gets milder extremes.
        half = dtype == "float16"
        big = 100.0 if half else 1e4
        if kind in ("softmax", "sparse_softmax"):
            s = 4.0 if half else big
            z = np.array([[s, -s, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [-s, s, 1.0, 2.0]])
            labels = np.array([0, 0, 0])
            return [(labels if kind == "sparse_softmax" else np.eye(_CLASSES)[labels], [z])]
        if kind == "error":
            return [(np.zeros((4, 1)), [np.array([[-big], [0.0], [1e-3], [big]])])]
        if kind == "prob":
            edge = [1e-3, 0.5, 0.999] if half else [0.0, 1e-7, 0.5, 1 - 1e-7, 1.0]
        else:
            edge = [-big, -20.0, 0.0, 20.0, big]
        p = np.array([[v] for v in edge] * 2)
        y = np.array([[1.0]] * len(edge) + [[0.0]] * len(edge))
        return [(y, [p])]

    return Case(name, our, plain, sample, extremes)


def _loss_cases():
    import keras_afl

    out = {}
    for e in keras_afl.entries("loss"):
        if e.name in LOSS_REFERENCES:
            settings, ref = LOSS_REFERENCES[e.name]
            out[e.name] = _loss_case(e.name, e, settings, ref)
        else:
            out[e.name] = None  # reported as "no reference formula" (a failure)
    for label, (base, settings, ref) in LOSS_VARIANTS.items():
        if base in out and out[base] is not None:
            out[label] = _loss_case(label, keras_afl.entry(base), settings, ref)
    return out


def all_cases():
    """{name: Case or None} for every registered activation and loss (and prelu)."""
    return {**_activation_cases(), **_loss_cases()}


# --------------------------------------------------------------------------- checking

def _err(a, ref):
    a = np.asarray(a, np.float64)
    ref = np.asarray(ref, np.float64)
    if a.shape != ref.shape:
        return math.inf
    return float(np.max(np.abs(a - ref) / (1 + np.abs(ref)))) if a.size else 0.0


def check_case(case, dtype, seed=0):
    """{"numeric", "autodiff", "finite", "ok", "note"} for one case in one dtype."""
    rng = np.random.default_rng(seed)
    const64, inputs64 = case.sample(rng)
    const_d = AD.tensor(const64, dtype)
    inputs_d = [AD.tensor(v, dtype) for v in inputs64]
    # the same points, rounded to the dtype, in float64
    rounded = [AD.to_numpy(v) for v in inputs_d]
    inputs_r = [AD.tensor(v) for v in rounded]
    const_r = AD.tensor(const64)

    y_d = case.fn(const_d, *inputs_d)
    upstream = rng.normal(size=tuple(y_d.shape))
    _, analytic = AD.vjp(case.fn, inputs_d, upstream, args=(const_d,))
    _, plain = AD.vjp(case.ref, inputs_r, upstream, args=(const_r,))
    numeric = AD.central_differences(case.fn, rounded, upstream, args=(const_r,))

    err_num = max(_err(a, n) for a, n in zip(analytic, numeric))
    err_auto = max(_err(a, p) for a, p in zip(analytic, plain))

    finite = True
    for c, xs in case.extremes(dtype):
        c_d = AD.tensor(c, dtype)
        xs_d = [AD.tensor(v, dtype) for v in xs]
        y, gs = AD.vjp(case.fn, xs_d, args=(c_d,))
        finite &= bool(np.all(np.isfinite(AD.to_numpy(y))))
        finite &= all(g is not None and bool(np.all(np.isfinite(g))) for g in gs)

    tol_num, tol_auto = TOLERANCES[dtype]
    ok = err_num <= tol_num and err_auto <= tol_auto and finite
    return {"numeric": err_num, "autodiff": err_auto, "finite": finite, "ok": ok,
            "tol_numeric": tol_num, "tol_autodiff": tol_auto}


def select(names):
    """The cases for NAMEs (canonical names, aliases or check row names); all if empty."""
    import keras_afl

    cases = all_cases()
    if not names:
        return cases
    out = {}
    for n in names:
        if n in cases:
            canonical = n
        else:
            try:
                canonical = keras_afl.entry(n).name
            except ValueError as e:
                extra = ", ".join(k for k in cases if k not in keras_afl.names())
                raise CLIError(f"{e} Also checkable: {extra}.") from None
        out[canonical] = cases.get(canonical)
        out.update({k: v for k, v in cases.items() if k.startswith(canonical + "(")})
    return out


def run(names, *, dtypes, seed=0):
    import keras_afl  # noqa: F401

    AD.enable_float64()  # the references are float64 whatever the dtypes checked
    cases = select(names)
    print(f"keras-afl check: {len(cases)} function(s) x {', '.join(dtypes)} on {AD.device()}")
    rows, failures = [], []
    t0 = time.perf_counter()
    for name, case in cases.items():
        for dtype in dtypes:
            if case is None:
                rows.append((name, dtype, None, None, None, None, "-", "FAIL: no reference"))
                failures.append(f"{name}: no plain reference formula in keras_afl/cli/check.py")
                continue
            try:
                r = check_case(case, dtype, seed)
            except Exception as e:  # a crash in a function under test is a failure, reported
                rows.append((name, dtype, None, None, None, None, "-", "FAIL: error"))
                failures.append(f"{name} [{dtype}]: {type(e).__name__}: {e}")
                continue
            status = "ok" if r["ok"] else "FAIL"
            rows.append((name, dtype, r["numeric"], f"{r['tol_numeric']:.0e}", r["autodiff"],
                         f"{r['tol_autodiff']:.0e}", "yes" if r["finite"] else "NO", status))
            if not r["ok"]:
                failures.append(f"{name} [{dtype}]: numeric {r['numeric']:.2e}, autodiff "
                                f"{r['autodiff']:.2e}, finite at extremes: {r['finite']}")
    print(format_table(("function", "dtype", "vs numeric", "tol", "vs autodiff", "tol",
                        "finite", "result"), rows, floatfmt="{:.1e}"))
    print("\nerror = max |analytic - reference| / (1 + |reference|); numeric = central differences "
          "in float64,\nautodiff = the backend's gradient of a plain formula in float64; finite = "
          "values and gradients\nat extreme inputs. "
          f"{len(rows) - len(failures)}/{len(rows)} passed in {time.perf_counter() - t0:.1f} s.")
    if failures:
        print("\nFAILED:\n  " + "\n  ".join(failures))
        return 1
    return 0
