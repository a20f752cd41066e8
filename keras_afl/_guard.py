"""Bad labels never change a model: the guard around Keras's training and test steps.

A loss can only raise on a bad label where Python runs between its forward pass and the update
of the weights: eagerly (PyTorch, `run_eagerly=True`) it raises before the backward pass, and in
TensorFlow's graph mode its assertion gates the gradient (`keras_afl.losses._core`). A compiled
step has no such point: XLA drops assertions (TensorFlow `jit_compile=True`), and a host callback
that raises inside `jax.jit` fails the whole step after Keras has handed it the weights' buffers
(donated), which leaves the model without weights. There the losses record a *verdict* instead
(whether any label is bad, the first bad value, where, how many, the labels' range) in the
collector this module opens around `Model.train_step`/`test_step`, and the step:

- keeps every weight, optimizer variable and non-trainable variable as it was when a label is
  bad (JAX: the step's new state is a select of old and new; TensorFlow under XLA: the variables
  are read before the step and written back after it; the loss still shows NaN in the metrics);
- returns the verdict beside its logs, under a private key that the step function's Python
  wrapper removes; when it says a label is bad, the wrapper raises the loss's
  `InvalidLabelsError` with the message it would have raised eagerly.

On JAX the wrapper also hands Keras back the state it passed in when a step raises (e.g.
`run_eagerly=True`): Keras takes the weights out of the model's variables for the step and puts
them back only from a step that returned (`JAXTrainer.jax_state_sync`), so without it every later
`fit`/`evaluate` failed with "'NoneType' object is not callable".

`install()` wraps `keras.Model`'s `train_step`, `test_step`, `make_train_function` and
`make_test_function` once; a model class that overrides `train_step` without calling
`super().train_step` has its own step and is not guarded (its losses still raise eagerly and in
graph mode, and give NaN under XLA/`jax.jit`). Outside a Keras step (a custom training loop
under `jax.jit`, a `tf.function(jit_compile=True)`), the losses behave as documented in
`keras_afl.losses`: NaN loss and gradients for the samples with a bad label.
"""

from __future__ import annotations

import contextvars
import functools
import re
import threading

import keras
import numpy as np

from keras_afl import _keras_compat
from keras_afl._backend import ops

LOGS_KEY = "_keras_afl_bad_labels"
_VERDICTS = contextvars.ContextVar("keras_afl_label_verdicts", default=None)


# How many guarded steps are being run or traced, in any thread: a plain global that
# torch.compile(fullgraph=True) can read (it cannot trace ContextVar.get), so that a loss compiled
# outside any Keras step never reaches the context variable.
_OPEN = [0]
_OPEN_LOCK = threading.Lock()


def collecting():
    """Whether a guarded Keras step is being traced in this thread (the losses record verdicts)."""
    return _OPEN[0] > 0 and _VERDICTS.get() is not None


def record(rule, labels):
    """Records the verdict of `rule` (a label rule with `good(y)` and `message_parts()`) on
    `labels` in the open collector; returns False (nothing recorded) when none is open."""
    verdicts = _VERDICTS.get() if _OPEN[0] > 0 else None
    if verdicts is None:
        return False
    k = keras.ops
    bad = k.logical_not(k.reshape(rule.good(labels), [-1]))
    flat = k.cast(k.reshape(labels, [-1]), "float32")
    first = k.argmax(k.cast(bad, "int32"))
    info = k.stack([k.cast(k.sum(k.cast(bad, "int32")), "float32"),
                    k.cast(first, "float32"),
                    k.take(flat, first),
                    k.cast(k.shape(flat)[0], "float32"),
                    k.min(flat), k.max(flat)])
    verdicts.append((rule, info))
    return True


def first_bad_message(head, value, index, count, size, low, high, where, what, fix):
    """The message of an `InvalidLabelsError`: the first bad label, where, how many, the range."""
    return (f"{head} {fmt(value)} at {where} {index} ({count} of {size} bad; {what} from "
            f"{fmt(low)} to {fmt(high)}). Fix: {fix}")


def fmt(value):
    """A label as it reads in its own dtype: 1.7, -1, 1.000001 (float32's 1 + 2^-20), 3."""
    value = np.asarray(value)[()]
    if isinstance(value, np.floating):
        return np.format_float_positional(value, unique=True, trim="-")
    return str(value)


def _error(rules, info):
    """The `InvalidLabelsError` of the first verdict that found a bad label, or None."""
    from keras_afl.losses import InvalidLabelsError

    info = np.asarray(keras.ops.convert_to_numpy(info), dtype=np.float64).reshape(-1, 6)
    for rule, (count, index, value, size, low, high) in zip(rules, info):
        if count > 0:
            head, where, what, fix = rule.message_parts()
            value, low, high = (np.float32(v) for v in (value, low, high))
            return InvalidLabelsError(first_bad_message(
                head, value, int(index), int(count), int(size), low, high, where, what, fix))
    return None


_ASSERTION = re.compile(
    r"assertion failed: \[(.*?)\]\s*\[\[\{\{(?:function_)?node [^}]*check_(?:labels|class_ids)", re.S)


def _from_graph_assertion(error):
    """TensorFlow's graph mode reports a failed label check as an `InvalidArgumentError` from
    the loss's assertion (`keras_afl.losses._checks`), its message in brackets: the same message
    as an `InvalidLabelsError` (a subclass of `InvalidArgumentError`, so `except` clauses written
    for either still match), or None for any other error."""
    if type(error).__name__ != "InvalidArgumentError":
        return None
    match = _ASSERTION.search(str(error))
    if match is None:
        return None
    from keras_afl.losses import InvalidLabelsError

    text = " ".join(match.group(1).split("] ["))
    for before, after in ((" ;", ";"), (" )", ")"), ("( ", "("), (" .", ".")):
        text = text.replace(before, after)
    return InvalidLabelsError(text)


def _verdict_logs(logs, verdicts):
    """The logs with the verdicts stacked under LOGS_KEY (one row each), and whether any is bad."""
    k = keras.ops
    info = k.stack([v[1] for v in verdicts])
    return {**logs, LOGS_KEY: info}, k.any(info[:, 0] > 0)


def _collect(model, phase, step):
    """`step` run with a collector open: (its result, the verdicts recorded); the verdicts'
    rules kept on the model for the message (`model._keras_afl_label_rules[phase]`)."""
    verdicts = []
    token = _VERDICTS.set(verdicts)
    with _OPEN_LOCK:
        _OPEN[0] += 1
    try:
        result = step()
    finally:
        with _OPEN_LOCK:
            _OPEN[0] -= 1
        _VERDICTS.reset(token)
    if verdicts:
        model._keras_afl_label_rules = {**_rules(model), phase: [v[0] for v in verdicts]}
    return result, verdicts


# --------------------------------------------------------------------------
# The steps, per backend.


def _jax_step(original, phase):
    """JAX's train_step / test_step (state in, state out): on a bad verdict the train step gives
    back the trainable, non-trainable and optimizer variables as they were (the metrics show
    NaN); the test step changes no weight anyway."""

    @functools.wraps(original)
    def step(self, state, data):
        (logs, new_state), verdicts = _collect(self, phase, lambda: original(self, state, data))
        if not verdicts:
            return logs, new_state
        logs, bad = _verdict_logs(logs, verdicts)
        if phase == "test":
            return logs, new_state
        import jax

        def keep(old, new):
            return jax.tree_util.tree_map(lambda o, n: keras.ops.where(bad, o, n), old, new)

        return logs, tuple(keep(o, n) for o, n in zip(state[:3], new_state[:3])) + tuple(
            new_state[3:])

    return step


def _stateful_train_step(original):
    """TensorFlow's and PyTorch's train_step (the step assigns the variables itself)."""

    @functools.wraps(original)
    def train_step(self, data):
        if not _uses_keras_afl_loss(self):
            return original(self, data)
        xla = ops().under_xla()
        # Under XLA every variable is read before the step and written back after it when a label
        # is bad. Elsewhere the loss raises (eagerly, or from graph mode's assertion, which the
        # gradients wait for) before any update, but after the forward pass has moved the
        # non-trainable variables (BatchNormalization's statistics): those are put back.
        variables = (list(self.trainable_variables) + list(self.non_trainable_variables)
                     + list(getattr(self.optimizer, "variables", None) or [])) if xla \
            else list(self.non_trainable_variables)
        before = [ops().copy(v.value) for v in variables]

        def restore():
            return [v.assign(old) for v, old in zip(variables, before)]

        restore_token = _RESTORE.set(None if xla else restore)
        try:
            logs, verdicts = _collect(self, "train", lambda: original(self, data))
        except ValueError as e:  # an InvalidLabelsError raised eagerly
            if type(e).__name__ == "InvalidLabelsError":
                restore()
            raise
        finally:
            _RESTORE.reset(restore_token)
        if not verdicts:
            return logs
        logs, bad = _verdict_logs(logs, verdicts)
        for v, old in zip(variables, before):
            v.assign(keras.ops.where(bad, old, v.value))
        sticky = getattr(self, "_keras_afl_first_verdict", None)
        if sticky is not None and tuple(sticky.shape) == tuple(logs[LOGS_KEY].shape):
            # Several steps per execution (TensorFlow's loop returns the last step's logs): the
            # first bad step's verdict is kept until the execution returns.
            kept = sticky.read_value()
            sticky.assign(keras.ops.where(keras.ops.any(kept[:, 0] > 0), kept, logs[LOGS_KEY]))
            logs[LOGS_KEY] = sticky.read_value()
        return logs

    return train_step


