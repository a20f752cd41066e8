"""PyTorch: one `torch.autograd.Function` for every function, and the array operations the
formulas use.

The Function is written in `torch.func`'s style (a `forward` without ctx, `setup_context`, and
`generate_vmap_rule`), so `torch.func.grad`, `vjp`, `jacrev` and `vmap`, and `torch.compile`,
take it as they take PyTorch's own operations. The forward's intermediates (`saved`) are returned
as extra outputs, marked non-differentiable: `torch.func` accepts only tensors saved with
`save_for_backward`, and only inputs and outputs can be. Inputs and the output are saved too,
which keeps them connected to the graph for a second differentiation; the intermediates are not
(they come out of the forward detached), so when the backward pass runs with gradients enabled
(`create_graph=True`, or nested `torch.func` transforms: it is itself being differentiated) it
recomputes them from the inputs; otherwise it reuses them.

Forward mode (`torch.func.jvp`, `jacfwd`, `hessian`, `torch.autograd.forward_ad`) of a function
with a derivative of our own is refused with a NotImplementedError naming the reverse-mode
alternatives (the activations that run ATen's own op, `ops.native`, take it as PyTorch's do). The derivative is written once, as a
vector-Jacobian product (as `jax.custom_vjp` takes it on JAX, where forward mode is refused too),
and a `jvp` staticmethod would cost `torch.compile` its graphs: Dynamo refuses to trace an
autograd.Function that defines one.
"""

import torch

from keras_afl._backend import numpy_names
from keras_afl._backend._portable import LabelErrorBase, PortableOps  # noqa: F401
from keras_afl._backend._portable import run_loss as _portable_run_loss
from keras_afl._backend._torch._losses import kernel_for

name = "torch"

FORWARD_MODE_MESSAGE = (
    "keras_afl's functions have reverse-mode derivatives only (a vector-Jacobian product written "
    "beside each forward pass), so forward-mode differentiation (torch.func.jvp, "
    "torch.func.jacfwd, torch.func.hessian, torch.autograd.forward_ad) is not available. Fix: use "
    "reverse mode: torch.func.vjp or torch.func.grad for products with the Jacobian, "
    "torch.func.jacrev for Jacobians, and torch.func.jacrev(torch.func.jacrev(f)) for Hessians."
)


# dtype -> its smallest positive subnormal number, exactly (a Python float holds each).
_SMALLEST_SUBNORMAL = {dt: float(torch.nextafter(torch.zeros((), dtype=dt),
                                                 torch.ones((), dtype=dt)))
                       for dt in (torch.float16, torch.bfloat16, torch.float32, torch.float64)}


class _Function(torch.autograd.Function):
    """One `torch.autograd.Function` for every keras_afl function: the forward and backward
    Python functions come as the first two (non-tensor) arguments of `apply`. (A class made per
    call cost about 50 us a call, more than `F.relu`'s whole forward and backward.)

    `forward` returns y alone when the function saves nothing (the activations), else
    `(y, *saved)`."""

    generate_vmap_rule = True  # forward and backward are plain tensor code: torch.func vmaps them

    @staticmethod
    def forward(forward, backward, *xs):
        y, saved = forward(*xs)
        return (y, *saved) if saved else y

    @staticmethod
    def setup_context(ctx, inputs, output):
        forward, backward, *xs = inputs
        if isinstance(output, tuple):
            ctx.mark_non_differentiable(*output[1:])
            ctx.set_materialize_grads(False)  # the intermediates' gradients: never used
            ctx.save_for_backward(*xs, *output)
        else:
            ctx.save_for_backward(*xs, output)
        ctx.functions = (forward, backward, len(xs))

    @staticmethod
    def backward(ctx, g, *unused):
        forward, backward, n = ctx.functions
        tensors = ctx.saved_tensors
        xs, y, saved = tensors[:n], tensors[n], tensors[n + 1:]
        if saved and torch.is_grad_enabled():
            saved = forward(*xs)[1]  # connected to the graph, for second derivatives
        return (None, None, *backward(tuple(xs), y, tuple(saved), g))


