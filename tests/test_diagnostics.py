"""keras_afl.lint, `keras-afl lint`, keras_afl.callbacks.ActivationStats, and their config keys."""

import copy
import functools
import glob
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
import yaml

import keras_afl
from keras_afl import diagnostics
from keras_afl.callbacks import ActivationStats
from keras_afl.cli import demo as cli_demo
from keras_afl.cli import main
from tests._checks import REPO

L = keras.layers
AFL = keras_afl.layers


def seq(*layers, n_in=8):
    return keras.Sequential([keras.Input((n_in,)), *layers])


def rules(findings):
    return sorted(f.rule for f in findings)


def one(findings, rule):
    hits = [f for f in findings if f.rule == rule]
    assert len(hits) == 1, str(findings)
    return hits[0]


# --------------------------------------------------------------------------- output + loss

SOFTMAX_OUTPUTS = {
    "Dense(activation='softmax')": lambda: [L.Dense(3, activation="softmax")],
    "Dense(activation=keras_afl fn)": lambda: [L.Dense(3, activation=keras_afl.activations.softmax)],
    "keras Softmax layer": lambda: [L.Dense(3), L.Softmax()],
    "keras_afl Softmax layer": lambda: [L.Dense(3), AFL.Softmax()],
    "Activation('afl_softmax')": lambda: [L.Dense(3), L.Activation("afl_softmax")],
}
SIGMOID_OUTPUTS = {
    "Dense(activation='sigmoid')": lambda n=1: [L.Dense(n, activation="sigmoid")],
    "Dense(activation=tf.nn.sigmoid)": lambda n=1: [L.Dense(n, activation=tf.nn.sigmoid)],
    "keras_afl Sigmoid layer": lambda n=1: [L.Dense(n), AFL.Sigmoid()],
    "Activation(keras.activations.sigmoid)": lambda n=1: [L.Dense(n),
                                                          L.Activation(keras.activations.sigmoid)],
}
BINARY_LOSSES = {
    "'binary_crossentropy'": lambda: "binary_crossentropy",
    "'afl_bce'": lambda: "afl_bce",
    "'focal'": lambda: "focal",
    "keras BinaryCrossentropy()": lambda: keras.losses.BinaryCrossentropy(),
    "keras BinaryFocalCrossentropy()": lambda: keras.losses.BinaryFocalCrossentropy(),
    "keras_afl FocalLoss()": lambda: keras_afl.losses.FocalLoss(),
    "keras fn binary_crossentropy": lambda: keras.losses.binary_crossentropy,
    "keras_afl class BinaryCrossentropy": lambda: keras_afl.losses.BinaryCrossentropy,
}
CATEGORICAL_LOSSES = {
    "'categorical_crossentropy'": lambda: "categorical_crossentropy",
    "'sparse_categorical_crossentropy'": lambda: "sparse_categorical_crossentropy",
    "'afl_cce'": lambda: "afl_cce",
    "'categorical_focal'": lambda: "categorical_focal",
    "keras CategoricalCrossentropy()": lambda: keras.losses.CategoricalCrossentropy(),
    "keras_afl SparseCategoricalFocalLoss()": lambda: keras_afl.losses.SparseCategoricalFocalLoss(),
    "keras_afl fn categorical_crossentropy": lambda: keras_afl.losses.categorical_crossentropy,
}


@pytest.mark.parametrize("out", sorted(SOFTMAX_OUTPUTS))
@pytest.mark.parametrize("loss", sorted(BINARY_LOSSES))
def test_softmax_with_binary_loss_is_an_error(out, loss):
    f = one(keras_afl.lint(seq(*SOFTMAX_OUTPUTS[out]()), loss=BINARY_LOSSES[loss]()),
            "softmax-binary-loss")
    assert f.severity == "error" and "3 units" in f.where and "categorical_crossentropy" in f.fix


@pytest.mark.parametrize("out", sorted(SOFTMAX_OUTPUTS))
@pytest.mark.parametrize("loss", sorted(CATEGORICAL_LOSSES))
def test_softmax_with_categorical_loss_is_clean(out, loss):
    assert rules(keras_afl.lint(seq(*SOFTMAX_OUTPUTS[out]()), loss=CATEGORICAL_LOSSES[loss]())) == []


@pytest.mark.parametrize("out", sorted(SIGMOID_OUTPUTS))
@pytest.mark.parametrize("loss", sorted(CATEGORICAL_LOSSES))
def test_sigmoid_with_categorical_loss_is_an_error(out, loss):
    f = one(keras_afl.lint(seq(*SIGMOID_OUTPUTS[out](3)), loss=CATEGORICAL_LOSSES[loss]()),
            "sigmoid-categorical-loss")
    assert f.severity == "error"


def test_sigmoid_single_unit_with_categorical_loss_says_the_loss_is_constant():
    f = one(keras_afl.lint(seq(L.Dense(1, activation="sigmoid")), "categorical_crossentropy"),
            "sigmoid-categorical-loss")
    assert "constant" in f.message


@pytest.mark.parametrize("out", sorted(SIGMOID_OUTPUTS))
@pytest.mark.parametrize("loss", sorted(BINARY_LOSSES))
def test_sigmoid_with_binary_loss_is_clean(out, loss):
    assert rules(keras_afl.lint(seq(*SIGMOID_OUTPUTS[out]()), loss=BINARY_LOSSES[loss]())) == []


