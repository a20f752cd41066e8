"""How the harness times: the steps it calls, the round-robin timer, medians and rows.

Ours, the reference and (for the bandwidth floor) a pure read and a pure write
are called *round-robin* in the same loop, the order rotating each round, so
that drift on a shared machine hits all of them alike.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import statistics
import sys
import time

import keras
import numpy as np
import tensorflow as tf

import keras_afl
from keras_afl.bench.cases import FLOOR_SIZE, SMALL, TARGETS


def _sync(out):
    """Waits for the device (CPU execution is synchronous; a GPU's is not)."""
    first = tf.nest.flatten(out)[0]
    if "CPU" not in getattr(first, "device", "CPU").upper():
        tf.test.experimental.sync_devices()


def _time_call(fn, args):
    t0 = time.perf_counter()
    _sync(fn(*args))
    return time.perf_counter() - t0


def round_robin(fns, args, repeats, warmup=2):
    """Seconds per call of each function: `repeats` samples each, called in turn.

    The order rotates from one round to the next, so that no function always
    runs right after the same other one (caches, freed memory).
    """
    for _ in range(warmup):
        for fn in fns:
            _sync(fn(*args))
    samples = [[] for _ in fns]
    n = len(fns)
    for r in range(repeats):
        for i in range(n):
            k = (i + r) % n
            samples[k].append(_time_call(fns[k], args))
    return samples


def repeats_at(repeats, size):
    """`repeats` at 2^22 elements and more; three times as many below, where a call is cheap and noisier."""
    return repeats if size >= SMALL else 3 * repeats


def activation_step(fn, xla, with_alpha):
    """Forward + backward of activation `fn` (with respect to x, and alpha for PReLU) as a
    `tf.function`, XLA-compiled if `xla`."""
    if with_alpha:

        @tf.function(jit_compile=xla, autograph=False)
        def step(x, g, alpha):
            with tf.GradientTape() as tape:
                tape.watch([x, alpha])
                y = fn(x, alpha)
            return tape.gradient(y, [x, alpha], output_gradients=g)

    else:

        @tf.function(jit_compile=xla, autograph=False)
        def step(x, g):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = fn(x)
            return tape.gradient(y, x, output_gradients=g)

    return step


def loss_step(loss, xla):
    """Value + gradient with respect to y_pred of `loss` as a `tf.function`, XLA-compiled if `xla`."""

    @tf.function(jit_compile=xla, autograph=False)
    def step(y_true, y_pred):
        with tf.GradientTape() as tape:
            tape.watch(y_pred)
            value = loss(y_true, y_pred)
        return value, tape.gradient(value, y_pred)

    return step


def bandwidth_steps(index):
    """A pure read (a sum) and a pure write (a fill) of argument `index`'s size and dtype.

    Called with the benchmark's arguments, in the round robin; they time the
    two halves of the bandwidth floor.
    """

    @tf.function(autograph=False)
    def read(x):
        return tf.reduce_sum(x)

    @tf.function(autograph=False)
    def write(x, value):  # a runtime value: a constant fill would be folded away
        return tf.fill(tf.shape(x), value)

    one = {}

    def write_like(*args):
        x = args[index]
        if x.dtype not in one:
            one[x.dtype] = tf.ones([], x.dtype)
        return write(x, one[x.dtype])

    return (lambda *args: read(args[index])), write_like


@dataclasses.dataclass
class Row:
    """One measured case: medians of ours and the reference, their ratio, its target, the samples."""

    group: str  # activation | loss | training | memory | check
    case: str
    mode: str  # graph | xla
    dtype: str
    size: int  # elements (activations, losses, checks), batch (training, memory)
    unit: str  # ms | ms/step | MiB
    ours: float  # median
    ref: float  # median
    ratio: float  # ours / ref
    target: str  # key of TARGETS
    max_ratio: float
    met: bool
    floor: float | None = None  # ms: the tensors that must be read and written, at the measured speeds
    floor_ratio: float | None = None  # ours / floor
    floor_met: bool | None = None  # at FLOOR_SIZE only
    spread: float | None = None  # (p75 - p25) / median of ours, a noise gauge
    same_program: bool | None = None  # activations: the built-in's kernels / XLA program exactly
    samples: dict = dataclasses.field(default_factory=dict)
    note: str = ""


def iqr(xs):
    """(p75 - p25) / median, or None for fewer than 4 samples."""
    if len(xs) < 4:
        return None
    q = statistics.quantiles(xs, n=4)
    return (q[2] - q[0]) / statistics.median(xs)


def timed_row(group, case, mode, dtype, size, target, samples, traffic=None, floor_target=None):
    """The Row of round-robin `samples` (seconds: ours, reference[, read, write])."""
    ours, ref = (statistics.median(s) * 1e3 for s in samples[:2])
    max_ratio = TARGETS[target][1]
    row = Row(group, case, mode, dtype, size, "ms", ours, ref, ours / ref, target, max_ratio,
              ours / ref <= max_ratio, spread=iqr(samples[0]),
              samples={"ours": [t * 1e3 for t in samples[0]], "ref": [t * 1e3 for t in samples[1]]})
    if traffic is not None:  # (tensors read, tensors written), in units of the timed tensor
        read_ms, write_ms = (statistics.median(s) * 1e3 for s in samples[2:4])
        row.floor = traffic[0] * read_ms + traffic[1] * write_ms
        row.floor_ratio = ours / row.floor
        row.samples["read"] = [t * 1e3 for t in samples[2]]
        row.samples["write"] = [t * 1e3 for t in samples[3]]
        if floor_target is not None and size == FLOOR_SIZE:
            row.floor_met = row.floor_ratio <= TARGETS[floor_target][1]
    return row


class Progress:
    """A progress bar on stderr (one line per case when stderr is not a terminal)."""

    def __init__(self, total, enabled):
        self.total, self.done, self.enabled, self.t0 = total, 0, enabled, time.perf_counter()

    def step(self, label):
        if not self.enabled:
            return
        if not sys.stderr.isatty():  # a log: one line per case
            if not label:
                return
            sys.stderr.write(f"[{self.done + 1}/{self.total} {time.perf_counter() - self.t0:.0f}s] {label}\n")
            sys.stderr.flush()
            return
        width = 28
        filled = int(width * self.done / max(self.total, 1))
        elapsed = time.perf_counter() - self.t0
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} "
                         f"{elapsed:5.0f}s  {label[:52]:<52}")
        sys.stderr.flush()

    def advance(self, label=""):
        self.done += 1
        self.step(label)

    def close(self):
        if self.enabled and sys.stderr.isatty():
            sys.stderr.write("\n")
            sys.stderr.flush()


def log2(n):
    return int(round(np.log2(n)))


# ----------------------------------------------------------------------------- the machine


def machine():
    """What the figures were measured on: hardware, versions and the losses' trace options."""
    info = {
        "platform": platform.platform(),
        "processor": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "keras_afl": keras_afl.__version__,
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
        "xla_built": bool(tf.test.is_built_with_xla()),
        "fused_losses": keras_afl.losses.trace_options()["compiled_kernels"],
    }
    try:
        with open("/proc/meminfo") as f:
            info["memory_gib"] = round(int(f.readline().split()[1]) / 2**20, 1)
    except OSError:
        pass
    return info


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def call_overhead_ms(repeats=200):
    """Median time of calling a `tf.function` that does nothing but return its scalar input."""
    f = tf.function(lambda x: tf.identity(x), autograph=False)
    x = tf.constant(1.0)
    return statistics.median(round_robin([f], (x,), repeats, warmup=10)[0]) * 1e3


def load():
    """The load average (1, 5, 15 min), or None where the system has none."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None
