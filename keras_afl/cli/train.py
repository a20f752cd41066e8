"""`keras-afl train CONFIG.yaml`: an experiment from a config file, without writing Python.

Order of work: read and validate the whole config (`keras_afl.cli.config`),
load and split the data (`keras_afl.cli.data`), check that the model's output
and the losses fit the task and that `keras_afl.lint` finds no error in the
model -- all before anything trains -- then, per loss, seed, build
(`keras_afl.cli.build`), compile, fit with Keras's progress bar, evaluate on
the held-out split and save the model.
Writes `summary.json` (config, data, metrics, history, timings, versions) and
`training_curves.png` into the output folder. A config with `example:` runs
that example script's experiment instead (`keras_afl.cli.example_task`) and
writes the same summary.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import sys
import time

from keras_afl.cli import build, config
from keras_afl.cli import data as cli_data
from keras_afl.cli.common import (ConfigError, MissingExtraError, format_table, output_folder,
                                  pyplot, require, versions)

SMOKE_EPOCHS = 1

_TASK_FAMILIES = {"binary": ("binary",), "multiclass": ("onehot", "sparse"),
                  "regression": ("regression",)}
_FAMILY_WORDS = {"binary": "binary", "onehot": "categorical (one-hot)",
                 "sparse": "sparse categorical", "regression": "regression"}
_SUGGEST = {"binary": "afl_bce, focal or afl_hinge", "multiclass":
            "afl_cce, categorical_focal or afl_sparse_categorical_crossentropy",
            "regression": "afl_mse or afl_huber"}


def run(config_path, *, output=None, smoke=False, quiet=False):
    """Runs the experiment in `config_path`; returns the exit code."""
    t_start = time.perf_counter()
    for mod in ("yaml", "matplotlib", "sklearn"):  # say what is missing before any work
        require(mod, "train")
    import keras

    import keras_afl  # noqa: F401  (installs the string names the config uses)

    cfg = config.load(config_path)
    if "example" in cfg:
        return run_example(cfg, config_path, output=output, smoke=smoke, quiet=quiet,
                           t_start=t_start)
    tr = cfg["training"]
    data = cli_data.prepare(cfg, config_path, smoke=smoke,
                             validation_split=tr["validation_split"])
    check_fit(cfg, data, config_path)
    check_lint(cfg, data, config_path)
    epochs = SMOKE_EPOCHS if smoke else tr["epochs"]
    out_dir = output_folder(output or os.path.join("afl_runs", cfg["name"]), "--output")
    t_data = time.perf_counter() - t_start

    print(f"keras-afl train: {cfg['name']}{'  (smoke run)' if smoke else ''}")
    if cfg["description"]:
        print(f"  {cfg['description']}")
    s = data.summary()
    print(f"  data: {data.description}; {s['n_train']} train / {s['n_val']} validation / "
          f"{s['n_test']} test, {s['n_features']} features, task {data.task}")

    runs = []
    for i, spec in enumerate(tr["losses"], start=1):
        print(f"\n[{i}/{len(tr['losses'])}] loss {spec['label']}: {epochs} epoch(s), "
              f"batch {tr['batch_size']}, {tr['optimizer']['name']} "
              f"lr={tr['optimizer']['learning_rate']:g}")
        keras.utils.set_random_seed(cfg["seed"])  # same data order and initial weights per loss
        model = build.build_model(cfg["model"]["layers"], data, spec, name=_slug(cfg["name"]))
        model.compile(optimizer=build.make_optimizer(tr["optimizer"]),
                      loss=build.make_loss(spec),
                      metrics=["mae"] if data.task == "regression" else None)
        diagnostics, callbacks = _diagnostics(cfg, model, data)
        y_train = cli_data.encode(data, data.y_train, spec["family"])
        val = None
        if data.x_val is not None:
            val = (data.x_val, cli_data.encode(data, data.y_val, spec["family"]))
        t0 = time.perf_counter()
        hist = model.fit(data.x_train, y_train, validation_data=val, epochs=epochs,
                         batch_size=tr["batch_size"], verbose=0 if quiet else 1,
                         callbacks=callbacks)
        t_fit = time.perf_counter() - t0
        t0 = time.perf_counter()
        metrics = cli_data.evaluate(data, model.predict(data.x_test, verbose=0), spec)
        t_eval = time.perf_counter() - t0
        path = os.path.join(out_dir, f"model_{_slug(spec['label'])}.keras")
        model.save(path)
        history = {k: [float(v) for v in vs] for k, vs in hist.history.items()}
        if not all(math.isfinite(v) for v in history.get("loss", [])):
            print(f"  warning: the training loss of {spec['label']} is not finite", file=sys.stderr)
        runs.append({"loss": spec["label"], "loss_spec": spec, "metrics": metrics,
                     "history": history, "model": path, **diagnostics,
                     "timings_s": {"fit": round(t_fit, 3), "evaluate": round(t_eval, 3)}})

    return _report(cfg, config_path, out_dir, smoke=smoke, epochs=epochs, data=s, runs=runs,
                   title=f"{cfg['name']}: {data.description}",
                   timings={"data_and_validation": round(t_data, 3)}, t_start=t_start)


def run_example(cfg, config_path, *, output, smoke, quiet, t_start):
    """An `example:` config: the example script's `run` with the config's losses and settings."""
    from keras_afl.cli import example_task

    script = example_task.load_script(cfg["example"], config_path)
    tr = cfg["training"]
    losses = [(spec["label"], build.make_loss(spec)) for spec in tr["losses"]]
    try:
        script.check_losses(losses)
    except ValueError as e:
        raise ConfigError(config_path, "training.loss" if len(losses) == 1 else "training.compare",
                          str(e)) from None
    epochs = SMOKE_EPOCHS if smoke else tr["epochs"]
    out_dir = output_folder(output or os.path.join("afl_runs", cfg["name"]), "--output")
    print(f"keras-afl train: {cfg['name']}{'  (smoke run)' if smoke else ''}")
    if cfg["description"]:
        print(f"  {cfg['description']}")
    print(f"  example: {cfg['example']}")
    try:
        result = script.run(losses, data=cfg["data"], model=cfg["model"], epochs=epochs,
                            batch_size=tr["batch_size"],
                            optimizer=lambda: build.make_optimizer(tr["optimizer"]),
                            seed=cfg["seed"], out_dir=out_dir, smoke=smoke,
                            verbose=0 if quiet else 1)
    except ImportError as e:  # an optional package the script needs (e.g. pycocotools)
        raise MissingExtraError(f"{os.path.basename(cfg['example'])}: {e}") from None
    return _report(cfg, config_path, out_dir, smoke=smoke, epochs=epochs, data=result["data"],
                   runs=result["runs"], title=f"{cfg['name']}: {os.path.basename(cfg['example'])}",
                   outputs=result["outputs"], t_start=t_start)


def _report(cfg, config_path, out_dir, *, smoke, epochs, data, runs, title, t_start,
            timings=None, outputs=None):
    """Writes training_curves.png and summary.json, prints the test metrics; returns 0."""
    plot_path = os.path.join(out_dir, "training_curves.png")
    plot_runs(runs, plot_path, title=title)
    summary_path = os.path.join(out_dir, "summary.json")
    summary = {
        "config_file": os.path.abspath(config_path),
        "config": cfg,
        "smoke": smoke,
        "epochs": epochs,
        "data": data,
        "runs": runs,
        "timings_s": {**(timings or {}), "total": round(time.perf_counter() - t_start, 3)},
        "versions": versions(),
        "outputs": {"plot": plot_path, "summary": summary_path,
                    "models": [r["model"] for r in runs], **(outputs or {})},
    }
    with open(summary_path, "w", encoding="utf-8") as f:
        json.dump(_finite(summary), f, indent=2)

    names = list(runs[0]["metrics"])
    print("\nTest-set metrics (held-out split):")
    print(format_table(("loss", *names), [(r["loss"], *(r["metrics"][n] for n in names))
                                          for r in runs]))
    print(f"\nwrote {summary_path}\n      {plot_path}")
    for path in [*(outputs or {}).values(), *(r["model"] for r in runs)]:
        print(f"      {path}")
    return 0


def _diagnostics(cfg, model, data):
    """`lint: true` prints and returns the lint findings; `activation_stats: true` returns
    an ActivationStats callback on (at most 512 samples of) the validation split."""
    import keras_afl

    out, callbacks = {}, []
    if cfg["lint"]:
        findings = keras_afl.lint(model)  # checks the compiled loss
        print("  lint: " + str(findings).replace("\n", "\n  lint: "))
        out["lint"] = findings.to_dicts()
    if cfg["activation_stats"]:
        source = "validation" if data.x_val is not None else "train (no validation split)"
        x = (data.x_val if data.x_val is not None else data.x_train)[:512]
        callbacks.append(keras_afl.callbacks.ActivationStats(x))
        out["activation_stats"] = {"batch": f"{len(x)} samples of the {source} split",
                                   "keys": "<layer>/{dead_fraction,saturated_fraction,mean,std} "
                                           "in history"}
    return out, callbacks


def check_fit(cfg, data, file):
    """The losses suit the task and the output layer has the right number of units."""
    tr = cfg["training"]
    single = len(tr["losses"]) == 1  # `compare` needs two or more
    for i, spec in enumerate(tr["losses"]):
        if spec["family"] not in _TASK_FAMILIES[data.task]:
            key = "training.loss" if single else f"training.compare[{i}]"
            raise ConfigError(file, key, f"{spec['name']!r} is a {_FAMILY_WORDS[spec['family']]} loss but the "
                                         f"data is a {data.task} task; use e.g. "
                                         f"{_SUGGEST[data.task]}")
    layers = cfg["model"]["layers"]
    last = max(i for i, s in enumerate(layers) if s["type"] == "dense")
    want = cli_data.output_units(data, tr["losses"][0]["family"])
    units = layers[last]["units"]
    if units != "output" and units != want:
        what = (f"{data.n_classes} classes" if want > 1 else f"a {data.task} task")
        raise ConfigError(file, f"model.layers[{last}].units",
                          f"the output layer needs {want} unit(s) for {what}; got {units} "
                          "(or write `units: output`)")


def check_lint(cfg, data, file):
    """`keras_afl.lint`'s error findings on the model built for each loss stop the run.

    An error finding means the model trains the wrong thing or cannot learn
    (a softmax over one unit trains to ROC-AUC 0.5 and would exit 0), so it is
    a ConfigError (exit 2) naming the config key of the layer, before anything
    trains or is written -- whether or not the config says `lint: true`.
    """
    import warnings

    import keras

    import keras_afl

    errors, keys = [], []
    try:
        for spec in cfg["training"]["losses"]:
            keras.backend.clear_session()  # layer names as in the run (dense, dense_1, ...)
            with warnings.catch_warnings():  # Keras warns about a one-unit softmax too
                warnings.simplefilter("ignore")
                model = build.build_model(cfg["model"]["layers"], data, spec)
            config_key = {layer.name: f"model.layers[{i}]" for i, layer in enumerate(model.layers)}
            for f in keras_afl.lint(model, loss=build.make_loss(spec)).errors:
                where = f.where
                for name, key in config_key.items():
                    if f"'{name}'" in where:
                        keys.append(key)
                        where = where.replace(f"'{name}'", f"'{name}' ({key})")
                found = str(dataclasses.replace(f, where=where))
                if found not in errors:
                    errors.append(found)
    finally:
        keras.backend.clear_session()  # the runs get the layer names of a fresh session
    if errors:
        n = len(errors)
        raise ConfigError(file, keys[0] if keys else "model.layers",
                          f"keras_afl.lint finds {n} error{'s' * (n != 1)} in the model this "
                          "config builds; nothing was trained. Fix the config:\n"
                          + "\n".join(errors))


def plot_runs(runs, path, *, title=""):
    """Training curves (one panel per loss) and a bar chart of the test metrics."""
    plt = pyplot("train")
    n = len(runs) + 1
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.6 * rows), squeeze=False)
    axes = axes.ravel()
    for ax, r in zip(axes, runs):
        h = r["history"]
        epochs = range(1, len(h["loss"]) + 1)
        ax.plot(epochs, h["loss"], "o-", ms=3, label="train")
        if "val_loss" in h:
            ax.plot(epochs, h["val_loss"], "s--", ms=3, label="validation")
        ax.set_title(f"loss: {r['loss']}", fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    ax = axes[len(runs)]
    names = list(runs[0]["metrics"])
    width = 0.8 / len(runs)
    for j, r in enumerate(runs):
        vals = [r["metrics"][k] for k in names]
        ax.bar([i + j * width for i in range(len(names))], [0 if v != v else v for v in vals],
               width, label=r["loss"])
    ax.set_xticks([i + width * (len(runs) - 1) / 2 for i in range(len(names))])
    ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
    ax.set_title("test-set metrics", fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    for ax in axes[n:]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _slug(text):
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "model"


def _finite(obj):
    """NaN/inf -> None, so the summary is strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj
