"""keras_afl's activations on TensorFlow, JAX and PyTorch in one table: values, gradients for an
upstream gradient that is not all ones and Hessian-vector products in float64, each backend
measured in a fresh process by tests/_backend_probe.py (JAX twice: eagerly and inside jax.jit).

One test per function checks every backend's numbers at every point: equal to TensorFlow's to
1e-10 relative, tails included (the derivatives are the native kernels' formulas from the saved
output on every backend: y (1 - y), 1 - y^2, y + alpha); equal to NumPy's exact value everywhere;
the derivative equal to NumPy's exact one where the native formula is accurate (|x| < 30), and to
that formula evaluated on the backend's own output everywhere. Where a backend's own kernel gives
another number, `NATIVE_DIFFERENCES` names the point, the backends and why.
"""

import numpy as np
import pytest

from tests._backend_probe import ACTIVATIONS, ALPHA, X, upstream
from tests._checks import probe_backends

LAMBDA, SELU_ALPHA = 1.0507009873554805, 1.6732632423543772
EPS = np.finfo(np.float64).eps
TAIL = np.abs(X) >= 30.0  # where the native formulas round (1 - y, y + alpha: few significant bits)
G, V = upstream(X.shape, 1), upstream(X.shape, 3)  # the probe's upstream gradient and direction
QUANTITIES = ("value", "gradient", "hvp")

# Where a backend's own kernel gives another number than the others (float64, at the probe's X):
# (case, quantity, x) -> (backends, why, their number). Their number is ROUNDS where it differs by
# the rounding of the formula (compared to 8 ulp of the case's magnitude, `round_atol`), else the
# number the kernel gives there (checked exactly; their number is then not the others' reference).
ROUNDS = "rounds"
_SIGMOID_30 = ("sigmoid(30) = 1 - 842.86 ulp: TensorFlow's Sigmoid kernel rounds it to 843 ulp "
               "below 1 (correctly), XLA's logistic and ATen's sigmoid to 842; y (1 - y) carries "
               "the 1/843 (1.2e-3 relative, 2e-16 absolute)")
_EXP_MINUS_1 = ("TensorFlow's Elu/Selu kernels compute exp(x) - 1: 0 for -x below 1.1e-16 in "
                "float64 (expm1 on JAX and PyTorch: alpha x)")
_BRANCH_ON_Y = ("TensorFlow's EluGrad/SeluGrad (and their gradients) branch on y < 0; y = 0 there "
                "(exp(x) - 1, above), so they take the x > 0 side")
_TAIL_HVP = ("the second derivative at x = -30 (1e-13) is formed from the output on one backend "
             "(y + alpha, y near -alpha: TensorFlow's EluGrad/SeluGrad), as alpha (expm1(x) + 1) "
             "(the derivative of JAX's expm1) or as alpha exp(x) from x (ATen's elu double "
             "backward) on another: 1e-16 apart, up to 1e-3 of the number")
_TAIL_GRAD = ("the derivative at x = -30 (1e-13) as each backend's native kernel forms it: "
              "y + alpha from the output (TensorFlow's EluGrad, and alpha times elu's output for "
              "alpha != 1), alpha (expm1(x) + 1) (the derivative of jax.nn.elu's expm1) or "
              "alpha exp(x) from x (ATen's elu_backward, as F.elu calls it): 1e-17 apart")
NATIVE_DIFFERENCES = {
    ("elu", "gradient", -30.0): (("torch",), _TAIL_GRAD, ROUNDS),
    ("elu_0.7", "gradient", -30.0): (("jax", "torch"), _TAIL_GRAD, ROUNDS),
    ("selu", "gradient", -30.0): (("jax", "torch"), _TAIL_GRAD, ROUNDS),
    ("elu", "hvp", -30.0): (("torch",), _TAIL_HVP, ROUNDS),
    ("sigmoid", "gradient", 30.0): (("jax", "torch"), _SIGMOID_30, ROUNDS),
    ("sigmoid", "hvp", 30.0): (("jax", "torch"), _SIGMOID_30, ROUNDS),
    ("elu", "value", -1e-30): (("tensorflow",), _EXP_MINUS_1, ROUNDS),
    ("elu_0.7", "value", -1e-30): (("tensorflow",), _EXP_MINUS_1, ROUNDS),
    ("selu", "value", -1e-30): (("tensorflow",), _EXP_MINUS_1, ROUNDS),
    ("elu", "hvp", -1e-30): (("tensorflow",), _BRANCH_ON_Y + ": second derivative 0", 0.0),
    ("selu", "gradient", -1e-30): (("tensorflow",), _BRANCH_ON_Y + ": lambda, not lambda alpha",
                                   LAMBDA * G[X == -1e-30][0]),
    ("selu", "hvp", -1e-30): (("tensorflow",), _BRANCH_ON_Y + ": second derivative 0", 0.0),
    ("elu_0.7", "hvp", -30.0): (("torch",), _TAIL_HVP, ROUNDS),
    ("selu", "hvp", -30.0): (("jax", "torch"), _TAIL_HVP, ROUNDS),
}


def exact(case, x):
    """(f, f', f'') of an elementwise case in float64 by hand, without cancellation (kinks:
    TensorFlow's rule: relu'(0) = 0, leaky/prelu'(0) = slope, elu'(0) = 1, selu'(0) = lambda)."""
    e = np.exp(-np.abs(x))
    neg = np.exp(np.minimum(x, 0.0))
    em1 = np.expm1(np.minimum(x, 0.0))
    s = np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    ds, dt = e / (1.0 + e) ** 2, 4.0 * e**2 / (1.0 + e**2) ** 2
    zero = np.zeros_like(x)

    def elu(alpha, scale):
        return (scale * np.where(x > 0, x, alpha * em1), scale * np.where(x >= 0, 1.0, alpha * neg),
                scale * np.where(x < 0, alpha * neg, 0.0))

    def slope(a):
        return np.where(x > 0, x, a * x), np.where(x > 0, 1.0, a), zero

    return {
        "relu": (np.maximum(x, 0.0), (x > 0) * 1.0, zero),
        "leaky_relu": slope(0.1), "prelu": slope(ALPHA[0]),
        "sigmoid": (s, ds, ds * (1.0 - 2.0 * s)),
        "tanh": (np.tanh(x), dt, -2.0 * np.tanh(x) * dt),
        "elu": elu(1.0, 1.0), "elu_0.7": elu(0.7, 1.0), "elu_0": elu(0.0, 1.0),
        "selu": elu(SELU_ALPHA, LAMBDA),
    }[case]


def reference(case):
    """{quantity: NumPy's exact numbers} at the probe's points, NaN where there is none (the
    derivatives in the tails; a softmax's HVP)."""
    x = ACTIVATIONS[case][1]
    g, v = upstream(x.shape, 1), upstream(x.shape, 3)
    if case.startswith("softmax"):
        axis = -1 if case == "softmax" else 0
        s = np.exp(x - x.max(axis, keepdims=True))
        s /= s.sum(axis, keepdims=True)
        return {"value": s, "gradient": s * (g - np.sum(g * s, axis, keepdims=True)),
                "hvp": np.full(x.shape, np.nan)}
    if case == "prelu_slope":  # f = prelu(X, a): d/da = min(X, 0), second derivative 0
        f, m = np.where(X > 0, X, x[0] * X), np.minimum(X, 0.0)
        g = upstream(X.shape, 1)
        return {"value": f, "gradient": [np.sum(g * m)], "hvp": v * np.sum(-np.sin(f) * m * m)}
    f, d1, d2 = exact(case, x)
    hvp = v * (np.cos(f) * d2 - np.sin(f) * d1**2)  # of sum(sin(f(x))), direction v
    return {"value": f, "gradient": np.where(TAIL, np.nan, g * d1),
            "hvp": np.where(TAIL, np.nan, hvp)}


def native_gradient(case, y, backend):
    """The gradient as `backend`'s kernels compute it, from the output y (every point). SELU's
    lambda alpha: TensorFlow's SeluGrad has it as a constant, ATen's elu_backward and the JAX
    kernel multiply lambda by alpha (one ulp less: 1.2e-3 of y + lambda alpha at x = -30)."""
    lambda_alpha = 1.7580993408473768 if backend == "tensorflow" else LAMBDA * SELU_ALPHA
    formula = {"sigmoid": lambda: y * (1.0 - y), "tanh": lambda: 1.0 - y * y,
               "elu": lambda: np.where(X >= 0, 1.0, y + 1.0),
               "elu_0.7": lambda: np.where(X >= 0, 1.0, y + 0.7),
               "elu_0": lambda: np.where(X >= 0, 1.0, y),
               "selu": lambda: np.where(X >= 0, LAMBDA, y + lambda_alpha)}.get(case)
    return None if formula is None else G * formula()


