"""Run as `KERAS_BACKEND=jax python -m tests._jax_programs`: prints, as JSON, the size of the
optimized XLA program of one value + gradient step under `jax.jit` at 2^16 float32 elements, for
every activation against `jax.nn`'s and every loss against Keras's built-in on JAX (the cases of
`keras-afl bench`), each loss also with its label checks off. Read by tests/test_jax_programs.py.

Two counts per program: `fusions`, the fusion instructions of the entry computation (XLA's
kernels), and `passes`, how many arrays of the full size the entry's computing instructions read
or write -- above the caches, each a pass over memory. Neither depends on the machine's load."""

from __future__ import annotations

import json
import re

ELEMENTS = 2**16

_INSTRUCTION = re.compile(
    r"^\s*(?:ROOT\s+)?(%[\w.\-]+)\s*=\s*(\([^=]*?\)|\S+)\s+([\w\-]+)\((.*?)\)(?:,|$)")
_SHAPE = re.compile(r"\w+\[([\d,]*)\]")
_NO_PASS = frozenset({"parameter", "tuple", "constant", "get-tuple-element", "bitcast"})


def _elements(shape):
    m = _SHAPE.match(shape)
    if m is None:
        return 0
    n = 1
    for d in m.group(1).split(","):
        n *= int(d) if d else 1
    return n


def program_size(hlo_text, elements=ELEMENTS):
    """{"fusions", "passes"} of the entry computation of optimized HLO text."""
    entry = hlo_text[hlo_text.index("\nENTRY"):]
    body = entry[entry.index("{") + 1:entry.index("\n}")]
    shapes, fusions, passes = {}, 0, 0
    for line in body.splitlines():
        m = _INSTRUCTION.match(line)
        if m is None:
            continue
        name, shape, opcode, operands = m.groups()
        shapes[name] = shape
        if opcode in _NO_PASS:
            continue
        fusions += opcode == "fusion"
        results = [r.group(0) for r in _SHAPE.finditer(shape)]
        reads = [shapes.get(a.split()[-1], "") for a in operands.split(",") if "%" in a]
        passes += sum(_elements(s) >= elements for s in [*results, *reads])
    return {"fusions": fusions, "passes": passes}


def _compiled(f, *args):
    import jax

    return program_size(jax.jit(f).lower(*args).compile().as_text())


def _activation_step(f, prelu):
    import jax

    if prelu:
        def step(x, a, g):
            y, pullback = jax.vjp(f, x, a)
            return y, pullback(g)
    else:
        def step(x, g):
            y, pullback = jax.vjp(f, x)
            return y, pullback(g)
    return step


def measure():
    import jax

    from keras_afl import losses as L
    from keras_afl.bench.backends import cases as C

    x, g, alpha = C.activation_inputs(ELEMENTS, "float32")
    native, ours = C.native_activations("jax"), C.our_activations()
    out = {}
    for name in C.ACTIVATIONS:
        prelu = name == "prelu"
        args = (x, alpha, g) if prelu else (x, g)
        out[name] = {"ours": _compiled(_activation_step(ours[name], prelu), *args),
                     "reference": _compiled(_activation_step(native[name][0], prelu), *args)}
    for name in C.LOSSES:
        ours, ref, _ = C.loss_cases()[name]
        y_true, y_pred = C.loss_inputs(ours, ELEMENTS, "float32")

        def step(loss):
            return jax.value_and_grad(lambda p, t: loss(t, p))

        row = {"ours": _compiled(step(ours), y_pred, y_true),
               "reference": _compiled(step(ref), y_pred, y_true)}
        with L.set_trace_options(label_checks=False):
            row["ours_unchecked"] = _compiled(step(ours), y_pred, y_true)
        out[name] = row
    return out


if __name__ == "__main__":
    print(json.dumps(measure()))