def _compiling_check():
    """`torch.compiler.is_compiling` (PyTorch >= 2.3), else Dynamo's own (2.1, 2.2)."""
    check = getattr(getattr(torch, "compiler", None), "is_compiling", None)
    if check is None:
        from torch._dynamo import is_compiling as check
    return check


_is_compiling = _compiling_check()


def _direct_apply():
    """`_Function`'s C-level `apply`, or None where PyTorch lacks what calling it needs.

    `Function.apply` binds its arguments with `inspect.signature` at every call once
    `setup_context` is defined (about 90 us: 15 -> 100 us for relu's forward at 1,000 floats),
    then, outside `torch.func` transforms, unwraps dead `torch.func` wrappers and calls this. We
    call it ourselves there. Private PyTorch API (`torch._C`); without it, `_Function.apply`.
    """
    try:
        active = torch._C._are_functorch_transforms_active
        unwrap = torch._C._functorch.unwrap_if_dead
        c_apply = super(torch.autograd.Function, _Function).apply
    except AttributeError:
        return None
    return active, unwrap, c_apply


_DIRECT = _direct_apply()


def _apply(forward, backward, xs):
    if _is_compiling():
        if not (torch.is_grad_enabled() and any(x.requires_grad for x in xs)):
            # No gradient can be asked for: the forward pass as plain operations, which is what
            # Dynamo itself does with an autograd.Function then. (Dynamo's own inlining passes
            # the ctx as `forward`'s first argument when a setup_context-style `forward(*args)`
            # has more than one tensor argument, and breaks the graph calling it: prelu, losses.)
            return forward(*xs)[0]
        out = _Function.apply(forward, backward, *xs)
    elif _DIRECT is None or _DIRECT[0]():  # inside torch.func transforms
        out = _Function.apply(forward, backward, *xs)
    else:
        unwrap = _DIRECT[1]
        out = _DIRECT[2](forward, backward, *(unwrap(x) for x in xs))
    return out[0] if isinstance(out, tuple) else out


def custom_derivative(forward, backward):
    def f(*xs):
        try:
            return _apply(forward, backward, xs)
        except NotImplementedError as e:  # PyTorch's "You must implement the jvp function ..."
            if "jvp" in str(e):
                raise NotImplementedError(FORWARD_MODE_MESSAGE) from e
            raise

    return f


def _reduction(fn):
    """A NumPy-style reduction (`axis`, `keepdims`) of PyTorch's `fn` (`dim`, `keepdim`)."""

    def reduce(x, axis=None, keepdims=False):
        return fn(x) if axis is None else fn(x, dim=axis, keepdim=keepdims)

    return reduce


