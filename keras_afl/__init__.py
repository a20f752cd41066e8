"""keras_afl: activation and loss functions for Keras 3 with analytic derivatives.

On every Keras backend keras_afl serves: TensorFlow (`tf.custom_gradient`, fused kernels), JAX
(`jax.custom_vjp`) and PyTorch (`torch.autograd.Function`).

Importing the package registers every layer, loss and function as a Keras
serializable object and adds their string names ("afl_relu", "focal", ...) to
Keras's lookup tables, so that `Dense(8, activation="afl_relu")` and
`model.compile(loss="focal")` work and saved models reload.
"""

import os as _os


def _require_supported_backend():
    """Keras 3 on a backend keras_afl serves (TensorFlow, JAX, PyTorch), with that backend installed."""
    requested = _os.environ.get("KERAS_BACKEND")
    from keras_afl._backend import SUPPORTED_BACKENDS, unsupported_backend_error

    try:
        import keras
    except ImportError as e:
        if requested and requested not in SUPPORTED_BACKENDS:
            raise unsupported_backend_error(requested) from e
        raise ImportError(
            f"keras_afl needs Keras 3 (pip install 'keras>=3') with one of its backends "
            f"(KERAS_BACKEND={requested or '<unset>'!r}); import failed: {e}") from e

    backend = keras.backend.backend()
    if backend not in SUPPORTED_BACKENDS:
        raise unsupported_backend_error(backend)
    if backend == "tensorflow":
        try:
            import tensorflow  # noqa: F401
        except ImportError as e:
            raise ImportError(
                "keras_afl on Keras's TensorFlow backend needs TensorFlow >= 2.16, which is not "
                "installed. Install one flavour: pip install 'keras-afl[cpu]' (tensorflow-cpu), "
                "'keras-afl[tf]' (tensorflow) or 'keras-afl[gpu]' (tensorflow[and-cuda]); or use "
                "another backend: KERAS_BACKEND=jax with 'keras-afl[jax]', KERAS_BACKEND=torch with "
                "'keras-afl[torch]'."
            ) from e


_require_supported_backend()

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
