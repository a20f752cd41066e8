"""The losses' plain/compiled switch at each measured crossover (keras_afl/losses/_crossover.py).

On each side of a loss's crossover (the fewest elements that take the compiled path, per mode)
the path taken is the one the table names, and it gives the values and gradients of the other
path on the same inputs -- and of Keras's loss, computed in the same test (an independent
reference). Sizes are y_pred's elements: the crossover itself (compiled) and one row of 16
fewer (plain).
"""

import functools
import json
import math
import os

import numpy as np
import pytest
import keras
import tensorflow as tf

from keras_afl import losses as L
from keras_afl import registry
from keras_afl.bench import cases, sweep
from keras_afl import _backend
from keras_afl._backend._tensorflow import _runner as LC
from keras_afl._backend._tensorflow import _crossover as X
from tests import _program_size as P

# The committed same-run A/B the XLA column is read from (`keras-afl bench --suites sweep
# --modes xla`, its results.json; benchmarks/tensorflow_speed/README.md has the command).
AB_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks",
                       "tensorflow_speed", "crossover_sweep.json")

SWITCHES = [(name, mode, X.CROSSOVER[body][mode]) for name, body in sweep.BODIES.items()
            for mode in ("graph", "xla")]


def _switching(slow_from=18):
    """(case, mode, log2 crossover) for the switches that happen; marked slow above 2^slow_from."""
    out = []
    for name, mode, log2 in SWITCHES:
        if log2 is None:
            continue
        marks = [pytest.mark.slow] if log2 > slow_from else []
        out.append(pytest.param(name, mode, log2, id=f"{name}-{mode}-2^{log2}", marks=marks))
    return out


def _compiled_calls(step, *args):
    """Whether the traced step calls the compiled path's kernels (functions named *_forward)."""
    graph = step.get_concrete_function(*args).graph
    return any("_forward" in name for name in graph._functions)


def _value_and_grad(loss, y, z, mode, path=None):
    step = tf.function(lambda y, z: _loss_and_grad(loss, y, z), jit_compile=mode == "xla", autograph=False)
    if path is None:
        return step(y, z), step
    with L.set_trace_options(compiled_kernels=path == "compiled"), X.forced(path):
        step.get_concrete_function(y, z)
    return step(y, z), step


def _loss_and_grad(loss, y, z):
    with tf.GradientTape() as tape:
        tape.watch(z)
        value = loss(y, z)
    return value, tape.gradient(value, z)


def _inputs(name, elements, dtype=tf.float32):
    ours, _ = cases.loss_cases()[name]
    return cases.loss_inputs(ours, elements, dtype)


@pytest.mark.parametrize("name, mode, log2", _switching())
@pytest.mark.parametrize("side", ["at", "below"])
def test_both_sides_of_the_crossover_agree(name, mode, log2, side):
    elements = 2**log2 - (cases.CLASSES if side == "below" else 0)
    y, z = _inputs(name, elements)
    expected_path = "compiled" if side == "at" else "plain"
    ours, keras_loss = cases.loss_cases()[name]
    (value, grad), step = _value_and_grad(ours, y, z, mode)
    assert sweep.path_taken(name, mode, "float32", elements) == expected_path
    assert _compiled_calls(step, y, z) == (expected_path == "compiled")
    other = "plain" if expected_path == "compiled" else "compiled"
    other_value, other_grad = _value_and_grad(cases.loss_cases()[name][0], y, z, mode, other)[0]
    np.testing.assert_allclose(value.numpy(), other_value.numpy(), rtol=2e-6)
    scale = float(tf.reduce_max(tf.abs(grad)))
    np.testing.assert_allclose(grad.numpy(), other_grad.numpy(), rtol=1e-5, atol=1e-6 * scale)
    k_value, k_grad = _value_and_grad(keras_loss, y, z, mode)[0]
    # Keras clips probabilities to [eps, 1 - eps] (its focal losses from logits too, after the
    # softmax): a few 1e-4 of the loss here, and zero gradient for the probabilities outside
    np.testing.assert_allclose(value.numpy(), k_value.numpy(), rtol=1e-3)
    eps = keras.config.epsilon()
    what = registry.describe_loss(ours)
    p = z.numpy()
    if what.expects() != "probabilities" and what.family in ("categorical", "sparse"):
        p = np.exp(p - p.max(-1, keepdims=True))
        p = p / p.sum(-1, keepdims=True)
    inside = (p > eps) & (p < 1 - eps)
    if what.expects() != "probabilities":  # a softmax's row is clipped as a whole (sigmoids: none)
        inside = np.broadcast_to(inside.all(-1, keepdims=True), p.shape) if what.family in (
            "categorical", "sparse") else np.ones(p.shape, bool)
    np.testing.assert_allclose(grad.numpy()[inside], k_grad.numpy()[inside], rtol=1e-3, atol=1e-5 * scale)


