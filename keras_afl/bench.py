"""Benchmark harness: keras_afl against TensorFlow/Keras built-ins and the memory-bandwidth floor.

Importable (`keras_afl.bench.run(...)`) and behind `keras-afl bench`.

What is timed, per case, as the median of `repeats` calls after warm-up,
ours and the reference *interleaved* so that drift on a shared machine hits
both alike:

- activations: forward + backward (`tape.gradient` with an upstream gradient)
  inside `tf.function`, graph mode and XLA, against `tf.nn.*` differentiated by
  TensorFlow's autodiff, and against the bandwidth floor: the bytes that must
  move (read x, write y, read g and y, write dx: 5 tensors) over the copy
  bandwidth measured in the same run;
- losses: value + gradient with respect to `y_pred` of the `Loss` object
  (mean reduction), against the matching `keras.losses` class;
- end-to-end training steps per second (graph mode, as `jit_compile="auto"`
  gives on CPU): an MLP and a small fully convolutional network with a
  per-pixel focal loss, keras_afl vs the same model from Keras built-ins;
- peak memory (resident set size) of deep-MLP training steps, each variant
  in its own process.

Ratios are ours / reference: below 1 is faster (or smaller).
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
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

__all__ = ["run", "main_table", "write_reports"]

# ----------------------------------------------------------------------------- cases

ACTIVATION_CASES = {
    "relu": (A.relu, tf.nn.relu),
    "leaky_relu": (lambda x: A.leaky_relu(x, 0.01), lambda x: tf.nn.leaky_relu(x, 0.01)),
    "prelu": None,  # built below: needs an alpha tensor
    "sigmoid": (A.sigmoid, tf.math.sigmoid),
    "tanh": (A.tanh, tf.math.tanh),
    "softmax": (A.softmax, tf.nn.softmax),
    "elu": (A.elu, tf.nn.elu),
    "selu": (A.selu, tf.nn.selu),
}


def _loss_cases():
    """name -> (ours, Keras's, label kind, classes)."""
    k = keras.losses
    return {
        "mse": (L.MeanSquaredError(), k.MeanSquaredError(), "regression", 16),
        "huber": (L.Huber(), k.Huber(), "regression", 16),
        "hinge": (L.Hinge(), k.Hinge(), "binary", 16),
        "bce_logits": (L.BinaryCrossentropy(from_logits=True), k.BinaryCrossentropy(from_logits=True),
                       "binary", 16),
        "bce_probs": (L.BinaryCrossentropy(), k.BinaryCrossentropy(), "binary_probs", 16),
        "focal_logits": (L.FocalLoss(gamma=2.0, alpha=0.25, from_logits=True),
                         k.BinaryFocalCrossentropy(apply_class_balancing=True, alpha=0.25, gamma=2.0,
                                                   from_logits=True), "binary", 16),
        "cce_logits": (L.CategoricalCrossentropy(from_logits=True),
                       k.CategoricalCrossentropy(from_logits=True), "categorical", 16),
        "sparse_cce_logits": (L.SparseCategoricalCrossentropy(from_logits=True),
                              k.SparseCategoricalCrossentropy(from_logits=True), "sparse", 16),
        "categorical_focal_logits": (L.CategoricalFocalLoss(gamma=2.0, alpha=0.25, from_logits=True),
                                     k.CategoricalFocalCrossentropy(alpha=0.25, gamma=2.0, from_logits=True),
                                     "categorical", 16),
    }


# ----------------------------------------------------------------------------- timing


def _timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    # CPU eager execution is synchronous; on a GPU, fetch one scalar to wait.
    first = tf.nest.flatten(out)[0]
    if first.device.endswith("GPU:0"):
        _ = tf.reshape(first, [-1])[0].numpy()
    return time.perf_counter() - t0


def _interleaved(fa, fb, args, repeats, warmup=2):
    for _ in range(warmup):
        fa(*args)
        fb(*args)
    ta, tb = [], []
    for _ in range(repeats):
        ta.append(_timed(fa, *args))
        tb.append(_timed(fb, *args))
    return statistics.median(ta), statistics.median(tb)


def _median(fn, args, repeats, warmup=2):
    for _ in range(warmup):
        fn(*args)
    return statistics.median(_timed(fn, *args) for _ in range(repeats))


def _act_step(fn, xla):
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


def copy_bandwidth(n, dtype, repeats):
    """Bytes per second of a read + write pass over n elements (x * s, s a runtime scalar)."""
    x = tf.random.normal([n], dtype=tf.float32)
    x = tf.cast(x, dtype)
    s = tf.constant(1.0, dtype)
    f = tf.function(lambda x, s: x * s, autograph=False)
    t = _median(f, (x, s), repeats)
    return 2 * n * x.dtype.size / t


@dataclasses.dataclass
class Row:
    group: str
    case: str
    mode: str
    dtype: str
    size: int
    ours_ms: float
    ref_ms: float
    ratio: float
    floor_ms: float | None = None
    floor_ratio: float | None = None
    target: str = ""
    met: bool | None = None


def _progress(i, total, label, enabled):
    if enabled:
        width = 28
        done = int(width * i / max(total, 1))
        sys.stderr.write(f"\r[{'#' * done}{'.' * (width - done)}] {i}/{total} {label[:48]:<48}")
        sys.stderr.flush()
        if i == total:
            sys.stderr.write("\n")


# ----------------------------------------------------------------------------- suites


def bench_activations(sizes, dtypes, modes, repeats, progress=True, names=None):
    rows = []
    names = names or list(ACTIVATION_CASES)
    plan = [(n, d, m, s) for n in names for d in dtypes for m in modes for s in sizes]
    floors = {}
    for i, (name, dtype, mode, size) in enumerate(plan):
        _progress(i, len(plan), f"activation {name} {dtype} {mode} 2^{int(np.log2(size))}", progress)
        dt = tf.as_dtype(dtype)
        cols = 1024 if size >= 1024 else size
        shape = [size // cols, cols]
        x = tf.cast(tf.random.normal(shape), dt)
        g = tf.cast(tf.random.normal(shape), dt)
        if name == "prelu":
            alpha = tf.fill([cols], tf.constant(0.25, dt))
            ours = lambda x, a=alpha: A.prelu(x, a)  # noqa: E731
            ref = lambda x, a=alpha: tf.maximum(x, 0) + a * tf.minimum(x, 0)  # noqa: E731  (Keras's formula)
        else:
            ours, ref = ACTIVATION_CASES[name]
        xla = mode == "xla"
        to, tr = _interleaved(_act_step(ours, xla), _act_step(ref, xla), (x, g), repeats)
        key = (dtype, size)
        if key not in floors:
            floors[key] = copy_bandwidth(size, dt, repeats)
        floor = 5 * size * dt.size / floors[key]
        rows.append(Row("activation", name, mode, dtype, size, to * 1e3, tr * 1e3, to / tr,
                        floor * 1e3, to / floor, "<= 1.05x native; <= 1.3x floor at 2^24",
                        (to / tr <= 1.05) and (size < 2**24 or to / floor <= 1.3)))
    _progress(len(plan), len(plan), "activations done", progress)
    return rows


def _loss_inputs(kind, size, classes, dt):
    rows = max(size // classes, 1)
    rng = np.random.default_rng(0)
    z = tf.cast(tf.constant(rng.normal(size=(rows, classes)).astype("float32") * 3), dt)
    if kind == "regression":
        y = tf.cast(tf.constant(rng.normal(size=(rows, classes)).astype("float32")), dt)
        return y, z
    if kind in ("binary", "binary_probs"):
        y = tf.cast(tf.constant((rng.random((rows, classes)) < 0.1).astype("float32")), dt)
        return y, (tf.math.sigmoid(z) if kind == "binary_probs" else z)
    labels = rng.integers(0, classes, rows)
    if kind == "sparse":
        return tf.constant(labels.astype("int32")), z
    return tf.cast(tf.one_hot(labels, classes), dt), z


def bench_losses(sizes, dtypes, modes, repeats, progress=True, names=None):
    rows = []
    cases = _loss_cases()
    names = names or list(cases)
    plan = [(n, d, m, s) for n in names for d in dtypes for m in modes for s in sizes]
    for i, (name, dtype, mode, size) in enumerate(plan):
        _progress(i, len(plan), f"loss {name} {dtype} {mode} 2^{int(np.log2(size))}", progress)
        ours, ref, kind, classes = cases[name]
        y, z = _loss_inputs(kind, size, classes, tf.as_dtype(dtype))
        xla = mode == "xla"
        to, tr = _interleaved(_loss_step(ours, xla), _loss_step(ref, xla), (y, z), repeats)
        target = 0.5 if mode == "graph" else 1.0
        rows.append(Row("loss", name, mode, dtype, size, to * 1e3, tr * 1e3, to / tr,
                        target=f"<= {target}x Keras", met=to / tr <= target))
    _progress(len(plan), len(plan), "losses done", progress)
    return rows


def _mlp(ours, width=512, depth=4, classes=10, features=256):
    layers = [keras.Input((features,))]
    for _ in range(depth):
        if ours:
            layers += [keras.layers.Dense(width), keras_afl.layers.ReLU()]
        else:
            layers += [keras.layers.Dense(width, activation="relu")]
    layers += [keras.layers.Dense(classes), keras_afl.layers.Softmax() if ours else keras.layers.Softmax()]
    return keras.Sequential(layers)


def _segnet(ours, size=128):
    act = (lambda: keras_afl.layers.ReLU()) if ours else (lambda: keras.layers.ReLU())
    inputs = keras.Input((size, size, 3))
    h = act()(keras.layers.Conv2D(16, 3, padding="same")(inputs))
    h = act()(keras.layers.Conv2D(16, 3, padding="same")(h))
    logits = keras.layers.Conv2D(1, 1)(h)
    out = (keras_afl.layers.Sigmoid() if ours else keras.layers.Activation("sigmoid"))(logits)
    return keras.Model(inputs, out)


def _steps_per_second(model, loss, x, y, batch, steps, repeats):
    keras.utils.set_random_seed(0)
    model.compile(keras.optimizers.SGD(0.01), loss=loss, jit_compile=False)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch, drop_remainder=True).repeat()
    model.fit(ds, epochs=1, steps_per_epoch=3, verbose=0)  # trace + warm up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model.fit(ds, epochs=1, steps_per_epoch=steps, verbose=0)
        times.append(time.perf_counter() - t0)
    return steps / statistics.median(times)


def bench_training(repeats, quick, progress=True):
    rows = []
    rng = np.random.default_rng(0)
    batch, steps = (64, 5) if quick else (256, 30)
    n = batch * 4
    x = rng.normal(size=(n, 256)).astype("float32")
    y = np.eye(10, dtype="float32")[rng.integers(0, 10, n)]
    plans = [("mlp_4x512_cce", "MLP 4x512, batch %d, softmax + CCE" % batch)]
    _progress(0, 2, "training: MLP", progress)
    sp_ours = _steps_per_second(_mlp(True), "afl_cce", x, y, batch, steps, repeats)
    sp_ref = _steps_per_second(_mlp(False), "categorical_crossentropy", x, y, batch, steps, repeats)
    rows.append(Row("training", plans[0][0], "graph", "float32", batch, 1e3 / sp_ours, 1e3 / sp_ref,
                    sp_ref / sp_ours, target=">= 1.0x steps/s", met=sp_ours >= sp_ref))
    size = 64 if quick else 128
    sbatch, ssteps = (2, 3) if quick else (8, 10)
    xs = rng.normal(size=(sbatch * 2, size, size, 3)).astype("float32")
    ys = (rng.random((sbatch * 2, size, size, 1)) < 0.05).astype("float32")
    _progress(1, 2, "training: segmentation focal", progress)
    sp_ours = _steps_per_second(_segnet(True, size), L.FocalLoss(gamma=2.0, alpha=0.25), xs, ys,
                                sbatch, ssteps, repeats)
    sp_ref = _steps_per_second(_segnet(False, size),
                               keras.losses.BinaryFocalCrossentropy(apply_class_balancing=True, alpha=0.25,
                                                                    gamma=2.0),
                               xs, ys, sbatch, ssteps, repeats)
    rows.append(Row("training", f"segnet_{size}px_focal", "graph", "float32", sbatch, 1e3 / sp_ours,
                    1e3 / sp_ref, sp_ref / sp_ours, target=">= 1.3x steps/s", met=sp_ours >= 1.3 * sp_ref))
    _progress(2, 2, "training done", progress)
    return rows


_MEMORY_CHILD = r"""
import os, resource, sys, json
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import numpy as np, tensorflow as tf, keras, keras_afl
ours, depth, width, batch = sys.argv[1] == "ours", int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
layers = [keras.Input((width,))]
for _ in range(depth):
    layers += [keras.layers.Dense(width), keras_afl.layers.ELU()] if ours else [keras.layers.Dense(width, activation="elu")]
layers += [keras.layers.Dense(1), keras_afl.layers.Sigmoid() if ours else keras.layers.Activation("sigmoid")]
model = keras.Sequential(layers)
model.compile("sgd", loss="focal" if ours else keras.losses.BinaryFocalCrossentropy(apply_class_balancing=True), jit_compile=False)
x = np.random.default_rng(0).normal(size=(batch, width)).astype("float32")
y = (x[:, :1] > 0).astype("float32")
model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
model.fit(x, y, batch_size=batch, epochs=3, verbose=0)
print(json.dumps({"peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "after_first_kb": base}))
"""


def bench_memory(quick):
    depth, width, batch = (4, 256, 128) if quick else (16, 1024, 1024)
    peaks = {}
    for variant in ("ours", "builtin"):
        out = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, variant, str(depth), str(width), str(batch)],
                             capture_output=True, text=True, check=True)
        peaks[variant] = json.loads(out.stdout.strip().splitlines()[-1])["peak_kb"] / 1024
    return [Row("memory", f"deep_mlp_{depth}x{width}_b{batch}", "graph", "float32", batch,
                peaks["ours"], peaks["builtin"], peaks["ours"] / peaks["builtin"],
                target="<= 1.0x peak RSS (MiB in the ms columns)", met=peaks["ours"] <= peaks["builtin"] * 1.0)]