@pytest.mark.parametrize("loss", sorted(BINARY_LOSSES) + ["'categorical_crossentropy'"])
def test_linear_output_with_from_logits_false_is_an_error(loss):
    make = {**BINARY_LOSSES, **CATEGORICAL_LOSSES}[loss]
    f = one(keras_afl.lint(seq(L.Dense(1)), loss=make()), "linear-output-probability-loss")
    assert f.severity == "error" and "from_logits=True" in f.fix


@pytest.mark.parametrize("loss", [
    keras.losses.BinaryCrossentropy(from_logits=True),
    keras_afl.losses.FocalLoss(from_logits=True),
    keras_afl.losses.CategoricalCrossentropy(from_logits=True),
    functools.partial(keras.losses.binary_crossentropy, from_logits=True),
], ids=["keras BCE", "afl focal", "afl CCE", "partial(keras fn)"])
def test_linear_output_with_from_logits_true_is_clean(loss):
    assert rules(keras_afl.lint(seq(L.Dense(2), L.Dropout(0.1)), loss=loss)) == []


@pytest.mark.parametrize("model, loss", [
    (lambda: seq(L.Dense(1, activation="sigmoid")), keras.losses.BinaryCrossentropy(from_logits=True)),
    (lambda: seq(L.Dense(1), AFL.Sigmoid()), keras_afl.losses.FocalLoss(from_logits=True)),
    (lambda: seq(L.Dense(3), AFL.Softmax()), keras_afl.losses.CategoricalCrossentropy(from_logits=True)),
], ids=["keras sigmoid + keras BCE", "afl Sigmoid + afl focal", "afl Softmax + afl CCE"])
def test_probability_output_with_from_logits_true_is_a_warning(model, loss):
    f = one(keras_afl.lint(model(), loss=loss), "probability-output-from-logits")
    assert f.severity == "warning"



# --------------------------------------------------------------------------- the registry's table

ALL_LOSS_NAMES = sorted(set(keras_afl.registry.KERAS_LOSSES) | set(keras_afl.names("loss")))


@pytest.mark.parametrize("name", ALL_LOSS_NAMES)
def test_lint_and_the_config_checker_classify_every_loss_alike(name):
    # Both read keras_afl.registry.describe_loss; before, each guessed from the name and they
    # disagreed (kld: "onehot" in configs, unrecognised in lint; dice, ctc: "regression").
    from keras_afl.cli import config as cli_config
    from keras_afl.diagnostics import _rules

    try:
        loss = keras.losses.get(name) and name
    except ValueError:  # a public Keras loss its get() does not resolve: pass the function
        loss = getattr(keras.losses, name)
    d = keras_afl.registry.describe_loss(loss)
    assert _rules._describe_loss(loss).family == d.family
    assert cli_config.loss_kind(loss)[0] == cli_config.TARGETS[d.family]


@pytest.mark.parametrize("loss", ["kld", keras.losses.KLDivergence(), "dice", "tversky"])
def test_a_loss_of_probabilities_without_from_logits_on_a_linear_output_is_an_error(loss):
    f = one(keras_afl.lint(seq(L.Dense(3)), loss=loss), "linear-output-probability-loss")
    assert f.severity == "error" and "from_logits" not in f.fix and "softmax" in f.fix


def test_kld_pairs_with_softmax_not_sigmoid():
    assert rules(keras_afl.lint(seq(L.Dense(3, activation="softmax")), loss="kld")) == []
    one(keras_afl.lint(seq(L.Dense(3, activation="sigmoid")), loss="kld"),
        "sigmoid-categorical-loss")


@pytest.mark.parametrize("loss", ["poisson", "msle", "cosine_similarity", "log_cosh", "mape"])
def test_every_keras_regression_loss_on_a_sigmoid_output_is_flagged(loss):
    one(keras_afl.lint(seq(L.Dense(1, activation="sigmoid")), loss=loss),
        "regression-loss-classification-output")
    assert rules(keras_afl.lint(seq(L.Dense(1)), loss=loss)) == []


@pytest.mark.parametrize("loss", ["hinge", "squared_hinge", "categorical_hinge", "afl_hinge"])
def test_every_loss_of_scores_on_a_bounded_output_is_flagged(loss):
    one(keras_afl.lint(seq(L.Dense(3, activation="softmax")), loss=loss), "hinge-bounded-output")
    assert rules(keras_afl.lint(seq(L.Dense(3)), loss=loss)) == []


def test_keras_ctc_reads_logits_so_a_softmax_output_is_an_error():
    # Keras's ctc has no from_logits setting: it always normalises y_pred itself.
    f = one(keras_afl.lint(seq(L.Dense(4, activation="softmax")), loss="ctc"),
            "probability-output-from-logits")
    assert f.severity == "error" and "from_logits=True" not in f.fix
    assert rules(keras_afl.lint(seq(L.Dense(4)), loss=keras.losses.CTC())) == []


# Every Keras and keras_afl loss that takes from_logits, with from_logits=True.
FROM_LOGITS_LOSSES = {
    **{f"keras {n}": (lambda n=n: getattr(keras.losses, n)(from_logits=True)) for n in (
        "BinaryCrossentropy", "CategoricalCrossentropy", "SparseCategoricalCrossentropy",
        "BinaryFocalCrossentropy", "CategoricalFocalCrossentropy")},
    **{f"keras_afl {n}": (lambda n=n: getattr(keras_afl.losses, n)(from_logits=True)) for n in (
        "BinaryCrossentropy", "CategoricalCrossentropy", "SparseCategoricalCrossentropy",
        "FocalLoss", "CategoricalFocalLoss", "SparseCategoricalFocalLoss")},
    "keras fn sparse_categorical_crossentropy": lambda: functools.partial(
        keras.losses.sparse_categorical_crossentropy, from_logits=True),
    "keras fn binary_focal_crossentropy": lambda: functools.partial(
        keras.losses.binary_focal_crossentropy, from_logits=True),
}
PROBABILITY_OUTPUTS = {**SOFTMAX_OUTPUTS, **SIGMOID_OUTPUTS}


