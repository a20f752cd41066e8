"""The rules: which loss a model trains with, what each rule checks, and `lint()`."""

from __future__ import annotations

import dataclasses
import difflib
import functools

import keras
import numpy as np

from keras_afl import registry as _registry
from keras_afl._backend import ops
from keras_afl.diagnostics import _balance
from keras_afl.diagnostics._findings import _SEVERITY_ORDER, Findings, _finding
from keras_afl.diagnostics._graph import _Graph, _last_dim, _output_site, _sites

DEEP_STACK = 4  # consecutive sigmoid/tanh hidden layers that trigger `deep-saturating-stack`


# --------------------------------------------------------------------------- losses

@dataclasses.dataclass
class _LossInfo:
    """One output's loss as lint sees it: the label for messages and what the registry says."""

    label: str          # how the user wrote it, for messages
    family: str         # the registry's family ("binary", ...), or "other" for a custom loss
    y_pred: str = ""    # what the loss reads as y_pred with its from_logits setting
    has_from_logits: bool = False
    origin: str = "other"  # "keras_afl", "keras" or "other": whose loss it is
    name: str = ""         # keras_afl's canonical name or Keras's function name
    obj: object = None     # the loss itself (object or function), for its settings


# Keras's losses that look for the logits a sigmoid/softmax output carries (its
# cross-entropies, through keras.ops); every other Keras loss that reads logits (its focal
# losses, ctc) applies its own sigmoid/softmax to y_pred (Keras 3.15; the tests check it).
_KERAS_READS_CARRIED_LOGITS = ("binary_crossentropy", "categorical_crossentropy",
                               "sparse_categorical_crossentropy")


def _loss_names():
    return sorted(set(_registry.names("loss")) | {
        n for n in dir(keras.losses) if not n.startswith("_")} | {"mse", "mae", "bce"})


def _label(obj):
    """The class or function name of a loss, for messages."""
    if isinstance(obj, keras.losses.Loss):
        fn = getattr(obj, "fn", None)  # Keras's LossFunctionWrapper
        name = type(obj).__name__
        return getattr(fn, "__name__", name) if name == "LossFunctionWrapper" and fn else name
    while isinstance(obj, functools.partial):
        obj = obj.func
    return getattr(obj, "__name__", type(obj).__name__)


