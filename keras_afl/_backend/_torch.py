"""PyTorch: a `torch.autograd.Function` per function, and the array operations the formulas use.

Inputs and the output are saved with `save_for_backward`, which keeps them connected to the
graph for a second differentiation. Intermediates made inside `forward` would be detached there,
so when the backward pass runs with gradients enabled (`create_graph=True`: it is itself being
differentiated) it recomputes them from the inputs; otherwise it reuses them.
"""

import torch

name = "torch"


class _Function(torch.autograd.Function):
    """One `torch.autograd.Function` for every keras_afl function: the forward and backward
    Python functions come as the first two (non-tensor) arguments of `apply`. (A class made per
    call cost about 50 us a call, more than `F.relu`'s whole forward and backward.)"""

    @staticmethod
    def forward(ctx, forward, backward, *xs):
        y, saved = forward(*xs)
        ctx.save_for_backward(*xs, y)
        ctx.functions = (forward, backward)
        ctx.saved = saved
        return y

    @staticmethod
    def backward(ctx, g):
        *xs, y = ctx.saved_tensors
        forward, backward = ctx.functions
        saved = ctx.saved
        if torch.is_grad_enabled() and saved:
            saved = forward(*xs)[1]  # connected to the graph, for second derivatives
        return (None, None, *backward(tuple(xs), y, saved, g))


def custom_derivative(forward, backward):
    def f(*xs):
        return _Function.apply(forward, backward, *xs)

    f.__name__ = getattr(forward, "__name__", "keras_afl_function")
    return f


class ops:
    """The operations the formulas use (NumPy names, `axis`/`keepdims` keywords)."""

    where = staticmethod(torch.where)
    exp = staticmethod(torch.exp)
    expm1 = staticmethod(torch.expm1)
    log = staticmethod(torch.log)
    log1p = staticmethod(torch.log1p)
    abs = staticmethod(torch.abs)
    minimum = staticmethod(torch.minimum)
    maximum = staticmethod(torch.maximum)
    tanh = staticmethod(torch.tanh)
    sigmoid = staticmethod(torch.sigmoid)
    softplus = staticmethod(torch.nn.functional.softplus)
    relu = staticmethod(torch.relu)
    zeros_like = staticmethod(torch.zeros_like)

    # relu's and leaky_relu's derivatives with ATen's own backward kernels: the same values
    # (g where x > 0; 0 or slope * g otherwise, at x = 0 too) and registered second derivatives,
    # one fused pass; torch.where on this CPU build measured 20x slower than threshold_backward.
    @staticmethod
    def relu_grad(g, x):
        return torch.ops.aten.threshold_backward(g, x, 0)

    @staticmethod
    def leaky_relu(x, slope):
        """x where x > 0, else slope * x; `slope` a Python float."""
        return torch.nn.functional.leaky_relu(x, slope)

    @staticmethod
    def leaky_relu_grad(g, x, slope):
        return torch.ops.aten.leaky_relu_backward(g, x, slope, False)

    @staticmethod
    def sum(x, axis=None, keepdims=False):
        return torch.sum(x) if axis is None else torch.sum(x, dim=axis, keepdim=keepdims)

    @staticmethod
    def max(x, axis=None, keepdims=False):
        return torch.amax(x) if axis is None else torch.amax(x, dim=axis, keepdim=keepdims)

    @staticmethod
    def softmax(x, axis=-1):
        return torch.softmax(x, dim=axis)

    @staticmethod
    def scalar(value, like):
        return torch.tensor(value, dtype=like.dtype, device=like.device)

    @staticmethod
    def dtype_name(x):
        return str(x.dtype).replace("torch.", "")

    # Used by the portable losses (keras_afl._portable.losses).
    floor = staticmethod(torch.floor)
    isnan = staticmethod(torch.isnan)
    ones_like = staticmethod(torch.ones_like)
    reshape = staticmethod(torch.reshape)
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
        """One-hot rows of length `depth` in `like`'s dtype (indices in [0, depth))."""
        return torch.nn.functional.one_hot(indices.long(), depth).to(like.dtype)

    @staticmethod
    def is_traced(x):
        """Whether the code is being compiled (torch.compile) rather than run eagerly."""
        compiler = getattr(torch, "compiler", None)
        return bool(compiler is not None and compiler.is_compiling())

    @staticmethod
    def to_numpy(x):
        x = x.detach().cpu()
        return (x.float() if x.dtype == torch.bfloat16 else x).numpy()
