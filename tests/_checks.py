"""Checks shared by the test files: gradients, graph inspection, fresh processes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import tensorflow as tf

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLOAT_DTYPES = [tf.float16, tf.bfloat16, tf.float32, tf.float64]


def numeric_jacobian_error(fn, *inputs, delta=1e-6):
    """Max |analytic - central-difference| Jacobian entry of `fn` at float64 `inputs`.

    Uses `tf.test.compute_gradient`, which differentiates `fn` through its
    (custom) gradient and compares with central differences.
    """
    inputs = [tf.constant(np.asarray(v, np.float64)) for v in inputs]
    theoretical, numerical = tf.test.compute_gradient(fn, inputs, delta=delta)
    return max(float(np.max(np.abs(t - n))) if t.size else 0.0
               for t, n in zip(theoretical, numerical))


def grads(fn, *inputs, upstream=None):
    """Value and gradients of sum(upstream * fn(*inputs)) with respect to every input."""
    inputs = [tf.convert_to_tensor(v) for v in inputs]
    with tf.GradientTape() as tape:
        for v in inputs:
            tape.watch(v)
        y = fn(*inputs)
        weighted = y if upstream is None else y * tf.cast(upstream, y.dtype)
        total = tf.reduce_sum(weighted)
    return y, tape.gradient(total, inputs)


def hvp(fn, x, v):
    """Hessian-vector product of sum(fn(x)) at x, direction v (double tape)."""
    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as outer:
        outer.watch(x)
        with tf.GradientTape() as inner:
            inner.watch(x)
            y = tf.reduce_sum(fn(x))
        g = inner.gradient(y, x)
        gv = tf.reduce_sum(g * v)
    return outer.gradient(gv, x, unconnected_gradients=tf.UnconnectedGradients.ZERO)


def custom_gradient_ops(fn, *specs):
    """The custom-gradient ops in the graph traced from `fn` for `specs`.

    `tf.custom_gradient` in graph mode wraps the forward in an IdentityN op
    whose `_gradient_op_type` attribute names the registered custom gradient.
    """
    graph = tf.function(fn).get_concrete_function(*specs).graph
    found = []
    for op in graph.get_operations():
        try:
            kind = op.get_attr("_gradient_op_type")
        except (ValueError, TypeError):
            continue
        if kind and kind.decode().startswith("CustomGradient"):
            found.append(op)
    return found


def run_python(code, *, env=None, timeout=300, cwd=None):
    """Runs `code` in a fresh Python process; returns stdout. Fails the test on error."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONHASHSEED": "0"}
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, timeout=timeout, env=full_env, cwd=cwd or REPO,
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"subprocess failed with exit code {proc.returncode}\n--- stdout\n{proc.stdout}"
            f"\n--- stderr\n{proc.stderr[-4000:]}"
        )
    return proc.stdout


def tolerance(dtype):
    """(rtol, atol) used when comparing a function in `dtype` with a float64 reference."""
    return {
        tf.float16: (2e-3, 2e-3),
        tf.bfloat16: (1.6e-2, 1.6e-2),
        tf.float32: (2e-6, 1e-6),
        tf.float64: (1e-12, 1e-12),
    }[tf.as_dtype(dtype)]


def probe_backends(script, tmp_path_factory=None, *, env=None, timeout=600,
                   backends=("tensorflow", "jax", "torch")):
    """{backend: what `script` prints after `RESULT` (JSON)}, each backend in a fresh process (Keras
    takes one backend per process), the processes side by side; a backend that is not installed
    is left out (CI installs all three). Given pytest's `tmp_path_factory` under pytest-xdist, the
    workers of one run share the results: the first to ask measures, the others read its file
    (in the run's temporary directory)."""
    import fcntl
    import importlib.util
    import json
    from concurrent.futures import ThreadPoolExecutor

    path = os.path.join(REPO, "tests", script)

    def probe(backend):
        stdout = run_python(f"import runpy; runpy.run_path({path!r}, run_name='__main__')",
                            env={"KERAS_BACKEND": backend, "JAX_ENABLE_X64": "1", **(env or {})},
                            timeout=timeout)
        result = json.loads(stdout.split("RESULT", 1)[1])
        assert result["backend"] == backend, (result["backend"], backend)
        return result

    def measure():
        installed = [b for b in backends if importlib.util.find_spec(b) is not None]
        with ThreadPoolExecutor(len(installed)) as pool:
            return dict(zip(installed, pool.map(probe, installed)))

    if tmp_path_factory is None or "PYTEST_XDIST_WORKER" not in os.environ:
        return measure()
    settings = sorted(f"{k}={v}" for k, v in (env or {}).items())
    name = "_".join([os.path.splitext(script)[0], *backends, *settings])
    shared = tmp_path_factory.getbasetemp().parent / f"{name}.json"
    with open(f"{shared}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not shared.exists():
            shared.with_suffix(".tmp").write_text(json.dumps(measure()))
            shared.with_suffix(".tmp").replace(shared)
        return json.loads(shared.read_text())
