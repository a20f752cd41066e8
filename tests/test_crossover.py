"""The losses' plain/compiled switch at each measured crossover (keras_afl/losses/_crossover.py).

On each side of a loss's crossover (the fewest elements that take the compiled path, per mode)
the path taken is the one the table names, and it gives the values and gradients of the other
path on the same inputs -- and of Keras's loss, computed in the same test (an independent
reference). Sizes are y_pred's elements: the crossover itself (compiled) and one row of 16
fewer (plain).
"""

import math

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
