"""The size sweep: every loss and activation from 2^10 to 2^24 elements, and the losses' crossover.

Each loss is traced three times per size, dtype and mode and the three are called round robin
in one loop: keras_afl's plain path (compiled kernels off), its compiled path (compiled kernels
on at every size, `keras_afl._backend._tensorflow._crossover.forced`) and Keras's loss. "ours" is the path
that keras_afl takes by default at that size and mode (`_crossover.CROSSOVER`, read by
`path_taken`): the same trace, so its time is that path's. The two paths' times give the
crossover (`crossover_table`: per loss and mode, `_crossover`'s rule -- a same-run verdict per size
with a margin, then the threshold); `_crossover.py` commits the table of one run, and a
later run checks it (its "ours" follows the committed table, not its own measurements). Activations are
timed against the native op, as in the "activations" suite, without the bandwidth floor.

Sweep rows have group "sweep_loss" or "sweep_activation"; a loss row's samples hold "plain" and
"compiled" beside "ours" (the path taken) and "ref"; its note says which path was taken.
"""

from __future__ import annotations

import os
import statistics

import tensorflow as tf

from keras_afl import losses as L
from keras_afl import registry
from keras_afl.bench.cases import (ACTIVATIONS, LOSSES, TARGETS, activation_inputs, loss_cases,
                                   loss_inputs)
from keras_afl.bench.programs import graph_kernels
from keras_afl.bench.timing import activation_step, log2, loss_step, round_robin, timed_row
from keras_afl._backend._tensorflow import _crossover

SWEEP_SIZES = tuple(range(10, 25, 2))  # log2 of the number of elements
SWEEP_REPEATS = 3  # timed calls per loss case at 2^22 and up; more below (`sweep_repeats`)
ACTIVATION_FACTOR = 3  # activations: this many times the losses' repeats (cheap calls, no big compiles)
LARGE_GRAPH = 2**20  # from here up, graph mode's target is 0.5x Keras
# In graph mode the first compiled loss loads XLA's compiler into a process that may compile
# nothing else (measured: +70 MiB peak RSS, the classifier at batch 512 with afl_bce, 826 MiB
# against 755 without the compiled path) and each new shape costs a compile; below 2^16 elements
# the compiled path's measured gain is a few hundredths of a millisecond. Under XLA, where
# the kernels are inlined into the program being compiled anyway, there is no floor.
GRAPH_FLOOR = {"graph": 16}

# bench case -> the loss body it runs (the key of `_crossover.CROSSOVER`)
BODIES = {
    "mse": "_mse",
    "huber": "_huber",
    "hinge": "_hinge",
    "bce_logits": "_bce_logits",
    "bce_probs": "_bce_probabilities",
    "focal_logits": "_focal_logits",
    "focal_probs": "_focal_probabilities",
    "cce_logits": "_cce_logits",
    "cce_probs": "_categorical_probabilities",
    "sparse_cce_logits": "_scce_logits",
    "categorical_focal_logits": "_cfocal_logits",
    "sparse_categorical_focal_logits": "_sfocal_logits",
}

