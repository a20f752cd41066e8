"""The activations' forward passes and derivatives, once, for every backend.

Conventions at kinks are TensorFlow's: relu'(0) = 0, leaky_relu'(0) = prelu'(0) = slope,
elu'(0) = 1, selu'(0) = lambda. Every branch is chosen from the input x, never from the output
(elu with alpha = 0 outputs -0.0 for x < 0). Half precision (float16, bfloat16) is computed in
the input dtype, as the native kernels do.
"""

from __future__ import annotations

from keras_afl._backend import custom_derivative, ops
from keras_afl._portable._logits import attach_logits

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


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


def softmax(x, axis):
    o = ops()

    def forward(x):
        return o.softmax(x, axis=axis), ()

    def backward(xs, y, saved, g):
        return (y * (g - o.sum(g * y, axis=axis, keepdims=True)),)

    return attach_logits(custom_derivative(forward, backward)(x), x, "softmax", axis)


def elu(x, alpha, scale=1.0):
    """scale * elu_alpha(x); selu is elu with SELU's alpha and scale."""
    o = ops()
    a = o.scalar(alpha, x)
    s = o.scalar(scale, x)

    def forward(x):
        return o.where(x > 0, s * x, (s * a) * o.expm1(o.minimum(x, o.zeros_like(x)))), ()

    def backward(xs, y, saved, g):
        # s a exp(x) for x < 0, not y + s a, which cancels for large negative x.
        (x,) = xs
        return (o.where(x >= 0, s * g, g * ((s * a) * o.exp(o.minimum(x, o.zeros_like(x))))),)

    return custom_derivative(forward, backward)(x)
