"""TensorFlow: `tf.custom_gradient` (keyword arguments fail in graph mode: tensors only), the
array operations the formulas use, and the kernels: TensorFlow's fused gradient ops (`ReluGrad`,
`LeakyReluGrad`, `SigmoidGrad`, `TanhGrad`, `EluGrad`, `SeluGrad`), which compute the documented
derivatives from the saved output in one pass and have registered gradients of their own (so every
backward pass is itself differentiable). The losses' runner (plain, or two XLA-compiled kernels
from a measured crossover size) is `_runner`; the logits of a graph tensor, `_logits`."""

import tensorflow as tf

from keras_afl._backend import numpy_names
from keras_afl._backend._tensorflow._logits import made_by_op

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


@numpy_names(tf.math, tf)
class ops:
    """The operations the formulas use (NumPy names, `axis`/`keepdims` keywords)."""

    sigmoid = staticmethod(tf.sigmoid)
    relu = staticmethod(tf.nn.relu)

    # ---- activation kernels: (value, derivative) pairs with TensorFlow's fused ops.

    ELU_HALF_IN_FLOAT32 = False  # tf.nn.elu/selu as they are: the same programs as Keras's

    @staticmethod
    def is_float_tensor(x):
        """False: TensorFlow converts inside a traced graph once, not per step."""
        return False

    @staticmethod
    def native(name, *params):
        """None: a `tf.custom_gradient` costs nothing per step in a traced graph, and the
        kernels beneath are TensorFlow's own already (`relu_grad` is `ReluGrad`, ...)."""
        return None

    @staticmethod
    def relu_grad(g, y):
        """g where y = relu(x) > 0, else 0 (`ReluGrad`)."""
        return tf.raw_ops.ReluGrad(gradients=g, features=y)

    @staticmethod
    def leaky_relu(x, slope):
        """x where x > 0, else slope * x; `slope` a Python float (`LeakyRelu`; in float64, whose
        slope the kernel would round to float32, a `tf.where`)."""
        if x.dtype == tf.float64:
            return tf.where(x > 0, x, tf.constant(slope, x.dtype) * x)
        return tf.raw_ops.LeakyRelu(features=x, alpha=slope)

    @staticmethod
    def leaky_relu_grad(g, x, slope):
        """g where x > 0, else slope * g (slope at x = 0) (`LeakyReluGrad`)."""
        if x.dtype == tf.float64:
            return tf.where(x > 0, g, tf.constant(slope, g.dtype) * g)
        return tf.raw_ops.LeakyReluGrad(gradients=g, features=x, alpha=slope)

    @staticmethod
    def sigmoid_grad(g, y):
        """g y (1 - y) (`SigmoidGrad`)."""
        return tf.raw_ops.SigmoidGrad(y=y, dy=g)

    @staticmethod
    def tanh_grad(g, y):
        """g (1 - y^2) (`TanhGrad`)."""
        return tf.raw_ops.TanhGrad(y=y, dy=g)

    @staticmethod
    def softmax_grad(g, y, axis):
        """y (g - sum(g y, axis)): what TensorFlow's registered softmax gradient computes."""
        return y * (g - tf.reduce_sum(g * y, axis=axis, keepdims=True))

    @staticmethod
    def elu(x, alpha, scale):
        """scale * elu_alpha(x): `tf.nn.elu` (alpha 1) or `tf.nn.selu` (SELU's constants), the
        same programs as Keras's; otherwise alpha times `tf.nn.elu`'s negative branch (which
        saturates at -1: no overflow in the branch `tf.where` discards). Returns (y, saved): the
        alpha constant, which the derivative reuses."""
        if scale != 1.0:
            return tf.nn.selu(x), ()
        if alpha == 1.0:
            return tf.nn.elu(x), ()
        a = tf.constant(alpha, x.dtype)
        return tf.where(x > 0, x, a * tf.nn.elu(x)), (a,)

    @staticmethod
    def elu_grad(g, x, y, saved, alpha, scale):
        """`SeluGrad` / `EluGrad` from the output; for another alpha, g (y + alpha) where x is
        negative by its sign bit (from x, not y: y is -0.0 for every x < 0 when alpha = 0, and
        TensorFlow's CPU kernels flush subnormal x to 0, which `x < 0` would miss)."""
        if scale != 1.0:
            return tf.raw_ops.SeluGrad(gradients=g, outputs=y)
        if alpha == 1.0:
            return tf.raw_ops.EluGrad(gradients=g, outputs=y)
        return tf.where(_is_negative(x), g * (y + saved[0]), g)

    # ---- the losses (keras_afl.losses): the runner and its hooks in the loss bodies

    KEEPS_ROW_STATISTICS = True  # the compiled forward hands per-row sums to the backward

    @staticmethod
    def run_loss(body, settings, x, tensors, *, like=None, rule=None, split=None,
                 kernel_split=None):
        return _runner.run_loss(body, settings, x, tensors, like=like, rule=rule,
                                split=split or kernel_split)

    @staticmethod
    def flag_labels(loss, y):
        return _runner.flag_labels(loss, y)

    @staticmethod
    def flag_samples(loss, bad):
        return _runner.flag_samples(loss, bad)

    @staticmethod
    def class_sum(v, keepdims=True):
        """sum(v, axis=-1): in a compiled kernel on CPU, as a product with a column of ones.

        XLA's CPU backend computes a reduction along a short last axis (the class axis) one
        element at a time, and the element-wise work feeding it (exp, log, relu) the same way;
        as the input of a matrix product both are vectorised. Measured at 2^20 x 16 float32:
        hinge's relu-and-mean 58 -> 10 ms, BCE's softplus-and-mean 88 -> 42 ms, softmax's
        exp-and-sum 50 -> 23 ms. Not on GPUs, where TensorFloat-32 may round a product's
        inputs, nor on the plain path.
        """
        k = v.shape[-1]
        if not _runner.IN_KERNEL.get() or k is None or _runner.gpu_visible():
            return tf.reduce_sum(v, -1, keepdims=keepdims)
        out = tf.matmul(tf.reshape(v, [-1, k]), tf.ones([k, 1], v.dtype))
        if v.shape[:-1].is_fully_defined():
            batch = v.shape[:-1].as_list()
            return tf.reshape(out, batch + [1] if keepdims else batch)
        batch = tf.shape(v)[:-1]
        return tf.reshape(out, tf.concat([batch, [1]], 0) if keepdims else batch)

    @staticmethod
    def class_mean(v):
        """mean(v, axis=-1) (see `class_sum`)."""
        if not _runner.IN_KERNEL.get():
            return tf.reduce_mean(v, -1)
        return ops.class_sum(v, keepdims=False) * ops.inv_size(v)

    @staticmethod
    def inv_size(x, axis=-1):
        """1 / x.shape[axis] as a scalar of x's dtype (static when known)."""
        n = x.shape[axis]
        if n is not None:
            return tf.constant(1.0 / n if n else float("nan"), x.dtype)
        return 1.0 / tf.cast(tf.shape(x)[axis], x.dtype)

    @staticmethod
    def side_abs(z, pos, npos):
        """|z| as max(z, -z): its derivative is the side's sign also at z = 0 (TensorFlow's
        Maximum gradient goes to the first argument at a tie: +1, the side z >= 0), where
        abs'(0) = 0 would zero the second derivative. Not z (pos - npos): XLA materialises that
        sign as one more full-size fusion (8 fusions for BCE's value and gradient, not 7)."""
        return tf.maximum(z, -z)

    @staticmethod
    def global_sum(x):
        """x summed over the replicas in sync (a replica context of tf.distribute), else x."""
        ctx = tf.distribute.get_replica_context()
        if ctx is None or ctx.num_replicas_in_sync == 1:
            return x
        return ctx.all_reduce(tf.distribute.ReduceOp.SUM, x)

    clip = staticmethod(tf.clip_by_value)
    pow = staticmethod(tf.pow)
    any = staticmethod(tf.reduce_any)

    SCALAR_WEIGHT_WITH_MASK_FAILS = False  # keras_afl.losses._base._Loss._scalar_weight_broadcast

    take = staticmethod(tf.gather)

    @staticmethod
    def dynamic_shape(x):
        """x's shape as a tensor (a batch size unknown when tracing included)."""
        return tf.shape(x)

    @staticmethod
    def set_static_shape(x, shape):
        """x with its static shape set where a graph lost it (a reshape to a dynamic shape)."""
        if not tf.executing_eagerly():
            x.set_shape(shape)
        return x

    @staticmethod
    def rank(x):
        """x's rank, or None where unknown while tracing."""
        return x.shape.rank

    @staticmethod
    def checked_when_run(value, actual, expected, message):
        """value, once an assertion that actual == expected (known only when the graph runs)
        has passed."""
        with tf.control_dependencies([tf.debugging.assert_equal(actual, expected,
                                                                message=message)]):
            return tf.identity(value)

    # ---- the training-step guard (keras_afl._guard) and the callbacks

    STATELESS_STEPS = False  # steps assign the variables themselves
    GRAPH_STEPS = True  # several steps per execution in one graph; graph-mode assertions
    copy = staticmethod(tf.identity)

    @staticmethod
    def under_xla():
        from keras_afl._keras_compat import under_xla

        return under_xla()

    @staticmethod
    def traced_once(fn):
        """fn as one graph, retraced only for new shapes (a callback's per-batch computation)."""
        return tf.function(fn, reduce_retracing=True)

    # ---- the logits shortcut (keras_afl._logits)

    CARRIES_LOGITS = True

    made_by_op = staticmethod(made_by_op)  # (logits, activation, axis) of a Sigmoid/Softmax op

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

    # Used by the losses (keras_afl.losses).
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
        """Whether x is a graph tensor (tf.function, fit, XLA) rather than a concrete one."""
        try:
            x.op  # noqa: B018 - eager tensors raise AttributeError
        except AttributeError:
            return not tf.executing_eagerly()
        return True

    @staticmethod
    def to_numpy(x):
        return x.numpy()


# Bit pattern of -0.0 in the unsigned integer of each float's width.
_SIGN_BIT = {tf.float16: (tf.uint16, 0x8000), tf.bfloat16: (tf.uint16, 0x8000),
             tf.float32: (tf.uint32, 0x8000_0000), tf.float64: (tf.uint64, 0x8000_0000_0000_0000)}


def _is_negative(x):
    """x < 0 by the IEEE sign bit: -0.0 is not negative, subnormals are (a NaN by its sign bit)."""
    uint, sign = _SIGN_BIT[x.dtype]
    return tf.bitcast(x, uint) > tf.constant(sign, uint)


class LabelErrorBase(tf.errors.InvalidArgumentError, ValueError):
    """The base of `keras_afl.losses.InvalidLabelsError` on TensorFlow: also the
    `InvalidArgumentError` that graph mode's assertion raises, so one `except` catches both."""

    def __init__(self, message):
        super().__init__(None, None, message)


from keras_afl._backend._tensorflow import _runner  # noqa: E402  (it imports this package)
