"""keras_afl: activation and loss functions for Keras 3 with analytic derivatives.

On every Keras backend keras_afl serves: TensorFlow (`tf.custom_gradient`, fused kernels), JAX
(`jax.custom_vjp`) and PyTorch (`torch.autograd.Function`).

Importing the package registers every layer, loss and function as a Keras
serializable object and adds their string names ("afl_relu", "focal", ...) to
Keras's lookup tables, so that `Dense(8, activation="afl_relu")` and
`model.compile(loss="focal")` work and saved models reload.
"""

import os as _os


# Keras's backends that keras_afl serves -> (the backend's name in words, the keras_afl extra
# that installs it).
_BACKEND_INSTALLS = {"tensorflow": ("TensorFlow", "cpu"), "jax": ("JAX", "jax"),
                     "torch": ("PyTorch", "torch")}


def _require_supported_backend():
    """Keras 3 on a backend keras_afl serves (TensorFlow, JAX, PyTorch), with that backend installed."""
    requested = _os.environ.get("KERAS_BACKEND")
    from keras_afl._backend import SUPPORTED_BACKENDS, unsupported_backend_error

    try:
        import keras
    except ImportError as e:
        if requested and requested not in SUPPORTED_BACKENDS:
            raise unsupported_backend_error(requested) from e
        chosen, source = _keras_backend_choice(requested)
        if _find_module("keras") and chosen in SUPPORTED_BACKENDS and not _find_module(chosen):
            raise _backend_not_installed(chosen, source) from e
        raise ImportError(
            f"keras_afl needs Keras 3 (pip install 'keras>=3') with one of its backends "
            f"(KERAS_BACKEND={requested or '<unset>'!r}); import failed: {e}") from e

    backend = keras.backend.backend()
    if backend not in SUPPORTED_BACKENDS:
        raise unsupported_backend_error(backend)
    if not _find_module(backend):
        raise _backend_not_installed(backend, _keras_backend_choice(requested)[1])


def _find_module(name):
    """Whether `name` can be imported (without importing it)."""
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a broken or half-imported package
        return False


def _keras_backend_choice(requested):
    """(the backend Keras picks, where that choice comes from, in words), read as Keras reads it
    (keras/src/backend/config.py): KERAS_BACKEND, else the "backend" of keras.json in KERAS_HOME
    (default ~/.keras), else TensorFlow, Keras's default."""
    if requested:
        return requested, f"KERAS_BACKEND={requested}"
    if "KERAS_HOME" in _os.environ:
        folder = _os.environ["KERAS_HOME"]
    else:
        home = _os.path.expanduser("~")
        folder = _os.path.join(home if _os.access(home, _os.W_OK) else "/tmp", ".keras")
    path = _os.path.join(folder, "keras.json")
    try:
        import json

        with open(path, encoding="utf-8") as f:
            configured = json.load(f).get("backend")
    except (OSError, ValueError, AttributeError):
        configured = None
    if configured and configured != "tensorflow":
        return configured, f"set in {path}"
    return "tensorflow", "Keras's default, KERAS_BACKEND being unset"


def _backend_not_installed(backend, source):
    """The ImportError for Keras set to a backend whose library is not installed: which one,
    why Keras chose it, the installed backends and how to switch to one, or to install it."""
    words, extra = _BACKEND_INSTALLS[backend]
    installed = [b for b in _BACKEND_INSTALLS if b != backend and _find_module(b)]
    if installed:
        first, names = installed[0], ", ".join(_BACKEND_INSTALLS[b][0] for b in installed)
        switch = (f"run on an installed backend ({names}): "
                  f"set KERAS_BACKEND={first} before Python imports Keras -- "
                  f"`KERAS_BACKEND={first} python script.py`, `export KERAS_BACKEND={first}`, or "
                  f"os.environ[\"KERAS_BACKEND\"] = \"{first}\" before the first `import keras`"
                  + "".join(f" (or KERAS_BACKEND={b})" for b in installed[1:])
                  + f"; or install {words}: pip install 'keras-afl[{extra}]'")
    else:
        switch = (f"install {words} (pip install 'keras-afl[{extra}]'), or another backend with "
                  "KERAS_BACKEND set to it: 'keras-afl[jax]', 'keras-afl[torch]'")
    if backend == "tensorflow":
        switch += " ('keras-afl[tf]' or 'keras-afl[gpu]' for the other TensorFlow flavours)"
    return ImportError(f"keras_afl cannot start: Keras's backend is {words} ({source}), and "
                       f"{words} is not installed. Fix: {switch}.")


_require_supported_backend()

from keras_afl import activations, layers, losses, registry  # noqa: E402
from keras_afl.registry import entries, entry, get, names, use_as_builtins  # noqa: E402
from keras_afl import _guard, callbacks, diagnostics  # noqa: E402
from keras_afl.diagnostics import lint  # noqa: E402
from keras_afl import saving  # noqa: E402
from keras_afl.saving import load_model  # noqa: E402

def _version():
    # One place for the version: pyproject.toml, read back from the installed metadata.
    from importlib import metadata

    try:
        return metadata.version("keras-afl")
    except metadata.PackageNotFoundError:  # a source tree on sys.path, not installed
        return "0+unknown"


__version__ = _version()

registry.install()
_guard.install()  # bad labels never change a model in a Keras step (keras_afl._guard)

__all__ = [
    "activations", "layers", "losses", "registry", "callbacks", "diagnostics", "lint",
    "get", "entry", "entries", "names", "use_as_builtins", "load_model", "saving", "__version__",
]
