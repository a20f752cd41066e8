"""The `keras-afl` command's entry point: `--backend` read before anything imports Keras.

`import keras_afl` imports Keras, and Keras picks its backend once, at its import. On a machine
without TensorFlow and with KERAS_BACKEND unset, Keras would pick TensorFlow and `import
keras_afl` would stop before the command line is read, so `keras-afl --backend jax ...` could not
start. This module (outside the package, so importing it imports nothing else) sets
KERAS_BACKEND from `--backend` when that backend is installed, or stops with one line (exit 2)
when it is not, then runs `keras_afl.cli.main`.
"""

import importlib.util
import os
import sys

# --backend -> (the module Keras imports for it, its name in words, the extra that installs it)
BACKEND_LIBRARIES = {"tensorflow": ("tensorflow", "TensorFlow", "cpu"),
                     "jax": ("jax", "JAX", "jax"), "torch": ("torch", "PyTorch", "torch")}


def installed(backend):
    """Whether the library of Keras backend `backend` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(BACKEND_LIBRARIES[backend][0]) is not None
    except (ImportError, ValueError):
        return False


def not_installed_message(name):
    """The one-line error for `--backend name` whose library is missing, or None."""
    if installed(name):
        return None
    _, words, extra = BACKEND_LIBRARIES[name]
    others = [b for b in BACKEND_LIBRARIES if b != name and installed(b)]
    instead = f", or run on an installed one: --backend {' / '.join(others)}" if others else ""
    return (f"--backend {name}: {words} is not installed, so Keras cannot run on it. "
            f"Fix: pip install 'keras-afl[{extra}]'{instead}")


def requested_backend(argv):
    """The value of `--backend B` / `--backend=B` among the options before `--`, or None."""
    for i, arg in enumerate(argv):
        if arg == "--":
            break
        if arg == "--backend" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--backend="):
            return arg.split("=", 1)[1]
    return None


def main():
    name = requested_backend(sys.argv[1:])
    if name in BACKEND_LIBRARIES and "keras" not in sys.modules:
        message = not_installed_message(name)
        if message is not None:  # before `import keras_afl`, which may fail on that machine
            print(f"keras-afl: {message}", file=sys.stderr)
            return 2
        os.environ["KERAS_BACKEND"] = name
    from keras_afl.cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
