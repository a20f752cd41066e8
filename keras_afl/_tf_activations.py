"""`keras_afl.activations` on TensorFlow: activation functions with analytic derivatives.

Every public function converts its input, validates its hyper-parameters, and
then calls a private `tf.custom_gradient` closure in which the forward pass and
its derivative stand side by side. Hyper-parameters are *closed over*, never
passed as keyword arguments to the custom-gradient function (that fails in
graph mode, which is what `fit()` and XLA use).

Where TensorFlow has a fused gradient kernel that computes exactly the
documented derivative from the saved output (`SigmoidGrad`, `TanhGrad`,
`ReluGrad`, `LeakyReluGrad`, `EluGrad`, `SeluGrad`), the backward pass calls it:
one pass over memory, the speed of TensorFlow's own activations. Those kernels
have registered gradients of their own, so every backward pass here is itself
differentiable (Hessian-vector products, gradient penalties).

Conventions at kinks are those of TensorFlow: relu'(0) = 0, leaky_relu'(0) =
prelu'(0) = slope, elu'(0) = 1, selu'(0) = lambda.

All functions preserve the input dtype (float16, bfloat16, float32, float64);
Python lists and scalars are taken as float32, integer or boolean tensors are
refused with a TypeError.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_afl import _keras_compat
from keras_afl._grad_utils import as_float_tensor, check_number, sum_to_shape
from keras_afl._portable.activations import softmax_axis

__all__ = ["relu", "leaky_relu", "prelu", "sigmoid", "tanh", "softmax", "elu", "selu"]

# SELU constants (Klambauer et al. 2017), as in tf.nn.selu.
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946

_register = keras.saving.register_keras_serializable(package="keras_afl")


def _attach_logits(y, logits, activation=None, axis=None):
    """Lets cross-entropies recover the logits of a sigmoid/softmax output.

    Sets `_keras_logits`, as Keras's own sigmoid/softmax do, for a sigmoid, a
    softmax over the last axis, or an unnamed `activation` (Keras's losses use
    it whatever the loss). With `activation` `"sigmoid"` or `"softmax"` (over
    the int `axis`), also records `_keras_afl_logits = (logits, activation,
    axis)`: keras_afl's losses use the logits only for their own activation
    (`keras_afl.losses._logits`).
    """
    rank = y.shape.rank
    last = axis is None or axis == -1 or (rank is not None and axis == rank - 1)
    if activation is None or last:
        _keras_compat.set_keras_logits(y, logits)
    if activation is not None:
        try:
            y._keras_afl_logits = (logits, activation, axis)
        except AttributeError:  # pragma: no cover - tensor types that refuse attributes
            pass
    return y


@_register
def relu(x):
    """Rectified linear unit.

    The default hidden-layer activation: cheap, non-saturating for x > 0,
    sparse (units with x <= 0 output exactly 0 and get no gradient).

    Formula:
        relu(x) = max(x, 0)

    Gradient:
        relu'(x) = 1 if x > 0 else 0      (relu'(0) = 0, as TensorFlow)
        Computed from the saved output y with the fused `ReluGrad` kernel.

    Args:
        x: Floating-point tensor.

    Returns:
        Tensor of the same shape and dtype as `x`.

    Example:
    >>> import keras_afl
    >>> keras_afl.activations.relu([-2.0, 0.0, 3.0]).numpy().tolist()
    [0.0, 0.0, 3.0]

    Reference:
        Nair & Hinton, "Rectified Linear Units Improve Restricted Boltzmann
        Machines", ICML 2010.
    """
    x = as_float_tensor(x)

    @tf.custom_gradient
    def _relu(x):
        y = tf.nn.relu(x)

        def grad(g):
            return tf.raw_ops.ReluGrad(gradients=g, features=y)

        return y, grad

    return _relu(x)


@_register
def leaky_relu(x, negative_slope=0.01):
    """Leaky ReLU: ReLU with a small slope for negative inputs.

    Keeps a gradient for x < 0, so units cannot "die"; use it where dead ReLUs
    are a concern (deep networks, GAN discriminators).

    Formula:
        leaky_relu(x) = x if x > 0 else a * x          (a = negative_slope)

    Gradient:
        leaky_relu'(x) = 1 if x > 0 else a            (a at x = 0, as TensorFlow)
        Computed with the fused `LeakyReluGrad` kernel (in float64, whose
        slope the kernel would round to float32, with `tf.where`).

    Args:
        x: Floating-point tensor.
        negative_slope: Slope `a` for x <= 0; a finite number, usually in (0, 1).
            Negative slopes are accepted, as by `keras.activations.leaky_relu`
            (the `LeakyReLU` layer refuses them, as `keras.layers.LeakyReLU`
            does).

    Returns:
        Tensor of the same shape and dtype as `x`.

    Example:
    >>> import keras_afl
    >>> keras_afl.activations.leaky_relu([-2.0, 0.0, 3.0], negative_slope=0.1).numpy().tolist()
    [-0.2..., 0.0, 3.0]

    Reference:
        Maas, Hannun & Ng, "Rectifier Nonlinearities Improve Neural Network
        Acoustic Models", ICML 2013.
    """
    x = as_float_tensor(x)
    a = check_number(negative_slope, "negative_slope")

    if x.dtype == tf.float64:
        # The fused kernels take the slope as a float32 attribute; keep float64 exact.
        a_t = tf.constant(a, tf.float64)

        @tf.custom_gradient
        def _leaky_relu(x):
            positive = x > 0
            y = tf.where(positive, x, a_t * x)

            def grad(g):
                return tf.where(positive, g, a_t * g)

            return y, grad

    else:

        @tf.custom_gradient
        def _leaky_relu(x):
            y = tf.raw_ops.LeakyRelu(features=x, alpha=a)

            def grad(g):
                return tf.raw_ops.LeakyReluGrad(gradients=g, features=x, alpha=a)

            return y, grad

    return _leaky_relu(x)


@_register
def prelu(x, alpha):
    """Parametric ReLU: a leaky ReLU whose slope `alpha` is learned.

    `alpha` broadcasts against `x` (one slope per channel, or shared); its
    gradient is summed back to alpha's shape. Use the `keras_afl.layers.PReLU`
    layer to learn it.

    Formula:
        prelu(x) = x if x > 0 else alpha * x

    Gradient:
        d/dx     = 1 if x > 0 else alpha                (alpha at x = 0)
        d/dalpha = sum over broadcast axes of min(x, 0)

    Args:
        x: Floating-point tensor.
        alpha: Tensor broadcastable to `x`'s shape (cast to `x`'s dtype).

    Returns:
        Tensor of the same shape and dtype as `x`.

    Example:
    >>> import keras_afl
    >>> keras_afl.activations.prelu([-2.0, 3.0], alpha=[0.25]).numpy().tolist()
    [-0.5, 3.0]

    Reference:
        He et al., "Delving Deep into Rectifiers: Surpassing Human-Level
        Performance on ImageNet Classification", ICCV 2015.
    """
    x = as_float_tensor(x)
    alpha = tf.cast(as_float_tensor(alpha, "alpha"), x.dtype)
    try:
        tf.broadcast_static_shape(x.shape, alpha.shape)
    except ValueError:
        raise ValueError(
            f"`alpha` of shape {alpha.shape} cannot be broadcast against `x` of shape "
            f"{x.shape}; give alpha one value per channel (e.g. shape ({x.shape[-1]},)) "
            "or a shape of 1s for a shared slope."
        ) from None

    @tf.custom_gradient
    def _prelu(x, alpha):
        positive = x > 0
        y = tf.where(positive, x, alpha * x)

        def grad(g):
            dx = tf.where(positive, g, g * alpha)
            dalpha = sum_to_shape(g * tf.minimum(x, tf.zeros((), x.dtype)), tf.shape(alpha))
            return dx, dalpha

        return y, grad

    return _prelu(x, alpha)


@_register
def sigmoid(x):
    """Logistic sigmoid, mapping reals to (0, 1).

    The output layer of binary and multi-label classifiers (pair it with
    binary cross-entropy or focal loss) and the gate of LSTM/GRU cells. It
    saturates for large |x|, so it is a poor hidden-layer activation. The
    output carries its logits (`_keras_logits`) like Keras's own sigmoid, so a
    binary cross-entropy or focal loss that follows computes from the logits, stably.

    Formula:
        sigmoid(x) = 1 / (1 + exp(-x))

    Gradient:
        sigmoid'(x) = y * (1 - y),  y = sigmoid(x)
        Computed from the saved output with the fused `SigmoidGrad` kernel.

    Args:
        x: Floating-point tensor (logits).

    Returns:
        Tensor of the same shape and dtype as `x`, in (0, 1) (exactly 0 or 1
        only where the dtype rounds).

    Example:
    >>> import keras_afl
    >>> keras_afl.activations.sigmoid([0.0, 1.0]).numpy().tolist()
    [0.5, 0.731...]
    """
    x = as_float_tensor(x)

    @tf.custom_gradient
    def _sigmoid(x):
        y = tf.math.sigmoid(x)

        def grad(g):
            return tf.raw_ops.SigmoidGrad(y=y, dy=g)

        return y, grad

    return _attach_logits(_sigmoid(x), x, "sigmoid")


@_register
def tanh(x):
    """Hyperbolic tangent, mapping reals to (-1, 1).

    Zero-centred, with four times sigmoid's slope at 0; still saturates for
    large |x|. Used in recurrent cells and shallow networks.

    Formula:
        tanh(x) = (exp(x) - exp(-x)) / (exp(x) + exp(-x))

    Gradient:
        tanh'(x) = 1 - y**2,  y = tanh(x)
        Computed from the saved output with the fused `TanhGrad` kernel.

    Args:
        x: Floating-point tensor.

    Returns:
        Tensor of the same shape and dtype as `x`.

    Example:
    >>> import keras_afl
    >>> keras_afl.activations.tanh([0.0, 1.0]).numpy().tolist()
    [0.0, 0.7615...]
    """
    x = as_float_tensor(x)

    @tf.custom_gradient
    def _tanh(x):
        y = tf.math.tanh(x)

        def grad(g):
            return tf.raw_ops.TanhGrad(y=y, dy=g)

        return y, grad

    return _tanh(x)


@_register
def softmax(x, axis=-1):
    """Softmax: turns a vector of scores into a probability distribution.

    The output layer of single-label multi-class classifiers; pair it with
    categorical cross-entropy (or categorical focal loss). The output carries
    its logits and axis, so a keras_afl cross-entropy over the same axis
    computes from the logits, stably (and, for the last axis, `_keras_logits`,
    which Keras's own losses read, as after Keras's softmax).

    Formula:
        softmax(x)_i = exp(x_i - max(x)) / sum_j exp(x_j - max(x))

    Gradient:
        Jacobian  J_ij = s_i (delta_ij - s_j);  J is symmetric, so the
        vector-Jacobian product for an upstream gradient g is
        s * (g - sum_j g_j s_j)           (sums along `axis`)

    Args:
        x: Floating-point tensor.
        axis: Int, or tuple or list of distinct ints: the axis (axes) over
            which the output sums to 1 (a one-element tuple is that axis).

    Returns:
        Tensor of the same shape and dtype as `x`.

    Example:
    >>> import keras_afl
    >>> keras_afl.activations.softmax([[0.0, 0.0], [0.0, 1000.0]]).numpy().tolist()
    [[0.5, 0.5], [0.0, 1.0]]
    """
    x = as_float_tensor(x)
    axis = softmax_axis(axis, x.shape.rank)
    several = isinstance(axis, tuple)

    @tf.custom_gradient
    def _softmax(x):
        if several:
            y = tf.exp(x - tf.reduce_logsumexp(x, axis=axis, keepdims=True))
        else:
            y = tf.nn.softmax(x, axis=axis)

        def grad(g):
            return y * (g - tf.reduce_sum(g * y, axis=axis, keepdims=True))

        return y, grad

    y = _softmax(x)
    return y if several else _attach_logits(y, x, "softmax", axis)


# Bit pattern of -0.0 in the unsigned integer of each float's width.
_SIGN_BIT = {tf.float16: (tf.uint16, 0x8000), tf.bfloat16: (tf.uint16, 0x8000),
             tf.float32: (tf.uint32, 0x8000_0000), tf.float64: (tf.uint64, 0x8000_0000_0000_0000)}


def _is_negative(x):
    """x < 0 by the IEEE sign bit: -0.0 is not negative, subnormals are.

    TensorFlow's CPU kernels flush subnormal operands to zero, so `x < 0` is
    False for x = -1e-45 in float32; reading the bits is exact in every mode.
    A NaN counts as negative or not by its sign bit.
    """
    uint, sign = _SIGN_BIT[x.dtype]
    return tf.bitcast(x, uint) > tf.constant(sign, uint)


@_register
def elu(x, alpha=1.0):
    """Exponential linear unit.

    Like ReLU for x > 0, smooth and saturating at -alpha for x -> -inf: mean
    activations nearer zero and no dead units. A good hidden activation for
    deep MLPs.

    Formula:
        elu(x) = x if x > 0 else alpha * (exp(x) - 1)      (computed with expm1)

    Gradient:
        elu'(x) = 1 if x > 0 else y + alpha,  y = elu(x)   (elu'(0) = 1, as TF)
        With alpha = 1 it is TensorFlow's fused `EluGrad` kernel, which picks
        the branch from the sign of y: exact, since y rounds to 0 only where
        exp(x) rounds to 1. For any other alpha the branch comes from the sign
        of x itself, so alpha = 0 gives 0 for x < 0 and a tiny x < 0 whose
        output underflows to 0 still gets alpha; subnormal x count as negative
        although TensorFlow's CPU kernels flush them to 0.

    Args:
        x: Floating-point tensor.
        alpha: Saturation value for negative inputs; a finite number >= 0.

    Returns:
        Tensor of the same shape and dtype as `x`.

    Example:
    >>> import keras_afl
    >>> keras_afl.activations.elu([-1.0, 0.0, 2.0]).numpy().tolist()
    [-0.632..., 0.0, 2.0]

    Reference:
        Clevert, Unterthiner & Hochreiter, "Fast and Accurate Deep Network
        Learning by Exponential Linear Units (ELUs)", ICLR 2016.
    """
    x = as_float_tensor(x)
    a = check_number(alpha, "alpha", low=0.0)

    if a == 1.0:

        @tf.custom_gradient
        def _elu(x):
            y = tf.nn.elu(x)

            def grad(g):
                return tf.raw_ops.EluGrad(gradients=g, outputs=y)

            return y, grad

    else:
        a_t = tf.constant(a, x.dtype)

        @tf.custom_gradient
        def _elu(x):
            # tf.nn.elu saturates at -1 on the negative side: no overflow in the
            # branch that tf.where discards.
            e = tf.nn.elu(x)
            y = tf.where(x > 0, x, a_t * e)

            def grad(g):
                # From x, not y: y is -0.0 for every x < 0 when alpha = 0.
                return tf.where(_is_negative(x), g * (y + a_t), g)

            return y, grad

    return _elu(x)


@_register
def selu(x):
    """Scaled exponential linear unit (self-normalising networks).

    With LeCun-normal initialisation and no batch normalisation (use
    AlphaDropout, not Dropout), activations keep mean 0 and variance 1 layer
    after layer.

    Formula:
        selu(x) = lambda * (x if x > 0 else alpha * (exp(x) - 1))
        lambda = 1.0507009873554805, alpha = 1.6732632423543772

    Gradient:
        selu'(x) = lambda if x > 0 else y + lambda * alpha   (selu'(0) = lambda)
        Computed from the saved output with the fused `SeluGrad` kernel:
        the same program as `tf.nn.selu` and `keras.activations.selu`, with
        their one inexact band. In graph mode TensorFlow's kernel computes
        exp(x) - 1 in the input dtype, so where exp(x) rounds to 1 (-x below
        ~3e-8 in float32, ~2.4e-4 in float16, ~2e-3 in bfloat16; never in
        float64) the output is 0 and the gradient lambda instead of
        lambda * alpha. Under XLA both are exact.

    Args:
        x: Floating-point tensor.

    Returns:
        Tensor of the same shape and dtype as `x`.

    Example:
    >>> import keras_afl
    >>> keras_afl.activations.selu([0.0, 1.0]).numpy().tolist()
    [0.0, 1.0507...]

    Reference:
        Klambauer et al., "Self-Normalizing Neural Networks", NeurIPS 2017.
    """
    x = as_float_tensor(x)

    @tf.custom_gradient
    def _selu(x):
        y = tf.nn.selu(x)

        def grad(g):
            return tf.raw_ops.SeluGrad(gradients=g, outputs=y)

        return y, grad

    return _selu(x)
