"""Activation functions with analytic derivatives, on every Keras backend.

relu, leaky_relu, prelu, sigmoid, tanh, softmax, elu and selu: each written once here -- input
conversion, hyper-parameter checks, the forward pass beside its derivative -- over the active
backend's operations and kernels (`keras_afl._backend`), and given to that backend's
custom-derivative mechanism (`tf.custom_gradient`, `jax.custom_vjp`, a `torch.autograd.Function`).
The derivatives are the article's formulas evaluated as the native kernels evaluate them:
TensorFlow's fused gradient ops (`ReluGrad`, `SigmoidGrad`, `TanhGrad`, `EluGrad`, ...), ATen's
`*_backward` kernels, and `jax.nn`'s autodiff (y (1 - y), 1 - y^2 from the saved output; elu's
y + alpha on TensorFlow, alpha (expm1(x) + 1) on JAX, alpha exp(x) on PyTorch): the speed of the built-in
activations, and their rounding in the tails.

Every backward pass is itself differentiable (Hessian-vector products, gradient penalties).
Conventions at kinks are TensorFlow's, on every backend: relu'(0) = 0, leaky_relu'(0) =
prelu'(0) = slope, elu'(0) = 1, selu'(0) = lambda. All functions preserve the input dtype
(float16, bfloat16, float32, float64); Python lists and scalars are taken as float32, integer or
boolean tensors are refused with a TypeError.
"""

from __future__ import annotations

import keras

from keras_afl._backend import adapter, custom_derivative, ops
from keras_afl._grad_utils import as_float, check_number, normalize_axis
from keras_afl._logits import attach_logits

# The backend's adapter is resolved now, at import, not at the first call: that call may be inside
# `torch.compile`, where the import it takes would break the graph (`keras_afl._backend.adapter`).
adapter()

__all__ = ["relu", "leaky_relu", "prelu", "sigmoid", "tanh", "softmax", "elu", "selu"]

# SELU constants (Klambauer et al. 2017), as in tf.nn.selu.
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
_HALF = ("float16", "bfloat16")

_register = keras.saving.register_keras_serializable(package="keras_afl")


@_register
def relu(x):
    """Rectified linear unit.

    The default hidden-layer activation: cheap, non-saturating for x > 0,
    sparse (units with x <= 0 output exactly 0 and get no gradient).

    Formula:
        relu(x) = max(x, 0)

    Gradient:
        relu'(x) = 1 if x > 0 else 0      (relu'(0) = 0, as TensorFlow)
        Computed from the saved output y with each backend's fused kernel
        (TensorFlow's `ReluGrad`, ATen's `threshold_backward`).

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
    o = ops()

    def forward(x):
        return o.relu(x), ()

    def backward(xs, y, saved, g):
        return (o.relu_grad(g, y),)

    return custom_derivative(forward, backward, o.native("relu"))(as_float(x))


@_register
def leaky_relu(x, negative_slope=0.01):
    """Leaky ReLU: ReLU with a small slope for negative inputs.

    Keeps a gradient for x < 0, so units cannot "die"; use it where dead ReLUs
    are a concern (deep networks, GAN discriminators).

    Formula:
        leaky_relu(x) = x if x > 0 else a * x          (a = negative_slope)

    Gradient:
        leaky_relu'(x) = 1 if x > 0 else a            (a at x = 0, as TensorFlow)
        Computed with each backend's fused kernel (TensorFlow's `LeakyReluGrad`,
        ATen's `leaky_relu_backward`; in float64 on TensorFlow, whose slope the
        kernel would round to float32, with `tf.where`).

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
    x = as_float(x)
    a = check_number(negative_slope, "negative_slope")
    o = ops()

    def forward(x):
        return o.leaky_relu(x, a), ()

    def backward(xs, y, saved, g):
        return (o.leaky_relu_grad(g, xs[0], a),)

    return custom_derivative(forward, backward, o.native("leaky_relu", a))(x)


