"""Relative accuracy of the cross-entropy family on both label sides, against mpmath at 50 digits.

The exact values are computed with mpmath from the very inputs the losses receive (the float32 or
float64 numbers), each side of the label in its own terms (softplus(z) = log1p(exp(z)), 1 - p as
sum(exp(z_i - z_j)) / (1 + sum(...)), never 1 - p), so the reference does not share the formulas
under test. Grid: logits z in +-{1e-3, 1, 5, 20, 40, 88, 100, 1e3, 1e4}, gamma in {0, 0.25, 0.5,
1, 2, 5}, hard labels 0 and 1 and a soft label, float32 and float64; both paths: the plain
TensorFlow ops (eager) and the XLA-compiled forward/backward kernels (graph mode, float32).

Bound, in units of eps (the dtype's machine epsilon, one ulp at 1): the loss is within
(4 + gamma) eps of the exact value, relative. The gradient is within (4 + gamma) eps of its
"scale", the sum of the magnitudes of its terms -- for hard labels, where the terms have one
sign, that is the gradient's own magnitude, so the bound is relative; for a soft label the
gradient passes through zero (near the loss's minimum), where no formula keeps relative
accuracy, and the bound is relative to the terms. Values below the smallest normal number (times
pos_weight) may be flushed to zero (TensorFlow on CPU flushes subnormals): there, |error| <=
that floor. (Measured: at most about 6 eps at gamma = 5, 3 eps at gamma <= 2.)

Before the per-side forms (issue 11, item 4), a confidently right positive (y = 1, z = 20 in
float32; z = 40 in float64) had loss and gradient 0 or off by 1e-3 relative, while the mirror
case (y = 0, z = -20) was exact; the softmax losses rounded a confidently right row's loss to 0.
"""

import functools

import mpmath as mp
import numpy as np
import pytest
import tensorflow as tf

import keras_afl
from keras_afl import _backend
from keras_afl._backend._tensorflow import _runner as LC

L = keras_afl.losses
DPS = 50
Z = sorted({s * v for v in (1e-3, 1.0, 5.0, 20.0, 40.0, 88.0, 100.0, 1e3, 1e4) for s in (1, -1)})
GAMMAS = (0.0, 0.25, 0.5, 1.0, 2.0, 5.0)
BINARY_LABELS = (0.0, 1.0, 0.25)
DTYPES = ("float32", "float64")
PATHS = ("plain", "compiled")
ROW_K = (1e-3, 1.0, 5.0, 20.0, 40.0, 88.0, 100.0, 1e3, 1e4)  # softmax rows (k, 0, -k)
ROW_LABELS = {"first": (1.0, 0.0, 0.0), "last": (0.0, 0.0, 1.0), "soft": (0.75, 0.25, 0.0)}


def _bound(gamma):
    return 4.0 + gamma


# --------------------------------------------------------------------------- references


def _sp(x):
    return mp.log1p(mp.exp(x))


@functools.lru_cache(maxsize=None)
def ref_binary(y, z, gamma, alpha, pos_weight=None):
    """(loss, gradient, gradient scale) of the binary focal loss (pos_weight None) or of BCE
    with pos_weight (gamma 0, alpha None), one element, from logits."""
    with mp.workdps(DPS):
        y, z = mp.mpf(y), mp.mpf(z)
        p, q = 1 / (1 + mp.exp(-z)), 1 / (1 + mp.exp(z))
        w = 1 if pos_weight is None else mp.mpf(pos_weight)
        m = y * q + (1 - y) * p  # 1 - p_t
        ce = w * y * _sp(-z) + (1 - y) * _sp(z)
        a_t = 1 if alpha is None else alpha * y + (1 - alpha) * (1 - y)
        t1 = gamma * m ** (gamma - 1) * (1 - 2 * y) * p * q * ce if gamma else mp.mpf(0)
        plus, minus = m ** gamma * (1 - y) * p, m ** gamma * w * y * q
        loss = a_t * m ** gamma * ce
        return float(loss), float(a_t * (t1 + plus - minus)), float(a_t * (abs(t1) + plus + minus))