@pytest.mark.parametrize("out", sorted(PROBABILITY_OUTPUTS))
@pytest.mark.parametrize("loss", sorted(FROM_LOGITS_LOSSES))
def test_every_from_logits_loss_on_a_probability_output_is_flagged(out, loss):
    found = keras_afl.lint(seq(*PROBABILITY_OUTPUTS[out]()), loss=FROM_LOGITS_LOSSES[loss]())
    f = one(found, "probability-output-from-logits")
    keras_focal = loss.startswith("keras ") and "focal" in loss.lower()
    assert f.severity == ("error" if keras_focal else "warning"), str(f)
    assert "compile()" in f.fix


def _task_model_like_keras_hub(activation):
    """A functional model whose compile(loss="auto") picks its loss from the output activation
    as KerasHub's ImageClassifier does: logits unless it is keras.activations.softmax itself."""

    class Task(keras.Model):
        def compile(self, loss="auto", **kwargs):
            if loss == "auto":
                act = self.layers[-1].activation
                loss = keras.losses.SparseCategoricalCrossentropy(
                    from_logits=act is not keras.activations.softmax)
            super().compile(loss=loss, **kwargs)

    inputs = keras.Input((8,))
    model = Task(inputs, L.Dense(3, activation=activation)(inputs))
    model.compile()
    return model


def test_task_model_picking_a_logits_loss_for_afl_softmax_is_flagged():
    assert rules(keras_afl.lint(_task_model_like_keras_hub("softmax"))) == []
    f = one(keras_afl.lint(_task_model_like_keras_hub("afl_softmax")),
            "probability-output-from-logits")
    assert "SparseCategoricalCrossentropy" in f.where and "KerasHub" in f.fix


def test_keras_cross_entropy_from_logits_on_a_mixed_precision_output_is_an_error():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = seq(L.Dense(3, activation="afl_softmax"))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    f = one(keras_afl.lint(model, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)),
            "probability-output-from-logits")
    assert f.severity == "error" and "float16" in f.message
    # keras_afl's loss keeps the logits across the cast: a warning.
    f = one(keras_afl.lint(model, loss=keras_afl.losses.SparseCategoricalCrossentropy(from_logits=True)),
            "probability-output-from-logits")
    assert f.severity == "warning"


@pytest.mark.parametrize("case", ["keras focal", "keras SCCE, mixed_float16", "keras SCCE",
                                  "keras_afl focal", "keras_afl SCCE, mixed_float16"])
def test_severity_matches_what_the_loss_computes_in_fit(case):
    # The severities above rest on what Keras computes (Keras 3.15, in this run): the loss
    # that evaluate() reports vs the same loss of the logits. Error cases read the
    # probabilities as logits; warning cases recover the logits.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    ids = rng.integers(0, 3, 64)
    binary = "focal" in case
    y = (ids[:, None] > 0).astype("float32") if binary else ids
    lib = keras.losses if case.startswith("keras ") else keras_afl.losses
    make = ((lambda: keras.losses.BinaryFocalCrossentropy(from_logits=True)) if case == "keras focal"
            else (lambda: lib.FocalLoss(from_logits=True)) if binary
            else (lambda: lib.SparseCategoricalCrossentropy(from_logits=True)))
    keras.utils.set_random_seed(0)
    if "mixed" in case:
        keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = keras.Sequential([keras.Input((4,)),
                                  L.Dense(1 if binary else 3, activation="sigmoid" if binary else "softmax")])
    finally:
        keras.mixed_precision.set_global_policy("float32")
    model.compile("sgd", loss=make(), jit_compile=False)
    got = model.evaluate(x, y, batch_size=len(x), verbose=0)
    kernel, bias = model.layers[-1].get_weights()
    of_logits = float(make()(y, (x @ kernel.astype("float32") + bias.astype("float32"))))
    severity = one(keras_afl.lint(model), "probability-output-from-logits").severity
    if severity == "error":
        assert abs(got - of_logits) > 0.05 * of_logits, (got, of_logits)
    else:
        assert got == pytest.approx(of_logits, rel=2e-3)
    assert severity == ("warning" if case in ("keras SCCE", "keras_afl focal",
                                              "keras_afl SCCE, mixed_float16") else "error")


def _stable_id(value):
    """A test id without memory addresses (the same in every process, as pytest-xdist needs)."""
    if value is None or isinstance(value, str):
        return str(value)
    return f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', type(value).__qualname__)}"


@pytest.mark.parametrize("loss", ["hinge", "afl_hinge", keras_afl.losses.Hinge(),
                                  keras.losses.Hinge()], ids=lambda v: _stable_id(v))
def test_hinge_on_bounded_output_is_flagged_and_on_linear_output_is_clean(loss):
    f = one(keras_afl.lint(seq(L.Dense(1), AFL.Sigmoid()), loss=loss), "hinge-bounded-output")
    assert "linear output" in f.fix
    assert rules(keras_afl.lint(seq(L.Dense(1)), loss=loss)) == []


