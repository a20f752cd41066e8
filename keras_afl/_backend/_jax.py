"""JAX: `jax.custom_vjp`, and the array operations the formulas use, as `jax.numpy`/`jax.nn`.

The residuals are the inputs and the output; under a second differentiation JAX differentiates
`forward` and `backward` themselves, so reverse-over-reverse Hessian-vector products are exact.
`jax.custom_vjp` functions have no forward-mode derivative of their own: `jax.jvp`, `jax.jacfwd`
and `jax.linearize` of a keras_afl function raise a TypeError that names the reverse-mode
alternatives (`FORWARD_MODE_MESSAGE`), as PyTorch's adapter does for `torch.func.jvp`. Forward
over reverse works: `jax.hessian` (jacfwd of jacrev) and `jax.jacfwd(jax.grad(f))` differentiate
`forward` and `backward` as written, like reverse over reverse.
"""

import jax
import jax.numpy as jnp

from keras_afl._backend import numpy_names
from keras_afl._backend._portable import LabelErrorBase, PortableOps  # noqa: F401

name = "jax"

FORWARD_MODE_MESSAGE = (
    "keras_afl's functions have reverse-mode derivatives only (a vector-Jacobian product written "
    "beside each forward pass, given to jax.custom_vjp), so forward-mode differentiation of the "
    "function itself (jax.jvp, jax.jacfwd, jax.linearize) is not available. Fix: use reverse "
    "mode: jax.vjp or jax.grad for products with the Jacobian, jax.jacrev for Jacobians; for "
    "Hessians jax.hessian works (forward over reverse), as does jax.jacrev(jax.jacrev(f))."
)


def custom_derivative(forward, backward):
    @jax.custom_vjp
    def f(*xs):
        return forward(*xs)[0]

    def f_fwd(*xs):
        y, saved = forward(*xs)
        return y, (xs, y, saved)

    def f_bwd(residuals, g):
        xs, y, saved = residuals
        grads = tuple(backward(xs, y, saved, g))
        # custom_vjp needs a cotangent for every input: zeros where there is no gradient.
        return tuple(jnp.zeros_like(x) if d is None else d for x, d in zip(xs, grads))

    f.defvjp(f_fwd, f_bwd)

    def call(*xs):
        try:
            return f(*xs)
        except TypeError as e:  # JAX's "can't apply forward-mode autodiff (jvp) to a custom_vjp"
            if "forward-mode" in str(e) and "custom_vjp" in str(e):
                raise TypeError(FORWARD_MODE_MESSAGE) from e
            raise

    return call


_HALF = (jnp.float16, jnp.bfloat16)


def _rounded_once(fn, x, **kwargs):
    """fn(x); for float16/bfloat16 x computed in float32 and rounded once to x's dtype (in the
    input dtype jax.nn.softmax missed the correctly rounded float16 value for 36 % of rows of
    3 in [-20, 5], sigmoid for 28 %; XLA's CPU kernels widen half precision anyway)."""
    if x.dtype in _HALF:
        return fn(x.astype(jnp.float32), **kwargs).astype(x.dtype)
    return fn(x, **kwargs)


def _scaled(x, factor):
    """factor * x for a Python float `factor`, rounded once to x's dtype (float32 arithmetic for
    half precision, where the factor itself would be rounded first)."""
    if x.dtype in _HALF:
        return (x.astype(jnp.float32) * jnp.float32(factor)).astype(x.dtype)
    return x * jnp.asarray(factor, x.dtype)