@pytest.mark.slow
@pytest.mark.parametrize("name, mode, log2", _switching())
def test_both_sides_agree_in_bfloat16(name, mode, log2):
    """bfloat16 predictions (computed in float32): the two paths round to the same bfloat16
    values up to one unit in the last place."""
    y, z = _inputs(name, 2**log2, tf.bfloat16)
    ours, _ = cases.loss_cases()[name]
    value, grad = _value_and_grad(ours, y, z, mode)[0]
    other_value, other_grad = _value_and_grad(cases.loss_cases()[name][0], y, z, mode, "plain")[0]
    np.testing.assert_allclose(value.numpy().astype("float32"), other_value.numpy().astype("float32"),
                               rtol=2**-7)
    g, h = grad.numpy().astype("float32"), other_grad.numpy().astype("float32")
    np.testing.assert_allclose(g, h, rtol=2**-7, atol=2**-7 * float(np.abs(g).max()))


def test_every_bench_case_names_the_body_it_runs():
    """sweep.BODIES (case -> the table's key) is the body whose compiled kernels the case calls."""
    for name, body in sweep.BODIES.items():
        y, z = _inputs(name, 2**10)
        step = tf.function(lambda y, z, loss=cases.loss_cases()[name][0]: _loss_and_grad(loss, y, z),
                           autograph=False)
        with L.set_trace_options(compiled_kernels=True), X.forced("compiled"):
            graph = step.get_concrete_function(y, z).graph
        names = " ".join(graph._functions)
        assert f"{body.strip('_')}_forward" in names, (name, body)
        assert body in X.CROSSOVER


def test_table_is_well_formed():
    for body, row in X.CROSSOVER.items():
        assert set(row) == {"graph", "xla"}, body
        for mode, log2 in row.items():
            assert log2 is None or (isinstance(log2, int) and 0 <= log2 <= 30), (body, mode)
            want = math.inf if log2 is None else 2**log2
            assert X.min_elements(body, where=mode) == want


def test_never_means_plain_at_any_size():
    for name, mode, log2 in SWITCHES:
        if log2 is None:
            assert sweep.path_taken(name, mode, "float32", 2**30) == "plain"


def test_an_int_override_and_forced_paths_replace_the_table(monkeypatch):
    assert X.min_elements("_mse", override=0) == 0
    with X.forced("compiled"):
        assert X.min_elements("_mse", where="graph") == 0
    with X.forced("plain"):
        assert X.min_elements("_mse", where="graph") == math.inf
    with pytest.raises(ValueError, match="path"):
        with X.forced("fast"):
            pass
    monkeypatch.setattr(LC, "FUSE_MIN_ELEMENTS", 0)
    assert LC.large((1, 2), "_mse") is True


def test_unknown_batch_uses_the_per_sample_share_of_the_crossover():
    log2 = X.DEFAULT_LOG2
    per_sample = 2**log2 // X.PER_SAMPLE_BATCH
    assert LC.large((None, per_sample)) is True
    assert LC.large((None, per_sample - 1)) is False


