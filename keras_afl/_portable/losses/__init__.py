"""keras_afl's losses on Keras's JAX and PyTorch backends: the public names of
`keras_afl.losses` (on those backends `keras_afl.losses` re-exports these), with the same
signatures, defaults, argument checks, error messages, formulas, stable forms and derivatives as
the TensorFlow functions and classes (`keras_afl.losses`, whose docstrings document them).

Each loss body is written once over the active backend's operations (`keras_afl._backend.ops`)
and gets its analytic derivative through `keras_afl._backend.custom_derivative`
(`jax.custom_vjp`, a `torch.autograd.Function`); the backward passes are written with
differentiable operations, so second derivatives (Hessian-vector products, gradient penalties)
are exact. float16/bfloat16 inputs are computed in float32 and the per-sample loss cast back to
y_pred's dtype.

Where the backends differ from TensorFlow:

- Logits shortcut. On PyTorch a sigmoid/softmax output carries its logits (`_keras_logits`,
  set by Keras's sigmoid/softmax; keras_afl's portable ones also record the activation and
  axis), and the cross-entropies use them when the activation is the loss's own: a sigmoid for
  the binary losses, a softmax over the loss's axis for the categorical ones (Keras's outputs
  are checked by recomputing the activation, as TensorFlow does eagerly). On JAX there is no
  shortcut: the tracers of `jax.jit` and `jax.grad` take no attributes, so it could apply only
  outside any transformation, and an eager evaluation's loss would differ from the loss being
  trained. The probabilities are used as given, clipped to [eps, 1 - eps] as Keras clips them
  (a confidently wrong sigmoid output then has a bounded loss and gradient; feed logits with
  `from_logits=True` for the stable path).
- Labels. Eagerly (PyTorch, JAX outside `jax.jit`), bad labels raise an `InvalidLabelsError`, a
  `ValueError` with TensorFlow's message. Traced (`jax.jit`, `torch.compile`), where nothing can
  raise, the samples with a bad label get a NaN loss and NaN gradients, as under XLA on
  TensorFlow. `set_trace_options(label_checks=False)` switches the checks off.
- `trace_options()` has TensorFlow's keys; `compiled_kernels` has no effect here (TensorFlow's
  two XLA-compiled loss kernels have no counterpart; under `jax.jit` XLA compiles the step).
- `ignore_class`: the ignored samples' loss is 0 and carries a Keras mask, which
  `keras.losses.Loss` uses to average over the counted samples (Keras keeps the masks of JAX
  arrays in a table of its own). The binary losses' `ignore_class` (a label outside [0, 1])
  leaves out entries; a row with every entry ignored is masked.
- `normalize` ("positives", "positives_per_image"; with `background_class` on the softmax
  losses): the summed loss over the number of positives of the batch. TensorFlow sums that
  count over the replicas of `tf.distribute`; on JAX under `keras.distribution` a training step
  is one program over the global (sharded) batch, so the count is the global one without any
  all-reduce. PyTorch has no Keras distribution: a process's own batch.
"""

from keras_afl._portable.losses._checks import InvalidLabelsError
from keras_afl._portable.losses._core import set_trace_options, trace_options
from keras_afl._portable.losses.binary import (
    BinaryCrossentropy, FocalLoss, Hinge, binary_crossentropy, focal, hinge,
)
from keras_afl._portable.losses.categorical import (
    CategoricalCrossentropy, CategoricalFocalLoss, categorical_crossentropy, categorical_focal,
)
from keras_afl._portable.losses.regression import Huber, MeanSquaredError, huber, mean_squared_error
from keras_afl._portable.losses.sparse import (
    SparseCategoricalCrossentropy, SparseCategoricalFocalLoss, sparse_categorical_crossentropy,
    sparse_categorical_focal,
)

__all__ = [
    "mean_squared_error", "binary_crossentropy", "categorical_crossentropy",
    "sparse_categorical_crossentropy", "focal", "categorical_focal",
    "sparse_categorical_focal", "huber", "hinge",
    "MeanSquaredError", "BinaryCrossentropy", "CategoricalCrossentropy",
    "SparseCategoricalCrossentropy", "FocalLoss", "CategoricalFocalLoss",
    "SparseCategoricalFocalLoss", "Huber", "Hinge",
    "trace_options", "set_trace_options", "InvalidLabelsError",
]