@pytest.mark.parametrize("loss", ["mse", "afl_mse", keras.losses.MeanSquaredError(), "afl_huber",
                                  keras.losses.mean_absolute_error], ids=lambda v: _stable_id(v))
def test_regression_loss_on_classification_output_is_flagged_and_on_linear_is_clean(loss):
    f = one(keras_afl.lint(seq(L.Dense(3), L.Softmax()), loss=loss),
            "regression-loss-classification-output")
    assert f.severity == "warning"
    assert rules(keras_afl.lint(seq(L.Dense(1)), loss=loss)) == []


def test_softmax_over_one_unit_is_an_error_and_over_two_is_not():
    f = one(keras_afl.lint(seq(L.Dense(1, activation="softmax")), "categorical_crossentropy"),
            "softmax-single-unit")
    assert f.severity == "error"
    assert rules(keras_afl.lint(seq(L.Dense(2, activation="softmax")),
                                "categorical_crossentropy")) == []


# --------------------------------------------------------------------------- SELU

def test_selu_without_lecun_normal_is_flagged_for_each_feeding_layer():
    model = seq(L.Dense(8, activation="selu", name="a"),
                L.Dense(8, name="b"), AFL.SELU(name="b_selu"),
                L.Dense(8, name="c"), L.AlphaDropout(0.1), L.Activation("afl_selu", name="c_selu"),
                L.Dense(1, kernel_initializer="lecun_normal"))
    found = [f for f in keras_afl.lint(model, "mse") if f.rule == "selu-initializer"]
    assert sorted(f.where for f in found) == ["layer 'a'", "layer 'b' -> 'b_selu'",
                                              "layer 'c' -> 'c_selu'"]
    assert all("lecun_normal" in f.fix for f in found)


@pytest.mark.parametrize("init", ["lecun_normal", keras.initializers.LecunNormal(seed=1),
                                  keras.initializers.VarianceScaling(1.0, "fan_in", "normal")],
                         ids=["string", "LecunNormal", "VarianceScaling equivalent"])
def test_selu_stack_with_lecun_normal_and_alpha_dropout_is_clean(init):
    model = seq(L.Dense(16, activation="selu", kernel_initializer=init),
                L.AlphaDropout(0.05),
                L.Dense(16, kernel_initializer=init), AFL.SELU(),
                L.Dense(3, activation="softmax"))
    assert rules(keras_afl.lint(model, "sparse_categorical_crossentropy")) == []


def test_batchnorm_and_plain_dropout_in_a_selu_stack_are_flagged():
    model = seq(L.Dense(8, activation="selu", kernel_initializer="lecun_normal"),
                L.BatchNormalization(name="bn"), L.Dropout(0.2, name="drop"),
                L.Dense(8, kernel_initializer="lecun_normal", activation="selu"), L.Dense(1))
    found = keras_afl.lint(model, "mse")
    assert rules(found) == ["selu-batchnorm", "selu-dropout"]
    assert one(found, "selu-dropout").where == "layer 'drop'"
    assert "AlphaDropout" in one(found, "selu-dropout").fix


def test_batchnorm_and_dropout_in_a_relu_stack_are_fine():
    model = seq(L.Dense(8), L.BatchNormalization(), L.ReLU(), L.Dropout(0.2), L.Dense(1))
    assert rules(keras_afl.lint(model, "mse")) == []


# --------------------------------------------------------------------------- deep stacks, slopes

def test_four_saturating_hidden_layers_are_flagged_across_layer_kinds():
    model = seq(L.Dense(8, activation="tanh", name="t1"), L.Dense(8, activation="sigmoid"),
                L.Dense(8), AFL.Tanh(), L.Dense(8), L.Activation("afl_sigmoid", name="s4"),
                L.Dense(1))
    f = one(keras_afl.lint(model, "mse"), "deep-saturating-stack")
    assert f.where == "layers 't1' ... 's4'" and "4 consecutive" in f.message
    assert "ReLU or ELU" in f.fix


def test_three_saturating_hidden_layers_plus_a_sigmoid_output_are_fine():
    model = seq(*[L.Dense(8, activation="tanh") for _ in range(3)],
                L.Dense(1, activation="sigmoid"))
    assert rules(keras_afl.lint(model, "binary_crossentropy")) == []


def test_a_relu_layer_breaks_a_saturating_run():
    model = seq(*[L.Dense(8, activation="tanh") for _ in range(2)], L.Dense(8, activation="relu"),
                *[L.Dense(8, activation="tanh") for _ in range(2)], L.Dense(1))
    assert rules(keras_afl.lint(model, "mse")) == []


@pytest.mark.parametrize("layer, severity", [
    (lambda: L.LeakyReLU(negative_slope=1.5), "warning"),
    # keras_afl's LeakyReLU layer refuses a negative slope (as Keras's); the function takes one.
    (lambda: L.Activation(functools.partial(keras_afl.activations.leaky_relu, negative_slope=-0.1)),
     "warning"),
    (lambda: L.ReLU(negative_slope=1.0), "warning"),
    (lambda: AFL.PReLU(alpha_initializer=keras.initializers.Constant(2.0)), "warning"),
    (lambda: L.PReLU(), "info"),  # Keras's default: alpha 0, a plain ReLU
], ids=["keras LeakyReLU 1.5", "afl leaky_relu -0.1", "keras ReLU slope 1", "afl PReLU init 2",
        "keras PReLU default"])
def test_slope_outside_zero_one_is_flagged(layer, severity):
    f = one(keras_afl.lint(seq(L.Dense(4), layer(), L.Dense(1)), "mse"), "leaky-slope")
    assert f.severity == severity


