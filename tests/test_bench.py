"""keras_afl.bench and `keras-afl bench`: the harness runs and its reports are well formed
(no timing assertions). The compiled loss path it measures is tested in test_fused_losses.py."""

import json
import math
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_afl import bench, cli, registry
from keras_afl import losses as L
from keras_afl.bench import cases, memory, programs, suites, sweep, timing

ROW_KEYS = {"group", "case", "mode", "dtype", "size", "unit", "ours", "ref", "ratio", "target",
            "max_ratio", "met", "floor", "floor_ratio", "floor_met", "spread", "same_program", "samples",
            "note"}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    code = cli.main(["bench", "--quick", "--no-progress", "--output", str(out)])
    with open(out / "results.json") as f:
        result = json.load(f)
    return code, result, (out / "results.md").read_text()


class TestQuickRun:
    def test_exit_code_and_top_level_keys(self, quick_run):
        code, result, _ = quick_run
        assert code == 0
        assert {"machine", "settings", "started", "duration_s", "load_before", "load_after", "rows",
                "summary", "command"} <= set(result)
        assert result["command"].startswith("keras-afl bench --quick")
        assert result["settings"]["quick"] is True
        assert result["machine"]["tensorflow"] == tf.__version__
        assert result["machine"]["fused_losses"] is L.trace_options()["compiled_kernels"]

    def test_every_suite_and_quick_case_has_rows(self, quick_run):
        _, result, _ = quick_run
        rows = result["rows"]
        assert {r["group"] for r in rows} == {"activation", "loss", "training", "memory", "check"}
        for name in cases.QUICK_ACTIVATIONS:
            assert {r["mode"] for r in rows if r["case"] == name} == {"graph", "xla"}
        for name in cases.QUICK_LOSSES:
            assert {r["mode"] for r in rows if r["case"] == name} == {"graph", "xla"}
        assert len([r for r in rows if r["group"] == "training"]) == 2
        for name in cases.check_cases():
            assert {r["mode"] for r in rows if r["group"] == "check" and r["case"] == name} == \
                {"graph", "xla"}
            assert all(r["target"] == "label_checks" for r in rows if r["group"] == "check")

    def test_rows_have_positive_finite_times_and_consistent_ratios(self, quick_run):
        _, result, _ = quick_run
        for r in result["rows"]:
            assert set(r) == ROW_KEYS, r["case"]
            assert r["target"] in bench.TARGETS
            for key in ("ours", "ref", "ratio"):
                assert math.isfinite(r[key]) and r[key] > 0, (r["case"], key)
            assert r["ratio"] == pytest.approx(r["ours"] / r["ref"], rel=1e-9)
            assert r["met"] == (r["ratio"] <= r["max_ratio"])
            assert r["ours"] == pytest.approx(float(np.median(r["samples"]["ours"])), rel=1e-9)
            assert r["ref"] == pytest.approx(float(np.median(r["samples"]["ref"])), rel=1e-9)
            if r["group"] in ("activation", "loss"):
                assert r["unit"] == "ms"
                repeats = timing.repeats_at(result["settings"]["repeats"], r["size"])
                assert len(r["samples"]["ours"]) == repeats
                assert r["floor"] > 0 and math.isfinite(r["floor"])
                assert r["floor_ratio"] == pytest.approx(r["ours"] / r["floor"], rel=1e-9)

    def test_summary_counts_match_the_rows(self, quick_run):
        _, result, _ = quick_run
        for s in result["summary"]:
            mine = [r for r in result["rows"] if r["target"] == s["target"]]
            assert s["checked"] == len(mine)
            assert s["met"] == sum(r["met"] for r in mine)
            assert s["worst_ratio"] == pytest.approx(max(r["ratio"] for r in mine))

    def test_markdown_has_one_table_row_per_case(self, quick_run):
        _, result, md = quick_run
        table = md[md.index("## Every case"):]
        lines = [ln for ln in table.splitlines() if ln.startswith("| ") and not ln.startswith("| group")]
        assert len(lines) == len(result["rows"])
        for line, r in zip(lines, result["rows"]):
            cells = [c.strip() for c in line.strip("|").split("|")]
            assert cells[:3] == [r["group"], r["case"], r["mode"]]
            assert float(cells[8]) == pytest.approx(r["ratio"], abs=0.006)
        assert "## Targets" in md and result["command"] in md


    def test_activation_rows_say_whether_the_program_is_the_built_ins(self, quick_run):
        _, result, md = quick_run
        for r in result["rows"]:
            if r["group"] == "activation":
                assert r["same_program"] == (r["case"] != "prelu"), (r["case"], r["mode"])
            else:
                assert r["same_program"] is None
        section = md[md.index("## Same program as the built-in"):md.index("## Every case")]
        assert re.search(r"^\| relu \| same \| same \|$", section, re.M)
        assert re.search(r"^\| prelu \| differs \| differs \|$", section, re.M)


# Activations that run the built-in's exact program (the reason their timings are
# equal): every one but PReLU, whose reference is Keras's formula.
NATIVE = [n for n in bench.ACTIVATIONS if n != "prelu"]


@pytest.mark.parametrize("mode", ["graph", "xla"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
@pytest.mark.parametrize("name", NATIVE)
def test_activation_runs_the_native_ops_program(name, dtype, mode):
    """Forward + backward of ours is the tf.nn op's program under autodiff: the same
    TensorFlow kernels in graph mode, the same optimized XLA program under XLA."""
    assert bench.same_program(name, dtype, mode, size=2**12)


def test_same_program_tells_different_programs_apart():
    x, g, alpha = cases.activation_inputs(2**12, tf.float32)
    for xla, program in ((False, programs.graph_kernels), (True, programs.optimized_program)):
        relu = program(timing.activation_step(tf.nn.relu, xla, False), x, g)
        assert relu == program(timing.activation_step(tf.nn.relu, xla, False), x, g)
        assert relu != program(timing.activation_step(tf.nn.elu, xla, False), x, g)
        assert relu != program(timing.activation_step(lambda v: tf.nn.relu(v) * 1.0001, xla, False), x, g)
    assert not bench.same_program("prelu", "float32", "xla", size=2**12)


def test_unknown_case_is_a_usage_error(capsys):
    assert cli.main(["bench", "--quick", "--cases", "nope"]) == 2
    assert "unknown case" in capsys.readouterr().err


def test_run_refuses_unknown_suites_and_modes():
    with pytest.raises(ValueError, match="suite"):
        bench.run(quick=True, suites=("speed",))
    with pytest.raises(ValueError, match="mode"):
        bench.run(quick=True, modes=("eager",))
    with pytest.raises(ValueError, match=r"`activations`: unknown activation 'gelu'.*Fix"):
        bench.run(quick=True, activations=("gelu",))
    with pytest.raises(ValueError, match=r"`losses`: unknown loss 'mae'"):
        bench.run(quick=True, losses=("mae",))


def test_terminal_table_lists_every_row(quick_run):
    _, result, _ = quick_run
    text = bench.terminal_table(result)
    for r in result["rows"]:
        assert re.search(rf"^{re.escape(r['case'])}\s", text, re.M), r["case"]


def _label_check_ops(step, *args):
    graph = step.get_concrete_function(*args).graph
    return [op.name for op in graph.get_operations()
            if any(part.startswith(("check_labels", "check_class_ids")) for part in op.name.split("/"))]


@pytest.mark.parametrize("name", sorted(cases.check_cases()))
def test_label_check_rows_compare_the_loss_with_and_without_its_checks(name):
    """The "checks" suite times the same loss traced with the label checks on (ours) and off
    (reference): only the first has the assertion; the switch is back on afterwards."""
    loss = cases.check_cases()[name]
    y, z = cases.loss_inputs(loss, 2**12, tf.float32)
    on = suites.traced_with_label_checks(True, timing.loss_step(loss, False), y, z)
    off = suites.traced_with_label_checks(False, timing.loss_step(cases.check_cases()[name], False), y, z)
    assert _label_check_ops(on, y, z) and not _label_check_ops(off, y, z)
    assert L.trace_options()["label_checks"] is True
    for a, b in zip(on(y, z), off(y, z)):  # good labels: the same values
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6)



@pytest.mark.parametrize("name", cases.LOSSES)
def test_loss_case_inputs_are_what_the_registry_says_the_loss_reads(name):
    """Each loss case gets the labels of its registry family and the y_pred it expects (no
    per-case word written by hand), and on them ours agrees with Keras's loss in this run."""
    ours, ref = cases.loss_cases()[name]
    what = registry.describe_loss(ours)
    y, z = cases.loss_inputs(ours, 2**12, tf.float32)
    y, z = y.numpy(), z.numpy()
    assert z.shape == (2**12 // cases.CLASSES, cases.CLASSES)
    if what.family == "sparse":
        assert y.dtype == np.int32 and y.shape == z.shape[:1]
        assert set(np.unique(y)) <= set(range(cases.CLASSES))
    elif what.family == "categorical":
        assert set(np.unique(y)) == {0.0, 1.0} and np.all(y.sum(-1) == 1)
    elif what.family == "binary":
        assert set(np.unique(y)) == {0.0, 1.0}
    else:
        assert what.family == "regression" and len(np.unique(y)) > 100
    if what.expects() == "probabilities":
        assert z.min() > 0 and z.max() < 1
        if what.family != "binary":
            np.testing.assert_allclose(z.sum(-1), 1, rtol=1e-5)
    else:
        assert z.min() < -1 and z.max() > 1  # logits / scores / values: raw
    np.testing.assert_allclose(float(ours(y, z)), float(ref(y, z)), rtol=1e-4)


def test_memory_program_refuses_bad_arguments(capsys):
    """`python -m keras_afl.bench.memory` (the program measured in a fresh process): a
    usage message and exit code 2 for arguments it cannot run."""
    assert memory.parse(["ours", "mlp", "3", "64", "32", "1"]) == (True, "mlp", 3, 64, 32, 1)
    assert memory.parse(["builtin", "dense", "8", "2", "4", "1"])[:2] == (False, "dense")
    for argv in (["ours"], ["mine", "mlp", "3", "64", "32", "1"], ["ours", "cnn", "3", "64", "32", "1"],
                 ["ours", "mlp", "3", "wide", "32", "1"]):
        assert memory.main(argv) == 2, argv
        assert "usage: python -m keras_afl.bench.memory" in capsys.readouterr().err


@pytest.mark.slow
def test_memory_program_runs_as_a_module_and_prints_its_peak():
    """The memory suite's child, run the way the suite runs it: one JSON line, peak >= the
    peak before the steps, and the module runs once (no double import of keras_afl.bench.memory)."""
    proc = suites.start_memory_process("ours", ("mlp", 2, 16, 8, 1))
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    result = json.loads(out.strip().splitlines()[-1])
    assert result["peak_mib"] >= result["before_mib"] > 0
    assert "found in sys.modules" not in err


# ----------------------------------------------------------------------------- the size sweep


@pytest.fixture(scope="module")
def sweep_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    code = cli.main(["bench", "--quick", "--no-progress", "--suites", "sweep", "--sizes", "10", "12",
                     "--cases", "relu", "mse", "focal_logits", "--output", str(out)])
    with open(out / "results.json") as f:
        result = json.load(f)
    return code, result, (out / "results.md").read_text(), out


def test_sweep_times_both_paths_and_reports_the_one_taken(sweep_run):
    code, result, _, _ = sweep_run
    assert code == 0 and result["settings"]["sweep_sizes_log2"] == [10, 12]
    rows = result["rows"]
    assert {r["group"] for r in rows} == {"sweep_loss", "sweep_activation"}
    assert len(rows) == 3 * 2 * 1 * 2  # cases x sizes x dtypes (quick: float32) x modes
    for r in rows:
        assert set(r) == ROW_KEYS
        factor = 1 if r["group"] == "sweep_loss" else sweep.ACTIVATION_FACTOR
        n = sweep.sweep_repeats(factor * result["settings"]["sweep_repeats"], r["size"])
        assert len(r["samples"]["ours"]) == len(r["samples"]["ref"]) == n
        assert r["ratio"] == pytest.approx(np.median(r["samples"]["ours"]) / np.median(r["samples"]["ref"]))
        assert r["met"] == (r["ratio"] <= r["max_ratio"])
        if r["group"] == "sweep_loss":
            assert r["note"] == sweep.path_taken(r["case"], r["mode"], r["dtype"], r["size"])
            assert r["samples"]["ours"] == r["samples"][r["note"]]  # the taken path's own samples
            assert len(r["samples"]["plain"]) == len(r["samples"]["compiled"]) == n
            assert r["target"] == "sweep_loss"  # below 2^20: the 1.0x target in both modes
        else:
            assert r["target"] == "sweep_activation" and r["max_ratio"] == 1.05


def test_sweep_summary_table_and_plots(sweep_run):
    _, result, md, out = sweep_run
    checks = {s["target"]: s for s in result["sweep_summary"]}
    losses = [r for r in result["rows"] if r["group"] == "sweep_loss"]
    assert checks["sweep_loss"]["checked"] == len(losses)
    assert checks["sweep_loss"]["met"] == sum(r["ratio"] <= 1.0 for r in losses)
    assert checks["mse_xla"]["checked"] == 2
    assert set(result["crossover"]) == {"_mse", "_focal_logits"}
    kernels = result["kernels"]
    assert set(kernels) == {"mse", "focal_logits"}
    assert kernels["focal_logits"]["plain"] > kernels["focal_logits"]["plain_unchecked"]  # checked labels
    assert kernels["mse"]["plain"] == kernels["mse"]["plain_unchecked"]  # nothing to check
    assert "### Kernels per value + gradient step" in md
    section = md[md.index("## Size sweep"):]
    assert "## Every case" not in md  # the sweep's rows are in its own tables
    ratio_lines = [ln for ln in section[section.index("### Losses: ours / Keras"):].splitlines()
                   if ln.startswith(("| mse |", "| focal_logits |"))]
    assert len(ratio_lines) >= 4
    pytest.importorskip("matplotlib")
    for family in ("activations", "regression", "binary", "crossover"):
        png = out / f"sweep_{family}.png"
        assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", family


def _row(case, mode, size, plain, compiled, keras):
    """A sweep row with 8 rounds of the given times, the compiled ones 1 % apart round to round
    (a verdict needs quartiles)."""
    return {"group": "sweep_loss", "case": case, "mode": mode, "dtype": "float32", "size": size,
            "ref": keras, "samples": {"plain": [plain] * 8,
                                      "compiled": [compiled * (1 + 0.01 * (i % 2)) for i in range(8)]}}


def test_crossover_table_is_the_rule_of_the_committed_table():
    sizes = [2**s for s in (10, 12, 14, 16)]
    rows = [_row("mse", "graph", n, 1.0, 2.0 if n < 2**14 else 0.5, 1.0) for n in sizes]  # wins from 2^14
    rows += [_row("mse", "xla", n, 1.0, 1.5, 1.0) for n in sizes]  # never wins
    rows += [_row("hinge", "graph", n, 1.0, 0.9, 1.0) for n in sizes]  # wins everywhere (>5 %)
    # wins at 2^12 only, loses above: never
    rows += [_row("hinge", "xla", n, 1.0, 0.9 if n == 2**12 else 1.2, 1.0) for n in sizes]
    table = sweep.crossover_table(rows, floor=None)
    assert table == {"_mse": {"graph": 14, "xla": None}, "_hinge": {"graph": 10, "xla": None}}
    # 1-2 % faster is within the margin: a tie, plain unless the compiled program is smaller
    near = [_row("huber", "graph", n, 1.0, 0.985, 1.0) for n in sizes]
    assert sweep.crossover_table(near, floor=None) == {"_huber": {"graph": None}}
    assert sweep.crossover_table(near, floor=None, fewer_passes={"huber": True}) == {
        "_huber": {"graph": 10}}
    assert sweep.crossover_table(rows, floor={"graph": 16})["_hinge"] == {"graph": 16, "xla": None}
    source = sweep.crossover_source(table)
    assert '"_mse": {"graph": 14, "xla": None},' in source
    assert '"_hinge": {"graph": 10, "xla": None},' in source


def test_sweep_repeats_grow_as_sizes_shrink():
    assert [sweep.sweep_repeats(5, 2**s) for s in (24, 22, 21, 20, 18, 16, 10)] == [5, 5, 10, 10, 20, 40, 40]


# ----------------------------------------------------------------------------- the classifier


def test_classifier_suite_runs_steps_and_memory():
    result = bench.run(quick=True, suites=("classifier",), modes=("graph",), progress=False)
    steps = [r for r in result["rows"] if r["group"] == "classifier"]
    mem = [r for r in result["rows"] if r["group"] == "classifier_memory"]
    assert [(r["case"], r["mode"], r["size"]) for r in steps] == [("afl_cce", "graph", 32)]
    assert steps[0]["unit"] == "ms/step" and steps[0]["target"] == "classifier_steps"
    assert [(r["case"], r["mode"]) for r in mem] == [("classifier_afl_cce", "graph")]
    assert mem[0]["unit"] == "MiB" and mem[0]["ours"] > 0 and mem[0]["ref"] > 0
    summary = {s["target"]: s for s in result["summary"]}
    assert summary["classifier_steps"]["checked"] == 1 and summary["classifier_memory"]["checked"] == 1


def test_memory_program_parses_the_classifier():
    assert memory.parse(["ours", "classifier", "focal", "xla", "512", "5"]) == \
        (True, "classifier", "focal", "xla", 512, 5)
    for argv in (["ours", "classifier", "mae", "graph", "32", "1"],
                 ["ours", "classifier", "focal", "eager", "32", "1"],
                 ["ours", "classifier", "focal", "graph", "big", "1"]):
        with pytest.raises(ValueError, match="usage"):
            memory.parse(argv)


def test_classifier_losses_are_the_same_loss_as_keras():
    """Each of the suite's keras_afl losses (by name) gives Keras's loss on the classifier's outputs."""
    rng = np.random.default_rng(0)
    y = np.eye(10, dtype="float32")[rng.integers(0, 10, 64)]
    logits = rng.normal(size=(64, 10)).astype("float32")
    for name, (keras_loss, output) in cases.CLASSIFIER_LOSSES.items():
        p = tf.nn.softmax(logits) if output == "softmax" else tf.sigmoid(logits)
        ours = keras.losses.get(name)  # as model.compile(loss=name) resolves it
        np.testing.assert_allclose(float(ours(y, p)), float(keras_loss()(y, p)), rtol=1e-5)
