"""The suites of the harness of JAX and PyTorch: the rows of the activations and the losses
on the active backend, and `run`, which times them with the machine's state, for
`keras_afl.bench.backends`."""

from __future__ import annotations

import os
import platform
import sys
import time

import numpy as np

from keras_afl.bench.backends.cases import (ACTIVATIONS, DEFAULT_MODES, DEFAULT_REPEATS,
                                            DEFAULT_SIZES, LOSSES, MODES, QUICK_ACTIVATIONS,
                                            QUICK_LOSSES, QUICK_REPEATS, QUICK_SIZES, TARGETS,
                                            active_backend,
                                            activation_inputs, loss_cases, loss_inputs,
                                            native_activations, our_activations)
from keras_afl.bench.backends.timing import (jax_activation_step, jax_loss_step,
                                             time_round_robin, torch_activation_step,
                                             torch_graph_breaks, torch_loss_step)
from keras_afl.bench.device import device


def _row(backend, kind, name, size, dtype, ref_name, timed, block, mode):
    (ours, ours_iqr), (ref, ref_iqr) = timed
    what, target = TARGETS[backend][kind]
    if mode == "compile":
        what += ", both under torch.compile"
    ratio = ours / ref
    return {"backend": backend, "kind": kind, "name": name, "mode": mode, "log2_size": size,
            "dtype": dtype, "reference": ref_name, "ours_ms": ours, "reference_ms": ref,
            "ratio": ratio, "ours_iqr_ms": ours_iqr, "reference_iqr_ms": ref_iqr,
            "calls_per_round": block, "max_ratio": target, "target": f"<= {target}x {what}",
            "met": ratio <= target}


# Warm-up calls of each step under torch.compile: past Dynamo's recompile limit (8), so that a
# frame recompiled at every call (Keras's `ops.cond` names a new operation each call, and Dynamo
# guards on the name counter: Keras's Hinge) has fallen back to eager before the timing starts.
COMPILE_WARMUP = 12


def _timed_row(steps, repeats, mode, *row):
    """Ours and the reference timed round-robin; under torch.compile, with what Dynamo made of
    each (`graphs`, `graph_breaks`: {"ours": ..., "reference": ...}) -- traced before the timed
    steps compile (at the warm-up, not timed)."""
    traced = [torch_graph_breaks(s) for s in steps] if mode == "compile" else None
    timed, block = time_round_robin(steps, repeats,
                                    warmup=COMPILE_WARMUP if mode == "compile" else 3)
    out = _row(*row, timed, block, mode)
    if traced:
        for key in ("graphs", "graph_breaks", "reasons"):
            out[key] = {"ours": traced[0][key], "reference": traced[1][key]}
    return out


def _modes(backend, modes):
    return list(DEFAULT_MODES[backend] if modes is None else modes)


def bench_activations(names, sizes, dtype, repeats, progress=None, modes=None):
    backend = active_backend()
    native, ours = native_activations(backend), our_activations()
    rows = []
    for size in sizes:
        x, g, alpha = activation_inputs(2**size, dtype)
        for name in names:
            a = alpha if name == "prelu" else None
            ref, ref_name = native[name]
            for mode in _modes(backend, modes):
                if backend == "jax":
                    steps = [jax_activation_step(f, x, g, a) for f in (ours[name], ref)]
                else:
                    steps = [torch_activation_step(f, x, g, a, compiled=mode == "compile")
                             for f in (ours[name], ref)]
                rows.append(_timed_row(steps, repeats, mode, backend, "activation", name, size,
                                       dtype, ref_name))
                if progress:
                    progress(rows[-1])
    return rows


def bench_losses(names, sizes, dtype, repeats, progress=None, modes=None):
    backend = active_backend()
    rows = []
    for size in sizes:
        for name in names:
            for mode in _modes(backend, modes):
                ours, ref, ref_name = loss_cases()[name]
                y_true, y_pred = loss_inputs(ours, 2**size, dtype)
                if backend == "jax":
                    steps = [jax_loss_step(f, y_true, y_pred) for f in (ours, ref)]
                else:
                    steps = [torch_loss_step(f, y_true, y_pred, compiled=mode == "compile")
                             for f in (ours, ref)]
                rows.append(_timed_row(steps, repeats, mode, backend, "loss", name, size, dtype,
                                       ref_name))
                if progress:
                    progress(rows[-1])
    return rows


