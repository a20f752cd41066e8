"""Activation functions with analytic derivatives, on every Keras backend.

relu, leaky_relu, prelu, sigmoid, tanh, softmax, elu and selu: the same names, arguments,
values, derivatives and registered names ("keras_afl>relu", ...) on TensorFlow, JAX and
PyTorch. The implementation is the active backend's:

- TensorFlow (`keras_afl._tf_activations`): `tf.custom_gradient` closures that call
  TensorFlow's fused gradient kernels (`ReluGrad`, `SigmoidGrad`, ...): the speed of
  `tf.nn`'s own activations.
- JAX and PyTorch (`keras_afl._portable.public_activations`): each forward pass and derivative
  written once (`keras_afl._portable.activations`) and given to `jax.custom_vjp` or a
  `torch.autograd.Function`.

Every backward pass is itself differentiable (Hessian-vector products, gradient penalties).
Conventions at kinks are TensorFlow's: relu'(0) = 0, leaky_relu'(0) = prelu'(0) = slope,
elu'(0) = 1, selu'(0) = lambda. All functions preserve the input dtype (float16, bfloat16,
float32, float64); Python lists and scalars are taken as float32, integer or boolean tensors are
refused with a TypeError. Where TensorFlow's kernels round (README, "Backends"), the JAX and
PyTorch values are the exact ones.
"""

from __future__ import annotations

from keras_afl._backend import backend as _backend

if _backend() == "tensorflow":
    from keras_afl import _tf_activations as _impl
else:
    from keras_afl._portable import public_activations as _impl

__all__ = ["relu", "leaky_relu", "prelu", "sigmoid", "tanh", "softmax", "elu", "selu"]

relu = _impl.relu
leaky_relu = _impl.leaky_relu
prelu = _impl.prelu
sigmoid = _impl.sigmoid
tanh = _impl.tanh
softmax = _impl.softmax
elu = _impl.elu
selu = _impl.selu
SELU_ALPHA = _impl.SELU_ALPHA
SELU_SCALE = _impl.SELU_SCALE


def __getattr__(name):
    # The implementation's private helpers (e.g. `_attach_logits` on TensorFlow).
    try:
        return getattr(_impl, name)
    except AttributeError:
        raise AttributeError(f"module 'keras_afl.activations' has no attribute {name!r}") from None
