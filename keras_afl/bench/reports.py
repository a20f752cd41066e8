"""The reports: the terminal table, results.md and results.json, and the per-target summary.

`write_reports` writes what `benchmarks/` commits (and the README quotes):
results.json (every row with its samples) and results.md (machine, settings,
targets, the same-program table, the notes of the run, every case).
"""

from __future__ import annotations

import json
import os

from keras_afl.bench import sweep
from keras_afl.bench.cases import MODES, TARGETS
from keras_afl.bench.timing import log2


def summary(result):
    """Per target: rows checked, rows met, the worst ratio and its case."""
    out = []
    checks = [(key, r, r["ratio"]) for r in result["rows"] for key in [r["target"]]]
    checks += [("activation_floor", r, r["floor_ratio"]) for r in result["rows"]
               if r["group"] == "activation" and r["floor_met"] is not None]
    for key, (text, limit) in TARGETS.items():
        if key.startswith("sweep"):  # the sweep's own summary: `sweep.sweep_summary`
            continue
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
    size = f"2^{log2(r['size'])}" if r["group"] in _SIZED else f"batch {r['size']}"
    return f"{r['case']} {r['mode']} {r['dtype']} {size}"


def _size_text(r):
    return f"2^{log2(r['size'])}" if r["group"] in _SIZED else str(r["size"])


def _met_text(met):
    return {True: "yes", False: "**no**", None: ""}[met]


_SWEEP = ("sweep_loss", "sweep_activation")  # in the sweep's own tables (`sweep`)


