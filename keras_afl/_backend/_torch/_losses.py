"""PyTorch's loss kernels: overrides of the loss bodies' forward and backward (the `split` pair
of `keras_afl._backend._portable.run_loss`) built from ATen's fused operations, for the settings
where they compute what the body's formula says -- to the same accuracy, per label side: ATen's
own `binary_cross_entropy_with_logits` and `log_softmax`-based `cross_entropy` round a
confidently right sample's loss and gradient to 0 (they subtract numbers near 1), which the
bodies in `keras_afl.losses` do not, and `tests/test_losses_across_backends.py` checks.

Each kernel is keyed by the name of the body it overrides (`KERNELS`); `kernel_for` returns its
pair where `applies(settings, tensors)` says it computes the body (the default settings), else
None, and the body runs. A kernel is never a second copy of a loss: its docstring names the
body and the formula it computes; `tests/test_torch_kernels.py` checks each name against the
family modules, the numbers against the bodies, and counts the operations one call launches.

The forward keeps what the backward reuses (`saved`: non-differentiable outputs of the
`autograd.Function`). A kernel serves first derivatives: where the backward pass is itself
differentiated, the body's own backward runs (`kernel_for`).
"""

from __future__ import annotations

import math

import torch

_LOG_HALF = -math.log(2.0)


def _labels(y, z):
    return y if y.dtype == z.dtype else y.to(z.dtype)


# ---------------------------------------------------------------- binary cross-entropy, logits


def _bce_logits_forward(settings, z, y):
    """`keras_afl.losses.binary._crossentropy._bce_logits` without smoothing, pos_weight or
    ignored entries: mean over the last axis of (1 - y) softplus(z) + y softplus(-z), as
    relu(z) - y z + log1p(exp(-|z|)): for a label of 0 or 1, relu(z) - y z is exactly the
    side's max(+-z, 0) (no rounding), so each side keeps its digits."""
    y = _labels(y, z)
    ce = torch.addcmul(torch.relu(z), y, z, value=-1.0)
    ce = ce + torch.log1p(torch.exp(-torch.abs(z)))
    return ce.mean(-1), ()


def _bce_logits_backward(settings, g, saved, z, y):
    """(1 - y) sigmoid(z) - y sigmoid(-z), times g / N: a lerp between the two sides, exact at
    y = 0 and y = 1 (ATen's lerp returns an end point there), each side's sigmoid its own
    (sigmoid(z) - y rounds a confidently right positive's gradient to 0)."""
    y = _labels(y, z)
    d = torch.lerp(torch.sigmoid(z), -torch.sigmoid(-z), y)
    return d * (g * (1.0 / z.shape[-1])).unsqueeze(-1)


def _bce_applies(settings, tensors):
    return len(settings) == 1 and settings[0] == 0.0 and len(tensors) == 1


# ---------------------------------------------------------------- softmax cross-entropies


def _accurate_log_softmax_parts(z):
    """(log_softmax(z), softmax(z), near, r): `near` marks the entry above 1/2 (at most one
    per row), r = 1 - its probability as the sum of the row's other probabilities (no
    cancellation), so that its log-probability is log1p(-r), to a few ulp also where ATen's
    log_softmax rounds it to 0 (a confidently right row: `categorical._softmax_stats`)."""
    lsm = torch.log_softmax(z, -1)
    p = torch.exp(lsm)
    near = lsm > _LOG_HALF
    r = torch.where(near, 0.0, p).sum(-1, keepdim=True)
    return lsm, p, near, r


def _class_index(ids, k):
    """The class of each id, as an index of shape (..., 1): an invalid id (out of [0, k), or a
    float that is not an integer; label checks off) reads class 0, as `sparse._class_ids`
    maps it (there the loss also flags it where the backend flags samples: TensorFlow's graph)."""
    ok = (ids >= 0) & (ids < k)
    if ids.is_floating_point():
        ok = ok & (ids == torch.floor(ids))
    return torch.where(ok, ids, 0).long().unsqueeze(-1)


def _scce_logits_forward(settings, z, ids):
    """`keras_afl.losses.sparse._scce_logits` without ignore_class: -log_softmax(z)_t, as
    log1p(-r) where the true class's probability is above 1/2."""
    t = _class_index(ids, z.shape[-1])
    lsm, p, near, r = _accurate_log_softmax_parts(z)
    at_t = lsm.gather(-1, t)
    loss = torch.where(near.gather(-1, t), -torch.log1p(-r), -at_t)
    return loss[..., 0], (p, r)


def _scce_logits_backward(settings, g, saved, z, ids):
    """softmax(z) - onehot(t), times g: at the true class -r where its probability is above
    1/2 (softmax - 1 would round to 0), else p_t - 1."""
    p, r = saved
    t = _class_index(ids, z.shape[-1])
    p_t = p.gather(-1, t)
    at_t = torch.where(p_t > 0.5, -r, p_t - 1.0)
    return (p * g.unsqueeze(-1)).scatter(-1, t, at_t * g.unsqueeze(-1))


def _scce_applies(settings, tensors):
    return settings == (None,)


def _cce_logits_forward(settings, z, y):
    """`keras_afl.losses.categorical._cce_logits` without smoothing: -sum(y log_softmax(z)),
    the entry above 1/2 as log1p(-r)."""
    y = _labels(y, z)
    lsm, p, near, r = _accurate_log_softmax_parts(z)
    logp = torch.where(near, torch.log1p(-r), lsm)
    return -(y * logp).sum(-1), (p, r)


def _cce_logits_backward(settings, g, saved, z, y):
    """s softmax(z) - y (s = sum(y)), times g; where softmax > 1/2, as s (softmax - 1) + (s -
    y) with softmax - 1 = -r (`categorical._softmax_times_minus`)."""
    p, r = saved
    y = _labels(y, z)
    s = y.sum(-1, keepdim=True)
    d = torch.where(p > 0.5, (s - y) - s * r, s * p - y)
    return d * g.unsqueeze(-1)


def _cce_applies(settings, tensors):
    return settings == (0.0,) and len(tensors) == 1


# body name -> (applies(settings, tensors), (forward, backward))
KERNELS = {
    "_bce_logits": (_bce_applies, (_bce_logits_forward, _bce_logits_backward)),
    "_scce_logits": (_scce_applies, (_scce_logits_forward, _scce_logits_backward)),
    "_cce_logits": (_cce_applies, (_cce_logits_forward, _cce_logits_backward)),
}


def kernel_for(body, settings, tensors, split=None):
    """The (forward, backward) pair computing `body` with these settings through its kernel, or
    None. Where the backward pass is itself differentiated (gradients enabled in it:
    `create_graph=True`, nested `torch.func` transforms), the body's own derivative runs
    instead (its `split` pair, or the body): ATen's derivative of sigmoid, s (1 - s), and of
    log_softmax round the second derivatives of confidently right samples, which the bodies
    keep to a few ulp."""
    entry = KERNELS.get(getattr(body, "__name__", None))
    if entry is None or not entry[0](settings, tensors):
        return None
    forward, kernel_backward = entry[1]

    def backward(settings, g, saved, *xs):
        if not torch.is_grad_enabled():
            return kernel_backward(settings, g, saved, *xs)
        if split:
            return split[1](settings, g, split[0](settings, *xs)[1], *xs)
        return body(settings, *xs)[1](g)

    return forward, backward
