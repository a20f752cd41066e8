"""Whether ours runs the built-in's exact program: the graph's kernels, or XLA's optimized HLO.

Where it does, any timing difference between the two is measurement noise.
"""

from __future__ import annotations

import re

import tensorflow as tf

from keras_afl.bench.cases import ACTIVATIONS, activation_inputs
from keras_afl.bench.timing import activation_step

_PASS_THROUGH = frozenset({"Identity", "IdentityN", "NoOp", "Placeholder", "Const"})


def graph_kernels(step, *args):
    """The TensorFlow kernels a graph-mode `tf.function` runs for `args`: the op types that
    its outputs depend on (dead ops are pruned before execution), without pass-through ops."""
    graph = step.get_concrete_function(*args).graph
    seen, stack = set(), [t.op for t in graph.outputs]
    while stack:
        op = stack.pop()
        if op.name in seen:
            continue
        seen.add(op.name)
        stack.extend(t.op for t in op.inputs)
        stack.extend(op.control_inputs)
    return sorted(graph.get_operation_by_name(n).type for n in seen
                  if graph.get_operation_by_name(n).type not in _PASS_THROUGH)


def optimized_program(step, *args):
    """The optimized XLA (HLO) program of a `tf.function(jit_compile=True)` for `args`, with
    names, metadata and parameter numbers stripped: two functions that compile to the same
    loops give equal lists."""
    text = step.experimental_get_compiler_ir(*args)(stage="optimized_hlo")
    text = re.sub(r"^HloModule.*$", "", text, flags=re.M)
    text = re.sub(r",?\s*metadata=\{[^}]*\}", "", text)
    text = re.sub(r"%[\w.\-]+", "%v", text)
    text = re.sub(r"\bparam_[\d.]+", "param", text)
    text = re.sub(r"(calls|to_apply|condition|body)=%?[\w.\-]+", r"\1=C", text)
    text = re.sub(r"^\s*(ENTRY\s+)?[\w.\-]+(?= [({])", r"\1C", text, flags=re.M)
    return sorted(line.strip() for line in text.splitlines() if line.strip())


def same_program(name, dtype, mode, size=2**16):
    """Whether activation `name`'s forward + backward runs exactly the built-in's program:
    the same TensorFlow kernels (graph mode) or the same optimized XLA program (XLA).

    Where it does, any timing difference between the two is measurement noise.

    Example:
    >>> from keras_afl import bench
    >>> bench.same_program("tanh", "float32", "xla", size=2**10)   # TanhGrad, as autodiff's
    True
    >>> bench.same_program("prelu", "float32", "graph", size=2**10)  # vs Keras's formula
    False
    """
    ours, ref = ACTIVATIONS[name]
    with_alpha = name == "prelu"
    x, g, alpha = activation_inputs(size, tf.as_dtype(dtype))
    args = (x, g, alpha) if with_alpha else (x, g)
    xla = mode == "xla"
    program = optimized_program if xla else graph_kernels
    return program(activation_step(ours, xla, with_alpha), *args) == \
        program(activation_step(ref, xla, with_alpha), *args)
