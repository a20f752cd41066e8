"""`keras-afl bench [--quick] [...]`: the command's arguments, handed to the harness.

The benchmark harness is `keras_afl.bench` (importable on its own:
`keras_afl.bench.run(...)`; on JAX and PyTorch `keras_afl.bench.backends.run(...)`);
this module only turns the parsed arguments into one `run(...)` call through
the harness's public names, prints its table and writes the reports with the
command line that reproduces them. A bad argument is a ValueError, which the
command reports as one message (exit 2). The harness never imports this module:
the arguments flow from here to the harness, the results back as return values.
"""

from __future__ import annotations


def command_line(args):
    """The `keras-afl bench ...` command that reproduces a parsed `args`."""
    parts = ["keras-afl", "bench"]
    if args.quick:
        parts.append("--quick")
    for flag in ("sizes", "dtypes", "modes", "suites", "cases"):
        values = getattr(args, flag)
        if values:
            parts += [f"--{flag}", *map(str, values)]
    if args.repeats:
        parts += ["--repeats", str(args.repeats)]
    if args.output:
        parts += ["--output", args.output]
    if args.notes:
        parts += ["--notes", args.notes]
    return " ".join(parts)


def any_backend_suite(args, name):
    """Suites "checks" and "steps", on every backend: what the label checks cost a training step
    (`keras_afl.bench.guard_cost`), and training steps against the same model with Keras's loss
    (`keras_afl.bench.steps`); the table printed, the result written to --output."""
    import json
    import os

    from keras_afl.bench import guard_cost, steps

    module = {"checks": guard_cost, "steps": steps}[name]
    result = module.run(quick=args.quick, repeats=args.repeats)
    result["command"] = command_line(args)
    print(module.table(result))
    if args.output:
        os.makedirs(args.output, exist_ok=True)
        stem = {"checks": "guard_cost", "steps": "steps"}[name]
        path = os.path.join(args.output, f"{stem}_{result['backend']}.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
        print(f"wrote {path}")


def compare(args):
    """`keras-afl bench --compare FILE`: reruns the committed rows (`keras_afl.bench.compare`),
    prints the verdicts; returns 1 naming the rows that regressed, else 0."""
    import sys

    import keras

    from keras_afl.bench import compare as guard

    if args.band is not None and not 0.0 <= args.band < 10.0:
        raise ValueError(f"--band is a fraction of the committed ratio (0.10 for 10 %); got "
                         f"{args.band}. Fix: a number from 0 up to 10")
    backend = keras.backend.backend()
    committed = guard.select(guard.normalize(guard.load(args.compare), backend), cases=args.cases,
                             sizes=args.sizes, dtypes=args.dtypes, modes=args.modes)
    min_band = guard.MIN_BAND if args.band is None else args.band
    say = None if args.no_progress else (lambda text: print(text, file=sys.stderr, flush=True))
    print(f"comparing {len(committed)} rows of {args.compare} on {backend}", flush=True)
    rows = guard.compare(committed, guard.harness_measure(backend, args.repeats, say),
                         min_band=min_band, progress=say)
    print(guard.table(rows))
    bad = [r for r in rows if r["regressed"]]
    if bad:
        print(f"\n{len(bad)} of {len(rows)} rows slower than committed beyond their noise band:",
              file=sys.stderr)
        for r in bad:
            print(f"  {guard.label(r['key'])}: {r['new']:.3f} now, committed {r['committed']:.3f}"
                  f" (limit {r['limit']:.3f})", file=sys.stderr)
        return 1
    noisy = [r for r in rows if r["noisy"]]
    if noisy:
        print(f"\nundecided: {len(noisy)} of {len(rows)} rows too noisy to compare (band over "
              f"{guard.MAX_BAND:.0%}): {', '.join(guard.label(r['key']) for r in noisy)}. Fix: "
              "rerun on a quieter machine, or with more --repeats", file=sys.stderr)
        return 3
    print(f"\nno regression: {len(rows)} rows within their noise band of {args.compare}")
    return 0


def run(args):
    """Runs `keras-afl bench` for parsed `args`; prints the table; returns the exit code (0)."""
    import keras

    if getattr(args, "compare", None):
        return compare(args)

    for name in ("checks", "steps"):
        if args.suites and name in args.suites:
            any_backend_suite(args, name)
    if keras.backend.backend() != "tensorflow":  # JAX, PyTorch: their own cases and references
        if args.suites:
            args.suites = [s for s in args.suites if s not in ("checks", "steps")]
            if not args.suites:
                return 0
        return run_jax_or_torch(args)
    if args.suites:
        args.suites = [s for s in args.suites if s != "steps"]
        if not args.suites:
            return 0
    from keras_afl import bench as harness

    activations = losses = None
    if args.cases:
        unknown = [c for c in args.cases if c not in harness.ACTIVATIONS and c not in harness.LOSSES]
        if unknown:
            raise ValueError(f"unknown case(s) {', '.join(unknown)}; activations: "
                             f"{', '.join(harness.ACTIVATIONS)}; losses: {', '.join(harness.LOSSES)}")
        activations = [c for c in args.cases if c in harness.ACTIVATIONS]
        losses = [c for c in args.cases if c in harness.LOSSES]
    suites = list(args.suites or harness.DEFAULT_SUITES)
    if activations is not None:  # --cases: only the suites of the cases named
        suites = [s for s in suites if (s == "activations" and activations) or (s == "losses" and losses)
                  or (s == "sweep" and (activations or losses))]
        if not suites:
            raise ValueError("--cases names no activation or loss of the selected --suites")
    notes = ""
    if args.notes:
        with open(args.notes) as f:
            notes = f.read()
    result = harness.run(quick=args.quick, sizes=args.sizes, dtypes=args.dtypes,
                         modes=args.modes or harness.MODES, repeats=args.repeats, suites=suites,
                         activations=activations, losses=losses, progress=not args.no_progress)
    print(harness.terminal_table(result))
    print(f"\n{result['duration_s']:.0f} s; load average before {result['load_before']}, "
          f"after {result['load_after']}")
    if args.output:
        paths = harness.write_reports(result, args.output, command=command_line(args), notes=notes)
        print("wrote " + " and ".join(paths))
        if result.get("sweep_summary"):
            print("plots: " + ", ".join(harness.plot_sweep(result, args.output)))
    return 0


def run_jax_or_torch(args):
    """`keras-afl bench` on JAX or PyTorch (`keras_afl.bench.backends`), from the parsed
    arguments; returns the exit code."""
    import os

    from keras_afl.bench import backends

    backend = backends.active_backend()
    if args.modes and any(m in ("graph", "xla") for m in args.modes):
        raise ValueError("--modes (graph, xla) are TensorFlow's; on JAX every case runs under "
                         "jax.jit, on PyTorch eagerly or under torch.compile (--modes eager "
                         "compile). Fix: drop --modes, or --backend tensorflow")
    if args.modes and any(m not in backends.MODES[backend] for m in args.modes):
        raise ValueError(f"--modes on {backend} takes {' and/or '.join(backends.MODES[backend])}; "
                         f"got {' '.join(args.modes)}. Fix: --modes "
                         f"{' '.join(backends.MODES[backend])} (or a part of it), or drop --modes")
    if args.dtypes and len(args.dtypes) > 1:
        raise ValueError(f"on {backend}, --dtypes takes one dtype per run; got "
                         f"{' '.join(args.dtypes)}. Fix: one run per dtype (the default is "
                         "float32)")
    activations = losses = None
    if args.cases:  # run() names the unknown ones
        activations = [c for c in args.cases if c not in backends.LOSSES]
        losses = [c for c in args.cases if c in backends.LOSSES]
    notes = ""
    if args.notes:
        with open(args.notes, encoding="utf-8") as f:
            notes = f.read()
    result = backends.run(quick=args.quick, sizes=args.sizes, dtype=(args.dtypes or ["float32"])[0],
                          repeats=args.repeats, activations=activations, losses=losses,
                          suites=tuple(args.suites or ("activations", "losses")),
                          progress=not args.no_progress, modes=args.modes)
    threads = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "XLA_FLAGS") if os.environ.get(k)}
    result["command"] = " ".join([*(f"{k}={v}" for k, v in threads.items()), "keras-afl",
                                  "--backend", result["backend"],
                                  *command_line(args).split(" ")[1:]])
    print(backends.terminal_table(result))
    print(f"\n{result['duration_s']:.0f} s; load average before {result['load_before']}, "
          f"after {result['load_after']}")
    if args.output:
        print("wrote " + " and ".join(backends.write_reports(result, args.output, notes)))
    return 0
