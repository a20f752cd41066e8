"""The regression guard: `keras-afl bench --compare benchmarks/results.json`.

Reruns the committed activation and loss rows of the active backend (the same cases, sizes,
dtypes and modes; `--cases`, `--sizes`, `--dtypes`, `--modes` narrow them) and compares each
new ratio (ours / the built-in, both timed in the same run) with the committed one. Ratios, not
times: the machine's load slows ours and the built-in alike, so a ratio carries from one run
and one day to the next where a time does not.

A row is a regression when its ratio is worse than the committed one beyond its noise band:

    new > committed * (1 + band),  band = max(min_band, 2 * sqrt(se_committed**2 + se_new**2))

`se` is the relative standard error of a run's median ratio, measured from that run's own
samples: on TensorFlow the ratios of the rounds (`samples`, ours and the built-in called
round-robin), on JAX and PyTorch the interquartile ranges of the single calls (the standard
error of a median is about 1.2533 sigma / sqrt(n), sigma about IQR / 1.349). `min_band`
(default 0.10) covers what one run cannot see of itself: the drift between two runs on a shared
machine, which the same-run A/Bs of benchmarks/one_formulation measured at up to 7-8 %.

A row within a band wider than `MAX_BAND` (0.5) is undecided: the run was too noisy to tell (a
busy machine, too few --repeats). It is measured again, and if every pass stays that noisy the
guard says so and exits 3, neither passing nor failing it. (A row past even a wide band fails.)

A row past its band is measured again (`confirm` more passes, default 2) and fails only when the
median of its passes is still past it: one preempted pass does not fail the guard. Training,
memory and the size sweep are not rerun (minutes each, and their own suites record them).
"""

from __future__ import annotations

import json
import math
import statistics

MIN_BAND = 0.10
MAX_BAND = 0.50  # a wider band cannot tell a regression from the machine's load: "noisy"
CONFIRM = 2
_SE_MEDIAN = 1.2533  # standard error of a median, in units of sigma / sqrt(n), for a normal
_IQR_SIGMA = 1.349  # interquartile range / sigma, for a normal


def _log2(n):
    return int(round(math.log2(n)))


def _se_of_rounds(samples):
    """The relative standard error of the median of per-round ratios ours_i / ref_i."""
    ours, ref = samples.get("ours") or [], samples.get("ref") or []
    ratios = [a / b for a, b in zip(ours, ref) if b > 0]
    if len(ratios) < 4:
        return None
    q = statistics.quantiles(ratios, n=4)
    median = statistics.median(ratios)
    return _SE_MEDIAN * (q[2] - q[0]) / _IQR_SIGMA / math.sqrt(len(ratios)) / median


def _se_of_calls(row, repeats):
    """The relative standard error of ours / ref from each side's median and IQR of single calls."""
    n = max(1, int(row.get("calls_per_round") or 1) * int(repeats or 1))
    parts = []
    for median, iqr in ((row["ours_ms"], row.get("ours_iqr_ms")),
                        (row["reference_ms"], row.get("reference_iqr_ms"))):
        if not iqr or median <= 0:
            return None
        parts.append(_SE_MEDIAN * iqr / _IQR_SIGMA / math.sqrt(n) / median)
    return math.hypot(*parts)


def normalize(result, backend=None):
    """The activation and loss rows of a results file (or a run's result dict) as
    {(kind, case, mode, dtype, log2_size): {"ratio", "se"}} for `backend`.

    Reads both layouts: TensorFlow's results.json (`rows` with group, mode, samples) and the JAX
    and PyTorch harness's backends.json ({backend: {rows: ...}}) or one run of it."""
    if "rows" not in result:  # backends.json: one entry per backend
        if backend not in result:
            raise ValueError(f"the results file has rows for {', '.join(sorted(result))}, none "
                             f"for the active backend {backend}. Fix: run with --backend "
                             f"{' or --backend '.join(sorted(result))}, or compare against the "
                             "file that holds this backend's rows (TensorFlow: "
                             "benchmarks/results.json; JAX, PyTorch: benchmarks/backends.json)")
        result = result[backend]
    out = {}
    if "backend" in result:  # the JAX / PyTorch harness
        if backend is not None and result["backend"] != backend:
            raise ValueError(f"the results file holds {result['backend']}'s rows and the active "
                             f"backend is {backend}. Fix: run with --backend {result['backend']}, "
                             "or compare against this backend's results")
        default_mode = "jit" if result["backend"] == "jax" else "eager"
        for r in result["rows"]:
            key = (r["kind"], r["name"], r.get("mode", default_mode), r["dtype"], r["log2_size"])
            out[key] = {"ratio": r["ratio"], "se": _se_of_calls(r, result.get("repeats"))}
        return out
    if backend is not None and backend != "tensorflow":
        raise ValueError(f"the results file holds TensorFlow's rows (graph, xla) and the active "
                         f"backend is {backend}. Fix: run with --backend tensorflow, or compare "
                         "against benchmarks/backends.json")
    for r in result["rows"]:
        if r["group"] not in ("activation", "loss"):
            continue
        key = (r["group"], r["case"], r["mode"], r["dtype"], _log2(r["size"]))
        out[key] = {"ratio": r["ratio"], "se": _se_of_rounds(r.get("samples") or {})}
    return out


def band(committed, new, min_band=MIN_BAND):
    """The noise band of one row: max(min_band, 2 * the combined relative standard error)."""
    ses = [s for s in (committed.get("se"), new.get("se")) if s is not None]
    return max(min_band, 2.0 * math.hypot(*ses)) if ses else min_band


