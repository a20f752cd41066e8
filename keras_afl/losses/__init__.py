"""Loss functions with analytic derivatives, on every Keras backend.

Each loss comes twice: a function that returns one value per sample (it
reduces the class/feature axis, like Keras's functional losses) and a thin
`keras.losses.Loss` subclass that stores the settings. Both are written once,
in one family module (`regression`, `binary`, `categorical`, `sparse`), over
the active backend's operations: the function validates its settings, then
hands a loss body -- the forward pass and its derivative with respect to
`y_pred` (to the logits on the logits path) side by side -- to the backend's
runner (`keras_afl._backend.run_loss`: `tf.custom_gradient`, `jax.custom_vjp`
or a `torch.autograd.Function`). The per-sample mean (or sum) over the last
axis happens inside the body, so the backward pass is one expression,
`upstream[..., None] * dL/dz`. Every backward pass is written with
differentiable operations, so second derivatives work too.

Reduction, sample weights, masks, distribution. The `Loss` classes leave
these to `keras.losses.Loss`, exactly as Keras's own losses do. `reduction`
is one of `"sum_over_batch_size"` (default; sum of the weighted per-sample
losses divided by their number), `"mean"` (the same), `"sum"`,
`"mean_with_sample_weight"` (divided by the sum of the sample weights), or
`"none"` / `None` (no reduction: one value per sample). `sample_weight` may be
a scalar, one weight per sample, or one per time step for sequence outputs.
A Keras mask on `y_pred` (`_keras_mask`, set by masking layers) zeroes the
masked entries and averages over the unmasked ones. Under `tf.distribute`,
the reduced loss is divided by the number of replicas. The loss is computed
in the Loss's `dtype` (`keras.config.floatx()` by default, float32 also under
a `mixed_float16` / `mixed_bfloat16` policy). Given float16/bfloat16
predictions and a float32 loss, the classes skip Keras's casts of `y_pred`
and `y_true` to float32 (a pass over memory each, and one more for the
gradient): the functions compute half precision in float32 anyway, and the
values and gradients are the same.

Logits and probabilities. Cross-entropies take probabilities by default
(`from_logits=False`) and logits with `from_logits=True`. When `y_pred` is the
output of the activation the loss inverts -- a sigmoid for the binary losses
(binary cross-entropy, focal), a softmax over the loss's own `axis` for the
categorical ones (dense and sparse) -- the loss uses its logits instead,
stably, and the gradient reaches the logits directly (the fused
sigma(z) - y or softmax(z) - y). The activation is known from keras_afl's
sigmoid/softmax (which record it with the logits), in graph mode and under
XLA from the op that made `y_pred` (Keras's sigmoid/softmax, `tf.nn`'s), and
for an eager output of Keras's (which carries only `_keras_logits`) by
checking that the activation of the logits reproduces `y_pred`. On JAX there
is no shortcut (`jax.jit`'s tracers take no attributes; `keras_afl._logits`):
probabilities are used as given, clipped as Keras clips them. Any other
pairing -- a sigmoid output in a categorical loss, a softmax output in a
binary one, a softmax over another axis, an output changed after the
activation -- is the loss of the probabilities as given, in every mode.
Keras's own losses differ here: they use `_keras_logits` whatever the
activation. The `Loss` classes carry the logits across their cast of
`y_pred` to the loss dtype, so the shortcut survives mixed precision.

Probabilities are clipped to [eps, 1 - eps] like Keras, eps =
`keras.config.epsilon()` (1e-7), and the complement is 1 minus the clipped
probability, as Keras computes it: the same values as Keras's losses. (1 - eps
rounds in float32, so at p = 1 the complement is 1.19e-7, not eps.) float16
and bfloat16 inputs are computed in float32, so they stay finite where Keras's
float16 loss is inf. Gradient convention at the clip: the
gradient is the derivative of the loss evaluated at the clipped probability
(a straight-through clip). Inside (eps, 1 - eps) that is the exact gradient;
outside it is the gradient at the boundary, finite (at most about 1/eps in
size) and never zero for a wrong prediction, where Keras's gradient is 0.

Categorical probabilities are first divided by their sum along the class axis
(as Keras does; a row summing to less than eps is divided by eps).

Labels (`y_true`) are constants: no gradient flows to them. float16 and
bfloat16 inputs are computed in float32 and the result cast back. Losses stay
finite in float16, but a gradient larger than float16's range (65504) -- such
as 1/p for a probability p < 1.5e-5 of the true class -- becomes inf when cast
back, as any float16 gradient of that size would; feed logits, or keep the
final activation in float32 under mixed precision.

Labels that make no sense raise instead of giving a number: BCE and the
binary focal loss take labels in [0, 1]; `hinge` labels in [0, 1] with
`label_format="binary"` and in [-1, 1] with `"signed"` and `"auto"`;
the sparse losses integer class ids in [0, num_classes) or `ignore_class` (a
float id must be an integer: 1.7 is refused, not truncated to 1). The error
is `InvalidLabelsError` (exported here), a `ValueError` -- on TensorFlow also
a `tf.errors.InvalidArgumentError`, which graph mode raises from an
assertion -- naming the loss, `y_true`, the first bad value and the fix.
Inside Keras's `fit`/`evaluate`, on every backend and compile setting, a
batch with a bad label raises it and changes no variable of the model or its
optimizer (`keras_afl._guard`: where the step is compiled and cannot raise,
under XLA and `jax.jit`, the step keeps the old values and keras_afl raises
once it returns). Outside a Keras step, in a function compiled by XLA
(`jit_compile=True`, `jax.jit`, `torch.compile`) that cannot raise, the
samples with a bad label get a NaN loss and NaN gradients and the other
samples are unaffected.
Boolean labels are never checked (always 0 or 1); categorical labels are not
checked. The checks add no pass over memory (see `_checks`): they cost
about 0-6 % of a loss's time at 2^20 elements (`keras-afl bench --suites
checks`; benchmarks/analysis.md).

Detection and dense prediction. `FocalLoss` and `BinaryCrossentropy` (and their functions)
take `ignore_class`, a label outside [0, 1] (-1 for anchors in an IoU ignore band, 255 for void
pixels) whose entries add nothing to the loss or the gradient; a sample with every entry
ignored is left out of Keras's average (a Keras mask), as with the sparse losses'
`ignore_class`. The focal and cross-entropy classes take `normalize="positives"` (the batch's
summed loss over max(1, number of positive, non-ignored entries): RetinaNet's reduction) or
`"positives_per_image"` (each image over its own count, then the mean over images); the
softmax classes name their `background_class`. Under `tf.distribute` the count is summed over
all replicas, so the loss and gradients equal a single-device run. `normalize` is a reduction
over the batch, so it belongs to the classes; the functions return per-sample values.

Speed (TensorFlow). In graph mode (`tf.function`, `model.fit`), a loss computed in float32
(float32, float16 or bfloat16 inputs) on at least 2**16 elements (2**10 per
sample when the batch size is unknown) runs as two XLA-compiled kernels
called from its custom gradient, forward and backward, whether or not the
model itself is compiled with XLA: one pass over memory each, half-precision
casts inside them, and nothing full-size kept from the forward for the
backward (the softmax losses keep two numbers per sample). Inside the kernels
on CPU, sums over the class axis are products with a column of ones, which
XLA vectorises (a reduction along a short last axis it does not). Each new
input shape compiles once (a fraction of a second). Eager calls, float64 and
small losses run plain TensorFlow ops; both paths compute the same formulas
and agree to float32 rounding. Set `KERAS_AFL_FUSE_LOSSES=0` before importing keras_afl
to turn the compiled path off (for a device without XLA). Measurements:
`benchmarks/results.md`.
"""

from keras_afl.losses import binary, categorical, regression, sparse
from keras_afl.losses._checks import InvalidLabelsError
from keras_afl.losses._core import set_trace_options, trace_options
# Each family module's `__all__` says what it exports: a new loss is added in its family alone.
from keras_afl.losses.binary import *  # noqa: F401,F403
from keras_afl.losses.categorical import *  # noqa: F401,F403
from keras_afl.losses.regression import *  # noqa: F401,F403
from keras_afl.losses.sparse import *  # noqa: F401,F403

__all__ = [*regression.__all__, *binary.__all__, *categorical.__all__, *sparse.__all__,
           "trace_options", "set_trace_options", "InvalidLabelsError"]