def round_atol(case):
    """8 ulp of the case's magnitude (its largest value, times the largest upstream weight)."""
    x = ACTIVATIONS[case][1]
    scale = np.max(np.abs(reference(case)["value"])) * max(np.max(np.abs(upstream(x.shape, s)))
                                                            for s in (1, 3))
    return 8 * EPS * scale


def compare(case, quantity, column, got, want, against):
    """`column`'s numbers against `want` (NumPy's, or the backend `against`'s) at every point,
    to 1e-10 relative, but for `NATIVE_DIFFERENCES` (NaN in `want`: no reference there)."""
    got, want = np.asarray(got, np.float64), np.array(want, np.float64)
    atol = np.full(got.shape, 1e-300)
    keep = ~np.isnan(want)
    mine = column.split(".")[0]  # "jax.jit" is JAX's
    for (c, q, x), (backends, _, number) in NATIVE_DIFFERENCES.items():
        if (c, q) != (case, quantity):
            continue
        at = X == x
        if number is ROUNDS and (mine in backends or against in backends):
            atol[at] = round_atol(case)
        elif number is not ROUNDS and mine in backends:
            want[at], keep[at] = number, True
        elif number is not ROUNDS and against in backends:
            keep[at] = False
    bad = keep & ~(np.abs(got - want) <= atol + 1e-10 * np.abs(want))
    at = X[bad] if got.shape == X.shape else np.argwhere(bad).tolist()
    assert not bad.any(), (f"{column} {case} {quantity} vs {against} at x = {at}: "
                           f"{got[bad].tolist()} != {want[bad].tolist()}")


@pytest.fixture(scope="module")
def probed(tmp_path_factory):
    return probe_backends("_backend_probe.py", tmp_path_factory)


@pytest.fixture(scope="module")
def table(probed):
    """{case: {column: (value, gradient, HVP)}}, a column per backend ("jax.jit": JAX's numbers
    inside jax.jit)."""
    if set(probed) == {"tensorflow"}:
        pytest.skip("neither JAX nor PyTorch is installed (pip install 'keras-afl[jax]')")
    out = {case: {} for case in ACTIVATIONS}
    for backend, result in probed.items():
        for key, numbers in result["cases"].items():
            case, column = (key[4:], "jax.jit") if key.startswith("jit:") else (key, backend)
            out[case][column] = [np.asarray(a, np.float64) for a in numbers]
    return out


def test_probes_import_keras_afl_without_tensorflow(probed):
    assert {b: r["tensorflow_imported"] for b, r in probed.items()} == {
        b: b == "tensorflow" for b in probed}


@pytest.mark.parametrize("case", list(ACTIVATIONS))
def test_values_gradients_and_hvp_equal_on_every_backend(table, case):
    row = table[case]
    want = reference(case)
    for column, numbers in row.items():
        for quantity, got, tf_number in zip(QUANTITIES, numbers, row["tensorflow"]):
            compare(case, quantity, column, got, want[quantity], "numpy")
            compare(case, quantity, column, got, tf_number, "tensorflow")
        native = native_gradient(case, numbers[0], column.split(".")[0])
        if native is not None:  # the native formula from the backend's own output, tails included
            compare(case, "gradient", column, numbers[1], native, "numpy")


def test_every_native_difference_is_still_there(table):
    """An entry of NATIVE_DIFFERENCES is a difference the backends show: one that has gone (a
    kernel changed) is taken out of the table."""
    for (case, quantity, x), (backends, _, _) in NATIVE_DIFFERENCES.items():
        at, q = X == x, QUANTITIES.index(quantity)
        numbers = {column.split(".")[0]: row[q][at][0] for column, row in table[case].items()}
        listed = {numbers[b] for b in backends if b in numbers}
        others = {n for b, n in numbers.items() if b not in backends}
        if listed and others:
            same = [np.isclose(a, b, rtol=1e-10, atol=1e-300) for a in listed for b in others]
            assert not any(same), (case, quantity, x, numbers)
