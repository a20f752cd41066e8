"""Benchmark harness: keras_afl against TensorFlow/Keras built-ins and the memory-bandwidth floor.

Importable (`keras_afl.bench.run(...)`) and behind `keras-afl bench`.

What is timed, per case, as the median of `repeats` calls after warm-up
(three times as many below 2^22 elements, where calls are cheap and noisy),
with ours, the reference and (for the floor) a pure read and a pure write
called *round-robin* in the same loop, the order rotating each round, so
that drift on a shared machine hits all of them alike:

- activations: forward + backward (`tape.gradient` with an upstream gradient;
  for PReLU with respect to x and alpha) inside `tf.function`, graph mode and
  XLA, against the `tf.nn` op (Keras's formula for PReLU) differentiated by
  TensorFlow's autodiff;
- losses: value + gradient with respect to `y_pred` of the `Loss` object
  (mean reduction), against the matching `keras.losses` class;
- the bandwidth floor of both: the tensors that must be read and written
  (activations: read x, write y, read g and y, write dx -- 3 reads, 2
  writes; losses: read y_pred and y_true, write the gradient), each at the
  speed measured in the same loop for a tensor of that size and dtype
  (`reduce_sum` for a read, `fill` for a write into new memory);
- end-to-end training steps (graph mode, as `jit_compile="auto"` gives on
  CPU; Keras's own compiled train function, one batch per call): an MLP
  (4 x 512, batch 256, softmax + categorical cross-entropy) and a small fully
  convolutional network with per-pixel focal loss on 16 heatmaps of
  128 x 128, keras_afl vs the same model from Keras built-ins, blocks of
  steps alternating between the two;
- peak memory (resident set size: `VmHWM` on Linux, `ru_maxrss` elsewhere) of
  a deep MLP's training steps, each variant in a fresh process (the two run
  side by side);
- the label checks (suite "checks"): value + gradient of a loss with label
  checks (`keras_afl.losses._checks`) against the same loss traced with them
  switched off (`_core._CHECK_LABELS = False`), at 2^20 elements, graph mode
  and XLA.

Ratios are ours / reference: below 1 is faster (or smaller). Targets are
written into every row (`max_ratio`, `met`) and summarised per target.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time

import keras
import numpy as np
import tensorflow as tf

import keras_afl
from keras_afl import activations as A
from keras_afl import losses as L
from keras_afl.losses import _core as _losses_core

__all__ = ["run", "main_table", "summary", "summary_table", "write_reports", "same_program", "TARGETS"]

SUITES = ("activations", "losses", "training", "memory", "checks")
MODES = ("graph", "xla")
DTYPES = ("float32", "bfloat16")
DEFAULT_SIZES = (16, 20, 24)  # log2 of the number of elements

# ----------------------------------------------------------------------------- targets

# name -> (description, max ratio ours / reference)
TARGETS = {
    "activation_native": ("activation <= 1.05x the native op (graph and XLA)", 1.05),
    "activation_floor": ("activation <= 1.3x the bandwidth floor at 2^24", 1.3),
    "loss_graph": ("loss <= 0.5x Keras in graph mode", 0.5),
    "loss_xla": ("loss <= 1.0x Keras under XLA", 1.0),
    "mlp": ("MLP training >= 1.0x the built-in's steps/s", 1.0),
    "dense_focal": ("dense-prediction focal training >= 1.3x steps/s", 1 / 1.3),
    "memory": ("peak memory <= 1.0x the built-in's", 1.0),
    "label_checks": ("label checks cost <= 5% of the loss's time (2^20)", 1.05),
}
FLOOR_SIZE = 2**24
SMALL = 2**22  # below: three times the repeats

# ----------------------------------------------------------------------------- cases


def _keras_prelu(x, alpha):
    """Keras's PReLU layer formula: relu(x) - alpha * relu(-x)."""
    return tf.nn.relu(x) - alpha * tf.nn.relu(-x)


# name -> (ours, reference); PReLU takes (x, alpha), the others x
ACTIVATIONS = {
    "relu": (A.relu, tf.nn.relu),
    "leaky_relu": (lambda x: A.leaky_relu(x, 0.2), lambda x: tf.nn.leaky_relu(x, 0.2)),
    "prelu": (A.prelu, _keras_prelu),
    "sigmoid": (A.sigmoid, tf.math.sigmoid),
    "tanh": (A.tanh, tf.math.tanh),
    "softmax": (A.softmax, tf.nn.softmax),
    "elu": (A.elu, tf.nn.elu),
    "selu": (A.selu, tf.nn.selu),
}
CLASSES = 16  # size of the last axis of every loss input


