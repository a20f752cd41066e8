"""Quickstart: keras_afl layers and string activations in a Keras model, saved and reloaded.

Trains a small classifier on a synthetic two-moons-like problem, saves it to
`.keras`, reloads it in a *fresh* Python process (which only imports
keras_afl), and checks that the predictions match. Exit code 0 on success.

    python examples/quickstart.py [--output DIR]
"""

import argparse
import os
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_afl  # noqa: E402,F401  (installs the "afl_*" names)


def make_data(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, np.pi, n)
    label = rng.integers(0, 2, n)
    x = np.stack([np.cos(t) + label, np.sin(t) * (1 - 2 * label) + 0.5 * label], axis=1)
    x += rng.normal(scale=0.15, size=x.shape)
    return x.astype("float32"), label.astype("float32")[:, None]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=None, help="folder for the saved model (default: a temp dir)")
    args = parser.parse_args(argv)
    out = args.output or tempfile.mkdtemp(prefix="keras_afl_quickstart_")
    os.makedirs(out, exist_ok=True)

    keras.utils.set_random_seed(0)
    x, y = make_data()
    model = keras.Sequential([
        keras.Input((2,)),
        keras.layers.Dense(32, activation="afl_elu"),       # a keras_afl activation by name
        keras.layers.Dense(32),
        keras_afl.layers.PReLU(),                            # learnable slope, starts at 0.25
        keras.layers.Dense(1),
        keras_afl.layers.Sigmoid(),                          # carries its logits to the loss
    ])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="binary_crossentropy", metrics=["accuracy"])
    hist = model.fit(x, y, epochs=8, batch_size=64, verbose=0)
    print(f"loss {hist.history['loss'][0]:.4f} -> {hist.history['loss'][-1]:.4f}, "
          f"accuracy {hist.history['accuracy'][-1]:.3f}")

    path = os.path.join(out, "quickstart.keras")
    model.save(path)
    np.save(os.path.join(out, "x.npy"), x[:256])
    np.save(os.path.join(out, "pred.npy"), model.predict(x[:256], verbose=0))

    check = (
        "import os, numpy as np, keras, keras_afl\n"
        f"m = keras.models.load_model({path!r})\n"
        f"x = np.load({os.path.join(out, 'x.npy')!r}); want = np.load({os.path.join(out, 'pred.npy')!r})\n"
        "got = m.predict(x, verbose=0)\n"
        "print('max |difference| after reload:', float(np.max(np.abs(got - want))))\n"
        "raise SystemExit(0 if np.allclose(got, want, rtol=1e-6, atol=1e-7) else 1)\n"
    )
    proc = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    print(proc.stdout.strip())
    if proc.returncode != 0:
        print("reload check FAILED:\n" + proc.stderr[-3000:], file=sys.stderr)
        return 1
    print(f"saved model: {path}\nreloaded in a fresh process: predictions match")
    return 0


if __name__ == "__main__":
    sys.exit(main())
