"""A/B: old (HEAD worktree) vs new (working tree) keras_afl in one process, interleaved, plus Keras."""
import os, sys, importlib, statistics, time
os.environ["KERAS_BACKEND"] = "torch"
import torch, keras
import numpy as np
def load(path):
    for m in [m for m in sys.modules if m == "keras_afl" or m.startswith("keras_afl.")]:
        del sys.modules[m]
    sys.path.insert(0, path)
    import keras_afl.losses as L
    sys.path.pop(0)
    return L
Lold = load("/tmp/wt_old"); Lnew = load("/work/main")
from keras_afl.bench.backends.cases import loss_inputs
from keras_afl.bench.backends.timing import torch_loss_step, time_round_robin
k = keras.losses
for size in map(int, sys.argv[1:]):
    for name, mk, kref in [("bce_logits", lambda L: L.BinaryCrossentropy(from_logits=True), k.BinaryCrossentropy(from_logits=True)),
                           ("cce_logits", lambda L: L.CategoricalCrossentropy(from_logits=True), k.CategoricalCrossentropy(from_logits=True)),
                           ("sparse_cce_logits", lambda L: L.SparseCategoricalCrossentropy(from_logits=True), k.SparseCategoricalCrossentropy(from_logits=True))]:
        new, old = mk(Lnew), mk(Lold)
        yt, yp = loss_inputs(new, 2**size, "float32")
        (tn, _), (to, _), (tk, _) = time_round_robin([torch_loss_step(l, yt, yp) for l in (new, old, kref)], 15)[0]
        print(f"{name:18s} 2^{size}: new {tn:.3f} old {to:.3f} keras {tk:.3f} ms | new/old {tn/to:.2f} new/keras {tn/tk:.2f} old/keras {to/tk:.2f}", flush=True)
