"""`keras-afl bench --suites checks`'s step measure (keras_afl.bench.guard_cost) runs and reports
the checked and unchecked steps of the same model, measured in one run."""

import pytest

from keras_afl.bench import guard_cost


@pytest.mark.slow
def test_quick_run_times_both_variants_of_each_checked_loss():
    result = guard_cost.run(quick=True, repeats=1)
    assert [r["loss"] for r in result["rows"]] == list(guard_cost.CASES)
    for row in result["rows"]:
        assert row["checked_ms"] > 0 and row["unchecked_ms"] > 0
        assert row["ratio"] == pytest.approx(row["checked_ms"] / row["unchecked_ms"], rel=1e-3)
        assert len(row["samples_ms"]["checked"]) == len(row["samples_ms"]["unchecked"]) == 1
    assert "focal" in guard_cost.table(result)


def test_the_unchecked_variant_switches_the_guard_off():
    """The reference of the measure is the same model with no check and no guard: the guard
    asks the label-checks switch."""
    import keras

    import keras_afl
    from keras_afl import _guard

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile("sgd", loss="focal")
    assert _guard._uses_keras_afl_loss(model)
    with keras_afl.losses.set_trace_options(label_checks=False):
        assert not _guard._uses_keras_afl_loss(model)
    model.compile("sgd", loss="binary_crossentropy")
    assert not _guard._uses_keras_afl_loss(model)
