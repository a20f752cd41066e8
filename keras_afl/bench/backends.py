"""Speed on Keras's other backends (issue 13): keras_afl on JAX and PyTorch against each backend's
own activations and Keras's built-in losses, in the same process, round-robin.

What is timed, per case and size, as the median of single calls after warm-up:

- activations, forward + backward (the output and the gradient with respect to x -- and alpha,
  for PReLU -- for a random upstream gradient): on JAX one `jax.jit` program of `jax.vjp`, ours
  against the `jax.nn` function (`jnp` for PReLU, which jax.nn lacks: Keras's formula
  relu(x) - alpha * relu(-x)); on PyTorch eager calls and `torch.autograd.grad`, ours against
  `torch.nn.functional` (F.prelu for PReLU);
- losses, value + gradient with respect to `y_pred` of the `Loss` object (mean reduction),
  ours against the matching `keras.losses` class (Keras has no sparse focal loss: one-hot,
  then its categorical focal loss): on JAX under `jax.jit` (`jax.value_and_grad`), on PyTorch
  eagerly as Keras trains there (`torch.autograd.grad`).

Every call is timed on its own and waited for (`block_until_ready` on JAX; a device sync on a
GPU), and the median is over single calls: `repeats` rounds, in each a block of calls of ours
then of the reference (as many as fill about `SAMPLE_S`, the same count for both), the order
flipping each round, so that a busy shared machine slows both alike and a few preempted calls
do not move the medians. Ratios are ours / reference (below 1: faster), measured
in the same run; the targets (`TARGETS`) are reported, never asserted.

Run with `keras-afl --backend jax bench` or `keras-afl --backend torch bench` (the command hands
any backend but TensorFlow to `run_cli`); `write_reports` merges the rows of each backend into
one backends.json and regenerates backends.md, so the two runs add up.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time

import numpy as np

BACKENDS = ("jax", "torch")
DEFAULT_SIZES = (16, 20)  # log2 of the number of elements
QUICK_SIZES = (10,)
DEFAULT_REPEATS = 15
QUICK_REPEATS = 3
SAMPLE_S = 0.004  # each round runs a block of calls of each step lasting about this long
WARMUP_S = 0.3  # warm-up per case (compilation, thread pools, caches): the first case on
                # PyTorch ran 100x slow without it
CLASSES = 16  # the last axis of every loss input (as the TensorFlow harness)
ROW = 1024  # the last axis of the activation inputs (rows of up to 1024 elements)

# backend -> kind -> (what the reference is, max ratio ours / reference)
TARGETS = {
    "jax": {"activation": ("jax.nn under jax.jit", 1.05), "loss": ("Keras's built-in, jax.jit", 1.0)},
    "torch": {"activation": ("torch.nn.functional", 1.1), "loss": ("Keras's built-in", 1.0)},
}
ACTIVATIONS = ("relu", "leaky_relu", "prelu", "sigmoid", "tanh", "softmax", "elu", "selu")
LOSSES = ("mse", "huber", "hinge", "bce_logits", "bce_probs", "focal_logits", "focal_probs",
          "cce_logits", "cce_probs", "sparse_cce_logits", "categorical_focal_logits",
          "sparse_categorical_focal_logits")
QUICK_ACTIVATIONS = ("relu", "prelu", "softmax")
QUICK_LOSSES = ("bce_logits", "focal_logits", "sparse_cce_logits")


def _backend():
    import keras

    name = keras.backend.backend()
    if name not in BACKENDS:
        raise ValueError(f"keras_afl.bench.backends times JAX and PyTorch; Keras runs on {name!r}. "
                         "Fix: KERAS_BACKEND=jax or torch (keras-afl --backend jax bench); on "
                         "TensorFlow, keras-afl bench runs the TensorFlow harness")
    return name


# --------------------------------------------------------------------------- the cases

def _native_activations(backend):
    """name -> (reference function, its name); PReLU takes (x, alpha), the others x."""
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        def keras_prelu(x, a):  # jax.nn has no PReLU: Keras's layer formula
            return jax.nn.relu(x) - a * jax.nn.relu(-x)

        return {
            "relu": (jax.nn.relu, "jax.nn.relu"),
            "leaky_relu": (lambda x: jax.nn.leaky_relu(x, 0.2), "jax.nn.leaky_relu"),
            "prelu": (keras_prelu, "relu(x) - a*relu(-x), jnp"),
            "sigmoid": (jax.nn.sigmoid, "jax.nn.sigmoid"),
            "tanh": (getattr(jax.nn, "tanh", jnp.tanh), "jax.nn.tanh"),
            "softmax": (jax.nn.softmax, "jax.nn.softmax"),
            "elu": (jax.nn.elu, "jax.nn.elu"),
            "selu": (jax.nn.selu, "jax.nn.selu"),
        }
    import torch.nn.functional as F

    return {
        "relu": (F.relu, "F.relu"),
        "leaky_relu": (lambda x: F.leaky_relu(x, 0.2), "F.leaky_relu"),
        "prelu": (F.prelu, "F.prelu"),
        "sigmoid": (F.sigmoid, "F.sigmoid"),
        "tanh": (F.tanh, "F.tanh"),
        "softmax": (lambda x: F.softmax(x, dim=-1), "F.softmax"),
        "elu": (F.elu, "F.elu"),
        "selu": (F.selu, "F.selu"),
    }


def _our_activations():
    from keras_afl import activations as A

    return {"relu": A.relu, "leaky_relu": lambda x: A.leaky_relu(x, 0.2), "prelu": A.prelu,
            "sigmoid": A.sigmoid, "tanh": A.tanh, "softmax": A.softmax, "elu": A.elu,
            "selu": A.selu}


def loss_cases():
    """name -> (ours, Keras's, Keras's name): fresh Loss objects, as the TensorFlow harness."""
    import keras

    from keras_afl import losses as L

    k = keras.losses
    focal = dict(gamma=2.0, alpha=0.25)
    kfocal = dict(apply_class_balancing=True, **focal)
    kcfocal = k.CategoricalFocalCrossentropy(from_logits=True, **focal)

    def keras_sparse_focal(y_true, y_pred):  # Keras has no sparse focal loss: one-hot first
        return kcfocal(keras.ops.one_hot(y_true, CLASSES, dtype=y_pred.dtype), y_pred)

    return {
        "mse": (L.MeanSquaredError(), k.MeanSquaredError(), "MeanSquaredError"),
        "huber": (L.Huber(), k.Huber(), "Huber"),
        "hinge": (L.Hinge(), k.Hinge(), "Hinge"),
        "bce_logits": (L.BinaryCrossentropy(from_logits=True),
                       k.BinaryCrossentropy(from_logits=True), "BinaryCrossentropy"),
        "bce_probs": (L.BinaryCrossentropy(), k.BinaryCrossentropy(), "BinaryCrossentropy"),
        "focal_logits": (L.FocalLoss(from_logits=True, **focal),
                         k.BinaryFocalCrossentropy(from_logits=True, **kfocal),
                         "BinaryFocalCrossentropy"),
        "focal_probs": (L.FocalLoss(**focal), k.BinaryFocalCrossentropy(**kfocal),
                        "BinaryFocalCrossentropy"),
        "cce_logits": (L.CategoricalCrossentropy(from_logits=True),
                       k.CategoricalCrossentropy(from_logits=True), "CategoricalCrossentropy"),
        "cce_probs": (L.CategoricalCrossentropy(), k.CategoricalCrossentropy(),
                      "CategoricalCrossentropy"),
        "sparse_cce_logits": (L.SparseCategoricalCrossentropy(from_logits=True),
                              k.SparseCategoricalCrossentropy(from_logits=True),
                              "SparseCategoricalCrossentropy"),
        "categorical_focal_logits": (L.CategoricalFocalLoss(from_logits=True, **focal),
                                     k.CategoricalFocalCrossentropy(from_logits=True, **focal),
                                     "CategoricalFocalCrossentropy"),
        "sparse_categorical_focal_logits": (L.SparseCategoricalFocalLoss(from_logits=True, **focal),
                                            keras_sparse_focal,
                                            "one_hot + CategoricalFocalCrossentropy"),
    }


def _tensor(v, dtype):
    from keras import ops

    v = np.asarray(v)
    if v.dtype.kind in "iu":
        return ops.convert_to_tensor(v.astype(np.int32), dtype="int32")
    return ops.cast(ops.convert_to_tensor(v.astype(np.float32)), dtype)


def activation_inputs(size, dtype):
    """x and the upstream gradient g (`size` elements, rows of up to ROW) and PReLU's alpha."""
    cols = min(size, ROW)
    rng = np.random.default_rng(1)
    shape = (size // cols, cols)
    return (_tensor(rng.normal(size=shape), dtype), _tensor(rng.normal(size=shape), dtype),
            _tensor(np.full((cols,), 0.25), dtype))


def loss_inputs(loss, size, dtype):
    """(y_true, y_pred) of `size` elements for keras_afl loss `loss`, as the registry describes it
    (the TensorFlow harness's inputs: regression real values, binary 10 % ones, categorical
    one-hot rows, sparse int32 ids; probabilities where the loss reads them)."""
    from keras_afl import registry

    what = registry.describe_loss(loss)
    family, y_pred = what.family, what.expects()
    rows = max(size // CLASSES, 1)
    rng = np.random.default_rng(0)
    z = rng.normal(size=(rows, CLASSES)) * 3
    if family == "regression":
        y = rng.normal(size=(rows, CLASSES))
    elif family == "binary":
        y = (rng.random((rows, CLASSES)) < 0.1).astype(np.float64)
        if y_pred == "probabilities":
            z = 1 / (1 + np.exp(-z))
    else:
        labels = rng.integers(0, CLASSES, rows)
        if y_pred == "probabilities":
            e = np.exp(z - z.max(-1, keepdims=True))
            z = e / e.sum(-1, keepdims=True)
        if family == "sparse":
            return _tensor(labels, "int32"), _tensor(z, dtype)
        y = np.eye(CLASSES)[labels]
    return _tensor(y, dtype), _tensor(z, dtype)


# --------------------------------------------------------------------------- steps

def _jax_activation_step(f, x, g, alpha=None):
    """A jitted call: (f(x), the VJP of g) -- with respect to x, and alpha for PReLU."""
    import jax

    if alpha is None:
        @jax.jit
        def step(x, g):
            y, pullback = jax.vjp(f, x)
            return y, pullback(g)
        return lambda: jax.block_until_ready(step(x, g))

    @jax.jit
    def step_prelu(x, a, g):
        y, pullback = jax.vjp(f, x, a)
        return y, pullback(g)
    return lambda: jax.block_until_ready(step_prelu(x, alpha, g))


def _torch_sync():
    import torch

    return torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)


def _torch_activation_step(f, x, g, alpha=None):
    """An eager call: f(x), then torch.autograd.grad of g (for x, and alpha for PReLU)."""
    import torch

    sync = _torch_sync()
    x = x.detach().requires_grad_(True)
    leaves = [x] if alpha is None else [x, alpha.detach().requires_grad_(True)]

    def step():
        y = f(*leaves)
        grads = torch.autograd.grad(y, leaves, g)
        sync()
        return y, grads
    return step


def _jax_loss_step(loss, y_true, y_pred):
    import jax

    step = jax.jit(jax.value_and_grad(lambda p, t: loss(t, p)))
    return lambda: jax.block_until_ready(step(y_pred, y_true))


def _torch_loss_step(loss, y_true, y_pred):
    import torch

    sync = _torch_sync()
    p = y_pred.detach().requires_grad_(True)

    def step():
        value = loss(y_true, p)
        grad = torch.autograd.grad(value, [p])
        sync()
        return value, grad
    return step


# --------------------------------------------------------------------------- timing

def _block_size(steps, target_s=SAMPLE_S):
    """Calls per round: enough for the slower step to take about `target_s`."""
    slowest = 0.0
    for step in steps:
        t0 = time.perf_counter()
        step()
        slowest = max(slowest, time.perf_counter() - t0)
    return max(1, min(200, int(target_s / max(slowest, 1e-7))))


def time_round_robin(steps, repeats, warmup=3, warmup_s=WARMUP_S):
    """Per step, the median and interquartile range (ms) of its calls: `repeats` rounds, each a
    block of calls of every step in turn (the order reversed every other round), each call timed
    on its own -- a median of single calls, so that a few calls preempted on a busy machine
    (tens of ms on a shared two-core machine) do not move it."""
    t0 = time.perf_counter()  # at least `warmup` calls each, and at least `warmup_s` in all
    while True:
        for _ in range(warmup):
            for step in steps:
                step()
        if time.perf_counter() - t0 >= warmup_s:
            break
    block = _block_size(steps)
    samples = [[] for _ in steps]
    order = list(range(len(steps)))
    clock = time.perf_counter
    for r in range(repeats):
        for i in (order if r % 2 == 0 else order[::-1]):
            step, out = steps[i], samples[i]
            for _ in range(block):
                t0 = clock()
                step()
                out.append((clock() - t0) * 1e3)
    return [(statistics.median(s), iqr(s)) for s in samples], block


def iqr(values):
    if len(values) < 4:
        return 0.0
    q = statistics.quantiles(values, n=4)
    return q[2] - q[0]


# --------------------------------------------------------------------------- suites

def _row(backend, kind, name, size, dtype, ref_name, timed, block):
    (ours, ours_iqr), (ref, ref_iqr) = timed
    what, target = TARGETS[backend][kind]
    ratio = ours / ref
    return {"backend": backend, "kind": kind, "name": name, "log2_size": size, "dtype": dtype,
            "reference": ref_name, "ours_ms": ours, "reference_ms": ref, "ratio": ratio,
            "ours_iqr_ms": ours_iqr, "reference_iqr_ms": ref_iqr, "calls_per_round": block,
            "max_ratio": target, "target": f"<= {target}x {what}", "met": ratio <= target}


def bench_activations(names, sizes, dtype, repeats, progress=None):
    backend = _backend()
    native, ours = _native_activations(backend), _our_activations()
    make = _jax_activation_step if backend == "jax" else _torch_activation_step
    rows = []
    for size in sizes:
        x, g, alpha = activation_inputs(2**size, dtype)
        for name in names:
            a = alpha if name == "prelu" else None
            ref, ref_name = native[name]
            timed, block = time_round_robin(
                [make(ours[name], x, g, a), make(ref, x, g, a)], repeats)
            rows.append(_row(backend, "activation", name, size, dtype, ref_name, timed, block))
            if progress:
                progress(rows[-1])
    return rows


def bench_losses(names, sizes, dtype, repeats, progress=None):
    backend = _backend()
    make = _jax_loss_step if backend == "jax" else _torch_loss_step
    rows = []
    for size in sizes:
        for name in names:
            ours, ref, ref_name = loss_cases()[name]
            y_true, y_pred = loss_inputs(ours, 2**size, dtype)
            timed, block = time_round_robin(
                [make(ours, y_true, y_pred), make(ref, y_true, y_pred)], repeats)
            rows.append(_row(backend, "loss", name, size, dtype, ref_name, timed, block))
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
    from keras_afl.cli._autodiff import device

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
        suites=("activations", "losses"), progress=False):
    """Times the cases on the active backend; returns a dict of rows and the machine's state."""
    backend = _backend()
    for name, value in (("sizes", sizes), ("activations", activations), ("losses", losses)):
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
    bad = [s for s in suites if s not in ("activations", "losses")]
    if bad:
        raise ValueError(f"on {backend}, keras-afl bench runs the suites activations and losses; "
                         f"got {', '.join(bad)} (the others time TensorFlow: --backend tensorflow)")

    def show(row):
        mark = "" if row["met"] else "  (target missed)"
        print(f"  {row['kind']:<10} {row['name']:<32} 2^{row['log2_size']:<3} "
              f"{row['ours_ms']:.4f} / {row['reference_ms']:.4f} ms = {row['ratio']:.3f}x{mark}",
              flush=True)

    load_before, t0 = _load(), time.perf_counter()
    rows = []
    if "activations" in suites and acts:
        rows += bench_activations(acts, sizes, dtype, repeats, show if progress else None)
    if "losses" in suites and loss_names:
        rows += bench_losses(loss_names, sizes, dtype, repeats, show if progress else None)
    return {"backend": backend, "device": _device(backend), "versions": _versions(backend),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU(s)", "quick": quick,
            "sizes": sizes, "dtype": dtype, "repeats": repeats, "rows": rows,
            "load_before": load_before, "load_after": _load(),
            "duration_s": round(time.perf_counter() - t0, 1)}


# --------------------------------------------------------------------------- reports

def terminal_table(result):
    from keras_afl.cli.common import format_table

    head = ("kind", "case", "size", "reference", "ours ms", "ref ms", "ratio", "target", "met")
    rows = [(r["kind"], r["name"], f"2^{r['log2_size']}", r["reference"], r["ours_ms"],
             r["reference_ms"], r["ratio"], f"<= {r['max_ratio']}", "yes" if r["met"] else "NO")
            for r in result["rows"]]
    return (f"{result['backend']} on {result['device']}, {result['dtype']}\n"
            + format_table(head, rows))


def summary(result):
    """kind -> (met, total) for one backend's rows."""
    out = {}
    for r in result["rows"]:
        met, total = out.get(r["kind"], (0, 0))
        out[r["kind"]] = (met + bool(r["met"]), total + 1)
    return out


def markdown(results, notes=""):
    """backends.md from {backend: result}."""
    lines = ["# keras_afl on JAX and PyTorch: speed against each backend's own functions",
             "", "Generated by `keras-afl --backend jax bench --output benchmarks` and "
             "`keras-afl --backend torch bench --output benchmarks` (`keras_afl.bench.backends`; "
             "each backend's exact command is under its heading). Medians of single, interleaved calls (ms); ratio = ours / reference, below 1 is "
             "faster. Activations: forward + backward; losses: value + gradient with respect to "
             "y_pred, mean reduction. Targets are reported, not asserted.", ""]
    for backend in BACKENDS:
        if backend not in results:
            continue
        r = results[backend]
        v = ", ".join(f"{k} {val}" for k, val in r["versions"].items())
        lines += [f"## {backend}", ""]
        if r.get("command"):
            lines += [f"`{r['command']}`", ""]
        lines += [f"{r['device']}; {r['machine']}; {r['dtype']}; {r['repeats']} rounds per case; "
                  f"load average {r['load_before']} before, {r['load_after']} after; "
                  f"{r['duration_s']:.0f} s. {v}." + (" **Quick run: the numbers mean little.**"
                                                      if r.get("quick") else ""), ""]
        for kind, (met, total) in summary(r).items():
            what, target = TARGETS[backend][kind]
            plural = {"activation": "activations", "loss": "losses"}[kind]
            lines.append(f"- {plural} <= {target}x {what}: **{met}/{total}** rows met")
        lines += ["", "| kind | case | size | reference | ours ms | reference ms | ratio | "
                  "IQR ours / ref ms | target | met |", "|---|---|---|---|---|---|---|---|---|---|"]
        for row in r["rows"]:
            lines.append(
                f"| {row['kind']} | {row['name']} | 2^{row['log2_size']} | {row['reference']} | "
                f"{row['ours_ms']:.4f} | {row['reference_ms']:.4f} | {row['ratio']:.3f} | "
                f"{row['ours_iqr_ms']:.4f} / {row['reference_iqr_ms']:.4f} | "
                f"<= {row['max_ratio']} | {'yes' if row['met'] else '**no**'} |")
        lines.append("")
    if notes:
        lines += [notes.rstrip(), ""]
    return "\n".join(lines)


