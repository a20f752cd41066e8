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
  a deep MLP's training steps, each variant in a fresh process
  (`python -m keras_afl.bench.memory`; the two run side by side);
- the label checks (suite "checks"): value + gradient of a loss with its label
  checks against the same loss traced with them switched off
  (`keras_afl.losses.set_trace_options(label_checks=False)`), at 2^20
  elements, graph mode and XLA;
- the size sweep (suite "sweep", not in the default run; `sweep`): every
  activation and loss at 2^10, 2^12, ..., 2^24 elements, each loss's plain
  and compiled paths beside Keras's loss, the crossover table read off them,
  one plot per family;
- training steps at ordinary sizes (suite "classifier", not in the default
  run): 784 -> 3 x Dense(256) -> 10 classes at batch 32, 128 and 512 with
  afl_cce, afl_bce and focal against the same model with Keras's losses,
  graph mode and XLA, and the peak memory of each at batch 512.

Ratios are ours / reference: below 1 is faster (or smaller). Targets are
written into every row (`max_ratio`, `met`) and summarised per target.

The modules, one job each: `cases` (what is measured: targets, cases, their
inputs), `timing` (steps, the round-robin timer, rows, the machine),
`programs` (`same_program`: the built-in's kernels or XLA program exactly?),
`suites` (the `bench_*` functions), `sweep` (the size sweep, the crossover
table, its tables and plots), `memory` (the program whose peak memory
is measured, run in a process of its own) and `reports` (tables, results.md
and results.json). The harness uses keras_afl's public names only, but for the
sweep, which forces the losses' paths through `keras_afl._backend._tensorflow._crossover`.

Beside it: `backends` (the harness of JAX and PyTorch, a folder laid out the
same way), `guard_cost` (the label checks' cost per training step), and
`device` and `table` (the device in words, plain-text tables), which the app
(`keras_afl.cli`) uses too: the app imports the harness, the harness never the app.
"""

from __future__ import annotations

import dataclasses
import importlib
import time

# The TensorFlow harness's public names -> the module that defines them. They are imported when
# first used (PEP 562), not with the package: `keras_afl.bench.backends`, the harness of JAX and
# PyTorch, imports this package and must not need TensorFlow.
_NAMES = {
    "cases": ("ACTIVATIONS", "CHECK_SIZE", "CLASSIFIER_BATCHES", "CLASSIFIER_LOSSES",
              "DEFAULT_SIZES", "DEFAULT_SUITES", "DTYPES", "LOSSES", "MEMORY_CASES", "MODES",
              "QUICK_ACTIVATIONS", "QUICK_LOSSES", "QUICK_MEMORY_CASES", "SUITES", "TARGETS",
              "check_cases"),
    "programs": ("same_program",),
    "reports": ("main_table", "same_program_table", "summary", "summary_table", "terminal_table",
                "write_reports"),
    "suites": ("bench_activations", "bench_checks", "bench_classifier", "bench_losses",
               "bench_memory", "bench_training"),
    "sweep": ("SWEEP_REPEATS", "SWEEP_SIZES", "bench_sweep_activations", "bench_sweep_losses",
              "crossover_table", "kernel_counts", "plot_sweep", "sweep_summary"),
    "timing": ("Progress", "call_overhead_ms", "load", "machine"),
}
_MODULE_OF = {name: module for module, names in _NAMES.items() for name in names}


def __getattr__(name):
    module = _MODULE_OF.get(name)
    if module is None:  # a submodule (`from keras_afl.bench import backends`) is imported instead
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted({*globals(), *_MODULE_OF})


__all__ = ["run", "same_program", "write_reports", "terminal_table", "main_table", "summary",
           "summary_table", "same_program_table", "TARGETS", "ACTIVATIONS", "LOSSES", "SUITES",
           "MODES", "DTYPES", "QUICK_ACTIVATIONS", "QUICK_LOSSES", "DEFAULT_SUITES", "SWEEP_SIZES",
           "crossover_table", "plot_sweep", "sweep_summary"]


def _plan_size(suites, names_a, names_l, sizes, dtypes, modes, quick, sweep_sizes):
    from keras_afl.bench.cases import (CLASSIFIER_BATCHES, CLASSIFIER_LOSSES, MEMORY_CASES,
                                       QUICK_MEMORY_CASES, check_cases)

    n = len(check_cases()) * len(modes) * ("checks" in suites)
    if "sweep" in suites:
        n += (len(names_a) + len(names_l)) * len(sweep_sizes) * len(dtypes) * len(modes)
    if "classifier" in suites:
        losses, batches = (1, 1) if quick else (len(CLASSIFIER_LOSSES), len(CLASSIFIER_BATCHES))
        n += losses * len(modes) * (batches + 1)  # the steps at each batch, then the peak memory
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


def run(*, quick=False, sizes=None, dtypes=None, modes=None, repeats=None, suites=None,
        activations=None, losses=None, progress=True):
    """Runs the benchmark suites; returns a JSON-ready dict (see `write_reports`).

    Args:
        quick: A run of well under a minute that checks the harness works
            (small sizes, few cases, 3 repeats): for CI; its numbers mean little.
        sizes: log2 of the element counts of the activation and loss inputs
            (default 16, 20, 24; quick: 12; the sweep: 10, 12, ..., 24, quick: 10, 12).
        dtypes: Input dtypes (default float32 and bfloat16; quick: float32).
        modes: "graph" and/or "xla" (the inner `tf.function`'s `jit_compile`; default both).
        repeats: Timed calls per case after warm-up (default 10, the sweep 5 at 2^22 and up and
            more below (`sweep.sweep_repeats`); quick: 3).
        suites: Any of "activations", "losses", "training", "memory", "checks" (the cost
            of the label checks at 2^20 elements; quick: 2^12) -- the default -- and "sweep"
            (every loss and activation at each size, the losses' plain and compiled paths;
            see `keras_afl.bench.sweep`) and "classifier" (training steps and peak memory of a
            3 x 256 Dense classifier at batch 32, 128, 512 with three losses, graph and XLA).
        activations, losses: Case names to run (default: all; quick: a few).
        progress: Draw a progress bar on stderr.
    """
    from keras_afl.bench.cases import (ACTIVATIONS, CHECK_SIZE, DEFAULT_SIZES, DEFAULT_SUITES,
                                       DTYPES, LOSSES, MODES, QUICK_ACTIVATIONS, QUICK_LOSSES,
                                       SUITES)
    from keras_afl.bench.reports import summary
    from keras_afl.bench.suites import (bench_activations, bench_checks, bench_classifier,
                                        bench_losses, bench_memory, bench_training)
    from keras_afl.bench.sweep import (SWEEP_REPEATS, bench_sweep_activations, bench_sweep_losses,
                                       crossover_table, kernel_counts, sweep_summary)
    from keras_afl.bench.timing import Progress, call_overhead_ms, load, machine

    modes = MODES if modes is None else modes
    suites = DEFAULT_SUITES if suites is None else suites
    _check_names(suites, SUITES, "suites", "suite")
    _check_names(modes, MODES, "modes", "mode")
    names_a = list((QUICK_ACTIVATIONS if quick else ACTIVATIONS) if activations is None else activations)
    names_l = list((QUICK_LOSSES if quick else LOSSES) if losses is None else losses)
    _check_names(names_a, tuple(ACTIVATIONS), "activations", "activation")
    _check_names(names_l, LOSSES, "losses", "loss")
    log_sizes = list(sizes or ((12,) if quick else DEFAULT_SIZES))
    sweep_log = list(sizes or ((10, 12) if quick else SWEEP_SIZES))
    dtypes = list(dtypes or (("float32",) if quick else DTYPES))
    sweep_repeats = repeats or (3 if quick else SWEEP_REPEATS)
    repeats = repeats or (3 if quick else 10)
    settings = dict(quick=quick, sizes_log2=log_sizes, dtypes=dtypes, modes=list(modes), repeats=repeats,
                    suites=list(suites), activations=names_a, losses=names_l)
    if "sweep" in suites:
        settings.update(sweep_sizes_log2=sweep_log, sweep_repeats=sweep_repeats)
    sizes = [2**int(s) for s in log_sizes]
    sweep_sizes = [2**int(s) for s in sweep_log]
    bar = Progress(_plan_size(suites, names_a, names_l, sizes, dtypes, modes, quick, sweep_sizes),
                   progress)
    started, load_before, t0 = time.strftime("%Y-%m-%d %H:%M:%S %Z"), load(), time.perf_counter()
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
        if "classifier" in suites:
            rows += bench_classifier(modes, repeats, quick, bar)
        if "sweep" in suites:
            if names_l:
                rows += bench_sweep_losses(sweep_sizes, dtypes, modes, sweep_repeats, names_l, bar)
            if names_a:
                rows += bench_sweep_activations(sweep_sizes, dtypes, modes, sweep_repeats, names_a, bar)
    finally:
        bar.close()
    result = {"machine": {**machine(), "call_overhead_ms": round(call_overhead_ms(), 4)},
              "settings": settings, "started": started,
              "duration_s": round(time.perf_counter() - t0, 1),
              "load_before": load_before, "load_after": load(),
              "rows": [dataclasses.asdict(r) for r in rows]}
    result["summary"] = summary(result)
    if "sweep" in suites:
        result["sweep_summary"] = sweep_summary(result)
        result["crossover"] = crossover_table(result["rows"])
        if names_l:
            result["kernels"] = kernel_counts(names_l)
    return result