@functools.lru_cache(maxsize=None)
def ref_softmax(y, z, gamma):
    """(loss, gradient row, gradient scale row) of the categorical focal loss (gamma 0: CCE)."""
    with mp.workdps(DPS):
        y, z = [mp.mpf(v) for v in y], [mp.mpf(v) for v in z]
        k = range(len(z))
        others = [sum(mp.exp(z[i] - z[j]) for i in k if i != j) for j in k]
        lp = [-mp.log1p(s) for s in others]
        p = [1 / (1 + s) for s in others]
        om = [s / (1 + s) for s in others]  # 1 - p
        loss = -sum(y[j] * om[j] ** gamma * lp[j] for j in k)
        h = [-lp[j] / om[j] for j in k]
        w = [y[j] * om[j] ** gamma * (1 + gamma * p[j] * h[j]) for j in k]
        # p_j sum(w) - w_j = p_j sum_{i != j} w_i - (1 - p_j) w_j
        rest = [sum(w[i] for i in k if i != j) for j in k]
        grad = [p[j] * rest[j] - om[j] * w[j] for j in k]
        scale = [p[j] * sum(abs(w[i]) for i in k if i != j) + om[j] * abs(w[j]) for j in k]
        return float(loss), [float(v) for v in grad], [float(v) for v in scale]


# --------------------------------------------------------------------------- running the losses


def _evaluate(fn, y, z, path):
    """Loss and d(sum loss)/dz of fn(y, z), eagerly (plain ops) or compiled (graph mode, the
    size rule lowered so that these small inputs take the XLA kernels; checked in the graph)."""

    def value_and_grad(y, z):
        with tf.GradientTape() as tape:
            tape.watch(z)
            loss = fn(y, z)
        return loss, tape.gradient(loss, z)

    if path == "plain":
        loss, grad = value_and_grad(y, z)
    else:
        step = tf.function(value_and_grad, autograph=False)
        graph = step.get_concrete_function(y, z).graph
        compiled = [op for op in graph.get_operations() if op.node_def.attr["_XlaMustCompile"].b]
        assert len(compiled) >= 2, "the compiled forward and backward kernels were not used"
        loss, grad = step(y, z)
    return loss.numpy().astype(np.float64), grad.numpy().astype(np.float64)


@pytest.fixture
def compiled_for_small_inputs(monkeypatch):
    monkeypatch.setitem(_backend._DEFAULTS, "compiled_kernels", True)
    monkeypatch.setattr(LC, "FUSE_MIN_ELEMENTS", 0)
    monkeypatch.setattr(LC, "FUSE_MIN_PER_SAMPLE", 0)


def _paths():
    return [(d, p) for d in DTYPES for p in PATHS if not (p == "compiled" and d == "float64")]


PATH_IDS = [f"{d}-{p}" for d, p in _paths()]


def _check(got, exact, scale, dtype, bound, what, weight=1.0):
    """|got - exact| <= bound * eps * scale; below weight x the smallest normal (a weight > 1
    scales up an intermediate that may have been flushed), <= that floor."""
    info = np.finfo(dtype)
    got, exact, scale = (np.asarray(v, np.float64) for v in (got, exact, scale))
    err = np.abs(got - exact)
    floor = weight * info.tiny
    normal = np.abs(exact) >= floor
    ok = np.where(normal, err <= bound * info.eps * np.maximum(scale, np.abs(exact)), err <= floor)
    bad = np.flatnonzero(~ok.ravel())
    if bad.size:
        i = bad[0]
        g, e, sc = got.ravel()[i], exact.ravel()[i], max(scale.ravel()[i], abs(exact.ravel()[i]))
        raise AssertionError(f"{what}: {bad.size} value(s) outside {bound} eps; first: got {g!r}, "
                             f"exact {e!r} (error {abs(g - e) / (info.eps * sc or 1):.3g} eps)")


