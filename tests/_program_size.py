"""How big the program of one value + gradient step of each keras_afl activation and loss is, on
TensorFlow: ops in its graph, and fusions in XLA's optimized program (issue 20, item 3).

Only the public API is used (`keras_afl.activations.<name>`, `keras_afl.losses.<function>`), so the
same measure runs on any commit of keras_afl. `tests/test_program_size.py` compares the keras_afl
imported now with `tests/fixtures/program_size_d6d0e2e.json` and each activation with the native op.

Each case is a function of its inputs returning the value and the gradient with respect to the
input:
- activations: `y = f(x)` and `dx`, the gradient of `y` for an upstream gradient `g` that is an
  input too (a vector-Jacobian product: nothing but the activation's forward and backward);
- losses: `l = tf.reduce_sum(loss(y_true, y_pred, **kwargs))` and `dl/dy_pred` (tf.GradientTape).

Two numbers per case:
- `graph_ops`: the ops of `tf.function(step).get_concrete_function(...).graph` at GRAPH_SHAPE that
  the outputs need (backwards from the outputs and the control outputs -- the label checks'
  assertions are control outputs -- through data and control inputs: the custom gradients' unused
  `zeros` are left out, as Grappler prunes them), plus the ops in the bodies of the functions those
  ops call (tf.cond branches, nested tf.functions), all without BOOKKEEPING: placeholders, Identity,
  IdentityN (tf.custom_gradient's wrapper) and NoOp, which compute nothing.
  `graph_op_types` is the multiset of their types.
- `xla_fusions`: the instructions whose opcode is `fusion` in the optimized HLO of the same step
  compiled with `jit_compile=True` at XLA_SHAPE (2**16 elements), every computation included.

Natives (NATIVES): the same two numbers for the op each activation stands in for, tf.nn's and
keras.activations' (Keras's PReLU layer formula for prelu, keras.activations.elu for an alpha
tf.nn.elu does not take).

Regenerate the baseline from a checkout of that commit (the old keras_afl imported, not the
editable install -- `header.keras_afl_file` in the file says which one was):

    git worktree add /tmp/base-d6d0e2e d6d0e2e
    cp tests/_program_size.py /tmp/base-d6d0e2e/tests/
    cd /tmp/base-d6d0e2e && PYTHONPATH=$PWD /path/to/.venv/bin/python -m tests._program_size \\
        --write /path/to/tests/fixtures/program_size_d6d0e2e.json --commit d6d0e2e

Without --write it prints the table of the keras_afl it imports.
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import os
import re
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_afl  # noqa: E402
from tests import _jax_programs  # noqa: E402  (its HLO reader; it imports JAX only when run)

GRAPH_SHAPE = (32, 8)
XLA_SHAPE = (8192, 8)  # 2**16 elements
BOOKKEEPING = frozenset({"Placeholder", "Identity", "IdentityN", "NoOp"})
FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures",
                       "program_size_d6d0e2e.json")
BASELINE_COMMIT = "d6d0e2e840911bec365ac55e22c11ba89cf2ec58"


# ---------------------------------------------------------------------------------------------
# The cases


def _activation_step(f, **kwargs):
    def step(x, g):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = f(x, **kwargs)
        return y, tape.gradient(y, x, output_gradients=g)
    return step


def _prelu_step(f):
    def step(x, g, alpha):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = f(x, alpha)
        return y, tape.gradient(y, x, output_gradients=g)
    return step


def _loss_step(f, **kwargs):
    def step(y_true, y_pred):
        with tf.GradientTape() as tape:
            tape.watch(y_pred)
            loss = tf.reduce_sum(f(y_true, y_pred, **kwargs))
        return loss, tape.gradient(loss, y_pred)
    return step


def _rng(rows):
    return np.random.default_rng(rows)


def _activation_inputs(rows):
    rng = _rng(rows)
    x, g = rng.normal(size=(2, rows, XLA_SHAPE[1])).astype(np.float32)
    return [tf.constant(x), tf.constant(g)]


def _prelu_inputs(rows):
    alpha = np.linspace(0.05, 0.4, GRAPH_SHAPE[1], dtype=np.float32)
    return _activation_inputs(rows) + [tf.constant(alpha)]


def _labels(kind, rows):
    """y_true: valid labels of `kind` for `rows` samples of GRAPH_SHAPE[1] entries/classes."""
    rng, n = _rng(rows + 1), GRAPH_SHAPE[1]
    if kind == "regression":
        return tf.constant(rng.normal(size=(rows, n)).astype(np.float32))
    if kind == "binary":
        return tf.constant(rng.integers(0, 2, size=(rows, n)).astype(np.float32))
    if kind == "signed":
        return tf.constant((2 * rng.integers(0, 2, size=(rows, n)) - 1).astype(np.float32))
    ids = rng.integers(0, n, size=rows).astype(np.int32)
    if kind == "one_hot":
        return tf.one_hot(ids, n, dtype=tf.float32)
    assert kind == "sparse", kind
    return tf.constant(ids)


def _predictions(kind, rows):
    """y_pred: scores ("logits"), probabilities in (0, 1) ("probs") or rows summing to 1."""
    z = _rng(rows + 2).normal(size=(rows, GRAPH_SHAPE[1])).astype(np.float32)
    if kind == "logits":
        return tf.constant(z)
    if kind == "probs":
        return tf.constant(1.0 / (1.0 + np.exp(-z)))
    assert kind == "distribution", kind
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return tf.constant(e / e.sum(axis=-1, keepdims=True))


class Case:
    """One measured step: `step()` builds the Python function, `inputs(rows)` its arguments."""

    def __init__(self, kind, step, inputs):
        self.kind, self.step, self.inputs = kind, step, inputs


def _activation(name, **kwargs):
    f = getattr(keras_afl.activations, name)
    if name == "prelu":
        return Case("activation", lambda: _prelu_step(f), _prelu_inputs)
    return Case("activation", lambda: _activation_step(f, **kwargs), _activation_inputs)


def _loss(name, labels, predictions, **kwargs):
    def inputs(rows):
        return [_labels(labels, rows), _predictions(predictions, rows)]
    return Case("loss", lambda: _loss_step(getattr(keras_afl.losses, name), **kwargs), inputs)


CASES = {
    "relu": _activation("relu"),
    "leaky_relu": _activation("leaky_relu"),
    "prelu": _activation("prelu"),
    "sigmoid": _activation("sigmoid"),
    "tanh": _activation("tanh"),
    "softmax": _activation("softmax"),
    "elu": _activation("elu"),
    "elu(alpha=0.5)": _activation("elu", alpha=0.5),
    "selu": _activation("selu"),
    "mean_squared_error": _loss("mean_squared_error", "regression", "logits"),
    "huber": _loss("huber", "regression", "logits"),
    "binary_crossentropy": _loss("binary_crossentropy", "binary", "probs"),
    "binary_crossentropy(from_logits)": _loss("binary_crossentropy", "binary", "logits",
                                              from_logits=True),
    "focal": _loss("focal", "binary", "probs"),
    "focal(from_logits)": _loss("focal", "binary", "logits", from_logits=True),
    "hinge": _loss("hinge", "signed", "logits"),  # -1/+1 labels, label_format="auto"
    "categorical_crossentropy": _loss("categorical_crossentropy", "one_hot", "distribution"),
    "categorical_crossentropy(from_logits)": _loss("categorical_crossentropy", "one_hot",
                                                   "logits", from_logits=True),
    "categorical_focal(from_logits)": _loss("categorical_focal", "one_hot", "logits",
                                            from_logits=True),
    "sparse_categorical_crossentropy": _loss("sparse_categorical_crossentropy", "sparse",
                                             "distribution"),
    "sparse_categorical_crossentropy(from_logits)": _loss(
        "sparse_categorical_crossentropy", "sparse", "logits", from_logits=True),
    "sparse_categorical_focal(from_logits)": _loss("sparse_categorical_focal", "sparse",
                                                   "logits", from_logits=True),
}


def _keras_prelu(x, alpha):
    # keras.layers.PReLU.call
    return keras.activations.relu(x) - alpha * keras.activations.relu(-x)


def _native(f, **kwargs):
    return Case("native", lambda: _activation_step(f, **kwargs), _activation_inputs)


# activation case -> {native name: the op it stands in for}
NATIVES = {
    "relu": {"tf.nn.relu": _native(tf.nn.relu), "keras.activations.relu":
             _native(keras.activations.relu)},
    "leaky_relu": {  # keras_afl's default slope, 0.01
        "tf.nn.leaky_relu": _native(tf.nn.leaky_relu, alpha=0.01),
        "keras.activations.leaky_relu": _native(keras.activations.leaky_relu,
                                                negative_slope=0.01)},
    "prelu": {"keras.layers.PReLU": Case("native", lambda: _prelu_step(_keras_prelu),
                                         _prelu_inputs)},
    "sigmoid": {"tf.nn.sigmoid": _native(tf.nn.sigmoid),
                "keras.activations.sigmoid": _native(keras.activations.sigmoid)},
    "tanh": {"tf.nn.tanh": _native(tf.nn.tanh),
             "keras.activations.tanh": _native(keras.activations.tanh)},
    "softmax": {"tf.nn.softmax": _native(tf.nn.softmax),
                "keras.activations.softmax": _native(keras.activations.softmax)},
    "elu": {"tf.nn.elu": _native(tf.nn.elu), "keras.activations.elu":
            _native(keras.activations.elu)},
    "elu(alpha=0.5)": {"keras.activations.elu": _native(keras.activations.elu, alpha=0.5)},
    "selu": {"tf.nn.selu": _native(tf.nn.selu),
             "keras.activations.selu": _native(keras.activations.selu)},
}


def _keras_loss(case, f, **kwargs):
    """Keras's loss `f` on the inputs of loss case `case` (the same labels and predictions)."""
    return Case("keras", lambda: _loss_step(f, **kwargs), CASES[case].inputs)


