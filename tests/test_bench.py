"""keras_afl.bench and `keras-afl bench`: the harness runs and its reports are well formed
(no timing assertions); and the compiled (fused) loss path it measures agrees with the plain one."""

import json
import math
import re

import numpy as np
import pytest
import tensorflow as tf

from keras_afl import bench, cli
from keras_afl import losses as L
from tests._checks import hvp, run_python
from tests.test_losses import CASES, NAMES, _rng, _tensors

ROW_KEYS = {"group", "case", "mode", "dtype", "size", "unit", "ours", "ref", "ratio", "target",
            "max_ratio", "met", "floor", "floor_ratio", "floor_met", "spread", "samples", "note"}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    code = cli.main(["bench", "--quick", "--no-progress", "--output", str(out)])
    with open(out / "results.json") as f:
        result = json.load(f)
    return code, result, (out / "results.md").read_text()


class TestQuickRun:
    def test_exit_code_and_top_level_keys(self, quick_run):
        code, result, _ = quick_run
        assert code == 0
        assert {"machine", "settings", "started", "duration_s", "load_before", "load_after", "rows",
                "summary", "command"} <= set(result)
        assert result["command"].startswith("keras-afl bench --quick")
        assert result["settings"]["quick"] is True
        assert result["machine"]["tensorflow"] == tf.__version__

    def test_every_suite_and_quick_case_has_rows(self, quick_run):
        _, result, _ = quick_run
        rows = result["rows"]
        assert {r["group"] for r in rows} == {"activation", "loss", "training", "memory"}
        for name in bench.QUICK_ACTIVATIONS:
            assert {r["mode"] for r in rows if r["case"] == name} == {"graph", "xla"}
        for name in bench.QUICK_LOSSES:
            assert {r["mode"] for r in rows if r["case"] == name} == {"graph", "xla"}
        assert len([r for r in rows if r["group"] == "training"]) == 2

    def test_rows_have_positive_finite_times_and_consistent_ratios(self, quick_run):
        _, result, _ = quick_run
        for r in result["rows"]:
            assert set(r) == ROW_KEYS, r["case"]
            assert r["target"] in bench.TARGETS
            for key in ("ours", "ref", "ratio"):
                assert math.isfinite(r[key]) and r[key] > 0, (r["case"], key)
            assert r["ratio"] == pytest.approx(r["ours"] / r["ref"], rel=1e-9)
            assert r["met"] == (r["ratio"] <= r["max_ratio"])
            assert r["ours"] == pytest.approx(float(np.median(r["samples"]["ours"])), rel=1e-9)
            assert r["ref"] == pytest.approx(float(np.median(r["samples"]["ref"])), rel=1e-9)
            if r["group"] in ("activation", "loss"):
                assert r["unit"] == "ms"
                repeats = bench._repeats_at(result["settings"]["repeats"], r["size"])
                assert len(r["samples"]["ours"]) == repeats
                assert r["floor"] > 0 and math.isfinite(r["floor"])
                assert r["floor_ratio"] == pytest.approx(r["ours"] / r["floor"], rel=1e-9)

    def test_summary_counts_match_the_rows(self, quick_run):
        _, result, _ = quick_run
        for s in result["summary"]:
            mine = [r for r in result["rows"] if r["target"] == s["target"]]
            assert s["checked"] == len(mine)
            assert s["met"] == sum(r["met"] for r in mine)
            assert s["worst_ratio"] == pytest.approx(max(r["ratio"] for r in mine))

    def test_markdown_has_one_table_row_per_case(self, quick_run):
        _, result, md = quick_run
        table = md[md.index("## Every case"):]
        lines = [ln for ln in table.splitlines() if ln.startswith("| ") and not ln.startswith("| group")]
        assert len(lines) == len(result["rows"])
        for line, r in zip(lines, result["rows"]):
            cells = [c.strip() for c in line.strip("|").split("|")]
            assert cells[:3] == [r["group"], r["case"], r["mode"]]
            assert float(cells[8]) == pytest.approx(r["ratio"], abs=0.006)
        assert "## Targets" in md and result["command"] in md


def test_unknown_case_is_a_usage_error(capsys):
    assert cli.main(["bench", "--quick", "--cases", "nope"]) == 2
    assert "unknown case" in capsys.readouterr().err


def test_run_refuses_unknown_suites_and_modes():
    with pytest.raises(ValueError, match="suite"):
        bench.run(quick=True, suites=("speed",))
    with pytest.raises(ValueError, match="mode"):
        bench.run(quick=True, modes=("eager",))


