"""The activations' forward passes and derivatives, once, for every backend.

Conventions at kinks are TensorFlow's: relu'(0) = 0, leaky_relu'(0) = prelu'(0) = slope,
elu'(0) = 1, selu'(0) = lambda. Every branch is chosen from the input x, never from the output
(elu with alpha = 0 outputs -0.0 for x < 0).

Half precision (float16, bfloat16): elu and selu compute in float32 and round once to the input
dtype, value and derivative, as ATen's elu kernel does (their constants rounded to bfloat16 are
off by up to 0.4 %: selu(-1.234375) came out -1.234375 instead of -1.25). The others call the
backend's kernels (`ops()`), which round once themselves or compute as Keras's own activations do.
"""

from __future__ import annotations

from keras_afl._backend import adapter, custom_derivative, ops
from keras_afl._grad_utils import normalize_axis
from keras_afl._portable._logits import attach_logits

# The backend's adapter is resolved now, at import, not at the first call: that call may be inside
# `torch.compile`, where the import it takes would break the graph (`keras_afl._backend.adapter`).
adapter()

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
HALF_DTYPES = ("float16", "bfloat16")


def relu(x):
    o = ops()

    def forward(x):
        return o.relu(x), ()

    def backward(xs, y, saved, g):
        (x,) = xs
        return (o.relu_grad(g, x),)

    return custom_derivative(forward, backward)(x)


def leaky_relu(x, negative_slope):
    o = ops()

    def forward(x):
        return o.leaky_relu(x, float(negative_slope)), ()

    def backward(xs, y, saved, g):
        (x,) = xs
        return (o.leaky_relu_grad(g, x, float(negative_slope)),)

    return custom_derivative(forward, backward)(x)


def prelu(x, alpha, reduce_to_alpha):
    """`reduce_to_alpha(t)` sums `t` (shaped like x) back to alpha's shape."""
    o = ops()

    def forward(x, alpha):
        return o.where(x > 0, x, alpha * x), ()

    def backward(xs, y, saved, g):
        x, alpha = xs
        dx = o.where(x > 0, g, g * alpha)
        dalpha = reduce_to_alpha(g * o.minimum(x, o.zeros_like(x)))
        return dx, dalpha

    return custom_derivative(forward, backward)(x, alpha)


def sigmoid(x):
    o = ops()

    def forward(x):
        return o.sigmoid(x), ()

    def backward(xs, y, saved, g):
        # sigmoid(x) * sigmoid(-x), not y * (1 - y): 1 - y cancels for large x (TensorFlow's
        # SigmoidGrad is off by 1e-3 relative at x = 30 in float64).
        (x,) = xs
        return (g * y * o.sigmoid(-x),)

    # The output carries its logits for the cross-entropies (PyTorch; JAX arrays refuse them).
    return attach_logits(custom_derivative(forward, backward)(x), x, "sigmoid")


def tanh(x):
    o = ops()

    def forward(x):
        return o.tanh(x), ()

    def backward(xs, y, saved, g):
        # Away from 0, sech(x)^2 = 4 e / (1 + e)^2 with e = exp(-2|x|): no cancellation (1 - y^2
        # is 0 for |x| >= 19 in float64, where the exact value is still 1e-16 or more).
        # Near 0, 1 - y^2 (whose own derivative, -2 y y', keeps second derivatives exact).
        (x,) = xs
        e = o.exp(-2 * o.abs(x))
        return (g * o.where(o.abs(x) < 0.5, 1 - y * y, 4 * e / ((1 + e) * (1 + e))),)

    return custom_derivative(forward, backward)(x)


def softmax_axis(axis, rank, name="axis"):
    """A softmax's `axis`, checked (every backend, the function and the layer): a non-negative int,
    or a tuple of two or more distinct non-negative ints; one axis in a tuple or list is that int.
    With `rank` None (unknown), negative axes stay as given and only types and repeats are checked.
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


def softmax(x, axis):
    """`axis`: a non-negative int, or a tuple of them (the output sums to 1 over all of them; no
    logits recorded, as on TensorFlow)."""
    o = ops()
    several = isinstance(axis, tuple)

    def forward(x):
        return (_softmax_over_axes(o, x, axis) if several else o.softmax(x, axis=axis)), ()

    def backward(xs, y, saved, g):
        # s * (g - <g, s>), the inner product over every softmax axis.
        return (y * (g - o.sum(g * y, axis=axis, keepdims=True)),)

    y = custom_derivative(forward, backward)(x)
    return y if several else attach_logits(y, x, "softmax", axis)


def elu(x, alpha, scale=1.0):
    """scale * elu_alpha(x); selu is elu with SELU's alpha and scale.

    float16/bfloat16 inputs are computed in float32 and rounded once (value and derivative:
    the casts are differentiated by the backend).
    """
    o = ops()
    name = o.dtype_name(x)
    if name in HALF_DTYPES:
        return o.cast(_elu(o, o.cast(x, "float32"), alpha, scale), name)
    return _elu(o, x, alpha, scale)


def _elu(o, x, alpha, scale):
    a = o.scalar(alpha, x)
    s = o.scalar(scale, x)

    def forward(x):
        return o.where(x > 0, s * x, (s * a) * o.expm1(o.minimum(x, o.zeros_like(x)))), ()

    def backward(xs, y, saved, g):
        # s a exp(x) for x < 0, not y + s a, which cancels for large negative x.
        (x,) = xs
        return (o.where(x >= 0, s * g, g * ((s * a) * o.exp(o.minimum(x, o.zeros_like(x))))),)

    return custom_derivative(forward, backward)(x)
