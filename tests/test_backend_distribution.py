"""More than one device on Keras's other backends.

JAX: `keras.distribution.DataParallel` over 2 host devices
(XLA_FLAGS=--xla_force_host_platform_device_count=2) gives the single-device loss and gradients
for every keras_afl loss, positives normalisation included (one SGD step with learning rate 1: the weight change is the gradient).

PyTorch: Keras 3 has no distribution backend for PyTorch (keras/src/backend/torch has no
distribution_lib: `keras.distribution.list_devices()` fails there), so multi-device PyTorch
training is torch's own DistributedDataParallel around the model, which averages the replicas'
gradients. With the default reduction ("sum_over_batch_size") each replica's loss is its
mean, so the average of the replicas' gradients over equal shards is the full batch's gradient:
tested here by computing it shard by shard.
"""

from __future__ import annotations

import importlib.util
import json

import pytest

from tests._checks import run_python

LOSSES = """
import numpy as np
import keras, keras_afl
F = keras_afl.losses
rng = np.random.default_rng(0)
x = rng.normal(size=(8, 4)).astype("float32")
binary = (rng.random((8, 3)) < 0.4).astype("float32")
ids = np.arange(8) % 3
CASES = {  # name -> (loss, labels, output activation)
    "mse": (F.MeanSquaredError(), rng.normal(size=(8, 3)).astype("float32"), None),
    "huber": (F.Huber(delta=0.5), rng.normal(size=(8, 3)).astype("float32"), None),
    "hinge": (F.Hinge(), binary, None),
    "bce": (F.BinaryCrossentropy(label_smoothing=0.1), binary, "afl_sigmoid"),
    "bce_logits": (F.BinaryCrossentropy(from_logits=True, pos_weight=2.0), binary, None),
    "focal": (F.FocalLoss(gamma=0.5), binary, "afl_sigmoid"),
    "focal_logits": (F.FocalLoss(from_logits=True), binary, None),
    "cce": (F.CategoricalCrossentropy(), np.eye(3, dtype="float32")[ids], "afl_softmax"),
    "cce_logits": (F.CategoricalCrossentropy(from_logits=True), np.eye(3, dtype="float32")[ids], None),
    "cfocal": (F.CategoricalFocalLoss(alpha=[0.2, 0.3, 0.5]), np.eye(3, dtype="float32")[ids],
               "afl_softmax"),
    "scce": (F.SparseCategoricalCrossentropy(from_logits=True), ids, None),
    "sfocal": (F.SparseCategoricalFocalLoss(gamma=1.0, from_logits=True), ids, None),
}

def step(name):
    loss, y, activation = CASES[name]
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation=activation)])
    w0 = [np.array(v) for v in model.get_weights()]
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss=loss)
    value = float(model.train_on_batch(x, y))
    grads = [a - np.array(b) for a, b in zip(w0, model.get_weights())]
    return value, grads
"""

JAX = LOSSES + """
import json
# RetinaNet's reduction: on JAX a step is one program over the global batch, so the count of
# positives is the global one without an all-reduce of its own.
labels = binary.copy()
labels[::3, 0] = -1.0
CASES["focal_positives"] = (F.FocalLoss(from_logits=True, ignore_class=-1, normalize="positives"),
                            labels, None)
devices = keras.distribution.list_devices()
assert len(devices) == 2, devices
out = {}
for name in CASES:
    keras.distribution.set_distribution(None)
    single = step(name)
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
    split = step(name)
    keras.distribution.set_distribution(None)
    out[name] = [single[0], split[0],
                 max(float(np.max(np.abs(a - b))) for a, b in zip(single[1], split[1])),
                 max(float(np.max(np.abs(a))) for a in single[1])]
print("RESULT" + json.dumps(out))
"""

TORCH = LOSSES + """
import json, torch
out = {}
for name in CASES:
    loss, y, activation = CASES[name]
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation=activation)])

    def grads(xs, ys):
        model.zero_grad()
        value = loss(torch.as_tensor(ys), model(torch.as_tensor(xs)))
        value.backward()
        return [v.value.grad.detach().numpy().copy() for v in model.trainable_variables]

    full = grads(x, y)
    shards = [grads(x[i::2], y[i::2]) for i in range(2)]  # two replicas, equal shards
    mean = [(a + b) / 2 for a, b in zip(*shards)]
    out[name] = max(float(np.max(np.abs(a - b))) for a, b in zip(full, mean))
print("RESULT" + json.dumps(out))
"""


def _result(stdout):
    line = [l for l in stdout.splitlines() if l.startswith("RESULT")][0]
    return json.loads(line[len("RESULT"):])


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_jax_data_parallel_equals_one_device_for_every_loss():
    out = _result(run_python(JAX, env={
        "KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}))
    assert len(out) == 13
    for name, (single, split, grad_diff, grad_size) in out.items():
        assert abs(single - split) <= 1e-6 * max(1.0, abs(single)), (name, single, split)
        assert grad_size > 1e-4, name  # a live gradient, compared
        assert grad_diff <= 1e-6 * max(1.0, grad_size), (name, grad_diff)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")
def test_torch_replica_gradients_average_to_the_full_batch():
    out = _result(run_python(TORCH, env={"KERAS_BACKEND": "torch"}))
    assert len(out) == 12
    for name, diff in out.items():
        assert diff <= 1e-6, (name, diff)
