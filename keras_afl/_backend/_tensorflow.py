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
