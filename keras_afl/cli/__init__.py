"""The `keras-afl` command line (also `python -m keras_afl`).

    keras-afl demo                    see it work: BCE vs focal on imbalanced real data
    keras-afl train CONFIG.yaml       an experiment from a YAML config (see configs/)
    keras-afl list [--json]           every activation and loss, with its notes
    keras-afl plot NAME... [-o F.png] a function and its analytic derivative
    keras-afl check [NAME...]         analytic vs numeric vs autodiff gradients, here
    keras-afl lint MODEL.keras        check a saved model's activations against its loss
    keras-afl bench [--quick]         speed and memory against Keras's built-ins, here

This package is the app, one module per job: this file (the parser and the
dispatch to the commands), `common` (errors, exit codes, optional imports,
tables), `config` (the train config's schema and validation, with
`config_checker`, `config_names`, `config_training` and `example_task`),
`yaml_file` (reading it), `build` (Keras models, losses and optimizers from a
validated config), `data`, `train`, `demo`, `plot`, `check`, `lint`, `listing`
(the `list` command) and `bench` (the `bench` command's arguments; the harness is
`keras_afl.bench`). It uses the library's public names only (`keras_afl.entry`,
`keras_afl.lint`, `keras_afl.layers`, ...) and the harness; neither the library
nor the harness imports it.

The commands import what they need when they run: `demo`, `train` and `plot`
need the `cli` extra (`pip install "keras-afl[cli]"`: PyYAML, matplotlib,
scikit-learn); `list`, `check` and `--help` do not. Exit codes: 0 success, 1 a
step or check failed, 2 a usage, config or installation error (one message, no
traceback).
"""

from __future__ import annotations

import argparse
import os
import sys

from keras_afl.cli.common import CLIError, ConfigError, quiet_tensorflow

__all__ = ["main", "build_parser"]

DTYPES = ("float16", "bfloat16", "float32", "float64")
BACKENDS = ("tensorflow", "jax", "torch")


def _choose_backend(name, argv):
    """Runs the command on the backend `name` (KERAS_BACKEND for this run).

    Keras picks its backend once per process, at its import, and `import keras_afl` (which
    runs before the command line is read) imports Keras. So from the command line (`argv` None)
    a run on another backend starts again in a new Python process with KERAS_BACKEND set; called
    in-process with other `argv`, that is a CLIError.
    """
    if name is None:
        return
    _require_installed(name)
    keras = sys.modules.get("keras")
    if keras is not None:
        current = keras.backend.backend()
        if current != name and argv is None:
            sys.stdout.flush()
            sys.stderr.flush()
            os.execve(sys.executable, [sys.executable, "-m", "keras_afl", *sys.argv[1:]],
                      {**os.environ, "KERAS_BACKEND": name})
        if current != name:
            raise CLIError(
                f"--backend {name}: Keras is already running on {current!r} in this process and "
                "cannot switch. Fix: run keras-afl in a new process (the command line does), or "
                f"set KERAS_BACKEND={name} before Python starts.")
        return
    os.environ["KERAS_BACKEND"] = name


def _require_installed(name):
    """CLIError (one line, exit 2) unless the library of backend `name` can be imported."""
    from keras_afl_launcher import not_installed_message

    message = not_installed_message(name)
    if message is not None:
        raise CLIError(message)