# loss case -> Keras's built-in it stands in for (the same arguments); sparse categorical focal
# has none.
KERAS_LOSSES = {
    "mean_squared_error": _keras_loss("mean_squared_error", keras.losses.mean_squared_error),
    "huber": _keras_loss("huber", keras.losses.huber),
    "binary_crossentropy": _keras_loss("binary_crossentropy", keras.losses.binary_crossentropy),
    "binary_crossentropy(from_logits)": _keras_loss(
        "binary_crossentropy(from_logits)", keras.losses.binary_crossentropy, from_logits=True),
    "focal": _keras_loss("focal", keras.losses.binary_focal_crossentropy),
    "focal(from_logits)": _keras_loss("focal(from_logits)", keras.losses.binary_focal_crossentropy,
                                      from_logits=True),
    "hinge": _keras_loss("hinge", keras.losses.hinge),
    "categorical_crossentropy": _keras_loss("categorical_crossentropy",
                                            keras.losses.categorical_crossentropy),
    "categorical_crossentropy(from_logits)": _keras_loss(
        "categorical_crossentropy(from_logits)", keras.losses.categorical_crossentropy,
        from_logits=True),
    "categorical_focal(from_logits)": _keras_loss(
        "categorical_focal(from_logits)", keras.losses.categorical_focal_crossentropy,
        from_logits=True),
    "sparse_categorical_crossentropy": _keras_loss(
        "sparse_categorical_crossentropy", keras.losses.sparse_categorical_crossentropy),
    "sparse_categorical_crossentropy(from_logits)": _keras_loss(
        "sparse_categorical_crossentropy(from_logits)",
        keras.losses.sparse_categorical_crossentropy, from_logits=True),
}


