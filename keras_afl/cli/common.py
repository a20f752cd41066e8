"""Pieces shared by the `keras-afl` commands: errors, optional imports, tables, versions.

Nothing here imports TensorFlow, YAML, matplotlib or scikit-learn at module
level: `keras-afl --help` and `keras-afl list` must work without the `cli`
extra, so each command imports what it needs through `require()`.
"""

from __future__ import annotations

import difflib
import importlib
import os
import platform
import sys

# The commands' tables: the harness's formatter (the app may import the harness, not back).
from keras_afl.bench.table import format_table  # noqa: F401 (re-exported)

CLI_EXTRA = 'pip install "keras-afl[cli]"'

# module -> the distribution that provides it (for the error message)
_DISTRIBUTIONS = {"yaml": "pyyaml", "matplotlib": "matplotlib", "sklearn": "scikit-learn"}


class CLIError(Exception):
    """An error the command reports as one message, without a traceback.

    `exit_code` is 2 for usage, configuration and installation problems and 1
    for a check or step that ran and failed.
    """

    exit_code = 2


class ConfigError(CLIError):
    """A problem in a config file, reported as `FILE: KEY: message`."""

    def __init__(self, file, key, message):
        self.file, self.key, self.message = file, key, message
        where = f"{file}: {key}: " if key else f"{file}: "
        super().__init__(where + message)


class MissingExtraError(CLIError):
    """A command needs a package of the `cli` extra that is not installed."""


def require(module, command):
    """Imports an optional module of the `cli` extra, or raises MissingExtraError naming the fix."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        top = module.split(".")[0]
        dist = _DISTRIBUTIONS.get(top, top)
        raise MissingExtraError(
            f"`keras-afl {command}` needs {dist}, which is not installed ({e}). "
            f"Install the command-line extra: {CLI_EXTRA}"
        ) from None


def pyplot(command):
    """matplotlib.pyplot on the headless Agg backend (no display needed)."""
    matplotlib = require("matplotlib", command)
    if matplotlib.get_backend().lower() != "agg":
        matplotlib.use("Agg", force=True)
    return require("matplotlib.pyplot", command)


def output_folder(path, option="--output"):
    """Creates the folder `path` (given as `option`) and checks that files can be written in it.

    Raises CLIError (exit 2) naming the option, the path and the reason --
    an existing file, a parent that is a file, a place where nothing can be
    created (a read-only file system, /proc, ...) -- before any work is done.
    Returns `path`.
    """
    if os.path.exists(path) and not os.path.isdir(path):
        raise CLIError(f"{option} {path!r} is an existing file, not a folder; give a new or "
                       f"existing folder instead (e.g. {option} {path}_out)")
    return _writable_folder(path, option, path, "the folder")


def output_file(path, option="--output"):
    """Checks that the file `path` (given as `option`) can be written; creates its folder.

    Raises CLIError (exit 2) with the reason, like `output_folder`. Returns `path`.
    """
    if os.path.isdir(path):
        raise CLIError(f"{option} {path!r} is a folder; give a file name (e.g. {option} "
                       f"{os.path.join(path, 'plot.png')})")
    _writable_folder(os.path.dirname(os.path.abspath(path)), option, path, "its folder")
    return path


def _writable_folder(folder, option, given, what):
    """Creates `folder`, then writes and removes a temporary file in it (permission bits do
    not stop root; this does). Returns `given`."""
    import tempfile

    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise CLIError(f"{option} {given!r}: cannot create {what} ({_why(folder, e)}); give "
                       "a writable place") from None
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise CLIError(f"{option} {given!r}: cannot write a file in {folder!r} "
                       f"({e.strerror or e}); give a writable place") from None
    return given


def _why(path, err):
    """The reason `os.makedirs(path)` failed, naming a parent that is a file."""
    parent = os.path.abspath(path)
    while parent and not os.path.exists(parent):
        up = os.path.dirname(parent)
        if up == parent:
            break
        parent = up
    if os.path.exists(parent) and not os.path.isdir(parent):
        return f"{parent!r} is a file, not a folder"
    return err.strerror or str(err)


def closest(name, candidates):
    """The closest candidate to `name` (difflib), or None."""
    found = difflib.get_close_matches(str(name), list(candidates), n=1, cutoff=0.6)
    return found[0] if found else None


def did_you_mean(name, candidates):
    """`"; did you mean 'x'?"` for the closest candidate, or `""`."""
    c = closest(name, candidates)
    return f"; did you mean {c!r}?" if c else ""


def versions():
    """Versions of Python and of the libraries a run depends on (those already importable)."""
    out = {"python": platform.python_version(), "platform": platform.platform()}
    keras = importlib.import_module("keras")
    backend = keras.backend.backend()
    out["backend"] = backend
    # The active backend's library only: importing another (TensorFlow under JAX) costs seconds.
    for mod in ("keras_afl", backend, "keras", "numpy", "sklearn", "matplotlib", "yaml"):
        m = sys.modules.get(mod)
        if m is None:
            try:
                m = importlib.import_module(mod)
            except ImportError:
                continue
        out[mod] = getattr(m, "__version__", "?")
    return out


def quiet_tensorflow():
    """Silences TensorFlow's C++ start-up chatter unless the user chose a log level."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
