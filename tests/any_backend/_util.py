"""Backend-neutral helpers of the tests in tests/any_backend: each runs on whichever Keras backend
the process has (TensorFlow in the main run; JAX and PyTorch in their own runs, started by
tests/test_any_backend.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BACKEND = keras.backend.backend()


def to_np(x):
    return keras.ops.convert_to_numpy(x)


def value_and_grads(fn, *inputs, upstream=None):
    """fn(*inputs) and the gradients of sum(upstream * fn(*inputs)) for every input, each with the
    backend's own differentiation (tf.GradientTape, jax.vjp, torch.autograd); NumPy in and out."""
    inputs = [np.asarray(v) for v in inputs]
    if BACKEND == "tensorflow":
        import tensorflow as tf

        xs = [tf.constant(v) for v in inputs]
        with tf.GradientTape() as tape:
            for v in xs:
                tape.watch(v)
            y = fn(*xs)
            total = tf.reduce_sum(y if upstream is None else y * tf.cast(upstream, y.dtype))
        grads = tape.gradient(total, xs)
    elif BACKEND == "jax":
        import jax
        import jax.numpy as jnp

        y, vjp = jax.vjp(fn, *[jnp.asarray(v) for v in inputs])
        g = jnp.ones_like(y) if upstream is None else jnp.asarray(upstream, y.dtype)
        grads = vjp(g)
    else:
        import torch

        xs = [torch.tensor(v, requires_grad=True) for v in inputs]
        y = fn(*xs)
        g = torch.ones_like(y) if upstream is None else torch.tensor(np.asarray(upstream), dtype=y.dtype)
        grads = torch.autograd.grad(y, xs, g)
        y = y.detach()
    return to_np(y), [to_np(g) for g in grads]


def run_python(code, *, env=None, timeout=300):
    """Runs `code` in a fresh Python process on this backend (unless `env` says otherwise);
    returns stdout, or fails the test with the output."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": BACKEND}
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout, env=full_env, cwd=REPO)
    if proc.returncode != 0:
        raise AssertionError(f"subprocess failed ({proc.returncode})\n--- stdout\n{proc.stdout}"
                             f"\n--- stderr\n{proc.stderr[-4000:]}")
    return proc.stdout


def sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def focal_reference(y, p, gamma=2.0, alpha=0.25):
    """Lin et al.'s binary focal loss from probabilities, mean over the last axis (NumPy, float64),
    with Keras's clip to [eps, 1 - eps]."""
    eps = keras.config.epsilon()
    p = np.clip(np.asarray(p, np.float64), eps, 1.0 - eps)
    y = np.asarray(y, np.float64)
    p_t = y * p + (1 - y) * (1 - p)
    a_t = y * alpha + (1 - y) * (1 - alpha)
    return np.mean(-a_t * (1 - p_t) ** gamma * np.log(p_t), axis=-1)
