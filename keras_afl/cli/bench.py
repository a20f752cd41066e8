"""`keras-afl bench [--quick] [...]`: the command's arguments, handed to the harness.

The benchmark harness is `keras_afl.bench` (importable on its own:
`keras_afl.bench.run(...)`); this module only turns the parsed arguments into
one `run(...)` call through the harness's public names, prints its table and
writes the reports with the command line that reproduces them. A bad argument
is a ValueError, which the command reports as one message (exit 2).
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


def checks_per_step(args):
    """Suite "checks", on every backend: what the label checks cost a training step
    (`keras_afl.bench.guard_cost`); the table printed, the result written to --output."""
    import json
    import os

    from keras_afl.bench import guard_cost

    result = guard_cost.run(quick=args.quick, repeats=args.repeats)
    result["command"] = command_line(args)
    print(guard_cost.table(result))
    if args.output:
        os.makedirs(args.output, exist_ok=True)
        path = os.path.join(args.output, f"guard_cost_{result['backend']}.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
        print(f"wrote {path}")


def run(args):
    """Runs `keras-afl bench` for parsed `args`; prints the table; returns the exit code (0)."""
    import keras

    if args.suites and "checks" in args.suites:
        checks_per_step(args)
    if keras.backend.backend() != "tensorflow":  # JAX, PyTorch: their own cases and references
        from keras_afl.bench import backends

        if args.suites and "checks" in args.suites:
            args.suites = [s for s in args.suites if s != "checks"]
            if not args.suites:
                return 0
        return backends.run_cli(args)
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
