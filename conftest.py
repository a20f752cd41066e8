"""pytest at the repository root: the doctest collection of `keras_afl/` skips the adapter of a
Keras backend that is not installed (`keras_afl/_backend/_jax.py` imports jax, the package
`keras_afl/_backend/_torch/` torch)."""

import importlib.util

_ADAPTERS = {"jax": "keras_afl/_backend/_jax.py", "torch": "keras_afl/_backend/_torch"}
collect_ignore = [path for name, path in _ADAPTERS.items() if importlib.util.find_spec(name) is None]
