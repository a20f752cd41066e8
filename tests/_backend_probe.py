"""Runs keras_afl's activations on one Keras backend and prints what they compute, as JSON.

Usage (a fresh process per backend: Keras takes one backend per process):
    KERAS_BACKEND=jax python tests/_backend_probe.py        (or torch, or tensorflow)
On JAX and PyTorch TensorFlow is made unimportable first, as on a machine without it. Prints
`RESULT` and one JSON object: for every case of `ACTIVATIONS`, in float64, the value, the gradient
for an upstream gradient that is not all ones and a Hessian-vector product of sum(sin(f(x))),
each with the backend's own differentiation (jax.vjp, jax.grad of jax.grad; torch.autograd with
create_graph; nested tf.GradientTape); on JAX the same again inside one jax.jit.
tests/test_across_backends.py puts the three backends' numbers in one table.

The runners here (`start`, `runner`, `as_list`) measure the losses too (tests/_loss_probe.py).
"""

import json
import os
import sys

import numpy as np

X = np.array([-30.0, -3.0, -0.5, -1e-30, 0.0, 1e-30, 0.2, 2.0, 30.0])
SOFTMAX_X = np.array([[-2.0, 0.5, 3.0], [1e3, 0.0, -1e3], [0.1, 0.2, 0.3]])
ALPHA = np.array([0.25])


def _prelu_slope(A, alpha):
    """prelu at X as a function of its slope (the slope's gradient and second derivative)."""
    import keras

    return A.prelu(keras.ops.convert_to_tensor(X), alpha)


ACTIVATIONS = {  # case: (f(activations module, x), x)
    "relu": (lambda A, x: A.relu(x), X),
    "leaky_relu": (lambda A, x: A.leaky_relu(x, 0.1), X),
    "sigmoid": (lambda A, x: A.sigmoid(x), X),
    "tanh": (lambda A, x: A.tanh(x), X),
    "elu": (lambda A, x: A.elu(x), X),  # alpha 1: TensorFlow's Elu/EluGrad kernels
    "elu_0.7": (lambda A, x: A.elu(x, 0.7), X),
    "elu_0": (lambda A, x: A.elu(x, 0.0), X),
    "selu": (lambda A, x: A.selu(x), X),
    "prelu": (lambda A, x: A.prelu(x, ALPHA), X),
    "prelu_slope": (_prelu_slope, ALPHA),
    "softmax": (lambda A, x: A.softmax(x, -1), SOFTMAX_X),
    "softmax_axis0": (lambda A, x: A.softmax(x, 0), SOFTMAX_X),
}


def start():
    """keras_afl imported on the backend of KERAS_BACKEND; returns the backend's name.

    On JAX and PyTorch, TensorFlow is made unimportable first (`import tensorflow` raises
    ImportError). XLA's CPU compiler runs with its cheaper passes: the compiled grids compile
    several times faster, and the arithmetic is IEEE either way (fast math is off by default).
    """
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    if backend != "tensorflow":
        sys.modules["tensorflow"] = None
    os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0 "
                          "--xla_llvm_disable_expensive_passes=true")
    import keras

    import keras_afl  # noqa: F401  (the package, as users import it)

    assert keras.backend.backend() == backend, (keras.backend.backend(), backend)
    return backend


def upstream(shape, seed):
    """An upstream gradient / weights / direction that is not all ones."""
    n = int(np.prod(shape)) if shape else 1
    r = np.random.default_rng(seed)
    return (np.linspace(-1.0, 2.0, n) + 0.1 * r.random(n)).reshape(shape)


def objective(value, w, outer, sin):
    """The HVP's objective before its sum: "weighted", w * f (the losses); "sine", sin(f) (the
    activations: second derivatives through the backward pass even where f is piecewise linear),
    with the backend's own sin (keras.ops.sin computes float64 in float32 on JAX, Keras 3.15)."""
    return value * w if outer == "weighted" else sin(value)


# --------------------------------------------------------------------------
# Runners: run(f, y, x, hvp=False, dtype=None, outer="weighted", cotangent=None) -> (value of
# f(y, x), its gradient with respect to x for the upstream gradient `cotangent` (by default
# upstream(value's shape, 1)), and with `hvp` the Hessian-vector product of the objective in the
# direction upstream(x's shape, 3), its weights w = upstream(value's shape, 2)); tensor(a,
# dtype=None) makes a backend tensor.


def _cotangent(shape, given):
    return upstream(shape, 1) if given is None else np.asarray(given)


def runner(backend):
    """(run, tensor) for `backend`, with its own differentiation."""
    return {"jax": _jax_runner, "torch": _torch_runner, "tensorflow": _tensorflow_runner}[backend]()