# ----------------------------------------------------------------------------- reports


def machine():
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "keras_afl": keras_afl.__version__,
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
    }


def run(*, quick=False, sizes=None, dtypes=("float32", "bfloat16"), modes=("graph", "xla"), repeats=None,
        suites=("activations", "losses", "training", "memory"), progress=True):
    """Runs the benchmark suites and returns {"machine", "settings", "rows"}.

    `quick` shrinks everything so the harness runs in well under a minute
    (for CI: it checks that the harness works, its numbers mean little).
    """
    if sizes is None:
        sizes = [2**12] if quick else [2**16, 2**20, 2**24]
    if repeats is None:
        repeats = 3 if quick else 10
    settings = dict(quick=quick, sizes=list(sizes), dtypes=list(dtypes), modes=list(modes),
                    repeats=repeats, suites=list(suites))
    rows = []
    if "activations" in suites:
        rows += bench_activations(sizes, dtypes, modes, repeats, progress,
                                  names=["relu", "sigmoid"] if quick else None)
    if "losses" in suites:
        rows += bench_losses(sizes, dtypes, modes, repeats, progress,
                             names=["bce_logits", "focal_logits"] if quick else None)
    if "training" in suites:
        rows += bench_training(repeats, quick, progress)
    if "memory" in suites:
        rows += bench_memory(quick)
    return {"machine": machine(), "settings": settings, "rows": [dataclasses.asdict(r) for r in rows]}


