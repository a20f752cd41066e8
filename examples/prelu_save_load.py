"""PReLU with a learned slope, saved to `.keras` and reloaded in a fresh process.

`keras_afl.layers.PReLU` learns one negative slope per unit (starting at 0.25,
as in He et al. 2015); its gradient with respect to the slope is the analytic
one. The `.keras` file reloads in any process that has done `import keras_afl`,
with every setting and learned slope restored.

    python examples/prelu_save_load.py
"""

import os
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_afl  # noqa: E402


def main():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 6)).astype("float32")
    y = (np.abs(x[:, :1]) - 0.3 * x[:, 1:2]).astype("float32")   # a kinked target

    model = keras.Sequential([
        keras.Input((6,)),
        keras.layers.Dense(32),
        keras_afl.layers.PReLU(name="prelu"),
        keras.layers.Dense(1),
    ])
    model.compile(keras.optimizers.Adam(1e-2), loss="afl_huber")
    model.fit(x, y, epochs=10, batch_size=64, verbose=0)
    alpha = model.get_layer("prelu").alpha.numpy()
    print(f"learned PReLU slopes: min {alpha.min():.3f}, max {alpha.max():.3f} (started at 0.25)")

    folder = tempfile.mkdtemp(prefix="keras_afl_prelu_")
    path = os.path.join(folder, "prelu.keras")
    model.save(path)
    np.save(os.path.join(folder, "x.npy"), x[:100])
    np.save(os.path.join(folder, "want.npy"), model.predict(x[:100], verbose=0))
    np.save(os.path.join(folder, "alpha.npy"), alpha)

    fresh = """
import sys, numpy as np, keras, keras_afl
folder = sys.argv[1]
m = keras.models.load_model(folder + "/prelu.keras")
assert isinstance(m.get_layer("prelu"), keras_afl.layers.PReLU)
np.testing.assert_array_equal(m.get_layer("prelu").alpha.numpy(), np.load(folder + "/alpha.npy"))
got = m.predict(np.load(folder + "/x.npy"), verbose=0)
np.testing.assert_allclose(got, np.load(folder + "/want.npy"), rtol=1e-6, atol=1e-6)
print("fresh process: PReLU slopes and predictions match")
"""
    proc = subprocess.run([sys.executable, "-c", fresh, folder], capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    print(proc.stdout.strip())
    if proc.returncode != 0:
        raise SystemExit("reload failed:\n" + proc.stderr[-3000:])
    print(f"saved and reloaded {path}")


if __name__ == "__main__":
    main()
