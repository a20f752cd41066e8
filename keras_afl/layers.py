"""Keras activation layers backed by `keras_afl.activations`.

Each layer is a thin `keras.layers.Layer` that delegates to the function of the
same name (so the analytic derivative lives in exactly one place), stores every
constructor argument in `get_config()`, and is registered under the package
name `keras_afl` so that `.keras` files that use it reload after
`import keras_afl`. Under a mixed-precision policy the layers compute in the
compute dtype (float16/bfloat16) and keep PReLU's `alpha` in float32.
"""

from __future__ import annotations

import keras

from keras_afl import activations
from keras_afl._grad_utils import check_number, normalize_axis
from keras_afl._logits import attach_logits
from keras_afl.activations import softmax_axis

__all__ = ["ReLU", "LeakyReLU", "PReLU", "Sigmoid", "Tanh", "Softmax", "ELU", "SELU"]

_register = keras.saving.register_keras_serializable(package="keras_afl")


def _build_at_init(layer):
    """Marks a stateless layer built at construction, as Keras's own activation layers do.

    Only when the class keeps `Layer.build`: a subclass that overrides `build()`
    (to add a weight, say) stays unbuilt until its first call, when Keras calls
    that `build()`, exactly as for a subclass of `keras.layers.ELU`.
    """
    if type(layer).build is keras.layers.Layer.build:
        layer.built = True


class _Elementwise(keras.layers.Layer):
    """Base for stateless element-wise activation layers."""

    _fn = None  # the function in keras_afl.activations

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True
        _build_at_init(self)

    def _kwargs(self):
        return {}

    def call(self, inputs):
        return type(self)._fn(inputs, **self._kwargs())

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), **self._kwargs()}


@_register
class ReLU(_Elementwise):
    """ReLU layer: `max(x, 0)`, derivative 1{x > 0}. See `keras_afl.activations.relu`.

    Example:
    >>> import numpy as np, keras_afl
    >>> keras_afl.layers.ReLU()(np.array([-1.0, 2.0])).numpy().tolist()
    [0.0, 2.0]
    """

    _fn = staticmethod(activations.relu)


@_register
class LeakyReLU(_Elementwise):
    """Leaky ReLU layer: `x if x > 0 else negative_slope * x`. See `keras_afl.activations.leaky_relu`.

    Args:
        negative_slope: Slope for x <= 0 (default 0.01), a finite number >= 0.
            A negative slope raises a ValueError, as in `keras.layers.LeakyReLU`
            (the function `keras_afl.activations.leaky_relu` accepts one, as
            `keras.activations.leaky_relu` does).

    Example:
    >>> import numpy as np, keras_afl
    >>> keras_afl.layers.LeakyReLU(negative_slope=0.5)(np.array([-2.0, 2.0])).numpy().tolist()
    [-1.0, 2.0]
    """

    _fn = staticmethod(activations.leaky_relu)

    def __init__(self, negative_slope=0.01, **kwargs):
        super().__init__(**kwargs)
        slope = check_number(negative_slope, "negative_slope")
        if slope < 0:
            raise ValueError(
                f"LeakyReLU: `negative_slope` must be >= 0, as in keras.layers.LeakyReLU; received "
                f"{negative_slope!r}. Fix: use a small positive slope such as 0.01, or call "
                "keras_afl.activations.leaky_relu (it accepts a negative slope, as "
                "keras.activations.leaky_relu does)."
            )
        self.negative_slope = slope

    def _kwargs(self):
        return {"negative_slope": self.negative_slope}


@_register
class Sigmoid(_Elementwise):
    """Sigmoid layer, `1 / (1 + exp(-x))`. See `keras_afl.activations.sigmoid`.

    Its output carries the logits (`_keras_logits`), so a following
    cross-entropy (Keras's or ours) takes the stable logits path.

    Example:
    >>> import numpy as np, keras_afl
    >>> keras_afl.layers.Sigmoid()(np.array([0.0])).numpy().tolist()
    [0.5]
    """

    _fn = staticmethod(activations.sigmoid)


@_register
class Tanh(_Elementwise):
    """Tanh layer. See `keras_afl.activations.tanh`.

    Example:
    >>> import numpy as np, keras_afl
    >>> keras_afl.layers.Tanh()(np.array([0.0])).numpy().tolist()
    [0.0]
    """

    _fn = staticmethod(activations.tanh)


