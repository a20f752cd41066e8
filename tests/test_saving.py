"""Saved-model round trips, each reloaded in a fresh Python process."""

import json
import os

import keras
import numpy as np
import pytest

import keras_afl
from tests._checks import run_python

pytestmark = pytest.mark.slow


def build_model():
    inputs = keras.Input((6,))
    h = keras.layers.Dense(16, activation="afl_elu")(inputs)          # string activation
    h = keras_afl.layers.LeakyReLU(negative_slope=0.2)(keras.layers.Dense(16)(h))
    h = keras_afl.layers.PReLU(alpha_initializer=keras.initializers.Constant(0.1))(keras.layers.Dense(16)(h))
    h = keras_afl.layers.ELU(alpha=0.5)(h)
    logits = keras.layers.Dense(3)(h)
    outputs = keras_afl.layers.Softmax(axis=-1)(logits)
    return keras.Model(inputs, outputs)


def data(n=128, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype("float32")
    y = np.eye(3, dtype="float32")[(x[:, 0] > 0).astype(int) + (x[:, 1] > 0.5).astype(int)]
    return x, y


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    keras.utils.set_random_seed(0)
    out = tmp_path_factory.mktemp("saved")
    model = build_model()
    model.compile(keras.optimizers.Adam(0.01), loss="categorical_crossentropy")
    x, y = data()
    model.fit(x, y, epochs=2, batch_size=32, verbose=0)
    np.save(out / "x.npy", x)
    np.save(out / "y.npy", y)
    np.save(out / "pred.npy", model.predict(x, verbose=0))
    return model, out


def test_keras_file_reloads_with_settings_predictions_and_optimizer_state(trained):
    model, out = trained
    path = str(out / "model.keras")
    model.save(path)
    # Continue training here for one epoch (no shuffling) ...
    x, y = np.load(out / "x.npy"), np.load(out / "y.npy")
    model.fit(x, y, epochs=1, batch_size=32, shuffle=False, verbose=0)
    np.save(out / "weights_after.npy", np.concatenate([w.ravel() for w in model.get_weights()]))
    configs = {l.name: l.get_config() for l in model.layers if type(l).__module__.startswith("keras_afl")}
    (out / "configs.json").write_text(json.dumps(configs, default=str))
    # ... and in a fresh process that only imports keras_afl: same predictions,
    # same layer settings, and the same next epoch (optimizer state restored).
    stdout = run_python(f"""
        import json, numpy as np, keras, keras_afl
        out = {str(out)!r}
        m = keras.models.load_model(out + "/model.keras")
        x, y = np.load(out + "/x.npy"), np.load(out + "/y.npy")
        pred_err = float(np.max(np.abs(m.predict(x, verbose=0) - np.load(out + "/pred.npy"))))
        want = json.load(open(out + "/configs.json"))
        got = {{l.name: l.get_config() for l in m.layers if type(l).__module__.startswith("keras_afl")}}
        same_configs = json.dumps(got, default=str, sort_keys=True) == json.dumps(want, default=str, sort_keys=True)
        iterations = int(m.optimizer.iterations.numpy())
        m.fit(x, y, epochs=1, batch_size=32, shuffle=False, verbose=0)
        w = np.concatenate([v.ravel() for v in m.get_weights()])
        w_err = float(np.max(np.abs(w - np.load(out + "/weights_after.npy"))))
        print(json.dumps(dict(pred_err=pred_err, same_configs=same_configs, iterations=iterations,
                              w_err=w_err, n_afl=len(got), activation=m.layers[1].get_config()["activation"])))
    """)
    r = json.loads(stdout.strip().splitlines()[-1])
    assert r["pred_err"] < 1e-6
    assert r["same_configs"] and r["n_afl"] == 4
    assert r["iterations"] == 8  # 2 epochs x 4 batches were done before saving
    assert r["w_err"] < 1e-5
    assert "keras_afl>elu" in json.dumps(r["activation"])


def test_weights_h5_load_into_rebuilt_model(trained):
    model, out = trained
    path = str(out / "model.weights.h5")
    model.save_weights(path)
    np.save(out / "pred_h5.npy", model.predict(np.load(out / "x.npy"), verbose=0))
    stdout = run_python(f"""
        import numpy as np, sys
        sys.path.insert(0, {os.path.dirname(__file__)!r} + "/..")
        from tests.test_saving import build_model
        m = build_model()
        m.load_weights({path!r})
        out = {str(out)!r}
        print(float(np.max(np.abs(m.predict(np.load(out + "/x.npy"), verbose=0) - np.load(out + "/pred_h5.npy")))))
    """)
    assert float(stdout.strip().splitlines()[-1]) < 1e-6


@pytest.mark.parametrize("batch", [1, 1000])
def test_export_serves_without_importing_keras_afl(trained, batch):
    model, out = trained
    path = str(out / "exported")
    if not os.path.exists(path):
        model.export(path, verbose=False)
    x = np.random.default_rng(batch).normal(size=(batch, 6)).astype("float32")
    np.save(out / f"x{batch}.npy", x)
    np.save(out / f"p{batch}.npy", model.predict(x, verbose=0))
    stdout = run_python(f"""
        import sys, numpy as np, tensorflow as tf
        served = tf.saved_model.load({path!r})
        out = {str(out)!r}
        y = served.serve(np.load(out + "/x{batch}.npy")).numpy()
        assert "keras_afl" not in sys.modules, "the serving process imported keras_afl"
        print(y.shape[0], float(np.max(np.abs(y - np.load(out + "/p{batch}.npy")))))
    """)
    n, err = stdout.strip().splitlines()[-1].split()
    assert int(n) == batch and float(err) < 1e-6


def test_loss_names_as_metrics_survive_a_reload(tmp_path):
    # compile(metrics=[every keras_afl loss name]) saves the names; a fresh process that
    # imports keras_afl resolves them again and evaluates to the same values.
    from tests.test_registry import metric_names, metric_task_data

    want = {}
    for task in ("binary", "categorical", "sparse"):
        x, y, model = metric_task_data(task)
        names = metric_names(task)
        model.compile("adam", loss=names[0], metrics=names)
        model.fit(x, y, epochs=1, verbose=0)
        want[task] = model.evaluate(x, y, batch_size=len(x), verbose=0, return_dict=True)
        model.save(tmp_path / f"{task}.keras")
    stdout = run_python(f"""
        import json, sys, keras, keras_afl
        sys.path.insert(0, {os.path.dirname(__file__)!r} + "/..")
        from tests.test_registry import metric_task_data
        got = {{}}
        for task in ("binary", "categorical", "sparse"):
            x, y, _ = metric_task_data(task)
            m = keras.models.load_model({str(tmp_path)!r} + f"/{{task}}.keras")
            got[task] = m.evaluate(x, y, batch_size=len(x), verbose=0, return_dict=True)
        print(json.dumps(got))
    """)
    got = json.loads(stdout.strip().splitlines()[-1])
    for task in want:
        assert set(got[task]) == set(want[task]), task
        for n, v in want[task].items():
            assert got[task][n] == pytest.approx(v, rel=1e-6), (task, n)


def test_model_compiled_inside_use_as_builtins_reloads_with_our_loss_and_metric(tmp_path):
    from tests.test_registry import metric_task_data

    x, y, model = metric_task_data("binary")
    with keras_afl.use_as_builtins():
        model.compile("adam", loss="binary_focal_crossentropy", metrics=["binary_focal_crossentropy"])
    model.fit(x, y, epochs=1, verbose=0)
    pred = model.predict(x, verbose=0)
    ours = float(keras.losses.BinaryFocalCrossentropy(apply_class_balancing=True)(y, pred))
    keras_default = float(keras.losses.BinaryFocalCrossentropy()(y, pred))
    assert abs(ours - keras_default) > 1e-3 * keras_default
    model.save(tmp_path / "m.keras")
    stdout = run_python(f"""
        import json, sys, keras, keras_afl
        sys.path.insert(0, {os.path.dirname(__file__)!r} + "/..")
        from tests.test_registry import metric_task_data
        x, y, _ = metric_task_data("binary")
        m = keras.models.load_model({str(tmp_path / "m.keras")!r})
        print(json.dumps(m.evaluate(x, y, batch_size=len(x), verbose=0, return_dict=True)))
    """)
    got = json.loads(stdout.strip().splitlines()[-1])
    assert got["loss"] == pytest.approx(ours, rel=1e-5)
    assert got["binary_focal_crossentropy"] == pytest.approx(ours, rel=1e-5)


def test_docs_quote_the_errors_keras_gives_without_import_keras_afl(tmp_path):
    # Three models saved here; a fresh process that never imports keras_afl loads each
    # and runs evaluate(); the docs' "Saving and loading" section must quote the
    # errors this Keras really raises, and its fix (import keras_afl) must work.
    x, y = np.ones((4, 3), "float32"), np.ones((4, 1), "float32")
    models = {
        "activation": keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="afl_elu"),
                                        keras.layers.Dense(1, activation="sigmoid")]),
        "layer": keras.Sequential([keras.Input((3,)), keras.layers.Dense(1), keras_afl.layers.ELU()]),
        "loss": keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")]),
    }
    for name, model in models.items():
        model.compile("sgd", loss="focal" if name == "loss" else "mse")
        model.fit(x, y, verbose=0)
        model.save(tmp_path / f"{name}.keras")
    code = f"""
        import json, numpy as np, keras
        # IMPORT
        out = {{}}
        for name in ("activation", "layer", "loss"):
            try:
                m = keras.models.load_model({str(tmp_path)!r} + f"/{{name}}.keras")
                m.evaluate(np.ones((4, 3)), np.ones((4, 1)), verbose=0)
                out[name] = "ok"
            except Exception as e:
                out[name] = f"{{type(e).__name__}}: {{e}}"
        print(json.dumps(out))
    """
    raised = json.loads(run_python(code).strip().splitlines()[-1])
    fixed = json.loads(run_python(code.replace("# IMPORT", "import keras_afl")).strip().splitlines()[-1])
    assert fixed == {"activation": "ok", "layer": "ok", "loss": "ok"}

    page = os.path.join(os.path.dirname(__file__), "..", "docs", "names-saving-serving.md")
    with open(page, encoding="utf-8") as f:
        text = f.read()
    section = text[text.index("## Saving and loading"):text.index("## Serving")]
    quoted = [line for line in section.splitlines() if line.startswith(("TypeError:", "ValueError:"))]
    assert len(quoted) == 3, quoted

    def quotes(line, message):
        kind, _, body = line.partition(": ")
        return message.startswith(kind + ": ") and all(
            part.strip() in message for part in body.split("…") if part.strip())

    for name, message in raised.items():
        assert message != "ok", name
        assert any(quotes(line, message) for line in quoted), (name, message[-600:])