def loss_cases():
    """name -> (ours, Keras's, label kind). Fresh Loss objects on every call."""
    k = keras.losses
    focal = dict(gamma=2.0, alpha=0.25)
    kfocal = dict(apply_class_balancing=True, **focal)
    kcfocal = k.CategoricalFocalCrossentropy(from_logits=True, **focal)

    def keras_sparse_focal(y_true, y_pred):  # Keras has no sparse focal loss: one-hot first
        return kcfocal(tf.one_hot(y_true, CLASSES, dtype=y_pred.dtype), y_pred)

    return {
        "mse": (L.MeanSquaredError(), k.MeanSquaredError(), "regression"),
        "huber": (L.Huber(), k.Huber(), "regression"),
        "hinge": (L.Hinge(), k.Hinge(), "binary"),
        "bce_logits": (L.BinaryCrossentropy(from_logits=True), k.BinaryCrossentropy(from_logits=True),
                       "binary"),
        "bce_probs": (L.BinaryCrossentropy(), k.BinaryCrossentropy(), "binary_probs"),
        "focal_logits": (L.FocalLoss(from_logits=True, **focal),
                         k.BinaryFocalCrossentropy(from_logits=True, **kfocal), "binary"),
        "focal_probs": (L.FocalLoss(**focal), k.BinaryFocalCrossentropy(**kfocal), "binary_probs"),
        "cce_logits": (L.CategoricalCrossentropy(from_logits=True),
                       k.CategoricalCrossentropy(from_logits=True), "categorical"),
        "cce_probs": (L.CategoricalCrossentropy(), k.CategoricalCrossentropy(), "categorical_probs"),
        "sparse_cce_logits": (L.SparseCategoricalCrossentropy(from_logits=True),
                              k.SparseCategoricalCrossentropy(from_logits=True), "sparse"),
        "categorical_focal_logits": (L.CategoricalFocalLoss(from_logits=True, **focal),
                                     k.CategoricalFocalCrossentropy(from_logits=True, **focal),
                                     "categorical"),
        "sparse_categorical_focal_logits": (L.SparseCategoricalFocalLoss(from_logits=True, **focal),
                                            keras_sparse_focal, "sparse"),
    }


LOSSES = tuple(loss_cases())
QUICK_ACTIVATIONS = ("relu", "prelu", "sigmoid")
QUICK_LOSSES = ("bce_logits", "focal_logits", "sparse_cce_logits")

# ----------------------------------------------------------------------------- timing


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


def _activation_step(fn, xla, with_alpha):
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


def _loss_step(loss, xla):
    @tf.function(jit_compile=xla, autograph=False)
    def step(y_true, y_pred):
        with tf.GradientTape() as tape:
            tape.watch(y_pred)
            value = loss(y_true, y_pred)
        return value, tape.gradient(value, y_pred)

    return step


def _bandwidth_steps(index):
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


# ----------------------------------------------------------------------------- rows


@dataclasses.dataclass
class Row:
    group: str  # activation | loss | training | memory
    case: str
    mode: str  # graph | xla
    dtype: str
    size: int  # elements (activations, losses), batch (training, memory)
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


def _iqr(xs):
    if len(xs) < 4:
        return None
    q = statistics.quantiles(xs, n=4)
    return (q[2] - q[0]) / statistics.median(xs)


