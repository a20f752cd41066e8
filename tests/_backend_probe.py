"""Runs keras_afl's portable formulas on one Keras backend and prints values and derivatives.

Usage (a fresh process per backend): KERAS_BACKEND=jax python tests/_portable_probe.py
Prints one JSON object: for every activation, its values, its gradient for an upstream
gradient and a Hessian-vector product of sum(sin(f(x))), each computed with that backend's
own differentiation (jax.vjp / jax.grad of jax.grad; torch.autograd with create_graph;
tf.GradientTape), all in float64.

`import keras_afl` still stops on backends other than TensorFlow until every layer and loss is
ported; this probe loads the two backend-neutral subpackages (`keras_afl._backend`,
`keras_afl._portable`) without the package's `__init__`.
"""

import json
import os
import sys
import types

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load():
    """keras_afl._backend and keras_afl._portable.activations, without the package's __init__.

    Only when run as a script: imported (pytest's doctest collection imports every module),
    it must leave `keras_afl` alone.
    """
    if "keras_afl" not in sys.modules:
        package = types.ModuleType("keras_afl")
        package.__path__ = [os.path.join(REPO, "keras_afl")]
        sys.modules["keras_afl"] = package
    from keras_afl import _backend
    from keras_afl._portable import activations

    return _backend, activations

X = np.array([-30.0, -3.0, -0.5, -1e-30, 0.0, 1e-30, 0.2, 2.0, 30.0])
G = np.linspace(-1.0, 2.0, X.size)
V = np.linspace(0.5, -1.5, X.size)
SOFTMAX_X = np.array([[-2.0, 0.5, 3.0], [1e3, 0.0, -1e3], [0.1, 0.2, 0.3]])
ALPHA = np.array([0.25])



def functions(A):
    return {
        "relu": A.relu,
        "leaky_relu": lambda x: A.leaky_relu(x, 0.1),
        "sigmoid": A.sigmoid,
        "tanh": A.tanh,
        "elu": lambda x: A.elu(x, 0.7),
        "elu_alpha0": lambda x: A.elu(x, 0.0),
        "selu": lambda x: A.elu(x, A.SELU_ALPHA, A.SELU_SCALE),
    }


def probe_jax(A):
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)

    def run(f, x, g, v):
        x, g, v = (jnp.asarray(a) for a in (x, g, v))
        y, vjp = jax.vjp(f, x)
        hvp = jax.grad(lambda x: jnp.sum(jax.grad(lambda x: jnp.sum(jnp.sin(f(x))))(x) * v))(x)
        jit_grad = jax.jit(lambda x: vjp(g)[0])(x)
        return y, vjp(g)[0], hvp, jit_grad

    def run_prelu(x, g):
        x, g, a = jnp.asarray(x), jnp.asarray(g), jnp.asarray(ALPHA)
        y, vjp = jax.vjp(lambda x, a: A.prelu(x, a, lambda t: jnp.sum(t, keepdims=True)), x, a)
        return (y, *vjp(g))

    return run, run_prelu


def probe_torch(A):
    import torch

    def run(f, x, g, v):
        x = torch.tensor(x, requires_grad=True)
        y = f(x)
        (dx,) = torch.autograd.grad(y, x, torch.tensor(g))
        (first,) = torch.autograd.grad(torch.sum(torch.sin(f(x))), x, create_graph=True)
        (hvp,) = torch.autograd.grad(torch.sum(first * torch.tensor(v)), x)
        return y.detach(), dx, hvp, dx

    def run_prelu(x, g):
        x = torch.tensor(x, requires_grad=True)
        a = torch.tensor(ALPHA, requires_grad=True)
        y = A.prelu(x, a, lambda t: torch.sum(t).reshape(1))
        dx, da = torch.autograd.grad(y, (x, a), torch.tensor(g))
        return y.detach(), dx, da

    return run, run_prelu


def probe_tensorflow(A):
    import tensorflow as tf

    def run(f, x, g, v):
        x = tf.constant(x)
        with tf.GradientTape() as outer:
            outer.watch(x)
            with tf.GradientTape() as inner:
                inner.watch(x)
                s = tf.reduce_sum(tf.sin(f(x)))
            first = inner.gradient(s, x)
            t = tf.reduce_sum(first * tf.constant(v))
        hvp = outer.gradient(t, x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = f(x)
        dx = tape.gradient(y, x, output_gradients=tf.constant(g))
        return y, dx, hvp, dx

    def run_prelu(x, g):
        x, a = tf.constant(x), tf.constant(ALPHA)
        with tf.GradientTape() as tape:
            tape.watch([x, a])
            y = A.prelu(x, a, lambda t: tf.reshape(tf.reduce_sum(t), [1]))
        return (y, *tape.gradient(y, [x, a], output_gradients=tf.constant(g)))

    return run, run_prelu


def main():
    backend, A = _load()
    name = backend.backend()
    run, run_prelu = {"jax": probe_jax, "torch": probe_torch, "tensorflow": probe_tensorflow}[name](A)
    out = {"backend": name}
    for key, f in functions(A).items():
        out[key] = [np.asarray(a, np.float64).tolist() for a in run(f, X, G, V)]
    softmax_g = np.tile(G[:3], (3, 1))
    softmax_v = np.tile(V[:3], (3, 1))
    out["softmax"] = [np.asarray(a, np.float64).tolist()
                      for a in run(lambda x: A.softmax(x, -1), SOFTMAX_X, softmax_g, softmax_v)]
    out["prelu"] = [np.asarray(a, np.float64).tolist() for a in run_prelu(X, G)]
    print("RESULT" + json.dumps(out))


if __name__ == "__main__":
    main()
