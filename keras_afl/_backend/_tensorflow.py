"""TensorFlow: `tf.custom_gradient` (keyword arguments fail in graph mode: tensors only), and
the array operations the formulas use."""

import tensorflow as tf

name = "tensorflow"


def custom_derivative(forward, backward):
    @tf.custom_gradient
    def f(*xs):
        y, saved = forward(*xs)

        def grad(g):
            grads = tuple(backward(xs, y, saved, g))
            return grads if len(grads) > 1 else grads[0]

        return y, grad

    return f


class ops:
    """The operations the formulas use (NumPy names, `axis`/`keepdims` keywords)."""

    where = staticmethod(tf.where)
    exp = staticmethod(tf.exp)
    expm1 = staticmethod(tf.math.expm1)
    log = staticmethod(tf.math.log)
    log1p = staticmethod(tf.math.log1p)
    abs = staticmethod(tf.abs)
    minimum = staticmethod(tf.minimum)
    maximum = staticmethod(tf.maximum)
    tanh = staticmethod(tf.tanh)
    sigmoid = staticmethod(tf.sigmoid)
    softplus = staticmethod(tf.math.softplus)
    relu = staticmethod(tf.nn.relu)
    zeros_like = staticmethod(tf.zeros_like)

    @staticmethod
    def relu_grad(g, x):
        """g where x > 0, else 0 (relu's derivative times g; 0 at x = 0)."""
        return tf.where(x > 0, g, tf.zeros_like(g))

    @staticmethod
    def leaky_relu(x, slope):
        """x where x > 0, else slope * x; `slope` a Python float."""
        return tf.where(x > 0, x, x * tf.constant(slope, x.dtype))

    @staticmethod
    def leaky_relu_grad(g, x, slope):
        """g where x > 0, else slope * g (slope at x = 0); `slope` a Python float."""
        return tf.where(x > 0, g, g * tf.constant(slope, g.dtype))

    @staticmethod
    def sum(x, axis=None, keepdims=False):
        return tf.reduce_sum(x, axis=axis, keepdims=keepdims)

    @staticmethod
    def max(x, axis=None, keepdims=False):
        return tf.reduce_max(x, axis=axis, keepdims=keepdims)

    @staticmethod
    def softmax(x, axis=-1):
        return tf.nn.softmax(x, axis=axis)

    @staticmethod
    def scalar(value, like):
        return tf.constant(value, dtype=like.dtype)

    @staticmethod
    def dtype_name(x):
        return x.dtype.name

    # Used by the portable losses (keras_afl._portable.losses).
    floor = staticmethod(tf.floor)
    isnan = staticmethod(tf.math.is_nan)
    ones_like = staticmethod(tf.ones_like)
    reshape = staticmethod(tf.reshape)
    moveaxis = staticmethod(tf.experimental.numpy.moveaxis)
    expand_dims = staticmethod(tf.expand_dims)
    squeeze = staticmethod(tf.squeeze)

    @staticmethod
    def cast(x, dtype):
        """x as the float/int dtype named `dtype` ("float32", "int32", ...)."""
        return tf.cast(x, dtype)

    @staticmethod
    def constant(value, dtype, like):
        """A tensor of `value` (a number or nested list) in `dtype`, on `like`'s device."""
        return tf.constant(value, dtype)

    @staticmethod
    def all(x):
        """Whether every element of the boolean x is True, as a 0-d boolean tensor."""
        return tf.reduce_all(x)

    @staticmethod
    def take_last(x, indices):
        """x[..., indices[...]]: one entry per row of the last axis (indices: x's shape[:-1])."""
        return tf.gather(x, indices, batch_dims=len(x.shape) - 1)

    @staticmethod
    def one_hot(indices, depth, like):
        """One-hot rows of length `depth` in `like`'s dtype (indices in [0, depth))."""
        return tf.one_hot(indices, depth, dtype=like.dtype)

    @staticmethod
    def is_traced(x):
        """Whether a graph is being built (tf.function) rather than run eagerly."""
        return not tf.executing_eagerly()

    @staticmethod
    def to_numpy(x):
        return x.numpy()