# ---------------------------------------------------------------------------------------------
# How the XLA column is decided: a same-run A/B with a margin, ties to the smaller program.


@functools.lru_cache(maxsize=None)
def _xla_passes(name):
    """{path: full-size arrays read and written} of one value + gradient step of bench case
    `name` under XLA at 2^16 elements, per path forced (tests/_program_size.full_size_passes)."""
    y, z = _inputs(name, 2**16)
    out = {}
    for path in ("plain", "compiled"):
        loss = cases.loss_cases()[name][0]
        step = tf.function(functools.partial(_loss_and_grad, loss), jit_compile=True,
                           autograph=False)
        with L.set_trace_options(compiled_kernels=path == "compiled"), X.forced(path):
            hlo = step.experimental_get_compiler_ir(y, z)(stage="optimized_hlo")
        out[path] = P.full_size_passes(hlo, 2**16)
    return out


def _fewer_passes(name):
    passes = _xla_passes(name)
    return passes["compiled"] < passes["plain"]


def _committed_verdicts(name, mode="xla"):
    with open(AB_FILE) as fh:
        rows = json.load(fh)["rows"]
    pairs = {}  # log2 size -> (plain, compiled), the rounds of every run pooled (paired per run)
    for r in rows:
        if (r["group"], r["case"], r["mode"], r["dtype"]) == ("sweep_loss", name, mode, "float32"):
            plain, compiled = pairs.setdefault(int(math.log2(r["size"])), ([], []))
            plain += r["samples"]["plain"]
            compiled += r["samples"]["compiled"]
    return {log2: X.verdict(*pc) for log2, pc in pairs.items()}


@pytest.mark.parametrize("name", list(sweep.BODIES))
def test_xla_column_is_the_rule_read_off_the_committed_ab(name):
    """The table's XLA threshold is `_crossover.threshold` of the committed A/B's verdicts, ties
    going to the path whose program (measured here, not timed) makes fewer full-size passes."""
    verdicts = _committed_verdicts(name)
    assert verdicts, f"{name}: no XLA rows in {AB_FILE}"
    want = X.threshold(verdicts, _fewer_passes(name))
    assert X.CROSSOVER[sweep.BODIES[name]]["xla"] == want, (name, verdicts, _xla_passes(name))


def test_binary_focal_from_logits_takes_the_compiled_path_under_xla_from_2_20():
    """The regression of cee4f8e: a table read off one noisy sweep kept binary focal from logits on
    the plain path under XLA up to 2^24, whose program reads and writes 18 full-size arrays against
    the compiled path's 5 (Keras's: 16): 1.14-1.26x Keras at 2^22, 0.39-0.44x before."""
    passes = _xla_passes("focal_logits")
    assert passes["compiled"] < passes["plain"], passes
    for log2 in (20, 22, 24):
        assert sweep.path_taken("focal_logits", "xla", "float32", 2**log2) == "compiled", log2


def test_verdict_needs_a_margin_and_threshold_breaks_ties_by_structure():
    slow, fast = [1.0] * 9, [0.8] * 9
    assert X.verdict(slow, fast) == "compiled"
    assert X.verdict(fast, slow) == "plain"
    # within the margin, or a median beyond it whose quartile is not: a tie
    assert X.verdict([1.0] * 9, [0.98] * 9) == "tie"
    assert X.verdict([2.0] * 4 + [0.5] * 5, [1.0] * 9) == "tie"
    verdicts = {12: "plain", 16: "tie", 20: "compiled", 22: "tie", 24: "compiled"}
    assert X.threshold(verdicts, fewer_passes=True) == 16
    assert X.threshold(verdicts, fewer_passes=False) == 24
    assert X.threshold({16: "tie", 20: "plain"}, fewer_passes=True) is None
    assert X.threshold({12: "tie"}, fewer_passes=True, floor=16) == 16