def verdicts(committed, passes, min_band=MIN_BAND):
    """Rows of the comparison: per committed key measured in `passes` (a list of normalized
    runs, the first covering every key), the committed ratio, the new one (the median over the
    passes that measured the row), the band, and whether it regressed."""
    rows = []
    for key, old in sorted(committed.items()):
        measured = [p[key] for p in passes if key in p]
        if not measured:
            continue
        new_ratio = statistics.median(m["ratio"] for m in measured)
        b = min(band(old, m, min_band) for m in measured)  # the quietest pass's
        limit = old["ratio"] * (1.0 + b)
        regressed = new_ratio > limit  # past even a wide band: slower whatever the noise
        rows.append({"key": key, "committed": old["ratio"], "new": new_ratio, "band": b,
                     "limit": limit, "passes": len(measured), "regressed": regressed,
                     "noisy": not regressed and b > MAX_BAND})
    return rows


def suspects(committed, measured, min_band=MIN_BAND):
    """Keys whose single-pass ratio is past its band, or whose band is too wide to decide (to
    be measured again)."""
    return [r["key"] for r in verdicts(committed, [measured], min_band)
            if r["regressed"] or r["noisy"]]


def label(key):
    kind, case, mode, dtype, size = key
    return f"{kind} {case} {mode} {dtype} 2^{size}"


def compare(committed, measure, *, confirm=CONFIRM, min_band=MIN_BAND, progress=None):
    """Measures the committed keys (`measure(keys) -> normalized rows`), measures the rows past
    their band `confirm` more times, and returns the verdict rows."""
    first = measure(sorted(committed))
    missing = sorted(set(committed) - set(first))
    if missing:
        raise ValueError(f"the rerun measured no row for {', '.join(map(label, missing))}: the "
                         "harness no longer has these cases. Fix: regenerate the committed "
                         "results (keras-afl bench --output benchmarks)")
    passes = [first]
    again = suspects(committed, first, min_band)
    for i in range(confirm if again else 0):
        if progress:
            progress(f"measuring again ({i + 1}/{confirm}): {', '.join(map(label, again))}")
        passes.append(measure(again))
    return verdicts(committed, passes, min_band)


def table(rows):
    """A plain-text table of the verdict rows, the regressions marked."""
    lines = [f"{'row':<52} {'committed':>9} {'now':>7} {'limit':>7} {'band':>5}  verdict"]
    for r in rows:
        verdict = "REGRESSED" if r["regressed"] else "noisy" if r["noisy"] else ("faster" if r["new"] < r["committed"] /
                                                        (1 + r["band"]) else "same")
        lines.append(f"{label(r['key']):<52} {r['committed']:>9.3f} {r['new']:>7.3f} "
                     f"{r['limit']:>7.3f} {r['band']:>5.2f}  {verdict}"
                     + (f" ({r['passes']} passes)" if r["passes"] > 1 else ""))
    return "\n".join(lines)


def load(path):
    """A committed results file, or a ValueError naming it and how to make one."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise ValueError(f"--compare {path}: no such file. Fix: name a committed results file "
                         "(benchmarks/results.json on TensorFlow, benchmarks/backends.json on "
                         "JAX and PyTorch), or write one with keras-afl bench --output DIR") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"--compare {path}: not a results file ({e}). Fix: name a results.json "
                         "written by keras-afl bench --output") from None


def select(committed, *, cases=None, sizes=None, dtypes=None, modes=None):
    """The committed keys narrowed by the command's filters (None keeps all)."""
    out = {k: v for k, v in committed.items()
           if (not cases or k[1] in cases) and (not sizes or k[4] in sizes)
           and (not dtypes or k[3] in dtypes) and (not modes or k[2] in modes)}
    if not out:
        raise ValueError("--compare: the filters (--cases, --sizes, --dtypes, --modes) leave no "
                         "committed row to rerun. Fix: name cases, sizes, dtypes or modes that "
                         "the committed file has")
    return out


def harness_measure(backend, repeats=None, progress=None):
    """`measure(keys) -> normalized rows` on the active backend's harness: TensorFlow's
    `keras_afl.bench.run` (graph, XLA), or `keras_afl.bench.backends.run` (JAX, PyTorch), one
    call per dtype (and mode) with the union of the keys' cases and sizes."""

    def groups(keys):
        out = {}
        for kind, case, mode, dtype, size in keys:
            g = out.setdefault((mode, dtype), {"activation": set(), "loss": set(), "sizes": set()})
            g[kind].add(case)
            g["sizes"].add(size)
        return out

    def measure(keys):
        rows = {}
        for (mode, dtype), g in sorted(groups(keys).items()):
            if progress:
                progress(f"{backend} {mode} {dtype}: {len(g['activation']) + len(g['loss'])} "
                         f"cases at 2^{', 2^'.join(map(str, sorted(g['sizes'])))}")
            kwargs = dict(sizes=sorted(g["sizes"]), repeats=repeats,
                          activations=sorted(g["activation"]), losses=sorted(g["loss"]))
            if backend == "tensorflow":
                from keras_afl import bench

                result = bench.run(dtypes=[dtype], modes=[mode], progress=False,
                                   suites=["activations", "losses"], **kwargs)
            else:
                from keras_afl.bench import backends

                result = backends.run(dtype=dtype, modes=[mode], **kwargs)
            rows.update(normalize(result, backend))
        wanted = set(keys)
        return {k: v for k, v in rows.items() if k in wanted}

    return measure
