"""Normalisation by positives under tf.distribute: the count is summed over every replica, so
loss and training equal a single-device run (2 logical CPUs; 2 worker processes on 127.0.0.1).
Runs tests/_positives_worker.py in fresh processes, as tests/test_distribute.py does."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests._checks import REPO
from tests.test_distribute import ENV, free_ports

pytestmark = pytest.mark.slow
WORKER = os.path.join(REPO, "tests", "_positives_worker.py")


def run_worker(*args):
    proc = subprocess.run([sys.executable, WORKER, *args], capture_output=True, text=True, env=ENV,
                          timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-4000:]


def test_mirrored_two_devices_equal_one_device_in_loss_and_training(tmp_path):
    out = tmp_path / "mirrored.json"
    run_worker("mirrored", str(out))
    r = json.loads(out.read_text())
    assert r["replicas"] == 2
    assert len(r["runs"]) == 4
    for name, run in r["runs"].items():
        first, second = run["counts"]
        # The replicas see different numbers of positives: dividing by each one's own count
        # would give another loss and other gradients.
        assert first > 2 * second, f"{name}: positives {run['counts']} do not test the sum"
        np.testing.assert_allclose(run["loss_mirrored"], run["loss_single"], rtol=1e-5,
                                   err_msg=f"{name}: evaluate() differs")
        assert run["moved"] > 1e-3, f"{name}: training did not move the weights"
        assert run["diff"] < 1e-5, f"{name}: mirrored weights differ by {run['diff']}"


def test_multi_worker_two_processes_equal_one_process(tmp_path):
    workers = [f"127.0.0.1:{p}" for p in free_ports(2)]
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
