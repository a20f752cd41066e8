"""Speed on Keras's other backends (issue 13): keras_afl on JAX and PyTorch against each backend's
own activations and Keras's built-in losses, in the same process, round-robin.

What is timed, per case and size, as the median of single calls after warm-up:

- activations, forward + backward (the output and the gradient with respect to x -- and alpha,
  for PReLU -- for a random upstream gradient): on JAX one `jax.jit` program of `jax.vjp`, ours
  against the `jax.nn` function (`jnp` for PReLU, which jax.nn lacks: Keras's formula
  relu(x) - alpha * relu(-x)); on PyTorch eager calls and `torch.autograd.grad`, ours against
  `torch.nn.functional` (F.prelu for PReLU);
- losses, value + gradient with respect to `y_pred` of the `Loss` object (mean reduction),
  ours against the matching `keras.losses` class (Keras has no sparse focal loss: one-hot,
  then its categorical focal loss): on JAX under `jax.jit` (`jax.value_and_grad`), on PyTorch
  eagerly as Keras trains there (`torch.autograd.grad`), or with `modes=["compile"]` (`--modes
  compile`) the same step wrapped in `torch.compile`, ours and Keras's alike, as Keras's
  `jit_compile=True` wraps its train step (compiled at the warm-up; each row also records the
  graphs and graph breaks `torch._dynamo.explain` finds in either step). Every row names its
  `mode`: "jit" on JAX, "eager" or "compile" on PyTorch.

Every call is timed on its own and waited for (`block_until_ready` on JAX; a device sync on a
GPU), and the median is over single calls: `repeats` rounds, in each a block of calls of ours
then of the reference (as many as fill about `SAMPLE_S`, the same count for both), the order
flipping each round, so that a busy shared machine slows both alike and a few preempted calls
do not move the medians. Ratios are ours / reference (below 1: faster), measured
in the same run; the targets (`TARGETS`) are reported, never asserted.

Run with `keras-afl --backend jax bench` or `keras-afl --backend torch bench` (the command,
`keras_afl.cli.bench`, turns its arguments into one `run(...)` on any backend but TensorFlow);
`write_reports` merges the rows of each backend into one backends.json and regenerates
backends.md, so the two runs add up.

The modules, one job each, as the TensorFlow harness's: `cases` (targets, cases, their inputs),
`timing` (the steps and the round-robin timer), `suites` (the rows and `run`) and `reports`
(the table, backends.json and backends.md). The harness never imports the app (`keras_afl.cli`).
"""

from __future__ import annotations

from keras_afl.bench.backends.cases import (ACTIVATIONS, BACKENDS, CLASSES, DEFAULT_MODES,
                                            DEFAULT_REPEATS, DEFAULT_SIZES, LOSSES, MODES, QUICK_ACTIVATIONS,
                                            QUICK_LOSSES, QUICK_REPEATS, QUICK_SIZES, ROW,
                                            TARGETS, active_backend, activation_inputs,
                                            loss_cases, loss_inputs)
from keras_afl.bench.backends.reports import markdown, summary, terminal_table, write_reports
from keras_afl.bench.backends.suites import bench_activations, bench_losses, run
from keras_afl.bench.backends.timing import SAMPLE_S, WARMUP_S, iqr, time_round_robin

__all__ = ["ACTIVATIONS", "BACKENDS", "CLASSES", "DEFAULT_MODES", "DEFAULT_REPEATS",
           "DEFAULT_SIZES", "LOSSES", "MODES",
           "QUICK_ACTIVATIONS", "QUICK_LOSSES", "QUICK_REPEATS", "QUICK_SIZES", "ROW", "SAMPLE_S",
           "TARGETS", "WARMUP_S", "active_backend", "activation_inputs", "bench_activations",
           "bench_losses", "iqr", "loss_cases", "loss_inputs", "markdown", "run", "summary",
           "terminal_table", "time_round_robin", "write_reports"]
