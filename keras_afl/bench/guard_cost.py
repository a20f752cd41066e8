"""What the label checks cost a training step, on the backend this process runs.

The classifier of the "classifier" suite (784 -> 3 x Dense(256, relu) -> Dense(10)) trained with
`model.fit` on the backend's default compile setting, with a keras_afl loss whose labels are
checked (`"focal"` on a sigmoid output: labels in [0, 1]; `"afl_sparse_categorical_crossentropy"`
on a softmax output: class ids), against the same model traced with the checks switched off
(`keras_afl.losses.set_trace_options(label_checks=False)`, which also switches off the training
step's guard, `keras_afl._guard`). Both variants run in blocks of `fit` calls over the same
batches, alternating which goes first; the ratio of their median ms per step is the cost.

    python -m keras_afl.bench.guard_cost [--quick] [--json FILE]

Target (issue 19): at most 1.05 (5 % of a training step) at batch 32, 128 and 512.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import sys
import time

import keras
import numpy as np

from keras_afl import losses as L
from keras_afl.bench.classifier import classifier, classifier_data

TARGET = 1.05
BATCHES = (32, 128, 512)
CASES = {"focal": "sigmoid", "afl_sparse_categorical_crossentropy": "softmax"}


def _variant(loss, output, batch, checks, batches):
    keras.utils.set_random_seed(0)
    model = classifier(output)
    model.compile(keras.optimizers.Adam(1e-3), loss=loss)
    x, y = classifier_data(batch, batches)
    if loss.startswith("afl_sparse"):
        y = np.argmax(y, axis=-1).astype("int32")
    elif output == "sigmoid":
        y = (y > 0).astype("float32")
    switch = contextlib.nullcontext if checks else lambda: L.set_trace_options(label_checks=False)

    def run():
        with switch():
            model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)

    return run


def measure(loss, output, batch, repeats, batches):
    """ms per step with the checks on and off: (medians, samples)."""
    return alternating([_variant(loss, output, batch, on, batches) for on in (True, False)],
                       repeats, batches)


def alternating(pair, repeats, batches):
    """ms per step of two `run()`s of `batches` steps each, warmed up, then called in turn
    `repeats` times, which goes first flipping each round: (medians, samples)."""
    for run in pair:  # compile, warm up
        run()
        run()
    samples = [[], []]
    for r in range(repeats):
        for i in ((0, 1) if r % 2 == 0 else (1, 0)):
            t0 = time.perf_counter()
            pair[i]()
            samples[i].append((time.perf_counter() - t0) / batches * 1e3)
    return [statistics.median(s) for s in samples], samples


def run(quick=False, repeats=None):
    repeats = repeats or (3 if quick else 15)
    batches = 4 if quick else 24
    rows = []
    for loss, output in CASES.items():
        for batch in ((32,) if quick else BATCHES):
            (on, off), samples = measure(loss, output, batch, repeats, batches)
            rows.append({"loss": loss, "batch": batch, "checked_ms": round(on, 4),
                         "unchecked_ms": round(off, 4), "ratio": round(on / off, 4),
                         "target": TARGET, "met": on / off <= TARGET,
                         "samples_ms": {"checked": [round(v, 4) for v in samples[0]],
                                        "unchecked": [round(v, 4) for v in samples[1]]}})
    return {"backend": keras.backend.backend(),
            "compile": "default (jit_compile='auto')", "machine": platform.machine(),
            "python": platform.python_version(), "keras": keras.__version__,
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rows": rows}


def table(result):
    lines = [f"label checks, {result['backend']} ({result['compile']}): ms per training step",
             "loss                                  batch  checked  unchecked  ratio  <= 1.05"]
    for r in result["rows"]:
        lines.append(f"{r['loss']:<37} {r['batch']:>5}  {r['checked_ms']:>7.3f}  "
                     f"{r['unchecked_ms']:>9.3f}  {r['ratio']:>5.3f}  {'yes' if r['met'] else 'NO'}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m keras_afl.bench.guard_cost",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one batch size, few repeats")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--json", help="write the result to this file")
    args = parser.parse_args(argv)
    return report(run(quick=args.quick, repeats=args.repeats), table, args.json)


def report(result, table, path=None):
    """The end of a `python -m keras_afl.bench.*` program: prints `table(result)`, writes the
    result as JSON to `path` (if given); returns the exit code 0."""
    print(table(result))
    if path:
        with open(path, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