def _jax_runner():
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)

    def tensor(a, dtype=None):
        if a is None:
            return None
        a = jnp.asarray(a)
        return a if dtype is None else a.astype(dtype)

    def measured(f, y, x, hvp, outer, cotangent=None):
        val, vjp = jax.vjp(lambda x: f(y, x), x)
        (dx,) = vjp(jnp.asarray(_cotangent(val.shape, cotangent), val.dtype))
        h = None
        if hvp:
            w, v = jnp.asarray(upstream(val.shape, 2)), jnp.asarray(upstream(x.shape, 3))
            first = jax.grad(lambda x: jnp.sum(objective(f(y, x), w, outer, jnp.sin)))
            h = jax.grad(lambda x: jnp.sum(first(x) * v))(x)
        return val, dx, h

    def run(f, y, x, hvp=False, dtype=None, outer="weighted", cotangent=None):
        return measured(f, tensor(y), tensor(x, dtype), hvp, outer, cotangent)

    def run_many(items, outer="weighted"):
        """[(f, y, x, hvp)] measured in one jax.jit program, the labels traced (the path of a
        jitted training step): one XLA compilation, far quicker here than JAX's op-by-op
        dispatch or a program per case."""
        fs = [(f, hvp) for f, _, _, hvp in items]

        def everything(ys, xs):
            return [measured(f, y, x, hvp, outer) for (f, hvp), y, x in zip(fs, ys, xs)]

        return jax.jit(everything)([tensor(i[1]) for i in items], [tensor(i[2]) for i in items])

    run.many = run_many
    return run, tensor


def _torch_runner():
    import torch

    def tensor(a, dtype=None):
        if a is None:
            return None
        t = torch.tensor(np.asarray(a))
        return t if dtype is None else t.to(getattr(torch, dtype))

    def run(f, y, x, hvp=False, dtype=None, outer="weighted", cotangent=None):
        y, x = tensor(y), tensor(x, dtype).requires_grad_()
        val = f(y, x)
        g = torch.tensor(_cotangent(tuple(val.shape), cotangent), dtype=val.dtype)
        (dx,) = torch.autograd.grad(val, x, g)
        h = None
        if hvp:
            w = torch.tensor(upstream(tuple(val.shape), 2), dtype=val.dtype)
            v = torch.tensor(upstream(tuple(x.shape), 3), dtype=x.dtype)
            s = torch.sum(objective(f(y, x), w, outer, torch.sin))
            (first,) = torch.autograd.grad(s, x, create_graph=True)
            h = (torch.autograd.grad(torch.sum(first * v), x)[0] if first.requires_grad
                 else torch.zeros_like(x))
        return val.detach(), dx, h

    return run, tensor


def _tensorflow_runner():
    import tensorflow as tf

    def tensor(a, dtype=None):
        if a is None:
            return None
        t = tf.constant(np.asarray(a))
        return t if dtype is None else tf.cast(t, dtype)

    def run(f, y, x, hvp=False, dtype=None, outer="weighted", cotangent=None):
        y, x = tensor(y), tensor(x, dtype)
        with tf.GradientTape() as tape:
            tape.watch(x)
            val = f(y, x)
        g = tf.constant(_cotangent(tuple(val.shape), cotangent), val.dtype)
        dx = tape.gradient(val, x, output_gradients=g)
        h = None
        if hvp:
            w = tf.constant(upstream(tuple(val.shape), 2))
            v = tf.constant(upstream(tuple(x.shape), 3))
            with tf.GradientTape() as outer_tape:
                outer_tape.watch(x)
                with tf.GradientTape() as inner:
                    inner.watch(x)
                    s = tf.reduce_sum(objective(f(y, x), w, outer, tf.sin))
                first = inner.gradient(s, x)
                t = tf.reduce_sum(first * v)
            h = outer_tape.gradient(t, x)
            h = tf.zeros_like(x) if h is None else h
        return val, dx, h

    return run, tensor


def as_list(a):
    """A tensor as nested float64 lists (None stays None)."""
    if a is None:
        return None
    if hasattr(a, "detach"):  # torch
        a = a.detach().float() if str(a.dtype) == "torch.bfloat16" else a.detach()
    return np.asarray(a, np.float64).tolist()


def dtype_name(a):
    return str(a.dtype).replace("torch.", "").replace("<dtype: '", "").replace("'>", "")


def measure(backend):
    """{case: [value, gradient, HVP]} per ACTIVATIONS, and under "jit:<case>" the same inside
    one jax.jit (JAX only)."""
    import keras_afl

    A = keras_afl.activations
    run, _ = runner(backend)
    items = [(lambda y, x, f=f: f(A, x), None, x, True) for f, x in ACTIVATIONS.values()]
    out = {key: [as_list(a) for a in run(f, y, x, hvp=hvp, outer="sine")]
           for key, (f, y, x, hvp) in zip(ACTIVATIONS, items)}
    if hasattr(run, "many"):
        for key, measured in zip(ACTIVATIONS, run.many(items, outer="sine")):
            out[f"jit:{key}"] = [as_list(a) for a in measured]
    return out


def main():
    backend = start()
    out = {"backend": backend, "cases": measure(backend),
           "tensorflow_imported": sys.modules.get("tensorflow") is not None}
    print("RESULT" + json.dumps(out))


if __name__ == "__main__":
    main()