def test_terminal_table_lists_every_row(quick_run):
    _, result, _ = quick_run
    text = bench.terminal_table(result)
    for r in result["rows"]:
        assert re.search(rf"^{re.escape(r['case'])}\s", text, re.M), r["case"]


# ---------------------------------------------------------------------------
# The compiled loss path (keras_afl.losses._FUSE, KERAS_AFL_FUSE_LOSSES): graph
# mode, float32. It must agree with the plain path: values, gradients, second
# derivatives, inside an outer XLA function and with a dynamic batch size.


@pytest.fixture
def fuse(monkeypatch):
    """Switches the fused path on or off, for inputs of any size (the tests' inputs are tiny)."""
    monkeypatch.setattr(L, "_FUSE_MIN_ELEMENTS", 0)
    monkeypatch.setattr(L, "_FUSE_MIN_PER_SAMPLE", 0)

    def set_fuse(on):
        monkeypatch.setattr(L, "_FUSE", on)

    return set_fuse


def _float32_case(name, seed):
    fn, data, _, _ = CASES[name]
    y, x = data(seed)
    y_t, x_t = _tensors(y, x, tf.float32)
    if y_t.dtype == tf.float64:
        y_t = tf.cast(y_t, tf.float32)
    v = tf.constant(_rng(seed + 1).normal(size=x_t.shape), tf.float32)
    return fn, y_t, x_t, v


def _value_grad_hvp(fn, y_t, x_t, v):
    with tf.GradientTape() as tape:
        tape.watch(x_t)
        loss = fn(y_t, x_t)
        total = tf.reduce_sum(loss)
    return loss, tape.gradient(total, x_t), hvp(lambda t: fn(y_t, t), x_t, v)


def _xla_calls(fn, *args):
    graph = tf.function(fn).get_concrete_function(*args).graph
    return [op for op in graph.get_operations() if op.node_def.attr["_XlaMustCompile"].b]


def test_fused_path_agrees_with_the_plain_path_for_every_loss_grad(fuse):
    """Values, gradients and Hessian-vector products of every case, traced once in graph mode
    (fused) against eager execution (always the plain path)."""
    fuse(True)
    inputs = {name: _float32_case(name, 30) for name in NAMES}

    @tf.function
    def all_cases():
        return {name: _value_grad_hvp(*args) for name, args in inputs.items()}

    graph = all_cases.get_concrete_function().graph
    compiled = [op for op in graph.get_operations() if op.node_def.attr["_XlaMustCompile"].b]
    assert len(compiled) >= 2 * len(NAMES)  # a forward and a backward call per loss
    fused = all_cases()
    for name, args in inputs.items():
        plain = _value_grad_hvp(*args)
        for p, f, what in zip(plain, fused[name], ("loss", "grad", "hvp")):
            np.testing.assert_allclose(f.numpy(), p.numpy(), rtol=2e-5, atol=1e-6, err_msg=f"{name} {what}")


@pytest.mark.parametrize("name", ["focal_logits", "cce_logits_soft_unnormalised_labels"])
def test_fused_path_inside_outer_xla_and_with_dynamic_batch_grad(name, fuse):
    fuse(True)
    fn, y_t, x_t, v = _float32_case(name, 31)
    want = [t.numpy() for t in _value_grad_hvp(fn, y_t, x_t, v)]  # eager: the plain path
    xla = tf.function(lambda y, x, v: _value_grad_hvp(fn, y, x, v), jit_compile=True)
    for got in (xla(y_t, x_t, v),):
        for g, w in zip(got, want):
            np.testing.assert_allclose(g.numpy(), w, rtol=2e-5, atol=1e-6, err_msg=name)
    dynamic = tf.function(
        lambda y, x, v: _value_grad_hvp(fn, y, x, v),
        input_signature=[tf.TensorSpec([None, *y_t.shape[1:]], y_t.dtype),
                         tf.TensorSpec([None, *x_t.shape[1:]], tf.float32),
                         tf.TensorSpec([None, *x_t.shape[1:]], tf.float32)])
    for rows in (4, 2):
        got = dynamic(y_t[:rows], x_t[:rows], v[:rows])
        ref = _value_grad_hvp(fn, y_t[:rows], x_t[:rows], v[:rows])
        for g, w in zip(got, ref):
            np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=2e-5, atol=1e-6, err_msg=name)


def test_environment_variable_switches_the_fused_path_off():
    code = """
    import tensorflow as tf
    import keras_afl
    from keras_afl import losses as L
    print(L._FUSE)
    f = tf.function(lambda y, x: L.focal(y, x, from_logits=True))
    g = f.get_concrete_function(tf.TensorSpec([256, 256]), tf.TensorSpec([256, 256])).graph
    print(any(op.node_def.attr["_XlaMustCompile"].b for op in g.get_operations()))
    """
    assert run_python(code, env={"KERAS_AFL_FUSE_LOSSES": "0"}).split() == ["False", "False"]


def test_fused_path_only_in_graph_mode_with_float32_computation(fuse):
    fuse(True)
    y = tf.constant([[1.0, 0.0]])
    # half precision is computed in float32, so it takes the fused path too
    for dtype, expected in ((tf.float32, True), (tf.bfloat16, True), (tf.float64, False)):
        x = tf.constant([[0.5, -0.5]], dtype)
        assert bool(_xla_calls(lambda y, x: L.focal(y, x, from_logits=True), y, x)) == expected, dtype
    assert L._fused(tf.constant([1.0])) is False  # eager


@pytest.mark.parametrize("value, expected", [(None, True), ("1", True), ("0", False), ("off", False),
                                             ("false", False), (" No ", False)])
def test_environment_values_read_by_the_switch(value, expected, monkeypatch):
    if value is None:
        monkeypatch.delenv("KERAS_AFL_FUSE_LOSSES", raising=False)
    else:
        monkeypatch.setenv("KERAS_AFL_FUSE_LOSSES", value)
    assert L._fuse_from_environment() is expected


def test_size_rule_keeps_small_losses_on_the_plain_path(monkeypatch):
    monkeypatch.setattr(L, "_FUSE", True)

    def fused(y_spec, x_spec, fn=lambda y, x: L.focal(y, x, from_logits=True)):
        return bool(_xla_calls(fn, y_spec, x_spec))

    spec = tf.TensorSpec
    assert fused(spec([256, 256]), spec([256, 256]))  # 2^16 elements
    assert not fused(spec([256, 10]), spec([256, 10]))  # an MLP's 10 classes
    assert fused(spec([None, 64, 64, 1]), spec([None, 64, 64, 1]))  # a 64x64 map per sample
    assert not fused(spec([None, 10]), spec([None, 10]))
    sparse = lambda t, x: L.sparse_categorical_crossentropy(t, x, from_logits=True)  # noqa: E731
    assert fused(spec([None, 32, 32], tf.int32), spec([None, 32, 32, 4]), sparse)  # flattened inside
    assert not fused(spec([None], tf.int32), spec([None, 4]), sparse)


@pytest.mark.slow
def test_fused_path_under_mirrored_strategy_and_mixed_precision_matches_plain():
    """Two logical CPUs (a fresh process): MirroredStrategy training with the fused losses equals
    single-device training with the plain ones; so does mixed_bfloat16 training."""
    code = """
    import json
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import keras_afl
    from keras_afl import losses as L

    L._FUSE_MIN_ELEMENTS = L._FUSE_MIN_PER_SAMPLE = 0
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8)).astype("float32")
    cls = (x[:, 0] > 0).astype("int32") + (x[:, 1] > 0).astype("int32")
    targets = {"focal": (x[:, :1] > 0).astype("float32"),
               "categorical_focal": np.eye(3, dtype="float32")[cls],
               "afl_sparse_categorical_crossentropy": cls}

    def train(loss, y, fuse, strategy=None, policy="float32"):
        L._FUSE = fuse
        keras.mixed_precision.set_global_policy(policy)
        keras.utils.set_random_seed(0)
        with (strategy or tf.distribute.get_strategy()).scope():
            head = [keras.layers.Dense(1), keras_afl.layers.Sigmoid()] if loss == "focal" else \\
                [keras.layers.Dense(3), keras_afl.layers.Softmax()]
            model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="afl_elu"), *head])
            model.compile(keras.optimizers.SGD(0.1), loss=loss, jit_compile=False)
        model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
        keras.mixed_precision.set_global_policy("float32")
        return model.get_weights()

    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    out = {}
    for loss, y in targets.items():
        plain = train(loss, y, False)
        fused_m = train(loss, y, True, mirrored)
        out[loss] = max(float(np.max(np.abs(a - b))) for a, b in zip(plain, fused_m))
        half_plain = train(loss, y, False, policy="mixed_bfloat16")
        half_fused = train(loss, y, True, policy="mixed_bfloat16")
        out[loss + "_bf16"] = max(float(np.max(np.abs(a - b))) for a, b in zip(half_plain, half_fused))
    print(json.dumps(out))
    """
    diffs = json.loads(run_python(code, timeout=600).strip().splitlines()[-1])
    assert len(diffs) == 6
    for name, d in diffs.items():
        assert d < (1e-2 if name.endswith("bf16") else 1e-5), (name, d)
