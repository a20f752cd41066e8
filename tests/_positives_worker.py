"""Runs for the distributed normalisation-by-positives tests, as separate processes (devices must
be configured before TensorFlow initialises). The pattern of tests/_dist_worker.py.

    python tests/_positives_worker.py mirrored OUT.json   # 2 logical CPUs vs one device
    python tests/_positives_worker.py single OUT.npy       # reference for the multi-worker test
    python tests/_positives_worker.py worker OUT.npy       # one MultiWorkerMirroredStrategy worker

The batches put most positives in the first half of each global batch, which the first replica
gets: a loss that divided by each replica's own count would differ from the single-device one.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

GLOBAL_BATCH = 16
ANCHORS, CLASSES, FEATURES = 12, 3, 4


def losses():
    import keras_afl

    L = keras_afl.losses
    return {
        "focal_positives": ("binary", lambda: L.FocalLoss(
            from_logits=True, ignore_class=-1, normalize="positives")),
        "bce_positives_per_image": ("binary", lambda: L.BinaryCrossentropy(
            from_logits=True, ignore_class=-1, normalize="positives_per_image")),
        "sparse_focal_positives": ("sparse", lambda: L.SparseCategoricalFocalLoss(
            from_logits=True, ignore_class=255, normalize="positives", background_class=0)),
        "categorical_focal_positives_per_image": ("categorical", lambda: L.CategoricalFocalLoss(
            from_logits=True, normalize="positives_per_image", background_class=0)),
    }


def data(kind, n=64, seed=0):
    """Inputs [n, anchors, features] and labels; the first half of every global batch holds
    most of the positives (label 1 / a class other than 0), some anchors are ignored."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, ANCHORS, FEATURES)).astype("float32")
    first_half = (np.arange(n) % GLOBAL_BATCH) < GLOBAL_BATCH // 2
    p_pos = np.where(first_half, 0.5, 0.05)[:, None]
    state = np.where(rng.uniform(size=(n, ANCHORS)) < p_pos, 1, 0)  # 1: positive
    state[rng.uniform(size=(n, ANCHORS)) < 0.15] = 2  # ignored
    cls = rng.integers(1, CLASSES, size=(n, ANCHORS))  # classes 1.. (0 is background)
    if kind == "sparse":
        y = np.where(state == 1, cls, 0)
        return x, np.where(state == 2, 255, y).astype("int32"), state
    if kind == "categorical":
        return x, np.eye(CLASSES, dtype="float32")[np.where(state == 1, cls, 0)], state
    y = np.zeros((n, ANCHORS, CLASSES), "float32")
    y[state == 1, :] = 0.0
    idx = np.nonzero(state == 1)
    y[idx + (cls[idx],)] = 1.0
    y[state == 2] = -1.0
    return x, y, state


def build():
    import keras
    import keras_afl  # noqa: F401 (installs the "afl_elu" name)

    inputs = keras.Input((ANCHORS, FEATURES))
    h = keras.layers.Dense(16, activation="afl_elu")(inputs)
    return keras.Model(inputs, keras.layers.Dense(CLASSES)(h))


def flat(weights):
    return np.concatenate([np.ravel(w) for w in weights])


def fit(strategy, kind, make_loss, init, epochs=2):
    import keras

    x, y, _ = data(kind)
    with strategy.scope():
        model = build()
        model.set_weights(init)
        model.compile(keras.optimizers.SGD(0.05), loss=make_loss())
    before = model.evaluate(x, y, batch_size=GLOBAL_BATCH, verbose=0)
    model.fit(x, y, batch_size=GLOBAL_BATCH, epochs=epochs, shuffle=False, verbose=0)
    return before, model.get_weights()


def replica_counts(kind):
    """Positives in each half of the first global batch (each replica's share)."""
    _, _, state = data(kind)
    half = GLOBAL_BATCH // 2
    return [int((state[:half] == 1).sum()), int((state[half:GLOBAL_BATCH] == 1).sum())]


def mirrored(out):
    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(cpus[0],
                                               [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    result = {"replicas": strategy.num_replicas_in_sync, "runs": {}}
    for name, (kind, make_loss) in losses().items():
        keras.utils.set_random_seed(0)
        init = build().get_weights()
        loss_one, single = fit(tf.distribute.OneDeviceStrategy("/cpu:0"), kind, make_loss, init)
        loss_two, multi = fit(strategy, kind, make_loss, init)
        result["runs"][name] = {
            "loss_single": float(loss_one), "loss_mirrored": float(loss_two),
            "diff": float(np.max(np.abs(flat(single) - flat(multi)))),
            "moved": float(np.max(np.abs(flat(single) - flat(init)))),
            "counts": replica_counts(kind),
        }
    with open(out, "w") as f:
        json.dump(result, f)


def custom_loop(strategy, init, epochs=2):
    """The documented custom loop, with the loss used as it is: each replica's value is its
    share of the global normalised loss (no tf.nn.compute_average_loss)."""
    import keras
    import keras_afl

    x, y, _ = data("binary")
    with strategy.scope():
        model = build()
        model.set_weights(init)
        optimizer = keras.optimizers.SGD(0.05)
        loss_fn = keras_afl.losses.FocalLoss(from_logits=True, ignore_class=-1,
                                             normalize="positives")
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH).with_options(options)
    dist = strategy.experimental_distribute_dataset(ds)

    @tf.function
    def step(xb, yb):
        def replica_step(xb, yb):
            with tf.GradientTape() as tape:
                loss = loss_fn(yb, model(xb, training=True))
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            return loss

        return strategy.run(replica_step, args=(xb, yb))

    for _ in range(epochs):
        for xb, yb in dist:
            step(xb, yb)
    return model.get_weights()


def multiworker(out, single_process):
    strategy = (tf.distribute.get_strategy() if single_process
                else tf.distribute.MultiWorkerMirroredStrategy())
    import keras

    keras.utils.set_random_seed(0)
    init = build().get_weights()
    np.save(out, flat(custom_loop(strategy, init)))
    np.save(out.replace(".npy", "_init.npy"), flat(init))


if __name__ == "__main__":
    mode, out = sys.argv[1], sys.argv[2]
    if mode == "mirrored":
        mirrored(out)
    elif mode in ("single", "worker"):
        multiworker(out, single_process=mode == "single")
    else:
        raise SystemExit(f"unknown mode {mode!r}")