@pytest.mark.parametrize("layer", [
    lambda: L.LeakyReLU(negative_slope=0.2), lambda: AFL.LeakyReLU(), lambda: AFL.PReLU(),
    lambda: L.PReLU(alpha_initializer=keras.initializers.Constant(0.1)),
    lambda: L.Activation("leaky_relu")], ids=["keras Leaky", "afl Leaky", "afl PReLU",
                                              "keras PReLU 0.1", "Activation('leaky_relu')"])
def test_slope_inside_zero_one_is_clean(layer):
    assert rules(keras_afl.lint(seq(L.Dense(4), layer(), L.Dense(1)), "mse")) == []


def test_prelu_current_alpha_values_are_read_when_built():
    prelu = AFL.PReLU()
    model = seq(L.Dense(4), prelu, L.Dense(1))
    assert rules(keras_afl.lint(model, "mse")) == []
    prelu.alpha.assign([1.5, 0.25, 0.25, -0.5])  # as training might leave them
    f = one(keras_afl.lint(model, "mse"), "leaky-slope")
    assert "2 of 4" in f.message and "min -0.5" in f.message and "max 1.5" in f.message


def test_prelu_initializer_is_read_when_not_built():
    model = keras.Sequential([L.Dense(4), L.PReLU(alpha_initializer=keras.initializers.Constant(-0.5)),
                              L.Dense(1)])
    f = one(keras_afl.lint(model, "mse"), "leaky-slope")
    assert "alpha_initializer constant -0.5" in f.message


# --------------------------------------------------------------------------- whole models

def well_built_models():
    relu_mlp = seq(L.Dense(32, activation="relu"), L.Dense(16), L.ReLU(), L.Dense(1), AFL.Sigmoid())
    relu_mlp.compile("adam", loss="binary_crossentropy")
    softmax = seq(L.Dense(32, activation="afl_elu"), L.Dense(5, activation="softmax"))
    softmax.compile("adam", loss=keras_afl.losses.CategoricalCrossentropy())
    selu = seq(*[L.Dense(16, activation="selu", kernel_initializer="lecun_normal") for _ in range(4)],
               L.AlphaDropout(0.1), L.Dense(4, kernel_initializer="lecun_normal"), AFL.Softmax())
    selu.compile("adam", loss="afl_sparse_categorical_crossentropy")
    demo = cli_demo.build_model(8)
    demo.compile("adam", loss="focal")
    return {"relu mlp": relu_mlp, "softmax": softmax, "selu": selu, "demo": demo}


@pytest.mark.parametrize("name", sorted(well_built_models()))
def test_well_built_compiled_models_give_no_findings(name):
    findings = keras_afl.lint(well_built_models()[name])
    assert list(findings) == [] and str(findings) == "no findings"


def test_compiled_loss_is_used_and_an_explicit_loss_overrides_it():
    model = seq(L.Dense(3, activation="softmax"))
    model.compile("adam", loss="binary_crossentropy")
    assert rules(keras_afl.lint(model)) == ["softmax-binary-loss"]
    assert rules(keras_afl.lint(model, loss="categorical_crossentropy")) == []


def test_no_loss_and_an_unknown_loss_are_info():
    f = one(keras_afl.lint(seq(L.Dense(1))), "no-loss")
    assert f.severity == "info"

    def my_loss(y_true, y_pred):
        return y_true - y_pred

    f = one(keras_afl.lint(seq(L.Dense(1)), loss=my_loss), "loss-not-recognised")
    assert f.severity == "info" and "my_loss" in f.where


def functional_two_outputs():
    x = keras.Input((4,), name="x")
    h = L.Dense(8, activation="relu")(x)
    a = L.Dense(1, activation="sigmoid", name="is_positive")(h)
    b = L.Activation("softmax", name="digit")(L.Dense(3)(L.Dropout(0.1)(h)))
    return keras.Model(x, {"is_positive": a, "digit": b})


def test_functional_model_pairs_each_output_with_its_loss():
    model = functional_two_outputs()
    ok = {"is_positive": "binary_crossentropy", "digit": "categorical_crossentropy"}
    assert rules(keras_afl.lint(model, loss=ok)) == []
    bad = {"is_positive": "binary_crossentropy", "digit": "binary_crossentropy"}
    f = one(keras_afl.lint(model, loss=bad), "softmax-binary-loss")
    assert f.where.startswith("output 'digit'")
    model.compile("adam", loss=bad)
    assert rules(keras_afl.lint(model)) == ["softmax-binary-loss"]
    by_name = {"digit": "categorical_crossentropy", "is_positive": "hinge"}
    as_list = [by_name[n] for n in model.output_names]  # a list follows model.outputs' order
    assert rules(keras_afl.lint(model, loss=as_list)) == ["hinge-bounded-output"]


def test_nested_model_layers_are_checked():
    inner = keras.Sequential([keras.Input((4,)), L.Dense(8, activation="selu", name="inner_selu")])
    x = keras.Input((4,))
    model = keras.Model(x, L.Dense(1, activation="sigmoid")(inner(x)))
    assert one(keras_afl.lint(model, "bce"), "selu-initializer").where == "layer 'inner_selu'"


def test_producer_finds_the_layer_behind_a_symbolic_tensor():
    # the one read of Keras internals (KerasTensor._keras_history): fails loudly if Keras moves it
    dense = L.Dense(2)
    model = seq(dense, L.ReLU())
    assert diagnostics._producer(model.layers[-1].input) is dense
    assert diagnostics._producer(model.inputs[0]) is None  # an InputLayer is no producer


