"""The regression guard, `keras-afl bench --compare` (`keras_afl.bench.compare`).

The verdict arithmetic against hand-computed bands; the confirmation passes with a measuring
function that returns chosen numbers; and the whole command on real measurements: a committed
file written by `keras-afl bench --output` itself, its ratios then scaled so that this run is
certainly slower (exit 1, the row named) or certainly not (exit 0).
"""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from keras_afl.bench import compare as guard

KEY = ("loss", "focal_logits", "xla", "float32", 20)
OTHER = ("activation", "relu", "graph", "float32", 16)


def test_band_is_the_floor_without_noise_estimates_and_two_standard_errors_with():
    assert guard.band({"ratio": 1.0, "se": None}, {"ratio": 1.0, "se": None}) == 0.10
    assert guard.band({"se": None}, {"se": None}, min_band=0.02) == 0.02
    # 2 * sqrt(0.1**2 + 0.1**2) = 0.2828...
    assert guard.band({"se": 0.1}, {"se": 0.1}) == pytest.approx(2 * math.sqrt(0.02))
    assert guard.band({"se": 0.01}, {"se": 0.01}) == 0.10  # below the floor


@pytest.mark.parametrize("new, regressed", [(1.09, False), (1.11, True), (0.5, False)])
def test_verdict_is_slower_only_past_the_band(new, regressed):
    committed = {KEY: {"ratio": 1.0, "se": None}}  # band 0.10: the limit is 1.10
    (row,) = guard.verdicts(committed, [{KEY: {"ratio": new, "se": None}}])
    assert row["limit"] == pytest.approx(1.10)
    assert row["regressed"] is regressed
    assert row["noisy"] is False


def test_a_wide_band_is_undecided_unless_the_row_is_past_it():
    committed = {KEY: {"ratio": 1.0, "se": 0.4}}  # band 2 * hypot(0.4, 0.4) = 1.13
    within = guard.verdicts(committed, [{KEY: {"ratio": 1.5, "se": 0.4}}])[0]
    assert within["band"] == pytest.approx(2 * math.hypot(0.4, 0.4))
    assert (within["regressed"], within["noisy"]) == (False, True)
    past = guard.verdicts(committed, [{KEY: {"ratio": 3.0, "se": 0.4}}])[0]
    assert (past["regressed"], past["noisy"]) == (True, False)


def _measuring(script):
    """A measure(keys) that returns, pass after pass, the ratios in `script` (key -> list)."""
    calls = []

    def measure(keys):
        calls.append(list(keys))
        n = len(calls) - 1
        return {k: {"ratio": script[k][n], "se": None} for k in keys}

    return measure, calls


def test_a_row_slower_in_one_pass_only_is_measured_again_and_passes():
    committed = {KEY: {"ratio": 1.0, "se": None}, OTHER: {"ratio": 1.0, "se": None}}
    measure, calls = _measuring({KEY: [1.5, 1.0, 1.02], OTHER: [1.0]})
    rows = {r["key"]: r for r in guard.compare(committed, measure)}
    assert calls == [sorted(committed), [KEY], [KEY]]  # only the suspect again, twice
    assert rows[KEY]["new"] == pytest.approx(1.02)  # the median of 1.5, 1.0, 1.02
    assert rows[KEY]["passes"] == 3 and not rows[KEY]["regressed"]
    assert rows[OTHER]["passes"] == 1 and not rows[OTHER]["regressed"]


def test_a_row_slower_in_most_passes_fails():
    committed = {KEY: {"ratio": 1.0, "se": None}}
    measure, calls = _measuring({KEY: [1.5, 1.4, 1.0]})
    (row,) = guard.compare(committed, measure)
    assert row["regressed"] and row["new"] == pytest.approx(1.4)
    assert "REGRESSED" in guard.table([row]) and "loss focal_logits xla float32 2^20" in guard.table([row])


def test_a_case_the_harness_no_longer_has_is_an_error_naming_it():
    committed = {KEY: {"ratio": 1.0, "se": None}}
    with pytest.raises(ValueError, match="focal_logits xla float32 2\\^20.*Fix"):
        guard.compare(committed, lambda keys: {})


