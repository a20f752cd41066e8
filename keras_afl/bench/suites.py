"""The suites: activations, losses, training steps, peak memory and the label checks' cost.

Each `bench_*` function returns a list of `Row`s and moves the progress bar
(`progress.step` before a case, `progress.advance` after it).
"""

from __future__ import annotations

import json
import os
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
from keras_afl.bench.cases import (ACTIVATIONS, CLASSIFIER_BATCHES, CLASSIFIER_LOSSES, LOSSES,
                                   MEMORY_CASES, QUICK_MEMORY_CASES, TARGETS, activation_inputs,
                                   check_cases, loss_cases, loss_inputs)
from keras_afl.bench.classifier import classifier, classifier_data
from keras_afl.bench.programs import same_program
from keras_afl.bench.timing import (Row, activation_step, bandwidth_steps, iqr, log2, loss_step,
                                    repeats_at, round_robin, timed_row)

# ----------------------------------------------------------------------------- activations, losses


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
                        progress.step(f"activation {name} {dtype} {mode} 2^{log2(size)}")
                    x, g, alpha = activation_inputs(size, dt)
                    args = (x, g, alpha) if with_alpha else (x, g)
                    xla = mode == "xla"
                    fns = [activation_step(ours, xla, with_alpha), activation_step(ref, xla, with_alpha),
                           *bandwidth_steps(0)]
                    samples = round_robin(fns, args, repeats_at(repeats, size))
                    # read x, write y; read g and y (or x), write dx
                    row = timed_row("activation", name, mode, dtype, size, "activation_native",
                                    samples, (3, 2), "activation_floor")
                    row.same_program = same
                    rows.append(row)
                    if progress:
                        progress.advance()
    return rows


def bench_losses(sizes, dtypes, modes, repeats, names=None, progress=None):
    rows = []
    for name in names or LOSSES:
        for dtype in dtypes:
            dt = tf.as_dtype(dtype)
            for mode in modes:
                for size in sizes:
                    if progress:
                        progress.step(f"loss {name} {dtype} {mode} 2^{log2(size)}")
                    ours, ref = loss_cases()[name]
                    y, z = loss_inputs(ours, size, dt)
                    xla = mode == "xla"
                    fns = [loss_step(ours, xla), loss_step(ref, xla), *bandwidth_steps(1)]
                    samples = round_robin(fns, (y, z), repeats_at(repeats, size))
                    # read y_pred and y_true, write the gradient (in units of y_pred's bytes)
                    labels = int(np.prod(y.shape)) * y.dtype.size / (int(np.prod(z.shape)) * dt.size)
                    target = "loss_graph" if mode == "graph" else "loss_xla"
                    rows.append(timed_row("loss", name, mode, dtype, size, target, samples,
                                          (1 + labels, 1)))
                    if progress:
                        progress.advance()
    return rows


# ----------------------------------------------------------------------------- training steps


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
               TARGETS[target][1], ours / ref <= TARGETS[target][1], spread=iqr(samples[0]),
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


def _classifier_train_function(loss, output, batch, xla):
    keras.utils.set_random_seed(0)
    model = classifier(output)
    model.compile(keras.optimizers.SGD(0.01), loss=loss, jit_compile=xla)
    x, y = classifier_data(batch)
    iterator = iter(tf.data.Dataset.from_tensor_slices((x, y)).batch(batch, drop_remainder=True).repeat())
    model.make_train_function()
    fn = model.train_function
    return lambda: fn(iterator)