@pytest.mark.parametrize("activation, kind", [
    ("relu", "relu"), ("afl_relu", "relu"), (keras.activations.relu, "relu"),
    (keras_afl.activations.relu, "relu"), (tf.nn.relu, "relu"), ("relu6", "relu"),
    ("sigmoid", "sigmoid"), ("afl_tanh", "tanh"), ("afl_selu", "selu"), (keras.activations.elu, "elu"),
    ("gelu", "gelu"), (None, None), ("linear", None),
], ids=lambda v: _stable_id(v))
def test_activation_of_reads_strings_and_functions(activation, kind):
    assert diagnostics.activation_of(L.Dense(2, activation=activation)) == kind
    assert diagnostics.activation_of(L.Conv1D(2, 3, activation=activation)) == kind


def test_activation_of_reads_keras_and_keras_afl_layers():
    got = [diagnostics.activation_of(layer) for layer in (
        L.ReLU(), L.ReLU(negative_slope=0.1), L.LeakyReLU(), L.PReLU(), L.ELU(), L.Softmax(),
        L.Activation("afl_sigmoid"), AFL.ReLU(), AFL.LeakyReLU(), AFL.PReLU(), AFL.Sigmoid(),
        AFL.Tanh(), AFL.Softmax(), AFL.ELU(), AFL.SELU(), L.Dropout(0.1), L.LSTM(2))]
    assert got == ["relu", "leaky_relu", "leaky_relu", "prelu", "elu", "softmax", "sigmoid",
                   "relu", "leaky_relu", "prelu", "sigmoid", "tanh", "softmax", "elu", "selu",
                   None, None]


def test_findings_report_and_dicts():
    findings = keras_afl.lint(seq(L.Dense(3, activation="softmax")), loss="binary_crossentropy")
    findings = diagnostics.Findings([*findings, *keras_afl.lint(seq(L.Dense(1)))])
    text = str(findings)
    assert text.startswith("error: output 'dense")
    assert "[softmax-binary-loss]" in text and "\n  fix: " in text
    assert text.endswith("2 findings: 1 error, 0 warnings, 1 info")
    assert findings.counts() == {"error": 1, "warning": 0, "info": 1}
    assert [f.rule for f in findings.errors] == ["softmax-binary-loss"]
    assert json.loads(json.dumps(findings.to_dicts()))[0]["severity"] == "error"
    assert set(diagnostics.RULES) >= {f.rule for f in findings}


def test_findings_are_sorted_errors_first():
    model = seq(L.Dense(8, activation="selu"), L.Dense(3, activation="softmax"))
    assert [f.severity for f in keras_afl.lint(model, "binary_crossentropy")] == ["error", "warning"]


def test_lint_rejects_a_non_model_naming_the_argument():
    with pytest.raises(TypeError, match=r"`model` must be a keras.Model.*received 'model.keras'"):
        keras_afl.lint("model.keras")
    with pytest.raises(TypeError, match="`model`"):
        keras_afl.lint(L.Dense(3))


def test_lint_rejects_bad_losses_naming_the_argument():
    model = seq(L.Dense(1))
    with pytest.raises(TypeError, match=r"`loss` must be .*received 42"):
        keras_afl.lint(model, loss=42)
    with pytest.raises(ValueError, match=r"`loss`: unknown loss 'focl'; did you mean 'focal'\?"):
        keras_afl.lint(model, loss="focl")
    with pytest.raises(ValueError, match="one loss per output"):
        keras_afl.lint(model, loss=["mse", "mse"])
    with pytest.raises(ValueError, match="does not have"):
        keras_afl.lint(model, loss={"nope": "mse"})


def test_demo_lint_hook_prints_the_lint_result():
    assert cli_demo.lint_findings(cli_demo.build_model(8), "focal") == ["no findings"]
    lines = cli_demo.lint_findings(cli_demo.build_model(8), "categorical_crossentropy")
    assert lines[0].startswith("error:") and "sigmoid-categorical-loss" in lines[0]


# --------------------------------------------------------------------------- keras-afl lint

def save(model, path, loss=None):
    if loss is not None:
        model.compile("adam", loss=loss)
    model.save(path)
    return str(path)


def test_cli_lint_reports_an_error_finding_with_exit_1(tmp_path, capsys):
    path = save(seq(L.Dense(16, activation="relu"), L.Dense(3), AFL.Softmax()),
                tmp_path / "m.keras", loss="binary_crossentropy")
    assert main(["lint", path]) == 1
    out = capsys.readouterr().out
    assert "loss 'binary_crossentropy'" in out and "[softmax-binary-loss]" in out
    assert "1 finding: 1 error" in out
    assert main(["lint", path, "--loss", "categorical_crossentropy"]) == 0
    assert "no findings" in capsys.readouterr().out


def test_cli_lint_clean_model_exits_0_and_strict_fails_on_warnings(tmp_path, capsys):
    clean = save(seq(L.Dense(8, activation="relu"), L.Dense(1), AFL.Sigmoid()),
                 tmp_path / "clean.keras", loss=keras_afl.losses.FocalLoss(gamma=1.0))
    assert main(["lint", clean]) == 0
    assert "no findings" in capsys.readouterr().out
    warn = save(seq(*[L.Dense(8, activation="tanh") for _ in range(4)], L.Dense(1)),
                tmp_path / "warn.keras", loss="mse")
    assert main(["lint", warn]) == 0
    assert main(["lint", warn, "--strict"]) == 1


