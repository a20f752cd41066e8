"""keras_afl.callbacks.ActivationStats on nested models: the layers inside are probed, named by path.

The callback's other behaviour (figures, History, TensorBoard, arguments) is
tested with lint in tests/test_diagnostics.py.
"""

import keras
import numpy as np

import keras_afl
from keras_afl.callbacks import ActivationStats

L, AFL = keras.layers, keras_afl.layers


def probe(model, x):
    cb = ActivationStats(x)
    cb.set_model(model)
    return cb.compute()


def batch(n=32, d=4, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)).astype("float32")


def np_figures(y, kind):
    """The documented figures of one activation output, in NumPy (float64)."""
    y = np.asarray(y, np.float64).reshape(-1, y.shape[-1])
    out = {"mean": y.mean(), "std": y.std()}
    if kind == "relu":
        out["dead_fraction"] = np.mean(~(y > 0).any(axis=0))
    if kind in ("sigmoid", "tanh"):
        deriv = y * (1 - y) if kind == "sigmoid" else 1 - y**2
        out["saturated_fraction"] = np.mean(deriv < 1e-3)
    return out


def assert_figures(figures, path, y, kind):
    for name, want in np_figures(y, kind).items():
        np.testing.assert_allclose(figures[f"{path}/{name}"], want, rtol=1e-5, atol=1e-6,
                                   err_msg=f"{path}/{name}")


def two_level_model():
    """outer (functional): d0 -> inner (Sequential) -> finner (functional, holding deep) -> out."""
    inner = keras.Sequential([keras.Input((4,)), L.Dense(5, activation="relu", name="h1"),
                              AFL.Tanh(name="t")], name="inner")
    deep = keras.Sequential([keras.Input((3,)), L.Dense(3, activation="selu", name="s")],
                            name="deep")
    f_in = keras.Input((5,))
    finner = keras.Model(f_in, deep(L.Dense(3, activation="sigmoid", name="fs")(f_in)),
                         name="finner")
    x = keras.Input((4,))
    out = L.Dense(1, activation="sigmoid", name="out")(finner(inner(L.Dense(4, activation="elu",
                                                                              name="d0")(x))))
    return keras.Model(x, out, name="outer"), inner, finner, deep


class TestNestedModels:
    def test_nested_layers_are_named_by_path_with_numpy_figures(self):
        model, inner, finner, deep = two_level_model()
        x = batch()
        figures = probe(model, x)
        # Reference: the layers called one by one (eager), figures in NumPy.
        d0 = model.get_layer("d0")(x)
        h1 = inner.get_layer("h1")(d0)
        t = inner.get_layer("t")(h1)
        fs = finner.get_layer("fs")(t)
        s = deep.get_layer("s")(fs)
        out = model.get_layer("out")(s)
        for path, y, kind in [("d0", d0, "elu"), ("inner/h1", h1, "relu"), ("inner/t", t, "tanh"),
                              ("finner/fs", fs, "sigmoid"), ("finner/deep/s", s, "selu"),
                              ("out", out, "sigmoid")]:
            assert_figures(figures, path, keras.ops.convert_to_numpy(y), kind)
        assert {k.rsplit("/", 1)[0] for k in figures} == {
            "d0", "inner/h1", "inner/t", "finner/fs", "finner/deep/s", "out"}

    def test_nested_sequential_inside_a_sequential_in_fit(self):
        inner = keras.Sequential([L.Dense(6, name="h"), AFL.ReLU(name="r")], name="block")
        model = keras.Sequential([keras.Input((4,)), inner, L.Dense(1), AFL.Sigmoid(name="p")])
        model.compile(keras.optimizers.SGD(0.0), "binary_crossentropy")  # weights stay put
        x = batch(seed=1)
        cb = ActivationStats(x)
        hist = model.fit(x, (x[:, :1] > 0).astype("float32"), epochs=2, verbose=0, callbacks=[cb])
        for key in ("block/r/mean", "block/r/std", "block/r/dead_fraction", "p/mean",
                    "p/saturated_fraction"):
            assert len(hist.history[key]) == 2, key
        r = inner.get_layer("r")(inner.get_layer("h")(x))
        assert_figures(cb.compute(), "block/r", keras.ops.convert_to_numpy(r), "relu")

    def test_a_nested_layer_lint_flags_is_probed(self):
        # lint walks into nested models: it flags the SELU deep inside (glorot initializer);
        # ActivationStats reports that layer too, under its path.
        model = two_level_model()[0]
        assert any(f.where == "layer 's'" for f in keras_afl.lint(model))
        assert "finner/deep/s/mean" in probe(model, batch())

    def test_a_shared_nested_model_is_skipped(self):
        block = keras.Sequential([keras.Input((4,)), L.Dense(4, activation="relu", name="h")],
                                 name="block")
        x = keras.Input((4,))
        model = keras.Model(x, L.Dense(1, activation="sigmoid", name="out")(block(block(x))))
        figures = probe(model, batch())
        assert sorted(figures) == ["out/mean", "out/saturated_fraction", "out/std"]

    def test_top_level_names_are_unchanged(self):
        model = keras.Sequential([keras.Input((4,)), L.Dense(3, activation="relu", name="h"),
                                  L.Dense(1, activation="sigmoid", name="o")])
        assert sorted(probe(model, batch())) == ["h/dead_fraction", "h/mean", "h/std",
                                                 "o/mean", "o/saturated_fraction", "o/std"]


def test_nested_probe_sees_the_trained_weights():
    # The probe model shares the nested layers: after training, the figures follow the weights.
    inner = keras.Sequential([keras.Input((4,)), L.Dense(4, activation="relu", name="h")],
                             name="block")
    model = keras.Sequential([keras.Input((4,)), inner, L.Dense(1)])
    x = batch(seed=2)
    cb = ActivationStats(x)
    cb.set_model(model)
    kernel, bias = inner.get_layer("h").get_weights()
    assert_figures(cb.compute(), "block/h", np.maximum(x @ kernel + bias, 0), "relu")
    inner.get_layer("h").set_weights([kernel, bias - np.array([0, 0, 100, 100], "float32")])
    after = cb.compute()
    assert after["block/h/dead_fraction"] == 0.5
    assert_figures(after, "block/h", np.maximum(x @ kernel + bias - [0, 0, 100, 100], 0), "relu")