@_register
class ELU(_Elementwise):
    """ELU layer: `x if x > 0 else alpha * (exp(x) - 1)`. See `keras_afl.activations.elu`.

    Args:
        alpha: Saturation value for negative inputs (default 1.0), >= 0.

    Example:
    >>> import numpy as np, keras_afl
    >>> keras_afl.layers.ELU(alpha=2.0)(np.array([-100.0, 3.0])).numpy().tolist()
    [-2.0, 3.0]
    """

    _fn = staticmethod(activations.elu)

    def __init__(self, alpha=1.0, **kwargs):
        super().__init__(**kwargs)
        self.alpha = check_number(alpha, "alpha", low=0.0)

    def _kwargs(self):
        return {"alpha": self.alpha}


@_register
class SELU(_Elementwise):
    """SELU layer (self-normalising). See `keras_afl.activations.selu`.

    Use with `kernel_initializer="lecun_normal"` and AlphaDropout, without
    batch normalisation.

    Example:
    >>> import numpy as np, keras_afl
    >>> keras_afl.layers.SELU()(np.array([0.0])).numpy().tolist()
    [0.0]
    """

    _fn = staticmethod(activations.selu)


def _large_negative(dtype):
    # As keras.layers.Softmax: far below any logit, yet finite in the dtype.
    return -3e4 if keras.backend.standardize_dtype(dtype) == "float16" else -1e9


def _fits(mask_dims, input_dims):
    return all(m is None or i is None or m in (1, i) for m, i in zip(mask_dims, input_dims))


def _dims(shape):
    """A shape as a tuple of sizes (None where unknown), or None for an unknown rank."""
    try:
        return tuple(shape)
    except (TypeError, ValueError):  # TensorFlow's TensorShape of unknown rank
        return None


def _rank(shape):
    dims = _dims(shape)
    return None if dims is None else len(dims)


def _fit_mask(mask, input_shape):
    """The mask, with a trailing axis added if it is a timestep mask; ValueError if it cannot apply."""
    m, x = _dims(mask.shape), _dims(input_shape)
    if m is None or x is None:
        return mask
    shapes = f"Received: inputs.shape={x}, mask.shape={m}."
    if len(m) > len(x):
        raise ValueError(
            f"Softmax: the `mask` has more axes than the `inputs`. {shapes} Expected a mask "
            "broadcastable to the inputs (as for keras.layers.Softmax) or the inputs' (batch, "
            "timesteps) mask. Fix: drop the extra axes of the mask."
        )
    keras_reading = _fits(m[::-1], x[::-1])
    timestep = len(m) == len(x) - 1 and _fits(m, x[:-1])
    if timestep and (not keras_reading or m[0] is None):
        return mask[..., None]
    if keras_reading:
        return mask
    raise ValueError(
        f"Softmax: the `mask` cannot apply to the `inputs`. {shapes} Expected each mask axis, "
        "aligned from the right, to be 1 or the input's size (as for keras.layers.Softmax), or a "
        "mask of the inputs' shape without its last axis (a timestep mask). Fix: give the mask "
        "the inputs' shape, or a shape that broadcasts to it."
    )


@_register
class Softmax(keras.layers.Layer):
    """Softmax layer with optional mask. See `keras_afl.activations.softmax`.

    With a mask (boolean, or numbers where > 0.5 means "keep"), masked
    positions get probability exactly 0 and the rest sum to 1, as in
    `keras.layers.Softmax`. The output carries its (masked) logits.

    Masks are read as `keras.layers.Softmax` reads them: broadcast against
    the inputs from the right (each mask axis 1 or the input's size, never
    more axes than the inputs). One addition, where Keras raises: a mask of
    one axis fewer that matches the inputs' leading axes -- the (batch,
    timesteps) mask that `Masking`, `Embedding(mask_zero=True)` and recurrent
    layers propagate -- is broadcast over the last axis, so a masked timestep
    outputs all zeros and the others are plain softmaxes. (Where a mask fits
    both readings, Keras's wins, except that a mask whose first size is
    unknown, like the batch size in a traced model, is read as a timestep
    mask; pass `mask[..., None]` to be explicit.) Any other mask raises a
    ValueError naming both shapes.

    Args:
        axis: Int, or tuple or list of distinct ints, along which the output
            sums to 1 (as `keras.layers.Softmax`, on every backend).

    Example:
    >>> import numpy as np, keras_afl
    >>> layer = keras_afl.layers.Softmax()
    >>> layer(np.array([[1.0, 1.0, 5.0]]), mask=np.array([[True, True, False]])).numpy().tolist()
    [[0.5, 0.5, 0.0]]
    """

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        softmax_axis(axis, None)  # types and repeats; the range is checked against the input
        self.axis = tuple(axis) if isinstance(axis, (list, tuple)) else axis
        self.supports_masking = True
        _build_at_init(self)

    def call(self, inputs, mask=None):
        ops = keras.ops
        inputs = ops.convert_to_tensor(inputs)
        axis = softmax_axis(self.axis, _rank(inputs.shape))
        if mask is None:
            return activations.softmax(inputs, axis=axis)
        mask = _fit_mask(ops.convert_to_tensor(mask), inputs.shape)
        if keras.backend.standardize_dtype(mask.dtype) != "bool":
            mask = mask > 0.5
        dtype = keras.backend.standardize_dtype(inputs.dtype)
        logits = ops.where(mask, inputs, ops.cast(_large_negative(dtype), dtype))
        y = activations.softmax(logits, axis=axis) * ops.cast(mask, dtype)
        if isinstance(axis, tuple):  # as the function: no logits over several axes
            return y
        return attach_logits(y, logits, "softmax", axis)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        axis = list(self.axis) if isinstance(self.axis, tuple) else self.axis
        return {**super().get_config(), "axis": axis}


