"""Input conversion and checks shared by the portable functions."""

from __future__ import annotations

import keras

FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")


def as_float(x, name="x"):
    """`x` as a floating-point tensor of the active backend, or a TypeError saying how to fix it.

    Python lists and scalars become float32; integer and boolean tensors are refused (their
    gradient would be undefined).
    """
    given = getattr(x, "dtype", None)
    if given is not None:
        try:
            given = keras.backend.standardize_dtype(given)
        except (TypeError, ValueError):
            given = None
    if given is not None and given not in FLOAT_DTYPES:
        raise TypeError(
            f"`{name}` must have a floating-point dtype (one of {', '.join(FLOAT_DTYPES)}); "
            f"received dtype {given}. Cast it first, e.g. keras.ops.cast({name}, 'float32')."
        )
    try:
        t = keras.ops.convert_to_tensor(x, dtype=given or "float32")
    except (TypeError, ValueError) as e:
        raise TypeError(
            f"`{name}` must be convertible to a floating-point tensor; received "
            f"{type(x).__name__} ({e}). Pass a float tensor or array."
        ) from None
    return t