def _timed_row(group, case, mode, dtype, size, target, samples, traffic=None, floor_target=None):
    ours, ref = (statistics.median(s) * 1e3 for s in samples[:2])
    max_ratio = TARGETS[target][1]
    row = Row(group, case, mode, dtype, size, "ms", ours, ref, ours / ref, target, max_ratio,
              ours / ref <= max_ratio, spread=_iqr(samples[0]),
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


class _Progress:
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


def _log2(n):
    return int(round(np.log2(n)))


# ----------------------------------------------------------------------------- suites


def _activation_inputs(size, dt):
    cols = min(size, 1024)
    shape = [size // cols, cols]
    x = tf.cast(tf.random.stateless_normal(shape, seed=[1, 2]), dt)
    g = tf.cast(tf.random.stateless_normal(shape, seed=[3, 4]), dt)
    return x, g, tf.fill([cols], tf.constant(0.25, dt))


def bench_activations(sizes, dtypes, modes, repeats, names=None, progress=None):
    rows = []
    for name in names or ACTIVATIONS:
        ours, ref = ACTIVATIONS[name]
        with_alpha = name == "prelu"
        for dtype in dtypes:
            dt = tf.as_dtype(dtype)
            for mode in modes:
                same = same_program(name, dtype, mode)
                for size in sizes:
                    if progress:
                        progress.step(f"activation {name} {dtype} {mode} 2^{_log2(size)}")
                    x, g, alpha = _activation_inputs(size, dt)
                    args = (x, g, alpha) if with_alpha else (x, g)
                    xla = mode == "xla"
                    fns = [_activation_step(ours, xla, with_alpha), _activation_step(ref, xla, with_alpha),
                           *_bandwidth_steps(0)]
                    samples = round_robin(fns, args, _repeats_at(repeats, size))
                    # read x, write y; read g and y (or x), write dx
                    row = _timed_row("activation", name, mode, dtype, size, "activation_native",
                                     samples, (3, 2), "activation_floor")
                    row.same_program = same
                    rows.append(row)
                    if progress:
                        progress.advance()
    return rows


# ----------------------------------------------------------------------------- same program

_PASS_THROUGH = frozenset({"Identity", "IdentityN", "NoOp", "Placeholder", "Const"})


def graph_kernels(step, *args):
    """The TensorFlow kernels a graph-mode `tf.function` runs for `args`: the op types that
    its outputs depend on (dead ops are pruned before execution), without pass-through ops."""
    graph = step.get_concrete_function(*args).graph
    seen, stack = set(), [t.op for t in graph.outputs]
    while stack:
        op = stack.pop()
        if op.name in seen:
            continue
        seen.add(op.name)
        stack.extend(t.op for t in op.inputs)
        stack.extend(op.control_inputs)
    return sorted(graph.get_operation_by_name(n).type for n in seen
                  if graph.get_operation_by_name(n).type not in _PASS_THROUGH)


def optimized_program(step, *args):
    """The optimized XLA (HLO) program of a `tf.function(jit_compile=True)` for `args`, with
    names, metadata and parameter numbers stripped: two functions that compile to the same
    loops give equal lists."""
    text = step.experimental_get_compiler_ir(*args)(stage="optimized_hlo")
    text = re.sub(r"^HloModule.*$", "", text, flags=re.M)
    text = re.sub(r",?\s*metadata=\{[^}]*\}", "", text)
    text = re.sub(r"%[\w.\-]+", "%v", text)
    text = re.sub(r"\bparam_[\d.]+", "param", text)
    text = re.sub(r"(calls|to_apply|condition|body)=%?[\w.\-]+", r"\1=C", text)
    text = re.sub(r"^\s*(ENTRY\s+)?[\w.\-]+(?= [({])", r"\1C", text, flags=re.M)
    return sorted(line.strip() for line in text.splitlines() if line.strip())


def same_program(name, dtype, mode, size=2**16):
    """Whether activation `name`'s forward + backward runs exactly the built-in's program:
    the same TensorFlow kernels (graph mode) or the same optimized XLA program (XLA).

    Where it does, any timing difference between the two is measurement noise.

    Example:
    >>> from keras_afl import bench
    >>> bench.same_program("tanh", "float32", "xla", size=2**10)   # TanhGrad, as autodiff's
    True
    >>> bench.same_program("prelu", "float32", "graph", size=2**10)  # vs Keras's formula
    False
    """
    ours, ref = ACTIVATIONS[name]
    with_alpha = name == "prelu"
    x, g, alpha = _activation_inputs(size, tf.as_dtype(dtype))
    args = (x, g, alpha) if with_alpha else (x, g)
    xla = mode == "xla"
    program = optimized_program if xla else graph_kernels
    return program(_activation_step(ours, xla, with_alpha), *args) == \
        program(_activation_step(ref, xla, with_alpha), *args)


def _repeats_at(repeats, size):
    """`repeats` at 2^22 elements and more; three times as many below, where a call is cheap and noisier."""
    return repeats if size >= SMALL else 3 * repeats


def _loss_inputs(kind, size, dt):
    rows = max(size // CLASSES, 1)
    rng = np.random.default_rng(0)
    z = rng.normal(size=(rows, CLASSES)).astype("float32") * 3
    if kind == "regression":
        y = rng.normal(size=(rows, CLASSES)).astype("float32")
    elif kind.startswith("binary"):
        y = (rng.random((rows, CLASSES)) < 0.1).astype("float32")
        if kind == "binary_probs":
            z = 1 / (1 + np.exp(-z))
    else:
        labels = rng.integers(0, CLASSES, rows)
        if kind == "sparse":
            return tf.constant(labels.astype("int32")), tf.cast(tf.constant(z), dt)
        y = np.eye(CLASSES, dtype="float32")[labels]
        if kind == "categorical_probs":
            e = np.exp(z - z.max(-1, keepdims=True))
            z = e / e.sum(-1, keepdims=True)
    return tf.cast(tf.constant(y), dt), tf.cast(tf.constant(z), dt)


def bench_losses(sizes, dtypes, modes, repeats, names=None, progress=None):
    rows = []
    for name in names or LOSSES:
        for dtype in dtypes:
            dt = tf.as_dtype(dtype)
            for mode in modes:
                for size in sizes:
                    if progress:
                        progress.step(f"loss {name} {dtype} {mode} 2^{_log2(size)}")
                    ours, ref, kind = loss_cases()[name]
                    y, z = _loss_inputs(kind, size, dt)
                    xla = mode == "xla"
                    fns = [_loss_step(ours, xla), _loss_step(ref, xla), *_bandwidth_steps(1)]
                    samples = round_robin(fns, (y, z), _repeats_at(repeats, size))
                    # read y_pred and y_true, write the gradient (in units of y_pred's bytes)
                    labels = int(np.prod(y.shape)) * y.dtype.size / (int(np.prod(z.shape)) * dt.size)
                    target = "loss_graph" if mode == "graph" else "loss_xla"
                    rows.append(_timed_row("loss", name, mode, dtype, size, target, samples,
                                           (1 + labels, 1)))
                    if progress:
                        progress.advance()
    return rows


def _mlp(ours, features=784, width=512, depth=4, classes=10):
    act = A.relu if ours else "relu"
    layers = [keras.Input((features,))]
    layers += [keras.layers.Dense(width, activation=act) for _ in range(depth)]
    layers += [keras.layers.Dense(classes),
               keras_afl.layers.Softmax() if ours else keras.layers.Softmax()]
    return keras.Sequential(layers)


def _dense_net(ours, size, classes, channels=8):
    act = A.relu if ours else "relu"
    inputs = keras.Input((size, size, 3))
    h = keras.layers.Conv2D(channels, 3, padding="same", activation=act)(inputs)
    logits = keras.layers.Conv2D(classes, 1)(h)
    out = (keras_afl.layers.Sigmoid() if ours else keras.layers.Activation("sigmoid"))(logits)
    return keras.Model(inputs, out)


def _train_function(model, loss, x, y, batch):
    model.compile(keras.optimizers.SGD(0.01), loss=loss, jit_compile=False)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch, drop_remainder=True).repeat()
    iterator = iter(ds)
    model.make_train_function()
    fn = model.train_function
    return lambda: fn(iterator)


def _steps(pair, steps, repeats, warmup=3):
    """ms per step of each train function: blocks of `steps` calls, alternating which goes first."""
    for f in pair:
        for _ in range(warmup):
            f()
    samples = [[], []]
    for r in range(repeats):
        order = (0, 1) if r % 2 == 0 else (1, 0)
        for i in order:
            t0 = time.perf_counter()
            for _ in range(steps):
                pair[i]()
            if tf.config.list_logical_devices("GPU"):
                tf.test.experimental.sync_devices()
            samples[i].append((time.perf_counter() - t0) / steps)
    return samples


def _training_row(case, batch, target, samples, note):
    ours, ref = (statistics.median(s) * 1e3 for s in samples)
    return Row("training", case, "graph", "float32", batch, "ms/step", ours, ref, ours / ref, target,
               TARGETS[target][1], ours / ref <= TARGETS[target][1], spread=_iqr(samples[0]),
               samples={"ours": [t * 1e3 for t in samples[0]], "ref": [t * 1e3 for t in samples[1]]},
               note=note)


def bench_training(repeats, quick, progress=None):
    rows = []
    rng = np.random.default_rng(0)
    batch, steps = (32, 3) if quick else (256, 30)
    x = rng.normal(size=(batch * 4, 784)).astype("float32")
    y = np.eye(10, dtype="float32")[rng.integers(0, 10, batch * 4)]
    if progress:
        progress.step("training: MLP")
    keras.utils.set_random_seed(0)
    pair = (_train_function(_mlp(True), L.CategoricalCrossentropy(), x, y, batch),
            _train_function(_mlp(False), keras.losses.CategoricalCrossentropy(), x, y, batch))
    rows.append(_training_row("mlp_4x512_softmax_cce", batch, "mlp", _steps(pair, steps, repeats),
                              f"784 -> 4 x Dense(512, relu) -> Dense(10) -> softmax, CCE; batch {batch}"))
    if progress:
        progress.advance()
        progress.step("training: dense focal")
    size, classes, sbatch, ssteps = (32, 4, 2, 2) if quick else (128, 16, 8, 5)
    xs = rng.normal(size=(sbatch * 2, size, size, 3)).astype("float32")
    ys = (rng.random((sbatch * 2, size, size, classes)) < 0.05).astype("float32")
    keras.utils.set_random_seed(0)
    pair = (_train_function(_dense_net(True, size, classes), L.FocalLoss(gamma=2.0, alpha=0.25), xs, ys,
                            sbatch),
            _train_function(_dense_net(False, size, classes),
                            keras.losses.BinaryFocalCrossentropy(apply_class_balancing=True, alpha=0.25,
                                                                 gamma=2.0), xs, ys, sbatch))
    rows.append(_training_row(f"dense_{size}px_{classes}class_focal", sbatch, "dense_focal",
                              _steps(pair, ssteps, repeats),
                              f"{size}x{size}x3 -> Conv(8, 3x3, relu) -> Conv({classes}, 1x1) -> sigmoid: "
                              f"{classes} per-pixel heatmaps, focal loss (gamma 2, alpha 0.25), 5% "
                              f"positives; batch {sbatch}"))
    if progress:
        progress.advance()
    return rows


_MEMORY_CHILD = r"""
import json, os, resource, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np, tensorflow as tf, keras, keras_afl
ours, kind, a, b, batch, steps = sys.argv[1] == "ours", sys.argv[2], *map(int, sys.argv[3:7])
def peak():
    # VmHWM: this process's own peak (ru_maxrss on Linux keeps the parent's across fork + exec)
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB elsewhere
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20
keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
sigmoid = keras_afl.layers.Sigmoid() if ours else keras.layers.Activation("sigmoid")
if kind == "mlp":  # a = depth, b = width; ELU
    act = keras_afl.activations.elu if ours else "elu"
    inputs = keras.Input((b,))
    h = inputs
    for _ in range(a):
        h = keras.layers.Dense(b, activation=act)(h)
    out = sigmoid(keras.layers.Dense(1)(h))
    x = rng.normal(size=(batch, b)).astype("float32")
    y = (x[:, :1] > 0).astype("float32")
else:  # a = map size, b = classes; the dense-prediction net of the training benchmark
    act = keras_afl.activations.relu if ours else "relu"
    inputs = keras.Input((a, a, 3))
    h = keras.layers.Conv2D(8, 3, padding="same", activation=act)(inputs)
    out = sigmoid(keras.layers.Conv2D(b, 1)(h))
    x = rng.normal(size=(batch, a, a, 3)).astype("float32")
    y = (rng.random((batch, a, a, b)) < 0.05).astype("float32")
model = keras.Model(inputs, out)
loss = (keras_afl.losses.FocalLoss() if ours
        else keras.losses.BinaryFocalCrossentropy(apply_class_balancing=True, alpha=0.25))
model.compile(keras.optimizers.SGD(0.01), loss=loss, jit_compile=False)
it = iter(tf.data.Dataset.from_tensors((x, y)).repeat())
model.make_train_function()
before = peak()
for _ in range(steps):
    model.train_function(it)
print(json.dumps({"peak_mib": peak(), "before_mib": before}))
"""

# name -> (child arguments, description); quick: smaller
MEMORY_CASES = {
    "deep_mlp_8x1024_elu_focal": (("mlp", 8, 1024, 8192, 2), "8 x Dense(1024, elu), focal; batch 8192"),
    "dense_128px_16class_focal": (("dense", 128, 16, 16, 2),
                                  "the dense-prediction focal net of the training rows; batch 16"),
}
QUICK_MEMORY_CASES = {"deep_mlp_3x64_elu_focal": (("mlp", 3, 64, 32, 1), "3 x Dense(64, elu); batch 32")}


def bench_memory(quick, repeats=None, progress=None):
    cases = QUICK_MEMORY_CASES if quick else MEMORY_CASES
    repeats = 1 if quick else (repeats or 3)
    rows = []
    for name, (args, text) in cases.items():
        runs = {"ours": [], "builtin": []}
        for r in range(repeats):
            if progress:
                progress.step(f"memory: {name}, pair {r + 1}/{repeats}")
            procs = {v: subprocess.Popen([sys.executable, "-c", _MEMORY_CHILD, v, *map(str, args)],
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                     for v in runs}
            for v, p in procs.items():
                out, err = p.communicate(timeout=900)
                if p.returncode != 0:
                    raise RuntimeError(f"memory benchmark {name} ({v}) failed:\n{err[-3000:]}")
                runs[v].append(json.loads(out.strip().splitlines()[-1]))
        peak = {v: statistics.median(r["peak_mib"] for r in rs) for v, rs in runs.items()}
        grow = {v: statistics.median(r["peak_mib"] - r["before_mib"] for r in rs) for v, rs in runs.items()}
        if progress:
            progress.advance()
        ratio = peak["ours"] / peak["builtin"]
        rows.append(Row("memory", name, "graph", "float32", args[-2], "MiB", peak["ours"], peak["builtin"],
                        ratio, "memory", TARGETS["memory"][1], ratio <= TARGETS["memory"][1],
                        samples={"ours": [r["peak_mib"] for r in runs["ours"]],
                                 "ref": [r["peak_mib"] for r in runs["builtin"]]},
                        note=(f"{text}. Peak RSS of the process, median of {repeats}; growth during the "
                              f"training steps: ours {grow['ours']:.1f} MiB, "
                              f"built-in {grow['builtin']:.1f} MiB")))
    return rows


# ----------------------------------------------------------------------------- run


def machine():
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
        "fused_losses": bool(_losses_core._FUSE),
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


def _load():
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


# ----------------------------------------------------------------------------- label checks

CHECK_SIZE = 2**20


def check_cases():
    """name -> (a fresh Loss with label checks, label kind): the losses whose labels are checked."""
    return {
        "bce_logits": (L.BinaryCrossentropy(from_logits=True), "binary"),
        "focal_logits": (L.FocalLoss(from_logits=True, gamma=2.0, alpha=0.25), "binary"),
        "hinge_binary": (L.Hinge(label_format="binary"), "binary"),
        "sparse_cce_logits": (L.SparseCategoricalCrossentropy(from_logits=True), "sparse"),
    }


def traced_with_label_checks(on, step, *args):
    """`step` traced for `args` with the label checks switched on or off (the switch is read
    while tracing; later calls with these argument types reuse the trace)."""
    before = _losses_core._CHECK_LABELS
    _losses_core._CHECK_LABELS = on
    try:
        step.get_concrete_function(*args)
    finally:
        _losses_core._CHECK_LABELS = before
    return step


def bench_checks(size, modes, repeats, progress=None):
    """Each checked loss (ours) against itself without the checks (reference): their cost."""
    rows = []
    for name in check_cases():
        for mode in modes:
            if progress:
                progress.step(f"label checks {name} {mode} 2^{_log2(size)}")
            (on, kind), (off, _) = check_cases()[name], check_cases()[name]
            y, z = _loss_inputs(kind, size, tf.float32)
            xla = mode == "xla"
            fns = [traced_with_label_checks(True, _loss_step(on, xla), y, z),
                   traced_with_label_checks(False, _loss_step(off, xla), y, z)]
            samples = round_robin(fns, (y, z), _repeats_at(repeats, size))
            rows.append(_timed_row("check", name, mode, "float32", size, "label_checks", samples))
            if progress:
                progress.advance()
    return rows


def _plan_size(suites, names_a, names_l, sizes, dtypes, modes, quick):
    n = len(check_cases()) * len(modes) * ("checks" in suites)
    if "activations" in suites:
        n += len(names_a) * len(sizes) * len(dtypes) * len(modes)
    if "losses" in suites:
        n += len(names_l) * len(sizes) * len(dtypes) * len(modes)
    memory = QUICK_MEMORY_CASES if quick else MEMORY_CASES
    return n + 2 * ("training" in suites) + len(memory) * ("memory" in suites)


def _check_names(values, valid, argument, what):
    for v in values:
        if v not in valid:
            raise ValueError(f"`{argument}`: unknown {what} {v!r}; expected some of {tuple(valid)}. "
                             f"Fix: pass names from that list (or leave `{argument}` at its default).")


def run(*, quick=False, sizes=None, dtypes=None, modes=MODES, repeats=None, suites=SUITES,
        activations=None, losses=None, progress=True):
    """Runs the benchmark suites; returns a JSON-ready dict (see `write_reports`).

    Args:
        quick: A run of well under a minute that checks the harness works
            (small sizes, few cases, 3 repeats): for CI; its numbers mean little.
        sizes: log2 of the element counts of the activation and loss inputs
            (default 16, 20, 24; quick: 12).
        dtypes: Input dtypes (default float32 and bfloat16; quick: float32).
        modes: "graph" and/or "xla" (the inner `tf.function`'s `jit_compile`).
        repeats: Timed calls per case after warm-up (default 10; quick: 3).
        suites: Any of "activations", "losses", "training", "memory", "checks" (the cost
            of the label checks at 2^20 elements; quick: 2^12).
        activations, losses: Case names to run (default: all; quick: a few).
        progress: Draw a progress bar on stderr.
    """
    _check_names(suites, SUITES, "suites", "suite")
    _check_names(modes, MODES, "modes", "mode")
    names_a = list((QUICK_ACTIVATIONS if quick else ACTIVATIONS) if activations is None else activations)
    names_l = list((QUICK_LOSSES if quick else LOSSES) if losses is None else losses)
    _check_names(names_a, tuple(ACTIVATIONS), "activations", "activation")
    _check_names(names_l, LOSSES, "losses", "loss")
    log_sizes = list(sizes or ((12,) if quick else DEFAULT_SIZES))
    dtypes = list(dtypes or (("float32",) if quick else DTYPES))
    repeats = repeats or (3 if quick else 10)
    settings = dict(quick=quick, sizes_log2=log_sizes, dtypes=dtypes, modes=list(modes), repeats=repeats,
                    suites=list(suites), activations=names_a, losses=names_l)
    sizes = [2**int(s) for s in log_sizes]
    bar = _Progress(_plan_size(suites, names_a, names_l, sizes, dtypes, modes, quick), progress)
    started, load_before, t0 = time.strftime("%Y-%m-%d %H:%M:%S %Z"), _load(), time.perf_counter()
    rows = []
    try:
        if "activations" in suites and names_a:
            rows += bench_activations(sizes, dtypes, modes, repeats, names_a, bar)
        if "losses" in suites and names_l:
            rows += bench_losses(sizes, dtypes, modes, repeats, names_l, bar)
        if "training" in suites:
            rows += bench_training(repeats, quick, bar)
        if "memory" in suites:
            rows += bench_memory(quick, progress=bar)
        if "checks" in suites:
            rows += bench_checks(2**12 if quick else CHECK_SIZE, modes, repeats, bar)
    finally:
        bar.close()
    result = {"machine": {**machine(), "call_overhead_ms": round(call_overhead_ms(), 4)},
              "settings": settings, "started": started,
              "duration_s": round(time.perf_counter() - t0, 1),
              "load_before": load_before, "load_after": _load(),
              "rows": [dataclasses.asdict(r) for r in rows]}
    result["summary"] = summary(result)
    return result


# ----------------------------------------------------------------------------- reports


def summary(result):
    """Per target: rows checked, rows met, the worst ratio and its case."""
    out = []
    checks = [(key, r, r["ratio"]) for r in result["rows"] for key in [r["target"]]]
    checks += [("activation_floor", r, r["floor_ratio"]) for r in result["rows"]
               if r["group"] == "activation" and r["floor_met"] is not None]
    for key, (text, limit) in TARGETS.items():
        mine = [(r, ratio) for k, r, ratio in checks if k == key]
        if not mine:
            continue
        worst_row, worst = max(mine, key=lambda t: t[1])
        out.append({"target": key, "description": text, "max_ratio": limit, "checked": len(mine),
                    "met": sum(ratio <= limit for _, ratio in mine), "worst_ratio": worst,
                    "worst_case": _label(worst_row)})
    return out


_SIZED = ("activation", "loss", "check")  # groups whose size is a number of elements


def _label(r):
    size = f"2^{_log2(r['size'])}" if r["group"] in _SIZED else f"batch {r['size']}"
    return f"{r['case']} {r['mode']} {r['dtype']} {size}"


def _size_text(r):
    return f"2^{_log2(r['size'])}" if r["group"] in _SIZED else str(r["size"])


def _met_text(met):
    return {True: "yes", False: "**no**", None: ""}[met]


def main_table(result):
    """A Markdown table with one row per case (medians and ratios)."""
    lines = ["| group | case | mode | dtype | size | unit | ours | reference | ratio | vs floor | "
             "target | met |",
             "|---|---|---|---|---:|---|---:|---:|---:|---:|---:|---|"]
    for r in result["rows"]:
        floor = "" if r["floor_ratio"] is None else f"{r['floor_ratio']:.2f}x"
        met = _met_text(r["met"])
        if r["floor_met"] is not None:
            met += f" / floor {_met_text(r['floor_met'])}"
        lines.append(f"| {r['group']} | {r['case']} | {r['mode']} | {r['dtype']} | {_size_text(r)} | "
                     f"{r['unit']} | {r['ours']:.3f} | {r['ref']:.3f} | {r['ratio']:.2f} | {floor} | "
                     f"<= {r['max_ratio']:.2f} | {met} |")
    return "\n".join(lines)


def same_program_table(result):
    """Markdown: per activation, whether it runs the built-in's exact program, per mode and dtype."""
    cells = {}
    for r in result["rows"]:
        if r["group"] == "activation" and r.get("same_program") is not None:
            cells[(r["case"], r["mode"], r["dtype"])] = r["same_program"]
    if not cells:
        return ""
    columns = sorted({(m, d) for _, m, d in cells}, key=lambda c: (MODES.index(c[0]) if c[0] in MODES
                                                                   else 9, c[1]))
    names = list(dict.fromkeys(c for c, _, _ in cells))
    lines = ["| activation | " + " | ".join(f"{m} {d}" for m, d in columns) + " |",
             "|---|" + "---|" * len(columns)]
    for n in names:
        lines.append(f"| {n} | " + " | ".join({True: "same", False: "differs", None: ""}[
            cells.get((n, m, d))] for m, d in columns) + " |")
    return "\n".join(lines)


def summary_table(result):
    lines = ["| target | met | worst ratio | worst case |", "|---|---:|---:|---|"]
    for s in result["summary"]:
        lines.append(f"| {s['description']} | {s['met']}/{s['checked']} | {s['worst_ratio']:.2f} | "
                     f"{s['worst_case']} |")
    return "\n".join(lines)


def terminal_table(result):
    """Plain-text table of every row, then the per-target summary."""
    header = ("case", "mode", "dtype", "size", "ours", "ref", "unit", "ratio", "floor", "met")
    lines = []
    rows = [(r["case"], r["mode"], r["dtype"], _size_text(r), f"{r['ours']:.3f}", f"{r['ref']:.3f}",
             r["unit"], f"{r['ratio']:.2f}", "" if r["floor_ratio"] is None else f"{r['floor_ratio']:.2f}",
             ("yes" if r["met"] else "NO") + ("" if r["floor_met"] is None
                                              else " / floor " + ("yes" if r["floor_met"] else "NO")))
            for r in result["rows"]]
    widths = [max(len(h), *(len(x[i]) for x in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    lines.append("  ".join("-" * w for w in widths))
    for x in rows:
        lines.append("  ".join(c.rjust(w) if i in (3, 4, 5, 7, 8) else c.ljust(w)
                               for i, (c, w) in enumerate(zip(x, widths))).rstrip())
    lines.append("")
    for s in result["summary"]:
        lines.append(f"{s['met']:>3}/{s['checked']:<3} {s['description']}  (worst {s['worst_ratio']:.2f}: "
                     f"{s['worst_case']})")
    return "\n".join(lines)


def write_reports(result, out_dir, command="", notes=""):
    """Writes results.json and results.md (summary, notes, every row) to out_dir; returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    result = {**result, "command": command}
    json_path = os.path.join(out_dir, "results.json")
    with open(json_path, "w") as f:
        json.dump(result, f, indent=1)
    m, s = result["machine"], result["settings"]
    md = ["# keras_afl benchmark results", "",
          f"Command: `{command}`  " if command else "",
          f"Started {result['started']}, took {result['duration_s']:.0f} s; load average (1, 5, 15 min) "
          f"before {result['load_before']}, after {result['load_after']}.  ",
          f"Machine: {m['processor']}, {m['cpu_count']} CPU cores, {m.get('memory_gib', '?')} GiB, "
          f"GPUs: {', '.join(m['gpus']) or 'none'}; {m['platform']}.  ",
          f"Python {m['python']}, NumPy {m['numpy']}, TensorFlow {m['tensorflow']}, Keras {m['keras']}, "
          f"keras_afl {m['keras_afl']} (fused losses: {'on' if m['fused_losses'] else 'off'}). "
          f"Calling an empty `tf.function` takes {m['call_overhead_ms']:.3f} ms here.  ",
          f"Sizes 2^{', 2^'.join(map(str, s['sizes_log2']))} elements; dtypes {', '.join(s['dtypes'])}; "
          f"modes {', '.join(s['modes'])}; {s['repeats']} timed repeats per case after warm-up, "
          "ours, the reference, a read and a write called in turn; medians.", "",
          "Ratios are ours / reference: below 1 is faster (or smaller). \"vs floor\" is ours over the "
          "time to move the bytes that must move at the speed of a copy of the same size, timed in the "
          "same loop. Training rows are milliseconds per step (the steps/s ratio is 1 / ratio); the "
          "memory row is peak resident set size in MiB.", "",
          "## Targets", "", summary_table(result), ""]
    same = same_program_table(result)
    if same:
        md += ["## Same program as the built-in", "",
               "\"same\": ours runs exactly the built-in's TensorFlow kernels (graph mode: the ops its "
               "outputs depend on) or compiles to the same optimized XLA program (XLA), so a timing "
               "difference between the two is measurement noise. PReLU's reference is Keras's formula "
               "(`relu(x) - alpha * relu(-x)`), a different program by design.", "", same, ""]
    if notes:
        md += [notes.strip(), ""]
    md += ["## Every case", "", main_table(result), ""]
    md_path = os.path.join(out_dir, "results.md")
    with open(md_path, "w") as f:
        f.write("\n".join(md))
    return json_path, md_path

