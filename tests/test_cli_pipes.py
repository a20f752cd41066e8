"""`keras-afl ... | head`: when the reader of its output goes away, the command stops as a Unix
tool does (issue 19, item 11): no BrokenPipeError traceback, nothing on stderr, exit status 141
(128 + SIGPIPE, what a shell shows for a tool that SIGPIPE ended), on every backend.

The reader is gone before the command writes (the read end of its stdout pipe is closed), so the
first write fails: no race with the size of the pipe's buffer.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import keras
import pytest

import keras_afl
from keras_afl.cli import EXIT_READER_GONE

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _to_closed_pipe(argv, backend, cwd):
    """`python -m keras_afl *argv` on `backend` with its stdout a pipe nobody reads; (exit
    status, stderr)."""
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    read_end, write_end = os.pipe()
    os.close(read_end)
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONPATH": REPO}
    try:
        proc = subprocess.run([sys.executable, "-m", "keras_afl", *argv], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, env=env, cwd=str(cwd),
                              timeout=300)
    finally:
        os.close(write_end)
    return proc.returncode, proc.stderr


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """A small uncompiled model (it loads on every backend) with a softmax output."""
    path = tmp_path_factory.mktemp("pipes") / "m.keras"
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3),
                              keras_afl.layers.Softmax()])
    model.save(str(path))
    return path


@pytest.mark.parametrize("backend", ["tensorflow", pytest.param("jax", marks=pytest.mark.slow),
                                     pytest.param("torch", marks=pytest.mark.slow)])
def test_lint_json_into_a_closed_pipe_exits_quietly(backend, saved_model):
    code, err = _to_closed_pipe(["lint", "--json", "--loss", "afl_bce", str(saved_model)],
                                backend, saved_model.parent)
    assert code == EXIT_READER_GONE == 141
    assert "Traceback" not in err and "BrokenPipe" not in err, err[-3000:]


def test_list_json_into_a_closed_pipe_exits_quietly(tmp_path):
    code, err = _to_closed_pipe(["list", "--json"], keras.backend.backend(), tmp_path)
    assert code == EXIT_READER_GONE
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err, err
