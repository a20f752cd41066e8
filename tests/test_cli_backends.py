"""The command line on JAX and PyTorch (issue 13, items 4 and 7): `list`, `check`, `plot`, `lint`,
`bench` and `demo` run in fresh processes with KERAS_BACKEND=jax and KERAS_BACKEND=torch, and give
the numbers of independent references there (NumPy formulas for the plotted derivatives, a
wrongly differentiated reference that `check` must fail, the lint rule of a known bad pairing).

One process per backend runs the cheap commands through `keras_afl.cli.main`, with TensorFlow
made unimportable, and prints a JSON report that the tests below read; `demo` goes through `python -m keras_afl --backend B`, which
also covers the re-exec of `--backend`. The benchmark of the backends runs at tiny sizes with no
assertion on its ratios (speed is measured by `keras-afl bench`, not by tests).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BACKENDS = ("jax", "torch")

# Runs in a fresh process on the backend of KERAS_BACKEND; argv[1] is a scratch folder.
_DRIVER = r'''
import contextlib, io, json, os, sys
# As if TensorFlow were not installed (issue 13: JAX and PyTorch without it), for every command,
# `bench` included (issue 19: keras_afl.bench imports its TensorFlow harness only where used).
sys.modules["tensorflow"] = None
import numpy as np
import keras
import keras_afl
from keras_afl.cli import main
from keras_afl.cli import check as cli_check, plot as cli_plot

tmp = sys.argv[1]
report = {"backend": keras.backend.backend()}

import time
report["seconds"] = {}

def run(argv):
    out, err = io.StringIO(), io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    key = " ".join(argv[:2])
    report["seconds"][key] = report["seconds"].get(key, 0) + round(time.perf_counter() - t0, 1)
    return rc, out.getvalue(), err.getvalue()

rc, out, _ = run(["list", "--json"])
listed = json.loads(out)
report["list"] = {"rc": rc, "names": sorted(e["name"] for group in ("activations", "losses")
                                            for e in listed[group])}

# First, before anything turns float64 on: float32 alone still has float64 references (on JAX,
# jax_enable_x64 is off until the command switches it on).
rc, out, _ = run(["check", "afl_tanh", "--dtype", "float32"])
report["check_float32_only"] = {"rc": rc, "out": out[-1500:]}
rc, out, err = run(["check", "afl_relu", "afl_softmax", "prelu", "focal", "afl_cce",
                    "sparse_categorical_focal", "--dtype", "float32", "--dtype", "float64"])
report["check"] = {"rc": rc, "out": out[-3000:], "err": err[-2000:]}
# A reference that differs from relu by 50 %: check must fail (exit 1) on this backend too.
cases = cli_check.all_cases()
relu = cases["afl_relu"]
cli_check.all_cases = lambda: dict(cases, afl_relu=cli_check.Case(
    "afl_relu", relu.fn, lambda c, x: 1.5 * keras.ops.relu(x), relu.sample, relu.extremes))
rc, out, _ = run(["check", "afl_relu", "--dtype", "float64"])
report["check_broken"] = {"rc": rc, "failed": "FAILED" in out}

png = os.path.join(tmp, "p.png")
rc, out, err = run(["plot", "afl_elu", "afl_bce", "afl_mse", "sparse_categorical_focal",
                    "-o", png])
report["plot"] = {"rc": rc, "png_bytes": os.path.getsize(png) if os.path.exists(png) else 0,
                  "err": err[-2000:]}
x, y, dy, _ = cli_plot.activation_curve(keras_afl.entry("afl_elu"), (-3, 3), 61)
ref = np.where(x > 0, 1.0, np.exp(np.minimum(x, 0)))
report["plot_elu_dy_err"] = float(np.max(np.abs(dy - ref)))
curves, _, _ = cli_plot.loss_curves(keras_afl.entry("afl_bce"), n=9)
p, loss, grad = curves["label 1"]
report["plot_bce_err"] = [float(np.max(np.abs(loss / -np.log(p) - 1))),
                          float(np.max(np.abs(grad / (-1 / p) - 1))),
                          float(np.max(np.abs(curves["label 0"][2] * (1 - p) - 1)))]
e, loss, grad = cli_plot.loss_curves(keras_afl.entry("afl_mse"), n=7)[0]["error"]
report["plot_mse_grad_err"] = float(np.max(np.abs(grad - 2 * e)))

L = keras.layers
bad = keras.Sequential([keras.Input((4,)), L.Dense(8, activation="afl_relu"), L.Dense(3),
                        keras_afl.layers.Softmax()])
bad.compile("adam", loss="binary_crossentropy")
bad_path = os.path.join(tmp, "bad.keras")
bad.save(bad_path)
rc, out, _ = run(["lint", bad_path, "--json"])
report["lint_bad"] = {"rc": rc, "rules": [f["rule"] for f in json.loads(out)["findings"]]}
rc, out, _ = run(["lint", bad_path, "--loss", "categorical_crossentropy"])
report["lint_fixed"] = {"rc": rc, "no_findings": "no findings" in out}

bench_dir = os.path.join(tmp, "bench")
rc, out, err = run(["bench", "--quick", "--sizes", "6", "--repeats", "2", "--no-progress",
                    "--output", bench_dir])
report["bench"] = {"rc": rc, "err": err[-2000:]}
if rc == 0:
    with open(os.path.join(bench_dir, "backends.json")) as f:
        report["bench"]["json"] = json.load(f)
    with open(os.path.join(bench_dir, "backends.md")) as f:
        report["bench"]["md"] = f.read()
rc, _, err = run(["bench", "--quick", "--modes", "xla"])
report["bench_modes"] = {"rc": rc, "err": err}
rc, _, err = run(["bench", "--quick", "--cases", "relu", "nope"])
report["bench_cases"] = {"rc": rc, "err": err}
report["tensorflow_blocked"] = sys.modules.get("tensorflow", 0) is None
print("REPORT " + json.dumps(report))
'''


def _env(backend):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": backend}
    env.pop("XLA_FLAGS", None)
    return env


@pytest.fixture(scope="module", params=BACKENDS)
def report(request, tmp_path_factory):
    backend = request.param
    pytest.importorskip(backend)
    tmp = tmp_path_factory.mktemp(f"cli_{backend}")
    proc = subprocess.run([sys.executable, "-c", _DRIVER, str(tmp)], capture_output=True,
                          text=True, timeout=600, env=_env(backend), cwd=REPO)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("REPORT ")]
    assert proc.returncode == 0 and lines, (
        f"driver failed on {backend} ({proc.returncode})\n{proc.stdout[-3000:]}\n"
        f"{proc.stderr[-5000:]}")
    return json.loads(lines[-1][len("REPORT "):])


@pytest.mark.slow
def test_commands_run_on_the_backend_they_were_started_on(report):
    assert report["backend"] in BACKENDS
    assert report["tensorflow_blocked"]  # list, check, plot, lint and bench ran without TensorFlow
    assert {"afl_relu", "afl_softmax", "focal", "sparse_categorical_focal"} <= set(
        report["list"]["names"])
    assert report["list"]["rc"] == 0


@pytest.mark.slow
def test_check_passes_and_catches_a_wrong_reference(report):
    check = report["check"]
    assert check["rc"] == 0, check["out"] + check["err"]
    assert "FAIL" not in check["out"]
    assert "focal(from_logits)" in check["out"]  # variants come with their name
    assert {"jax": "JAX", "torch": "PyTorch"}[report["backend"]] in check["out"]  # its device
    assert report["check_broken"] == {"rc": 1, "failed": True}
    only32 = report["check_float32_only"]
    assert only32["rc"] == 0 and "FAIL" not in only32["out"], only32["out"]


@pytest.mark.slow
def test_plot_writes_the_analytic_derivatives(report):
    assert report["plot"]["rc"] == 0, report["plot"]["err"]
    assert report["plot"]["png_bytes"] > 10_000
    assert report["plot_elu_dy_err"] < 1e-12  # float64: elu'(x) = 1 or exp(x)
    loss_err, grad1_err, grad0_err = report["plot_bce_err"]  # float32: -log p, -1/p, 1/(1-p)
    assert loss_err < 1e-5 and grad1_err < 1e-4 and grad0_err < 1e-4
    assert report["plot_mse_grad_err"] < 1e-5  # 2 e


@pytest.mark.slow
def test_lint_finds_a_softmax_under_binary_crossentropy(report):
    assert report["lint_bad"] == {"rc": 1, "rules": ["softmax-binary-loss"]}
    assert report["lint_fixed"] == {"rc": 0, "no_findings": True}


@pytest.mark.slow
def test_bench_times_every_quick_case_on_the_backend(report):
    from keras_afl.bench import backends as B

    bench = report["bench"]
    assert bench["rc"] == 0, bench["err"]
    backend = report["backend"]
    result = bench["json"][backend]
    assert result["sizes"] == [6]
    got = {(r["kind"], r["name"]) for r in result["rows"]}
    want = {("activation", n) for n in B.QUICK_ACTIVATIONS} | {("loss", n) for n in B.QUICK_LOSSES}
    assert got == want
    for r in result["rows"]:  # timings only: no assertion on the ratios
        assert r["ours_ms"] > 0 and r["reference_ms"] > 0
        assert r["ratio"] == pytest.approx(r["ours_ms"] / r["reference_ms"])
        assert r["met"] == (r["ratio"] <= r["max_ratio"])
        assert r["max_ratio"] == B.TARGETS[backend][r["kind"]][1]
    assert f"## {backend}" in bench["md"]


@pytest.mark.slow
def test_bench_refuses_tensorflow_only_options_with_one_message(report):
    assert report["bench_modes"]["rc"] == 2
    assert "--modes" in report["bench_modes"]["err"] and "jax.jit" in report["bench_modes"]["err"]
    assert report["bench_cases"]["rc"] == 2
    assert "unknown case(s) nope" in report["bench_cases"]["err"]


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_demo_runs_with_the_backend_option(backend, tmp_path):
    """`python -m keras_afl --backend B demo`: started on TensorFlow, run again on B."""
    pytest.importorskip(backend)
    env = _env(backend)
    env["KERAS_BACKEND"] = "tensorflow"  # --backend must win over the environment
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "keras_afl", "--backend", backend, "demo", "--epochs", "1",
         "--output", str(out)], capture_output=True, text=True, timeout=600, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(out / "summary.json") as f:
        summary = json.load(f)
    assert summary["versions"]["backend"] == backend
    assert summary["failed_steps"] == []
    assert summary["reload"]["max_abs_difference"] <= 1e-5
    assert (out / "precision_recall.png").exists()


# --------------------------------------------------------------------------- in this process

def _fake_result(backend, ratio):
    from keras_afl.bench import backends as B

    target = B.TARGETS[backend]["activation"][1]
    row = {"backend": backend, "kind": "activation", "name": "relu", "log2_size": 8,
           "dtype": "float32", "reference": "ref", "ours_ms": ratio, "reference_ms": 1.0,
           "ratio": ratio, "ours_iqr_ms": 0.0, "reference_iqr_ms": 0.0, "calls_per_round": 1,
           "max_ratio": target, "target": "t", "met": ratio <= target}
    return {"backend": backend, "device": "cpu", "versions": {"keras": "3"}, "machine": "m",
            "quick": True, "sizes": [8], "dtype": "float32", "repeats": 1, "rows": [row],
            "load_before": None, "load_after": None, "duration_s": 0.0}


def test_bench_reports_of_the_two_backends_add_up(tmp_path):
    from keras_afl.bench import backends as B

    B.write_reports(_fake_result("jax", 0.9), str(tmp_path), notes="NOTES-JAX")
    B.write_reports(_fake_result("torch", 2.0), str(tmp_path), notes="## Analysis")
    with open(tmp_path / "backends.json") as f:
        merged = json.load(f)
    assert sorted(merged) == ["jax", "torch"]
    md = (tmp_path / "backends.md").read_text()
    assert md.index("## jax") < md.index("## torch") < md.index("## Analysis")
    assert "NOTES-JAX" not in md  # the notes are the latest run's
    assert "**1/1** rows met" in md and "**0/1** rows met" in md and "| **no** |" in md


def test_bench_of_the_backends_refuses_tensorflow_naming_the_fix():
    import keras

    from keras_afl.bench import backends as B

    if keras.backend.backend() != "tensorflow":
        pytest.skip("checks the message on TensorFlow")
    with pytest.raises(ValueError, match="KERAS_BACKEND=jax or torch"):
        B.run(quick=True)
