"""Where each loss switches from the plain path to the compiled kernels, and the rule that sets it.

A loss body runs plain (one custom gradient, TensorFlow's kernels) or as two XLA-compiled
kernels (`_runner._compiled`). The compiled path costs two kernel launches and, under XLA, an
optimization barrier; it pays off above a size that differs from loss to loss and between
graph mode and XLA. `CROSSOVER` holds that size per loss body and mode; `_runner._large` reads it
through `min_elements`.

The XLA column follows `threshold` from a same-run A/B (the plain and the compiled path
interleaved with Keras's loss, `keras-afl bench --suites sweep`; the samples are committed in
benchmarks/tensorflow_speed/crossover_ab.json, and tests/test_crossover.py checks that the table
is what the rule reads from them): a path wins at a size only by a margin beyond the run's noise
(`verdict`), and where neither does, the structure decides -- the path whose XLA program reads
and writes fewer full-size arrays (tests/_program_size.py counts them; under XLA the compiled
path's is the smaller for every loss, which tests/test_crossover.py pins). One noisy sweep
cannot move a loss to the slower path: cee4f8e's table, read off such a sweep, kept binary
focal from logits on the plain path under XLA up to 2^24 (1.14-1.26x Keras at 2^22, against
0.39-0.44x before).

Both paths compute the same formulas with the same ops: tests/test_crossover.py checks that
values and gradients agree on both sides of every crossover.
"""

from __future__ import annotations

import contextlib
import contextvars
import math

from keras_afl._keras_compat import under_xla

# Used for a body the table does not name, and when the size is read without a body.
DEFAULT_LOG2 = 16
# With an unknown batch size the size of one sample decides: the crossover over this many samples.
PER_SAMPLE_BATCH = 64

# body name -> {mode: log2 of the fewest elements (y_pred's) that take the compiled path, or None:
# never}. Mode "graph": a `tf.function`; "xla": inside a `jit_compile=True` function.
# "xla": `threshold` of the A/B in benchmarks/tensorflow_speed/crossover_sweep.json (2026-12-07,
# a shared 2-core CPU at load average 4-10: `keras-afl bench --suites sweep --modes xla`, float32,
# 2^12-2^24 elements; binary focal and BCE from logits also at 2^21 and 2^23 in a second run),
# ties to the path with fewer full-size passes (the compiled one, but for MSE and hinge, where
# they are equal). "graph": measured 2026-12-02 (cee4f8e, `keras-afl bench --suites sweep
# --repeats 3`, the summed log ratio to Keras), none below 2^16: the first compiled loss loads
# XLA's compiler, +70 MiB of peak memory in a process that compiles nothing else, for a gain of
# hundredths of a millisecond there. `_sparse_probabilities`, in no sweep, keeps 2^16.
CROSSOVER = {
    "_mse": {"graph": 18, "xla": None},
    "_huber": {"graph": 18, "xla": 12},
    "_hinge": {"graph": 16, "xla": None},
    "_bce_logits": {"graph": 16, "xla": 22},
    "_bce_probabilities": {"graph": 16, "xla": 12},
    "_focal_logits": {"graph": 16, "xla": 12},
    "_focal_probabilities": {"graph": 16, "xla": 16},
    "_cce_logits": {"graph": 16, "xla": 16},
    "_categorical_probabilities": {"graph": 16, "xla": 12},
    "_scce_logits": {"graph": 16, "xla": 16},
    "_cfocal_logits": {"graph": 16, "xla": 22},
    "_sfocal_logits": {"graph": 18, "xla": 16},
    "_sparse_probabilities": {"graph": 16, "xla": 16},
}

# A path wins at one size when its paired time ratio's median is beyond this factor and its
# quartile beyond 1 (`verdict`): the samples of one interleaved run, paired by round.
MARGIN = 1.05


def _quantile(xs, q):
    xs = sorted(xs)
    i = q * (len(xs) - 1)
    lo = math.floor(i)
    return xs[lo] + (xs[min(lo + 1, len(xs) - 1)] - xs[lo]) * (i - lo)


def verdict(plain, compiled, margin=MARGIN):
    """"compiled", "plain" or "tie": which path is faster at one size, from the times of one run
    in which both were called in turn (`plain[i]` and `compiled[i]` from the same round)."""
    ratios = [p / c for p, c in zip(plain, compiled)]
    if _quantile(ratios, 0.5) >= margin and _quantile(ratios, 0.25) > 1.0:
        return "compiled"
    if _quantile(ratios, 0.5) <= 1.0 / margin and _quantile(ratios, 0.75) < 1.0:
        return "plain"
    return "tie"


def threshold(verdicts, fewer_passes, floor=None):
    """log2 of the smallest size from which the compiled path is taken, or None (never).

    `verdicts`: {log2 size: `verdict`} of one run; `fewer_passes`: whether the compiled path's
    program reads and writes fewer full-size arrays than the plain one's (it decides the ties);
    `floor`: the smallest threshold allowed. The compiled path is taken from the smallest size
    at and above which no size is won by the plain path and every size is won by the compiled
    path or, when `fewer_passes`, tied.
    """
    good = ("compiled", "tie") if fewer_passes else ("compiled",)
    out = None
    for log2 in sorted(verdicts, reverse=True):
        if verdicts[log2] not in good:
            break
        out = log2
    return out if out is None or floor is None else max(out, floor)


# Set by `forced` (the benchmark's sweep): "compiled" or "plain" for every loss, or None.
_FORCED = contextvars.ContextVar("keras_afl_forced_path", default=None)


def mode():
    """"xla" inside a graph that XLA will compile, else "graph"."""
    return "xla" if under_xla() else "graph"


def min_elements(body=None, override=None, where=None):
    """The fewest elements of y_pred for which loss `body` (a body function or its name) takes the
    compiled path in mode `where` (default: the graph being built); math.inf for never.

    `override` (an int: `_runner.FUSE_MIN_ELEMENTS`, set by tests) replaces the table for every
    loss; `forced` replaces both.
    """
    forced = _FORCED.get()
    if forced is not None:
        return 0 if forced == "compiled" else math.inf
    if override is not None:
        return override
    name = body if isinstance(body, str) or body is None else body.__name__
    row = CROSSOVER.get(name)
    if row is None:
        return 2**DEFAULT_LOG2
    log2 = row[where or mode()]
    return math.inf if log2 is None else 2**log2


def min_per_sample(least, override=None):
    """With an unknown batch size: the fewest elements per sample for the compiled path."""
    if _FORCED.get() is not None:
        return least
    if override is not None:
        return override
    return least / PER_SAMPLE_BATCH


@contextlib.contextmanager
def forced(path):
    """Within the block, losses traced take `path` ("compiled" or "plain") at every size (with
    `set_trace_options(compiled_kernels=True)` for "compiled"): for measuring the crossover."""
    if path not in ("compiled", "plain", None):
        raise ValueError(f"`path` must be 'compiled', 'plain' or None; received {path!r}.")
    token = _FORCED.set(path)
    try:
        yield
    finally:
        _FORCED.reset(token)