def build_parser():
    """The argparse parser of `keras-afl` (one sub-command per job)."""
    parser = argparse.ArgumentParser(
        prog="keras-afl",
        description="keras_afl: activation and loss functions with analytic derivatives "
                    "for Keras 3 (TensorFlow, JAX or PyTorch backend).",
        epilog="Start with `keras-afl demo`. Exit codes: 0 success, 1 a step or check "
               "failed, 2 usage/config/installation error.",
    )
    parser.add_argument("--version", action="store_true", help="print the versions and exit")
    parser.add_argument("--backend", choices=BACKENDS, default=None,
                        help="Keras backend to run on (default: KERAS_BACKEND, else Keras's "
                             "configured backend); sets KERAS_BACKEND for this run")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "demo", help="train BCE vs focal loss on imbalanced real data; save, reload, plot",
        description="Trains the same small model twice on an imbalanced subsample of "
                    "scikit-learn's bundled handwritten-digits data (a digit vs the rest, "
                    "about 6% positives) -- once with binary cross-entropy ('afl_bce'), once "
                    "with focal loss ('focal') -- prints PR-AUC, ROC-AUC, F1 and minority "
                    "recall on a held-out stratified split, saves the focal model to .keras, "
                    "reloads it in a fresh process and checks the predictions match, and "
                    "writes plots. No downloads; about a minute on two CPU cores.")
    p.add_argument("--output", default="afl_demo_output", metavar="DIR",
                   help="folder for the model, plots and summary (default: ./afl_demo_output)")
    p.add_argument("--epochs", type=_positive_int, default=None, metavar="N",
                   help="training epochs per loss (default: 25)")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser(
        "train", help="run an experiment from a YAML config",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_config_schema(),
        description="Validates the whole config, then builds, trains (Keras progress bar), "
                    "evaluates on a held-out split and saves one model per loss, with "
                    "summary.json (config, metrics, history, timings, versions) and "
                    "training_curves.png. See configs/ for examples.")
    p.add_argument("config", metavar="CONFIG.yaml")
    p.add_argument("--output", default=None, metavar="DIR",
                   help="output folder (default: ./afl_runs/<config name>)")
    p.add_argument("--smoke", action="store_true",
                   help="a seconds-long run for CI: 1 epoch on a small subsample")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser(
        "list", help="every activation and loss: names, parameters, formulas, notes",
        description="Prints the registry: string names, parameters with defaults, formula, "
                    "derivative, output range, properties, typical uses and pairings.")
    p.add_argument("names", nargs="*", metavar="NAME", help="only these (default: all)")
    p.add_argument("--kind", choices=("activation", "loss"), help="only activations or losses")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser(
        "plot", help="plot functions and their analytic derivatives to PNG",
        description="Plots each activation and its derivative (through its custom gradient, "
                    "with the backend's differentiation); for a loss, the loss and d loss / d y_pred against "
                    "the prediction for label 1 and label 0 (against the error for regression "
                    "losses). NAME may also be `activations` or `losses` (all of them).")
    p.add_argument("names", nargs="+", metavar="NAME")
    p.add_argument("-o", "--output", default=None, metavar="FILE.png",
                   help="output file (default: NAME.png, or keras_afl_plot.png for several)")
    p.add_argument("--range", nargs=2, type=float, default=None, metavar=("LO", "HI"),
                   help="x range of every panel (default: -5 5 for activations; for losses "
                        "0.002 0.998 of a probability, -3 3 of a score or an error; a "
                        "probability range must lie in [0, 1])")
    p.set_defaults(func=_cmd_plot)

    p = sub.add_parser(
        "check", help="check the analytic gradients on this machine (exit 1 on failure)",
        description="For every function (default: all), compares the analytic gradient "
                    "(the custom gradient, in each DTYPE on the backend's default device -- "
                    "your GPU if the backend sees one) with central differences of the function in "
                    "float64 and with autodiff of a plain reference formula, checks values "
                    "and gradients stay finite at extreme inputs, and prints the largest "
                    "errors against per-dtype tolerances.")
    p.add_argument("names", nargs="*", metavar="NAME")
    p.add_argument("--dtype", action="append", choices=(*DTYPES, "all"), default=None,
                   help="repeatable (default: float32 and float64)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random test points")
    p.set_defaults(func=_cmd_check)

    p = sub.add_parser(
        "lint", help="check a saved model's activations and loss against the advice (exit 1 on "
                     "an error finding)",
        description="Loads a .keras model (after `import keras_afl`) and checks it: output "
                    "activation vs loss (softmax + binary cross-entropy, a linear output with "
                    "from_logits=False, ...), SELU set-up, deep sigmoid/tanh stacks, Leaky "
                    "ReLU / PReLU slopes. The loss is the compiled one unless --loss is given. "
                    "Exit codes: 0 no error finding (warnings and info are printed), 1 at least "
                    "one error finding (or a warning, with --strict), 2 the file is missing or "
                    "cannot be loaded, or --loss is unknown.")
    p.add_argument("model", metavar="MODEL.keras")
    p.add_argument("--loss", default=None, metavar="NAME",
                   help="check against this loss instead of the compiled one")
    p.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_lint)

    p = sub.add_parser(
        "bench", help="time activations, losses and training against Keras's built-ins",
        description="Forward + backward of every activation and loss against the TensorFlow/"
                    "Keras built-in (autodiff) and the memory-bandwidth floor, graph mode and "
                    "XLA; training steps/s of an MLP and a dense-prediction focal-loss model; "
                    "peak memory of a deep MLP. Medians of interleaved repeats; prints a table "
                    "of medians and ratios (ours / built-in), writes results.json and results.md "
                    "with --output. A full run takes about 20 minutes on two cores; --quick "
                    "(under a minute) checks that everything runs.")
    p.add_argument("--quick", action="store_true", help="small and fast, for CI (numbers mean little)")
    p.add_argument("--sizes", nargs="+", type=_positive_int, metavar="LOG2",
                   help="element counts as powers of two (default: 16 20 24)")
    p.add_argument("--dtypes", nargs="+", choices=DTYPES, metavar="DTYPE",
                   help="input dtypes (default: float32 bfloat16)")
    p.add_argument("--modes", nargs="+", choices=("graph", "xla", "eager", "compile", "jit"),
                   metavar="MODE",
                   help="TensorFlow: graph and/or xla (default: both); PyTorch: eager and/or "
                        "compile (torch.compile, ours and Keras's; default: eager); JAX: jit")
    p.add_argument("--suites", nargs="+",
                   choices=("activations", "losses", "training", "memory", "checks", "classifier", "sweep",
                            "steps"),
                   metavar="SUITE",
                   help="activations, losses, training, memory, checks (default: these five); "
                        "classifier (training steps at batch 32-512), sweep (every loss and "
                        "activation at 2^10-2^24 elements, the losses' crossover; --sizes and "
                        "--repeats set its sizes and repeats); steps (any backend: training "
                        "steps/s and peak memory of a classifier, a segmenter and a detector "
                        "against the same models with Keras's losses, default compile setting)")
    p.add_argument("--cases", nargs="+", metavar="NAME",
                   help="only these activations/losses (e.g. relu focal_logits)")
    p.add_argument("--repeats", type=_positive_int, metavar="N",
                   help="timed repeats per case after warm-up (default: 10)")
    p.add_argument("--output", metavar="DIR", help="write results.json and results.md here")
    p.add_argument("--notes", metavar="FILE.md", help="Markdown to include in results.md (analysis)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--compare", metavar="RESULTS.json",
                   help="the regression guard: rerun the committed activation and loss rows of "
                        "this file (benchmarks/results.json on TensorFlow, benchmarks/"
                        "backends.json on JAX and PyTorch; --cases/--sizes/--dtypes/--modes "
                        "narrow them) and exit 1 naming each row whose ratio is worse than the "
                        "committed one beyond its noise band")
    p.add_argument("--band", type=float, metavar="FRACTION",
                   help="with --compare: the smallest noise band (default 0.10: 10%%)")
    p.set_defaults(func=_cmd_bench)
    return parser