@_register
class PReLU(keras.layers.Layer):
    """Parametric ReLU layer: a leaky ReLU whose slope `alpha` is learned.

    `alpha` starts at 0.25, as in He et al. 2015 (Keras's `PReLU` starts at 0,
    i.e. as a plain ReLU). It is kept in float32 under mixed precision and its
    gradient is the analytic one of `keras_afl.activations.prelu`.

    Args:
        alpha_initializer: Initializer for alpha (default `Constant(0.25)`).
        alpha_regularizer: Optional regularizer for alpha.
        alpha_constraint: Optional constraint for alpha.
        shared_axes: Axes (1-based, the batch axis is 0) along which one alpha
            is shared, e.g. `[1, 2]` for one slope per channel of an image.

    Example:
    >>> import numpy as np, keras_afl
    >>> keras_afl.layers.PReLU()(np.array([[-4.0, 4.0]])).numpy().tolist()
    [[-1.0, 4.0]]

    Reference:
        He et al., "Delving Deep into Rectifiers", ICCV 2015.
    """

    def __init__(self, alpha_initializer=None, alpha_regularizer=None, alpha_constraint=None,
                 shared_axes=None, **kwargs):
        super().__init__(**kwargs)
        if alpha_initializer is None:
            alpha_initializer = keras.initializers.Constant(0.25)
        self.alpha_initializer = keras.initializers.get(alpha_initializer)
        self.alpha_regularizer = keras.regularizers.get(alpha_regularizer)
        self.alpha_constraint = keras.constraints.get(alpha_constraint)
        if shared_axes is None:
            self.shared_axes = None
        else:
            axes = shared_axes if isinstance(shared_axes, (list, tuple)) else [shared_axes]
            normalize_axis(tuple(axes), None, name="shared_axes")
            self.shared_axes = list(int(a) for a in axes)
        self.supports_masking = True

    def build(self, input_shape):
        rank = len(input_shape)
        param_shape = list(input_shape[1:])
        if self.shared_axes is not None:
            for a in self.shared_axes:
                if not 1 <= a < rank:
                    raise ValueError(
                        f"`shared_axes`={self.shared_axes} is out of range for inputs of rank "
                        f"{rank} (shape {tuple(input_shape)}); expected axes in [1, {rank - 1}] "
                        "(axis 0 is the batch axis)."
                    )
                param_shape[a - 1] = 1
        for i, d in enumerate(param_shape):
            if d is None:
                raise ValueError(
                    f"PReLU needs a known size on input axis {i + 1} (shape {tuple(input_shape)}); "
                    f"add {i + 1} to `shared_axes` to share alpha along it."
                )
        self.alpha = self.add_weight(
            shape=param_shape,
            name="alpha",
            initializer=self.alpha_initializer,
            regularizer=self.alpha_regularizer,
            constraint=self.alpha_constraint,
        )
        self.built = True

    def call(self, inputs):
        return activations.prelu(inputs, keras.ops.convert_to_tensor(self.alpha))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "alpha_initializer": keras.initializers.serialize(self.alpha_initializer),
            "alpha_regularizer": keras.regularizers.serialize(self.alpha_regularizer),
            "alpha_constraint": keras.constraints.serialize(self.alpha_constraint),
            "shared_axes": self.shared_axes,
        }