def test_standard_error_of_the_rounds_matches_numpy():
    rng = np.random.default_rng(0)
    ours, ref = rng.uniform(1.0, 2.0, 40), rng.uniform(1.0, 2.0, 40)
    r = ours / ref
    q1, q3 = np.quantile(r, [0.25, 0.75], method="weibull")  # statistics.quantiles' "exclusive"
    expected = 1.2533 * (q3 - q1) / 1.349 / np.sqrt(40) / np.median(r)
    got = guard._se_of_rounds({"ours": list(ours), "ref": list(ref)})
    assert got == pytest.approx(expected, rel=1e-12)
    assert guard._se_of_rounds({"ours": [1.0] * 3, "ref": [1.0] * 3}) is None


def test_normalize_reads_both_layouts_and_refuses_the_wrong_backend():
    tf_file = {"rows": [
        {"group": "loss", "case": "mse", "mode": "xla", "dtype": "float32", "size": 2**16,
         "ratio": 0.9, "samples": {}},
        {"group": "training", "case": "mlp", "mode": "graph", "dtype": "float32", "size": 256,
         "ratio": 1.0, "samples": {}}]}
    assert guard.normalize(tf_file, "tensorflow") == {
        ("loss", "mse", "xla", "float32", 16): {"ratio": 0.9, "se": None}}
    backends_file = {"jax": {"backend": "jax", "repeats": 4, "rows": [
        {"kind": "loss", "name": "huber", "dtype": "float32", "log2_size": 20, "ratio": 1.2,
         "ours_ms": 2.0, "reference_ms": 1.0, "ours_iqr_ms": 0.2, "reference_iqr_ms": 0.1,
         "calls_per_round": 4}]}}
    (key, row), = guard.normalize(backends_file, "jax").items()
    assert key == ("loss", "huber", "jit", "float32", 20)
    # each side: 1.2533 * 0.1 / 1.349 / sqrt(16); combined in quadrature
    assert row["se"] == pytest.approx(math.sqrt(2) * 1.2533 * 0.1 / 1.349 / 4)
    with pytest.raises(ValueError, match="none for the active backend torch.*Fix"):
        guard.normalize(backends_file, "torch")
    with pytest.raises(ValueError, match="TensorFlow's rows.*Fix"):
        guard.normalize(tf_file, "jax")


def test_filters_that_leave_nothing_are_an_error():
    committed = {KEY: {"ratio": 1.0, "se": None}}
    assert guard.select(committed, cases=["focal_logits"], sizes=[20]) == committed
    with pytest.raises(ValueError, match="leave no committed row"):
        guard.select(committed, cases=["relu"])


def _cli(*args, backend="tensorflow", cwd=None):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "keras_afl", "bench", *args], env=env,
                          capture_output=True, text=True, timeout=600, cwd=cwd)


def _scaled(path, factor, out):
    with open(path) as f:
        data = json.load(f)
    rows = data["rows"] if "rows" in data else next(iter(data.values()))["rows"]
    for r in rows:
        r["ratio"] *= factor
    with open(out, "w") as f:
        json.dump(data, f)
    return str(out)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_the_command_fails_naming_a_slower_row_and_passes_a_faster_one(tmp_path, backend):
    pytest.importorskip(backend)
    case = ["--cases", "mse", "--sizes", "12", "--repeats", "3", "--no-progress"]
    tf_only = ["--modes", "xla", "--dtypes", "float32"] if backend == "tensorflow" else []
    made = _cli(*case, *tf_only, "--output", str(tmp_path), backend=backend)
    assert made.returncode == 0, made.stderr[-2000:]
    written = tmp_path / ("results.json" if backend == "tensorflow" else "backends.json")
    # Committed 100x faster than anything this run can measure: the row must fail, by name.
    slower = _cli("--compare", _scaled(written, 0.01, tmp_path / "fast.json"), *case,
                  backend=backend)
    assert slower.returncode == 1, slower.stdout + slower.stderr[-2000:]
    assert "loss mse" in slower.stderr and "REGRESSED" in slower.stdout
    # Committed 100x slower: nothing regressed.
    faster = _cli("--compare", _scaled(written, 100.0, tmp_path / "slow.json"), *case,
                  backend=backend)
    assert faster.returncode == 0, faster.stdout + faster.stderr[-2000:]
    assert "no regression" in faster.stdout


def test_the_command_names_a_missing_file(tmp_path):
    out = _cli("--compare", str(tmp_path / "nope.json"))
    assert out.returncode == 2 and "no such file" in out.stderr and "Fix" in out.stderr
