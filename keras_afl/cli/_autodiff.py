"""Differentiation on whichever Keras backend the process runs, for the commands that take
derivatives (`check`, `plot`): `tf.GradientTape` on TensorFlow, `jax.vjp` on JAX,
`torch.autograd.grad` on PyTorch. Each goes through the function's own derivative (the
keras_afl custom gradient), or, for a plain formula written with `keras.ops`, through the
backend's autodiff of it.

Tensors are the backend's (`tensor()` makes them from NumPy, `to_numpy()` gives float64 NumPy
back); nothing here imports a backend other than the active one.
"""

from __future__ import annotations

import numpy as np

# The device in words (the first line of `check`): the harness's, shared with its reports.
from keras_afl.bench.device import _device_words, device  # noqa: F401 (re-exported)


def backend():
    """The name of Keras's backend in this process ("tensorflow", "jax" or "torch")."""
    import keras

    return keras.backend.backend()


def enable_float64():
    """Lets the backend hold float64 tensors: on JAX they need `jax_enable_x64` (off by default,
    which silently turns float64 into float32), switched on here for this process; the other
    backends hold float64 already."""
    if backend() == "jax":
        import jax

        jax.config.update("jax_enable_x64", True)


def tensor(value, dtype=None):
    """A backend tensor of the NumPy `value`: integers as int32; floats made in float64 then
    cast to `dtype` (so every dtype rounds the same float64 numbers); None stays None."""
    if value is None:
        return None
    from keras import ops

    v = np.asarray(value)
    if v.dtype.kind in "iub":
        return ops.convert_to_tensor(v.astype(np.int32), dtype="int32")
    x = ops.convert_to_tensor(v.astype(np.float64), dtype="float64")
    return x if dtype is None else ops.cast(x, dtype)


def to_numpy(x):
    """float64 NumPy of a backend tensor (bfloat16 has no NumPy dtype: cast first)."""
    from keras import ops

    if hasattr(x, "detach"):  # a torch tensor that may require grad
        x = x.detach()
    return np.asarray(ops.convert_to_numpy(ops.cast(x, "float64")))


def dtype_name(x):
    """The dtype of a backend tensor as Keras names it ("float32", "bfloat16", ...)."""
    import keras

    return keras.backend.standardize_dtype(x.dtype)


def vjp(fn, inputs, upstream=None, *, args=()):
    """`fn(*args, *inputs)` and, for each input, the gradient of `sum(upstream * fn(...))`.

    `inputs` are backend float tensors; `args` (backend tensors or None: labels) are passed
    along, not differentiated; `upstream` is NumPy (reshaped to the output's shape and cast to
    its dtype) or None (ones). On JAX the whole product is one `jax.jit` program (eager JAX
    compiles every operation on its own: ten times slower here), with `args` traced like the
    inputs. Returns (output tensor, [float64 NumPy gradient or None where the output does not
    depend on that input]).
    """
    name = backend()
    f = fn
    if args:
        fn = lambda *xs: f(*args, *xs)  # noqa: E731
    if name == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            for v in inputs:
                tape.watch(v)
            y = fn(*inputs)
            g = tf.ones_like(y) if upstream is None else tf.cast(
                tf.reshape(tf.constant(np.asarray(upstream, np.float64)), tf.shape(y)), y.dtype)
            total = tf.reduce_sum(g * y)
        grads = tape.gradient(total, list(inputs))
    elif name == "jax":
        import jax
        import jax.numpy as jnp

        @jax.jit
        def product(args, inputs, upstream):
            y, pullback = jax.vjp(lambda *xs: f(*args, *xs), *inputs)
            g = jnp.ones_like(y) if upstream is None else jnp.reshape(upstream, y.shape)
            return y, pullback(g.astype(y.dtype))

        u = None if upstream is None else jnp.asarray(np.asarray(upstream, np.float64))
        y, grads = product(tuple(args), tuple(inputs), u)
    elif name == "torch":
        import torch

        xs = [v.detach().requires_grad_(True) for v in inputs]
        y = fn(*xs)
        g = torch.ones_like(y) if upstream is None else torch.as_tensor(
            np.reshape(np.asarray(upstream, np.float64), tuple(y.shape)),
            device=y.device).to(y.dtype)
        if y.requires_grad:
            grads = torch.autograd.grad(y, xs, g, allow_unused=True)
        else:  # the output does not depend on any input
            grads = [None] * len(xs)
        y = y.detach()
    else:
        raise ValueError(f"keras-afl cannot differentiate on the Keras backend {name!r}; "
                         "expected tensorflow, jax or torch (set KERAS_BACKEND or --backend)")
    return y, [None if g is None else to_numpy(g) for g in grads]


def central_differences(fn, inputs, upstream, *, args=(), delta=1e-6):
    """Central differences of `sum(upstream * fn(*args, *inputs))` for each input, in float64.

    `inputs` are float64 NumPy arrays; `fn` takes and returns backend tensors and is evaluated
    at `inputs` moved by +-`delta` one element at a time (as `tf.test.compute_gradient` does,
    on any backend). `args` (backend tensors or None: labels) are passed unchanged -- as
    arguments, not closed over, so that under `jax.jit` they are traced like the inputs.
    Returns one float64 NumPy array per input.
    """
    inputs = [np.asarray(v, np.float64) for v in inputs]
    u = np.asarray(upstream, np.float64).reshape(-1)
    if backend() == "jax":  # one compiled program for all the calls (eager JAX: ~100x slower)
        import jax

        fn = jax.jit(fn)

    def total(values):
        y = to_numpy(fn(*args, *[tensor(v) for v in values])).reshape(-1)
        return float(u @ y)

    out = []
    for i, x in enumerate(inputs):
        grad = np.zeros(x.size)
        for j in range(x.size):
            step = np.zeros(x.size)
            step[j] = delta
            step = step.reshape(x.shape)
            plus = [*inputs[:i], x + step, *inputs[i + 1:]]
            minus = [*inputs[:i], x - step, *inputs[i + 1:]]
            grad[j] = (total(plus) - total(minus)) / (2 * delta)
        out.append(grad.reshape(x.shape))
    return out
