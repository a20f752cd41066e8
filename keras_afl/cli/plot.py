"""`keras-afl plot NAME...`: functions and their analytic derivatives, to PNG.

Derivatives are taken with the Keras backend's own differentiation
(`tf.GradientTape`, `jax.vjp` or `torch.autograd`: `keras_afl.cli._autodiff`),
i.e. through each function's custom gradient -- the plot shows the derivative
the network trains with, on the backend it runs on (`keras-afl --backend jax plot ...`).
Activations: f(x) and f'(x) (softmax: the first output of softmax([x, 0])).
Losses: the per-sample loss and d loss / d y_pred against the prediction, for
label 1 and label 0 (binary losses: y_pred a probability, or a score for hinge
and `from_logits` losses; categorical losses: y_pred = [1 - p, p]); regression
losses against the error y_pred - y_true. `--range LO HI` sets every panel's
x range (a probability axis only within [0, 1]).
"""

from __future__ import annotations

import math

import numpy as np

from keras_afl.cli import _autodiff as AD
from keras_afl.cli.common import CLIError, output_file, pyplot

_GROUPS = {"activations": "activation", "losses": "loss"}

# x-axis kind (see x_axis) -> the range plotted when --range is not given
DEFAULT_RANGE = {"input": (-5.0, 5.0), "error": (-3.0, 3.0), "score": (-3.0, 3.0),
                 "probability": (0.002, 0.998)}


def resolve(names):
    """Registry entries for NAMEs (`activations` / `losses` expand to every entry)."""
    import keras_afl

    out = []
    for n in names:
        if n in _GROUPS:
            group = keras_afl.entries(_GROUPS[n])
            if not group:
                raise CLIError(f"no {n} are registered in this version of keras_afl")
            out.extend(group)
            continue
        try:
            out.append(keras_afl.entry(n))
        except ValueError as e:
            raise CLIError(f"{e} (or `activations` / `losses` for all of them)") from None
    return list(dict.fromkeys(out))


def activation_curve(entry, x_range=DEFAULT_RANGE["input"], n=801):
    """(x, f(x), f'(x), label) with f' from the custom gradient (the backend's autodiff)."""
    from keras import ops

    x = AD.tensor(np.linspace(*x_range, n))
    softmax = entry.family == "axis"  # normalises along an axis: plot one of two outputs

    def f(x):
        if softmax:
            return entry.obj(ops.stack([x, ops.zeros_like(x)], axis=-1))[:, 0]
        return entry.obj(x)

    y, (dy,) = AD.vjp(f, [x])
    label = "softmax([x, 0])[0]" if softmax else f"{entry.name}(x)"
    return AD.to_numpy(x), AD.to_numpy(y), dy, label


def x_axis(entry):
    """What the x-axis of `entry`'s plot is: "input" (activations), "error" (regression
    losses), "score" (losses of scores or logits: hinge, from_logits) or "probability"
    (other losses), from the registry's `family` and `expects()` at the default settings."""
    if entry.kind == "activation":
        return "input"
    if entry.family == "regression":
        return "error"
    kind = entry.expects(from_logits=bool(entry.parameters().get("from_logits")))
    return "score" if kind in ("scores", "logits") else "probability"


def loss_curves(entry, n=801, x_range=None):
    """{label value: (t, loss(t), dloss/dy_pred(t))}, the x-axis name and the setting described.

    For binary and categorical losses t is the prediction and there are curves
    for label 1 and 0; for regression losses t is the error and one curve.
    t spans `x_range` (default: `DEFAULT_RANGE[x_axis(entry)]`).
    """
    from keras import ops

    family = entry.family
    loss = entry.obj()
    axis = x_axis(entry)
    scores = axis == "score"
    x_range = x_range or DEFAULT_RANGE[axis]
    out = {}
    if family == "regression":
        t = np.linspace(*x_range, n)
        y_true = AD.tensor(np.zeros((n, 1)), "float32")
        pred = AD.tensor(t[:, None], "float32")
        out["error"] = _loss_and_grad(loss, y_true, pred, lambda p: p)
        return out, "error  y_pred - y_true", "y_true = 0, defaults"
    t = np.linspace(*x_range, n)
    if scores:
        xlabel = "score  y_pred"
    else:
        xlabel = "predicted probability of class 1"
    for label in (1, 0):
        p = AD.tensor(t[:, None], "float32")
        if family == "binary":
            y_true = AD.tensor(np.full((n, 1), float(label)), "float32")
            build = lambda q: q  # noqa: E731
        elif family == "categorical":
            y_true = AD.tensor(np.eye(2)[np.full(n, label)], "float32")
            build = lambda q: ops.concatenate([1.0 - q, q], axis=-1)  # noqa: E731
        else:  # sparse
            y_true = AD.tensor(np.full((n,), label))
            build = lambda q: ops.concatenate([1.0 - q, q], axis=-1)  # noqa: E731
        out[f"label {label}"] = _loss_and_grad(loss, y_true, p, build)
    if family != "binary":
        note = "y_pred = [1 - p, p], defaults"
    else:
        note = "y_pred = score, defaults" if scores else "y_pred = p, defaults"
    return out, xlabel, note