def write_reports(result, folder, notes=""):
    """Merges `result` into `folder`/backends.json (one entry per backend) and rewrites
    backends.md from it; returns the two paths."""
    os.makedirs(folder, exist_ok=True)
    path_json = os.path.join(folder, "backends.json")
    results = {}
    if os.path.exists(path_json):
        with open(path_json, encoding="utf-8") as f:
            results = json.load(f)
    results[result["backend"]] = result
    with open(path_json, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1, sort_keys=True)
    path_md = os.path.join(folder, "backends.md")
    with open(path_md, "w", encoding="utf-8") as f:
        f.write(markdown(results, notes))
    return path_json, path_md


def run_cli(args):
    """`keras-afl bench` on JAX or PyTorch, from the parsed arguments; returns the exit code."""
    if args.modes:
        raise ValueError("--modes (graph, xla) are TensorFlow's; on JAX every case runs under "
                         "jax.jit, on PyTorch eagerly. Fix: drop --modes, or --backend tensorflow")
    if args.dtypes and len(args.dtypes) > 1:
        raise ValueError(f"on {_backend()}, --dtypes takes one dtype per run; got "
                         f"{' '.join(args.dtypes)}. Fix: one run per dtype (the default is "
                         "float32)")
    activations = losses = None
    if args.cases:  # run() names the unknown ones
        activations = [c for c in args.cases if c not in LOSSES]
        losses = [c for c in args.cases if c in LOSSES]
    notes = ""
    if args.notes:
        with open(args.notes, encoding="utf-8") as f:
            notes = f.read()
    result = run(quick=args.quick, sizes=args.sizes, dtype=(args.dtypes or ["float32"])[0],
                 repeats=args.repeats, activations=activations, losses=losses,
                 suites=tuple(args.suites or ("activations", "losses")),
                 progress=not args.no_progress)
    from keras_afl.cli.bench import command_line

    threads = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "XLA_FLAGS") if os.environ.get(k)}
    result["command"] = " ".join([*(f"{k}={v}" for k, v in threads.items()), "keras-afl",
                                  "--backend", result["backend"],
                                  *command_line(args).split(" ")[1:]])
    print(terminal_table(result))
    print(f"\n{result['duration_s']:.0f} s; load average before {result['load_before']}, "
          f"after {result['load_after']}")
    if args.output:
        print("wrote " + " and ".join(write_reports(result, args.output, notes)))
    return 0
