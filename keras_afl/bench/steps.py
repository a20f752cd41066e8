"""Training steps on the backend this process runs, at its default compile setting: keras_afl's
loss against the same model with Keras's built-in loss (issue 21, item 1's last target).

The models (Keras layers only; the loss is the only difference):

- the classifier of the "classifier" suite, 784 -> 3 x Dense(256, relu) -> Dense(10), at batch
  32, 128 and 512, with three losses: categorical cross-entropy on a softmax output, sparse
  categorical cross-entropy on a softmax output, the focal loss on a sigmoid output;
- the segmenter's step: 256 x 256 RGB -> Conv2D(8, 3, relu) -> Conv2D(21, 1) logits, per-pixel
  sparse categorical cross-entropy over 21 classes (batch 2);
- the detector's step: the same trunk with 21 per-anchor sigmoid logits per pixel and the focal
  loss (gamma 2, alpha 0.25; Keras's `BinaryFocalCrossentropy(apply_class_balancing=True)`),
  batch 2.

`model.compile` is left at its default (`jit_compile="auto"`: XLA on JAX, and on TensorFlow
with a GPU; TensorFlow graph mode on a CPU; eager on PyTorch); the rows say which it resolved to.
Each variant runs `model.fit` over the same batches; the two alternate, which goes first
flipping each round; the ratio is ours / Keras's median ms per step (below 1: more steps/s).
Peak memory (`--memory`): each variant's few steps in a process of its own (`VmHWM`).

    python -m keras_afl.bench.steps [--quick] [--repeats N] [--json FILE]
    keras-afl bench --suites steps          (on any backend)
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time

import keras
import numpy as np

TARGET = 1.0
BATCHES = (32, 128, 512)
CLASSES = 21
SIDE = 256


def _losses(case):
    """(ours, Keras's) Loss objects of a case."""
    from keras_afl import losses as L

    k = keras.losses
    focal = dict(gamma=2.0, alpha=0.25)
    return {
        "classifier_cce": (L.CategoricalCrossentropy(), k.CategoricalCrossentropy()),
        "classifier_sparse_cce": (L.SparseCategoricalCrossentropy(),
                                  k.SparseCategoricalCrossentropy()),
        "classifier_focal": (L.FocalLoss(**focal),
                             k.BinaryFocalCrossentropy(apply_class_balancing=True, **focal)),
        "segmenter": (L.SparseCategoricalCrossentropy(from_logits=True),
                      k.SparseCategoricalCrossentropy(from_logits=True)),
        "detector": (L.FocalLoss(from_logits=True, **focal),
                     k.BinaryFocalCrossentropy(from_logits=True, apply_class_balancing=True,
                                               **focal)),
    }[case]


CASES = {  # case -> batch sizes
    "classifier_cce": BATCHES, "classifier_sparse_cce": BATCHES, "classifier_focal": BATCHES,
    "segmenter": (2,), "detector": (2,),
}


def _model_and_data(case, batch, batches):
    rng = np.random.default_rng(0)
    n = batch * batches
    if case.startswith("classifier"):
        from keras_afl.bench.classifier import classifier, classifier_data

        x, y = classifier_data(batch, batches)
        output = "sigmoid" if case == "classifier_focal" else "softmax"
        if case == "classifier_sparse_cce":
            y = np.argmax(y, axis=-1).astype("int32")
        return classifier(output), x, y
    trunk = [keras.Input((SIDE, SIDE, 3)), keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
             keras.layers.Conv2D(CLASSES, 1)]
    x = rng.normal(size=(n, SIDE, SIDE, 3)).astype("float32")
    if case == "segmenter":
        y = rng.integers(0, CLASSES, (n, SIDE, SIDE)).astype("int32")
    else:  # detector: about 1 % positive anchors
        y = (rng.random((n, SIDE, SIDE, CLASSES)) < 0.01).astype("float32")
    return keras.Sequential(trunk), x, y


def variant(case, batch, ours, batches):
    """A function that runs `batches` training steps of one variant (compiled on first use)."""
    keras.utils.set_random_seed(0)
    model, x, y = _model_and_data(case, batch, batches)
    model.compile(keras.optimizers.Adam(1e-3), loss=_losses(case)[0 if ours else 1])

    def run():
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)

    run.model = model
    return run