def test_cli_lint_json(tmp_path, capsys):
    path = save(seq(L.Dense(1)), tmp_path / "m.keras", loss="binary_crossentropy")
    assert main(["lint", path, "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["counts"] == {"error": 1, "warning": 0, "info": 0}
    assert data["findings"][0]["rule"] == "linear-output-probability-loss"


def test_cli_lint_bad_inputs_exit_2_with_one_message(tmp_path, capsys):
    assert main(["lint", str(tmp_path / "missing.keras")]) == 2
    err = capsys.readouterr().err
    assert "missing.keras: no such file" in err and "Traceback" not in err
    junk = tmp_path / "junk.keras"
    junk.write_bytes(b"not a zip file")
    assert main(["lint", str(junk)]) == 2
    err = capsys.readouterr().err
    assert "junk.keras: cannot load the model" in err and "Traceback" not in err
    path = save(seq(L.Dense(1)), tmp_path / "m.keras")
    assert main(["lint", path, "--loss", "focl"]) == 2
    assert "did you mean 'focal'" in capsys.readouterr().err


# --------------------------------------------------------------------------- ActivationStats

def probe(model, x, **kw):
    cb = ActivationStats(x, **kw)
    cb.set_model(model)
    return cb.compute()


def test_dead_fraction_matches_hand_count():
    x = np.random.default_rng(0).normal(size=(64, 5)).astype("float32")
    dense = L.Dense(4, activation="relu", name="d")
    model = seq(dense, L.Dense(1), n_in=5)
    w = np.random.default_rng(1).normal(size=(5, 4)).astype("float32")
    dense.set_weights([w, np.array([0.0, -100.0, 0.5, -100.0], "float32")])  # units 1, 3 dead
    figures = probe(model, x)
    assert figures["d/dead_fraction"] == 0.5
    out = np.maximum(x @ w + dense.get_weights()[1], 0)
    assert figures["d/dead_fraction"] == np.mean(~(out > 0).any(axis=0))
    np.testing.assert_allclose(figures["d/mean"], out.mean(), rtol=1e-5)
    np.testing.assert_allclose(figures["d/std"], out.std(), rtol=1e-5)


def test_dead_fraction_of_a_conv_counts_channels_over_all_positions():
    x = np.random.default_rng(0).normal(size=(4, 6, 6, 2)).astype("float32")
    conv = L.Conv2D(3, 3, name="c")
    model = keras.Sequential([keras.Input((6, 6, 2)), conv, L.ReLU(name="r")])
    k, _ = conv.get_weights()
    conv.set_weights([k, np.array([0.0, -100.0, 0.0], "float32")])
    assert probe(model, x)["r/dead_fraction"] == pytest.approx(1 / 3)


def test_saturated_fraction_matches_numpy_on_a_large_weight_sigmoid():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(128, 3)).astype("float32")
    dense = L.Dense(6, name="s")
    model = seq(dense, AFL.Sigmoid(name="sig"), L.Dense(4), AFL.Tanh(name="th"), n_in=3)
    w = (rng.normal(size=(3, 6)) * np.array([0.1, 0.1, 5, 5, 50, 50])).astype("float32")
    dense.set_weights([w, np.zeros(6, "float32")])
    figures = probe(model, x)
    z = (x @ w).astype(np.float64)
    y = 1 / (1 + np.exp(-z))
    expected = np.mean(y * (1 - y) < 1e-3)  # derivative below 1e-3, per (sample, unit)
    assert 0.2 < expected < 0.5  # the big-weight units saturate, the small ones do not
    assert figures["sig/saturated_fraction"] == pytest.approx(expected, abs=1 / y.size)
    np.testing.assert_allclose(figures["sig/mean"], y.mean(), rtol=1e-4)
    np.testing.assert_allclose(figures["sig/std"], y.std(), rtol=1e-4)
    assert 0.0 <= figures["th/saturated_fraction"] <= 1.0


def test_each_kind_gets_its_figures_and_inference_mode_is_used():
    x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    model = seq(L.Dense(8, activation="selu", kernel_initializer="lecun_normal", name="selu"),
                L.Dropout(0.5), L.Dense(8, name="pre"), L.LeakyReLU(name="leaky"),
                L.Dense(8, activation="relu", name="relu"), L.Dense(1, name="linear"), n_in=4)
    first, second = probe(model, x), probe(model, x)
    assert first == second  # Dropout is off: inference mode
    assert sorted(first) == ["leaky/mean", "leaky/std", "relu/dead_fraction", "relu/mean",
                             "relu/std", "selu/mean", "selu/std"]


def fit_with(callback, epochs=2, x=None):
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32") if x is None else x
    y = (x[:, :1] > 0).astype("float32")
    model = seq(L.Dense(8, activation="relu", name="h"), L.Dense(1), AFL.Sigmoid(name="out"),
                n_in=4)
    model.compile(keras.optimizers.SGD(0.0), "binary_crossentropy")  # weights stay put
    return model, model.fit(x, y, epochs=epochs, batch_size=32, verbose=0, callbacks=[callback])


def test_history_records_the_figures_every_epoch():
    x = np.random.default_rng(3).normal(size=(16, 4)).astype("float32")
    cb = ActivationStats(x)
    model, hist = fit_with(cb, epochs=3)
    for key in ("h/dead_fraction", "h/mean", "h/std", "out/saturated_fraction", "out/mean",
                "out/std"):
        assert len(hist.history[key]) == 3
        assert hist.history[key] == cb.history[key]
    assert cb.epochs == [0, 1, 2]
    y = model.predict(x, verbose=0)
    np.testing.assert_allclose(hist.history["out/mean"][-1], y.mean(), rtol=1e-5)


def test_every_2_skips_odd_epochs():
    cb = ActivationStats(np.ones((4, 4), "float32"), every=2)
    _, hist = fit_with(cb, epochs=5)
    assert cb.epochs == [0, 2, 4]
    assert len(hist.history["h/mean"]) == 3 and len(hist.history["loss"]) == 5


def test_data_forms_give_the_same_figures():
    x = np.random.default_rng(4).normal(size=(16, 4)).astype("float32")
    y = np.zeros((16, 1), "float32")
    model = seq(L.Dense(8, activation="relu"), L.Dense(1), n_in=4)
    want = probe(model, x)
    assert probe(model, (x, y)) == want
    assert probe(model, tf.constant(x)) == want
    assert probe(model, tf.data.Dataset.from_tensor_slices((x, y)).batch(16)) == want
    assert probe(model, x.astype("float64")) == want


def test_tensorboard_event_files_hold_the_tags(tmp_path):
    cb = ActivationStats(np.ones((4, 4), "float32"), log_dir=str(tmp_path / "tb"))
    _, hist = fit_with(cb, epochs=2)
    files = glob.glob(str(tmp_path / "tb" / "events.out.tfevents.*"))
    assert files
    seen = {}
    for f in files:
        for record in tf.data.TFRecordDataset(f):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for v in event.summary.value:
                assert v.metadata.plugin_data.plugin_name == "scalars"
                seen.setdefault(v.tag, {})[event.step] = float(tf.make_ndarray(v.tensor))
    assert {"h/dead_fraction", "h/mean", "h/std", "out/saturated_fraction"} <= set(seen)
    assert sorted(seen["h/mean"]) == [0, 1]
    np.testing.assert_allclose([seen["h/mean"][0], seen["h/mean"][1]], hist.history["h/mean"],
                               rtol=1e-6)


def test_activation_stats_bad_arguments():
    with pytest.raises(ValueError, match="`every` must be an integer >= 1"):
        ActivationStats(np.ones((2, 2)), every=0)
    with pytest.raises(TypeError, match="`data` must be a held-out batch"):
        ActivationStats(None)
    with pytest.raises(TypeError, match="`log_dir`"):
        ActivationStats(np.ones((2, 2)), log_dir=3)

    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = L.Dense(2, activation="relu")

        def call(self, x):
            return self.d(x)

    cb = ActivationStats(np.ones((2, 2), "float32"))
    cb.set_model(Sub())
    with pytest.raises(ValueError, match="defined inputs"):
        cb.compute()


# --------------------------------------------------------------------------- keras-afl train

BASE = {
    "name": "diag",
    "seed": 0,
    "lint": True,
    "activation_stats": True,
    "data": {"source": "breast_cancer", "positive_fraction": 0.2},
    "model": {"layers": [{"units": 8, "activation": "relu"}, {"units": "output"},
                         {"type": "sigmoid"}]},  # a warning: an error finding stops the run
    "training": {"loss": "afl_hinge", "epochs": 1, "batch_size": 64},
}


def test_train_config_lint_and_activation_stats(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(BASE, sort_keys=False))
    assert main(["train", str(cfg), "--smoke", "--quiet", "--output", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "  lint: warning: output 'sigmoid" in out and "[hinge-bounded-output]" in out
    run = json.loads((tmp_path / "o" / "summary.json").read_text())["runs"][0]
    assert {f["rule"] for f in run["lint"]} >= {"hinge-bounded-output"}
    names = [k for k in run["history"] if k.endswith("/dead_fraction")]
    assert len(names) == 1 and len(run["history"][names[0]]) == 1
    assert "validation" in run["activation_stats"]["batch"]


@pytest.mark.parametrize("key", ["lint", "activation_stats"])
def test_train_config_diagnostic_keys_must_be_booleans(key, tmp_path, capsys):
    cfg = copy.deepcopy(BASE)
    cfg[key] = "yes"
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    assert main(["train", str(path), "--smoke"]) == 2
    assert f"{key}: expected true or false, got the string 'yes'" in capsys.readouterr().err


def test_train_without_the_keys_adds_nothing(tmp_path):
    from keras_afl.cli import config as cli_config

    cfg = copy.deepcopy(BASE)
    del cfg["lint"], cfg["activation_stats"]
    normalised = cli_config.validate(cfg, "c.yaml")
    assert normalised["lint"] is False and normalised["activation_stats"] is False


@pytest.mark.parametrize("path", [p for p in sorted(glob.glob(os.path.join(REPO, "configs", "*.yaml")))
                                  if "\nexample:" not in open(p).read()],  # example scripts' models:
                         ids=os.path.basename)                           # test_detection_examples
def test_every_shipped_config_builds_a_model_lint_finds_clean(path):
    from keras_afl.cli import build as cli_build
    from keras_afl.cli import config as cli_config
    from keras_afl.cli import data as cli_data

    cfg = cli_config.load(path)
    data = cli_data.prepare(cfg, path, smoke=True,
                            validation_split=cfg["training"]["validation_split"])
    for spec in cfg["training"]["losses"]:
        model = cli_build.build_model(cfg["model"]["layers"], data, spec)
        model.compile("adam", loss=cli_build.make_loss(spec))
        assert rules(keras_afl.lint(model)) == [], spec["label"]


# examples/activation_health.py (dead-unit curves, --plot) runs once, in tests/test_examples.py.
