"""`keras-afl bench --modes compile` on PyTorch (issue 21): the loss step of ours and of Keras's
built-in, each wrapped in `torch.compile` as Keras's `jit_compile=True` wraps its train step, timed
round-robin in one run; rows carry `"mode": "compile"` and what `torch._dynamo.explain` made of
each step. No time is asserted (speed is measured by `keras-afl bench`, not by tests): the rows,
their mode, and the structural count -- our loss step traces into one Dynamo graph, no break.

Runs in fresh processes with KERAS_BACKEND=torch (the backend is chosen at Keras's import).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("torch")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _env():
    return dict(os.environ, KERAS_BACKEND="torch", OMP_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="3")


@pytest.mark.slow
def test_compile_mode_writes_compile_rows_for_one_loss(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "keras_afl", "bench", "--modes", "compile", "--cases", "bce_logits",
         "--sizes", "10", "--repeats", "2", "--no-progress", "--output", str(tmp_path)],
        env=_env(), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    with open(tmp_path / "backends.json", encoding="utf-8") as f:
        result = json.load(f)["torch"]
    assert result["modes"] == ["compile"]
    rows = result["rows"]
    assert [(r["kind"], r["name"], r["mode"], r["log2_size"]) for r in rows] == [
        ("loss", "bce_logits", "compile", 10)]
    row = rows[0]
    assert row["ours_ms"] > 0 and row["reference_ms"] > 0
    assert "torch.compile" in row["target"]
    # What Dynamo made of each step, counted by torch._dynamo.explain in the same run: ours is
    # one graph without a break (the break at torch.autograd.grad, untraced by default, ends it).
    assert row["graph_breaks"]["ours"] == 0 and row["graphs"]["ours"] == 1
    assert set(row["graph_breaks"]) == {"ours", "reference"}
    assert "compile" in (tmp_path / "backends.md").read_text(encoding="utf-8")
    assert "--modes compile" in result["command"]


# argv -> (exit code, stderr) through keras_afl.cli.main, in one process on PyTorch.
_DRIVER = r'''
import contextlib, io, json, sys
from keras_afl.cli import main

report = {}
for name, argv in json.loads(sys.argv[1]).items():
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        rc = main(argv)
    report[name] = {"rc": rc, "err": err.getvalue()}
print(json.dumps(report))
'''

_BAD = {
    "tensorflow_mode": ["bench", "--modes", "xla", "--cases", "mse", "--sizes", "4"],
    "jax_mode": ["bench", "--modes", "jit", "--cases", "mse", "--sizes", "4"],
    "mixed": ["bench", "--modes", "compile", "graph", "--cases", "mse", "--sizes", "4"],
    "unknown": ["bench", "--modes", "fast", "--cases", "mse", "--sizes", "4"],
}


def test_bad_modes_on_torch_are_usage_errors():
    out = subprocess.run([sys.executable, "-c", _DRIVER, json.dumps(_BAD)], env=_env(), cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    for name in ("tensorflow_mode", "mixed"):  # TensorFlow's modes: the message names the fix
        assert report[name]["rc"] == 2, report[name]
        err = report[name]["err"]
        assert "--modes" in err and "TensorFlow's" in err and "torch.compile" in err, err
        assert "Fix" in err, err
    jax = report["jax_mode"]  # JAX's mode on PyTorch: what PyTorch takes
    assert jax["rc"] == 2 and "eager and/or compile" in jax["err"] and "jit" in jax["err"], jax
    unknown = report["unknown"]  # not a mode at all: argparse's usage error
    assert unknown["rc"] == 2 and "invalid choice" in unknown["err"] and "'fast'" in unknown["err"]


def test_the_regression_guard_reruns_a_row_in_its_own_mode(monkeypatch):
    """`keras-afl bench --compare` on PyTorch: a committed "compile" row is measured again under
    torch.compile and an "eager" row eagerly -- one `backends.run(modes=[mode])` per mode."""
    from keras_afl.bench import backends
    from keras_afl.bench import compare as guard

    calls = []

    def fake_run(*, dtype, modes, sizes, repeats, activations, losses):
        calls.append((modes, dtype, sizes, losses))
        return {"backend": "torch", "repeats": 2, "rows": [
            {"kind": "loss", "name": n, "mode": modes[0], "dtype": dtype, "log2_size": s,
             "ratio": 0.5, "ours_ms": 1.0, "reference_ms": 2.0} for n in losses for s in sizes]}

    monkeypatch.setattr(backends, "run", fake_run)
    keys = [("loss", "mse", "compile", "float32", 10), ("loss", "mse", "eager", "float32", 10)]
    measured = guard.harness_measure("torch", repeats=2)(keys)
    assert sorted(calls) == [(["compile"], "float32", [10], ["mse"]),
                             (["eager"], "float32", [10], ["mse"])]
    assert set(measured) == set(keys)