def main_table(result):
    """A Markdown table with one row per case (medians and ratios), the sweep's rows left out."""
    lines = ["| group | case | mode | dtype | size | unit | ours | reference | ratio | vs floor | "
             "target | met |",
             "|---|---|---|---|---:|---|---:|---:|---:|---:|---:|---|"]
    for r in result["rows"]:
        if r["group"] in _SWEEP:
            continue
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
            for r in result["rows"] if r["group"] not in _SWEEP]
    widths = [max(len(h), *(len(x[i]) for x in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    lines.append("  ".join("-" * w for w in widths))
    for x in rows:
        lines.append("  ".join(c.rjust(w) if i in (3, 4, 5, 7, 8) else c.ljust(w)
                               for i, (c, w) in enumerate(zip(x, widths))).rstrip())
    lines.append("")
    for s in result["summary"] + result.get("sweep_summary", []):
        lines.append(f"{s['met']:>3}/{s['checked']:<3} {s['description']}  (worst {s['worst_ratio']:.2f}: "
                     f"{s['worst_case']})")
    if result.get("crossover"):
        lines += ["", "crossover (log2 elements from which the compiled path is taken; None: never):",
                  sweep.crossover_source(result["crossover"])]
    return "\n".join(lines)


def write_reports(result, out_dir, command="", notes=""):
    """Writes results.json and results.md (summary, notes, every row) to out_dir; returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    result = {**result, "command": command}
    json_path = os.path.join(out_dir, "results.json")
    with open(json_path, "w") as f:
        json.dump(result, f, indent=1)
    m, s = result["machine"], result["settings"]
    # the activations and losses suites (the sweep states its own sizes and repeats)
    sized = any(r["group"] in ("activation", "loss", "check") for r in result["rows"])
    md = ["# keras_afl benchmark results", "",
          f"Command: `{command}`  " if command else "",
          f"Started {result['started']}, took {result['duration_s']:.0f} s; load average (1, 5, 15 min) "
          f"before {result['load_before']}, after {result['load_after']}.  ",
          f"Machine: {m['processor']}, {m['cpu_count']} CPU cores, {m.get('memory_gib', '?')} GiB, "
          f"GPUs: {', '.join(m['gpus']) or 'none'}; {m['platform']}.  ",
          f"Python {m['python']}, NumPy {m['numpy']}, TensorFlow {m['tensorflow']}, Keras {m['keras']}, "
          f"keras_afl {m['keras_afl']} (fused losses: {'on' if m['fused_losses'] else 'off'}). "
          f"Calling an empty `tf.function` takes {m['call_overhead_ms']:.3f} ms here.  ",
          (f"Sizes 2^{', 2^'.join(map(str, s['sizes_log2']))} elements; " if sized else "")
          + f"dtypes {', '.join(s['dtypes'])}; modes {', '.join(s['modes'])}"
          + (f"; {s['repeats']} timed repeats per case after warm-up, ours, the reference, a read and "
             "a write called in turn; medians." if sized else "."), "",
          "Ratios are ours / reference: below 1 is faster (or smaller). \"vs floor\" is ours over the "
          "time to move the bytes that must move at the speed of a copy of the same size, timed in the "
          "same loop. Training rows are milliseconds per step (the steps/s ratio is 1 / ratio); the "
          "memory row is peak resident set size in MiB.", "",
          *(["## Targets", "", summary_table(result), ""] if result["summary"] else [])]
    same = same_program_table(result)
    if same:
        md += ["## Same program as the built-in", "",
               "\"same\": ours runs exactly the built-in's TensorFlow kernels (graph mode: the ops its "
               "outputs depend on) or compiles to the same optimized XLA program (XLA), so a timing "
               "difference between the two is measurement noise. PReLU's reference is Keras's formula "
               "(`relu(x) - alpha * relu(-x)`), a different program by design.", "", same, ""]
    if notes:
        md += [notes.strip(), ""]
    if result.get("sweep_summary"):
        md += sweep_sections(result)
    if any(r["group"] not in _SWEEP for r in result["rows"]):
        md += ["## Every case", "", main_table(result), ""]
    md_path = os.path.join(out_dir, "results.md")
    with open(md_path, "w") as f:
        f.write("\n".join(md))
    return json_path, md_path



def sweep_sections(result):
    """results.md's sections on the size sweep: its targets, the plots, the crossover table, the
    ratio to the reference per case and size, the losses' compiled / plain time."""
    s = result["settings"]
    lines = ["| target | met | worst ratio | worst case |", "|---|---:|---:|---|"]
    lines += [f"| {x['description']} | {x['met']}/{x['checked']} | {x['worst_ratio']:.2f} | "
              f"{x['worst_case']} |" for x in result["sweep_summary"]]
    plots = [f"![{f}](sweep_{f}.png)"
             for f in ("activations", "regression", "binary", "categorical", "sparse", "crossover")]
    return ["## Size sweep", "",
            f"Sizes 2^{', 2^'.join(map(str, s['sweep_sizes_log2']))} elements; "
            f"{s['sweep_repeats']} timed repeats per loss case at 2^22 and up, 2x at 2^20, 4x at 2^18, "
            f"8x below (activations: {sweep.ACTIVATION_FACTOR}x those); medians. Losses: keras_afl's plain path, its compiled path and Keras's loss "
            "called round robin; \"ours\" is the path keras_afl takes at that size (a \"c\" after "
            "the ratio: the compiled one), bold: a missed target.", "",
            *lines, "", *plots, "",
            "### Crossover: log2 elements from which the compiled path wins (None: never)", "",
            "Per loss and mode, `_crossover`'s rule applied to this run (`keras_afl.bench.sweep."
            "crossover_table`): a verdict per size from the paired rounds, with a margin; ties "
            "stay plain here (the committed table sends them to the smaller program, "
            "tests/test_crossover.py).", "", "```python",
            sweep.crossover_source(result["crossover"]), "```", "",
            "### Losses: ours / Keras", "", sweep.ratio_table(result, "sweep_loss"), "",
            "### Activations: ours / the native op", "", sweep.ratio_table(result, "sweep_activation"), "",
            "### Losses: compiled path / plain path", "", sweep.path_table(result), "",
            *(["### Kernels per value + gradient step (graph mode, plain path, 2^10 elements)", "",
               sweep.kernel_table(result["kernels"]), ""] if result.get("kernels") else [])]