_RESTORE = contextvars.ContextVar("keras_afl_restore_variables", default=None)


def restore_before_failing():
    """The assignments that put back the non-trainable variables of the guarded step being
    traced, for TensorFlow's graph-mode label assertion to run before it fails (or [])."""
    restore = _RESTORE.get()
    return [] if restore is None else restore()


def _plain_step(original, phase):
    """test_step (every backend) and train_step on PyTorch: verdicts into the logs only (a
    PyTorch loss raises before the backward pass even while compiled, see `keras_afl._backend._portable`)."""

    @functools.wraps(original)
    def step(self, data):
        logs, verdicts = _collect(self, phase, lambda: original(self, data))
        if not verdicts:
            return logs
        return _verdict_logs(logs, verdicts)[0]

    return step


def _rules(model):
    return getattr(model, "_keras_afl_label_rules", None) or {}


def _uses_keras_afl_loss(model):
    """Whether the model's compiled loss names or holds a keras_afl loss, with the label checks
    on (`keras_afl.losses.set_trace_options(label_checks=False)` switches the guard off too)."""
    from keras_afl import losses, registry

    if not losses.trace_options()["label_checks"]:
        return False

    names = set(registry.names("loss"))
    for item in keras.tree.flatten(getattr(model, "loss", None)):
        if isinstance(item, str):
            if item in names:
                return True
            continue
        owner = type(item) if isinstance(item, keras.losses.Loss) else item
        if str(getattr(owner, "__module__", "")).startswith("keras_afl"):
            return True
    return False


_MAKING = contextvars.ContextVar("keras_afl_making_step_function", default=None)


def _make_function(original, phase):
    """make_train_function / make_test_function, with the step function wrapped (`_guarded`).

    On JAX each step of an execution (`steps_per_execution`) is wrapped, through the trainer's
    `_make_function` (private Keras API), so that a bad batch in the middle of one raises too
    and the steps before it are kept; elsewhere the function Keras calls per execution."""

    @functools.wraps(original)
    def make(self, force=False):
        if ops().STATELESS_STEPS:  # JAX
            token = _MAKING.set(phase)
            try:
                return original(self, force)
            finally:
                _MAKING.reset(token)
        result = original(self, force)
        attr = f"{phase}_function"
        fn = getattr(self, attr, None)
        if fn is None or getattr(fn, "_keras_afl_guarded", False):
            return result
        if phase == "train" and ops().GRAPH_STEPS \
                and getattr(self, "steps_per_execution", 1) > 1 and _uses_keras_afl_loss(self):
            self._keras_afl_first_verdict = _sticky_verdict(self)
        guarded = _guarded(self, fn, phase)
        setattr(self, attr, guarded)
        return guarded if result is fn else result

    return make


def _sticky_verdict(model):
    """A variable for the first bad verdict of an execution of several steps (TensorFlow): one
    row per label rule of the model's loss, reset before each execution by `_guarded`."""
    import tensorflow as tf

    rows = len(keras.tree.flatten(getattr(model, "loss", None))) or 1
    return tf.Variable(tf.zeros([rows, 6]), trainable=False, name="keras_afl_first_verdict")


def _jax_make_function(original):
    @functools.wraps(original)
    def _make(self, step_function, *args, **kwargs):
        phase = _MAKING.get()
        if phase is not None:
            step_function = _guarded(self, step_function, phase)
        return original(self, step_function, *args, **kwargs)

    return _make