def _binary_grid(dtype):
    """Every (label, logit) pair of the grid as [n, 1] tensors, and the rounded values."""
    pairs = [(y, z) for y in BINARY_LABELS for z in Z]
    y = np.array([[p[0]] for p in pairs], dtype)
    z = np.array([[p[1]] for p in pairs], dtype)
    return tf.constant(y), tf.constant(z), [(float(a), float(b)) for a, b in zip(y[:, 0], z[:, 0])]


# --------------------------------------------------------------------------- binary


@pytest.mark.parametrize("alpha", [None, 0.25], ids=["alpha_none", "alpha_0.25"])
@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("dtype, path", _paths(), ids=PATH_IDS)
def test_binary_focal_from_logits_matches_mpmath_grad(dtype, path, gamma, alpha, compiled_for_small_inputs):
    y, z, points = _binary_grid(dtype)
    loss, grad = _evaluate(lambda y, z: L.focal(y, z, gamma=gamma, alpha=alpha, from_logits=True),
                           y, z, path)
    refs = [ref_binary(a, b, gamma, alpha) for a, b in points]
    _check(loss, [r[0] for r in refs], [abs(r[0]) for r in refs], dtype, _bound(gamma), "loss")
    _check(grad[:, 0], [r[1] for r in refs], [r[2] for r in refs], dtype, _bound(gamma), "gradient")


@pytest.mark.parametrize("pos_weight", [None, 3.0], ids=["unweighted", "pos_weight_3"])
@pytest.mark.parametrize("dtype, path", _paths(), ids=PATH_IDS)
def test_bce_from_logits_matches_mpmath_grad(dtype, path, pos_weight, compiled_for_small_inputs):
    y, z, points = _binary_grid(dtype)
    loss, grad = _evaluate(
        lambda y, z: L.binary_crossentropy(y, z, from_logits=True, pos_weight=pos_weight), y, z, path)
    refs = [ref_binary(a, b, 0.0, None, pos_weight) for a, b in points]
    w = pos_weight or 1.0
    _check(loss, [r[0] for r in refs], [abs(r[0]) for r in refs], dtype, _bound(0.0), "loss", w)
    _check(grad[:, 0], [r[1] for r in refs], [r[2] for r in refs], dtype, _bound(0.0), "gradient", w)


def test_issue_example_confident_positive_keeps_its_digits():
    """The issue's example: FocalLoss(gamma=0.25, alpha=None) at y = 1, z = 20 in float32 was 0."""
    loss = L.FocalLoss(gamma=0.25, alpha=None, from_logits=True, reduction=None)([[1.0]], [[20.0]])
    exact = ref_binary(1.0, 20.0, 0.25, None)[0]  # 1.389e-11
    np.testing.assert_allclose(loss.numpy(), [exact], rtol=_bound(0.25) * np.finfo("float32").eps)


# (y, p) inside the clip range where 1 - p is exact in floating point (p >= 1/2), and the
# positive side at small p. (For y = 0 and p < 1/2 the loss carries the rounding of 1 - p,
# -log(fl(1 - p)), as Keras's formula does: a probability input's own limit, not tested here.)
P_POINTS = [(y, p) for y in (0.0, 1.0) for p in (0.7, 0.99, 1 - 2**-20, 1 - 1e-6)] + \
    [(1.0, p) for p in (1e-6, 0.01, 0.3)]


@functools.lru_cache(maxsize=None)
def ref_focal_probabilities(y, p, gamma):
    with mp.workdps(DPS):
        y, p = mp.mpf(y), mp.mpf(p)
        q = 1 - p  # exact: p is the float the loss receives
        m = y * q + (1 - y) * p
        ce = -(y * mp.log(p) + (1 - y) * mp.log(q))
        t1 = gamma * m ** (gamma - 1) * (1 - 2 * y) * ce if gamma else mp.mpf(0)
        plus, minus = m ** gamma * (1 - y) / q, m ** gamma * y / p
        return float(m ** gamma * ce), float(t1 + plus - minus), float(abs(t1) + plus + minus)


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_binary_focal_from_probabilities_matches_mpmath_grad(dtype, gamma):
    """Probabilities inside the clip range: CE = -(y log p + (1 - y) log(1 - p)), per side (the
    form -(log q + y (log p - log q)) lost every digit of -log p at y = 1, p ~ 1)."""
    y = np.array([[a] for a, _ in P_POINTS], dtype)
    p = np.array([[b] for _, b in P_POINTS], dtype)
    loss, grad = _evaluate(lambda y, p: L.focal(y, p, gamma=gamma, alpha=None), tf.constant(y),
                           tf.constant(p), "plain")
    refs = [ref_focal_probabilities(float(a), float(b), gamma) for a, b in zip(y[:, 0], p[:, 0])]
    _check(loss, [r[0] for r in refs], [abs(r[0]) for r in refs], dtype, _bound(gamma), "loss")
    _check(grad[:, 0], [r[1] for r in refs], [r[2] for r in refs], dtype, _bound(gamma), "gradient")


# --------------------------------------------------------------------------- softmax family


def _rows(dtype, labels):
    z = np.array([[k, 0.0, -k] for k in ROW_K], dtype)
    y = np.array([labels] * len(ROW_K), dtype)
    return y, z


SOFTMAX_LOSSES = {
    # name: (function of (y one-hot/soft, z, gamma), label sets, gammas)
    "categorical_crossentropy": (lambda y, z, g: L.categorical_crossentropy(y, z, from_logits=True),
                                 ("first", "last", "soft"), (0.0,)),
    "categorical_focal": (lambda y, z, g: L.categorical_focal(y, z, gamma=g, from_logits=True),
                          ("first", "last", "soft"), GAMMAS),
    "sparse_categorical_crossentropy": (
        lambda y, z, g: L.sparse_categorical_crossentropy(tf.argmax(y, -1), z, from_logits=True),
        ("first", "last"), (0.0,)),
    "sparse_categorical_focal": (
        lambda y, z, g: L.sparse_categorical_focal(tf.argmax(y, -1), z, gamma=g, from_logits=True),
        ("first", "last"), GAMMAS),
}
SOFTMAX_CASES = [(n, lab, g) for n, (_, labels, gammas) in SOFTMAX_LOSSES.items()
                 for lab in labels for g in gammas]


@pytest.mark.parametrize("name, labels, gamma", SOFTMAX_CASES,
                         ids=[f"{n}-{lab}-gamma{g}" for n, lab, g in SOFTMAX_CASES])
@pytest.mark.parametrize("dtype, path", _paths(), ids=PATH_IDS)
def test_softmax_losses_match_mpmath_grad(dtype, path, name, labels, gamma, compiled_for_small_inputs):
    """Rows (k, 0, -k): with the true class first, a confidently right row (loss ~ exp(-k),
    which TF's fused kernels round to 0); last, a confidently wrong one; and a soft label."""
    fn = SOFTMAX_LOSSES[name][0]
    y, z = _rows(dtype, ROW_LABELS[labels])
    loss, grad = _evaluate(lambda y, z: fn(y, z, gamma), tf.constant(y), tf.constant(z), path)
    refs = [ref_softmax(tuple(map(float, yr)), tuple(map(float, zr)), gamma) for yr, zr in zip(y, z)]
    _check(loss, [r[0] for r in refs], [abs(r[0]) for r in refs], dtype, _bound(gamma), "loss")
    _check(grad, [r[1] for r in refs], [r[2] for r in refs], dtype, _bound(gamma), "gradient")


def test_categorical_crossentropy_of_a_confident_row_is_not_rounded_to_zero():
    """The issue's categorical case in float32: logits (30, 0, -30), true class 0: the loss is
    log1p(exp(-30) + exp(-60)) ~ 9.36e-14 (TensorFlow's fused kernel, and Keras, give 0)."""
    z, y = tf.constant([[30.0, 0.0, -30.0]]), tf.constant([[1.0, 0.0, 0.0]])
    exact = ref_softmax((1.0, 0.0, 0.0), (30.0, 0.0, -30.0), 0.0)[0]
    got = L.CategoricalCrossentropy(from_logits=True, reduction=None)(y, z)
    np.testing.assert_allclose(got.numpy(), [exact], rtol=_bound(0.0) * np.finfo("float32").eps)