@numpy_names(jnp)
class ops(PortableOps):
    """The operations the formulas use (NumPy names, `axis`/`keepdims` keywords)."""


    @staticmethod
    def sigmoid(x):
        return _rounded_once(jax.nn.sigmoid, x)

    relu = staticmethod(jax.nn.relu)

    # ---- activation kernels: the derivatives as `jax.nn`'s autodiff evaluates them.

    ELU_HALF_IN_FLOAT32 = True  # elu/selu of float16/bfloat16 computed in float32, rounded once

    @staticmethod
    def relu_grad(g, y):
        """g where y = relu(x) > 0, else 0."""
        return jnp.where(y > 0, g, jnp.zeros_like(g))

    @staticmethod
    def leaky_relu(x, slope):
        """x where x > 0, else slope * x; `slope` a Python float (float32 for half-precision x:
        one rounding of the product, as ATen's kernel, not two)."""
        return jnp.where(x > 0, x, _scaled(x, slope))

    @staticmethod
    def leaky_relu_grad(g, x, slope):
        """g where x > 0, else slope * g (slope at x = 0); `slope` a Python float."""
        return jnp.where(x > 0, g, _scaled(g, slope))

    @staticmethod
    def sigmoid_grad(g, y):
        return g * (y * (1 - y))

    @staticmethod
    def tanh_grad(g, y):
        return g * (1 - y * y)

    @staticmethod
    def softmax_grad(g, y, axis):
        return y * (g - jnp.sum(g * y, axis=axis, keepdims=True))

    @staticmethod
    def elu(x, alpha, scale):
        """(scale elu_alpha(x), (expm1(min(x, 0)),)), as `jax.nn.elu`/`selu` compute it."""
        a, s = jnp.asarray(alpha, x.dtype), jnp.asarray(scale, x.dtype)
        em = jnp.expm1(jnp.minimum(x, 0))
        return jnp.where(x > 0, s * x, (s * a) * em), (em,)

    @staticmethod
    def elu_grad(g, x, y, saved, alpha, scale):
        """scale g for x >= 0, g scale alpha (expm1(x) + 1) below: what `jax.nn.elu`'s autodiff
        computes (expm1's derivative is its output plus 1; elu'(0) = scale, as TensorFlow)."""
        s = jnp.asarray(scale, x.dtype)
        (em,) = saved
        return jnp.where(x >= 0, s * g, g * ((s * jnp.asarray(alpha, x.dtype)) * (em + 1)))

    # ---- the losses (keras_afl.losses)

    clip = staticmethod(jnp.clip)
    pow = staticmethod(jnp.power)
    any = staticmethod(jnp.any)
    take = staticmethod(jnp.take)
    CHECK_OUTSIDE_GRAPH = None  # labels traced by jax.jit: NaN and a verdict (keras_afl._guard)
    SCALAR_WEIGHT_WITH_MASK_FAILS = False  # keras_afl.losses._base._Loss._scalar_weight_broadcast

    # ---- the training-step guard (keras_afl._guard) and the callbacks

    STATELESS_STEPS = True  # a step takes and returns the state (Keras's JAX trainer)
    copy = staticmethod(jnp.copy)

    # ---- the logits shortcut (keras_afl._logits)

    CARRIES_LOGITS = False  # no shortcut: jax.jit's tracers take no attributes

    sum = staticmethod(jnp.sum)
    max = staticmethod(jnp.max)

    @staticmethod
    def softmax(x, axis=-1):
        return _rounded_once(jax.nn.softmax, x, axis=axis)

    @staticmethod
    def scalar(value, like):
        """`value` as a 0-d array of `like`'s dtype (no promotion of float16/float64)."""
        return jnp.asarray(value, dtype=like.dtype)

    @staticmethod
    def dtype_name(x):
        return jnp.dtype(x.dtype).name

    # Used by the losses (keras_afl.losses).
    moveaxis = staticmethod(jnp.moveaxis)
    expand_dims = staticmethod(jnp.expand_dims)
    squeeze = staticmethod(jnp.squeeze)

    @staticmethod
    def cast(x, dtype):
        """x as the float/int dtype named `dtype` ("float32", "int32", ...)."""
        return x if jnp.dtype(x.dtype).name == dtype else x.astype(dtype)

    @staticmethod
    def constant(value, dtype, like):
        """A tensor of `value` (a number or nested list) in `dtype`, on `like`'s device."""
        return jnp.asarray(value, dtype=dtype)

    @staticmethod
    def all(x):
        """Whether every element of the boolean x is True, as a 0-d boolean tensor."""
        return jnp.all(x)

    @staticmethod
    def take_last(x, indices):
        """x[..., indices[...]]: one entry per row of the last axis (indices: x's shape[:-1])."""
        return jnp.take_along_axis(x, indices[..., None], axis=-1)[..., 0]

    @staticmethod
    def one_hot(indices, depth, like):
        """One-hot rows of length `depth` in `like`'s dtype (indices in [0, depth))."""
        return jax.nn.one_hot(indices, depth, dtype=like.dtype)

    @staticmethod
    def is_traced(x):
        """Whether x is being traced (jax.jit, vmap, ...) rather than a concrete array."""
        return isinstance(x, jax.core.Tracer)

    @staticmethod
    def to_numpy(x):
        import numpy as np

        return np.asarray(x)
