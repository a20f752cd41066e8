"""The name registry: lookups, Keras's tables, use_as_builtins, the backend check."""

import keras
import numpy as np
import pytest

import keras_afl
from keras_afl import activations as A
from keras_afl import registry
from tests._checks import run_python


class TestKerasTables:
    def test_keras_still_has_its_name_tables(self):
        # Fails loudly if a Keras release moves the private tables we write into.
        tables = registry._keras_tables()
        assert "relu" in tables["activation"] and "mse" in tables["loss"], (
            "Keras moved keras.src.activations/losses.ALL_OBJECTS_DICT: update registry._keras_tables()"
        )

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

    def test_kind_activation_leaves_losses_alone(self):
        keras_mse = keras.losses.get("mse")
        with keras_afl.use_as_builtins(kind="activation"):
            assert keras.losses.get("mse") is keras_mse
            assert keras.activations.get("elu") is A.elu


@pytest.mark.slow
def test_import_under_other_backend_explains_fix():
    code = """
        try:
            import keras_afl
        except ImportError as e:
            print("IMPORTERROR:", e)
    """
    out = run_python(code, env={"KERAS_BACKEND": "numpy"})
    assert "IMPORTERROR:" in out and "'numpy'" in out and "KERAS_BACKEND=tensorflow" in out