def bench_classifier(modes, repeats, quick, progress=None):
    """Training steps of the classifier (`memory.classifier`: 784 -> 3 x Dense(256) -> Dense(10))
    with each of keras_afl's losses (by name) against the same model with Keras's loss, at each
    batch size, graph mode and XLA (`jit_compile`); then peak memory at the largest batch, each
    variant in a process of its own."""
    rows = []
    batches = (32,) if quick else CLASSIFIER_BATCHES
    names = list(CLASSIFIER_LOSSES)[:1] if quick else list(CLASSIFIER_LOSSES)
    for name in names:
        keras_loss, output = CLASSIFIER_LOSSES[name]
        for mode in modes:
            for batch in batches:
                if progress:
                    progress.step(f"classifier {name} {mode} batch {batch}")
                xla = mode == "xla"
                pair = (_classifier_train_function(name, output, batch, xla),
                        _classifier_train_function(keras_loss(), output, batch, xla))
                steps = 2 if quick else max(5, 2560 // batch)
                # 3x the blocks of the other training rows: a step is 1-10 ms, noisy on a shared machine
                row = _training_row(name, batch, "classifier_steps",
                                    _steps(pair, steps, repeats if quick else 3 * repeats),
                                    f"784 -> 3 x Dense(256, relu) -> Dense(10, {output}); batch {batch}; "
                                    f"{name} vs Keras's {type(keras_loss()).__name__}")
                row.group, row.mode = "classifier", mode
                rows.append(row)
                if progress:
                    progress.advance()
    for name in names:
        for mode in modes:
            if progress:
                progress.step(f"classifier memory {name} {mode} batch {batches[-1]}")
            args = ("classifier", name, mode, batches[-1], 2 if quick else 5)
            rows += _memory_rows({f"classifier_{name}": (args, f"the classifier with {name}, {mode}")},
                                 1, "classifier_memory", mode)  # peak RSS repeats to ~1 MiB
            if progress:
                progress.advance()
    return rows


# ----------------------------------------------------------------------------- peak memory


def start_memory_process(variant, args):
    """Starts `python -m keras_afl.bench.memory variant *args` (a fresh process); returns its Popen."""
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return subprocess.Popen([sys.executable, "-m", "keras_afl.bench.memory", variant, *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def bench_memory(quick, repeats=None, progress=None):
    """Peak RSS of each memory case, ours and the built-in's, each in a process of its own
    (`keras_afl.bench.memory`), the two running side by side."""
    cases = QUICK_MEMORY_CASES if quick else MEMORY_CASES
    return _memory_rows(cases, 1 if quick else (repeats or 3), "memory", "graph", progress)


def _memory_rows(cases, repeats, target, mode, progress=None):
    rows = []
    for name, (args, text) in cases.items():
        runs = {"ours": [], "builtin": []}
        for r in range(repeats):
            if progress:
                progress.step(f"memory: {name}, pair {r + 1}/{repeats}")
            procs = {v: start_memory_process(v, args) for v in runs}
            for v, p in procs.items():
                out, err = p.communicate(timeout=900)
                if p.returncode != 0:
                    raise RuntimeError(f"memory benchmark {name} ({v}) failed:\n{err[-3000:]}")
                runs[v].append(json.loads(out.strip().splitlines()[-1]))
        peak = {v: statistics.median(r["peak_mib"] for r in rs) for v, rs in runs.items()}
        grow = {v: statistics.median(r["peak_mib"] - r["before_mib"] for r in rs) for v, rs in runs.items()}
        if progress and target == "memory":
            progress.advance()
        ratio = peak["ours"] / peak["builtin"]
        group = "memory" if target == "memory" else "classifier_memory"
        rows.append(Row(group, name, mode, "float32", args[-2], "MiB", peak["ours"], peak["builtin"],
                        ratio, target, TARGETS[target][1], ratio <= TARGETS[target][1],
                        samples={"ours": [r["peak_mib"] for r in runs["ours"]],
                                 "ref": [r["peak_mib"] for r in runs["builtin"]]},
                        note=(f"{text}. Peak RSS of the process, median of {repeats}; growth during the "
                              f"training steps: ours {grow['ours']:.1f} MiB, "
                              f"built-in {grow['builtin']:.1f} MiB")))
    return rows


# ----------------------------------------------------------------------------- label checks


def traced_with_label_checks(on, step, *args):
    """`step` traced for `args` with the label checks switched on or off (the switch is read
    while tracing; later calls with these argument types reuse the trace)."""
    with L.set_trace_options(label_checks=on):
        step.get_concrete_function(*args)
    return step


def bench_checks(size, modes, repeats, progress=None):
    """Each checked loss (ours) against itself without the checks (reference): their cost."""
    rows = []
    for name in check_cases():
        for mode in modes:
            if progress:
                progress.step(f"label checks {name} {mode} 2^{log2(size)}")
            on, off = check_cases()[name], check_cases()[name]
            y, z = loss_inputs(on, size, tf.float32)
            xla = mode == "xla"
            fns = [traced_with_label_checks(True, loss_step(on, xla), y, z),
                   traced_with_label_checks(False, loss_step(off, xla), y, z)]
            samples = round_robin(fns, (y, z), repeats_at(repeats, size))
            rows.append(timed_row("check", name, mode, "float32", size, "label_checks", samples))
            if progress:
                progress.advance()
    return rows
