"""pytest at the repository root: the doctest collection of `keras_afl/` skips the adapter of a
Keras backend that is not installed (`keras_afl/_backend/_jax.py` imports jax, `_torch/` torch)."""

import importlib.util

collect_ignore = [f"keras_afl/_backend/_{name}.py" for name in ("jax", "torch")
                  if importlib.util.find_spec(name) is None]
