"""The compiled ("fused") loss path: same values, gradients and second derivatives as the plain path.

Large losses computed in float32 in graph mode run as two XLA-compiled kernels
(forward, backward); small ones, eager calls and float64 take the plain path.
Half-precision inputs are cast inside the kernels, and the Loss classes hand
them over without Keras's casts. The size thresholds are lowered here so that
the test data takes the fused path.
"""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_afl import losses as L
from keras_afl import _backend
from keras_afl._backend._tensorflow import _runner as LC
from tests._checks import hvp, run_python
from tests.test_losses import (
    ALPHA5, CASES, NAMES, P, _rng, _tensors, data_binary, data_categorical, data_hinge,
    data_regression, data_sparse,
)

@pytest.fixture
def fuse(monkeypatch):
    """Switches the fused path on or off, for inputs of any size (the tests' inputs are tiny)."""
    monkeypatch.setattr(LC, "FUSE_MIN_ELEMENTS", 0)
    monkeypatch.setattr(LC, "FUSE_MIN_PER_SAMPLE", 0)

    def set_fuse(on):
        monkeypatch.setitem(_backend._DEFAULTS, "compiled_kernels", on)

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
    print(L.trace_options()["compiled_kernels"])
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
    assert LC.fused(tf.constant([1.0])) is False  # eager


@pytest.mark.parametrize("value, expected", [(None, True), ("1", True), ("0", False), ("off", False),
                                             ("false", False), (" No ", False)])
def test_environment_values_read_by_the_switch(value, expected, monkeypatch):
    if value is None:
        monkeypatch.delenv("KERAS_AFL_FUSE_LOSSES", raising=False)
    else:
        monkeypatch.setenv("KERAS_AFL_FUSE_LOSSES", value)
    assert _backend._fuse_from_environment() is expected


def test_size_rule_keeps_small_losses_on_the_plain_path(monkeypatch):
    monkeypatch.setitem(_backend._DEFAULTS, "compiled_kernels", True)

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
    from keras_afl import _backend
    from keras_afl._backend._tensorflow import _runner as LC

    LC.FUSE_MIN_ELEMENTS = LC.FUSE_MIN_PER_SAMPLE = 0
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8)).astype("float32")
    cls = (x[:, 0] > 0).astype("int32") + (x[:, 1] > 0).astype("int32")
    targets = {"focal": (x[:, :1] > 0).astype("float32"),
               "categorical_focal": np.eye(3, dtype="float32")[cls],
               "afl_sparse_categorical_crossentropy": cls}

    def train(loss, y, fuse, strategy=None, policy="float32"):
        _backend._DEFAULTS["compiled_kernels"] = fuse
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


def _segmentation_step(jit, fuse, monkeypatch):
    monkeypatch.setitem(_backend._DEFAULTS, "compiled_kernels", fuse)
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 32, 32, 3)).astype("float32")
    y = (rng.random((4, 32, 32, 1)) < 0.1).astype("float32")
    inputs = keras.Input((32, 32, 3))
    out = keras.layers.Conv2D(1, 3, padding="same", activation="afl_sigmoid")(
        keras.layers.Conv2D(8, 3, padding="same", activation="afl_relu")(inputs))
    model = keras.Model(inputs, out)
    model.compile(keras.optimizers.SGD(0.5), loss=L.FocalLoss(), jit_compile=jit)
    hist = model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    return hist.history["loss"], np.concatenate([w.ravel() for w in model.get_weights()])