def _broadcast_axes(x_shape, a_shape):
    """The axes of x along which alpha is broadcast, or None if alpha does not broadcast."""
    if len(a_shape) > len(x_shape):
        return None
    lead = len(x_shape) - len(a_shape)
    axes = list(range(lead))
    for i, (xd, ad) in enumerate(zip(x_shape[lead:], a_shape)):
        if ad == xd or xd is None and ad is None:
            continue
        if ad != 1:
            return None
        axes.append(lead + i)
    return tuple(axes)


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
    x = as_float(x)
    alpha = keras.ops.cast(as_float(alpha, "alpha"), keras.backend.standardize_dtype(x.dtype))
    x_shape, a_shape = tuple(x.shape), tuple(alpha.shape)
    axes = _broadcast_axes(x_shape, a_shape)
    if axes is None:
        raise ValueError(
            f"`alpha` of shape {a_shape} cannot be broadcast against `x` of shape "
            f"{x_shape}; give alpha one value per channel (e.g. shape ({x_shape[-1]},)) "
            "or a shape of 1s for a shared slope."
        )
    o = ops()

    def forward(x, alpha):
        positive = x > 0
        return o.where(positive, x, alpha * x), (positive,)

    def backward(xs, y, saved, g):
        x, alpha = xs
        (positive,) = saved
        dalpha = g * o.minimum(x, o.scalar(0.0, x))
        if axes:
            dalpha = o.sum(dalpha, axis=axes, keepdims=True)
        return o.where(positive, g, g * alpha), o.reshape(dalpha, a_shape)

    return custom_derivative(forward, backward)(x, alpha)


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
        Computed from the saved output as the native kernels compute it
        (TensorFlow's `SigmoidGrad`, ATen's `sigmoid_backward`, `jax.nn`'s
        autodiff): in the tails 1 - y rounds, so the derivative is 0 where y
        rounds to 1 (x > ~17 in float32), as in `tf.nn`, `jax.nn` and
        `torch.nn.functional`.

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
    x = as_float(x)
    o = ops()

    def forward(x):
        return o.sigmoid(x), ()

    def backward(xs, y, saved, g):
        return (o.sigmoid_grad(g, y),)

    y = custom_derivative(forward, backward, o.native("sigmoid"))(x)
    return attach_logits(y, x, "sigmoid")


@_register
def tanh(x):
    """Hyperbolic tangent, mapping reals to (-1, 1).

    Zero-centred, with four times sigmoid's slope at 0; still saturates for
    large |x|. Used in recurrent cells and shallow networks.

    Formula:
        tanh(x) = (exp(x) - exp(-x)) / (exp(x) + exp(-x))

    Gradient:
        tanh'(x) = 1 - y**2,  y = tanh(x)
        Computed from the saved output as the native kernels compute it
        (TensorFlow's `TanhGrad`, ATen's `tanh_backward`); 0 where y rounds to
        +-1, as in `tf.nn`, `jax.nn` and `torch.nn.functional`.

    Args:
        x: Floating-point tensor.

    Returns:
        Tensor of the same shape and dtype as `x`.

    Example:
    >>> import keras_afl
    >>> keras_afl.activations.tanh([0.0, 1.0]).numpy().tolist()
    [0.0, 0.7615...]
    """
    o = ops()

    def forward(x):
        return o.tanh(x), ()

    def backward(xs, y, saved, g):
        return (o.tanh_grad(g, y),)

    return custom_derivative(forward, backward, o.native("tanh"))(as_float(x))


def softmax_axis(axis, rank, name="axis"):
    """A softmax's `axis`, checked (the function and the layer): a non-negative int, or a tuple of
    two or more distinct non-negative ints; one axis in a tuple or list is that int. With `rank`
    None (unknown), negative axes stay as given and only types and repeats are checked.
    Raises TypeError/ValueError naming the argument, the value and the fix."""
    axes = normalize_axis(axis, rank, name=name)
    if not isinstance(axes, tuple):
        return axes
    if not axes:
        raise ValueError(
            f"`{name}`={axis!r} names no axis: a softmax over no axes is 1 everywhere. Fix: give "
            "the axis (or tuple of axes) that should sum to 1, e.g. -1 for the last."
        )
    if len(set(axes)) != len(axes):
        raise ValueError(
            f"`{name}`={axis!r} names an axis more than once (as {axes} for an input of rank "
            f"{rank}). Fix: name each axis once, e.g. {tuple(dict.fromkeys(axes))}."
        )
    return axes[0] if len(axes) == 1 else axes