def _describe_loss(loss):
    """A `_LossInfo` for one loss given as string, object, class or function, from
    `keras_afl.registry.describe_loss` (the registry's table, Keras's losses included)."""
    if isinstance(loss, str):
        label = loss
        try:
            obj = keras.losses.get(loss)
        except (ValueError, TypeError):
            obj = None
        if obj is None:
            close = difflib.get_close_matches(loss, _loss_names(), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else "."
            raise ValueError(
                f"`loss`: unknown loss {loss!r}{hint} Expected a Keras or keras_afl loss name "
                "(`keras-afl list --kind loss` lists keras_afl's), a Loss object or a function."
            )
    else:
        obj = loss
        label = None
    if isinstance(obj, dict):
        obj = keras.losses.deserialize(obj)
    if isinstance(obj, type) and issubclass(obj, keras.losses.Loss):
        obj = obj()
    if not (isinstance(obj, keras.losses.Loss) or callable(obj)):
        raise TypeError(
            f"`loss` must be a loss name, a keras.losses.Loss, a loss function, or a list/dict "
            f"of those; received {loss!r} (type {type(loss).__name__}). Fix: pass e.g. "
            "loss='binary_crossentropy' or keras_afl.losses.FocalLoss()."
        )
    label = label or _label(obj)
    d = _registry.describe_loss(obj)
    if d is None:
        return _LossInfo(label=label, family="other", name=_label(obj))
    return _LossInfo(label=label, family=d.family, y_pred=d.expects(),
                     has_from_logits=d.has_from_logits, origin=d.origin, name=d.name, obj=obj)


def _losses_per_output(loss, outputs):
    """[(output name, layer, loss or None)] pairing the loss spec with the outputs."""
    if isinstance(loss, (list, tuple)):
        if len(loss) != len(outputs):
            raise ValueError(
                f"`loss` is a list of {len(loss)} losses but the model has {len(outputs)} "
                f"output(s) ({', '.join(n for n, _ in outputs)}); expected one loss per output. "
                "Fix: pass one loss per output, or a dict keyed by output name.")
        return [(n, l, x) for (n, l), x in zip(outputs, loss)]
    if isinstance(loss, dict) and not ("class_name" in loss and "config" in loss):
        unknown = [k for k in loss if k not in {n for n, _ in outputs}]
        if unknown:
            raise ValueError(
                f"`loss` names output(s) {unknown} that the model does not have; its outputs are "
                f"{[n for n, _ in outputs]}. Fix: key the dict by those output names.")
        return [(n, l, loss.get(n)) for n, l in outputs]
    return [(n, l, loss) for n, l in outputs]


# --------------------------------------------------------------------------- rules

def _probability_from_logits(where, kind, info, half):
    """The `probability-output-from-logits` finding: an error where the loss surely reads the
    probabilities as logits, a warning where it recovers the logits the output carries."""
    squash = "sigmoid" if kind == "sigmoid" else "softmax"
    setting = ("has from_logits=True, which expects" if info.has_from_logits
               else "reads y_pred as logits:")
    common = f"the output is a {kind} (probabilities) but the loss {setting} raw scores. "
    fix = (_FROM_LOGITS_FIX if info.has_from_logits else _LOGITS_ONLY_FIX).format(kind=kind)
    if not ops().CARRIES_LOGITS:  # JAX: traced outputs take no attributes
        return _finding(
            "probability-output-from-logits", where,
            common + "On JAX, fit/evaluate compile with jit by default, and a traced output "
            "carries no logits (traced arrays take no attributes), so every loss reads the "
            "probabilities as logits: the model trains on the wrong loss.",
            fix, severity="error")
    if info.origin == "keras" and info.name not in _KERAS_READS_CARRIED_LOGITS:
        return _finding(
            "probability-output-from-logits", where,
            common + f"Keras's {info.label} applies a {squash} to y_pred itself, so it computes "
            f"the loss of {squash}(probabilities): the model trains on the wrong loss.",
            fix, severity="error")
    if info.origin == "keras" and half:
        return _finding(
            "probability-output-from-logits", where,
            common + f"The output is computed in {half} (mixed precision): Keras's loss casts it "
            "to float32 first, the cast tensor no longer carries the logits, and the "
            "probabilities are read as logits: the model trains on the wrong loss.",
            fix, severity="error")
    if info.origin == "keras_afl":
        why = ("keras_afl's losses use the logits a sigmoid/softmax output carries, also across "
               "a cast (mixed precision), so this model trains as meant; but any other path to "
               "the loss (a Lambda, another backend, a custom loss) reads the probabilities as "
               "logits.")
    elif info.origin == "keras":
        why = (f"Keras's {info.label} uses the logits a sigmoid/softmax output carries (with a "
               "warning) only while y_pred is that output's own tensor: after a cast (mixed "
               "precision) or a layer that makes a new tensor it reads the probabilities as "
               "logits.")
    else:
        why = ("A loss that does not look for the logits a sigmoid/softmax output carries reads "
               "the probabilities as logits.")
    return _finding("probability-output-from-logits", where, common + why, fix)


_FROM_LOGITS_FIX = (
    "drop from_logits=True (the loss still works stably from the {kind}'s logits), or remove the "
    "final {kind} and keep from_logits=True. A task model that picks its loss from the output "
    "activation (KerasHub's classifiers choose from_logits=True unless the activation is "
    "keras.activations.softmax itself) needs the loss passed explicitly to compile().")
_LOGITS_ONLY_FIX = ("remove the final {kind}: this loss has no from_logits setting and always "
                    "reads logits. A model that must output probabilities needs the {kind} "
                    "applied after training, or a loss of probabilities passed to compile().")


def _pairing(out_name, kind, units, info, half=None):
    """Rules on one output activation + its loss (`half`: the output's float16/bfloat16
    compute dtype, or None)."""
    where = (f"output '{out_name}' ({kind}"
             + (f", {units} unit{'s' if units != 1 else ''}" if units else "")
             + f") + loss {info.label!r}")
    classes = f"{units} classes" if units else "several classes"
    found = []
    probabilities = info.y_pred in ("probabilities", "logits")  # read through a sigmoid/softmax
    if kind == "softmax" and info.family == "binary" and probabilities and units != 1:
        found.append(_finding(
            "softmax-binary-loss", where,
            f"a softmax output over {classes} with a binary cross-entropy loss: the loss scores "
            "each output as an independent yes/no probability while softmax makes the outputs "
            "compete (they sum to 1), so the model is trained for a different task than the one "
            "its probabilities describe.",
            "one label per sample among K classes: categorical_crossentropy (one-hot labels) or "
            "sparse_categorical_crossentropy (integer labels) with the softmax; several labels "
            "per sample (multi-label): a sigmoid output with binary cross-entropy."))
    if kind == "sigmoid" and info.family in ("categorical", "sparse") and probabilities:
        extra = (" With a single unit the normalised prediction is always 1, so the loss is "
                 "constant and nothing is learned." if units == 1 else "")
        found.append(_finding(
            "sigmoid-categorical-loss", where,
            "a sigmoid output with a categorical cross-entropy loss: categorical cross-entropy "
            "expects one probability distribution over the classes (summing to 1), but "
            "independent sigmoids do not sum to 1." + extra,
            "single-label multi-class: Dense(K) + softmax with categorical cross-entropy; binary "
            "or multi-label: keep the sigmoid and use binary cross-entropy (afl_bce) or focal."))
    if kind == "linear" and info.y_pred == "probabilities":
        if info.has_from_logits:
            reads = ("the loss has from_logits=False and reads them as probabilities: scores "
                     "outside (0, 1) are clipped to [1e-7, 1 - 1e-7], so the loss is not the "
                     "cross-entropy of the scores.")
            fix = ("pass from_logits=True to the loss (e.g. keras_afl.losses.BinaryCrossentropy("
                   "from_logits=True)), or end the model with a sigmoid (binary, multi-label) or "
                   "softmax (multi-class) activation.")
        else:
            reads = ("the loss reads them as probabilities (it has no from_logits setting), so "
                     "scores outside [0, 1] give a loss that does not measure the prediction.")
            fix = ("end the model with a sigmoid (binary, multi-label) or softmax (multi-class) "
                   "activation.")
        found.append(_finding(
            "linear-output-probability-loss", where,
            "the output is linear (raw scores, any real number) but " + reads, fix))
    if kind in ("sigmoid", "softmax") and info.y_pred == "logits":
        found.append(_probability_from_logits(where, kind, info, half))
    if info.y_pred == "scores" and kind in ("sigmoid", "softmax"):
        found.append(_finding(
            "hinge-bounded-output", where,
            f"hinge loss on a {kind} output: hinge wants raw scores with a margin |score| >= 1, "
            "but the output stays inside (0, 1), so max(0, 1 - t*y) never reaches 0 -- every "
            "sample stays a margin violation and the scores are pushed against a bound they "
            "cannot pass.",
            f"a linear output (Dense without activation) with hinge loss, or keep the {kind} "
            "and use binary cross-entropy."))
    if info.family == "regression" and kind in ("sigmoid", "softmax"):
        found.append(_finding(
            "regression-loss-classification-output", where,
            f"a regression loss on a {kind} (classification) output: the {kind}'s derivative "
            "multiplies the error, so a confidently wrong prediction gets almost no gradient "
            "(cross-entropy cancels that factor: its gradient is p - y). If the targets really "
            "are values in (0, 1), this may be intended.",
            "classification: binary cross-entropy with a sigmoid, categorical cross-entropy with "
            "a softmax; regression: a linear output with MSE or Huber."))
    return found


def _half_dtype(layer):
    """"float16" / "bfloat16" if `layer` computes in half precision (mixed precision), else None."""
    dtype = getattr(layer, "compute_dtype", None)
    return dtype if dtype in ("float16", "bfloat16") else None


def _is_lecun_normal(init):
    if not isinstance(init, keras.initializers.VarianceScaling):
        return False
    return (abs(float(getattr(init, "scale", 0)) - 1.0) < 1e-6
            and getattr(init, "mode", None) == "fan_in"
            and getattr(init, "distribution", None) in ("truncated_normal", "untruncated_normal",
                                                        "normal"))


def _init_name(init):
    name = type(init).__name__
    cfg = {}
    if isinstance(init, keras.initializers.VarianceScaling) and name == "VarianceScaling":
        cfg = {k: getattr(init, k, None) for k in ("scale", "mode", "distribution")}
    return name + (f"({', '.join(f'{k}={v!r}' for k, v in cfg.items())})" if cfg else "")


def _selu_rules(graph, sites):
    selu = [s for s in sites if s.kind == "selu"]
    if not selu:
        return []
    found, reported = [], set()
    for s in selu:
        w = s.weights
        if w is None or id(w) in reported or _is_lecun_normal(getattr(w, "kernel_initializer", None)):
            continue
        reported.add(id(w))
        where = f"layer '{w.name}'" + (f" -> '{s.layer.name}'" if w is not s.layer else "")
        found.append(_finding(
            "selu-initializer", where,
            f"SELU fed by '{w.name}' with kernel_initializer={_init_name(w.kernel_initializer)}: "
            "self-normalisation (activations keeping mean 0 and variance 1 from layer to layer) "
            "holds only for LeCun-normal weights (variance 1 / fan_in).",
            f"kernel_initializer='lecun_normal' on '{w.name}'."))
    first = min(graph.index[id(s.weights if s.weights is not None else s.layer)] for s in selu)
    for layer in graph.layers[first:]:
        if isinstance(layer, keras.layers.BatchNormalization):
            found.append(_finding(
                "selu-batchnorm", f"layer '{layer.name}'",
                "BatchNormalization in a SELU network: SELU keeps activations normalised by "
                "itself; batch normalisation is what it replaces, and it changes the statistics "
                "SELU relies on.",
                "remove the BatchNormalization (SELU needs none), or use ReLU/ELU layers with "
                "batch normalisation instead of SELU."))
        elif isinstance(layer, keras.layers.Dropout):
            found.append(_finding(
                "selu-dropout", f"layer '{layer.name}'",
                f"plain {type(layer).__name__} in a SELU network: it sets units to 0, which "
                "shifts the mean and variance SELU keeps at 0 and 1.",
                f"keras.layers.AlphaDropout(rate) instead (it keeps mean and variance; rates "
                f"of 0.05-0.1 are usual)."))
    return found


def _deep_stack_rule(sites, output_layers):
    hidden = [s for s in sites if id(s.layer) not in output_layers]
    found, run = [], []

    def flush():
        if len(run) >= DEEP_STACK:
            kinds = "/".join(sorted({s.kind for s in run}))
            found.append(_finding(
                "deep-saturating-stack",
                f"layers '{run[0].layer.name}' ... '{run[-1].layer.name}'",
                f"{len(run)} consecutive {kinds} hidden layers: their derivatives are at most "
                "0.25 (sigmoid) or 1 (tanh) and near 0 where they saturate, so the gradient "
                "shrinks layer by layer (vanishing gradients) and the first layers barely learn.",
                "ReLU or ELU ('relu', 'afl_relu', 'afl_elu') in the hidden layers; keep "
                "sigmoid/tanh for outputs and gates."))

    for s in hidden:
        if s.kind in ("sigmoid", "tanh"):
            run.append(s)
        else:
            flush()
            run = []
    flush()
    return found


def _slope_finding(layer, what, values, source):
    """A `leaky-slope` finding if any slope in `values` is outside (0, 1), else None."""
    values = np.asarray(values, np.float64).reshape(-1)
    bad = values[(values <= 0) | (values >= 1)]
    if bad.size == 0:
        return None
    zero = bool(np.all(bad == 0))
    if values.size == 1:
        desc = f"{what} {source} {values[0]:g} is outside (0, 1)"
    else:
        desc = (f"{what}: {bad.size} of {values.size} {source} are outside (0, 1) "
                f"(min {values.min():g}, max {values.max():g})")
    if zero:
        why = ("a slope of 0 makes it a plain ReLU: negative inputs get no gradient and units "
               "can die")
    elif np.any(bad < 0):
        why = "a negative slope makes the activation non-monotonic (negative inputs turn positive)"
    else:
        why = ("a slope of 1 or more makes negative inputs count at least as much as positive "
               "ones (1: a linear layer, no non-linearity)")
    fix = ("a small positive slope, e.g. negative_slope=0.01." if what == "Leaky ReLU" else
           "alpha_initializer=keras.initializers.Constant(0.25) (He et al. 2015; keras_afl's "
           "PReLU default); if trained slopes leave (0, 1), an alpha_constraint.")
    return _finding("leaky-slope", f"layer '{layer.name}'", f"{desc}: {why}.", fix,
                    severity="info" if zero else "warning")


def _initializer_constant(init):
    if isinstance(init, keras.initializers.Zeros):
        return 0.0
    if isinstance(init, keras.initializers.Ones):
        return 1.0
    if isinstance(init, keras.initializers.Constant):
        try:
            return float(np.asarray(init.value).reshape(-1)[0])
        except (TypeError, ValueError, IndexError):
            return None
    return None


def _slope_rules(sites):
    found = []
    for s in sites:
        layer = s.layer
        f = None
        if s.kind == "prelu":
            alpha = getattr(layer, "alpha", None)
            if getattr(layer, "built", False) and alpha is not None and hasattr(alpha, "numpy"):
                f = _slope_finding(layer, "PReLU", keras.ops.convert_to_numpy(alpha),
                                   "alpha values")
            else:
                c = _initializer_constant(getattr(layer, "alpha_initializer", None))
                if c is not None:
                    f = _slope_finding(layer, "PReLU", [c], "alpha_initializer constant")
        elif s.kind == "leaky_relu":
            slope = getattr(layer, "negative_slope", None)
            if slope is None:
                fn = getattr(layer, "activation", None)
                kw = fn.keywords if isinstance(fn, functools.partial) else {}
                slope = kw.get("negative_slope", kw.get("alpha"))
            if slope is not None:
                f = _slope_finding(layer, "Leaky ReLU", [float(slope)], "negative_slope")
        if f is not None:
            found.append(f)
    return found


def lint(model, loss=None, *, class_weight=None):
    """Checks a Keras model (and its loss) against the activation and loss advice.

    Walks the layers of a Sequential or functional model in order and reports
    every mismatch the rules in the `keras_afl.diagnostics` docstring (and
    `RULES`) find: output activation vs loss (softmax + binary cross-entropy,
    sigmoid + categorical cross-entropy, a linear output with a
    `from_logits=False` cross-entropy, ...), SELU without LeCun-normal
    initialisation or with batch normalisation / plain dropout, deep
    sigmoid/tanh stacks, Leaky ReLU or PReLU slopes outside (0, 1). Nothing is
    printed: `print()` the result for a report (`keras-afl lint MODEL.keras`
    does).

    Args:
        model: A `keras.Model` (Sequential or functional; built or not).
        loss: The loss to check the outputs against; default: the compiled
            `model.loss`. A string name (Keras's or keras_afl's), a
            `keras.losses.Loss` object or class, a loss function, or a list /
            dict (keyed by output name) of those for several outputs.
        class_weight: The `class_weight` the model is trained with (`fit(class_weight=...)`,
            a dict {class: weight}), or the per-class weights its sample weights are built
            from (a list); checked against a focal loss's `alpha`
            (`focal-alpha-and-class-weight`). Default None: not checked.

    Returns:
        `Findings` (a list of `Finding`: severity, rule, where, message,
        fix), errors first, then warnings, then info.

    Raises:
        TypeError: `model` is not a Keras model, `loss` is of a type no loss has, or
            `class_weight` is not a dict or list of weights.
        ValueError: an unknown loss name, or a list/dict of losses that does
            not match the outputs.

    Example:
    >>> import keras, keras_afl
    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
    ...                           keras.layers.Dense(3, activation="softmax")])
    >>> [f.rule for f in keras_afl.lint(model, loss="binary_crossentropy")]
    ['softmax-binary-loss']
    >>> print(keras_afl.lint(model, loss="categorical_crossentropy"))
    no findings
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"`model` must be a keras.Model (Sequential or functional); received {model!r} "
            f"(type {type(model).__name__}). Fix: pass the model itself, e.g. lint(model), or "
            "load a saved one first with keras.models.load_model(path)."
        )
    weights = _balance.check_class_weight(class_weight)
    graph = _Graph(model)
    sites = _sites(graph)
    outputs = graph.output_layers_of(model)
    found = []

    out_sites = {}
    for name, layer in outputs:
        kind, units, act_layer = _output_site(graph, layer)
        out_sites[name] = (kind, units, act_layer)

    given = loss if loss is not None else getattr(model, "loss", None)
    if given is None:
        found.append(_finding(
            "no-loss", f"model '{model.name}'",
            "no loss was given and the model is not compiled, so the output activation / loss "
            "pairing was not checked.",
            "pass the loss: lint(model, loss='binary_crossentropy'), or compile the model first "
            "(`keras-afl lint --loss NAME`)."))
    else:
        for name, _, spec in _losses_per_output(given, outputs):
            if spec is None:
                continue
            info = _describe_loss(spec)
            kind, units, act_layer = out_sites[name]
            if info.family == "other":
                found.append(_finding(
                    "loss-not-recognised", f"output '{name}' + loss {info.label!r}",
                    f"the loss {info.label!r} is not one lint knows, so its pairing with the "
                    "output activation was not checked.",
                    "nothing to fix if it is intended; for a check, pass a Keras or keras_afl "
                    "loss as lint(model, loss=...)."))
                continue
            twice = _balance.double_balance(name, info.label,
                                            _balance.class_balance(info.obj, info), weights)
            if twice is not None:
                found.append(twice)
            if kind is None:
                continue
            found.extend(_pairing(name, kind, units, info, _half_dtype(act_layer)))

    for s in sites:
        if s.kind != "softmax":
            continue
        units = _last_dim(s.layer)
        axis = getattr(s.layer, "axis", -1)
        if units == 1 and axis in (-1, None):
            found.append(_finding(
                "softmax-single-unit", f"layer '{s.layer.name}'",
                "softmax over a single unit always outputs 1.0: its gradient is 0 and the model "
                "cannot learn from it.",
                "binary output: Dense(1) with a sigmoid and binary cross-entropy; or Dense(2) "
                "with softmax and categorical cross-entropy."))
    found.extend(_selu_rules(graph, sites))
    output_ids = {id(a) for (_, _, a) in out_sites.values() if a is not None}
    found.extend(_deep_stack_rule(sites, output_ids))
    found.extend(_slope_rules(sites))
    found.sort(key=lambda f: _SEVERITY_ORDER[f.severity])
    return Findings(found)
