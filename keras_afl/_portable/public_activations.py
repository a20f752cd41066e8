"""`keras_afl.activations` on Keras's JAX and PyTorch backends.

The same public functions, names, arguments, checks and registered names as the TensorFlow
module (`keras_afl._tf_activations`); the formulas and derivatives are
`keras_afl._portable.activations`, each written once and given to the backend's own
custom-derivative mechanism (`jax.custom_vjp`, a `torch.autograd.Function`).
Inputs are converted with `keras.ops.convert_to_tensor`: Python lists and scalars become
float32, integer and boolean tensors are refused with a TypeError.
"""

from __future__ import annotations

import keras

from keras_afl._grad_utils import check_number
from keras_afl._portable import _logits
from keras_afl._portable import activations as _math
from keras_afl._portable._inputs import as_float

__all__ = ["relu", "leaky_relu", "prelu", "sigmoid", "tanh", "softmax", "elu", "selu"]

SELU_ALPHA = _math.SELU_ALPHA
SELU_SCALE = _math.SELU_SCALE

# On TensorFlow the registered names belong to keras_afl._tf_activations (see
# keras_afl._portable.losses._core.register).
from keras_afl._portable.losses._core import register as _register  # noqa: E402


def _attach_logits(y, logits, activation=None, axis=None):
    """Records the logits of a sigmoid/softmax output where the tensor allows it (PyTorch tensors
    and eager JAX arrays do; traced JAX arrays do not): `keras_afl._portable._logits`."""
    if activation is None:
        _logits._set(y, _logits.KERAS_LOGITS, logits)
        return y
    return _logits.attach_logits(y, logits, activation, axis)


@_register
def relu(x):
    """ReLU: max(x, 0); derivative 1 for x > 0, else 0 (0 at x = 0, as TensorFlow)."""
    return _math.relu(as_float(x))


@_register
def leaky_relu(x, negative_slope=0.01):
    """Leaky ReLU: x if x > 0 else negative_slope * x; derivative the slope at x <= 0."""
    x = as_float(x)
    return _math.leaky_relu(x, check_number(negative_slope, "negative_slope"))


def _broadcast_shape(x_shape, a_shape):
    """The axes of x along which alpha was broadcast, or None if alpha does not broadcast."""
    if len(a_shape) > len(x_shape):
        return None
    lead = len(x_shape) - len(a_shape)
    axes = list(range(lead))
    for i, (xd, ad) in enumerate(zip(x_shape[lead:], a_shape)):
        if ad == xd:
            continue
        if ad != 1:
            return None
        axes.append(lead + i)
    return tuple(axes)


@_register
def prelu(x, alpha):
    """Parametric ReLU: x if x > 0 else alpha * x; alpha broadcasts against x and its gradient
    (the sum over the broadcast axes of min(x, 0) times the upstream gradient) has alpha's shape."""
    x = as_float(x)
    alpha = keras.ops.cast(as_float(alpha, "alpha"), keras.backend.standardize_dtype(x.dtype))
    x_shape, a_shape = tuple(x.shape), tuple(alpha.shape)
    axes = _broadcast_shape(x_shape, a_shape)
    if axes is None:
        raise ValueError(
            f"`alpha` of shape {a_shape} cannot be broadcast against `x` of shape "
            f"{x_shape}; give alpha one value per channel (e.g. shape ({x_shape[-1]},)) "
            "or a shape of 1s for a shared slope."
        )
    o = _math.ops()

    def reduce_to_alpha(t):
        if axes:
            t = o.sum(t, axis=axes, keepdims=True)
        return keras.ops.reshape(t, a_shape)

    return _math.prelu(x, alpha, reduce_to_alpha)


@_register
def sigmoid(x):
    """Sigmoid 1 / (1 + exp(-x)); derivative sigmoid(x) * sigmoid(-x) (no cancellation)."""
    return _math.sigmoid(as_float(x))


@_register
def tanh(x):
    """Hyperbolic tangent; derivative 1 - tanh(x)^2, computed without cancellation."""
    return _math.tanh(as_float(x))


@_register
def softmax(x, axis=-1):
    """Softmax over `axis`, an int or a tuple/list of axes (summing to 1 over all of them);
    derivative y * (g - sum(g * y, axis)), the sum over every axis given."""
    x = as_float(x)
    return _math.softmax(x, _math.softmax_axis(axis, len(x.shape)))


@_register
def elu(x, alpha=1.0):
    """ELU: x if x > 0 else alpha * (exp(x) - 1); derivative 1 at x >= 0, alpha * exp(x) below."""
    x = as_float(x)
    return _math.elu(x, check_number(alpha, "alpha", low=0.0))


@_register
def selu(x):
    """SELU: scale * elu(x, alpha) with the constants of Klambauer et al. (2017)."""
    return _math.elu(as_float(x), SELU_ALPHA, SELU_SCALE)
