"""The `keras-afl` command line: train configs, config errors, list, plot, check, demo."""

import copy
import glob
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import yaml

import keras_afl
from keras_afl.cli import build as cli_build
from keras_afl.cli import check as cli_check
from keras_afl.cli import config as cli_config
from keras_afl.cli import main
from tests._checks import REPO

CONFIGS = sorted(glob.glob(os.path.join(REPO, "configs", "*.yaml")))
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

BASE = {
    "name": "base",
    "seed": 0,
    "data": {"source": "breast_cancer", "positive_fraction": 0.1},
    "model": {"layers": [
        {"units": 8, "activation": "afl_elu"},
        {"units": 8},
        {"type": "prelu"},
        {"units": "output"},
        {"type": "sigmoid"},
    ]},
    "training": {"loss": "focal", "epochs": 1, "batch_size": 32},
}


def write_config(tmp_path, cfg, name="cfg.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return str(path)


def assert_png(path):
    with open(path, "rb") as f:
        assert f.read(8) == PNG_SIGNATURE
    import matplotlib.image

    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    assert np.ptp(img[..., :3]) > 0  # not a blank image


# --------------------------------------------------------------------------- train

def test_configs_folder_has_the_promised_experiments():
    names = {os.path.basename(c) for c in CONFIGS}
    assert {"imbalanced_focal.yaml", "multiclass_categorical_focal.yaml",
            "regression_outliers.yaml", "hinge_svm.yaml", "deep_selu.yaml"} <= names


@pytest.mark.parametrize("config", CONFIGS, ids=os.path.basename)
def test_every_config_runs_as_smoke_run(config, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", config, "--smoke", "--quiet", "--output", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    cfg = yaml.safe_load(open(config))
    assert summary["smoke"] is True and summary["epochs"] == 1
    assert summary["config"]["name"] == cfg["name"]
    expected_runs = len(cfg["training"].get("compare", [None]))
    assert len(summary["runs"]) == expected_runs
    for run in summary["runs"]:
        assert len(run["history"]["loss"]) == 1
        assert run["metrics"] and all(v is None or np.isfinite(v) for v in run["metrics"].values())
        assert os.path.isfile(run["model"])
        assert run["timings_s"]["fit"] > 0
    assert {"tensorflow", "keras", "keras_afl", "python"} <= set(summary["versions"])
    assert_png(out / "training_curves.png")
    assert "Test-set metrics" in capsys.readouterr().out


def test_train_summary_metrics_and_saved_model_agree(tmp_path):
    """The saved model predicts what was evaluated; metrics are those of the task."""
    cfg = copy.deepcopy(BASE)
    cfg["training"] = {"compare": ["afl_bce", {"name": "focal", "params": {"gamma": 1.0}}],
                       "epochs": 2, "batch_size": 32, "validation_split": 0.25}
    out = tmp_path / "run"
    assert main(["train", write_config(tmp_path, cfg), "--quiet", "--output", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [r["loss"] for r in summary["runs"]] == ["afl_bce", "focal(gamma=1.0)"]
    for r in summary["runs"]:
        assert set(r["metrics"]) == {"pr_auc", "roc_auc", "f1", "minority_recall", "accuracy"}
        assert set(r["history"]) == {"loss", "val_loss"} and len(r["history"]["loss"]) == 2
    data = summary["data"]
    assert data["task"] == "binary" and data["n_val"] > 0
    assert data["train_positive_fraction"] == pytest.approx(0.1, abs=0.02)
    model = keras.models.load_model(summary["runs"][1]["model"])
    assert isinstance(model.loss, keras_afl.losses.FocalLoss) and model.loss.gamma == 1.0
    assert any(isinstance(layer, keras_afl.layers.PReLU) for layer in model.layers)


def test_train_reads_a_csv_with_a_target_column(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 3))
    label = np.where(x[:, 0] + x[:, 1] > 0, "yes", "no")
    lines = ["a,b,c,label"] + [f"{r[0]},{r[1]},{r[2]},{t}" for r, t in zip(x, label)]
    (tmp_path / "data.csv").write_text("\n".join(lines) + "\n")
    cfg = copy.deepcopy(BASE)
    cfg["data"] = {"source": "csv", "path": "data.csv", "target": "label"}
    out = tmp_path / "run"
    assert main(["train", write_config(tmp_path, cfg), "--quiet", "--output", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["data"]["task"] == "binary"
    assert summary["data"]["classes"] == ["no", "yes"]
    assert summary["data"]["n_features"] == 3


def test_train_regression_reports_metrics_in_target_units(tmp_path):
    cfg = copy.deepcopy(BASE)
    cfg["data"] = {"source": "diabetes"}
    cfg["model"]["layers"] = [{"units": 8, "activation": "afl_relu"}, {"units": 1}]
    cfg["training"] = {"loss": {"name": "afl_huber", "params": {"delta": 2.0}}, "epochs": 1}
    out = tmp_path / "run"
    assert main(["train", write_config(tmp_path, cfg), "--quiet", "--output", str(out)]) == 0
    metrics = json.loads((out / "summary.json").read_text())["runs"][0]["metrics"]
    assert set(metrics) == {"mae", "rmse", "r2"}
    # diabetes targets range 25..346: an error in those units, not in standardised ones
    assert 10 < metrics["mae"] < 300


# --------------------------------------------------------------------------- config errors

def _set(cfg, dotted, value):
    keys = dotted.split(".")
    node = cfg
    for k in keys[:-1]:
        node = node[int(k)] if isinstance(node, list) else node[k]
    last = keys[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


ERROR_CASES = {
    "unknown top-level key": ("epochs", 3, "epochs: unknown key"),
    "misspelt training key": ("training.epoch", 3,
                              "training.epoch: unknown key; did you mean 'epochs'?"),
    "unknown activation": ("model.layers.2", {"type": "activation", "activation": "afl_rleu"},
                           "model.layers[2].activation: unknown activation 'afl_rleu'; did you "
                           "mean 'afl_relu'?"),
    "unknown dense activation": ("model.layers.0.activation", "afl_eluu",
                                 "model.layers[0].activation: unknown activation 'afl_eluu'; "
                                 "did you mean 'afl_elu'?"),
    "unknown loss": ("training.loss", "focl", "training.loss: unknown loss 'focl'; did you mean "
                                              "'focal'?"),
    "unknown loss in a mapping": ("training.loss", {"name": "afl_hnge"},
                                  "training.loss.name: unknown loss 'afl_hnge'; did you mean "
                                  "'afl_hinge'?"),
    "unknown loss parameter": ("training.loss", {"name": "focal", "params": {"gama": 2}},
                               "training.loss.params.gama: 'focal' has no parameter 'gama'; did "
                               "you mean 'gamma'?"),
    "invalid loss parameter": ("training.loss", {"name": "focal", "params": {"alpha": 7}},
                               "training.loss.params: invalid parameters for 'focal'"),
    "wrong type": ("training.epochs", "ten", "training.epochs: expected an integer, got the "
                                             "string 'ten'"),
    "bool is not an int": ("training.batch_size", True, "training.batch_size: expected an integer"),
    "out of range": ("data.test_split", 1.5, "data.test_split: value 1.5 is out of range; "
                                             "expected a value in (0, 0.9]"),
    "zero epochs": ("training.epochs", 0, "training.epochs: value 0 is out of range"),
    "unknown source": ("data.source", "breast_cancr", "data.source: unknown value "
                                                      "'breast_cancr'; did you mean "
                                                      "'breast_cancer'?"),
    "key of another source": ("data.path", "x.csv", "data.path: only valid with source: csv"),
    "unknown layer type": ("model.layers.2.type", "prelus", "model.layers[2].type: unknown "
                                                            "value 'prelus'; did you mean "
                                                            "'prelu'?"),
    "unknown optimizer": ("training.optimizer", "adm", "training.optimizer: unknown optimizer "
                                                       "'adm'; did you mean 'adam'?"),
    "unknown initializer": ("model.layers.0.kernel_initializer", "lecun_nrmal",
                            "model.layers[0].kernel_initializer: unknown initializer "
                            "'lecun_nrmal'; did you mean 'lecun_normal'?"),
    "loss for another task": ("training.loss", "afl_cce",
                              "training.loss: 'afl_cce' is a categorical (one-hot) loss but "
                              "the data is a binary task"),
    "output units": ("model.layers.3.units", 3, "model.layers[3].units: the output layer needs "
                                                "1 unit(s)"),
    "unknown positive class": ("data.positive_class", "malignnt",
                               "data.positive_class: unknown class 'malignnt'; did you mean "
                               "'malignant'?"),
}


@pytest.mark.parametrize("case", sorted(ERROR_CASES))
def test_config_error_names_file_and_key_and_exits_2(case, tmp_path, capsys):
    key, value, message = ERROR_CASES[case]
    cfg = copy.deepcopy(BASE)
    _set(cfg, key, value)
    path = write_config(tmp_path, cfg)
    out = tmp_path / "never"
    assert main(["train", path, "--output", str(out)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith(f"{path}: "), err
    assert message in err, err
    assert len(err.splitlines()) == 1 and "Traceback" not in captured.err + captured.out
    assert not out.exists()  # validated up front: nothing was trained or written


def test_config_error_for_missing_required_key(tmp_path, capsys):
    cfg = copy.deepcopy(BASE)
    del cfg["training"]["loss"]
    assert main(["train", write_config(tmp_path, cfg)]) == 2
    assert "training: give exactly one of `loss`" in capsys.readouterr().err


def test_invalid_yaml_and_missing_file_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    assert main(["train", str(bad)]) == 2
    assert f"{bad}: not valid YAML (line" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml: no such file" in capsys.readouterr().err


def assert_one_message(captured, *parts):
    """stderr is one message holding every part; no traceback anywhere."""
    assert "Traceback" not in captured.err + captured.out, captured.err
    for part in parts:
        assert part in captured.err, captured.err
    return captured.err


def test_train_of_a_folder_says_it_is_a_folder_and_what_to_pass(tmp_path, capsys):
    (tmp_path / "a.yaml").write_text("x: 1\n")
    (tmp_path / "b.yml").write_text("x: 1\n")
    assert main(["train", str(tmp_path)]) == 2
    err = assert_one_message(capsys.readouterr(), f"{tmp_path}: is a folder, not a config file",
                             "a.yaml, b.yml", f"keras-afl train {tmp_path / 'a.yaml'}")
    assert "no such file" not in err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["train", str(empty)]) == 2
    assert_one_message(capsys.readouterr(), "is a folder, not a config file",
                       "it holds no .yaml files")


def _unwritable_cases(tmp_path):
    """(argv, message parts) for outputs that cannot be written; tests run as root, so not
    permission bits: a path under a regular file, an existing file or folder, /proc."""
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    (tmp_path / "folder.png").mkdir()
    cfg = write_config(tmp_path, BASE)
    under = f"{str(a_file)!r} is a file, not a folder"
    cases = [
        (["train", cfg, "--quiet", "--output", str(a_file)],
         ["--output", repr(str(a_file)), "is an existing file, not a folder"]),
        (["train", cfg, "--quiet", "--output", str(a_file / "run")],
         ["cannot create the folder", under]),
        (["demo", "--output", str(a_file)], ["is an existing file, not a folder"]),
        (["demo", "--output", str(a_file / "d")], ["cannot create the folder", under]),
        (["plot", "afl_relu", "-o", str(a_file / "p.png")], ["-o/--output", under]),
        (["plot", "afl_relu", "-o", str(tmp_path / "folder.png")], ["is a folder; give a file"]),
    ]
    if os.path.isdir("/proc/self"):  # the kernel's file system: nothing can be created there
        cases += [(["demo", "--output", "/proc/self/keras_afl_demo"], ["cannot create the folder"]),
                  (["plot", "afl_relu", "-o", "/proc/keras_afl.png"], ["cannot write a file in"])]
    return cases


def test_outputs_that_cannot_be_written_exit_2_with_one_message(tmp_path, capsys):
    for argv, parts in _unwritable_cases(tmp_path):
        assert main(argv) == 2, argv
        captured = capsys.readouterr()
        err = assert_one_message(captured, f"keras-afl {argv[0]}: ", *parts)
        assert len(err.strip().splitlines()) == 1, err
        assert "give a" in err  # what to do
    assert sorted(os.listdir(tmp_path)) == ["a_file", "cfg.yaml", "folder.png"]  # nothing written
    assert not os.listdir(tmp_path / "folder.png")


@pytest.mark.parametrize("rows, key, why", [
    (4, "data.test_split", "greater or equal to the number of classes"),  # 1 test row, 2 classes
    (2, "training.validation_split", "the resulting train set will be empty"),  # 1 train row
])
def test_csv_too_small_to_split_exits_2_naming_the_split(rows, key, why, tmp_path, capsys):
    (tmp_path / "data.csv").write_text("a,label\n" + "".join(f"{i},{'xy'[i % 2]}\n"
                                                             for i in range(rows)))
    cfg = copy.deepcopy(BASE)
    cfg["data"] = {"source": "csv", "path": "data.csv", "target": "label"}
    path = write_config(tmp_path, cfg)
    assert main(["train", path, "--quiet", "--output", str(tmp_path / "run")]) == 2
    err = assert_one_message(capsys.readouterr(), f"{path}: {key}: cannot hold out", why,
                             f"use a larger data set or change {key}")
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def _commands():
    """Every sub-command of the real parser (argparse keeps them on its subparsers action)."""
    import argparse

    from keras_afl.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(sub.choices)


def test_help_of_every_command_works_under_python_OO():
    """`python -OO` strips docstrings; no help text may come from one."""
    commands = _commands()
    assert {"demo", "train", "list", "plot", "check", "lint", "bench"} <= set(commands)
    code = (
        "import contextlib, io, json, runpy, sys\n"
        "assert sys.flags.optimize == 2\n"
        "out = {}\n"
        "for argv in [['--help']] + [[c, '--help'] for c in sys.argv[1:]]:\n"
        "    sys.argv = ['keras-afl', *argv]\n"
        "    buf, err = io.StringIO(), io.StringIO()\n"
        "    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(err):\n"
        "        try:\n"
        "            runpy.run_module('keras_afl', run_name='__main__', alter_sys=True)\n"
        "            rc = 0\n"
        "        except SystemExit as e:\n"
        "            rc = e.code\n"
        "        except BaseException as e:\n"
        "            rc = repr(e)\n"
        "    out[' '.join(argv)] = [rc, buf.getvalue(), err.getvalue()]\n"
        "import keras_afl.cli\n"
        "out['doc'] = keras_afl.cli.__doc__\n"
        "print('JSON' + json.dumps(out))\n")
    proc = subprocess.run([sys.executable, "-OO", "-c", code, *commands], capture_output=True,
                          text=True, cwd=REPO, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.split("JSON", 1)[1])
    assert out.pop("doc") is None  # docstrings really were stripped
    for argv, (rc, stdout, stderr) in out.items():
        assert rc == 0, (argv, rc, stderr[-2000:])
        assert stdout.startswith("usage: keras-afl"), (argv, stdout[:200])
        assert "Traceback" not in stderr
    assert "validation_split" in out["train --help"][1]  # the config reference is there


@pytest.mark.parametrize("key, first, second", [
    ("training.epochs", "  epochs: 1\n", "  epochs: 50\n"),
    ("model.layers[0].activation", "    activation: afl_elu\n", "    activation: afl_relu\n"),
])
def test_duplicated_yaml_key_names_the_key_and_both_lines(key, first, second, tmp_path, capsys):
    """YAML keeps the last of two equal keys without a word; the config refuses them."""
    text = yaml.safe_dump(BASE, sort_keys=False)
    assert text.count(first) == 1
    text = text.replace(first, first + second)
    lines = text.splitlines(keepends=True)
    line_a, line_b = lines.index(first) + 1, lines.index(second) + 1  # counted here, by hand
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    out = tmp_path / "never"
    assert main(["train", str(path), "--quiet", "--output", str(out)]) == 2
    value_a, value_b = first.split(":")[1].strip(), second.split(":")[1].strip()
    err = assert_one_message(capsys.readouterr(),
                             f"{path}: {key}: given twice: line {line_a} (value {value_a}) and "
                             f"line {line_b} (value {value_b})", "Delete one")
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_lint_error_in_the_config_model_stops_the_run_before_training(tmp_path, capsys):
    """A softmax over one output unit trains to ROC-AUC 0.5 and used to exit 0."""
    cfg = copy.deepcopy(BASE)
    cfg["model"]["layers"] = [{"units": 8, "activation": "afl_relu"},
                              {"units": "output", "activation": "softmax"}]
    cfg["training"]["loss"] = "afl_bce"
    path = write_config(tmp_path, cfg)
    out = tmp_path / "never"
    assert main(["train", path, "--quiet", "--output", str(out)]) == 2
    # the reference: keras_afl.lint on the same model, built here by hand
    same = keras.Sequential([keras.Input((30,)), keras.layers.Dense(8, activation="afl_relu"),
                             keras.layers.Dense(1, activation="softmax")])
    rules = {f.rule for f in keras_afl.lint(same, loss="afl_bce").errors}
    assert rules == {"softmax-single-unit"}
    err = assert_one_message(capsys.readouterr(), f"{path}: model.layers[1]: keras_afl.lint "
                                                  "finds 1 error", "nothing was trained",
                             "(model.layers[1])", "[softmax-single-unit]", "fix:")
    assert not out.exists()
    # a linear output read as probabilities, in each run of a comparison
    cfg["model"]["layers"][1] = {"units": "output"}
    cfg["training"] = {"compare": ["afl_bce", "focal"], "epochs": 1}
    path = write_config(tmp_path, cfg, "linear.yaml")
    assert main(["train", path, "--quiet", "--output", str(out)]) == 2
    err = assert_one_message(capsys.readouterr(), "finds 2 errors",
                             "loss 'afl_bce' [linear-output-probability-loss]",
                             "loss 'focal' [linear-output-probability-loss]")
    assert not out.exists()


def test_numbers_written_1e_minus_3_are_accepted(tmp_path):
    """PyYAML reads `1e-3` as a string (YAML 1.1); a learning rate written so still works."""
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(BASE).replace("epochs: 1", "epochs: 1\n  optimizer: "
                                                 "{name: adam, learning_rate: 1e-3}"))
    cfg = cli_config.load(str(path))
    assert cfg["training"]["optimizer"] == {"name": "adam", "learning_rate": 0.001}


def test_keras_loss_names_validate_too():
    cfg = copy.deepcopy(BASE)
    cfg["training"]["loss"] = {"name": "Huber", "params": {"delta": 2.0}}
    spec = cli_config.validate(cfg, "c.yaml")["training"]["losses"][0]
    assert spec["family"] == "regression" and spec["label"] == "Huber(delta=2.0)"
    assert isinstance(cli_build.make_loss(spec), keras.losses.Huber)
    cfg["training"]["loss"] = "binary_crossentropy"
    spec = cli_config.validate(cfg, "c.yaml")["training"]["losses"][0]
    assert spec == {"name": "binary_crossentropy", "params": {}, "label": "binary_crossentropy",
                    "family": "binary", "outputs": "probabilities"}
    cfg["training"]["loss"] = {"name": "mse", "params": {"delta": 1.0}}
    with pytest.raises(cli_config.ConfigError, match="training.loss.params: Keras's 'mse' is a "
                                                      "function"):
        cli_config.validate(cfg, "c.yaml")


def test_compare_needs_distinct_losses_of_one_kind():
    cfg = copy.deepcopy(BASE)
    del cfg["training"]["loss"]
    cfg["training"]["compare"] = ["focal", "afl_focal"]
    spec = cli_config.validate(cfg, "c.yaml")["training"]["losses"]
    assert [s["label"] for s in spec] == ["focal", "afl_focal"]  # aliases are separate runs
    cfg["training"]["compare"] = ["focal", "focal"]
    with pytest.raises(cli_config.ConfigError, match=r"training.compare\[1\]: 'focal' is "
                                                      r"already training.compare\[0\]"):
        cli_config.validate(cfg, "c.yaml")
    cfg["training"]["compare"] = ["focal", "afl_mse"]
    with pytest.raises(cli_config.ConfigError, match="need different kinds of targets"):
        cli_config.validate(cfg, "c.yaml")
    assert cli_config.validate(cfg | {"training": {"compare": ["hinge", "focal"]}}, "c.yaml")
    assert [s["outputs"] for s in cli_config.validate(
        cfg | {"training": {"compare": ["afl_hinge", {"name": "focal", "params": {
            "from_logits": True}}, "afl_bce"]}}, "c.yaml")["training"]["losses"]] == \
        ["scores", "scores", "probabilities"]


def test_loss_kind_reads_the_registry():
    def fam(name):
        return cli_config.loss_kind(name)[0]

    assert [fam(n) for n in ("afl_bce", "focal", "afl_hinge", "BinaryFocalCrossentropy")] == \
        ["binary"] * 4
    assert [fam(n) for n in ("afl_cce", "categorical_focal", "CategoricalCrossentropy")] == \
        ["onehot"] * 3
    assert fam("afl_sparse_categorical_crossentropy") == fam("sparse_categorical_focal") == "sparse"
    assert [fam(n) for n in ("afl_mse", "afl_huber", "mse", "Huber", "poisson")] == \
        ["regression"] * 5
    # Named neither "binary" nor "categorical": the registry's table knows them (the old
    # guess from the name made dice and ctc regression losses).
    assert [fam(n) for n in ("kld", "dice", "tversky", "ctc", "categorical_hinge")] == \
        ["onehot", "binary", "binary", "sparse", "onehot"]
    for e in keras_afl.entries("loss"):  # every registry loss, from its entry
        assert fam(e.name) == cli_config.TARGETS[e.family]
    y_pred = {n: cli_config.loss_kind(n)[1] for n in ("afl_hinge", "Hinge", "focal", "afl_bce",
                                                      "ctc")}
    assert y_pred == {"afl_hinge": "scores", "Hinge": "scores", "focal": "probabilities",
                      "afl_bce": "probabilities", "ctc": "scores"}
    assert cli_config.loss_kind("focal", from_logits=True) == ("binary", "scores")
    assert cli_config.loss_kind(keras_afl.losses.FocalLoss(from_logits=True)) == ("binary", "scores")
    with pytest.raises(ValueError, match="does not describe the loss"):
        cli_config.loss_kind(lambda y_true, y_pred: y_pred)


def test_config_takes_from_logits_from_the_loss_it_builds():
    cfg = copy.deepcopy(BASE)
    cfg["training"]["loss"] = {"name": "BinaryCrossentropy", "params": {"from_logits": True}}
    spec = cli_config.validate(cfg, "c.yaml")["training"]["losses"][0]
    assert (spec["family"], spec["outputs"]) == ("binary", "scores")
    cfg["training"]["loss"] = "dice"
    spec = cli_config.validate(cfg, "c.yaml")["training"]["losses"][0]
    assert (spec["family"], spec["outputs"]) == ("binary", "probabilities")


# --------------------------------------------------------------------------- list

def test_list_json_has_every_registry_name_and_its_notes(capsys):
    assert main(["list", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    listed = {r["name"]: r for r in data["activations"] + data["losses"]}
    for e in keras_afl.entries():
        r = listed[e.name]
        assert set(r["aliases"]) == set(e.aliases)
        assert r["formula"] == e.formula and r["derivative"] == e.derivative
        assert r["output_range"] == e.output_range
        assert r["uses"] == list(e.uses) and r["pairings"] == list(e.pairings)
        assert r["properties"] == list(e.properties)
        assert set(r["parameters"]) == set(e.parameters())
        assert (r["family"], r["y_pred"], r["labels"]) == (e.family, e.y_pred, e.labels)
    assert len(data["activations"]) == len(keras_afl.entries("activation"))
    assert len(data["losses"]) == len(keras_afl.entries("loss"))
    assert listed["afl_elu"]["parameters"] == {"alpha": 1.0}
    assert {k: listed["focal"][k] for k in ("family", "y_pred", "y_pred_from_logits", "labels")} \
        == {"family": "binary", "y_pred": "probabilities", "y_pred_from_logits": "logits",
            "labels": "binary"}
    assert (listed["afl_hinge"]["y_pred"], listed["afl_hinge"]["y_pred_from_logits"],
            listed["afl_hinge"]["labels"]) == ("scores", None, "signed")
    assert (listed["afl_softmax"]["family"], listed["afl_softmax"]["y_pred"]) == (
        "axis", "probabilities")


def test_list_human_table_shows_names_and_notes(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in keras_afl.names():
        assert name in out
    assert "derivative" in out and "pairings" in out


def test_list_of_one_name_and_unknown_name(capsys):
    assert main(["list", "afl_focal", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in data["losses"]] == ["focal"] and data["activations"] == []
    assert data["losses"][0]["object"] == "keras_afl.losses.FocalLoss"  # the public path
    assert main(["list", "afl_rleu"]) == 2
    assert "Did you mean 'afl_relu'?" in capsys.readouterr().err


def test_help_and_list_work_without_the_cli_extra(monkeypatch, capsys):
    for mod in ("yaml", "matplotlib", "matplotlib.pyplot", "sklearn"):
        monkeypatch.setitem(sys.modules, mod, None)  # `import mod` now raises ImportError
    assert main(["--help"]) == 0
    assert "demo" in capsys.readouterr().out
    assert main(["list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["activations"]


@pytest.mark.parametrize("argv", [["train", "x.yaml"], ["demo"], ["plot", "afl_relu"]])
def test_commands_without_the_cli_extra_say_what_to_install(argv, monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "yaml", None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert 'pip install "keras-afl[cli]"' in captured.err
    assert "Traceback" not in captured.err


def test_usage_errors_exit_2(capsys):
    assert main([]) == 2
    assert main(["frobnicate"]) == 2
    assert main(["check", "--dtype", "float8"]) == 2
    capsys.readouterr()


# --------------------------------------------------------------------------- plot

def test_plot_writes_a_png_of_activations_and_losses(tmp_path, capsys):
    path = tmp_path / "p.png"
    assert main(["plot", "afl_relu", "afl_softmax", "focal", "afl_huber", "-o", str(path)]) == 0
    assert_png(path)
    assert str(path) in capsys.readouterr().out


def test_plot_range_applies_to_losses(tmp_path, capsys):
    path = tmp_path / "p.png"
    assert main(["plot", "afl_huber", "afl_hinge", "afl_relu", "--range", "-8", "8",
                 "-o", str(path)]) == 0
    assert_png(path)
    assert "x from -8 to 8" in capsys.readouterr().out
    from keras_afl.cli import plot as cli_plot

    curves, _, _ = cli_plot.loss_curves(keras_afl.entry("afl_huber"), n=5, x_range=(-8, 8))
    e, loss, _ = curves["error"]
    np.testing.assert_allclose(e, np.linspace(-8, 8, 5))
    huber = np.where(np.abs(e) <= 1, 0.5 * e**2, np.abs(e) - 0.5)  # delta 1
    np.testing.assert_allclose(loss, huber, rtol=1e-6)
    curves, _, _ = cli_plot.loss_curves(keras_afl.entry("afl_bce"), n=5, x_range=(0.2, 0.4))
    p, loss, _ = curves["label 1"]
    np.testing.assert_allclose(p, np.linspace(0.2, 0.4, 5), rtol=1e-6)
    np.testing.assert_allclose(loss, -np.log(p), rtol=1e-5)


def test_plot_range_outside_a_probability_axis_exits_2(tmp_path, capsys):
    path = tmp_path / "p.png"
    assert main(["plot", "focal", "afl_relu", "--range", "-5", "5", "-o", str(path)]) == 2
    err = assert_one_message(capsys.readouterr(), "keras-afl plot: --range -5 5 does not fit "
                                                  "focal", "must lie in [0, 1]",
                             "--range 0.01 0.99")
    assert len(err.strip().splitlines()) == 1
    assert not path.exists()


def test_help_text_has_no_doubled_percent_signs(capsys):
    """argparse does not %-format a description: `%%` would print as it is."""
    assert main(["demo", "--help"]) == 0
    assert "about 6% positives" in " ".join(capsys.readouterr().out.split())
    for command in _commands():
        assert main([command, "--help"]) == 0
        assert "%%" not in capsys.readouterr().out, command


def test_plot_unknown_name_exits_2(tmp_path, capsys):
    assert main(["plot", "afl_sigmod", "-o", str(tmp_path / "x.png")]) == 2
    assert "Did you mean 'afl_sigmoid'?" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_plotted_derivative_is_the_analytic_one():
    from keras_afl.cli import plot as cli_plot

    x, y, dy, _ = cli_plot.activation_curve(keras_afl.entry("afl_elu"), (-3, 3), 61)
    np.testing.assert_allclose(dy, np.where(x > 0, 1.0, np.exp(np.minimum(x, 0))), atol=1e-12)
    curves, _, _ = cli_plot.loss_curves(keras_afl.entry("afl_bce"), n=9)
    p, loss, grad = curves["label 1"]
    np.testing.assert_allclose(loss, -np.log(p), rtol=1e-5)
    np.testing.assert_allclose(grad, -1 / p, rtol=1e-4)
    p, loss, grad = curves["label 0"]
    np.testing.assert_allclose(grad, 1 / (1 - p), rtol=1e-4)
    curves, _, _ = cli_plot.loss_curves(keras_afl.entry("afl_mse"), n=7)
    e, loss, grad = curves["error"]
    np.testing.assert_allclose(grad, 2 * e, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- check

def test_check_passes_on_our_functions(capsys):
    argv = ["check", "afl_relu", "afl_softmax", "prelu", "focal", "afl_cce",
            "--dtype", "float32", "--dtype", "float64"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "focal(from_logits)" in out  # variants of a name come with it
    assert "FAIL" not in out


def test_check_has_a_reference_for_every_registered_function():
    cases = cli_check.all_cases()
    for e in keras_afl.entries():
        assert cases.get(e.name) is not None, f"no plain reference formula for {e.name}"


def test_check_feeds_each_loss_what_the_registry_says_it_reads():
    kinds = {e.name: cli_check._input_kind(e, {}) for e in keras_afl.entries("loss")}
    assert kinds == {
        "afl_mse": "error", "afl_huber": "error", "afl_bce": "prob", "focal": "prob",
        "afl_hinge": "score", "afl_cce": "softmax", "categorical_focal": "softmax",
        "afl_sparse_categorical_crossentropy": "sparse_softmax",
        "sparse_categorical_focal": "sparse_softmax"}
    assert cli_check._input_kind(keras_afl.entry("focal"), {"from_logits": True}) == "logit"


def test_check_catches_a_wrong_gradient():
    import tensorflow as tf

    @tf.custom_gradient
    def off_by_one_percent(x):
        y = tf.tanh(x)
        return y, lambda g: g * (1 - y * y) * 1.01

    case = cli_check.Case(
        "bad", lambda c, x: off_by_one_percent(x), lambda c, x: tf.tanh(x),
        cli_check._act_sample(kinks=()), cli_check._act_extremes)
    r = cli_check.check_case(case, "float64")
    assert not r["ok"] and r["numeric"] > 1e-3 and r["autodiff"] > 1e-3
    good = cli_check.check_case(cli_check.all_cases()["afl_tanh"], "float64")
    assert good["ok"]


def test_check_fails_with_exit_1_when_a_function_fails(monkeypatch, capsys):
    import tensorflow as tf

    def wrong_relu(c, x):
        return tf.nn.relu(x) * 1.5  # values and gradients off by 50 %

    cases = cli_check.all_cases()
    broken = dict(cases, afl_relu=cli_check.Case("afl_relu", cases["afl_relu"].fn,
                                                  wrong_relu, cases["afl_relu"].sample,
                                                  cases["afl_relu"].extremes))
    monkeypatch.setattr(cli_check, "all_cases", lambda: broken)
    assert main(["check", "afl_relu", "--dtype", "float64"]) == 1
    assert "FAILED" in capsys.readouterr().out


# --------------------------------------------------------------------------- entry points

@pytest.mark.parametrize("module", ["keras_afl", "keras_afl.cli"])
def test_python_m_keras_afl_help(module):
    proc = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True,
                          text=True, cwd=REPO, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr
    for command in ("demo", "train", "list", "plot", "check"):
        assert command in proc.stdout


@pytest.mark.slow
def test_console_script_is_installed():
    exe = os.path.join(os.path.dirname(sys.executable), "keras-afl")
    if not os.path.exists(exe):
        pytest.skip("package not installed with its console script (pip install -e .)")
    proc = subprocess.run([exe, "list", "--json"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr
    assert "focal" in {r["name"] for r in json.loads(proc.stdout)["losses"]}


@pytest.mark.slow
def test_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    for column in ("PR-AUC", "ROC-AUC", "F1", "minority recall"):
        assert column in printed
    assert '"afl_bce"' in printed and '"focal"' in printed
    assert "every step succeeded" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failed_steps"] == []
    assert set(summary["results"]) == {"afl_bce", "focal"}
    for r in summary["results"].values():
        assert 0.5 < r["roc_auc"] <= 1 and 0 < r["pr_auc"] <= 1
    assert summary["reload"]["max_abs_difference"] <= 1e-5
    assert os.path.isfile(out / "focal_model.keras")
    assert_png(out / "training_curves.png")
    assert_png(out / "precision_recall.png")