@pytest.mark.slow
@pytest.mark.parametrize("jit", [False, True], ids=["graph", "xla-model"])
def test_fused_focal_in_fit_matches_plain(jit, fuse, monkeypatch):
    loss_fused, w_fused = _segmentation_step(jit, True, monkeypatch)
    loss_plain, w_plain = _segmentation_step(jit, False, monkeypatch)
    np.testing.assert_allclose(loss_fused, loss_plain, rtol=1e-5)
    np.testing.assert_allclose(w_fused, w_plain, rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------------------
# Half-precision predictions: cast inside the kernels, and no Keras cast in the Loss classes.

HALF_CASES = {
    "mse": (lambda: L.MeanSquaredError(), data_regression),
    "huber": (lambda: L.Huber(delta=0.5), data_regression),
    "hinge_auto": (lambda: L.Hinge(), data_hinge),
    "bce_logits_smooth": (lambda: L.BinaryCrossentropy(from_logits=True, label_smoothing=0.1), data_binary),
    "bce_probs": (lambda: L.BinaryCrossentropy(), P(data_binary, probs=True)),
    "focal_logits": (lambda: L.FocalLoss(gamma=1.5, from_logits=True), data_binary),
    "cce_logits": (lambda: L.CategoricalCrossentropy(from_logits=True), data_categorical),
    "cfocal_logits_alpha": (lambda: L.CategoricalFocalLoss(alpha=ALPHA5, from_logits=True),
                            data_categorical),
    "scce_logits_ignore": (lambda: L.SparseCategoricalCrossentropy(from_logits=True, ignore_class=1),
                           P(data_sparse, ignore=1)),
    "sfocal_probs": (lambda: L.SparseCategoricalFocalLoss(), P(data_sparse, probs=True)),
}


def _half_inputs(name, dtype, seed=5):
    y, x = HALF_CASES[name][1](seed)
    y = tf.constant(y, tf.int32) if np.issubdtype(np.asarray(y).dtype, np.integer) else tf.constant(y, dtype)
    x = tf.cast(tf.constant(x, tf.float32), dtype)
    w = tf.constant(_rng(seed + 1).uniform(0.0, 2.0, size=x.shape[:-1]), tf.float32)
    return y, x, w


def _keras_cast_first(loss_obj, y, x, w):
    """Keras's own `Loss.__call__` on the same object: y_pred and y_true cast to float32 first."""
    return keras.losses.Loss.__call__(loss_obj, y, tf.cast(x, tf.float32), sample_weight=w)


def _value_and_grad(call, loss_obj, y, x, w):
    with tf.GradientTape() as tape:
        tape.watch(x)
        value = call(loss_obj, y, x, w)
    return value, tape.gradient(value, x)


@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16], ids=lambda d: d.name)
@pytest.mark.parametrize("mode", ["eager", "graph-plain", "graph-fused"])
@pytest.mark.parametrize("name", sorted(HALF_CASES))
def test_loss_class_on_half_predictions_equals_keras_cast_first_grad(name, mode, dtype, fuse):
    """A Loss class given float16/bfloat16 predictions skips Keras's casts to float32; the
    result (a float32 loss, sample weights, the ignore_class mask, the reduction) and the
    half-precision gradient are those of Keras's cast-first `Loss.__call__`."""
    fuse(mode == "graph-fused")
    y, x, w = _half_inputs(name, dtype)
    loss_obj = HALF_CASES[name][0]()
    ours = lambda o, y, x, w: o(y, x, sample_weight=w)  # noqa: E731
    run = (lambda f: f) if mode == "eager" else (lambda f: tf.function(f, autograph=False))
    got_v, got_g = run(lambda y, x, w: _value_and_grad(ours, loss_obj, y, x, w))(y, x, w)
    want_v, want_g = _value_and_grad(_keras_cast_first, loss_obj, y, x, w)  # eager: plain path
    assert got_v.dtype == want_v.dtype == tf.float32
    assert got_g.dtype == dtype
    np.testing.assert_allclose(got_v.numpy(), want_v.numpy(), rtol=1e-5, err_msg=name)
    np.testing.assert_allclose(got_g.numpy().astype(np.float32), want_g.numpy().astype(np.float32),
                               rtol=1e-2, atol=1e-6, err_msg=name)  # the half-precision rounding


def test_functions_still_return_the_prediction_dtype_after_a_class_call():
    y, x, w = _half_inputs("focal_logits", tf.bfloat16)
    assert L.FocalLoss(from_logits=True)(y, x).dtype == tf.float32
    assert L.focal(y, x, from_logits=True).dtype == tf.bfloat16  # the class's float32 switch is reset


def _full_size_casts(fn, y, x):
    graph = tf.function(lambda y, x: _value_and_grad(lambda o, y, x, w: fn(y, x), None, y, x, None),
                        autograph=False).get_concrete_function(y, x).graph
    return [op for op in graph.get_operations()
            if op.type == "Cast" and op.outputs[0].shape.num_elements() == x.shape.num_elements()]


