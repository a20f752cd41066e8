"""What the JAX and PyTorch backends share: the loss runner with its NaN-or-raise label policy,
and the loss hooks that only TensorFlow's compiled path needs (no-ops here).

The runner turns a loss body (`keras_afl.losses._core._custom_loss`) into a custom derivative
(`jax.custom_vjp`, a `torch.autograd.Function`): the forward runs the body for its loss and keeps
nothing; the backward runs it again from the inputs and calls its `grad` (as TensorFlow's
compiled path does: one pass each way, nothing full-size kept in between), so the backward is
differentiable as written (second derivatives). The softmax losses' `split` pair passes the
per-sample max and log-sum-exp from the forward to the backward.

Labels: eagerly (PyTorch, JAX outside `jax.jit`) bad labels raise an `InvalidLabelsError`, with
one comparison and one reduction on the device and one boolean read back; labels that are
concrete while `y_pred` is traced (closed over by a `jax.jit` function) are checked once, on the
host, when the function is traced. While the labels themselves are traced (`jax.jit`,
`torch.compile`), where nothing can raise, the samples with a bad label get a NaN loss and NaN
gradients (the other samples are unaffected); inside a Keras step the loss also records its
verdict, and the step keeps the weights and raises (`keras_afl._guard`). PyTorch inside a
compiled Keras step runs the check outside Dynamo's graph instead (one graph break).
"""

from __future__ import annotations

from keras_afl import _guard
from keras_afl._backend import adapter, custom_derivative, option

HALF = ("float16", "bfloat16")


class LabelErrorBase(ValueError):
    """The base of `keras_afl.losses.InvalidLabelsError` on JAX and PyTorch."""

    def __init__(self, message):
        super().__init__(message)
        self.message = message


class PortableOps:
    """What the JAX and PyTorch operations namespaces share (`ops` subclasses this): the loss
    hooks, static shapes, and the defaults of the guard's and the logits shortcut's questions."""

    STATELESS_STEPS = False  # Keras's JAX trainer: a step takes and returns the state
    GRAPH_STEPS = False  # TensorFlow: several steps in one graph, graph-mode assertions
    CARRIES_LOGITS = True  # tensors take attributes (not JAX's)
    KEEPS_ROW_STATISTICS = False  # a loss's backward sums its labels again (faster under jax.jit)

    @staticmethod
    def is_float_tensor(x):
        """Whether x is already a floating-point tensor of this backend, to be used as it is
        (`keras_afl._grad_utils.as_float`'s fast path); False sends it through Keras's
        conversion."""
        return False

    @staticmethod
    def native(name, *params):
        """The backend's own op for activation `name` where it is ours exactly (derivative and
        kink conventions included), else None (`keras_afl._backend.custom_derivative`)."""
        return None

    @staticmethod
    def rank(x):
        return len(x.shape)

    @staticmethod
    def dynamic_shape(x):
        return tuple(x.shape)  # always static here

    @staticmethod
    def set_static_shape(x, shape):
        return x

    @staticmethod
    def under_xla():
        return False  # JAX: the guard selects old or new state inside the jitted step instead

    @staticmethod
    def traced_once(fn):
        return fn

    @staticmethod
    def made_by_op(y):
        """Which op made y: never known here (no graph to read)."""
        return None

    @staticmethod
    def flag_labels(loss, y):
        return loss  # labels are flagged only in TensorFlow's graph-mode assertion

    @staticmethod
    def flag_samples(loss, bad):
        return loss

    @staticmethod
    def class_sum(v, keepdims=True):
        return adapter().ops.sum(v, axis=-1, keepdims=keepdims)

    @staticmethod
    def class_mean(v):
        o = adapter().ops
        return o.sum(v, axis=-1) * o.inv_size(v)

    @staticmethod
    def inv_size(x, axis=-1):
        """1 / x.shape[axis] as a scalar of x's dtype."""
        n = x.shape[axis]
        return adapter().ops.scalar(1.0 / n if n else float("nan"), x)

    @staticmethod
    def side_abs(z, pos, npos):
        """|z| as z (pos - npos): its derivative is the side's sign also at z = 0 (max(z, -z)
        splits a tie on JAX, and abs'(0) = 0 would zero the second derivative there)."""
        return z * (pos - npos)

    @staticmethod
    def global_sum(x):
        """x: on JAX under `keras.distribution` a step is one program over the global batch
        (sums are global already); PyTorch has no Keras distribution."""
        return x

    @staticmethod
    def run_loss(body, settings, x, tensors, *, like=None, rule=None, split=None,
                 kernel_split=None):
        return run_loss(body, settings, x, tensors, rule=rule, split=split)


def run_loss(body, settings, x, tensors, *, rule=None, split=None):
    """The per-sample loss of body with its analytic gradient (with respect to x only); x cast to
    float32 first for float16/bfloat16 (autodiff casts the gradient back)."""
    o = adapter().ops
    compute = "float32" if o.dtype_name(x) in HALF else o.dtype_name(x)
    x = o.cast(x, compute)
    if split:
        def forward(*xs):
            return split[0](settings, *xs)

        def backward(xs, y, saved, g):
            return (split[1](settings, g, saved, *xs),) + (None,) * (len(xs) - 1)
    else:
        def forward(*xs):
            return body(settings, *xs)[0], ()

        def backward(xs, y, saved, g):
            return (body(settings, *xs)[1](g),) + (None,) * (len(xs) - 1)

    forward.__name__ = body.__name__.strip("_")
    factor = None
    if rule is not None and option("label_checks") and o.dtype_name(tensors[0]) != "bool":
        factor = _check_labels(o, rule, tensors[0], x)
    if factor is not None:
        # NaN in every entry of a bad sample, and so in its loss and every entry of its gradient
        # (d/dx of x * NaN is NaN whatever the loss's own derivative there, even an exact 0).
        factor = o.cast(factor, compute)
        x = x * factor[..., None]
    loss = custom_derivative(forward, backward)(x, *tensors)
    return loss if factor is None else loss * factor


def _check_labels(o, rule, y, x):
    """Raises an `InvalidLabelsError` where Python runs between the loss and the update; checks
    concrete labels closed over by a traced function once, on the host; returns the NaN factor of
    traced labels' bad samples, having recorded the verdict for a guarded Keras step."""
    if not o.is_traced(y):
        if o.is_traced(x):  # JAX: labels closed over by a jax.jit function
            rule.check_on_host(o.to_numpy(y))
        else:
            rule.check_eagerly(y)
        return None
    if _guard.collecting() and o.CHECK_OUTSIDE_GRAPH is not None:
        # PyTorch: outside Dynamo's trace (a graph break), the check and its message in Python.
        o.CHECK_OUTSIDE_GRAPH(rule.check_eagerly)(y)
        return None
    _guard.record(rule, y)
    return rule.nan_factor(y)
