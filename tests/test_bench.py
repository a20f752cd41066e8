"""keras_afl.bench and `keras-afl bench`: the harness runs and its reports are well formed
(no timing assertions). The compiled loss path it measures is tested in test_fused_losses.py."""

import json
import math
import re

import numpy as np
import pytest
import tensorflow as tf

from keras_afl import bench, cli, registry
from keras_afl import losses as L
from keras_afl.bench import cases, memory, programs, suites, timing

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