def _jit(model):
    mode = getattr(model, "jit_compile", None)
    return {True: "XLA", False: "graph" if keras.backend.backend() == "tensorflow" else "eager"}.get(
        mode, str(mode))


def measure(case, batch, repeats, batches):
    """ms per step of ours and Keras's: (medians, samples, the compile setting resolved)."""
    from keras_afl.bench.guard_cost import alternating

    pair = [variant(case, batch, ours, batches) for ours in (True, False)]
    medians, samples = alternating(pair, repeats, batches)
    return medians, samples, _jit(pair[0].model)


def peak_memory(case, batch, ours, steps=3):
    """Peak resident MiB of `steps` training steps of one variant, in a process of its own."""
    out = subprocess.run([sys.executable, "-m", "keras_afl.bench.steps", "--memory",
                          "ours" if ours else "keras", case, str(batch), str(steps)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]


def run(quick=False, repeats=None, memory=True):
    repeats = repeats or (3 if quick else 10)
    batches = 2 if quick else 8
    rows = []
    for case, sizes in CASES.items():
        for batch in (sizes[:1] if quick else sizes):
            (ours, ref), samples, mode = measure(case, batch, repeats, batches)
            row = {"case": case, "batch": batch, "compile": mode, "ours_ms": round(ours, 4),
                   "keras_ms": round(ref, 4), "ratio": round(ours / ref, 4), "target": TARGET,
                   "met": ours / ref <= TARGET,
                   "samples_ms": {"ours": [round(v, 4) for v in samples[0]],
                                  "keras": [round(v, 4) for v in samples[1]]}}
            if memory and batch == sizes[-1]:
                mine, theirs = peak_memory(case, batch, True), peak_memory(case, batch, False)
                row.update(ours_peak_mib=mine, keras_peak_mib=theirs,
                           memory_ratio=round(mine / theirs, 4), memory_met=mine <= theirs)
            rows.append(row)
    return {"backend": keras.backend.backend(), "compile": "default (jit_compile='auto')",
            "machine": f"{platform.machine()}, {platform.processor() or '?'}",
            "python": platform.python_version(), "keras": keras.__version__,
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "repeats": repeats,
            "rows": rows}


def table(result):
    lines = [f"training steps, {result['backend']} ({result['compile']}): ms per step, "
             "ours / Keras's (<= 1.0: as many steps/s or more)",
             "case                   batch compile   ours ms  keras ms  ratio  met  peak MiB ours/keras"]
    for r in result["rows"]:
        mem = (f"{r['ours_peak_mib']:.0f}/{r['keras_peak_mib']:.0f}"
               f"{'' if r['memory_met'] else ' (more)'}" if "ours_peak_mib" in r else "")
        lines.append(f"{r['case']:<22} {r['batch']:>5} {r['compile']:<7} {r['ours_ms']:>9.3f} "
                     f"{r['keras_ms']:>9.3f} {r['ratio']:>6.3f}  {'yes' if r['met'] else 'NO ':<4} {mem}")
    return "\n".join(lines)


def _memory_main(which, case, batch, steps):
    from keras_afl.bench.rss import peak_mib

    fit = variant(case, int(batch), which == "ours", int(steps))
    before = peak_mib()
    fit()
    print(json.dumps({"peak_mib": peak_mib(), "before_mib": before}))
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--memory"]:
        return _memory_main(*argv[1:])
    parser = argparse.ArgumentParser(prog="python -m keras_afl.bench.steps",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one batch size, few repeats")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory processes")
    parser.add_argument("--json", help="write the result to this file")
    args = parser.parse_args(argv)
    from keras_afl.bench.guard_cost import report

    return report(run(quick=args.quick, repeats=args.repeats, memory=not args.no_memory), table,
                  args.json)


if __name__ == "__main__":
    sys.exit(main())
