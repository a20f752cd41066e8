"""The training-step suite (`keras_afl.bench.steps`, `keras-afl bench --suites steps`): the two
variants of each case are the same model on the same data and differ only in whose loss they
use, which computes the same number (checked against Keras's, evaluated here)."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_afl.bench import steps


@pytest.mark.parametrize("case", sorted(steps.CASES))
def test_both_variants_are_the_same_model_and_the_same_loss(case):
    batch = steps.CASES[case][0]
    ours, theirs = (steps.variant(case, batch, v, batches=1).model for v in (True, False))
    model, x, y = steps._model_and_data(case, batch, 1)
    assert [w.shape for w in ours.weights] == [w.shape for w in theirs.weights]
    for a, b in zip(ours.weights, theirs.weights):  # the same seed: the same initial weights
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    ours_loss, keras_loss = steps._losses(case)
    pred = ours(x)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(ours_loss(y, pred)),
                               keras.ops.convert_to_numpy(keras_loss(y, pred)), rtol=2e-5)


@pytest.mark.slow
def test_the_suite_runs_from_the_command_and_writes_its_rows(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, "-m", "keras_afl", "bench", "--suites", "steps",
                          "--quick", "--output", str(tmp_path)], env=env, capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads((tmp_path / f"steps_{keras.backend.backend()}.json").read_text())
    assert sorted(r["case"] for r in result["rows"]) == sorted(steps.CASES)
    for r in result["rows"]:
        assert r["ratio"] == pytest.approx(r["ours_ms"] / r["keras_ms"], rel=1e-3)
        assert r["compile"] == "graph"  # TensorFlow's default on a CPU: jit_compile="auto" -> no XLA
    assert "training steps, tensorflow" in out.stdout


def test_peak_memory_program_prints_its_peak():
    peak = steps.peak_memory("classifier_cce", 32, True, steps=1)
    assert 50 < peak < 20000
