"""tf.distribute, determinism and TFLite: real strategies in real processes."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from tests._checks import REPO, run_python

pytestmark = pytest.mark.slow
WORKER = os.path.join(REPO, "tests", "_dist_worker.py")
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": REPO}


def run_worker(*args, env=None, timeout=600):
    proc = subprocess.run([sys.executable, WORKER, *args], capture_output=True, text=True,
                          env=env or ENV, timeout=timeout, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-4000:]


def test_mirrored_two_devices_equals_single_device_for_every_loss(tmp_path):
    out = tmp_path / "mirrored.json"
    run_worker("mirrored", str(out))
    r = json.loads(out.read_text())
    assert r["replicas"] == 2
    assert r["missing"] == [], f"losses without a distribution test: {r['missing']}"
    assert len(r["max_abs_diff"]) >= 9
    for name, d in r["max_abs_diff"].items():
        assert d["moved"] > 1e-3, f"{name}: training did not move the weights"
        assert d["diff"] < 1e-5, f"{name}: mirrored weights differ from single-device by {d['diff']}"


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_multi_worker_two_processes_equal_single_process(tmp_path):
    ports = free_ports(2)
    workers = [f"127.0.0.1:{p}" for p in ports]
    procs = []
    for i in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}}
        procs.append(subprocess.Popen(
            [sys.executable, WORKER, "worker", str(tmp_path / f"w{i}.npy")],
            env={**ENV, "TF_CONFIG": json.dumps(tf_config)}, cwd=REPO,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        for p in procs:
            _, err = p.communicate(timeout=600)
            assert p.returncode == 0, err[-4000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    run_worker("single", str(tmp_path / "single.npy"))
    w0, w1, single = (np.load(tmp_path / f) for f in ("w0.npy", "w1.npy", "single.npy"))
    init = np.load(tmp_path / "single_init.npy")
    assert np.max(np.abs(single - init)) > 1e-3, "training did not move the weights"
    np.testing.assert_array_equal(w0, w1)
    np.testing.assert_allclose(w0, single, rtol=0, atol=1e-5)


def test_seeded_runs_with_op_determinism_are_bit_identical(tmp_path):
    out = tmp_path / "det.json"
    run_worker("determinism", str(out))
    r = json.loads(out.read_text())
    assert r["identical"], f"runs differ by {r['max_abs_diff']}"


def test_tflite_conversion_runs_and_matches():
    out = run_python("""
        import numpy as np, tensorflow as tf, keras, keras_afl
        keras.utils.set_random_seed(0)
        m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="afl_elu"),
                              keras_afl.layers.PReLU(), keras.layers.Dense(8), keras_afl.layers.SELU(),
                              keras.layers.Dense(8), keras_afl.layers.LeakyReLU(0.1),
                              keras.layers.Dense(3), keras_afl.layers.Softmax()])
        interp = tf.lite.Interpreter(model_content=tf.lite.TFLiteConverter.from_keras_model(m).convert())
        interp.allocate_tensors()
        i, o = interp.get_input_details()[0], interp.get_output_details()[0]
        x = np.random.default_rng(0).normal(size=(1, 4)).astype("float32")
        interp.set_tensor(i["index"], x)
        interp.invoke()
        print("ERR", float(np.max(np.abs(interp.get_tensor(o["index"]) - m(x).numpy()))))
    """)
    err = float(out.strip().splitlines()[-1].split()[1])
    assert err < 1e-5
