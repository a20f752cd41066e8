"""How the harness of JAX and PyTorch times a case: one step per call (a jitted VJP or value
and gradient on JAX, `torch.autograd.grad` on PyTorch -- eager, or the step wrapped in
`torch.compile` as Keras's `jit_compile=True` wraps its train step -- each waited for), and the
round-robin timer of single calls, for `keras_afl.bench.backends`."""

from __future__ import annotations

import statistics
import time

SAMPLE_S = 0.004  # each round runs a block of calls of each step lasting about this long
WARMUP_S = 0.3  # warm-up per case (compilation, thread pools, caches): the first case on
                # PyTorch ran 100x slow without it


def jax_activation_step(f, x, g, alpha=None):
    """A jitted call: (f(x), the VJP of g) -- with respect to x, and alpha for PReLU."""
    import jax

    if alpha is None:
        @jax.jit
        def step(x, g):
            y, pullback = jax.vjp(f, x)
            return y, pullback(g)
        return lambda: jax.block_until_ready(step(x, g))

    @jax.jit
    def step_prelu(x, a, g):
        y, pullback = jax.vjp(f, x, a)
        return y, pullback(g)
    return lambda: jax.block_until_ready(step_prelu(x, alpha, g))


def _torch_sync():
    import torch

    return torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)


def _torch_compiled(fn):
    """`fn` under `torch.compile` (Inductor, one program per input shape), as Keras's
    `jit_compile=True` wraps its train step on PyTorch. Dynamo's caches are emptied first: every
    case compiles the same step code, and past its recompile limit Dynamo would quietly run the
    later cases eagerly."""
    import torch

    torch._dynamo.reset()
    return torch.compile(fn, dynamic=False)


def torch_activation_step(f, x, g, alpha=None, compiled=False):
    """A call: f(x), then torch.autograd.grad of g (for x, and alpha for PReLU); eager, or
    under `torch.compile` with `compiled=True`."""
    import torch

    sync = _torch_sync()
    x = x.detach().requires_grad_(True)
    leaves = [x] if alpha is None else [x, alpha.detach().requires_grad_(True)]

    def grads(g, *leaves):
        y = f(*leaves)
        return y, torch.autograd.grad(y, leaves, g)
    run = _torch_compiled(grads) if compiled else grads

    def step():
        out = run(g, *leaves)
        sync()
        return out
    step.traced = (grads, (g, *leaves))
    return step


def jax_loss_step(loss, y_true, y_pred):
    import jax

    step = jax.jit(jax.value_and_grad(lambda p, t: loss(t, p)))
    return lambda: jax.block_until_ready(step(y_pred, y_true))


def torch_loss_step(loss, y_true, y_pred, compiled=False):
    """A call: the loss and torch.autograd.grad of it with respect to y_pred; eager, or under
    `torch.compile` with `compiled=True`."""
    import torch

    sync = _torch_sync()
    p = y_pred.detach().requires_grad_(True)

    def value_and_grad(y_true, p):
        value = loss(y_true, p)
        return value, torch.autograd.grad(value, [p])
    run = _torch_compiled(value_and_grad) if compiled else value_and_grad

    def step():
        out = run(y_true, p)
        sync()
        return out
    step.traced = (value_and_grad, (y_true, p))
    return step


def torch_graph_breaks(step):
    """What Dynamo makes of a step's function (`step.traced`): {"graphs", "graph_breaks",
    "reasons"} from `torch._dynamo.explain` -- one graph and no break is the whole step in one
    compiled program. The break at `torch.autograd.grad` itself (which Dynamo does not trace by
    default) is Keras's too: its train step calls `loss.backward()` there."""
    import torch

    fn, args = step.traced
    torch._dynamo.reset()
    e = torch._dynamo.explain(fn)(*args)
    torch._dynamo.reset()
    reasons = sorted({str(b.reason).split("\n")[0][:120] for b in e.break_reasons})
    return {"graphs": e.graph_count, "graph_breaks": e.graph_break_count, "reasons": reasons}


# --------------------------------------------------------------------------- timing

def _block_size(steps, target_s=SAMPLE_S):
    """Calls per round: enough for the slower step to take about `target_s`."""
    slowest = 0.0
    for step in steps:
        t0 = time.perf_counter()
        step()
        slowest = max(slowest, time.perf_counter() - t0)
    return max(1, min(200, int(target_s / max(slowest, 1e-7))))


def time_round_robin(steps, repeats, warmup=3, warmup_s=WARMUP_S):
    """Per step, the median and interquartile range (ms) of its calls: `repeats` rounds, each a
    block of calls of every step in turn (the order reversed every other round), each call timed
    on its own -- a median of single calls, so that a few calls preempted on a busy machine
    (tens of ms on a shared two-core machine) do not move it."""
    t0 = time.perf_counter()  # at least `warmup` calls each, and at least `warmup_s` in all
    while True:
        for _ in range(warmup):
            for step in steps:
                step()
        if time.perf_counter() - t0 >= warmup_s:
            break
    block = _block_size(steps)
    samples = [[] for _ in steps]
    order = list(range(len(steps)))
    clock = time.perf_counter
    for r in range(repeats):
        for i in (order if r % 2 == 0 else order[::-1]):
            step, out = steps[i], samples[i]
            for _ in range(block):
                t0 = clock()
                step()
                out.append((clock() - t0) * 1e3)
    return [(statistics.median(s), iqr(s)) for s in samples], block


def iqr(values):
    if len(values) < 4:
        return 0.0
    q = statistics.quantiles(values, n=4)
    return q[2] - q[0]

