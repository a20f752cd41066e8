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

The derivative is reverse mode only: on JAX and PyTorch, forward-mode differentiation of a
keras_afl function (`jax.jvp`/`jacfwd`, `torch.func.jvp`/`jacfwd`/`hessian`) raises an error
naming the reverse-mode alternatives (`_jax.FORWARD_MODE_MESSAGE`, `_torch.FORWARD_MODE_MESSAGE`).
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import os

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


# The active backend's adapter module (`_tensorflow`, `_jax`, `_torch`), set by `adapter()` at
# its first call and never changed: Keras's backend is fixed for the life of a process. `ops()` and
# `custom_derivative()` read this global directly, so that under `torch.compile` each is one
# attribute read Dynamo traces through (an import, or an `lru_cache`d lookup, breaks the graph at
# every keras_afl call). `keras_afl.activations` calls `adapter()` when it is imported, so the
# first call never happens inside a compiled function.
_ADAPTER = None


def adapter():
    """The active backend's adapter module, imported at the first call (ImportError on a backend
    keras_afl does not serve)."""
    global _ADAPTER
    if _ADAPTER is None:
        name = backend()
        if name not in SUPPORTED_BACKENDS:
            raise unsupported_backend_error(name)
        _ADAPTER = importlib.import_module(f"._{name}", __name__)
    return _ADAPTER


def ops():
    """The active backend's operations namespace (NumPy names; see `_jax.ops`)."""
    a = _ADAPTER
    return (adapter() if a is None else a).ops


# The operations every backend names as NumPy does (`where`, `exp`, ...), taken from its modules
# by name (`numpy_names`); the rest of each `ops` namespace is written out.
NUMPY_NAMES = ("where", "exp", "expm1", "log", "log1p", "abs", "minimum", "maximum", "tanh",
               "floor", "ones_like", "zeros_like", "reshape", "square")


def numpy_names(*modules):
    """Class decorator: `NUMPY_NAMES` as static methods, each from the first of `modules` that
    has it (e.g. `tf.math`, then `tf`)."""

    def add(cls):
        for name in NUMPY_NAMES:
            setattr(cls, name, staticmethod(next(getattr(m, name) for m in modules
                                                 if hasattr(m, name))))
        return cls

    return add


def custom_derivative(forward, backward, native=None):
    """`forward` with the derivative `backward`, on the active backend.

    Args:
        forward: `forward(*xs) -> (y, saved)`: one tensor out, and a tuple of intermediate
            tensors (tensors only: PyTorch's Function returns them as extra outputs).
        backward: `backward(xs, y, saved, g) -> tuple` of one gradient (or None) per input,
            given the inputs `xs`, the output `y`, the intermediates `saved` and the upstream
            gradient `g` (same shape as `y`).
        native: The backend's own differentiable operation where it computes this forward and
            this derivative, conventions included (`ops().native(name, ...)`), or None. It is
            used as it is: no custom-derivative wrapper, and so no cost per call for one.

    Returns:
        A function of the positional tensors `xs` returning `y`.
    """
    if native is not None:
        return native
    a = _ADAPTER
    return (adapter() if a is None else a).custom_derivative(forward, backward)


def run_loss(body, settings, x, tensors, *, like=None, rule=None, split=None, kernel_split=None):
    """A loss body's per-sample loss with its analytic gradient (with respect to x), run by the
    active backend (`keras_afl.losses._core._custom_loss` documents the contract): TensorFlow's
    plain / XLA-compiled pair, or the custom derivative of JAX and PyTorch, each with its
    NaN-or-raise policy for bad labels."""
    a = _ADAPTER
    return (adapter() if a is None else a).ops.run_loss(
        body, settings, x, tensors, like=like, rule=rule, split=split, kernel_split=kernel_split)


# --------------------------------------------------------------------------
# The losses' switches (`keras_afl.losses.trace_options` / `set_trace_options`), read when a
# loss is called or traced. Context variables, so that threads and tasks each see their own
# blocks; behind a plain counter of open blocks, so that outside any block a read is one global
# lookup (Dynamo traces through it; a ContextVar.get() breaks a torch.compile graph).


def _fuse_from_environment():
    value = os.environ.get("KERAS_AFL_FUSE_LOSSES", "1").strip().lower()
    return value not in ("0", "false", "no", "off")


_DEFAULTS = {"compiled_kernels": _fuse_from_environment(), "label_checks": True}
_OPTIONS = contextvars.ContextVar("keras_afl_trace_options", default=None)
_OPEN_BLOCKS = 0


def option(name):
    """The value of switch `name` ("compiled_kernels", "label_checks") here and now."""
    if _OPEN_BLOCKS:
        set_here = _OPTIONS.get()
        if set_here is not None:
            return set_here[name]
    return _DEFAULTS[name]


@contextlib.contextmanager
def options_set(**values):
    """Within the block (this thread or task), the switches given (None: unchanged)."""
    global _OPEN_BLOCKS
    current = {name: option(name) for name in _DEFAULTS}
    current.update({k: bool(v) for k, v in values.items() if v is not None})
    token = _OPTIONS.set(current)
    _OPEN_BLOCKS += 1
    try:
        yield
    finally:
        _OPEN_BLOCKS -= 1
        _OPTIONS.reset(token)