def _versions(backend):
    import keras

    import keras_afl

    lib = sys.modules.get(backend) or __import__(backend)
    return {"python": platform.python_version(), "keras": keras.__version__,
            backend: getattr(lib, "__version__", "?"), "keras_afl": keras_afl.__version__,
            "numpy": np.__version__}


def _device(backend):
    """The device in the words of `keras-afl check` ("CPU (JAX; no GPU visible)"), on PyTorch
    with the number of CPU threads its operations use."""
    if backend == "torch":
        import torch

        return f"{device()}, {torch.get_num_threads()} CPU thread(s)"
    return device()


def _load():
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def run(*, quick=False, sizes=None, dtype="float32", repeats=None, activations=None, losses=None,
        suites=("activations", "losses"), progress=False, modes=None):
    """Times the cases on the active backend; returns a dict of rows and the machine's state.
    `modes`: on PyTorch "eager" (the default) and/or "compile" (the step under torch.compile,
    ours and Keras's alike); on JAX "jit" (every case is jitted)."""
    backend = active_backend()
    for name, value in (("sizes", sizes), ("activations", activations), ("losses", losses),
                        ("modes", modes)):
        if value is not None and not isinstance(value, (list, tuple)):
            raise TypeError(f"{name}= must be a list or tuple; got {type(value).__name__} {value!r}")
    sizes = list(sizes or (QUICK_SIZES if quick else DEFAULT_SIZES))
    if any(not isinstance(s, int) or not 1 <= s <= 30 for s in sizes):
        raise ValueError(f"sizes= are log2 element counts from 1 to 30; got {sizes}")
    repeats = repeats or (QUICK_REPEATS if quick else DEFAULT_REPEATS)
    acts = list(activations if activations is not None
                else (QUICK_ACTIVATIONS if quick else ACTIVATIONS))
    loss_names = list(losses if losses is not None else (QUICK_LOSSES if quick else LOSSES))
    unknown = [n for n in acts if n not in ACTIVATIONS] + [n for n in loss_names if n not in LOSSES]
    if unknown:
        raise ValueError(f"unknown case(s) {', '.join(unknown)}; activations: "
                         f"{', '.join(ACTIVATIONS)}; losses: {', '.join(LOSSES)}")
    modes = _modes(backend, modes)
    wrong = [m for m in modes if m not in MODES[backend]]
    if wrong or not modes:
        raise ValueError(f"modes= on {backend} are {' and/or '.join(MODES[backend])}; got "
                         f"{', '.join(map(repr, wrong)) or 'none'}. Fix: modes="
                         f"{list(MODES[backend])!r} or a part of it (graph and xla are "
                         "TensorFlow's: --backend tensorflow)")
    bad = [s for s in suites if s not in ("activations", "losses")]
    if bad:
        raise ValueError(f"on {backend}, keras-afl bench runs the suites activations and losses; "
                         f"got {', '.join(bad)} (the others time TensorFlow: --backend tensorflow)")

    def show(row):
        mark = "" if row["met"] else "  (target missed)"
        print(f"  {row['kind']:<10} {row['name']:<32} {row['mode']:<7} 2^{row['log2_size']:<3} "
              f"{row['ours_ms']:.4f} / {row['reference_ms']:.4f} ms = {row['ratio']:.3f}x{mark}",
              flush=True)

    load_before, t0 = _load(), time.perf_counter()
    rows = []
    if "activations" in suites and acts:
        rows += bench_activations(acts, sizes, dtype, repeats, show if progress else None, modes)
    if "losses" in suites and loss_names:
        rows += bench_losses(loss_names, sizes, dtype, repeats, show if progress else None, modes)
    return {"backend": backend, "device": _device(backend), "versions": _versions(backend),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU(s)", "quick": quick,
            "sizes": sizes, "dtype": dtype, "modes": modes, "repeats": repeats, "rows": rows,
            "load_before": load_before, "load_after": _load(),
            "duration_s": round(time.perf_counter() - t0, 1)}

