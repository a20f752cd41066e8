"""The per-backend adapters: one custom-derivative contract, three mechanisms.

Every keras_afl function with an analytic derivative is written as a pair

    forward(*xs) -> (y, saved)
    backward(xs, y, saved, g) -> one gradient per x (None for an input with no gradient, e.g. labels)

where `saved` is a tuple of intermediates of the forward pass that the backward pass reuses
(often empty).

in backend-neutral operations. `custom_derivative(forward, backward)` turns the pair into a
function with that derivative, using the active Keras backend's own mechanism:

- TensorFlow: `tf.custom_gradient`;
- JAX: `jax.custom_vjp`;
- PyTorch: a `torch.autograd.Function`.

A backward pass written with differentiable operations is itself differentiable on every backend
(Hessian-vector products, gradient penalties): TensorFlow and JAX differentiate `forward` and
`backward` as written. PyTorch detaches tensors saved from inside a `torch.autograd.Function`'s
forward pass (second derivatives through them come out silently wrong, as they do with
`keras.ops.custom_gradient` on PyTorch); its adapter therefore recomputes `saved` from the inputs
when the backward pass is itself being differentiated. Hyper-parameters are closed over, never
passed as arguments.
"""

from __future__ import annotations

import functools
import importlib

SUPPORTED_BACKENDS = ("tensorflow", "jax", "torch")


def backend():
    """The active Keras backend's name."""
    import keras  # here, not at the top: the package's import check names a backend Keras fails on

    return keras.backend.backend()


def unsupported_backend_error(name):
    import os

    return ImportError(
        f"keras_afl supports Keras's {', '.join(SUPPORTED_BACKENDS)} backends, but Keras is set to "
        f"{name!r} (KERAS_BACKEND={os.environ.get('KERAS_BACKEND', '<unset>')!r}, or the 'backend' key "
        "of ~/.keras/keras.json). Fix: set KERAS_BACKEND to one of "
        f"{', '.join(repr(b) for b in SUPPORTED_BACKENDS)} before Python starts (or before the first "
        "`import keras`), and install that backend: pip install 'keras-afl[cpu]' (TensorFlow), "
        "'keras-afl[jax]' or 'keras-afl[torch]'."
    )


@functools.lru_cache(maxsize=None)
def _adapter():
    name = backend()
    if name not in SUPPORTED_BACKENDS:
        raise unsupported_backend_error(name)
    return importlib.import_module(f"._{name}", __name__)


def ops():
    """The active backend's operations namespace (NumPy names; see `_jax.ops`)."""
    return _adapter().ops


def custom_derivative(forward, backward):
    """`forward` with the derivative `backward`, on the active backend.

    Args:
        forward: `forward(*xs) -> (y, saved)`: one tensor out, and a tuple of intermediates.
        backward: `backward(xs, y, saved, g) -> tuple` of one gradient (or None) per input,
            given the inputs `xs`, the output `y`, the intermediates `saved` and the upstream
            gradient `g` (same shape as `y`).

    Returns:
        A function of the positional tensors `xs` returning `y`.
    """
    return _adapter().custom_derivative(forward, backward)