def _softmax_over_axes(o, x, axes):
    """Softmax over the tuple of non-negative `axes` at once: the axes moved last and merged into
    one, the backend's softmax over it, and back (as `keras.ops.softmax` does for a tuple)."""
    rank = len(x.shape)
    last = tuple(range(rank - len(axes), rank))
    moved = o.moveaxis(x, axes, last)
    shape = tuple(moved.shape)
    y = o.softmax(o.reshape(moved, shape[: rank - len(axes)] + (-1,)), axis=-1)
    return o.moveaxis(o.reshape(y, shape), last, axes)


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
        (ATen's `_softmax_backward_data` on PyTorch.)

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
    x = as_float(x)
    axis = softmax_axis(axis, len(x.shape))
    several = isinstance(axis, tuple)
    o = ops()

    def forward(x):
        return (_softmax_over_axes(o, x, axis) if several else o.softmax(x, axis=axis)), ()

    def backward(xs, y, saved, g):
        return (o.softmax_grad(g, y, axis),)

    y = custom_derivative(forward, backward, o.native("softmax", axis))(x)
    return y if several else attach_logits(y, x, "softmax", axis)


def _elu(x, alpha, scale):
    """scale * elu_alpha(x) with its derivative; float16/bfloat16 computed in float32 and rounded
    once where the backend's kernels would round in half precision (`ELU_HALF_IN_FLOAT32`)."""
    o = ops()
    name = o.dtype_name(x)
    if o.ELU_HALF_IN_FLOAT32 and name in _HALF:
        return o.cast(_elu(o.cast(x, "float32"), alpha, scale), name)

    def forward(x):
        return o.elu(x, alpha, scale)  # (y, what its derivative reuses)

    def backward(xs, y, saved, g):
        return (o.elu_grad(g, xs[0], y, saved, alpha, scale),)

    return custom_derivative(forward, backward, o.native("elu", alpha, scale))(x)


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
        As each backend's native kernel computes it: on TensorFlow y + alpha
        from the saved output (`EluGrad` for alpha = 1), which rounds to 0 in
        the far tail as `tf.nn.elu`'s does; alpha * (expm1(x) + 1) on JAX
        (`jax.nn.elu`'s autodiff) and alpha * exp(x) on PyTorch (ATen's
        `elu_backward`, as `F.elu` calls it).
        For alpha != 1 on TensorFlow the branch comes from the sign bit of x,
        so alpha = 0 gives 0 for x < 0 and subnormal x count as negative
        although TensorFlow's CPU kernels flush them to 0. float16/bfloat16 are computed in float32 and rounded once
        on JAX (ATen's kernels do so on PyTorch; TensorFlow's are Keras's).

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
    x = as_float(x)
    return _elu(x, check_number(alpha, "alpha", low=0.0), 1.0)


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
        As each backend's native kernel computes it (TensorFlow's fused
        `SeluGrad` from the output; lambda * alpha * (expm1(x) + 1) on JAX,
        lambda * alpha * exp(x) on PyTorch, as `jax.nn.selu` and ATen's
        `elu_backward` compute it). On TensorFlow the same program as
        `tf.nn.selu` and `keras.activations.selu`, with their one inexact
        band: in graph mode TensorFlow's kernel computes exp(x) - 1 in the
        input dtype, so where exp(x) rounds to 1 (-x below ~3e-8 in float32,
        ~2.4e-4 in float16, ~2e-3 in bfloat16, ~1.1e-16 in float64) the output
        is 0 and the gradient lambda instead of lambda * alpha. Under XLA both
        are exact.

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
    return _elu(as_float(x), SELU_ALPHA, SELU_SCALE)