def _guarded(model, fn, phase):
    """`fn` (a step or execution function) raising the verdict's InvalidLabelsError, and on JAX
    giving Keras back its state when a step raises."""
    jax_backend = ops().STATELESS_STEPS
    tf_backend = phase == "train" and ops().GRAPH_STEPS

    @functools.wraps(fn)
    def guarded(*args, **kwargs):
        # TensorFlow's graph mode: the optimizer's step counter is incremented in an op that
        # does not wait for the gradients, so the label assertion may fail after it ran.
        counters = _scalar_optimizer_variables(model) \
            if tf_backend and getattr(model, "steps_per_execution", 1) == 1 else []
        before = [v.value + 0 for v in counters]  # a copy (a read may share the buffer)
        sticky = getattr(model, "_keras_afl_first_verdict", None) if tf_backend else None
        if sticky is not None:
            sticky.assign(sticky * 0)
        if jax_backend:
            _check_pending(model, args[0] if args else None, phase, wait=False)
        try:
            out = fn(*args, **kwargs)
        except BaseException as e:
            if jax_backend and args:
                _give_back_jax_state(model, args[0], phase)
            error = _from_graph_assertion(e)
            if error is not None:
                for v, old in zip(counters, before):
                    v.assign(old)
                raise error from None
            raise
        logs = out[0] if jax_backend else out
        if isinstance(logs, dict) and LOGS_KEY in logs:
            logs = dict(logs)
            info = logs.pop(LOGS_KEY)
            out = (logs, *out[1:]) if jax_backend else logs
            if jax_backend:
                # Read back when ready, not now: a read per step would wait for every step
                # before the next is dispatched (it cost up to 0.9 ms a step at batch 32). The
                # bad step changed nothing; the error comes at a later step or at the latest
                # when Keras puts the state back into the variables (jax_state_sync).
                model._keras_afl_pending = [*_pending(model), (phase, _rules(model).get(phase, []),
                                                               info)]
                return out
            error = _error(_rules(model).get(phase, []), info)
            if error is not None:
                raise error
        return out

    guarded._keras_afl_guarded = True
    return guarded


def _pending(model):
    return getattr(model, "_keras_afl_pending", None) or []


def _check_pending(model, state, phase, wait):
    """Raises the first bad verdict among the JAX steps whose verdicts are ready (all, if
    `wait`), handing Keras `state` (the input of the step about to run) first."""
    pending, keep = _pending(model), []
    for i, (step_phase, rules, info) in enumerate(pending):
        if not wait and not info.is_ready():
            keep.append((step_phase, rules, info))
            continue
        error = _error(rules, info)
        if error is not None:
            model._keras_afl_pending = []
            if state is not None:
                _give_back_jax_state(model, state, phase)
            raise error
    model._keras_afl_pending = keep


def _jax_state_sync(original):
    """JAXTrainer.jax_state_sync (end of each epoch, of fit, of evaluate), then every verdict
    not read yet: the state put back holds no update from a bad step."""

    @functools.wraps(original)
    def jax_state_sync(self):
        original(self)
        if _pending(self):
            _check_pending(self, None, None, wait=True)

    return jax_state_sync


def _scalar_optimizer_variables(model):
    """The optimizer's scalar variables (its iterations), when the model uses a keras_afl loss."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None or not _uses_keras_afl_loss(model):
        return []
    return [v for v in getattr(optimizer, "variables", None) or [] if len(v.shape) == 0]


def _give_back_jax_state(model, state, phase):
    """Hands Keras's JAX trainer the step's state (the input state when the step raised, the
    gated output when its labels were bad), so that `fit`'s final `jax_state_sync` puts the
    weights back into the model's variables (private Keras API: `_keras_compat`)."""
    import jax

    leaves = jax.tree_util.tree_leaves(state)
    if any(getattr(leaf, "is_deleted", lambda: False)() for leaf in leaves):
        return
    if phase == "train":
        names = ("trainable_variables", "non_trainable_variables", "optimizer_variables",
                 "metrics_variables")
    else:
        names = ("trainable_variables", "non_trainable_variables", "metrics_variables")
    _keras_compat.set_jax_state(model, dict(zip(names, state)), sync=phase != "train")


def install():
    """Wraps keras.Model's steps (once per process)."""
    model = keras.Model
    if getattr(model.train_step, "_keras_afl_guard", False):
        return
    stateless = ops().STATELESS_STEPS  # JAX: a step takes and returns the state
    if stateless:
        train, test = _jax_step(model.train_step, "train"), _jax_step(model.test_step, "test")
    else:
        train, test = _stateful_train_step(model.train_step), _plain_step(model.test_step, "test")
    for fn in (train, test):
        fn._keras_afl_guard = True
    model.train_step, model.test_step = train, test
    if stateless:
        wrapper = _keras_compat.JAX_STEP_WRAPPER
        setattr(model, wrapper, _jax_make_function(getattr(model, wrapper)))
        model.jax_state_sync = _jax_state_sync(model.jax_state_sync)
    model.make_train_function = _make_function(model.make_train_function, "train")
    model.make_test_function = _make_function(model.make_test_function, "test")
