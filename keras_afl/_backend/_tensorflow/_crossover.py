"""Where each loss switches from the plain path to the compiled kernels: measured crossovers.

A loss body runs plain (one custom gradient, TensorFlow's kernels) or as two XLA-compiled
kernels (`_runner._compiled`). The compiled path costs two kernel launches and, under XLA, an
optimization barrier; it pays off above a size that differs from loss to loss and between
graph mode and XLA. `CROSSOVER` holds that size per loss body and mode, as measured by
`keras-afl bench --suites sweep` (both paths of every loss timed in the same run, compiled
kernels forced on and off; `keras_afl.bench.sweep.crossovers` reads the table off the sweep).
`_runner._large` reads it through `min_elements`.

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
# Measured 2026-12-02 on a shared 2-core CPU (load average 4.6-7.4: noisy) with
# `keras-afl bench --suites sweep --repeats 3` over the losses, float32 and bfloat16 (both
# compute in float32), 2^10-2^24 elements, read by `keras_afl.bench.sweep.crossover_table` (the
# largest threshold within 5 % of the best summed log ratio to Keras; in graph mode none below
# 2^16: the first compiled loss loads XLA's compiler, +70 MiB of peak memory in a process that
# compiles nothing else, for a gain of hundredths of a millisecond there); `_sparse_probabilities`,
# not in the sweep, keeps 2^16.
CROSSOVER = {
    "_mse": {"graph": 18, "xla": None},
    "_huber": {"graph": 18, "xla": 20},
    "_hinge": {"graph": 16, "xla": 24},
    "_bce_logits": {"graph": 16, "xla": None},
    "_bce_probabilities": {"graph": 16, "xla": 20},
    "_focal_logits": {"graph": 16, "xla": 24},
    "_focal_probabilities": {"graph": 16, "xla": 10},
    "_cce_logits": {"graph": 16, "xla": 16},
    "_categorical_probabilities": {"graph": 16, "xla": 16},
    "_scce_logits": {"graph": 16, "xla": 16},
    "_cfocal_logits": {"graph": 16, "xla": 16},
    "_sfocal_logits": {"graph": 18, "xla": 16},
    "_sparse_probabilities": {"graph": 16, "xla": 16},
}

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
