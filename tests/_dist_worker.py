"""Training runs for the tf.distribute tests, run as separate processes.

    python tests/_dist_worker.py mirrored OUT.json     # 2 logical CPUs: single vs MirroredStrategy, every loss
    python tests/_dist_worker.py single OUT.npy         # single-process reference for the multi-worker test
    python tests/_dist_worker.py worker OUT.npy          # one MultiWorkerMirroredStrategy worker (TF_CONFIG set)
    python tests/_dist_worker.py determinism OUT.json    # two seeded runs with op determinism

Devices must be configured before TensorFlow initialises, hence processes.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

# Label kind for each loss name: what targets and output head it trains with.
LOSS_TARGETS = {
    "afl_mse": "regression",
    "afl_huber": "regression",
    "afl_bce": "binary",
    "focal": "binary",
    "afl_hinge": "binary",
    "afl_cce": "categorical",
    "categorical_focal": "categorical",
    "afl_sparse_categorical_crossentropy": "sparse",
    "sparse_categorical_focal": "sparse",
}
GLOBAL_BATCH = 32


def data(kind, n=128, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype("float32")
    score = x[:, 0] + 0.5 * x[:, 1] - 0.25 * x[:, 2]
    if kind == "regression":
        return x, score[:, None].astype("float32")
    if kind == "binary":
        return x, (score > 0).astype("float32")[:, None]
    cls = np.digitize(score, [-0.5, 0.5])
    if kind == "sparse":
        return x, cls.astype("int32")[:, None]
    return x, np.eye(3, dtype="float32")[cls]


def build(kind):
    import keras
    import keras_afl

    head = {"regression": [keras.layers.Dense(1)],
            "binary": [keras.layers.Dense(1), keras_afl.layers.Sigmoid()],
            "categorical": [keras.layers.Dense(3), keras_afl.layers.Softmax()],
            "sparse": [keras.layers.Dense(3), keras_afl.layers.Softmax()]}[kind]
    return keras.Sequential([
        keras.Input((8,)),
        keras.layers.Dense(16, activation="afl_elu"),
        keras.layers.Dense(16),
        keras_afl.layers.PReLU(),
        keras.layers.Dense(16, activation="afl_tanh"),
        *head,
    ])


def train(strategy, loss_name, init_weights=None, epochs=2):
    import keras

    kind = LOSS_TARGETS[loss_name]
    x, y = data(kind)
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = build(kind)
        if init_weights is not None:
            model.set_weights(init_weights)
        model.compile(keras.optimizers.SGD(0.05), loss=loss_name)
    model.fit(x, y, batch_size=GLOBAL_BATCH, epochs=epochs, shuffle=False, verbose=0)
    return model.get_weights()


def flat(weights):
    return np.concatenate([np.ravel(w) for w in weights])


def mirrored(out):
    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras_afl

    names = sorted(e.name for e in keras_afl.entries("loss"))
    result = {"replicas": None, "max_abs_diff": {}, "missing": sorted(set(names) - set(LOSS_TARGETS))}
    mirrored_strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    result["replicas"] = mirrored_strategy.num_replicas_in_sync
    for name in names:
        if name not in LOSS_TARGETS:
            continue
        import keras

        keras.utils.set_random_seed(0)
        init = build(LOSS_TARGETS[name]).get_weights()
        single = train(tf.distribute.OneDeviceStrategy("/cpu:0"), name, init)
        multi = train(mirrored_strategy, name, init)
        moved = float(np.max(np.abs(flat(single) - flat(init))))
        result["max_abs_diff"][name] = {"diff": float(np.max(np.abs(flat(single) - flat(multi)))),
                                        "moved": moved}
    with open(out, "w") as f:
        json.dump(result, f)


def train_custom_loop(strategy, init, epochs=2):
    """A tf.distribute custom training loop with the focal loss.

    Keras 3's `fit()` does not run under MultiWorkerMirroredStrategy
    (keras-team/keras#20585: PerReplica inputs), so multi-worker training uses
    the documented custom loop: per-sample losses (`reduction=None`) averaged
    over the *global* batch with `tf.nn.compute_average_loss`.
    """
    import keras
    import keras_afl

    x, y = data("binary")
    with strategy.scope():
        model = build("binary")
        model.set_weights(init)
        optimizer = keras.optimizers.SGD(0.05)
        loss_fn = keras_afl.losses.FocalLoss(reduction=None)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH).with_options(options)
    dist = strategy.experimental_distribute_dataset(ds)

    @tf.function
    def step(xb, yb):
        def replica_step(xb, yb):
            with tf.GradientTape() as tape:
                per_sample = loss_fn(yb, model(xb, training=True))
                loss = tf.nn.compute_average_loss(per_sample, global_batch_size=GLOBAL_BATCH)
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            return loss

        return strategy.run(replica_step, args=(xb, yb))

    for _ in range(epochs):
        for xb, yb in dist:
            step(xb, yb)
    return model.get_weights()


def multiworker(out, single_process):
    if single_process:
        strategy = tf.distribute.get_strategy()
    else:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    import keras

    keras.utils.set_random_seed(0)
    init = build("binary").get_weights()
    np.save(out, flat(train_custom_loop(strategy, init)))
    np.save(out.replace(".npy", "_init.npy"), flat(init))


def determinism(out):
    import keras

    tf.config.experimental.enable_op_determinism()
    runs = []
    for _ in range(2):
        keras.utils.set_random_seed(123)
        x, y = data("binary", n=256)
        model = build("binary")
        model.compile(keras.optimizers.Adam(0.01), loss="focal")
        model.fit(x, y, batch_size=32, epochs=2, shuffle=True, verbose=0)
        runs.append(flat(model.get_weights()))
    with open(out, "w") as f:
        json.dump({"identical": bool(np.array_equal(runs[0], runs[1])),
                   "max_abs_diff": float(np.max(np.abs(runs[0] - runs[1])))}, f)


if __name__ == "__main__":
    mode, out = sys.argv[1], sys.argv[2]
    if mode == "mirrored":
        mirrored(out)
    elif mode in ("single", "worker"):
        multiworker(out, single_process=mode == "single")
    elif mode == "determinism":
        determinism(out)
    else:
        raise SystemExit(f"unknown mode {mode!r}")