@pytest.mark.parametrize("ours, keras_loss", [
    (L.FocalLoss(from_logits=True), keras.losses.BinaryFocalCrossentropy(from_logits=True)),
    (L.CategoricalCrossentropy(from_logits=True), keras.losses.CategoricalCrossentropy(from_logits=True)),
    (L.MeanSquaredError(), keras.losses.MeanSquaredError()),
], ids=["focal", "cce", "mse"])
def test_no_full_size_cast_outside_the_kernels_for_bfloat16(ours, keras_loss, fuse):
    fuse(True)
    y = tf.zeros([64, 16], tf.bfloat16)
    x = tf.zeros([64, 16], tf.bfloat16)
    assert _full_size_casts(ours, y, x) == []
    assert len(_full_size_casts(keras_loss, y, x)) >= 2  # Keras: y_pred, y_true, the gradient


@pytest.mark.parametrize("keepdims", [True, False])
@pytest.mark.parametrize("shape", [[6, 16], [2, 3, 5], [7, 1]])
def test_class_sum_in_a_compiled_kernel_equals_numpy(shape, keepdims):
    """Inside the kernels (CPU) the class sum is a product with ones; outside, reduce_sum."""
    v = tf.constant(_rng(9).normal(size=shape), tf.float32)
    want = np.sum(v.numpy().astype(np.float64), axis=-1, keepdims=keepdims)

    def in_kernel(v):
        with LC.switched(LC.IN_KERNEL):
            return _backend.ops().class_sum(v, keepdims), _backend.ops().class_mean(v)

    for spec in (tf.TensorSpec(shape, tf.float32), tf.TensorSpec([None, *shape[1:]], tf.float32)):
        compiled = tf.function(in_kernel, jit_compile=True, autograph=False, input_signature=[spec])
        graph = compiled.get_concrete_function().graph
        assert any(op.type in ("MatMul", "BatchMatMulV2") for op in graph.get_operations())
        total, mean = compiled(v)
        np.testing.assert_allclose(total.numpy(), want, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(mean.numpy(), np.reshape(want, want.shape[:len(shape) - 1]) / shape[-1],
                                   rtol=1e-5, atol=1e-6)
    assert not LC.IN_KERNEL.get()
    plain = tf.function(lambda v: _backend.ops().class_sum(v), autograph=False).get_concrete_function(v).graph
    assert not any(op.type == "MatMul" for op in plain.get_operations())


@pytest.mark.parametrize("make, labels", [
    (lambda: L.FocalLoss(from_logits=True), "binary"), (lambda: L.Hinge(), "binary"),
    (lambda: L.MeanSquaredError(), "binary"), (lambda: L.CategoricalCrossentropy(from_logits=True), "binary"),
    (lambda: L.SparseCategoricalCrossentropy(from_logits=True), "ids"),
], ids=["focal", "hinge", "mse", "cce", "scce"])
def test_half_predictions_with_integer_labels_equal_keras_cast_first(make, labels):
    x = tf.constant(_rng(12).normal(size=(4, 5)), tf.bfloat16)
    y = (tf.constant(_rng(13).integers(0, 2, size=(4, 5)), tf.int32) if labels == "binary"
         else tf.constant([0, 1, 2, 4], tf.int64))
    loss_obj = make()
    want = keras.losses.Loss.__call__(loss_obj, y, tf.cast(x, tf.float32))
    np.testing.assert_allclose(loss_obj(y, x).numpy(), want.numpy(), rtol=1e-6)


def test_subclass_overriding_call_still_gets_float32_predictions():
    seen = []

    class Mine(L.FocalLoss):
        def call(self, y_true, y_pred):
            seen.append(y_pred.dtype)
            return super().call(y_true, y_pred)

    x = tf.constant([[0.5, -1.0]], tf.bfloat16)
    y = tf.constant([[1.0, 0.0]])
    got = Mine(from_logits=True)(y, x)
    assert seen == [tf.float32]
    np.testing.assert_allclose(got.numpy(), L.FocalLoss(from_logits=True)(y, x).numpy(), rtol=1e-6)