def sweep_repeats(repeats, size):
    """`repeats` at 2^22 elements and up; 2x at 2^20, 4x at 2^18, 8x below (cheap, noisy calls)."""
    return repeats * min(8, max(1, 2 ** ((22 - log2(size) + 1) // 2)))


def path_taken(case, mode, dtype, size):
    """"compiled" or "plain": the path keras_afl's loss `case` takes by default for `size`
    elements of `dtype` in `mode` (graph/xla), as `_core._fused` decides for a static shape."""
    opts = L.trace_options()
    compute_float32 = tf.as_dtype(dtype) in (tf.float32, tf.bfloat16, tf.float16)
    least = _crossover.min_elements(BODIES[case], where=mode)
    return "compiled" if opts["compiled_kernels"] and compute_float32 and size >= least else "plain"


def _traced(path, loss, xla, y, z):
    step = loss_step(loss, xla)
    with L.set_trace_options(compiled_kernels=path == "compiled"), _crossover.forced(path):
        step.get_concrete_function(y, z)
    return step


def bench_sweep_losses(sizes, dtypes, modes, repeats, names=None, progress=None):
    rows, inputs = [], {}
    for name in names or LOSSES:
        for dtype in dtypes:
            dt = tf.as_dtype(dtype)
            for size in sizes:
                for mode in modes:
                    if progress:
                        progress.step(f"sweep loss {name} {dtype} {mode} 2^{log2(size)}")
                    ours, ref = loss_cases()[name]
                    if (name, dtype, size) not in inputs:  # the same inputs in both modes
                        inputs.clear()
                        inputs[(name, dtype, size)] = loss_inputs(ours, size, dt)
                    y, z = inputs[(name, dtype, size)]
                    xla = mode == "xla"
                    fns = [_traced("plain", ours, xla, y, z),
                           _traced("compiled", loss_cases()[name][0], xla, y, z), loss_step(ref, xla)]
                    plain, compiled, keras = round_robin(fns, (y, z), sweep_repeats(repeats, size),
                                                         warmup=1 if size >= 2**22 else 2)
                    taken = path_taken(name, mode, dtype, size)
                    target = "sweep_loss_graph_large" if mode == "graph" and size >= LARGE_GRAPH \
                        else "sweep_loss"
                    row = timed_row("sweep_loss", name, mode, dtype, size, target,
                                    [plain if taken == "plain" else compiled, keras])
                    row.samples["plain"] = [t * 1e3 for t in plain]
                    row.samples["compiled"] = [t * 1e3 for t in compiled]
                    row.note = taken
                    rows.append(row)
                    if progress:
                        progress.advance()
    return rows


def bench_sweep_activations(sizes, dtypes, modes, repeats, names=None, progress=None):
    rows = []
    for name in names or ACTIVATIONS:
        ours, ref = ACTIVATIONS[name]
        with_alpha = name == "prelu"
        for dtype in dtypes:
            dt = tf.as_dtype(dtype)
            for size in sizes:
                x, g, alpha = activation_inputs(size, dt)
                for mode in modes:
                    if progress:
                        progress.step(f"sweep activation {name} {dtype} {mode} 2^{log2(size)}")
                    args = (x, g, alpha) if with_alpha else (x, g)
                    xla = mode == "xla"
                    fns = [activation_step(ours, xla, with_alpha), activation_step(ref, xla, with_alpha)]
                    samples = round_robin(fns, args, sweep_repeats(ACTIVATION_FACTOR * repeats, size),
                                          warmup=1 if size >= 2**22 else 2)
                    rows.append(timed_row("sweep_activation", name, mode, dtype, size, "sweep_activation",
                                          samples))
                    if progress:
                        progress.advance()
    return rows


def kernel_counts(names=None, size=2**10):
    """case -> {"plain", "plain_unchecked", "keras"}: the TensorFlow kernels that one graph-mode
    value + gradient step runs (`programs.graph_kernels`) on the plain path, the plain path with
    the label checks off, and Keras's loss. At small sizes a step is ~0.2 ms and each kernel
    costs microseconds of its own: the count explains most of the difference there."""
    out = {}
    for name in names or LOSSES:
        ours, ref = loss_cases()[name]
        y, z = loss_inputs(ours, size, tf.float32)
        with L.set_trace_options(compiled_kernels=False):
            plain = graph_kernels(loss_step(ours, False), y, z)
        with L.set_trace_options(compiled_kernels=False, label_checks=False):
            unchecked = graph_kernels(loss_step(loss_cases()[name][0], False), y, z)
        out[name] = {"plain": len(plain), "plain_unchecked": len(unchecked),
                     "keras": len(graph_kernels(loss_step(ref, False), y, z))}
    return out


def kernel_table(counts):
    lines = ["| case | ours, plain path | without the label checks | Keras |", "|---|---:|---:|---:|"]
    lines += [f"| {c} | {k['plain']} | {k['plain_unchecked']} | {k['keras']} |" for c, k in counts.items()]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- reading the sweep


def _median(xs):
    return statistics.median(xs)


def crossover_table(rows, floor=GRAPH_FLOOR, fewer_passes=None):
    """body -> {mode: log2 threshold or None (never)} from sweep loss rows (dicts), by the rule
    the committed table is checked against (`_crossover.verdict` and `_crossover.threshold`):
    per size, a verdict from the plain and compiled times paired round by round (pooled over
    the dtypes swept), a path winning only beyond a margin; the compiled path from the smallest
    size at and above which the plain path wins nowhere and every size is won by the compiled
    path or tied. Ties count for the compiled path only where `fewer_passes` ({case: bool}: its
    program reads and writes fewer full-size arrays; tests/test_crossover.py measures that) says
    so; without it they stay plain (no compile, no compile time or memory). `floor` (mode ->
    log2) is the smallest threshold allowed per mode (see GRAPH_FLOOR).
    """
    pairs = {}  # (case, mode) -> log2 size -> (plain times, compiled times), paired by round
    for r in rows:
        if r["group"] == "sweep_loss":
            plain, compiled = pairs.setdefault((r["case"], r["mode"]), {}).setdefault(
                log2(r["size"]), ([], []))
            plain += r["samples"]["plain"]
            compiled += r["samples"]["compiled"]
    table = {}
    for (case, mode), by_size in pairs.items():
        verdicts = {n: _crossover.verdict(*pc) for n, pc in by_size.items()}
        table.setdefault(BODIES[case], {})[mode] = _crossover.threshold(
            verdicts, bool((fewer_passes or {}).get(case)), (floor or {}).get(mode))
    return table


def crossover_source(table):
    """The `CROSSOVER = {...}` lines of `_crossover.py` for `table`, bodies in BODIES' order."""
    lines = ["CROSSOVER = {"]
    names = list(dict.fromkeys([*BODIES.values(), *_crossover.CROSSOVER, *table]))
    for body in names:
        row = table.get(body) or _crossover.CROSSOVER[body]
        cells = ", ".join(f'"{m}": {row.get(m)}' for m in ("graph", "xla"))
        lines.append(f'    "{body}": {{{cells}}},')
    return "\n".join(lines + ["}"])


def sweep_summary(result):
    """The sweep's targets: rows checked, met, worst ratio and case (every loss row counts for
    the 1.0x target, graph rows from 2^20 up also for 0.5x)."""
    out = []
    rows = result["rows"]
    checks = {
        "sweep_loss": [r for r in rows if r["group"] == "sweep_loss"],
        "sweep_loss_graph_large": [r for r in rows if r["group"] == "sweep_loss" and r["mode"] == "graph"
                                   and r["size"] >= LARGE_GRAPH],
        "sweep_activation": [r for r in rows if r["group"] == "sweep_activation"],
    }
    mse_xla = [r for r in checks["sweep_loss"] if r["case"] == "mse" and r["mode"] == "xla"]
    for key, mine in (*checks.items(), ("mse_xla", mse_xla)):
        if not mine:
            continue
        text, limit = TARGETS[key] if key in TARGETS else ("MSE <= 1.0x Keras under XLA at every size", 1.0)
        worst = max(mine, key=lambda r: r["ratio"])
        out.append({"target": key, "description": text, "max_ratio": limit, "checked": len(mine),
                    "met": sum(r["ratio"] <= limit for r in mine), "worst_ratio": worst["ratio"],
                    "worst_case": f"{worst['case']} {worst['mode']} {worst['dtype']} "
                                  f"2^{log2(worst['size'])}"})
    return out


def _grid(rows):
    """(case, mode, dtype) -> {log2 size: row}, in the rows' order."""
    grid = {}
    for r in rows:
        grid.setdefault((r["case"], r["mode"], r["dtype"]), {})[log2(r["size"])] = r
    return grid


def ratio_table(result, group):
    """Markdown: one line per case, mode and dtype; a cell per size: ours / reference (bold: a
    missed target; losses: "c" where the compiled path was taken)."""
    rows = [r for r in result["rows"] if r["group"] == group]
    if not rows:
        return ""
    sizes = sorted({log2(r["size"]) for r in rows})
    lines = ["| case | mode | dtype | " + " | ".join(f"2^{s}" for s in sizes) + " |",
             "|---|---|---|" + "---:|" * len(sizes)]
    for (case, mode, dtype), cells in _grid(rows).items():
        out = []
        for s in sizes:
            r = cells.get(s)
            if r is None:
                out.append("")
                continue
            text = f"{r['ratio']:.2f}" + ("c" if r["note"] == "compiled" else "")
            out.append(text if r["ratio"] <= r["max_ratio"] else f"**{text}**")
        lines.append(f"| {case} | {mode} | {dtype} | " + " | ".join(out) + " |")
    return "\n".join(lines)


def path_table(result):
    """Markdown: the compiled path's median time over the plain path's, per loss, mode, dtype, size."""
    rows = [r for r in result["rows"] if r["group"] == "sweep_loss"]
    if not rows:
        return ""
    sizes = sorted({log2(r["size"]) for r in rows})
    lines = ["| case | mode | dtype | " + " | ".join(f"2^{s}" for s in sizes) + " |",
             "|---|---|---|" + "---:|" * len(sizes)]
    for (case, mode, dtype), cells in _grid(rows).items():
        out = [f"{_median(cells[s]['samples']['compiled']) / _median(cells[s]['samples']['plain']):.2f}"
               if s in cells else "" for s in sizes]
        lines.append(f"| {case} | {mode} | {dtype} | " + " | ".join(out) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- plots


def _family(case):
    if case in ACTIVATIONS:
        return "activations"
    return registry.describe_loss(loss_cases()[case][0]).family


def plot_sweep(result, out_dir):
    """One PNG per family (activations, regression, binary, categorical, sparse) of ratio against
    size, a panel per mode and dtype, and one of the losses' compiled / plain time; returns the
    paths. Needs matplotlib (the [cli] extra)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    rows = [r for r in result["rows"] if r["group"] in ("sweep_loss", "sweep_activation")]
    if not rows:
        return []
    os.makedirs(out_dir, exist_ok=True)
    modes = sorted({r["mode"] for r in rows}, key=lambda m: m != "graph")
    dtypes = sorted({r["dtype"] for r in rows}, key=lambda d: d != "float32")
    families = {}
    for r in rows:
        families.setdefault(_family(r["case"]), []).append(r)
    jobs = [(f, rs, "ratio") for f, rs in families.items()]
    jobs.append(("crossover", [r for r in rows if r["group"] == "sweep_loss"], "paths"))
    paths = []
    for family, rs, kind in jobs:
        if not rs:
            continue
        fig, axes = plt.subplots(len(modes), len(dtypes), figsize=(5.2 * len(dtypes), 3.6 * len(modes)),
                                 sharey=True, sharex=True, squeeze=False)
        for ax, (mode, dtype) in zip(axes.flat, [(m, d) for m in modes for d in dtypes]):
            for (case, m, d), cells in _grid(rs).items():
                if (m, d) != (mode, dtype):
                    continue
                xs = sorted(cells)
                if kind == "ratio":
                    ys = [cells[s]["ratio"] for s in xs]
                else:
                    ys = [_median(cells[s]["samples"]["compiled"]) / _median(cells[s]["samples"]["plain"])
                          for s in xs]
                ax.plot(xs, ys, marker="o", markersize=3, label=case)
            limit = 1.05 if family == "activations" else 1.0
            ax.axhline(limit, color="k", lw=0.8, ls="--")
            if kind == "ratio" and family != "activations" and mode == "graph":
                ax.plot([log2(LARGE_GRAPH), max(log2(r["size"]) for r in rs)], [0.5, 0.5], color="r",
                        lw=0.8, ls="--")
            ax.set_title(f"{mode}, {dtype}", fontsize=9)
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%.2g"))
            ax.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%.2g"))
            ax.tick_params(axis="y", which="minor", labelsize=6)
            ax.grid(True, which="both", alpha=0.3)
        for ax in axes[-1]:
            ax.set_xlabel("log2(elements)")
        for ax in axes[:, 0]:
            ax.set_ylabel("compiled / plain time" if kind == "paths" else
                          ("ours / native op" if family == "activations" else "ours / Keras"))
        axes[0][-1].legend(fontsize=6, loc="best")
        title = ("Losses: compiled path / plain path (below 1: compiled is faster)" if kind == "paths"
                 else f"{family}: time ratio against size (below the dashed line: target met)")
        fig.suptitle(title, fontsize=10)
        fig.tight_layout()
        path = os.path.join(out_dir, f"sweep_{family}.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths
