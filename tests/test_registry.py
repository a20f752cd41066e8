"""The name registry: lookups, Keras's tables, use_as_builtins, the backend check."""

import keras
import numpy as np
import pytest

import keras_afl
from keras_afl import activations as A
from keras_afl import registry
from tests._checks import run_python


class TestKerasTables:
    # That Keras still has its private tables: tests/test_keras_compat.py.
    def test_every_name_resolves_through_keras(self):
        for e in keras_afl.entries():
            for n in e.all_names:
                got = keras.activations.get(n) if e.kind == "activation" else keras.losses.get(n)
                if e.kind == "activation":
                    assert got is e.obj, n
                else:
                    assert isinstance(got, e.obj), n

    def test_install_never_replaces_a_keras_name(self):
        assert keras.activations.get("relu") is not A.relu
        tables = registry._keras_tables()
        tables["activation"]["afl_relu"] = keras.activations.relu  # pretend Keras owned the name
        try:
            added = registry.install()
            assert "afl_relu" not in added
            assert tables["activation"]["afl_relu"] is keras.activations.relu
        finally:
            tables["activation"]["afl_relu"] = A.relu

    def test_dense_with_string_activation_uses_ours(self):
        layer = keras.layers.Dense(3, activation="afl_relu")
        assert layer.activation is A.relu
        assert keras.layers.Activation("afl_softmax").activation is A.softmax


class TestGet:
    def test_string_gives_function(self):
        assert keras_afl.get("afl_selu") is A.selu

    def test_none_and_callables_pass_through(self):
        assert keras_afl.get(None) is None
        assert keras_afl.get(np.tanh) is np.tanh

    def test_dict_deserializes(self):
        config = keras.saving.serialize_keras_object(A.elu)
        assert keras_afl.get(config) is A.elu

    def test_unknown_name_suggests_closest(self):
        with pytest.raises(ValueError, match=r"Unknown keras_afl name 'afl_rleu'\. Did you mean 'afl_relu'\?.*Valid names: afl_relu"):
            keras_afl.get("afl_rleu")

    def test_kind_filters(self):
        with pytest.raises(ValueError, match="Unknown keras_afl loss name 'afl_relu'"):
            keras_afl.get("afl_relu", kind="loss")
        with pytest.raises(ValueError, match="`kind` must be None, 'activation' or 'loss'; received 'layer'"):
            keras_afl.names("layer")

    def test_wrong_type_raises(self):
        with pytest.raises(TypeError, match=r"Cannot interpret 3 \(type int\)"):
            keras_afl.get(3)

    def test_names_are_unique(self):
        all_names = keras_afl.names()
        assert len(all_names) == len(set(all_names))

    def test_parameters_read_from_signature(self):
        assert keras_afl.entry("afl_leaky_relu").parameters() == {"negative_slope": 0.01}
        assert keras_afl.entry("afl_elu").parameters() == {"alpha": 1.0}


class TestUseAsBuiltins:
    def test_maps_keras_names_then_restores(self):
        keras_relu = keras.activations.get("relu")
        with keras_afl.use_as_builtins():
            assert keras.layers.Dense(2, activation="relu").activation is A.relu
            assert keras.activations.get("sigmoid") is A.sigmoid
        assert keras.activations.get("relu") is keras_relu

    def test_restores_after_error(self):
        keras_tanh = keras.activations.get("tanh")
        with pytest.raises(RuntimeError):
            with keras_afl.use_as_builtins():
                raise RuntimeError("boom")
        assert keras.activations.get("tanh") is keras_tanh

    def test_compile_inside_fit_outside_trains_with_our_loss(self):
        # The example, on a linear output past 1: Keras's BCE clips it and has
        # gradient 0 there (the weights stay put); ours has the gradient at the clip.
        def fitted_kernel(inside):
            keras.utils.set_random_seed(0)
            model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(
                1, kernel_initializer="ones", bias_initializer="zeros")])
            if inside:
                with keras_afl.use_as_builtins():
                    model.compile(keras.optimizers.SGD(0.1), "binary_crossentropy")
            else:
                model.compile(keras.optimizers.SGD(0.1), "binary_crossentropy")
            model.fit(np.ones((4, 3)), np.ones((4, 1)), verbose=0)  # outside the block
            return model.get_weights()[0]

        np.testing.assert_array_equal(fitted_kernel(inside=False), 1.0)  # Keras's: gradient 0
        assert np.all(fitted_kernel(inside=True) > 1.0)                  # ours: it trained

    def test_compile_inside_evaluate_outside_gives_our_loss_and_metrics(self):
        x, y, model = metric_task_data("binary")
        with keras_afl.use_as_builtins():
            model.compile("sgd", loss="binary_focal_crossentropy",
                          metrics=["binary_focal_crossentropy", "mse"])
        got = model.evaluate(x, y, batch_size=len(x), verbose=0, return_dict=True)
        pred = model.predict(x, verbose=0)
        # keras_afl's focal applies alpha = 0.25, as Keras's does only with class balancing.
        ours = float(keras.losses.BinaryFocalCrossentropy(apply_class_balancing=True)(y, pred))
        keras_default = float(keras.losses.BinaryFocalCrossentropy()(y, pred))
        assert abs(ours - keras_default) > 1e-3 * keras_default
        assert got["loss"] == pytest.approx(ours, rel=1e-5)
        assert got["binary_focal_crossentropy"] == pytest.approx(ours, rel=1e-5)
        assert got["mse"] == pytest.approx(float(np.mean((pred - y) ** 2)), rel=1e-5)

    def test_compile_resolves_nested_loss_and_metric_structures(self):
        inputs = keras.Input((4,))
        outputs = {"a": keras.layers.Dense(1, activation="sigmoid", name="a")(inputs),
                   "b": keras.layers.Dense(1, name="b")(inputs)}
        model = keras.Model(inputs, outputs)
        with keras_afl.use_as_builtins():
            model.compile("sgd", loss={"a": "bce", "b": "huber"},
                          metrics={"a": ["binary_focal_crossentropy"], "b": ["mse"]},
                          weighted_metrics={"b": ["mean_squared_error", "mae"]})
        assert model.loss == {"a": "afl_bce", "b": "afl_huber"}
        x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
        y = {"a": (x[:, :1] > 0).astype("float32"), "b": x[:, 1:2]}
        got = model.evaluate(x, y, verbose=0, return_dict=True)
        assert {"a_binary_focal_crossentropy", "b_mse", "b_mean_squared_error", "b_mae"} <= set(got)

    def test_compile_restored_after_the_block_and_after_an_error(self):
        owner = next(c for c in keras.Model.__mro__ if "compile" in vars(c))
        keras_compile = vars(owner)["compile"]
        with keras_afl.use_as_builtins():
            with keras_afl.use_as_builtins("loss"):
                assert vars(owner)["compile"] is not keras_compile
            assert vars(owner)["compile"] is not keras_compile  # the outer block is still open
        assert vars(owner)["compile"] is keras_compile
        with pytest.raises(RuntimeError):
            with keras_afl.use_as_builtins():
                raise RuntimeError("boom")
        assert vars(owner)["compile"] is keras_compile
        with keras_afl.use_as_builtins("activation"):  # no loss names mapped: compile untouched
            assert vars(owner)["compile"] is keras_compile

    def test_kind_activation_leaves_losses_alone(self):
        keras_mse = keras.losses.get("mse")
        with keras_afl.use_as_builtins(kind="activation"):
            assert keras.losses.get("mse") is keras_mse
            assert keras.activations.get("elu") is A.elu


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["numpy", "openvino"])
def test_import_under_unsupported_backend_explains_fix(backend):
    # numpy: Keras imports, keras_afl refuses; openvino: not installed here, so Keras itself
    # fails to import -- the message is keras_afl's either way.
    code = """
        try:
            import keras_afl
        except ImportError as e:
            print("IMPORTERROR:", e)
    """
    out = run_python(code, env={"KERAS_BACKEND": backend})
    assert "IMPORTERROR:" in out and f"{backend!r}" in out, out
    assert "'tensorflow', 'jax', 'torch'" in out and "KERAS_BACKEND" in out, out


def metric_task(entry):
    """The labels and output a keras_afl loss needs when used as a metric, from its registry
    family: one-hot or integer ids on a softmax, else 0/1 labels on a sigmoid."""
    return entry.family if entry.family in ("categorical", "sparse") else "binary"


def metric_task_data(task, n=48, seed=0):
    """(x, y, model) for a task: sigmoid output on 0/1 labels, softmax on one-hot or ids."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype("float32")
    score = x @ np.array([1.0, -2.0, 0.5, 1.5], "float32")
    if task == "binary":
        y, units, act = (score > 0).astype("float32")[:, None], 1, "sigmoid"
    else:
        ids = np.digitize(score, [-1.0, 1.0])
        y = ids.astype("int32") if task == "sparse" else np.eye(3, dtype="float32")[ids]
        units, act = 3, "softmax"
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(units, activation=act)])
    return x, y, model


def metric_names(task):
    return [n for e in keras_afl.entries("loss") if metric_task(e) == task for n in e.all_names]


class TestLossNamesAsMetrics:
    def test_every_loss_is_tested_as_a_metric(self):
        tested = {n for task in ("binary", "categorical", "sparse") for n in metric_names(task)}
        assert tested == {n for e in keras_afl.entries("loss") for n in e.all_names}

    @pytest.mark.parametrize("task", ["binary", "categorical", "sparse"])
    def test_every_loss_name_is_a_metric_in_history_with_the_loss_value(self, task):
        x, y, model = metric_task_data(task)
        names = metric_names(task)
        model.compile(keras.optimizers.SGD(0.1), loss=keras_afl.entry(names[0]).obj(), metrics=names)
        history = model.fit(x, y, epochs=2, batch_size=16, verbose=0).history
        for n in names:
            assert n in history and len(history[n]) == 2 and np.all(np.isfinite(history[n])), n
        # One batch: each metric is the mean of its loss over the samples (default settings).
        got = model.evaluate(x, y, batch_size=len(x), verbose=0, return_dict=True)
        pred = model.predict(x, verbose=0)
        for n in names:
            want = float(keras_afl.entry(n).obj()(y, pred))
            np.testing.assert_allclose(got[n], want, rtol=1e-5, err_msg=n)
        assert got["loss"] == pytest.approx(got[names[0]], rel=1e-6)

    def test_keras_metrics_get_gives_the_loss_function(self):
        for e in keras_afl.entries("loss"):
            for n in e.all_names:
                assert keras.metrics.get(n) is e.function, n
        assert keras_afl.losses.FocalLoss._fn is keras_afl.losses.focal

    def test_loss_metric_is_lower_is_better_for_early_stopping(self):
        # EarlyStopping(mode="auto") must know the direction, as for Keras's loss names.
        x, y, model = metric_task_data("binary")
        model.compile("sgd", loss="afl_bce", metrics=["focal"])
        stop = keras.callbacks.EarlyStopping(monitor="val_focal", patience=1)
        model.fit(x, y, epochs=2, validation_split=0.25, callbacks=[stop], verbose=0)
        assert stop.monitor_op is keras.ops.less


# --------------------------------------------------------------------------- what each is for

def _declared_cases(labels, y_pred, rng, n=6, k=4):
    """(y_true, the prediction a loss with these declared labels and y_pred calls perfect,
    [worse predictions]), built from the declaration alone."""
    smooth = lambda y: (1 - k * 1e-4) * y + 1e-4  # noqa: E731  (a distribution close to y)
    if labels == "real":
        y = rng.normal(size=(n, k))
        return y, y, [y + 1.0, y - 2.0]
    if labels == "non_negative":
        y = rng.uniform(0.5, 4.0, size=(n, k))
        return y, y, [2.0 * y, y / 2.0]
    if labels == "binary":
        y = rng.integers(0, 2, size=(n, k)).astype("float32")
        good = np.clip(y, 1e-4, 1 - 1e-4)
        return y, good, [np.full_like(y, 0.5), 1 - good]
    if labels == "signed":
        t = rng.choice([-1.0, 1.0], size=(n, k))
        return t, 2 * t, [np.zeros_like(t), -2 * t]
    ids = rng.integers(0, k, size=n)
    onehot = np.eye(k, dtype="float32")[ids]
    y = onehot if labels == "one_hot" else ids
    if y_pred == "probabilities":
        good = smooth(onehot)
        return y, good, [np.full_like(good, 1 / k), np.roll(good, 1, axis=-1)]
    if y_pred == "scores":  # categorical hinge: +1 for the class, -1 for the others
        good = 2 * onehot - 1
        return y, good, [np.zeros_like(good), np.roll(good, 1, axis=-1)]
    if y_pred == "values":  # class ids + embeddings (Keras's circle): one unit vector per class
        noise = rng.normal(size=(n, k))
        return ids, onehot, [noise / np.linalg.norm(noise, axis=-1, keepdims=True)]
    if y_pred == "logits":  # label sequences (Keras's ctc): ids 1..k-1, no repeats, 0 = blank
        seq = np.stack([rng.permutation(np.arange(1, k))[:2] for _ in range(n)])
        return seq, 10.0 * np.eye(k, dtype="float32")[seq], [np.zeros((n, 2, k), "float32")]
    raise AssertionError((labels, y_pred))


def _mean_loss(loss, y, p):
    return float(np.mean(keras.ops.convert_to_numpy(loss(y, p.astype("float32")))))


def _keras_class(d):
    return next(cls for fn, cls, x in registry._purpose.keras_rows() if x is d)


class TestPurpose:
    def test_every_entry_has_a_family_y_pred_and_labels_from_the_allowed_sets(self):
        for e in keras_afl.entries("loss"):
            assert e.family in registry.LOSS_FAMILIES, e.name
            assert e.y_pred in registry.Y_PRED_KINDS, e.name
            assert e.labels in registry.LABEL_FORMATS, e.name
        for e in keras_afl.entries("activation"):
            assert e.family in registry.ACTIVATION_FAMILIES, e.name
            assert e.y_pred in registry.Y_PRED_KINDS and e.labels is None, e.name
        assert set(registry.LOSS_FAMILIES) == {"regression", "binary", "categorical", "sparse"}

    def test_entry_refuses_words_outside_the_vocabularies(self):
        with pytest.raises(ValueError, match=r"'x': `family` must be one of regression, binary"):
            registry.Entry("x", "loss", keras_afl.losses.Hinge, family="multilabel",
                           y_pred="scores", labels="signed")
        with pytest.raises(ValueError, match="`labels` is for losses"):
            registry.Entry("x", "activation", A.relu, family="elementwise", y_pred="values",
                           labels="real")

    def test_loss_family_is_the_module_its_function_lives_in(self):
        # keras_afl.losses has one module (or folder of modules) per family (regression,
        # binary, categorical, sparse).
        for e in keras_afl.entries("loss"):
            module = e.function.__module__
            assert module == f"keras_afl.losses.{e.family}" or module.startswith(
                f"keras_afl.losses.{e.family}."), (e.name, module)

    def test_activation_family_and_output_match_behaviour(self):
        x = np.array([[-3.0, 0.5, 2.0], [1.0, -1.0, 0.0]], "float32")
        for e in keras_afl.entries("activation"):
            y = keras.ops.convert_to_numpy(e.obj(x))
            if e.family == "axis":  # normalises along its axis: sums to 1 there
                np.testing.assert_allclose(y.sum(axis=-1), 1.0, rtol=1e-6, err_msg=e.name)
            else:  # element by element: each value alone gives the same output
                alone = [float(keras.ops.convert_to_numpy(e.obj(x[i:i + 1, j:j + 1]))[0, 0])
                         for i in range(2) for j in range(3)]
                np.testing.assert_allclose(y.ravel(), alone, rtol=1e-6, err_msg=e.name)
            assert {"probabilities": (y.min() >= 0) and (y.max() <= 1),
                    "non_negative": y.min() >= 0, "values": y.min() < 0}[e.y_pred], e.name

    @pytest.mark.parametrize("name", [e.name for e in keras_afl.entries("loss")])
    def test_declared_labels_and_y_pred_match_behaviour(self, name):
        e = keras_afl.entry(name)
        y, good, worse = _declared_cases(e.labels, e.y_pred, np.random.default_rng(0))
        loss = e.obj(reduction=None)
        best = _mean_loss(loss, y, good)
        assert np.isfinite(best) and best < 1e-2, (name, best)
        for bad in worse:
            assert _mean_loss(loss, y, bad) > best + 1e-2, name

    @pytest.mark.parametrize("name", [e.name for e in keras_afl.entries("loss")])
    def test_from_logits_switches_probabilities_to_logits(self, name):
        e = keras_afl.entry(name)
        if not e.has_from_logits:
            assert e.expects() == e.y_pred
            with pytest.raises(ValueError, match=f"`from_logits`: '{name}' has no from_logits"):
                e.expects(from_logits=True)
            return
        assert (e.y_pred, e.expects(from_logits=True)) == ("probabilities", "logits")
        rng = np.random.default_rng(1)
        y, _, _ = _declared_cases(e.labels, e.y_pred, rng)
        z = rng.normal(size=(6, 4)).astype("float32")
        # binary: each output through a sigmoid; categorical / sparse: a softmax over the classes
        p = keras.ops.sigmoid(z) if e.family == "binary" else keras.ops.softmax(z)
        np.testing.assert_allclose(_mean_loss(e.obj(from_logits=True, reduction=None), y, z),
                                   _mean_loss(e.obj(reduction=None), y,
                                              keras.ops.convert_to_numpy(p)), rtol=1e-4)

    def test_expects_refuses_an_activation(self):
        with pytest.raises(ValueError, match="'afl_sigmoid' is an activation, not a loss"):
            keras_afl.entry("afl_sigmoid").expects()


# Every Keras loss lint and the configs accept: its public functions and classes, and every
# name keras.losses.get resolves (aliases: mse, mae, mape, msle, kld, bce, MSE, ...).
KERAS_LOSS_NAMES = sorted(
    {n for n in dir(keras.losses) if not n.startswith("_")
     and n not in ("get", "serialize", "deserialize", "Loss")}
    | {n for n in registry._keras_tables()["loss"] if n not in keras_afl.names("loss")
       and n not in ("Loss", "LossFunctionWrapper")})


class TestKerasLosses:
    @pytest.mark.parametrize("name", KERAS_LOSS_NAMES)
    def test_every_keras_loss_has_a_description(self, name):
        obj = getattr(keras.losses, name, None)
        forms = [obj] if obj is not None else []
        try:
            keras.losses.get(name)
            forms.append(name)
        except (ValueError, TypeError):
            pass  # a public class Keras's get() does not know (CategoricalGeneralizedCrossEntropy)
        assert forms
        for form in forms:
            d = registry.describe_loss(form)
            assert d is not None and d.origin == "keras", (
                f"Keras's loss {name!r} has no description: add it to "
                "keras_afl/_registry_table.py KERAS_LOSSES")
            assert registry.KERAS_LOSSES[d.name] == d

    def test_aliases_objects_classes_and_functions_agree(self):
        k = keras.losses
        assert {registry.describe_loss(x).name for x in (
            "kld", "KLD", "kl_divergence", k.KLDivergence, k.KLDivergence(),
            k.kl_divergence)} == {"kl_divergence"}
        for alias, fn in (("mse", "mean_squared_error"), ("mae", "mean_absolute_error"),
                          ("mape", "mean_absolute_percentage_error"), ("bce", "binary_crossentropy"),
                          ("msle", "mean_squared_logarithmic_error"), ("poisson", "poisson")):
            assert registry.describe_loss(alias) == registry.KERAS_LOSSES[fn], alias

    def test_kld_and_poisson_facts(self):
        kld, poisson = registry.KERAS_LOSSES["kl_divergence"], registry.KERAS_LOSSES["poisson"]
        assert (kld.family, kld.y_pred, kld.labels) == ("categorical", "probabilities", "one_hot")
        assert (poisson.family, poisson.y_pred, poisson.labels) == (
            "regression", "non_negative", "non_negative")
        # Keras's kld clips y_pred to [eps, 1] (probabilities, not logits): a logit of 3 counts as 1
        y = np.array([[0.2, 0.8]], "float32")
        assert float(keras.losses.kl_divergence(y, np.array([[3.0, 1.0]], "float32"))[0]) == \
            pytest.approx(float(keras.losses.kl_divergence(y, np.array([[1.0, 1.0]], "float32"))[0]))
        # Keras's poisson needs a rate > 0: a negative prediction gives NaN
        assert np.isnan(float(keras.losses.poisson(np.array([[1.0]]), np.array([[-0.5]]))[0]))

    @pytest.mark.parametrize("name", sorted(registry.KERAS_LOSSES))
    def test_declared_labels_and_y_pred_match_keras_behaviour(self, name):
        d = registry.KERAS_LOSSES[name]
        loss = _keras_class(d)(reduction=None)
        y, good, worse = _declared_cases(d.labels, d.y_pred, np.random.default_rng(0))
        best = _mean_loss(loss, y, good)
        assert np.isfinite(best), name
        for bad in worse:
            assert _mean_loss(loss, y, bad) > best + 1e-3, name

    @pytest.mark.parametrize("name", sorted(n for n, d in registry.KERAS_LOSSES.items()
                                            if d.has_from_logits))
    def test_keras_from_logits_switches_probabilities_to_logits(self, name):
        d = registry.KERAS_LOSSES[name]
        assert d.expects(from_logits=True) == "logits"
        cls = _keras_class(d)
        rng = np.random.default_rng(1)
        y, _, _ = _declared_cases(d.labels, d.y_pred, rng)
        z = rng.normal(size=(6, 4)).astype("float32")
        p = keras.ops.sigmoid(z) if d.family == "binary" else keras.ops.softmax(z)
        np.testing.assert_allclose(_mean_loss(cls(from_logits=True, reduction=None), y, z),
                                   _mean_loss(cls(reduction=None), y,
                                              keras.ops.convert_to_numpy(p)), rtol=1e-4)

    def test_describe_loss_keeps_the_from_logits_setting(self):
        import functools

        assert registry.describe_loss(
            keras.losses.CategoricalCrossentropy(from_logits=True)).expects() == "logits"
        assert registry.describe_loss(functools.partial(
            keras.losses.binary_crossentropy, from_logits=True)).expects() == "logits"
        d = registry.describe_loss(keras_afl.losses.FocalLoss(from_logits=True))
        assert (d.origin, d.name, d.expects(), d.expects(from_logits=False)) == (
            "keras_afl", "focal", "logits", "probabilities")
        assert registry.describe_loss("afl_focal") == registry.describe_loss(keras_afl.losses.focal)

    def test_describe_loss_custom_unknown_and_wrong_type(self):
        assert registry.describe_loss(lambda y_true, y_pred: y_pred) is None
        with pytest.raises(ValueError, match=r"Unknown loss name 'focl'\. Did you mean 'focal'\?"):
            registry.describe_loss("focl")
        with pytest.raises(TypeError, match=r"`loss` must be a loss name.*received 42"):
            registry.describe_loss(42)


def test_docs_name_every_word_of_the_vocabularies():
    import os

    from tests._checks import REPO

    with open(os.path.join(REPO, "docs", "names-saving-serving.md"), encoding="utf-8") as f:
        text = f.read()
    section = text[text.index("## Names as strings"):text.index("## Saving and loading")]
    for words in (registry.LOSS_FAMILIES, registry.ACTIVATION_FAMILIES, registry.Y_PRED_KINDS,
                  registry.LABEL_FORMATS):
        for word in words:
            assert f"`{word}`" in section, word
