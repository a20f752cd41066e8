"""keras_afl under `tf.distribute.MirroredStrategy`, on two logical CPU devices.

Two logical devices are carved out of the one CPU *before TensorFlow
initialises* (with a GPU machine, MirroredStrategy uses the GPUs instead).
Layers and losses are created inside `strategy.scope()`; the Keras `Loss`
base class divides the loss by the number of replicas, so the result matches
single-device training.

    python examples/mirrored_strategy.py
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

# Must run before anything initialises the TensorFlow runtime.
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_afl  # noqa: E402


def main():
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    strategy = tf.distribute.MirroredStrategy(devices)
    print(f"replicas in sync: {strategy.num_replicas_in_sync} ({', '.join(devices)})")

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2048, 12)).astype("float32")
    y = (x[:, :3].sum(axis=1) > 0.5).astype("float32")[:, None]     # about 30 % positives

    with strategy.scope():
        model = keras.Sequential([
            keras.Input((12,)),
            keras.layers.Dense(32, activation="afl_elu"),
            keras.layers.Dense(16),
            keras_afl.layers.PReLU(),
            keras.layers.Dense(1),
            keras_afl.layers.Sigmoid(),
        ])
        model.compile(keras.optimizers.Adam(3e-3), loss="focal", metrics=["accuracy"])
    hist = model.fit(x, y, epochs=6, batch_size=128, verbose=0)   # 64 per replica
    print(f"focal loss {hist.history['loss'][0]:.4f} -> {hist.history['loss'][-1]:.4f}, "
          f"accuracy {hist.history['accuracy'][-1]:.3f}")
    if not (strategy.num_replicas_in_sync == 2 and hist.history["loss"][-1] < hist.history["loss"][0]):
        raise SystemExit("expected two replicas and a falling loss")


if __name__ == "__main__":
    main()