# ---------------------------------------------------------------------------------------------
# The measures


def _live_ops(graph):
    """The ops of `graph` its outputs and control outputs need."""
    todo = [t.op for t in graph.outputs] + list(graph.control_outputs)
    seen = {}
    while todo:
        op = todo.pop()
        if op.name in seen:
            continue
        seen[op.name] = op
        todo.extend(t.op for t in op.inputs)
        todo.extend(op.control_inputs)
    return list(seen.values())


def _called_functions(node_def):
    """Names of the functions a NodeDef calls (If/While branches, PartitionedCall's f, ...)."""
    names = []
    for value in node_def.attr.values():
        if value.HasField("func"):
            names.append(value.func.name)
        names.extend(f.name for f in value.list.func)
    return names


def graph_op_types(step, args):
    """collections.Counter of the op types in the graph of `step` traced for `args`' specs."""
    specs = [tf.TensorSpec.from_tensor(a) for a in args]
    graph = tf.function(step).get_concrete_function(*specs).graph
    library = {f.signature.name: f for f in graph.as_graph_def().library.function}
    live = _live_ops(graph)
    types = collections.Counter(op.type for op in live)
    todo = [name for op in live for name in _called_functions(op.node_def)]
    done = set()
    while todo:
        name = todo.pop()
        if name in done or name not in library:
            continue
        done.add(name)
        for node in library[name].node_def:
            types[node.op] += 1
            todo.extend(_called_functions(node))
    for op_type in BOOKKEEPING:
        types.pop(op_type, None)
    return types