def main_table(result):
    """A Markdown table of every row (medians and ratios)."""
    lines = ["| group | case | mode | dtype | size | ours (ms) | reference (ms) | ratio | vs floor | target | met |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---|---|"]
    for r in result["rows"]:
        size = f"2^{int(np.log2(r['size']))}" if r["group"] in ("activation", "loss") else str(r["size"])
        floor = f"{r['floor_ratio']:.2f}x" if r.get("floor_ratio") is not None else ""
        met = {True: "yes", False: "**no**", None: ""}[r["met"]]
        lines.append(f"| {r['group']} | {r['case']} | {r['mode']} | {r['dtype']} | {size} | "
                     f"{r['ours_ms']:.3f} | {r['ref_ms']:.3f} | {r['ratio']:.2f} | {floor} | {r['target']} | {met} |")
    return "\n".join(lines)


def write_reports(result, out_dir, command=""):
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump({**result, "command": command}, f, indent=1)
    m = result["machine"]
    md = [f"# keras_afl benchmark results\n",
          f"Command: `{command}`  ",
          f"Machine: {m['platform']}, {m['cpu_count']} CPU cores, GPUs: {m['gpus'] or 'none'}  ",
          f"TensorFlow {m['tensorflow']}, Keras {m['keras']}, keras_afl {m['keras_afl']}, Python {m['python']}\n",
          "Ratios are ours / reference (below 1 = faster or smaller). Training rows show ms per step.\n",
          main_table(result), ""]
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write("\n".join(md))