def _config_schema():
    """The config reference `keras_afl.cli.config.SCHEMA` (for `train --help`).

    Help text never comes from a docstring: `python -OO` strips them.
    """
    from keras_afl.cli import config

    return "config file:\n" + config.SCHEMA.rstrip()


def _positive_int(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


# The exit status of a command whose reader went away (`keras-afl list --json | head`): what a
# shell reports for a Unix tool that SIGPIPE ended, 128 + 13.
EXIT_READER_GONE = 141


def main(argv=None):
    """Runs `keras-afl` with `argv` (default: sys.argv[1:]); returns the exit code."""
    try:
        code = _run(argv)
        sys.stdout.flush()  # output to a pipe is buffered: a reader that left shows up here
        return code
    except BrokenPipeError:
        return _reader_gone()


def _reader_gone():
    """Stops quietly after the reader of stdout closed it (`keras-afl lint --json M | head`), as
    a Unix tool does: no traceback, and nothing more written (Python flushes stdout once more at
    exit, which would fail again: stdout goes to the null device). Returns EXIT_READER_GONE."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # stdout is no file (in-process, redirected)
        pass
    return EXIT_READER_GONE


def _run(argv):
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error (2); argparse printed it
        return e.code if isinstance(e.code, int) else 0
    try:
        _choose_backend(args.backend, argv)
    except CLIError as e:
        print(f"keras-afl: {e}", file=sys.stderr)
        return e.exit_code
    if args.version:
        from keras_afl.cli.common import versions

        print(" | ".join(f"{k} {v}" for k, v in versions().items() if k != "platform"))
        return 0
    if args.command is None:
        parser.print_help()
        return 2
    quiet_tensorflow()
    try:
        return int(args.func(args) or 0)
    except ConfigError as e:
        print(str(e), file=sys.stderr)
        return e.exit_code
    except CLIError as e:
        print(f"keras-afl {args.command}: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"keras-afl {args.command}: interrupted", file=sys.stderr)
        return 130


# --------------------------------------------------------------------------- commands

def _cmd_demo(args):
    from keras_afl.cli import demo

    return demo.run(output=args.output, epochs=args.epochs)


def _cmd_train(args):
    from keras_afl.cli import train

    return train.run(args.config, output=args.output, smoke=args.smoke, quiet=args.quiet)


def _cmd_plot(args):
    from keras_afl.cli import plot

    return plot.run(args.names, output=args.output, x_range=args.range and tuple(args.range))


def _cmd_check(args):
    from keras_afl.cli import check

    dtypes = args.dtype or ["float32", "float64"]
    if "all" in dtypes:
        dtypes = list(DTYPES)
    return check.run(args.names, dtypes=list(dict.fromkeys(dtypes)), seed=args.seed)


def _cmd_lint(args):
    from keras_afl.cli import lint

    return lint.run(args.model, loss=args.loss, strict=args.strict, as_json=args.json)


def _cmd_bench(args):
    from keras_afl.cli import bench

    try:
        return bench.run(args)
    except ValueError as e:
        raise CLIError(str(e)) from None


def _cmd_list(args):
    from keras_afl.cli import listing

    return listing.run(args.names, kind=args.kind, as_json=args.json)