# An HLO instruction whose opcode is fusion: `[ROOT] %name = <shape or (tuple)> fusion(...`.
_FUSION = re.compile(r"^\s*(?:ROOT\s+)?%?[\w.\-]+\s*=\s*(?:\([^=]*?\)|\S+)\s+fusion\(", re.M)


def count_fusions(hlo_text):
    return len(_FUSION.findall(hlo_text))


def full_size_passes(hlo_text, elements):
    """How many arrays of at least `elements` elements the entry computation of an optimized HLO
    program reads or writes (per computing instruction, its operands and results of that size;
    tests/_jax_programs.program_size reads them). Above the CPU's caches each is a pass over
    memory: the structural part of a large step's time, which no load on the machine changes."""
    return _jax_programs.program_size(hlo_text, elements)["passes"]


def optimized_hlo(step, args):
    """The optimized HLO text of `step` compiled with jit_compile=True for `args`."""
    return tf.function(step, jit_compile=True).experimental_get_compiler_ir(*args)(
        stage="optimized_hlo")


def xla_fusions(step, args):
    return count_fusions(optimized_hlo(step, args))


def _measure(case):
    types = graph_op_types(case.step(), case.inputs(GRAPH_SHAPE[0]))
    return {"graph_ops": sum(types.values()),
            "xla_fusions": xla_fusions(case.step(), case.inputs(XLA_SHAPE[0])),
            "graph_op_types": dict(sorted(types.items()))}


@functools.lru_cache(maxsize=None)
def measure(name):
    """{"graph_ops", "xla_fusions", "graph_op_types"} of CASES[name]."""
    return _measure(CASES[name])


@functools.lru_cache(maxsize=None)
def measure_native(name, native):
    """The same for NATIVES[name][native]."""
    return _measure(NATIVES[name][native])


@functools.lru_cache(maxsize=None)
def measure_keras(name):
    """The same for Keras's loss KERAS_LOSSES[name], on the same inputs."""
    return _measure(KERAS_LOSSES[name])


def same_program(a, b):
    """(equal graph op types, equal fusion counts) of two measures."""
    return a["graph_op_types"] == b["graph_op_types"], a["xla_fusions"] == b["xla_fusions"]


def measure_all():
    cases = {name: measure(name) for name in CASES}
    natives = {}
    for name, ops in NATIVES.items():
        natives[name] = {}
        for native in ops:
            m = dict(measure_native(name, native))
            m["same_graph_op_types"], m["same_xla_fusions"] = same_program(cases[name], m)
            natives[name][native] = m
    return {"cases": cases, "natives": natives}


def header(commit, command):
    return {
        "commit": commit,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "keras_afl_file": keras_afl.__file__,
        "made_with": command,
        "graph_shape": list(GRAPH_SHAPE),
        "xla_shape": list(XLA_SHAPE),
        "graph_ops": "ops of the value + gradient step's tf.function graph that its outputs and "
                     "control outputs need, plus the ops of the functions they call, without "
                     + ", ".join(sorted(BOOKKEEPING)),
        "xla_fusions": "instructions with opcode fusion in the optimized HLO of the step "
                       "compiled with jit_compile=True (CPU)",
    }


def table(result):
    lines = [f"{'case':46} {'graph ops':>9} {'fusions':>7}"]
    for name, m in result["cases"].items():
        lines.append(f"{name:46} {m['graph_ops']:9d} {m['xla_fusions']:7d}")
        for native, n in result["natives"].get(name, {}).items():
            same = "same graph" if n["same_graph_op_types"] else "other graph"
            same += ", same fusions" if n["same_xla_fusions"] else ", other fusions"
            lines.append(f"  native {native:37} {n['graph_ops']:9d} {n['xla_fusions']:7d}"
                         f"  ({same})")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", metavar="JSON", help="write the measures to this file")
    parser.add_argument("--commit", default="(working tree)",
                        help="the commit of the keras_afl measured, for the header")
    args = parser.parse_args(argv)
    result = measure_all()
    print(f"keras_afl: {keras_afl.__file__}; TensorFlow {tf.__version__}, "
          f"Keras {keras.__version__}")
    print(table(result))
    if args.write:
        command = (f"python -m tests._program_size --write tests/fixtures/"
                   f"{os.path.basename(args.write)} --commit {args.commit}, run in a checkout "
                   "of that commit with PYTHONPATH set to it (see tests/_program_size.py)")
        with open(args.write, "w") as fh:
            json.dump({"header": header(args.commit, command), **result}, fh, indent=1)
            fh.write("\n")
        print("wrote", args.write)


if __name__ == "__main__":
    sys.exit(main())
