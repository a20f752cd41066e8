"""Helpers shared by several modules: input conversion, parameter checks, axes.

Only what is used in more than one place lives here.
"""

from __future__ import annotations

import math
import numbers

FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")


def as_float(x, name="x"):
    """`x` as a floating-point tensor of the active backend, or a TypeError saying how to fix it.

    Python lists and scalars become float32; arrays and tensors keep their float dtype (NumPy
    float64 stays float64); integer, boolean and string tensors are refused rather than cast,
    because their gradient would be undefined.
    """
    import keras

    from keras_afl._backend import ops

    if ops().is_float_tensor(x):  # already what the conversion would return (no Python cost)
        return x
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
            f"{type(x).__name__} ({e}). Pass a float tensor or array, e.g. "
            f"keras.ops.convert_to_tensor(..., dtype='float32')."
        ) from None
    return t


def check_number(value, name, *, low=None, high=None, low_inclusive=True,
                 high_inclusive=True, allow_none=False):
    """Validates a scalar hyper-parameter; returns it as a Python float.

    Raises TypeError for non-numbers and ValueError for out-of-range or
    non-finite values; each message names the argument, the value received and
    the valid range.
    """
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        # NumPy scalars are numbers.Real; 0-d arrays are not, accept them too.
        try:
            import numpy as np

            if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "fiu":
                value = value.item()
            else:
                raise TypeError
        except TypeError:
            raise TypeError(
                f"`{name}` must be a real number{' or None' if allow_none else ''}; "
                f"received {value!r} of type {type(value).__name__}."
            ) from None
    value = float(value)
    lo = "[" if low_inclusive else "("
    hi = "]" if high_inclusive else ")"
    rng = f"{lo}{'-inf' if low is None else low}, {'inf' if high is None else high}{hi}"
    bad = not math.isfinite(value)
    if low is not None:
        bad |= value < low if low_inclusive else value <= low
    if high is not None:
        bad |= value > high if high_inclusive else value >= high
    if bad:
        raise ValueError(f"`{name}` must be a finite number in {rng}; received {value!r}.")
    return value


def normalize_axis(axis, ndim, name="axis"):
    """Returns a non-negative axis (or tuple of axes) for a tensor of rank `ndim`.

    With unknown rank, negative axes are returned unchanged.
    """
    many = isinstance(axis, (tuple, list))
    axes = tuple(axis) if many else (axis,)
    out = []
    for a in axes:
        if isinstance(a, bool) or not isinstance(a, numbers.Integral):
            raise TypeError(f"`{name}` must be an int or a tuple of ints; received {axis!r}.")
        a = int(a)
        if ndim == 0:
            raise ValueError(
                f"`{name}`={axis!r} needs an input of rank >= 1; received a scalar (rank 0). "
                "Pass a vector or a batch, e.g. x[None]."
            )
        if ndim is not None:
            if not -ndim <= a < ndim:
                raise ValueError(
                    f"`{name}`={axis!r} is out of range for an input of rank {ndim}; "
                    f"expected a value in [{-ndim}, {ndim - 1}]."
                )
            a %= ndim
        out.append(a)
    return tuple(out) if many else out[0]