def _loss_and_grad(loss, y_true, p, build):
    from keras import ops

    # per-sample values, before reduction
    values, (grad,) = AD.vjp(lambda t, q: ops.reshape(loss.call(t, build(q)), (-1,)), [p],
                             args=(y_true,))
    return AD.to_numpy(p).reshape(-1), AD.to_numpy(values), grad.reshape(-1)


def _ylim(*arrays, cap=10.0):
    """A y-range that shows the curves without letting a 1/p blow-up flatten them."""
    v = np.concatenate([np.asarray(a, np.float64).ravel() for a in arrays])
    v = v[np.isfinite(v)]
    if not v.size:
        return None
    lo, hi = max(v.min(), -cap), min(v.max(), cap)
    pad = 0.06 * max(hi - lo, 1e-3)
    return lo - pad, hi + pad


def plot(entries, path, x_range=None):
    """Writes the PNG; `x_range` (if given) is every panel's x range, else each its default."""
    plt = pyplot("plot")
    n = len(entries)
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.9 * cols, 3.2 * rows), squeeze=False)
    axes = axes.ravel()
    for ax, e in zip(axes, entries):
        if e.kind == "activation":
            x, y, dy, label = activation_curve(e, x_range or DEFAULT_RANGE["input"])
            ax.plot(x, y, color="C0", lw=2, label=label)
            ax.plot(x, dy, color="C3", lw=1.5, ls="--", label="derivative")
            ax.set_xlabel("x")
            formula = e.formula if len(e.formula) <= 48 else e.formula[:45] + "..."
            ax.set_title(f"{e.name}\n{formula}", fontsize=9)
        else:
            curves, xlabel, note = loss_curves(e, x_range=x_range)
            arrays = []
            for i, (lab, (t, v, g)) in enumerate(curves.items()):
                ax.plot(t, v, color=f"C{i}", lw=2, label=f"loss, {lab}")
                ax.plot(t, g, color=f"C{i}", lw=1.3, ls="--", label=f"d loss/d y_pred, {lab}")
                arrays += [v, g]
            lim = _ylim(*arrays)
            if lim:
                ax.set_ylim(*lim)
            ax.set_xlabel(xlabel, fontsize=8)
            ax.set_title(f"{e.name}\n{note}", fontsize=9)
        ax.axhline(0, color="grey", lw=0.6)
        ax.axvline(0, color="grey", lw=0.6)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in axes[n:]:
        ax.set_visible(False)
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=100)
    except OSError as e:  # checked before plotting; this is a race (the folder went away)
        raise CLIError(f"-o/--output {path!r}: cannot write the file ({e.strerror or e})") from None
    finally:
        plt.close(fig)
    return path


def run(names, *, output=None, x_range=None):
    """`keras-afl plot`; `x_range` (--range) applies to every panel, losses included."""
    pyplot("plot")  # the cli extra check comes first
    import keras_afl  # noqa: F401

    AD.enable_float64()  # activations are plotted in float64 (on JAX: jax_enable_x64)

    if x_range is not None:
        lo, hi = x_range
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise CLIError(f"--range LO HI needs finite LO < HI; got {lo:g} {hi:g}")
    entries = resolve(names)
    if x_range is not None:
        probability = [e.name for e in entries if x_axis(e) == "probability"]
        if probability and not 0 <= lo < hi <= 1:
            raise CLIError(
                f"--range {lo:g} {hi:g} does not fit {', '.join(probability)}: these losses are "
                "plotted against a predicted probability, so LO and HI must lie in [0, 1] (e.g. "
                "--range 0.01 0.99); activations, and losses of scores or errors (hinge, "
                "from_logits, regression), take any range. Plot them in separate commands")
    if output is None:
        output = f"{names[0]}.png" if len(names) == 1 else "keras_afl_plot.png"
    if not output.lower().endswith(".png"):
        raise CLIError(f"-o/--output must be a .png file; got {output!r}")
    output_file(output, "-o/--output")
    path = plot(entries, output, x_range)
    span = f"; x from {x_range[0]:g} to {x_range[1]:g}" if x_range else ""
    print(f"wrote {path} ({', '.join(e.name for e in entries)}{span})")
    return 0
