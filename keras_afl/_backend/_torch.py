"""PyTorch: a `torch.autograd.Function` per function, and the array operations the formulas use.

Inputs and the output are saved with `save_for_backward`, which keeps them connected to the
graph for a second differentiation. Intermediates made inside `forward` would be detached there,
so when the backward pass runs with gradients enabled (`create_graph=True`: it is itself being
differentiated) it recomputes them from the inputs; otherwise it reuses them.
"""

import torch

name = "torch"


def custom_derivative(forward, backward):
    class _Function(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *xs):
            y, saved = forward(*xs)
            ctx.save_for_backward(*xs, y)
            ctx.saved = saved
            return y

        @staticmethod
        def backward(ctx, g):
            *xs, y = ctx.saved_tensors
            saved = ctx.saved
            if torch.is_grad_enabled() and saved:
                saved = forward(*xs)[1]  # connected to the graph, for second derivatives
            return tuple(backward(tuple(xs), y, saved, g))

    _Function.__name__ = getattr(forward, "__name__", "keras_afl_function")

    def f(*xs):
        return _Function.apply(*xs)

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