@numpy_names(torch)
class ops(PortableOps):
    """The operations the formulas use (NumPy names, `axis`/`keepdims` keywords)."""

    sigmoid = staticmethod(torch.sigmoid)
    relu = staticmethod(torch.relu)

    # ---- activation kernels: ATen's own backward kernels (one fused pass each, with registered
    # second derivatives); torch.where on this CPU build measured 20x slower than
    # threshold_backward.

    ELU_HALF_IN_FLOAT32 = False  # ATen's elu kernels compute half precision in float32 already

    @staticmethod
    def is_float_tensor(x):
        """A floating-point torch.Tensor (a Parameter too) is used where it is, as
        torch.nn.functional does: Keras's conversion costs about 10 us a call in Python (a third
        of F.relu's forward and backward at 2^16 elements) and would only return it."""
        return isinstance(x, torch.Tensor) and x.is_floating_point()

    @staticmethod
    def native(name, *params):
        """ATen's own op where its forward and its autograd derivative are the kernels this
        namespace's `*_grad` methods call, with TensorFlow's conventions at the kinks: relu
        (`threshold_backward` from the output: relu'(0) = 0), leaky_relu (`leaky_relu_backward`:
        slope at 0), sigmoid, tanh (from the output), softmax over one axis
        (`_softmax_backward_data`), elu with alpha = 1 (`elu_backward`, whose left derivative
        at 0 is then 1, TensorFlow's). Called directly, without the autograd.Function: its
        Python cost per call (tens of microseconds) was 0.3-0.9x the whole forward and backward
        of F.relu at 2^16 elements. None for selu, elu with another alpha (the left derivative at
        0 differs) and prelu (a derivative for alpha of our own)."""
        if name in ("relu", "sigmoid", "tanh"):
            return getattr(torch, name)
        if name == "leaky_relu":
            (slope,) = params
            return lambda x: torch.nn.functional.leaky_relu(x, slope)
        if name == "softmax" and isinstance(params[0], int):
            (axis,) = params
            return lambda x: torch.softmax(x, dim=axis)
        if name == "elu" and params == (1.0, 1.0):
            return torch.nn.functional.elu
        return None

    @staticmethod
    def relu_grad(g, y):
        """g where y = relu(x) > 0, else 0."""
        return torch.ops.aten.threshold_backward(g, y, 0)

    @staticmethod
    def leaky_relu(x, slope):
        """x where x > 0, else slope * x; `slope` a Python float."""
        return torch.nn.functional.leaky_relu(x, slope)

    @staticmethod
    def leaky_relu_grad(g, x, slope):
        return torch.ops.aten.leaky_relu_backward(g, x, slope, False)

    @staticmethod
    def sigmoid_grad(g, y):
        return torch.ops.aten.sigmoid_backward(g, y)

    @staticmethod
    def tanh_grad(g, y):
        return torch.ops.aten.tanh_backward(g, y)

    @staticmethod
    def softmax_grad(g, y, axis):
        if isinstance(axis, int):
            return torch.ops.aten._softmax_backward_data(g, y, axis, y.dtype)
        return y * (g - torch.sum(g * y, dim=axis, keepdim=True))

    @staticmethod
    def elu(x, alpha, scale):
        return torch.ops.aten.elu(x, alpha, scale, 1.0), ()

    @staticmethod
    def elu_grad(g, x, y, saved, alpha, scale):
        """ATen's `elu_backward` from the input, as `F.elu`'s own derivative: g scale for x > 0,
        g scale alpha exp(x) at and below 0. ATen takes the left derivative at x = 0, scale
        alpha; TensorFlow's convention (ours) is the right one, scale. They agree when
        alpha = 1 (elu's default). Otherwise (selu) the kernel reads x plus the dtype's smallest
        subnormal: +-0 moves to the right branch and every other x keeps its branch and its
        value (it changes only x's last bit where x is a negative subnormal, where exp(x) = 1
        either way) -- one added pass where a `where(x == 0, ...)` cost three."""
        if alpha != 1.0:
            x = x + _SMALLEST_SUBNORMAL[x.dtype]
        return torch.ops.aten.elu_backward(g, alpha, scale, 1.0, False, x)

    # ---- the losses (keras_afl.losses)

    @staticmethod
    def run_loss(body, settings, x, tensors, *, like=None, rule=None, split=None,
                 kernel_split=None):
        """The portable runner, with ATen's fused operations in place of the body's forward
        and backward where a kernel computes it with these settings (`_losses.KERNELS`)."""
        split = kernel_for(body, settings, tensors, split) or split
        return _portable_run_loss(body, settings, x, tensors, rule=rule, split=split)

    @staticmethod
    def value_range(y):
        """(min, max) of y as Python numbers, in one fused pass (`torch.aminmax`; NaN where
        y holds a NaN), for the label checks; None for an empty y."""
        if y.numel() == 0:
            return None
        low, high = torch.aminmax(y if y.dtype != torch.bool else y.to(torch.uint8))
        return low.item(), high.item()

    pow = staticmethod(torch.pow)
    CHECK_OUTSIDE_GRAPH = staticmethod(torch.compiler.disable)  # in a compiled Keras step
    SCALAR_WEIGHT_WITH_MASK_FAILS = True  # keras_afl.losses._base._Loss._scalar_weight_broadcast

    @staticmethod
    def clip(x, low, high):
        return torch.clamp(x, low, high)

    any = staticmethod(_reduction(torch.any))

    @staticmethod
    def take(a, indices):
        return a[indices.long()]

    # ---- the training-step guard (keras_afl._guard) and the callbacks

    @staticmethod
    def copy(x):
        return x.detach().clone()

    sum = staticmethod(_reduction(torch.sum))
    max = staticmethod(_reduction(torch.amax))

    @staticmethod
    def softmax(x, axis=-1):
        return torch.softmax(x, dim=axis)

    @staticmethod
    def scalar(value, like):
        return torch.tensor(value, dtype=like.dtype, device=like.device)

    @staticmethod
    def dtype_name(x):
        return str(x.dtype).replace("torch.", "")

    # Used by the losses (keras_afl.losses).
    moveaxis = staticmethod(torch.movedim)
    expand_dims = staticmethod(torch.unsqueeze)

    @staticmethod
    def squeeze(x, axis):
        return torch.squeeze(x, dim=axis)

    @staticmethod
    def cast(x, dtype):
        """x as the float/int dtype named `dtype` ("float32", "int32", ...)."""
        return x.to(getattr(torch, dtype))

    @staticmethod
    def constant(value, dtype, like):
        """A tensor of `value` (a number or nested list) in `dtype`, on `like`'s device."""
        return torch.tensor(value, dtype=getattr(torch, dtype), device=like.device)

    @staticmethod
    def all(x):
        """Whether every element of the boolean x is True, as a 0-d boolean tensor."""
        return torch.all(x)

    @staticmethod
    def take_last(x, indices):
        """x[..., indices[...]]: one entry per row of the last axis (indices: x's shape[:-1])."""
        return torch.gather(x, -1, indices.long().unsqueeze(-1)).squeeze(-1)

    @staticmethod
    def one_hot(indices, depth, like):
        """One-hot rows of length `depth` in `like`'s dtype (indices in [0, depth)).

        A comparison with arange(depth), not `F.one_hot`, whose range check reads the indices'
        min and max back to Python: `torch.func.vmap` refuses that."""
        classes = torch.arange(depth, device=indices.device)
        return (indices.long().unsqueeze(-1) == classes).to(like.dtype)

    @staticmethod
    def is_traced(x):
        """Whether x's values cannot be read in Python: while compiled (`torch.compile`), and for
        a tensor batched by `torch.func.vmap` (which refuses `.item()`/`.tolist()`, as JAX's
        `vmap` tracers do). The losses then give bad labels a NaN loss instead of raising. Under
        `torch.func.grad`/`jacrev`/`vjp` values are readable (`to_numpy`), so labels raise as
        they do eagerly."""
        return _is_compiling() or _vmap_batched(x)

    @staticmethod
    def to_numpy(x):
        x = x.detach().cpu()
        if x.dtype == torch.bfloat16:
            x = x.float()
        try:
            return x.numpy()
        except RuntimeError:
            # A tensor of a torch.func grad/jacrev/vjp/jvp level has no storage of its own
            # ("Cannot access data pointer"), but `tolist` reads it.
            import numpy as np

            return np.asarray(x.tolist(), dtype=str(x.dtype).replace("torch.", ""))


def _functorch_predicates():
    """(is a torch.func wrapper, is a vmap wrapper, unwrap one level), or None where missing.

    Private PyTorch API (`torch._C._functorch`): no public predicate exists. Without it a vmapped
    loss's eager label check fails with vmap's own `.item()` error."""
    try:
        f = torch._C._functorch
        return f.is_functorch_wrapped_tensor, f.is_batchedtensor, f.get_unwrapped
    except AttributeError:
        return None


_FUNCTORCH = _functorch_predicates()


def _vmap_batched(x):
    """Whether a `torch.func.vmap` level batches x, under any `torch.func.grad` levels."""
    if _FUNCTORCH is None or not isinstance(x, torch.Tensor):
        return False
    wrapped, batched, unwrap = _FUNCTORCH
    while wrapped(x):
        if batched(x):
            return True
        x = unwrap(x)
    return False
