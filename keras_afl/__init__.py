"""keras_afl: activation and loss functions for TensorFlow/Keras 3 with analytic derivatives.

Importing the package registers every layer, loss and function as a Keras
serializable object and adds their string names ("afl_relu", "focal", ...) to
Keras's lookup tables, so that `Dense(8, activation="afl_relu")` and
`model.compile(loss="focal")` work and saved models reload.
"""

import os as _os


def _require_tensorflow_backend():
    def wrong_backend(backend, cause=""):
        return ImportError(
            f"keras_afl needs Keras's TensorFlow backend, but Keras is set to {backend!r} "
            f"(KERAS_BACKEND={_os.environ.get('KERAS_BACKEND', '<unset>')!r}, or the 'backend' "
            f"key of ~/.keras/keras.json){cause}. keras_afl's gradients are written with "
            "tf.custom_gradient. Fix: set KERAS_BACKEND=tensorflow before Python starts "
            "(or before the first `import keras`)."
        )

    requested = _os.environ.get("KERAS_BACKEND")
    try:
        import keras
    except ImportError as e:
        if requested and requested != "tensorflow":
            raise wrong_backend(requested, f", and importing Keras failed: {e}") from e
        raise ImportError(f"keras_afl needs Keras 3 (pip install 'keras>=3'); import failed: {e}") from e
    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise wrong_backend(backend)
    try:
        import tensorflow  # noqa: F401
    except ImportError as e:
        raise ImportError(
            "keras_afl needs TensorFlow >= 2.16, which is not installed. Install one flavour: "
            "pip install 'keras-afl[cpu]' (tensorflow-cpu), 'keras-afl[tf]' (tensorflow) or "
            "'keras-afl[gpu]' (tensorflow[and-cuda])."
        ) from e


_require_tensorflow_backend()

from keras_afl import activations, layers, losses, registry  # noqa: E402
from keras_afl.registry import entries, entry, get, names, use_as_builtins  # noqa: E402
from keras_afl import callbacks, diagnostics  # noqa: E402
from keras_afl.diagnostics import lint  # noqa: E402

def _version():
    # One place for the version: pyproject.toml, read back from the installed metadata.
    from importlib import metadata

    try:
        return metadata.version("keras-afl")
    except metadata.PackageNotFoundError:  # a source tree on sys.path, not installed
        return "0+unknown"


__version__ = _version()

registry.install()

__all__ = [
    "activations", "layers", "losses", "registry", "callbacks", "diagnostics", "lint",
    "get", "entry", "entries", "names", "use_as_builtins", "__version__",
]
